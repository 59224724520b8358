//! Talking to a scheduler from the command line, with errors that say
//! which address was tried and what the scheduler answered.

use std::time::Duration;

use genfleet_proto as pb;
use pb::job_service_client::JobServiceClient;
use tonic::transport::{Channel, Endpoint};

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("{address:?} is not a scheduler address ({why}); use e.g. http://127.0.0.1:7070")]
    BadAddress { address: String, why: String },
    #[error("cannot reach the scheduler at {address}: {why}\n(is one running? start a local cluster with `genfleet up`, or point --scheduler / GENFLEET_SCHEDULER at a running one)")]
    Unreachable { address: String, why: String },
    #[error("the scheduler refused the request ({code}): {message}")]
    Refused { code: String, message: String },
}

impl From<tonic::Status> for ClientError {
    fn from(s: tonic::Status) -> Self {
        ClientError::Refused {
            code: format!("{:?}", s.code()).to_lowercase(),
            message: s.message().to_string(),
        }
    }
}

/// Connects to the scheduler at `address`.
pub async fn connect(address: &str) -> Result<JobServiceClient<Channel>, ClientError> {
    let bad = |why: String| ClientError::BadAddress {
        address: address.to_string(),
        why,
    };
    if !(address.starts_with("http://") || address.starts_with("https://")) {
        return Err(bad("it must start with http:// or https://".into()));
    }
    let endpoint = Endpoint::from_shared(address.to_string())
        .map_err(|e| bad(e.to_string()))?
        .connect_timeout(Duration::from_secs(3));
    let channel = endpoint
        .connect()
        .await
        .map_err(|e| ClientError::Unreachable {
            address: address.to_string(),
            why: error_chain(&e),
        })?;
    Ok(JobServiceClient::new(channel))
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
