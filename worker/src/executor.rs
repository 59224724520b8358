//! Runs one assigned job: load the model, denoise with per-step progress
//! and cancellation, encode the video, store the artifacts.

use std::collections::HashMap;
use std::ops::ControlFlow;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A simulated step never takes longer than this, whatever the estimate.
const MAX_SIMULATED_STEP_SECONDS: f64 = 60.0;

use candle_core::Device;
use genfleet_proto as pb;
use tokio::sync::mpsc;

use crate::artifacts::ArtifactStore;
use crate::metrics::WorkerMetrics;
use crate::model::{GenerateRequest, ModelError, Pipeline, StepProgress};
use crate::video;

/// A finished video: the MP4 and the thumbnail PNG.
type Rendered = (Vec<u8>, Vec<u8>);

/// What a running job reports to the session loop.
#[derive(Debug, Clone)]
pub enum JobUpdate {
    Progress {
        step: u32,
        total: u32,
    },
    Finished {
        artifacts: Vec<pb::Artifact>,
    },
    Failed {
        message: String,
    },
    /// Stopped on request; nothing to report.
    Stopped,
}

/// An update of the job holding `lease`.
pub type LeasedUpdate = (pb::JobLease, JobUpdate);

/// Shared by all jobs of a worker: loaded models and the artifact store.
pub struct Executor {
    model_root: PathBuf,
    pipelines: Mutex<HashMap<String, Arc<Pipeline>>>,
    store: ArtifactStore,
    metrics: WorkerMetrics,
    device: Device,
    /// Simulated devices: jobs only wait out their steps.
    simulated: bool,
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
    #[error("the worker task failed: {0}")]
    Task(String),
}

impl Executor {
    pub fn new(
        model_root: PathBuf,
        store: ArtifactStore,
        metrics: WorkerMetrics,
        simulated: bool,
    ) -> Self {
        Self {
            model_root,
            pipelines: Mutex::default(),
            store,
            metrics,
            device: Device::Cpu,
            simulated,
        }
    }

    /// Runs `assignment` to its end, sending updates; never panics on job errors.
    pub async fn run(
        self: Arc<Self>,
        assignment: pb::Assignment,
        cancel: Arc<AtomicBool>,
        updates: mpsc::UnboundedSender<LeasedUpdate>,
    ) {
        let lease = lease_of(&assignment);
        self.metrics.jobs_running.inc();
        let outcome = if self.simulated {
            self.simulate(&assignment, &cancel, &updates).await
        } else {
            self.clone().execute(&assignment, &cancel, &updates).await
        };
        let update = match outcome {
            Ok(Some(artifacts)) => JobUpdate::Finished { artifacts },
            Ok(None) => JobUpdate::Stopped,
            Err(e) => JobUpdate::Failed {
                message: e.to_string(),
            },
        };
        self.metrics.jobs_running.dec();
        let result = match &update {
            JobUpdate::Finished { .. } => "completed",
            JobUpdate::Failed { message } => {
                tracing::warn!(job = %lease.job_id, %message, "job failed");
                "failed"
            }
            _ => "stopped",
        };
        self.metrics.jobs.with_label_values(&[result]).inc();
        let _ = updates.send((lease, update));
    }

    async fn execute(
        self: Arc<Self>,
        assignment: &pb::Assignment,
        cancel: &Arc<AtomicBool>,
        updates: &mpsc::UnboundedSender<LeasedUpdate>,
    ) -> Result<Option<Vec<pb::Artifact>>, RunError> {
        let spec = assignment.spec.clone().ok_or(RunError::NoSpec)?;
        let lease = lease_of(assignment);
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
        let this = self.clone();
        let cancel = cancel.clone();
        let updates = updates.clone();
        let model = spec.model.clone();
        let fps = spec.fps;
        // The model and the encoder are CPU-bound: off the async threads.
        let rendered =
            tokio::task::spawn_blocking(move || -> Result<Option<Rendered>, RunError> {
                let pipeline = this.pipeline(&model)?;
                let step_seconds = this
                    .metrics
                    .step_seconds
                    .with_label_values(&[model.as_str(), "1"]);
                let mut last = Instant::now();
                let mut on_step = |p: StepProgress| {
                    step_seconds.observe(last.elapsed().as_secs_f64());
                    last = Instant::now();
                    let progress = JobUpdate::Progress {
                        step: p.done as u32,
                        total: p.total as u32,
                    };
                    let _ = updates.send((lease.clone(), progress));
                    if cancel.load(Ordering::Relaxed) {
                        ControlFlow::Break(())
                    } else {
                        ControlFlow::Continue(())
                    }
                };
                let video = pipeline
                    .generate(&request, &mut on_step)
                    .map_err(|source| RunError::Model {
                        model: model.clone(),
                        source,
                    })?;
                let Some(video) = video else { return Ok(None) };
                Ok(Some((
                    video::encode_mp4(&video, fps)?,
                    video::thumbnail_png(&video)?,
                )))
            })
            .await
            .map_err(|e| RunError::Task(e.to_string()))??;
        let Some((mp4, png)) = rendered else {
            return Ok(None);
        };
        let job = &assignment.job_id;
        let video = self
            .store
            .put(job, "video.mp4", "video", "video/mp4", mp4)
            .await?;
        let thumbnail = self
            .store
            .put(job, "thumbnail.png", "thumbnail", "image/png", png)
            .await?;
        Ok(Some(vec![video, thumbnail]))
    }

    /// A job on simulated devices: each step takes the leader's estimate
    /// of a real one; there is nothing to store.
    async fn simulate(
        &self,
        assignment: &pb::Assignment,
        cancel: &Arc<AtomicBool>,
        updates: &mpsc::UnboundedSender<LeasedUpdate>,
    ) -> Result<Option<Vec<pb::Artifact>>, RunError> {
        let spec = assignment.spec.as_ref().ok_or(RunError::NoSpec)?;
        let lease = lease_of(assignment);
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
        for done in 1..=spec.steps {
            tokio::time::sleep(step).await;
            step_seconds.observe(step.as_secs_f64());
            let progress = JobUpdate::Progress {
                step: done,
                total: spec.steps,
            };
            let _ = updates.send((lease.clone(), progress));
            if cancel.load(Ordering::Relaxed) {
                return Ok(None);
            }
        }
        Ok(Some(Vec::new()))
    }

    /// The loaded model `name`, loading it on first use.
    fn pipeline(&self, name: &str) -> Result<Arc<Pipeline>, RunError> {
        let model_error = |source| RunError::Model {
            model: name.to_string(),
            source,
        };
        if let Some(p) = self
            .pipelines
            .lock()
            .ok()
            .and_then(|m| m.get(name).cloned())
        {
            return Ok(p);
        }
        let dir = crate::model::weights::model_dir(&self.model_root, name);
        let (_, pipeline) = Pipeline::load(&dir, &self.device).map_err(model_error)?;
        let pipeline = Arc::new(pipeline);
        if let Ok(mut map) = self.pipelines.lock() {
            map.insert(name.to_string(), pipeline.clone());
        }
        Ok(pipeline)
    }
}

/// The lease an assignment runs under.
fn lease_of(assignment: &pb::Assignment) -> pb::JobLease {
    pb::JobLease {
        job_id: assignment.job_id.clone(),
        lease_epoch: assignment.lease_epoch,
    }
}
