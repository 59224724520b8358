//! Talking to a scheduler from the command line, with errors that say
//! which address was tried and what the scheduler answered.

use std::time::Duration;

use genfleet_proto as pb;
use pb::job_service_client::JobServiceClient;
use tonic::metadata::MetadataValue;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;

/// A channel to a scheduler that presents this process's API key.
pub type SchedulerChannel = InterceptedService<Channel, KeyInterceptor>;

/// How this process calls schedulers: the API key it presents and the CA
/// an https:// scheduler's certificate must chain to. Built once from the
/// flags (`main`), or by a command that runs its own cluster (`demo`), and
/// handed to each command: no process-wide state.
#[derive(Clone, Default)]
pub struct ClientConfig {
    api_key: Option<String>,
    tls_ca: Option<Vec<u8>>,
}

impl ClientConfig {
    /// The key: the flag or GENFLEET_API_KEY if given, else the file
    /// `$XDG_CONFIG_HOME/genfleet/api-key` (or `~/.config/genfleet/api-key`)
    /// if there is one, else the scheduler's admin key file named by
    /// GENFLEET_ADMIN_KEY_FILE (a CLI run in a scheduler pod). The CA: the
    /// file at `tls_ca`, trusted alone (a cluster's own CA, as `genfleet
    /// certs init` makes one).
    pub fn from_flags(
        api_key: Option<String>,
        tls_ca: Option<&std::path::Path>,
    ) -> anyhow::Result<Self> {
        let key = api_key
            .or_else(|| std::fs::read_to_string(key_file()?).ok())
            .or_else(|| std::fs::read_to_string(std::env::var_os("GENFLEET_ADMIN_KEY_FILE")?).ok());
        let tls_ca = match tls_ca {
            Some(path) => Some(genfleet_proto::tls::read_pem(path, "CERTIFICATE")?),
            None => None,
        };
        Ok(ClientConfig::default()
            .with_api_key(key)
            .with_tls_ca(tls_ca))
    }

    /// This configuration presenting `key` instead.
    pub fn with_api_key(mut self, key: Option<String>) -> Self {
        self.api_key = key.map(|k| k.trim().to_string()).filter(|k| !k.is_empty());
        self
    }

    /// This configuration trusting the CA `pem` (None: plain http:// only).
    pub fn with_tls_ca(mut self, pem: Option<Vec<u8>>) -> Self {
        self.tls_ca = pem;
        self
    }

    fn key_interceptor(&self) -> Result<KeyInterceptor, ClientError> {
        let Some(key) = &self.api_key else {
            return Ok(KeyInterceptor(None));
        };
        let value = format!("Bearer {key}")
            .parse()
            .map_err(|_| ClientError::BadKey)?;
        Ok(KeyInterceptor(Some(value)))
    }
}

/// Where the CLI looks for its key when neither the flag nor the
/// environment gives one.
pub fn key_file() -> Option<std::path::PathBuf> {
    let dir = std::env::var_os("XDG_CONFIG_HOME")
        .map(std::path::PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| std::path::Path::new(&h).join(".config")))?;
    Some(dir.join("genfleet").join("api-key"))
}

/// Adds `authorization: Bearer <key>` to every call, if a key is set.
#[derive(Clone)]
pub struct KeyInterceptor(Option<MetadataValue<tonic::metadata::Ascii>>);

impl tonic::service::Interceptor for KeyInterceptor {
    fn call(
        &mut self,
        mut request: tonic::Request<()>,
    ) -> Result<tonic::Request<()>, tonic::Status> {
        if let Some(value) = &self.0 {
            request
                .metadata_mut()
                .insert("authorization", value.clone());
        }
        Ok(request)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("{address:?} is not a scheduler address ({why}); use e.g. http://127.0.0.1:7070")]
    BadAddress { address: String, why: String },
    #[error("cannot reach the scheduler at {address}: {why}\n(is one running? start a local cluster with `genfleet up`, or point --scheduler / GENFLEET_SCHEDULER at a running one)")]
    Unreachable { address: String, why: String },
    #[error(
        "the API key is not printable ASCII; check --api-key, GENFLEET_API_KEY or the key file"
    )]
    BadKey,
    #[error("the scheduler refused the request ({code}): {message}")]
    Refused { code: String, message: String },
}

impl From<tonic::Status> for ClientError {
    fn from(s: tonic::Status) -> Self {
        let mut message = s.message().to_string();
        // What plain HTTP/2 gets back from a TLS port.
        if message.contains("h2 protocol error") {
            message.push_str(
                " (does the scheduler serve TLS? then use its https:// address and --tls-ca)",
            );
        }
        ClientError::Refused {
            code: format!("{:?}", s.code()).to_lowercase(),
            message,
        }
    }
}

/// How long a call keeps retrying while the scheduler fails over.
const RETRY_FOR: Duration = Duration::from_secs(20);
const RETRY_PAUSE: Duration = Duration::from_millis(200);

/// A connection to one of the scheduler replicas; calls move to another
/// replica when the one in use stops answering.
pub struct Scheduler {
    config: ClientConfig,
    addresses: Vec<String>,
    current: usize,
    client: JobServiceClient<SchedulerChannel>,
}

/// Connects to the first reachable of `addresses` (comma-separated).
pub async fn connect(config: &ClientConfig, addresses: &str) -> Result<Scheduler, ClientError> {
    let list: Vec<String> = addresses
        .split(',')
        .map(|a| a.trim().to_string())
        .filter(|a| !a.is_empty())
        .collect();
    if list.is_empty() {
        return Err(ClientError::BadAddress {
            address: addresses.to_string(),
            why: "no address given".into(),
        });
    }
    let mut last_error = None;
    for (i, address) in list.iter().enumerate() {
        match connect_one(config, address).await {
            Ok(client) => {
                return Ok(Scheduler {
                    config: config.clone(),
                    addresses: list,
                    current: i,
                    client,
                })
            }
            Err(e @ ClientError::BadAddress { .. }) => return Err(e),
            Err(e) => last_error = Some(e),
        }
    }
    Err(last_error.unwrap_or(ClientError::Unreachable {
        address: addresses.to_string(),
        why: "no address".into(),
    }))
}

async fn connect_one(
    config: &ClientConfig,
    address: &str,
) -> Result<JobServiceClient<SchedulerChannel>, ClientError> {
    Ok(JobServiceClient::new(channel(config, address).await?))
}

/// A gRPC channel to `address`, with errors that name it.
pub async fn channel(
    config: &ClientConfig,
    address: &str,
) -> Result<SchedulerChannel, ClientError> {
    let bad = |why: String| ClientError::BadAddress {
        address: address.to_string(),
        why,
    };
    if !(address.starts_with("http://") || address.starts_with("https://")) {
        return Err(bad("it must start with http:// or https://".into()));
    }
    let tls = match &config.tls_ca {
        Some(ca) => Some(genfleet_proto::tls::api_client(ca)),
        None if address.starts_with("https://") => {
            return Err(bad(
                "an https:// scheduler needs the CA its certificate chains to: \
                 give --tls-ca FILE or GENFLEET_TLS_CA"
                    .into(),
            ))
        }
        None => None,
    };
    let endpoint = genfleet_proto::tls::endpoint(address, tls.as_ref())
        .map_err(|e| bad(e.to_string()))?
        .connect_timeout(Duration::from_secs(3));
    let channel = endpoint
        .connect()
        .await
        .map_err(|e| ClientError::Unreachable {
            address: address.to_string(),
            why: error_chain(&e),
        })?;
    Ok(InterceptedService::new(channel, config.key_interceptor()?))
}

/// A channel to the first reachable of `addresses` (comma-separated).
pub async fn first_channel(
    config: &ClientConfig,
    addresses: &str,
) -> Result<SchedulerChannel, ClientError> {
    let mut last_error = ClientError::BadAddress {
        address: addresses.to_string(),
        why: "no address given".into(),
    };
    for address in addresses
        .split(',')
        .map(str::trim)
        .filter(|a| !a.is_empty())
    {
        match channel(config, address).await {
            Ok(c) => return Ok(c),
            Err(e @ ClientError::BadAddress { .. }) => return Err(e),
            Err(e) => last_error = e,
        }
    }
    Err(last_error)
}

/// Whether a failed call may succeed on a retry (elsewhere).
pub fn retryable(status: &tonic::Status) -> bool {
    matches!(
        status.code(),
        tonic::Code::Unavailable | tonic::Code::Unknown | tonic::Code::Cancelled
    )
}

impl Scheduler {
    pub fn client(&self) -> JobServiceClient<SchedulerChannel> {
        self.client.clone()
    }

    /// Runs `call`, retrying on other replicas while the scheduler fails
    /// over (submits carry a request id, so a retry never makes two jobs).
    pub async fn call<T, F, Fut>(&mut self, mut call: F) -> Result<T, ClientError>
    where
        F: FnMut(JobServiceClient<SchedulerChannel>) -> Fut,
        Fut: std::future::Future<Output = Result<tonic::Response<T>, tonic::Status>>,
    {
        let deadline = tokio::time::Instant::now() + RETRY_FOR;
        loop {
            match call(self.client.clone()).await {
                Ok(response) => return Ok(response.into_inner()),
                Err(status) if retryable(&status) && tokio::time::Instant::now() < deadline => {
                    tokio::time::sleep(RETRY_PAUSE).await;
                    self.reconnect().await;
                }
                Err(status) => return Err(status.into()),
            }
        }
    }

    /// Submits a job with a fresh request id (retries reuse it).
    pub async fn submit(&mut self, spec: pb::JobSpec) -> Result<pb::Job, ClientError> {
        let request = pb::SubmitRequest {
            spec: Some(spec),
            request_id: new_request_id(),
        };
        let reply = self
            .call(|mut c| {
                let request = request.clone();
                async move { c.submit(request).await }
            })
            .await?;
        reply.job.ok_or_else(|| ClientError::Refused {
            code: "internal".into(),
            message: "the scheduler accepted the job but did not return it".into(),
        })
    }

    /// Moves to the next replica that answers (the same one if it is alone).
    pub async fn reconnect(&mut self) {
        for step in 1..=self.addresses.len() {
            let i = (self.current + step) % self.addresses.len();
            if let Ok(client) = connect_one(&self.config, &self.addresses[i]).await {
                self.current = i;
                self.client = client;
                return;
            }
        }
    }
}

/// A fresh idempotency key for a submit.
pub fn new_request_id() -> String {
    format!("{:032x}", rand::random::<u128>())
}

/// An error and its causes on one line: transport errors hide the useful part.
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let part = s.to_string();
        if !text.contains(&part) {
            text.push_str(": ");
            text.push_str(&part);
        }
        source = s.source();
    }
    text
}
