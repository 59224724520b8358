//! [`Scheduler`]: binds its ports, starts the raft replica, the leader's
//! loops and the gRPC and HTTP servers, and stops them all on shutdown.

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use genfleet_proto as pb;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::api::route::Router;
use crate::api::{
    ClusterApi, JobApi, NodeApi, QueueApi, RaftTransportApi, ReplicaParts, SessionConfig,
    TenantApi, WorkerSessionApi,
};
use crate::auth::cluster_secret::ClusterSecret;
use crate::auth::{self, Authenticator};
use crate::connections::GuardedListener;
use crate::http_fronts::{FrontContext, HttpFronts, RestConfig};
use crate::kube::KubeMode;
use crate::leader::{self, LeaderConfig, Sessions};
use crate::listening::{bind, stopped, warn_if_exposed, Exposure, StatusReader};
use crate::metrics::{JobStateCollector, Metrics};
use crate::policy::PolicyConfig;
use crate::raft::transport::{AddressBook, PeerTransport};
use crate::raft::{self, Bootstrap, RaftHandle, ReplicaConfig};
use crate::scheduling::LastVerdicts;
use crate::Error;

/// Largest gRPC message between replicas (snapshots of big states); read
/// only from a caller proved to be a replica.
const MAX_RAFT_MESSAGE: usize = 512 * 1024 * 1024;
/// Largest HTTP/2 header list a caller may send (its credential travels
/// in it): all that is held of a caller before it has proved itself.
const MAX_HEADER_LIST: u32 = 16 * 1024;
/// How long the HTTP listeners may take to finish their requests at shutdown.
const FRONT_DRAIN: Duration = Duration::from_secs(10);

/// Everything a scheduler replica needs to start.
#[derive(Debug, Clone)]
pub struct SchedulerConfig {
    /// Raft id of this replica; not 0.
    pub id: u64,
    /// Holds the raft log (`raft/`) and `snapshot.bin`.
    pub data_dir: PathBuf,
    /// gRPC address for clients, workers and peers.
    pub listen: SocketAddr,
    /// Every replica a new cluster starts with, this one included: id ->
    /// address (`http://host:port`). Empty: a cluster of this replica alone.
    pub peers: BTreeMap<u64, String>,
    /// Join a running cluster (after `genfleet cluster add-replica`)
    /// instead of starting a new one.
    pub join: bool,
    /// Applied entries between snapshots of the state (log compaction).
    pub snapshot_every: u64,
    pub raft_tick: Duration,
    pub election_ticks: usize,
    pub heartbeat_ticks: usize,
    /// How long a node may be without a worker session before its jobs are requeued.
    pub worker_grace: Duration,
    /// How often workers send heartbeats; three missed close the session.
    pub worker_heartbeat: Duration,
    /// Running work younger than this is never preempted.
    pub min_runtime: Duration,
    /// How long a preempted job's worker has to checkpoint it.
    pub preempt_timeout: Duration,
    /// Whether the leader mirrors Kubernetes Nodes and reconciles GenQueues.
    pub kubernetes: KubeMode,
    /// The bootstrap admin key; `None`: client calls carry no key (a
    /// laptop's cluster). The same on every replica.
    pub admin_key: Option<String>,
    /// This replica's certificate, key and CA: TLS for clients, mutual TLS
    /// with workers and peers. `None`: plain TCP (a laptop's cluster).
    pub tls: Option<genfleet_proto::tls::TlsDir>,
    /// The secret replicas prove themselves with and check workers' derived
    /// keys against; the same on every replica. `None` with no admin key
    /// and no TLS: an open cluster (a laptop's).
    pub cluster_secret: Option<ClusterSecret>,
    /// The artifact store's root URI (`file:///...`, `s3://bucket/prefix`):
    /// workers' results and checkpoints must lie under `<root>/<job id>/`.
    /// `None`: under `<any root>/<job id>/`.
    pub artifact_store: Option<String>,
    /// How long ended jobs stay in the state, and how many.
    pub retention: crate::leader::Retention,
    /// `/metrics`, `/healthz` and `/readyz`; `None`: not served.
    pub metrics_listen: Option<SocketAddr>,
    /// The OpenAI-compatible Videos API; `None`: not served. Its artifact
    /// store's root becomes [`artifact_store`](Self::artifact_store).
    pub rest: Option<RestConfig>,
}

impl SchedulerConfig {
    /// A single replica with the default timings.
    pub fn new(data_dir: impl Into<PathBuf>, listen: SocketAddr) -> Self {
        Self {
            id: 1,
            data_dir: data_dir.into(),
            listen,
            peers: BTreeMap::new(),
            join: false,
            snapshot_every: 100_000,
            raft_tick: Duration::from_millis(100),
            election_ticks: 10,
            heartbeat_ticks: 3,
            worker_grace: Duration::from_secs(15),
            worker_heartbeat: Duration::from_secs(2),
            min_runtime: Duration::from_millis(PolicyConfig::default().min_runtime_ms as u64),
            preempt_timeout: Duration::from_secs(120),
            // Explicit in a library default: embedded and test clusters
            // never reach for a cluster the developer happens to have.
            kubernetes: KubeMode::Off,
            admin_key: None,
            tls: None,
            cluster_secret: None,
            artifact_store: None,
            retention: crate::leader::Retention::default(),
            metrics_listen: None,
            rest: None,
        }
    }

    /// What this replica's listeners lack, for their warnings: the same
    /// rule the [`Authenticator`] applies (open: nothing is checked).
    pub fn exposure(&self) -> Exposure {
        Exposure {
            no_keys: self.admin_key.is_none(),
            open: self.admin_key.is_none() && self.cluster_secret.is_none() && self.tls.is_none(),
            no_tls: self.tls.is_none(),
        }
    }

    pub fn validate(&self) -> Result<(), Error> {
        let bad = |why: String| Err(Error::Config(why));
        if self.id == 0 {
            return bad("the replica id must not be 0".into());
        }
        if self.raft_tick.is_zero() || self.raft_tick > Duration::from_secs(10) {
            return bad(format!(
                "raft tick {:?} must be between 0 and 10 s",
                self.raft_tick
            ));
        }
        if self.heartbeat_ticks == 0 || self.election_ticks <= self.heartbeat_ticks {
            return bad(format!(
                "election ticks ({}) must exceed heartbeat ticks ({}), which must be at least 1",
                self.election_ticks, self.heartbeat_ticks
            ));
        }
        if let Some(key) = &self.admin_key {
            if key.trim().chars().count() < crate::auth::MIN_ADMIN_KEY_CHARS {
                return bad(format!(
                    "the admin key must have at least {} characters (e.g. `openssl rand -hex 32`)",
                    crate::auth::MIN_ADMIN_KEY_CHARS
                ));
            }
        }
        if !self.peers.is_empty() && !self.peers.contains_key(&self.id) {
            return bad(format!(
                "the peers ({}) must include this replica's own id {}",
                self.peers
                    .keys()
                    .map(u64::to_string)
                    .collect::<Vec<_>>()
                    .join(", "),
                self.id
            ));
        }
        if let Some((id, address)) = self
            .peers
            .iter()
            .find(|(_, a)| !(a.starts_with("http://") || a.starts_with("https://")))
        {
            return bad(format!(
                "peer {id}'s address {address:?} must start with http:// or https://"
            ));
        }
        let keyed = self.admin_key.is_some() || self.tls.is_some();
        if keyed && self.cluster_secret.is_none() && self.tls.is_none() && self.peers.len() > 1 {
            return bad(
                "replicas must prove who they are to each other: give every replica the \
                        same --cluster-secret-file, or --tls-dir with replica certificates \
                        (docs/security.md)"
                    .into(),
            );
        }
        if self.peers.contains_key(&0) {
            return bad("peer id 0 is not allowed".into());
        }
        if self.join && self.peers.len() < 2 {
            return bad("a joining replica needs --peers with its own address and those of the running replicas, to answer them before it has their membership".into());
        }
        if self.snapshot_every == 0 {
            return bad("snapshot_every must be at least 1".into());
        }
        if self.worker_heartbeat.is_zero() || self.worker_grace < self.worker_heartbeat * 2 {
            return bad(format!(
                "worker grace {:?} must be at least twice the worker heartbeat {:?}",
                self.worker_grace, self.worker_heartbeat
            ));
        }
        Ok(())
    }
}

/// A scheduler replica with its ports bound, ready to [`run`](Scheduler::run).
pub struct Scheduler {
    config: SchedulerConfig,
    grpc: TcpListener,
    metrics: Metrics,
    status: StatusReader,
    /// Present when the Kubernetes integration is on.
    kube: Option<kube::Client>,
    /// Metrics and the REST API, when configured.
    fronts: HttpFronts,
}

impl Scheduler {
    pub async fn bind(mut config: SchedulerConfig) -> Result<Self, Error> {
        config.validate()?;
        crate::files::create_private_dir(&config.data_dir).map_err(|source| Error::DataDir {
            path: config.data_dir.clone(),
            source,
        })?;
        let grpc = bind(config.listen).await?;
        let fronts = HttpFronts::bind(config.metrics_listen, config.rest.as_ref()).await?;
        // The REST API serves files from its store, so workers' files must
        // lie there; without it the scheduler may not see the workers' store.
        if let Some(root) = fronts.artifact_root() {
            config.artifact_store = Some(root);
        }
        let metrics = Metrics::new(config.id)?;
        let kube = crate::kube::client(config.kubernetes).await?;
        if kube.is_some() {
            tracing::info!(
                "Kubernetes integration on: the leader mirrors Nodes and reconciles GenQueues"
            );
        }
        Ok(Self {
            config,
            grpc,
            metrics,
            status: StatusReader::default(),
            kube,
            fronts,
        })
    }

    /// The bound `/metrics` address, if served.
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.fronts.metrics_addr()
    }

    /// The bound REST API address, if served.
    pub fn api_addr(&self) -> Option<SocketAddr> {
        self.fronts.api_addr()
    }

    /// The bound gRPC address (the real port when asked for port 0).
    pub fn grpc_addr(&self) -> SocketAddr {
        self.grpc.local_addr().unwrap_or(self.config.listen)
    }

    /// Sets the replicas of a new cluster (this one included) once every
    /// replica's port is bound (local clusters on free ports).
    pub fn with_peers(mut self, peers: BTreeMap<u64, String>) -> Result<Self, Error> {
        self.config.peers = peers;
        self.config.validate()?;
        Ok(self)
    }

    /// The registry of this scheduler's metrics, to serve on `/metrics`.
    pub fn metrics_registry(&self) -> prometheus::Registry {
        self.metrics.registry.clone()
    }

    /// Serves until `shutdown` completes, then stops everything in order:
    /// servers and loops first, the raft replica last.
    pub async fn run(self, shutdown: impl Future<Output = ()>) -> Result<(), Error> {
        let grpc_addr = self.grpc_addr();
        let config = self.config;
        let (raft, raft_thread, configured_ids, router) =
            start_replica(&config, &self.metrics, grpc_addr, &self.status)?;
        let (stop_tx, stop) = watch::channel(false);
        let parts = ReplicaParts {
            raft: raft.clone(),
            router,
            sessions: Arc::new(Sessions::default()),
            verdicts: Arc::new(LastVerdicts::default()),
            metrics: self.metrics,
            stop,
        };
        let scheme = if config.tls.is_some() {
            "https"
        } else {
            "http"
        };
        let fronts = self.fronts.spawn(
            FrontContext {
                grpc_url: format!("{scheme}://{grpc_addr}"),
                registry: parts.metrics.registry.clone(),
                status: self.status.clone(),
                tls: config.tls.clone(),
                exposure: config.exposure(),
            },
            parts.stop.clone(),
        );
        let mut loops = spawn_leader_loops(&config, &parts, self.kube);
        let (health_reporter, health) = tonic_health::server::health_reporter();
        loops.push(
            crate::grpc_health::start(raft.clone(), health_reporter, parts.stop.clone()).await,
        );
        let grpc = grpc_server(&config, &parts, configured_ids, health)?
            .serve_with_incoming_shutdown(
                GuardedListener::new(self.grpc).incoming(),
                stopped(parts.stop.clone()),
            );
        let served = serve_until_stopped(grpc, shutdown, &raft, &stop_tx).await;
        let _ = stop_tx.send(true);
        for task in loops {
            let _ = task.await;
        }
        // The HTTP fronts drain their connections, but a stalled client
        // (a slow download) must not keep a stopping replica alive.
        for mut task in fronts {
            if tokio::time::timeout(FRONT_DRAIN, &mut task).await.is_err() {
                tracing::warn!("an HTTP listener did not drain within {FRONT_DRAIN:?}; closed");
                task.abort();
            }
        }
        drop(parts);
        drop(raft);
        let stopped = raft_thread.stop().await;
        tracing::info!(id = config.id, "scheduler stopped");
        // The serving outcome first: it says why a halted replica stopped.
        served?;
        Ok(stopped?)
    }
}

/// Starts the raft replica on its own thread: its log, its peer transport
/// (even a replica alone gets one: replicas can be added) and the router
/// that forwards to the leader. Returns the configured members' ids too.
fn start_replica(
    config: &SchedulerConfig,
    metrics: &Metrics,
    grpc_addr: SocketAddr,
    status: &StatusReader,
) -> Result<(RaftHandle, raft::RaftThread, BTreeSet<u64>, Arc<Router>), Error> {
    let mut configured = config.peers.clone();
    configured
        .entry(config.id)
        .or_insert_with(|| format!("http://{grpc_addr}"));
    // A new cluster records its members' addresses in its first state, so
    // replicas added later can reach them.
    let bootstrap = if config.join {
        Bootstrap::Join
    } else {
        Bootstrap::NewCluster(configured.clone())
    };
    let replica_config = ReplicaConfig {
        id: config.id,
        dir: config.data_dir.clone(),
        bootstrap,
        election_ticks: config.election_ticks,
        heartbeat_ticks: config.heartbeat_ticks,
        election_range: None,
        snapshot_every: config.snapshot_every,
        incarnation: rand::random(),
    };
    let runtime = tokio::runtime::Handle::current();
    let peer_tls = config.tls.as_ref().map(|t| t.client());
    let credential = config
        .cluster_secret
        .as_ref()
        .map(|secret| secret.replica_credential(config.id));
    let (raft, raft_thread) = raft::spawn(
        replica_config,
        config.raft_tick,
        metrics.clone(),
        |handle| {
            let book = AddressBook::new(configured.clone(), handle.shared_state());
            Box::new(PeerTransport::new(
                config.id,
                book,
                runtime,
                peer_tls.clone(),
                credential.as_deref(),
            ))
        },
    )?;
    let configured_ids = configured.keys().copied().collect();
    let book = AddressBook::new(configured, raft.shared_state());
    // Set once: `run` consumes the scheduler, so it starts one replica.
    status.start(raft.watch_status());
    metrics
        .registry
        .register(Box::new(JobStateCollector::new(raft.shared_state())?))?;
    let router = Arc::new(Router::new(raft.clone(), book, peer_tls));
    tracing::info!(id = config.id, data = %config.data_dir.display(), "raft replica started");
    Ok((raft, raft_thread, configured_ids, router))
}

/// The loops that act only while this replica leads (each idles otherwise).
fn spawn_leader_loops(
    config: &SchedulerConfig,
    parts: &ReplicaParts,
    kube: Option<kube::Client>,
) -> Vec<JoinHandle<()>> {
    let leader_config = LeaderConfig {
        worker_grace: config.worker_grace,
        cycle_interval: Duration::from_secs(1),
        policy: PolicyConfig {
            min_runtime_ms: config.min_runtime.as_millis() as i64,
            ..PolicyConfig::default()
        },
        preempt_timeout: config.preempt_timeout,
    };
    let ReplicaParts {
        raft,
        sessions,
        verdicts,
        metrics,
        stop,
        ..
    } = parts;
    let mut loops = vec![
        tokio::spawn(leader::scheduling_loop(
            raft.clone(),
            sessions.clone(),
            verdicts.clone(),
            metrics.clone(),
            leader_config.clone(),
            stop.clone(),
        )),
        tokio::spawn(leader::liveness_loop(
            raft.clone(),
            sessions.clone(),
            leader_config,
            stop.clone(),
        )),
        tokio::spawn(leader::membership_loop(raft.clone(), stop.clone())),
        tokio::spawn(leader::retention_loop(
            raft.clone(),
            config.retention,
            metrics.clone(),
            stop.clone(),
        )),
    ];
    if let Some(client) = kube {
        loops.push(tokio::spawn(crate::kube::leader_loop(
            client,
            raft.clone(),
            sessions.clone(),
            metrics.clone(),
            stop.clone(),
        )));
    }
    loops
}

/// The gRPC services, each behind the interceptor that says who may call it
/// (docs/security.md); health and reflection answer anyone.
fn grpc_server<H: tonic_health::pb::health_server::Health>(
    config: &SchedulerConfig,
    parts: &ReplicaParts,
    configured_ids: BTreeSet<u64>,
    health: tonic_health::pb::health_server::HealthServer<H>,
) -> Result<tonic::transport::server::Router, Error> {
    let ReplicaParts {
        raft,
        router,
        sessions,
        stop,
        ..
    } = parts;
    let session_config = SessionConfig {
        heartbeat_interval: config.worker_heartbeat,
        silence_timeout: config.worker_heartbeat * 3,
        register_timeout: Duration::from_secs(10),
    };
    let auth = Authenticator::new(
        raft.clone(),
        config.admin_key.as_deref().map(str::trim),
        config.cluster_secret.clone(),
        config.tls.is_some(),
    );
    warn_if_exposed(
        "gRPC (clients, workers, replicas)",
        config.listen,
        &config.exposure(),
    );
    let reflection = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(genfleet_proto::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1()
        .map_err(|e| Error::Config(format!("the gRPC reflection service: {e}")))?;
    let mut builder = tonic::transport::Server::builder();
    if let Some(tls) = &config.tls {
        builder = builder.tls_config(tls.server())?;
    }
    Ok(builder
        // Before a caller has proved itself it can make this replica hold
        // its headers and no more: every interceptor runs on them.
        .http2_max_header_list_size(MAX_HEADER_LIST)
        .http2_keepalive_interval(Some(Duration::from_secs(10)))
        .http2_keepalive_timeout(Some(Duration::from_secs(10)))
        .add_service(pb::job_service_server::JobServiceServer::with_interceptor(
            JobApi::new(parts.clone()),
            auth.interceptor(auth::clients),
        ))
        .add_service(
            pb::tenant_service_server::TenantServiceServer::with_interceptor(
                TenantApi::new(raft.clone(), router.clone(), auth.enforced()),
                auth.interceptor(auth::anyone),
            ),
        )
        .add_service(
            pb::worker_session_server::WorkerSessionServer::with_interceptor(
                WorkerSessionApi::new(parts, session_config, config.artifact_store.clone()),
                auth.worker_interceptor(),
            ),
        )
        .add_service(tonic::service::interceptor::InterceptedService::new(
            pb::raft_transport_server::RaftTransportServer::new(RaftTransportApi::new(
                raft.clone(),
                configured_ids,
                stop.clone(),
            ))
            .max_decoding_message_size(MAX_RAFT_MESSAGE),
            auth.replica_interceptor(),
        ))
        // A backup travels in one message; the admin check runs on the
        // headers, before the body is read.
        .add_service(tonic::service::interceptor::InterceptedService::new(
            pb::cluster_service_server::ClusterServiceServer::new(ClusterApi::new(
                raft.clone(),
                router.clone(),
                sessions.clone(),
            ))
            .max_decoding_message_size(genfleet_proto::MAX_BACKUP_BYTES)
            .max_encoding_message_size(genfleet_proto::MAX_BACKUP_BYTES),
            auth.interceptor(auth::admins),
        ))
        .add_service(
            pb::node_service_server::NodeServiceServer::with_interceptor(
                NodeApi::new(raft.clone(), router.clone()),
                auth.interceptor(auth::admins),
            ),
        )
        .add_service(
            pb::queue_service_server::QueueServiceServer::with_interceptor(
                QueueApi::new(raft.clone(), router.clone()),
                auth.interceptor(auth::admins),
            ),
        )
        .add_service(health)
        .add_service(reflection))
}

/// Serves `grpc` until `shutdown`, the server's own end, or the replica
/// halting: a replica whose raft log cannot be written (a full disk) stops
/// serving and exits with the reason. It corrupts nothing, and its
/// supervisor restarts it, from its log, once there is room again.
async fn serve_until_stopped(
    grpc: impl Future<Output = Result<(), tonic::transport::Error>>,
    shutdown: impl Future<Output = ()>,
    raft: &RaftHandle,
    stop_tx: &watch::Sender<bool>,
) -> Result<(), Error> {
    let servers = async { grpc.await.map_err(Error::from) };
    tokio::pin!(servers);
    let mut status = raft.watch_status();
    let halted = async move {
        let why = match status.wait_for(|s| s.stopped.is_some()).await {
            Ok(s) => s.stopped.clone(),
            Err(_) => None,
        };
        match why {
            Some(why) => why,
            None => std::future::pending().await,
        }
    };
    tokio::select! {
        _ = shutdown => {
            // The transfer needs the raft port: hand over before it closes.
            hand_over(raft).await;
            let _ = stop_tx.send(true);
            servers.await
        }
        why = halted => {
            let _ = stop_tx.send(true);
            let _ = servers.await;
            Err(Error::Halted(why))
        }
        result = &mut servers => result,
    }
}

/// The longest a stopping leader waits for its successor to lead: about
/// two election timeouts at the default tick; past it the replica stops and
/// the others elect, as they would have without a hand-over.
const HAND_OVER_WAIT: Duration = Duration::from_secs(3);

/// A leader that is asked to stop hands leadership over first, so that a
/// rolling restart costs one hand-over (milliseconds) rather than an
/// election timeout per leader restarted.
async fn hand_over(raft: &RaftHandle) {
    let id = raft.id();
    if raft.status().role != crate::raft::Role::Leader {
        return;
    }
    match raft.hand_over_leadership(HAND_OVER_WAIT).await {
        Some(to) => tracing::info!(replica = id, to, "handed leadership over before stopping"),
        None => tracing::warn!(
            replica = id,
            "stopping as leader without handing over (no active voter caught up in time): \
             the other replicas elect a leader after their election timeout"
        ),
    }
}
