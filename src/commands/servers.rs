//! Long-running roles: `scheduler`, `worker`, `up`.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use genfleet_scheduler::auth::cluster_secret::ClusterSecret;
use genfleet_scheduler::{RestConfig, Scheduler, SchedulerConfig};
use genfleet_worker::{Worker, WorkerConfig};
use tokio::net::TcpListener;

use crate::cli::{SchedulerArgs, UpArgs, WorkerArgs};
use crate::cluster::{LocalCluster, LocalClusterConfig};
use crate::signal::{shutdown_on_signals, stopped};
use genfleet_scheduler::http::Readiness;
use genfleet_scheduler::kube::statefulset::{self, Discovery, Membership};

pub async fn scheduler(args: SchedulerArgs) -> anyhow::Result<()> {
    let membership = membership(&args)?;
    let mut config = SchedulerConfig::new(&args.data_dir, args.listen);
    config.id = membership.id;
    config.worker_grace = args.worker_grace;
    // Three missed heartbeats close a session: keep that within the grace.
    config.worker_heartbeat = config.worker_heartbeat.min(args.worker_grace / 3);
    config.peers = membership.peers;
    config.join = membership.join;
    config.snapshot_every = args.snapshot_every;
    config.raft_tick = args.raft_tick;
    config.min_runtime = args.min_runtime;
    config.preempt_timeout = args.preempt_timeout;
    config.kubernetes = args.kubernetes;
    if let Some(dir) = &args.tls_dir {
        config.tls = Some(genfleet_proto::tls::TlsDir::load(dir)?);
    }
    config.retention.max_age = args.retain_ended_for;
    config.retention.max_ended = args.retain_ended_max;
    if args.retention_every.is_zero() {
        anyhow::bail!("--retention-every must be longer than 0");
    }
    config.retention.every = args.retention_every;
    if let Some(path) = &args.admin_key_file {
        let key = std::fs::read_to_string(path)
            .with_context(|| format!("reading the admin key from {}", path.display()))?;
        config.admin_key = Some(key.trim().to_string());
    }
    if let Some(path) = &args.cluster_secret_file {
        config.cluster_secret = Some(ClusterSecret::load(path)?);
    }
    config.metrics_listen = args.metrics_listen;
    config.rest = args.api_listen.map(|listen| RestConfig {
        listen,
        artifacts: args.artifacts.clone(),
    });
    let scheme = if config.tls.is_some() {
        "https"
    } else {
        "http"
    };
    let scheduler = Scheduler::bind(config).await?;
    let shutdown = shutdown_on_signals();
    say!(
        "genfleet scheduler {} ready: grpc={scheme}://{}{}{}",
        membership.id,
        scheduler.grpc_addr(),
        scheduler
            .metrics_addr()
            .map(|a| format!(" metrics=http://{a}/metrics"))
            .unwrap_or_default(),
        scheduler
            .api_addr()
            .map(|a| format!(" api={scheme}://{a}/v1"))
            .unwrap_or_default()
    );
    scheduler.run(stopped(shutdown)).await?;
    Ok(())
}

pub async fn worker(args: WorkerArgs) -> anyhow::Result<()> {
    let node = match args.node {
        Some(node) => node,
        None => default_node_name(),
    };
    let tls = match &args.tls_dir {
        Some(dir) => Some(genfleet_proto::tls::TlsDir::load(dir)?),
        None => None,
    };
    let worker_key = match &args.worker_key_file {
        Some(path) => Some(
            std::fs::read_to_string(path)
                .with_context(|| format!("reading the worker key from {}", path.display()))?
                .trim()
                .to_string(),
        ),
        None => None,
    };
    // Every tenant's videos: the local store is this user's alone.
    if !args.artifacts.starts_with("s3://") {
        crate::private_dir::create(std::path::Path::new(&args.artifacts))?;
    }
    let worker = Worker::new(WorkerConfig {
        tls,
        worker_key,
        preview_at: args.preview_at,
        node: node.clone(),
        scheduler: args.client.scheduler.clone(),
        model_root: args.models,
        artifacts: args.artifacts,
        cpu_slots: args.cpu_slots,
        simulate: args.simulate,
        reconnect_max: Duration::from_secs(5),
        sysfs_root: args.sysfs_root,
        drain_timeout: args.drain_timeout,
        checkpoint_every: args.checkpoint_every,
        node_mtbf: args.node_mtbf,
    })?;
    worker.check_artifact_store().await?;
    let shutdown = shutdown_on_signals();
    let connected = worker.session_connected();
    let readiness: Readiness = Arc::new(move || {
        connected()
            .then_some(())
            .ok_or_else(|| "no session with the scheduler".to_string())
    });
    let metrics = serve_metrics(
        args.metrics_listen,
        vec![worker.metrics_registry()],
        Some(readiness),
        &shutdown,
    )
    .await?;
    say!(
        "genfleet worker ready: node={node} models={} artifacts={} scheduler={}{}",
        worker.models().join(","),
        worker.artifact_store(),
        args.client.scheduler,
        metrics
            .map(|a| format!(" metrics=http://{a}/metrics"))
            .unwrap_or_default()
    );
    for notice in worker.notices() {
        say!("note: {notice}");
    }
    worker.run(stopped(shutdown)).await;
    Ok(())
}

pub async fn up(args: UpArgs) -> anyhow::Result<()> {
    let (admin_key, key_path) = crate::cluster::local_admin_key(&args.data_dir)?;
    let cluster_secret = crate::cluster::local_cluster_secret(&args.data_dir)?;
    let cluster = LocalCluster::start(LocalClusterConfig {
        data_dir: args.data_dir.clone(),
        listen: args.listen,
        metrics_listen: Some(args.metrics_listen),
        workers: args.workers,
        replicas: args.replicas,
        models: crate::cluster::LOCAL_MODELS.map(String::from).to_vec(),
        admin_key: Some(admin_key.clone()),
        cluster_secret: Some(cluster_secret),
        api_listen: Some(args.api_listen),
    })
    .await?;
    let key_note = share_admin_key(&admin_key, &key_path);
    let shutdown = shutdown_on_signals();
    say!(
        "genfleet is up: {} scheduler replica(s) and {} worker(s) in this process",
        args.replicas,
        args.workers
    );
    say!("  gRPC     {}", cluster.endpoint);
    if let Some(addr) = cluster.api_addr {
        say!("  OpenAI   http://{addr}/v1 (Videos API: POST /v1/videos)");
    }
    if let Some(addr) = cluster.metrics_addr {
        say!("  metrics  http://{addr}/metrics");
    }
    say!("  videos   {}", cluster.artifact_dir.display());
    say!("  key      {key_note}");
    say!(
        "try:  genfleet submit --scheduler {} --prompt \"a small red circle moves to the left on a navy background\" --watch",
        cluster.endpoint
    );
    say!(
        "Ctrl-C stops it; jobs and their state survive in {}",
        args.data_dir.display()
    );
    stopped(shutdown).await;
    cluster.stop().await
}

/// Lets the CLI in other shells use the local cluster's admin key: writes
/// it to the CLI's key file when there is none (never over another key);
/// returns what to tell the user.
fn share_admin_key(key: &str, key_path: &std::path::Path) -> String {
    let export = format!(
        "export GENFLEET_API_KEY=$(cat {}) (the admin key)",
        key_path.display()
    );
    let Some(file) = crate::client::key_file() else {
        return export;
    };
    match std::fs::read_to_string(&file) {
        Ok(text) if text.trim() == key => {
            format!("{} (the admin key; the CLI uses it)", file.display())
        }
        Ok(_) => format!("{} holds another key; {export}", file.display()),
        Err(_) => {
            let written = file
                .parent()
                .map_or(Ok(()), std::fs::create_dir_all)
                .and_then(|_| crate::cluster::write_private(&file, key));
            match written {
                Ok(()) => format!("{} (the admin key, written for the CLI)", file.display()),
                Err(e) => {
                    tracing::warn!(file = %file.display(), error = %e, "cannot write the CLI's key file");
                    export
                }
            }
        }
    }
}

/// Serves /metrics, /healthz and /readyz if an address is given; returns
/// the bound address.
async fn serve_metrics(
    addr: Option<std::net::SocketAddr>,
    registries: Vec<prometheus::Registry>,
    readiness: Option<Readiness>,
    shutdown: &tokio::sync::watch::Receiver<bool>,
) -> anyhow::Result<Option<std::net::SocketAddr>> {
    let Some(addr) = addr else { return Ok(None) };
    let listener = TcpListener::bind(addr)
        .await
        .with_context(|| format!("cannot listen for metrics on {addr}"))?;
    let bound = listener.local_addr().ok();
    genfleet_scheduler::http::spawn(listener, registries, readiness, stopped(shutdown.clone()));
    Ok(bound)
}

/// The replica's raft id and peers: derived from its StatefulSet pod with
/// --peer-service, else as given by --id, --peers and --join.
fn membership(args: &SchedulerArgs) -> anyhow::Result<Membership> {
    let Some(service) = &args.statefulset.peer_service else {
        return Ok(Membership {
            id: args.id.unwrap_or(1),
            peers: args.peers.clone(),
            join: args.join,
        });
    };
    statefulset::refuse_manual(args.id.is_some(), !args.peers.is_empty())?;
    let sts = &args.statefulset;
    // A StatefulSet pod's host name is its pod name.
    let pod_name = sts
        .pod_name
        .clone()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_default();
    let mut membership = statefulset::discover(&Discovery {
        pod_name: pod_name.trim().to_string(),
        service: service.clone(),
        namespace: pod_namespace(sts.pod_namespace.as_deref())?,
        cluster_domain: sts.cluster_domain.clone(),
        initial_replicas: sts.initial_replicas,
        port: args.listen.port(),
        host_template: sts.peer_host_template.clone(),
    })?;
    // --join stays possible: an initial pod that lost its volume rejoins
    // (after remove-replica and add-replica) instead of bootstrapping.
    membership.join |= args.join;
    tracing::info!(pod = %pod_name, id = membership.id, join = membership.join, peers = ?membership.peers, "replica derived from its StatefulSet pod");
    Ok(membership)
}

/// Where a pod's service account says it runs.
const SERVICE_ACCOUNT_NAMESPACE: &str = "/var/run/secrets/kubernetes.io/serviceaccount/namespace";

/// The pod's namespace: as given, else its service account's; peers
/// resolved in a guessed namespace would silently never answer.
fn pod_namespace(given: Option<&str>) -> anyhow::Result<String> {
    if let Some(namespace) = given {
        return Ok(namespace.to_string());
    }
    std::fs::read_to_string(SERVICE_ACCOUNT_NAMESPACE)
        .map(|n| n.trim().to_string())
        .ok()
        .filter(|n| !n.is_empty())
        .ok_or_else(|| {
            anyhow::anyhow!(
                "--peer-service needs the pod's namespace: set POD_NAMESPACE (or --pod-namespace) from the downward API; {SERVICE_ACCOUNT_NAMESPACE} is not readable"
            )
        })
}

/// The host name, made a valid node name.
fn default_node_name() -> String {
    let raw = std::env::var("HOSTNAME")
        .ok()
        .or_else(|| std::fs::read_to_string("/etc/hostname").ok())
        .unwrap_or_default();
    let name: String = raw
        .trim()
        .to_lowercase()
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "-_.".contains(c) {
                c
            } else {
                '-'
            }
        })
        .take(63)
        .collect();
    if name.is_empty() {
        "worker".into()
    } else {
        name
    }
}
