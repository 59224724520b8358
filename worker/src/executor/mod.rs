//! Runs one assigned job: load the model, denoise with per-step progress
//! (from a checkpoint if the job was preempted before), stop or checkpoint
//! when asked, encode the video, store the artifacts.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// A simulated step never takes longer than this, whatever the estimate.
const MAX_SIMULATED_STEP_SECONDS: f64 = 60.0;

use genfleet_proto as pb;
use tokio::sync::mpsc;

use crate::artifacts::ArtifactStore;
use crate::device::compute::{ComputeDevice, DeviceError, DeviceTable};
use crate::metrics::WorkerMetrics;
use crate::model::{GenerateRequest, ModelError, Pipeline, Video};
use crate::video;
use checkpoint_interval::CheckpointInterval;

pub mod checkpoint_interval;
mod render;
use render::Render;

/// How the session asks a running job to stop; the job looks at every step
/// boundary. A cancel wins over a checkpoint.
#[derive(Debug, Default)]
pub struct StopSignal(AtomicU8);

const RUN: u8 = 0;
const CHECKPOINT: u8 = 1;
const CANCEL: u8 = 2;

/// What a stopping job is asked to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopRequest {
    /// Drop the work.
    Cancel,
    /// Save the latent at this step boundary, then stop (preemption).
    Checkpoint,
}

impl StopSignal {
    pub fn cancel(&self) {
        self.0.store(CANCEL, Ordering::Relaxed);
    }

    pub fn checkpoint(&self) {
        let _ = self
            .0
            .compare_exchange(RUN, CHECKPOINT, Ordering::Relaxed, Ordering::Relaxed);
    }

    pub fn requested(&self) -> Option<StopRequest> {
        match self.0.load(Ordering::Relaxed) {
            CANCEL => Some(StopRequest::Cancel),
            CHECKPOINT => Some(StopRequest::Checkpoint),
            _ => None,
        }
    }
}

/// How a job's run ended.
enum RunEnd {
    Finished(Vec<pb::Artifact>),
    /// Preempted: its progress is saved here.
    Checkpointed(pb::JobCheckpoint),
    /// Cancelled: nothing to report.
    Stopped,
}

/// What the CPU-bound part of a run produced.
enum Rendered {
    /// The MP4, the thumbnail PNG and the spritesheet PNG.
    Video(Vec<u8>, Vec<u8>, Vec<u8>),
    /// A checkpoint's bytes and its step.
    Checkpoint(Vec<u8>, u32),
    Stopped,
}

/// What a running job reports to the session loop.
#[derive(Debug, Clone)]
pub enum JobUpdate {
    Progress {
        step: u32,
        total: u32,
    },
    /// A preview of the running job was stored.
    Preview {
        artifacts: Vec<pb::Artifact>,
    },
    Finished {
        artifacts: Vec<pb::Artifact>,
    },
    Failed {
        message: String,
    },
    /// Preempted: stopped at a step boundary with its progress saved.
    Checkpointed {
        checkpoint: pb::JobCheckpoint,
    },
    /// A checkpoint saved while the job runs on (periodic checkpoints).
    CheckpointSaved {
        checkpoint: pb::JobCheckpoint,
    },
    /// Stopped on request; nothing to report.
    Stopped,
}

/// One model on one device: loaded by the first job that needs it.
#[derive(Default)]
struct ModelSlot(Mutex<Option<Arc<Pipeline>>>);

/// An update from one run of the job holding `lease`.
#[derive(Debug)]
pub struct RunUpdate {
    pub lease: pb::JobLease,
    /// Which run: a job stopped and assigned again under the same lease
    /// has two, and the first one's end must not end the second.
    pub run: u64,
    pub update: JobUpdate,
}

/// Where one run of a job sends its updates.
#[derive(Clone)]
pub struct Reporter {
    lease: pb::JobLease,
    run: u64,
    updates: mpsc::UnboundedSender<RunUpdate>,
}

impl Reporter {
    pub fn new(lease: pb::JobLease, run: u64, updates: mpsc::UnboundedSender<RunUpdate>) -> Self {
        Self {
            lease,
            run,
            updates,
        }
    }

    /// Sends `update`; a session that is gone has nobody to tell.
    fn send(&self, update: JobUpdate) {
        let _ = self.updates.send(RunUpdate {
            lease: self.lease.clone(),
            run: self.run,
            update,
        });
    }
}

/// Shared by all jobs of a worker: loaded models and the artifact store.
pub struct Executor {
    model_root: PathBuf,
    /// Models by (name, device), each behind its own lock: a model is
    /// loaded once however many jobs ask for it at the same time, and a
    /// load does not hold up jobs of other models.
    pipelines: Mutex<HashMap<(String, ComputeDevice), Arc<ModelSlot>>>,
    store: ArtifactStore,
    metrics: WorkerMetrics,
    /// What the scheduler's device numbers are on this node.
    devices: DeviceTable,
    /// Simulated devices: jobs only wait out their steps.
    simulated: bool,
    /// Fraction of an interactive job's steps after which it stores a
    /// preview; 0: none.
    preview_at: f64,
    /// How often a running job saves a checkpoint and runs on.
    checkpoints: CheckpointInterval,
}

#[derive(Debug, thiserror::Error)]
enum RunError {
    #[error("model {model}: {source}")]
    Model {
        model: String,
        #[source]
        source: ModelError,
    },
    #[error("encoding the video: {0}")]
    Video(#[from] video::VideoError),
    #[error("storing artifacts: {0}")]
    Store(#[from] crate::artifacts::ArtifactError),
    #[error("the job's spec is missing")]
    NoSpec,
    #[error("devices: {0}")]
    Devices(#[from] DeviceError),
    #[error("the worker task failed: {0}")]
    Task(String),
}

impl Executor {
    pub fn new(
        model_root: PathBuf,
        store: ArtifactStore,
        metrics: WorkerMetrics,
        devices: DeviceTable,
        simulated: bool,
        preview_at: f64,
        checkpoints: CheckpointInterval,
    ) -> Self {
        Self {
            model_root,
            pipelines: Mutex::default(),
            store,
            metrics,
            devices,
            simulated,
            preview_at,
            checkpoints,
        }
    }

    /// The step after which `spec`'s job stores a preview: interactive
    /// jobs only (someone is waiting to see it), and never the last step.
    fn preview_step(&self, spec: &pb::JobSpec, from_step: u32) -> Option<u32> {
        if self.preview_at <= 0.0 || spec.qos != "interactive" || spec.steps < 2 {
            return None;
        }
        let step =
            ((self.preview_at * f64::from(spec.steps)).ceil() as u32).clamp(1, spec.steps - 1);
        // A resumed run past it made its preview before it was preempted.
        (step > from_step).then_some(step)
    }

    /// Encodes `video` as a preview and stores it in the background; the
    /// task reports it through `reporter`. A preview that fails is logged:
    /// the job goes on.
    fn store_preview(
        self: &Arc<Self>,
        job: &str,
        video: &Video,
        fps: u32,
        reporter: &Reporter,
        runtime: &tokio::runtime::Handle,
    ) -> Option<tokio::task::JoinHandle<()>> {
        let small = video::half_resolution(video);
        let encoded =
            video::encode_mp4(&small, fps).and_then(|mp4| Ok((mp4, video::thumbnail_png(&small)?)));
        let (mp4, thumbnail) = match encoded {
            Ok(files) => files,
            Err(e) => {
                tracing::warn!(%job, error = %e, "preview not made");
                return None;
            }
        };
        let (this, job, reporter) = (self.clone(), job.to_string(), reporter.clone());
        Some(runtime.spawn(async move {
            let files = [
                ("preview.mp4", "preview", "video/mp4", mp4),
                ("preview.png", "preview_thumbnail", "image/png", thumbnail),
            ];
            let mut artifacts = Vec::with_capacity(files.len());
            for (name, kind, content_type, bytes) in files {
                match this.store.put(&job, name, kind, content_type, bytes).await {
                    Ok(artifact) => artifacts.push(artifact),
                    Err(e) => {
                        tracing::warn!(%job, error = %e, "preview not stored");
                        return;
                    }
                }
            }
            tracing::info!(%job, "preview stored");
            reporter.send(JobUpdate::Preview { artifacts });
        }))
    }

    /// `message` as the job's tenant may read it: the artifact store's and
    /// the model folder's places on this server named, not spelled out.
    fn without_paths(&self, message: String) -> String {
        let root = self.model_root.display().to_string();
        let base = self.store.base_uri();
        let mut message = message.replace(base, "<artifact store>");
        // A local store's errors name its files by path, not by URI.
        if let Some(dir) = base.strip_prefix("file://").filter(|d| d.len() > 1) {
            message = message.replace(dir, "<artifact store>");
        }
        if root.is_empty() {
            message
        } else {
            message.replace(&root, "<models>")
        }
    }

    /// Runs `assignment` to its end, sending updates; never panics on job errors.
    pub async fn run(
        self: Arc<Self>,
        assignment: pb::Assignment,
        stop: Arc<StopSignal>,
        reporter: Reporter,
    ) {
        let job = assignment.job_id.clone();
        self.metrics.jobs_running.inc();
        let queue = assignment.spec.as_ref().map_or("", |s| s.queue.as_str());
        let gpus = self.devices.gpus_of(&assignment.device_ids);
        let hold = self
            .metrics
            .gpu_assignments
            .hold(&job, queue, &assignment.tenant, &gpus);
        let outcome = if self.simulated {
            self.simulate(&assignment, &stop, &reporter).await
        } else {
            self.clone().execute(&assignment, &stop, &reporter).await
        };
        // Let go before the scheduler hears of the end and hands them on.
        drop(hold);
        let update = match outcome {
            Ok(RunEnd::Finished(artifacts)) => JobUpdate::Finished { artifacts },
            Ok(RunEnd::Checkpointed(checkpoint)) => JobUpdate::Checkpointed { checkpoint },
            Ok(RunEnd::Stopped) => JobUpdate::Stopped,
            Err(e) => {
                tracing::warn!(%job, error = %e, "job failed");
                JobUpdate::Failed {
                    message: self.without_paths(e.to_string()),
                }
            }
        };
        self.metrics.jobs_running.dec();
        let result = match &update {
            JobUpdate::Finished { .. } => "completed",
            // Logged above, with the paths the tenant's message leaves out.
            JobUpdate::Failed { .. } => "failed",
            JobUpdate::Checkpointed { checkpoint } => {
                tracing::info!(%job, step = checkpoint.step, uri = %checkpoint.uri, "job checkpointed");
                "checkpointed"
            }
            _ => "stopped",
        };
        self.metrics.jobs.with_label_values(&[result]).inc();
        reporter.send(update);
    }

    async fn execute(
        self: Arc<Self>,
        assignment: &pb::Assignment,
        stop: &Arc<StopSignal>,
        reporter: &Reporter,
    ) -> Result<RunEnd, RunError> {
        let spec = assignment.spec.clone().ok_or(RunError::NoSpec)?;
        let request = GenerateRequest {
            prompt: spec.prompt.clone(),
            negative_prompt: spec.negative_prompt.clone(),
            frames: spec.frames as usize,
            width: spec.width as usize,
            height: spec.height as usize,
            steps: spec.steps as usize,
            seed: spec.seed,
            guidance: f64::from(spec.guidance),
        };
        let tp = spec.tp.max(1) as usize;
        let devices = self.devices.resolve(&assignment.device_ids)?;
        if devices.len() != tp {
            return Err(DeviceError::NotTp {
                tp,
                devices: devices.len(),
            }
            .into());
        }
        let from_step = assignment.checkpoint.as_ref().map_or(0, |c| c.step);
        let render = Render {
            executor: self.clone(),
            job: assignment.job_id.clone(),
            model: spec.model.clone(),
            request,
            devices,
            fps: spec.fps,
            preview_step: self.preview_step(&spec, from_step),
            checkpoint_every: self.checkpoints.interval(),
            saved: self.read_checkpoint(assignment).await,
            stop: stop.clone(),
            reporter: reporter.clone(),
            runtime: tokio::runtime::Handle::current(),
        };
        // The model and the encoder are CPU-bound: off the async threads.
        let (rendered, preview_task) = tokio::task::spawn_blocking(move || render.run())
            .await
            .map_err(|e| RunError::Task(e.to_string()))?;
        // The preview is reported before the result that ends the job.
        if let Some(task) = preview_task {
            let _ = task.await;
        }
        let rendered = rendered?;
        let job = &assignment.job_id;
        match rendered {
            Rendered::Video(mp4, thumbnail, sprites) => {
                let files = [
                    ("video.mp4", "video", "video/mp4", mp4),
                    ("thumbnail.png", "thumbnail", "image/png", thumbnail),
                    ("spritesheet.png", "spritesheet", "image/png", sprites),
                ];
                let mut artifacts = Vec::with_capacity(files.len());
                for (name, kind, content_type, bytes) in files {
                    artifacts.push(self.store.put(job, name, kind, content_type, bytes).await?);
                }
                Ok(RunEnd::Finished(artifacts))
            }
            Rendered::Checkpoint(bytes, step) => {
                // Named by step: a later checkpoint never overwrites one the
                // scheduler may still point at.
                let name = format!("checkpoint-{step}.safetensors");
                let stored = self
                    .store
                    .put(job, &name, "checkpoint", "application/octet-stream", bytes)
                    .await?;
                Ok(RunEnd::Checkpointed(pb::JobCheckpoint {
                    uri: stored.uri,
                    step,
                }))
            }
            Rendered::Stopped => Ok(RunEnd::Stopped),
        }
    }

    /// The bytes of the checkpoint the assignment resumes from, if it names
    /// one this worker can read. One that cannot be read costs the steps it
    /// saved, not the job: the run starts over from the seed (same video).
    async fn read_checkpoint(&self, assignment: &pb::Assignment) -> Option<Vec<u8>> {
        let uri = &assignment.checkpoint.as_ref()?.uri;
        if uri.is_empty() {
            return None;
        }
        match self.store.get(uri).await {
            Ok(bytes) => Some(bytes),
            Err(e) => {
                self.checkpoint_unreadable(&assignment.job_id, &e.to_string());
                None
            }
        }
    }

    fn checkpoint_unreadable(&self, job: &str, why: &str) {
        self.metrics
            .checkpoint_loads
            .with_label_values(&["unreadable"])
            .inc();
        tracing::warn!(%job, %why, "checkpoint unreadable; starting the job over");
    }

    /// A job on simulated devices: each step takes the leader's estimate
    /// of a real one; there is nothing to store.
    async fn simulate(
        &self,
        assignment: &pb::Assignment,
        stop: &Arc<StopSignal>,
        reporter: &Reporter,
    ) -> Result<RunEnd, RunError> {
        let spec = assignment.spec.as_ref().ok_or(RunError::NoSpec)?;
        let seconds = assignment.step_seconds;
        let step = if seconds.is_finite() && seconds > 0.0 {
            Duration::from_secs_f64(seconds.min(MAX_SIMULATED_STEP_SECONDS))
        } else {
            Duration::from_secs(1)
        };
        let tp = spec.tp.to_string();
        let step_seconds = self
            .metrics
            .step_seconds
            .with_label_values(&[spec.model.as_str(), tp.as_str()]);
        let first = assignment.checkpoint.as_ref().map_or(0, |c| c.step);
        // Deadlines counted from the start: the timer's rounding on each
        // sleep must not add up over the steps.
        let started = tokio::time::Instant::now();
        for (k, done) in (first + 1..=spec.steps).enumerate() {
            let k = u32::try_from(k + 1).unwrap_or(u32::MAX);
            tokio::time::sleep_until(started + step.saturating_mul(k)).await;
            step_seconds.observe(step.as_secs_f64());
            let progress = JobUpdate::Progress {
                step: done,
                total: spec.steps,
            };
            reporter.send(progress);
            match stop.requested() {
                _ if done == spec.steps => break,
                Some(StopRequest::Cancel) => return Ok(RunEnd::Stopped),
                // Nothing to save: the step alone is the checkpoint.
                Some(StopRequest::Checkpoint) => {
                    return Ok(RunEnd::Checkpointed(pb::JobCheckpoint {
                        uri: String::new(),
                        step: done,
                    }))
                }
                None => {}
            }
        }
        Ok(RunEnd::Finished(Vec::new()))
    }

    /// Model `name` loaded on `device`, loading it on first use. A GPU
    /// keeps one model: loading another there drops the one it had (the
    /// scheduler counts one model's weights per job, not a cache).
    fn pipeline(&self, name: &str, device: ComputeDevice) -> Result<Arc<Pipeline>, RunError> {
        let key = (name.to_string(), device);
        let slot = {
            // A panic elsewhere while holding these locks leaves the map
            // as it was: keep using it rather than reloading every time.
            let mut map = self.pipelines.lock().unwrap_or_else(|e| e.into_inner());
            if !map.contains_key(&key) && device != ComputeDevice::Cpu {
                map.retain(|(_, d), _| *d != device);
            }
            map.entry(key).or_default().clone()
        };
        let mut loaded = slot.0.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(pipeline) = loaded.as_ref() {
            return Ok(pipeline.clone());
        }
        let model_error = |source| RunError::Model {
            model: name.to_string(),
            source,
        };
        let dir = crate::model::weights::model_dir(&self.model_root, name);
        let opened = device.open()?;
        let (_, pipeline) = Pipeline::load(&dir, &opened).map_err(model_error)?;
        let pipeline = Arc::new(pipeline);
        *loaded = Some(pipeline.clone());
        Ok(pipeline)
    }

    /// Drops the models cached on the GPUs of a gang that is about to load
    /// its own slices there.
    fn evict_from(&self, devices: &[ComputeDevice]) {
        let mut map = self.pipelines.lock().unwrap_or_else(|e| e.into_inner());
        map.retain(|(_, d), _| *d == ComputeDevice::Cpu || !devices.contains(d));
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// An executor over models in `dir` and a store in `dir/artifacts`,
    /// offering `table`, and its metrics.
    pub(crate) fn test_executor(
        dir: &std::path::Path,
        table: DeviceTable,
        simulated: bool,
    ) -> (Arc<Executor>, WorkerMetrics) {
        let store = ArtifactStore::local(&dir.join("artifacts")).expect("store");
        let metrics = WorkerMetrics::new("n").expect("metrics");
        let executor = Executor::new(
            dir.to_path_buf(),
            store,
            metrics.clone(),
            table,
            simulated,
            0.0,
            CheckpointInterval::off(),
        );
        (Arc::new(executor), metrics)
    }

    /// Two jobs that start at once on a model not loaded yet share one
    /// load (before, each loaded its own copy: twice the memory and time).
    #[test]
    fn a_model_is_loaded_once_for_jobs_that_start_together() {
        let dir = tempfile::tempdir().expect("tempdir");
        crate::model::init_model(dir.path(), "tiny", 0, false).expect("init");
        let (executor, _) = test_executor(dir.path(), DeviceTable::default(), false);
        let start = std::sync::Barrier::new(2);
        let (a, b) = std::thread::scope(|scope| {
            let load = || {
                start.wait();
                executor.pipeline("tiny", ComputeDevice::Cpu).expect("load")
            };
            let a = scope.spawn(load);
            let b = scope.spawn(load);
            (a.join().expect("thread"), b.join().expect("thread"))
        });
        assert!(Arc::ptr_eq(&a, &b), "the model was loaded twice");
    }

    /// `genfleet_gpu_assignment` names the job's GPUs, queue and tenant
    /// while it runs and is gone once it has ended.
    #[tokio::test]
    async fn a_running_job_is_exported_on_the_gpus_it_holds() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut table = DeviceTable::default();
        table.push_simulated(pb::DeviceGroup {
            flavor: "nvidia-l4".into(),
            count: 2,
            memory_bytes: 24 << 30,
            simulated: true,
            free_memory_bytes: None,
        });
        let (executor, metrics) = test_executor(dir.path(), table, true);
        let assignment = pb::Assignment {
            job_id: "j-1".into(),
            spec: Some(pb::JobSpec {
                queue: "render".into(),
                steps: 200,
                tp: 1,
                model: "tiny".into(),
                ..Default::default()
            }),
            lease_epoch: 1,
            device_ids: vec![1],
            step_seconds: 0.01,
            tenant: "acme".into(),
            ..Default::default()
        };
        let (tx, mut rx) = mpsc::unbounded_channel();
        let stop = Arc::new(StopSignal::default());
        let reporter = Reporter::new(pb::JobLease::default(), 0, tx);
        let run = tokio::spawn(executor.run(assignment, stop.clone(), reporter));
        let first = tokio::time::timeout(Duration::from_secs(10), rx.recv()).await;
        assert!(
            matches!(
                first,
                Ok(Some(RunUpdate {
                    update: JobUpdate::Progress { .. },
                    ..
                }))
            ),
            "the simulated job should report its first step: {first:?}"
        );
        let held = crate::metrics::tests::series(&metrics, "genfleet_gpu_assignment");
        let expected = [
            "index=1",
            "job_id=j-1",
            "pci_bus_id=",
            "queue=render",
            "tenant=acme",
            "uuid=",
            "vendor=nvidia",
        ];
        assert_eq!(held, [expected.map(String::from).to_vec()]);
        stop.cancel();
        tokio::time::timeout(Duration::from_secs(10), run)
            .await
            .expect("a cancelled job stops at its next step")
            .expect("the run does not panic");
        let after = crate::metrics::tests::series(&metrics, "genfleet_gpu_assignment");
        assert!(after.is_empty(), "the ended job still holds {after:?}");
    }
}
