//! genfleet's worker: runs generation jobs the scheduler leases to its node.
//!
//! # Layout
//! - `model/`: the video DiT in candle (presets, weights, text encoder,
//!   transformer, flow-matching sampler, decoder).
//! - `world/`: the procedural world the `world` model is trained on, its
//!   captions and the measurements that score a video (uses `rng`, never
//!   `model`, so that the model may use its vocabulary).
//! - `train/`: training and evaluation of the `world` model.
//! - `rng`: the seeded random source weights, noise and scenes share.
//! - `video/`: H.264 encoding, MP4 muxing, thumbnails.
//! - `device`: what the node offers (CPU devices in this build).
//! - `executor`: runs one job from assignment to stored artifacts.
//! - `artifacts`: the object store results are written to.
//! - `session`: the stream to the scheduler leader, with reconnects.
//! - [`Worker`]: ties them together.

/// The artifact store, shared with the scheduler's REST API.
pub use genfleet_artifacts as artifacts;
pub mod device;
pub mod executor;
pub mod metrics;
pub mod model;
pub mod parallel;
pub mod rng;
mod session;
pub mod train;
pub mod video;
pub mod world;

/// The tensor library the model is written in, for callers that handle
/// its tensors (the CLI's `model sample`).
pub use candle_core;

use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use artifacts::ArtifactStore;
use device::compute::{ComputeDevice, DeviceTable};
use executor::checkpoint_interval::CheckpointInterval;
use executor::Executor;
use metrics::WorkerMetrics;
use session::{Identity, SessionLoop};

/// Everything a worker needs to start.
#[derive(Debug, Clone)]
pub struct WorkerConfig {
    /// Node name; stable across restarts.
    pub node: String,
    /// The scheduler replicas' gRPC addresses, comma-separated, e.g.
    /// `http://10.0.0.1:7070,http://10.0.0.2:7070`.
    pub scheduler: String,
    /// Holds one folder per model (`genfleet model init` writes them).
    pub model_root: PathBuf,
    /// Where artifacts are written: a local directory, or
    /// `s3://bucket/prefix` (see [`artifacts`] for its configuration).
    pub artifacts: String,
    /// Jobs that may run at once on the CPU.
    pub cpu_slots: u32,
    /// Offer simulated devices instead (flavor, count, memory). Jobs then
    /// advance at the leader's estimated step time and produce no video
    /// (as kwok does for Kubernetes nodes): for testing the scheduler at
    /// scale without the hardware.
    pub simulate: Vec<device::SimulatedGroup>,
    /// Longest wait between reconnect attempts.
    pub reconnect_max: Duration,
    /// On shutdown, the longest wait for running jobs to checkpoint and for
    /// the scheduler to record it.
    pub drain_timeout: Duration,
    /// Root of the sysfs to find amdgpu devices under (`/`; a container may
    /// mount the host's elsewhere).
    pub sysfs_root: PathBuf,
    /// This worker's client certificate, key and the cluster's CA (mutual
    /// TLS with the schedulers); `None`: plain TCP.
    pub tls: Option<genfleet_proto::tls::TlsDir>,
    /// The worker key it opens sessions with (`gfw_...` from the cluster
    /// secret, or a stored `gf_...` worker key); `None`: none (an open
    /// cluster, or a certificate that names this worker).
    pub worker_key: Option<String>,
    /// Interactive jobs store a preview of their video after this fraction
    /// of their steps (0 < f < 1); 0: no previews.
    pub preview_at: f64,
    /// A running job saves a checkpoint this often and runs on, so a node
    /// lost without warning costs at most this much of its work; `Some(0)`:
    /// never; `None`: Young/Daly's interval from `node_mtbf` and the
    /// measured cost of a checkpoint (executor/checkpoint_interval.rs).
    pub checkpoint_every: Option<Duration>,
    /// The nodes' mean time between failures, for that interval.
    pub node_mtbf: Duration,
}

/// The configuration checked: the scheduler addresses and the credentials
/// the session presents.
fn checked(config: &WorkerConfig) -> Result<(Vec<String>, session::Credentials), WorkerError> {
    if !genfleet_proto::is_valid_name(&config.node) {
        return Err(WorkerError::Config(format!(
            "node name {:?}: use 1 to {} of a-z, 0-9, '-', '_', '.'",
            config.node,
            genfleet_proto::MAX_NAME_LEN
        )));
    }
    if config.cpu_slots > 64 {
        return Err(WorkerError::Config(format!(
            "cpu slots = {}: give between 0 (a GPU node that offers only its GPUs) and 64",
            config.cpu_slots
        )));
    }
    if config.node_mtbf.is_zero() && config.checkpoint_every.is_none() {
        return Err(WorkerError::Config(
            "node MTBF = 0: give the nodes' mean time between failures (e.g. 24h), or a \
             fixed --checkpoint-every"
                .into(),
        ));
    }
    if !(0.0..1.0).contains(&config.preview_at) {
        return Err(WorkerError::Config(format!(
            "preview at {} of the steps: give a fraction from 0 (no previews) to below 1",
            config.preview_at
        )));
    }
    let schedulers = scheduler_addresses(&config.scheduler)?;
    if config.tls.is_none() && schedulers.iter().any(|s| s.starts_with("https://")) {
        return Err(WorkerError::Config(
            "the scheduler is https:// but this worker has no certificate: give --tls-dir \
             (a worker must present a client certificate to register; docs/tls.md)"
                .into(),
        ));
    }
    let mut credentials = session::Credentials {
        tls: config.tls.as_ref().map(|t| t.client()),
        worker_key: None,
    };
    if let Some(key) = &config.worker_key {
        credentials = credentials
            .with_worker_key(key)
            .map_err(WorkerError::Config)?;
    }
    Ok((schedulers, credentials))
}

/// The devices this worker offers and the models it serves: simulated
/// devices serve every preset (nothing is loaded, their jobs only wait);
/// real ones serve the models installed, on the CPU slots and the GPUs this
/// build can run jobs on.
fn offered_devices(
    config: &WorkerConfig,
    gpus: &[device::GpuInfo],
    notices: &mut Vec<String>,
) -> Result<(DeviceTable, Vec<String>), WorkerError> {
    let mut table = DeviceTable::default();
    let models = if !config.simulate.is_empty() {
        // The table's CPU entries of simulated devices are never opened.
        for group in device::simulated(&config.simulate).map_err(WorkerError::Config)? {
            table.push_simulated(group);
        }
        model::config::PRESETS
            .iter()
            .map(|p| p.to_string())
            .collect()
    } else {
        let models = model::available_models(&config.model_root);
        if models.is_empty() {
            return Err(WorkerError::NoModels {
                root: config.model_root.display().to_string(),
            });
        }
        for group in device::discover(config.cpu_slots)
            .into_iter()
            .filter(|g| g.count > 0)
        {
            let count = group.count as usize;
            table.push(group, vec![ComputeDevice::Cpu; count]);
        }
        for (group, members) in offered_gpus(gpus, notices) {
            let devices: Vec<ComputeDevice> = members.iter().map(|(d, _)| *d).collect();
            tracing::info!(flavor = %group.flavor, count = group.count, ?devices, "offering GPUs");
            table.push_gpus(group, members);
        }
        models
    };
    if table.groups().is_empty() {
        return Err(WorkerError::Config(
            "no devices to offer: --cpu-slots 0 and no GPU this build can run jobs on".into(),
        ));
    }
    Ok((table, models))
}

/// The NVIDIA GPUs CUDA can open, grouped by flavor; a GPU NVML found that
/// CUDA does not see (CUDA_VISIBLE_DEVICES, a driver problem) is not
/// offered, with a notice.
#[cfg(feature = "cuda")]
fn offered_gpus(
    gpus: &[device::GpuInfo],
    notices: &mut Vec<String>,
) -> Vec<device::compute::GpuGroup> {
    let nvidia = gpus
        .iter()
        .filter(|g| g.vendor == device::Vendor::Nvidia)
        .count();
    if nvidia == 0 {
        return Vec::new();
    }
    let addresses = match device::cuda::pci_addresses() {
        Ok(addresses) => addresses,
        Err(why) => {
            notices.push(format!(
                "found {nvidia} NVIDIA GPU(s) but cannot use them through CUDA ({why}): \
                 they are reported and watched, not offered"
            ));
            return Vec::new();
        }
    };
    let offered = device::compute::offered_gpus(gpus, |g| device::cuda::ordinal_of(g, &addresses));
    let count: u32 = offered.iter().map(|(g, _)| g.count).sum();
    if (count as usize) < nvidia {
        notices.push(format!(
            "found {nvidia} NVIDIA GPU(s), CUDA sees {count} of them (CUDA_VISIBLE_DEVICES?): \
             only those are offered"
        ));
    }
    offered
}

/// A build without CUDA offers no GPU (the notices say so).
#[cfg(not(feature = "cuda"))]
fn offered_gpus(
    _gpus: &[device::GpuInfo],
    _notices: &mut Vec<String>,
) -> Vec<device::compute::GpuGroup> {
    Vec::new()
}

/// How often GPU telemetry is read again for the metrics.
const TELEMETRY_EVERY: Duration = Duration::from_secs(5);

#[derive(Debug, thiserror::Error)]
pub enum WorkerError {
    #[error("invalid worker configuration: {0}")]
    Config(String),
    #[error("no models under {root}: create one with `genfleet model init --dir {root}`")]
    NoModels { root: String },
    #[error(transparent)]
    Artifacts(#[from] artifacts::ArtifactError),
    #[error("metrics: {0}")]
    Metrics(#[from] prometheus::Error),
}

pub struct Worker {
    config: WorkerConfig,
    schedulers: Vec<String>,
    identity: Identity,
    executor: Arc<Executor>,
    store: ArtifactStore,
    metrics: WorkerMetrics,
    gpus: Option<device::GpuWatch>,
    /// What to tell the operator at start about GPUs not offered.
    notices: Vec<String>,
    credentials: session::Credentials,
}

impl Worker {
    /// Checks the configuration, finds devices and models, opens the artifact store.
    pub fn new(config: WorkerConfig) -> Result<Self, WorkerError> {
        let (schedulers, credentials) = checked(&config)?;
        let simulated = !config.simulate.is_empty();
        // GPUs are found and watched; jobs run on them only in a build that
        // can (NVIDIA with the `cuda` feature).
        let gpus = (!simulated).then(|| device::GpuWatch::open(&config.sysfs_root));
        for gpu in gpus.iter().flat_map(|w| w.gpus()) {
            tracing::info!(vendor = gpu.vendor.label(), index = gpu.index, product = %gpu.product, flavor = %gpu.flavor, memory_bytes = gpu.memory_bytes, pci_bus_id = ?gpu.pci_bus_id, uuid = ?gpu.uuid, nvlink_peers = ?gpu.peers, "found a GPU");
        }
        let mut notices = gpus.as_ref().map_or_else(Vec::new, |w| {
            device::gpu_notices(w.gpus(), cfg!(feature = "cuda"), config.cpu_slots)
        });
        let found = gpus.as_ref().map_or(&[][..], |w| w.gpus());
        let (table, models) = offered_devices(&config, found, &mut notices)?;
        let devices = table.groups().to_vec();
        let metrics = WorkerMetrics::new(&config.node)?;
        for notice in &notices {
            tracing::warn!("{notice}");
        }
        if let Some(watch) = &gpus {
            metrics.set_gpus(watch.gpus());
        }
        for group in &devices {
            let simulated = if group.simulated { "true" } else { "false" };
            metrics
                .devices
                .with_label_values(&[group.flavor.as_str(), simulated])
                .set(i64::from(group.count));
        }
        let store = ArtifactStore::open(&config.artifacts)?;
        let executor = Arc::new(Executor::new(
            config.model_root.clone(),
            store.clone(),
            metrics.clone(),
            table,
            simulated,
            config.preview_at,
            // Simulated devices have no latent to save.
            if simulated {
                CheckpointInterval::off()
            } else {
                CheckpointInterval::new(config.checkpoint_every, config.node_mtbf)
            },
        ));
        let identity = Identity {
            node: config.node.clone(),
            instance: format!("{:016x}", rand::random::<u64>()),
            devices,
            models,
        };
        Ok(Self {
            config,
            schedulers,
            identity,
            executor,
            store,
            metrics,
            gpus,
            notices,
            credentials,
        })
    }

    /// What the operator should know about GPUs found but not offered
    /// (a build without CUDA, AMD GPUs), one line each; logged at start.
    pub fn notices(&self) -> &[String] {
        &self.notices
    }

    /// Checks that the artifact store takes writes (see [`ArtifactStore::check`]).
    pub async fn check_artifact_store(&self) -> Result<(), WorkerError> {
        Ok(self.store.check().await?)
    }

    /// Where this worker's artifacts go.
    pub fn artifact_store(&self) -> &str {
        self.store.base_uri()
    }

    /// Models this worker serves.
    pub fn models(&self) -> &[String] {
        &self.identity.models
    }

    pub fn metrics_registry(&self) -> prometheus::Registry {
        self.metrics.registry.clone()
    }

    /// Whether this worker has a session with the scheduler now, readable
    /// from outside [`run`](Worker::run) (the binary's `/readyz`).
    pub fn session_connected(&self) -> impl Fn() -> bool + Send + Sync + 'static {
        let gauge = self.metrics.session_connected.clone();
        move || gauge.get() == 1
    }

    /// Works for the scheduler until `shutdown` completes, then drains:
    /// running jobs checkpoint and the scheduler requeues them from there.
    pub async fn run(self, shutdown: impl Future<Output = ()> + Send) {
        if let Some(watch) = self.gpus.filter(|w| !w.gpus().is_empty()) {
            tokio::spawn(watch_gpus(watch, self.metrics.clone()));
        }
        let (session, updates) = SessionLoop::new(
            self.schedulers,
            self.identity,
            self.executor,
            self.metrics,
            self.config.reconnect_max,
            self.config.drain_timeout,
            self.credentials,
        );
        let shutdown = std::pin::pin!(shutdown);
        session.run(updates, shutdown).await;
    }
}

/// Reads GPU telemetry into the metrics every [`TELEMETRY_EVERY`] (NVML
/// and sysfs reads block: off the async threads).
async fn watch_gpus(watch: device::GpuWatch, metrics: WorkerMetrics) {
    let watch = Arc::new(std::sync::Mutex::new(watch));
    loop {
        tokio::time::sleep(TELEMETRY_EVERY).await;
        let (watch, metrics) = (watch.clone(), metrics.clone());
        let read = tokio::task::spawn_blocking(move || {
            let mut watch = watch.lock().unwrap_or_else(|e| e.into_inner());
            watch.refresh();
            metrics.set_gpus(watch.gpus());
        });
        if read.await.is_err() {
            tracing::warn!("reading GPU telemetry failed; no more GPU metrics");
            return;
        }
    }
}

/// The comma-separated scheduler addresses, each checked.
fn scheduler_addresses(list: &str) -> Result<Vec<String>, WorkerError> {
    let addresses: Vec<String> = list
        .split(',')
        .map(str::trim)
        .filter(|a| !a.is_empty())
        .map(String::from)
        .collect();
    if addresses.is_empty() {
        return Err(WorkerError::Config("no scheduler address given".into()));
    }
    if let Some(bad) = addresses
        .iter()
        .find(|a| !(a.starts_with("http://") || a.starts_with("https://")))
    {
        return Err(WorkerError::Config(format!(
            "scheduler address {bad:?} must start with http:// or https://"
        )));
    }
    Ok(addresses)
}
