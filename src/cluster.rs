//! An embedded local cluster: a scheduler and workers in this process,
//! talking gRPC over loopback exactly as separate processes would.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use genfleet_scheduler::auth::cluster_secret::ClusterSecret;
use genfleet_scheduler::auth::NodePattern;
use genfleet_scheduler::{RestConfig, Scheduler, SchedulerConfig};
use genfleet_worker::{Worker, WorkerConfig};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::timeout;

use crate::signal::stopped;

/// What `genfleet up` and `genfleet demo` serve: the trained model (the
/// default) and the smallest seeded preset (for benchmarks and sizes
/// `world` was not trained at).
pub const LOCAL_MODELS: [&str; 2] = ["world", "tiny"];

#[derive(Debug, Clone)]
pub struct LocalClusterConfig {
    /// Holds `scheduler/` (raft log), `models/` and `artifacts/`.
    pub data_dir: PathBuf,
    pub listen: SocketAddr,
    pub metrics_listen: Option<SocketAddr>,
    pub workers: u32,
    /// Scheduler replicas; the first listens on `listen`, the others on the
    /// ports after it (or on free ports when `listen`'s port is 0).
    pub replicas: u32,
    /// Models created under `models/` if missing (`world`'s shipped
    /// weights, the seeded presets from seed 0).
    pub models: Vec<String>,
    /// The key the schedulers take as the admin's (see [`local_admin_key`]);
    /// None runs them without keys.
    pub admin_key: Option<String>,
    /// The cluster secret of the replicas (see [`local_cluster_secret`]);
    /// the workers get keys derived from it for their own nodes. None: the
    /// replicas and workers prove nothing (an open cluster without keys).
    pub cluster_secret: Option<ClusterSecret>,
    /// Where the first replica serves the REST and OpenAI-compatible Videos
    /// API (a follower forwards to the leader); None: no REST API.
    pub api_listen: Option<SocketAddr>,
}

pub struct LocalCluster {
    /// The schedulers' gRPC addresses, `http://...`, comma-separated.
    pub endpoint: String,
    pub metrics_addr: Option<SocketAddr>,
    /// Where the REST API listens, when asked for.
    pub api_addr: Option<SocketAddr>,
    pub artifact_dir: PathBuf,
    /// Stops the workers (they drain first, while the schedulers serve).
    stop_workers: watch::Sender<bool>,
    workers: Vec<JoinHandle<()>>,
    /// Stops the schedulers and the metrics server, once the workers are done.
    stop_schedulers: watch::Sender<bool>,
    schedulers: Vec<JoinHandle<Result<(), genfleet_scheduler::Error>>>,
    others: Vec<JoinHandle<()>>,
}

/// How long the embedded workers have to checkpoint their jobs on a stop.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);
/// The local cluster's nodes are this machine: a day between failures.
const DEFAULT_NODE_MTBF: Duration = Duration::from_secs(86_400);
/// How long past the drain a worker or a scheduler may take to end before
/// the stop goes on without it: a stop always ends.
const STOP_GRACE: Duration = Duration::from_secs(5);

/// Creates the model's weights under `models` unless they are there.
pub async fn ensure_model(models: &Path, preset: &str) -> anyhow::Result<()> {
    let (models, preset) = (models.to_path_buf(), preset.to_string());
    let report = tokio::task::spawn_blocking(move || {
        genfleet_worker::model::init_model(&models, &preset, 0, false)
    })
    .await
    .context("model init task")??;
    if report.created {
        tracing::info!(dir = %report.dir.display(), parameters = report.parameters, "created model weights");
    }
    Ok(())
}

/// The admin key of the local cluster kept in `data_dir`: read from
/// `<data_dir>/admin-key`, or made and written there (readable by the owner
/// only) the first time, so a local cluster has keys without any setup and
/// keeps the same one across restarts.
pub fn local_admin_key(data_dir: &Path) -> anyhow::Result<(String, PathBuf)> {
    let path = data_dir.join("admin-key");
    let key = kept_or_made(&path, || genfleet_scheduler::auth::generate_key().1)?;
    Ok((key, path))
}

/// The cluster secret of the local cluster kept in `data_dir`, made the
/// first time as the admin key is: replicas and workers prove themselves
/// with no setup.
pub fn local_cluster_secret(data_dir: &Path) -> anyhow::Result<ClusterSecret> {
    let path = data_dir.join("cluster-secret");
    let text = kept_or_made(&path, ClusterSecret::generate)?;
    ClusterSecret::from_text(&text)
        .with_context(|| format!("the cluster secret in {}", path.display()))
}

/// The first line of the file at `path`, or `make()`'s text written there
/// (readable by its owner only) when there is no such file.
fn kept_or_made(path: &Path, make: impl FnOnce() -> String) -> anyhow::Result<String> {
    match std::fs::read_to_string(path) {
        Ok(text) if !text.trim().is_empty() => return Ok(text.trim().to_string()),
        Ok(_) => anyhow::bail!(
            "{} is empty: delete it and a new one is made",
            path.display()
        ),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
    }
    if let Some(dir) = path.parent() {
        crate::private_dir::create(dir)?;
    }
    let text = make();
    write_private(path, &text).with_context(|| format!("writing {}", path.display()))?;
    Ok(text)
}

/// Writes a new file that only its owner can read; never replaces one.
pub fn write_private(path: &Path, text: &str) -> std::io::Result<()> {
    write_private_bytes(path, format!("{text}\n").as_bytes())
}

/// [`write_private`] of bytes, as they are.
pub fn write_private_bytes(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(path)?;
    file.write_all(bytes)?;
    file.sync_all()
}

impl LocalCluster {
    pub async fn start(config: LocalClusterConfig) -> anyhow::Result<Self> {
        crate::private_dir::create(&config.data_dir)?;
        let models = config.data_dir.join("models");
        let artifact_dir = config.data_dir.join("artifacts");
        for model in &config.models {
            ensure_model(&models, model).await?;
        }
        // Workers' files must lie in this store, under their jobs' folders.
        let store = genfleet_worker::artifacts::ArtifactStore::local(&artifact_dir)
            .with_context(|| format!("the artifact folder {}", artifact_dir.display()))?;

        let replicas = config.replicas.max(1);
        let mut bound = Vec::new();
        for i in 0..replicas {
            let id = u64::from(i) + 1;
            let mut listen = config.listen;
            if listen.port() != 0 {
                listen.set_port(listen.port() + i as u16);
            }
            let dir = if replicas == 1 {
                config.data_dir.join("scheduler")
            } else {
                config.data_dir.join(format!("scheduler-{id}"))
            };
            let mut scheduler_config = SchedulerConfig::new(dir, listen);
            scheduler_config.id = id;
            // One process: a worker that is gone is gone for good.
            scheduler_config.worker_grace = Duration::from_secs(5);
            scheduler_config.admin_key = config.admin_key.clone();
            scheduler_config.cluster_secret = config.cluster_secret.clone();
            scheduler_config.artifact_store = Some(store.base_uri().to_string());
            if i == 0 {
                scheduler_config.rest = config.api_listen.map(|listen| RestConfig {
                    listen,
                    artifacts: store.base_uri().to_string(),
                });
            }
            bound.push(Scheduler::bind(scheduler_config).await?);
        }
        let api_addr = bound.first().and_then(|s| s.api_addr());
        let peers: BTreeMap<u64, String> = bound
            .iter()
            .enumerate()
            .map(|(i, s)| (i as u64 + 1, format!("http://{}", s.grpc_addr())))
            .collect();
        let endpoint = peers.values().cloned().collect::<Vec<_>>().join(",");
        let (stop_schedulers, stop_rx) = watch::channel(false);
        let (stop_workers, stop_workers_rx) = watch::channel(false);
        let mut registries = Vec::new();
        let mut schedulers = Vec::new();
        for scheduler in bound {
            let scheduler = if replicas > 1 {
                scheduler.with_peers(peers.clone())?
            } else {
                scheduler
            };
            registries.push(scheduler.metrics_registry());
            schedulers.push(tokio::spawn(scheduler.run(stopped(stop_rx.clone()))));
        }

        let mut workers = Vec::new();
        for i in 0..config.workers {
            let node = format!("local-{i}");
            let worker_key = config
                .cluster_secret
                .as_ref()
                .map(|s| s.worker_key(&NodePattern::Exact(node.clone())));
            let worker = Worker::new(WorkerConfig {
                worker_key,
                node,
                scheduler: endpoint.clone(),
                model_root: models.clone(),
                artifacts: artifact_dir.to_string_lossy().into_owned(),
                cpu_slots: 1,
                simulate: Vec::new(),
                reconnect_max: Duration::from_secs(2),
                sysfs_root: genfleet_worker::device::default_sysfs_root(),
                drain_timeout: DRAIN_TIMEOUT,
                tls: None,
                preview_at: 0.25,
                checkpoint_every: None,
                node_mtbf: DEFAULT_NODE_MTBF,
            })?;
            registries.push(worker.metrics_registry());
            workers.push(tokio::spawn(worker.run(stopped(stop_workers_rx.clone()))));
        }

        let mut others = Vec::new();

        let mut metrics_addr = None;
        if let Some(addr) = config.metrics_listen {
            let listener = TcpListener::bind(addr)
                .await
                .with_context(|| format!("cannot listen for metrics on {addr}"))?;
            metrics_addr = listener.local_addr().ok();
            others.push(genfleet_scheduler::http::spawn(
                listener,
                registries,
                None,
                stopped(stop_rx.clone()),
            ));
        }
        Ok(Self {
            endpoint,
            metrics_addr,
            api_addr,
            artifact_dir,
            stop_workers,
            workers,
            stop_schedulers,
            schedulers,
            others,
        })
    }

    /// Stops the cluster as a fleet is stopped: the workers drain first
    /// (checkpointing their jobs while the schedulers still record it),
    /// then the schedulers stop. Each part gets a deadline and is left
    /// behind past it, so a stop always ends.
    pub async fn stop(self) -> anyhow::Result<()> {
        let _ = self.stop_workers.send(true);
        for worker in self.workers {
            if timeout(DRAIN_TIMEOUT + STOP_GRACE, worker).await.is_err() {
                tracing::warn!(
                    "a worker did not stop after its drain deadline; stopping without it"
                );
            }
        }
        let _ = self.stop_schedulers.send(true);
        for task in self.others {
            let _ = timeout(STOP_GRACE, task).await;
        }
        for scheduler in self.schedulers {
            match timeout(STOP_GRACE, scheduler).await {
                Ok(ended) => ended.context("scheduler task")??,
                Err(_) => {
                    tracing::warn!("a scheduler replica did not stop in time; stopping without it")
                }
            }
        }
        Ok(())
    }
}
