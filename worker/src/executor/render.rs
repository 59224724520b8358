//! The CPU-bound part of a run, on a blocking thread: the model from the
//! job's checkpoint (or its seed) to a finished video or a new checkpoint,
//! per-step progress and the preview on the way, and the encoding.

use std::ops::ControlFlow;
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use candle_core::Device;
use tokio::task::JoinHandle;

use super::{Executor, Rendered, Reporter, RunError, StopRequest, StopSignal};
use crate::device::compute::ComputeDevice;
use crate::model::config::ModelConfig;
use crate::model::{
    generate_parallel, Checkpoint, Denoised, GenerateRequest, Generated, ModelError, StepProgress,
};
use crate::video;

/// One job's run, as handed to the blocking thread.
pub(super) struct Render {
    pub executor: Arc<Executor>,
    pub job: String,
    pub model: String,
    pub request: GenerateRequest,
    /// One per tensor-parallel rank.
    pub devices: Vec<ComputeDevice>,
    pub fps: u32,
    /// The step after which a preview is made, if any.
    pub preview_step: Option<u32>,
    /// How often the run saves a checkpoint and goes on; None: never.
    pub checkpoint_every: Option<std::time::Duration>,
    /// The checkpoint's bytes, when the job resumes.
    pub saved: Option<Vec<u8>>,
    pub stop: Arc<StopSignal>,
    pub reporter: Reporter,
    pub runtime: tokio::runtime::Handle,
}

impl Render {
    /// What the run made, and the preview's upload if one started (the
    /// preview is reported before the result that ends the job).
    pub fn run(self) -> (Result<Rendered, RunError>, Option<JoinHandle<()>>) {
        let mut preview = None;
        let rendered = self.render(&mut preview);
        (rendered, preview)
    }

    fn render(&self, preview: &mut Option<JoinHandle<()>>) -> Result<Rendered, RunError> {
        let dir = crate::model::weights::model_dir(&self.executor.model_root, &self.model);
        let config = crate::model::weights::read_manifest(&dir)
            .map_err(|e| self.model_error(e))?
            .config;
        let checkpoint = self.checkpoint(&config);
        let generated = self.generate(&dir, checkpoint, preview)?;
        self.encode(generated)
    }

    fn model_error(&self, source: ModelError) -> RunError {
        RunError::Model {
            model: self.model.clone(),
            source,
        }
    }

    /// The checkpoint to resume from, read to the host (each rank moves it
    /// to its own device). One that cannot be read costs the steps it
    /// saved, not the job: the run starts over from the seed.
    fn checkpoint(&self, config: &ModelConfig) -> Option<Checkpoint> {
        let bytes = self.saved.as_ref()?;
        let r = &self.request;
        let [c, t, h, w] = config.latent_shape(r.frames, r.height, r.width);
        let shape = [1, c, t, h, w];
        match Checkpoint::from_bytes(bytes, &self.model, r, &shape, &Device::Cpu) {
            Ok(c) => {
                self.executor
                    .metrics
                    .checkpoint_loads
                    .with_label_values(&["resumed"])
                    .inc();
                tracing::info!(job = %self.job, step = c.step, "resuming from a checkpoint");
                Some(c)
            }
            Err(e) => {
                self.executor
                    .checkpoint_unreadable(&self.job, &e.to_string());
                None
            }
        }
    }

    /// Denoises, reporting each step, making the preview at its step and
    /// stopping at a step boundary when asked. A gang: the DiT split over
    /// the ranks on this node (threads on the CPU, NCCL across GPUs), each
    /// loading its slices onto its device; rank 0 decodes. One device: the
    /// cached model.
    fn generate(
        &self,
        dir: &Path,
        checkpoint: Option<Checkpoint>,
        preview: &mut Option<JoinHandle<()>>,
    ) -> Result<Generated, RunError> {
        let tp_label = self.devices.len().to_string();
        let step_seconds = self
            .executor
            .metrics
            .step_seconds
            .with_label_values(&[self.model.as_str(), tp_label.as_str()]);
        let mut last = Instant::now();
        let mut periodic = Periodic::new(self.checkpoint_every);
        let mut on_step = |p: StepProgress| {
            step_seconds.observe(last.elapsed().as_secs_f64());
            if p.done < p.total && self.stop.requested().is_none() && periodic.due() {
                periodic.save(self, &p);
            }
            if self.preview_step == Some(p.done as u32) {
                match (p.preview)() {
                    Ok(video) => {
                        *preview = self.executor.store_preview(
                            &self.job,
                            &video,
                            self.fps,
                            &self.reporter,
                            &self.runtime,
                        );
                    }
                    Err(e) => tracing::warn!(job = %self.job, error = %e, "preview not decoded"),
                }
            }
            last = Instant::now();
            self.reporter.send(super::JobUpdate::Progress {
                step: p.done as u32,
                total: p.total as u32,
            });
            match self.stop.requested() {
                Some(_) => ControlFlow::Break(()),
                None => ControlFlow::Continue(()),
            }
        };
        let request = &self.request;
        let generated = if self.devices.len() > 1 {
            self.executor.evict_from(&self.devices);
            let devices = self
                .devices
                .iter()
                .map(|d| d.open())
                .collect::<Result<Vec<_>, _>>()?;
            generate_parallel(dir, &devices, request, checkpoint, &mut on_step)
        } else {
            let pipeline = self.executor.pipeline(&self.model, self.devices[0])?;
            pipeline
                .resume(request, checkpoint, &mut on_step)
                .and_then(|denoised| match denoised {
                    Denoised::Finished(latent) => {
                        let video = pipeline.decode(&latent, request)?;
                        Ok(Generated::Finished { latent, video })
                    }
                    Denoised::Stopped(c) => Ok(Generated::Stopped(c)),
                })
        };
        generated.map_err(|e| self.model_error(e))
    }

    /// A checkpoint of the run at `p`, its latent copied to the host (the
    /// only part done on the denoising thread: serialising happens later).
    fn host_checkpoint(&self, p: &StepProgress) -> Result<Checkpoint, ModelError> {
        Ok(Checkpoint {
            step: p.done,
            latent: p.latent.to_device(&Device::Cpu)?,
        })
    }

    /// The finished video's files, a stopped run's checkpoint when one was
    /// asked for, or nothing (cancelled).
    fn encode(&self, generated: Generated) -> Result<Rendered, RunError> {
        match (generated, self.stop.requested()) {
            (Generated::Finished { video, .. }, _) => Ok(Rendered::Video(
                video::encode_mp4(&video, self.fps)?,
                video::thumbnail_png(&video)?,
                video::spritesheet_png(&video)?,
            )),
            (Generated::Stopped(c), Some(StopRequest::Checkpoint)) => {
                let bytes = c
                    .to_bytes(&self.model, &self.request)
                    .map_err(|e| self.model_error(e))?;
                Ok(Rendered::Checkpoint(bytes, c.step as u32))
            }
            (Generated::Stopped(_), _) => Ok(Rendered::Stopped),
        }
    }
}

/// A run's periodic checkpoints: when the next is due, and the one still
/// being stored (a new one is not started before it is done, so the
/// scheduler hears of them in step order).
struct Periodic {
    every: Option<std::time::Duration>,
    last: Instant,
    storing: Option<JoinHandle<()>>,
    /// Steps of the checkpoints this run started storing, oldest first.
    saved: std::collections::VecDeque<u32>,
}

/// Checkpoints of a run kept in the store: the newest, and two before it
/// (the scheduler may not have recorded the newest yet when a worker dies).
const KEPT_CHECKPOINTS: usize = 3;

impl Periodic {
    fn new(every: Option<std::time::Duration>) -> Self {
        Self {
            every,
            last: Instant::now(),
            storing: None,
            saved: std::collections::VecDeque::new(),
        }
    }

    fn due(&self) -> bool {
        self.every.is_some_and(|every| self.last.elapsed() >= every)
            && self.storing.as_ref().is_none_or(|task| task.is_finished())
    }

    /// Copies the run's latent at `p` to the host and stores it in the
    /// background. A checkpoint that cannot be made is logged and skipped:
    /// the run goes on.
    fn save(&mut self, render: &Render, p: &StepProgress) {
        let began = Instant::now();
        self.last = began;
        let checkpoint = match render.host_checkpoint(p) {
            Ok(checkpoint) => checkpoint,
            Err(e) => {
                tracing::warn!(job = %render.job, step = p.done, error = %e, "periodic checkpoint not made");
                return;
            }
        };
        self.saved.push_back(p.done as u32);
        let superseded = (self.saved.len() > KEPT_CHECKPOINTS)
            .then(|| self.saved.pop_front())
            .flatten();
        let task = store_periodic(render, checkpoint, superseded, began);
        self.storing = Some(render.runtime.spawn(task));
    }
}

/// Serialises a running job's host checkpoint (off the denoising thread),
/// stores it as the file a preemption's would be (named by its step),
/// reports it, and removes the run's checkpoint it supersedes; its cost
/// teaches the checkpoint interval. One that fails is logged: the job goes
/// on, and the next one is taken on time.
fn store_periodic(
    render: &Render,
    checkpoint: Checkpoint,
    superseded: Option<u32>,
    began: Instant,
) -> impl std::future::Future<Output = ()> + Send + 'static {
    let executor = render.executor.clone();
    let (job, model, request) = (
        render.job.clone(),
        render.model.clone(),
        render.request.clone(),
    );
    let reporter = render.reporter.clone();
    let step = checkpoint.step as u32;
    async move {
        let serialised = tokio::task::spawn_blocking(move || checkpoint.to_bytes(&model, &request))
            .await
            .map_err(|e| e.to_string())
            .and_then(|made| made.map_err(|e| e.to_string()));
        let bytes = match serialised {
            Ok(bytes) => bytes,
            Err(error) => {
                tracing::warn!(%job, step, %error, "periodic checkpoint not made");
                return;
            }
        };
        let name = format!("checkpoint-{step}.safetensors");
        let kind = ("checkpoint", "application/octet-stream");
        let stored = match executor.store.put(&job, &name, kind.0, kind.1, bytes).await {
            Ok(stored) => stored,
            Err(e) => {
                tracing::warn!(%job, step, error = %e, "periodic checkpoint not stored");
                return;
            }
        };
        executor.checkpoints.record_cost(began.elapsed());
        tracing::info!(%job, step, "periodic checkpoint stored");
        reporter.send(super::JobUpdate::CheckpointSaved {
            checkpoint: genfleet_proto::JobCheckpoint {
                uri: stored.uri,
                step,
            },
        });
        // The run keeps its newest few: the scheduler points at one of
        // them, and older ones only fill the store.
        if let Some(old) = superseded {
            let name = format!("checkpoint-{old}.safetensors");
            if let Err(e) = executor.store.delete(&job, &name).await {
                tracing::warn!(%job, step = old, error = %e, "superseded checkpoint not removed");
            }
        }
    }
}
