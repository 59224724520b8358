//! Text to video: encode the prompt, denoise a latent with the DiT under
//! classifier-free guidance, decode it to RGB frames.

use std::ops::ControlFlow;
use std::path::Path;
use std::sync::Arc;

use candle_core::{DType, Device, IndexOp, Tensor};
use candle_nn::VarBuilder;

use super::checkpoint::Checkpoint;
use super::config::ModelConfig;
use super::decoder::Decoder;
use super::dit::Dit;
use super::layers::{mask_to_bias, TpBuilder};
pub use super::request::GenerateRequest;
use super::sampler::FlowSchedule;
use super::text::TextEncoder;
use super::weights::{load_weights, open_sharded, ModelManifest};
use super::ModelError;
use crate::parallel::{Communicator, Solo};
use crate::rng::SeededRng;

/// Decoded frames, each `height * width * 3` bytes of RGB.
#[derive(Debug, Clone)]
pub struct Video {
    pub width: usize,
    pub height: usize,
    pub frames: Vec<Vec<u8>>,
}

/// Where the sampler is after a step: step `done` of `total` finished.
#[derive(Clone, Copy)]
pub struct StepProgress<'a> {
    pub done: usize,
    pub total: usize,
    /// The latent after step `done`: with `done`, a checkpoint to resume
    /// from (periodic checkpoints copy it; the run does not change).
    pub latent: &'a Tensor,
    /// Decodes the sampler's current estimate of the final video (a
    /// preview); the run itself is not changed by calling it.
    pub preview: &'a dyn Fn() -> Result<Video, ModelError>,
}

impl std::fmt::Debug for StepProgress<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "StepProgress({}/{})", self.done, self.total)
    }
}

/// Where a denoising run ended.
#[derive(Debug)]
pub enum Denoised {
    /// Every step ran: the final latent.
    Finished(Tensor),
    /// Stopped at a step boundary: where to resume from.
    Stopped(Checkpoint),
}

/// A model that does not build over its saved weights: the file is at fault.
fn bad_weights(dir: &Path, error: ModelError) -> ModelError {
    match error {
        ModelError::Candle(c) => ModelError::BadFile {
            path: dir.join(super::weights::WEIGHTS_FILE),
            why: c.to_string(),
        },
        other => other,
    }
}

/// The DiT's inputs from the text, computed once per request.
#[derive(Debug, Clone)]
pub struct Conditioning {
    /// Embedded prompts (B, L, C): the prompt, then the negative prompt
    /// when guided.
    pub text: Tensor,
    /// Attention bias of the padding (B, 1, 1, L).
    pub bias: Tensor,
    /// Classifier-free guidance scale, if guided.
    pub guidance: Option<f64>,
}

pub struct Pipeline {
    config: ModelConfig,
    text: TextEncoder,
    dit: Dit,
    decoder: Decoder,
    device: Device,
    dtype: DType,
}

impl Pipeline {
    /// Builds the model over any var builder (saved weights or [`super::weights::SeededInit`]).
    pub fn build(config: &ModelConfig, vb: VarBuilder) -> Result<Self, ModelError> {
        Self::build_parallel(config, vb, Arc::new(Solo))
    }

    /// This rank's pipeline in a tensor-parallel group: the DiT's attention
    /// and feed-forward layers are split across the group (every rank runs
    /// `denoise` in step, on the same inputs, and gets the same latent); the
    /// text encoder and the decoder are replicated.
    pub fn build_parallel(
        config: &ModelConfig,
        vb: VarBuilder,
        comm: Arc<dyn Communicator>,
    ) -> Result<Self, ModelError> {
        Self::build_rank(config, TpBuilder::slicing(vb, comm))
    }

    fn build_rank(config: &ModelConfig, tp: TpBuilder) -> Result<Self, ModelError> {
        config.validate()?;
        let vb = &tp.vb;
        Ok(Self {
            config: config.clone(),
            text: TextEncoder::new(config, vb.pp("text"))?,
            dit: Dit::new(config, &tp)?,
            // The decoder is small and computes in f32 everywhere (the
            // scheduler's memory estimate counts it so; candle's CPU conv
            // has no bf16).
            decoder: Decoder::new(config, vb.pp("decoder").set_dtype(DType::F32))?,
            device: vb.device().clone(),
            dtype: vb.dtype(),
        })
    }

    /// This rank's pipeline of the model saved in `dir`: the split layers
    /// are read as this rank's slices only, the rest whole.
    pub fn load_rank(
        dir: &Path,
        device: &Device,
        comm: Arc<dyn Communicator>,
    ) -> Result<(ModelManifest, Self), ModelError> {
        let (manifest, vb, shards) = open_sharded(dir, device)?;
        let tp = TpBuilder::loading(vb, shards, comm);
        let pipeline = Self::build_rank(&manifest.config, tp).map_err(|e| bad_weights(dir, e))?;
        Ok((manifest, pipeline))
    }

    /// Builds preset `preset` in memory with weights from `seed`, as
    /// `genfleet model init` would create them (for benchmarks and tests).
    pub fn seeded(preset: &str, seed: u64, device: &Device) -> Result<Self, ModelError> {
        Self::seeded_parallel(preset, seed, device, Arc::new(Solo))
    }

    /// [`Self::seeded`] as one rank of a tensor-parallel group.
    pub fn seeded_parallel(
        preset: &str,
        seed: u64,
        device: &Device,
        comm: Arc<dyn Communicator>,
    ) -> Result<Self, ModelError> {
        let config = ModelConfig::preset(preset).ok_or_else(|| ModelError::UnknownPreset {
            name: preset.to_string(),
            known: super::PRESETS.join(", "),
        })?;
        let dtype = config.dtype_on(device);
        Self::seeded_as(&config, seed, device, dtype, comm)
    }

    /// [`Self::seeded_parallel`] computing in `dtype` whatever the device
    /// (tests run the GPU presets' bf16 on the CPU this way).
    pub fn seeded_as(
        config: &ModelConfig,
        seed: u64,
        device: &Device,
        dtype: DType,
        comm: Arc<dyn Communicator>,
    ) -> Result<Self, ModelError> {
        let init = super::weights::SeededInit::new(seed);
        Self::build_parallel(
            config,
            VarBuilder::from_backend(Box::new(init), dtype, device.clone()),
            comm,
        )
    }

    /// Loads the model saved in `dir`.
    pub fn load(dir: &Path, device: &Device) -> Result<(ModelManifest, Self), ModelError> {
        let (manifest, vb) = load_weights(dir, device)?;
        let pipeline = Self::build(&manifest.config, vb).map_err(|e| bad_weights(dir, e))?;
        Ok((manifest, pipeline))
    }

    pub fn config(&self) -> &ModelConfig {
        &self.config
    }

    /// What the weights and activations are; latents stay f32 throughout.
    pub fn dtype(&self) -> DType {
        self.dtype
    }

    pub fn device(&self) -> &Device {
        &self.device
    }

    /// The starting noise of a request: (1, C, T, h, w), from the seed alone.
    pub fn initial_latent(&self, request: &GenerateRequest) -> Result<Tensor, ModelError> {
        let shape = self
            .config
            .latent_shape(request.frames, request.height, request.width);
        let n: usize = shape.iter().product();
        let noise = SeededRng::new(request.seed).normals(n);
        let [c, t, h, w] = shape;
        Ok(Tensor::from_vec(noise, (1, c, t, h, w), &self.device)?)
    }

    /// Runs the whole request. `on_step` is called after every denoising step
    /// and may stop the run by returning `Break` (then `Ok(None)`).
    pub fn generate(
        &self,
        request: &GenerateRequest,
        on_step: &mut dyn FnMut(StepProgress) -> ControlFlow<()>,
    ) -> Result<Option<Video>, ModelError> {
        match self.resume(request, None, on_step)? {
            Denoised::Finished(latent) => Ok(Some(self.decode(&latent, request)?)),
            Denoised::Stopped(_) => Ok(None),
        }
    }

    /// Denoises from `checkpoint` (or from the seed's noise), stopping at a
    /// step boundary if `on_step` asks to.
    pub fn resume(
        &self,
        request: &GenerateRequest,
        checkpoint: Option<Checkpoint>,
        on_step: &mut dyn FnMut(StepProgress) -> ControlFlow<()>,
    ) -> Result<Denoised, ModelError> {
        let (latent, from_step) = match checkpoint {
            // A checkpoint is read to the host: onto this rank's device.
            Some(c) => (c.latent.to_device(&self.device)?, c.step),
            None => (self.initial_latent(request)?, 0),
        };
        self.denoise(request, latent, from_step, on_step)
    }

    /// The latent shape a request needs: (1, C, T, h, w).
    pub fn latent_shape(&self, request: &GenerateRequest) -> [usize; 5] {
        let [c, t, h, w] = self
            .config
            .latent_shape(request.frames, request.height, request.width);
        [1, c, t, h, w]
    }

    /// Denoising steps `from_step..steps` starting at `latent`. Resuming
    /// from a step's latent runs the same operations in the same order as
    /// an uninterrupted run, so on one device the result is bit-identical.
    pub fn denoise(
        &self,
        request: &GenerateRequest,
        mut latent: Tensor,
        from_step: usize,
        on_step: &mut dyn FnMut(StepProgress) -> ControlFlow<()>,
    ) -> Result<Denoised, ModelError> {
        let schedule = FlowSchedule::new(request.steps, self.config.sample_shift);
        let conditioning = self.condition(request)?;
        for i in from_step..schedule.steps() {
            let _span = tracing::debug_span!("denoise_step", step = i).entered();
            let before = latent.clone();
            latent = self.step(
                &conditioning,
                &before,
                schedule.timestep(i),
                schedule.delta(i),
            )?;
            let preview = || {
                let estimate = estimate_final(&before, &latent, &schedule, i)?;
                self.decode(&estimate, request)
            };
            let progress = StepProgress {
                done: i + 1,
                total: schedule.steps(),
                latent: &latent,
                preview: &preview,
            };
            if on_step(progress).is_break() && i + 1 < schedule.steps() {
                return Ok(Denoised::Stopped(Checkpoint {
                    step: i + 1,
                    latent,
                }));
            }
        }
        Ok(Denoised::Finished(latent))
    }

    /// What the DiT attends to for `request`: the embedded prompt, and the
    /// negative prompt beside it when guidance is on.
    pub fn condition(&self, request: &GenerateRequest) -> Result<Conditioning, ModelError> {
        let guided = request.guidance != 1.0;
        let prompts: Vec<&str> = if guided {
            vec![&request.prompt, &request.negative_prompt]
        } else {
            vec![&request.prompt]
        };
        let (tokens, mask) = self.text.encode(&prompts)?;
        Ok(Conditioning {
            text: self.dit.embed_text(&tokens)?,
            bias: mask_to_bias(&mask)?.to_dtype(self.dtype)?,
            guidance: if guided { Some(request.guidance) } else { None },
        })
    }

    /// One Euler step of the flow at model timestep `timestep`: the DiT
    /// predicts the velocity (both guidance branches in one batch), and the
    /// latent moves by `delta` (sigma_next - sigma) along it.
    pub fn step(
        &self,
        conditioning: &Conditioning,
        latent: &Tensor,
        timestep: f64,
        delta: f64,
    ) -> Result<Tensor, ModelError> {
        let batch = conditioning.text.dim(0)?;
        let t = Tensor::full(timestep as f32, batch, &self.device)?;
        // The latent and the update stay f32; the DiT runs in the model's dtype.
        let x = latent.repeat((batch, 1, 1, 1, 1))?.to_dtype(self.dtype)?;
        let v = self
            .dit
            .forward(&x, &t, &conditioning.text, &conditioning.bias)?
            .to_dtype(DType::F32)?;
        let v = match conditioning.guidance {
            Some(scale) => {
                let (cond, uncond) = (v.i(0..1)?, v.i(1..2)?);
                (&uncond + ((cond - &uncond)? * scale)?)?
            }
            None => v,
        };
        Ok((latent + (v * delta)?)?)
    }

    /// Decodes a final latent (1, C, T, h, w) to RGB bytes.
    pub fn decode(&self, latent: &Tensor, request: &GenerateRequest) -> Result<Video, ModelError> {
        let frames = self.decoder.decode(&latent.i(0)?, request.frames)?;
        // (F, 3, H, W) in [0, 1] -> (F, H, W, 3) bytes.
        let bytes = (frames.permute((0, 2, 3, 1))? * 255.0)?
            .round()?
            .clamp(0.0, 255.0)?
            .to_dtype(DType::U8)?;
        let frame_len = request.height * request.width * 3;
        let all: Vec<u8> = bytes.flatten_all()?.to_vec1()?;
        Ok(Video {
            width: request.width,
            height: request.height,
            frames: all.chunks(frame_len).map(<[u8]>::to_vec).collect(),
        })
    }
}

/// The final latent as step `i` predicts it. The flow moves x from noise
/// (sigma 1) to data (sigma 0) along v = noise - data, so data = x - sigma * v;
/// v is what step `i` moved by: (after - before) / delta.
fn estimate_final(
    before: &Tensor,
    after: &Tensor,
    schedule: &FlowSchedule,
    i: usize,
) -> Result<Tensor, ModelError> {
    let velocity = ((after - before)? / schedule.delta(i))?;
    Ok((after - (velocity * schedule.sigma(i + 1))?)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::init_model;

    fn request(prompt: &str, seed: u64) -> GenerateRequest {
        GenerateRequest {
            prompt: prompt.into(),
            negative_prompt: String::new(),
            frames: 9,
            width: 64,
            height: 48,
            steps: 3,
            seed,
            guidance: 4.0,
        }
    }

    fn tiny() -> (tempfile::TempDir, Pipeline) {
        installed("tiny")
    }

    /// Model `name` as a worker has it: installed by `init_model`, loaded.
    fn installed(name: &str) -> (tempfile::TempDir, Pipeline) {
        let root = tempfile::tempdir().expect("tempdir");
        let report = init_model(root.path(), name, 0, false).expect("init");
        let (_, pipeline) = Pipeline::load(&report.dir, &Device::Cpu).expect("load");
        (root, pipeline)
    }

    fn run(p: &Pipeline, r: &GenerateRequest) -> Video {
        p.generate(r, &mut |_| ControlFlow::Continue(()))
            .expect("generate")
            .expect("not stopped")
    }

    #[test]
    fn generates_the_requested_frames_deterministically() {
        let (_root, p) = tiny();
        let mut steps = Vec::new();
        let video = p
            .generate(&request("a fox", 1), &mut |s| {
                steps.push(s.done);
                ControlFlow::Continue(())
            })
            .expect("generate")
            .expect("ran");
        assert_eq!(steps, vec![1, 2, 3]);
        assert_eq!(video.frames.len(), 9);
        assert!(video.frames.iter().all(|f| f.len() == 64 * 48 * 3));
        let distinct: std::collections::BTreeSet<u8> = video.frames[4].iter().copied().collect();
        assert!(
            distinct.len() > 16,
            "a frame is not flat: {} values",
            distinct.len()
        );

        let again = run(&p, &request("a fox", 1));
        assert_eq!(
            video.frames, again.frames,
            "same seed and prompt, same video"
        );
        assert_ne!(
            video.frames,
            run(&p, &request("a fox", 2)).frames,
            "seed matters"
        );
        assert_ne!(
            video.frames,
            run(&p, &request("a cat", 1)).frames,
            "prompt matters"
        );
    }

    /// A preview decodes the estimate of the final video part way through:
    /// a full video of the request's size, nearer the final one than the
    /// noise is, the final one itself at the last step; and making one
    /// leaves the run's video bit for bit as it was.
    #[test]
    fn a_preview_estimates_the_video_and_leaves_the_run_unchanged() {
        let (_root, p) = tiny();
        let mut r = request("a lighthouse", 5);
        r.steps = 6;
        let plain = run(&p, &r);
        let mut previews = Vec::new();
        let with_previews = p
            .generate(&r, &mut |s| {
                previews.push((s.preview)().expect("preview"));
                ControlFlow::Continue(())
            })
            .expect("generate")
            .expect("ran");
        assert_eq!(
            with_previews.frames, plain.frames,
            "a preview changed the video"
        );
        assert_eq!(previews.len(), 6);
        for preview in &previews {
            assert_eq!(preview.frames.len(), r.frames);
            assert_eq!((preview.width, preview.height), (r.width, r.height));
        }
        assert_eq!(
            previews[5].frames, plain.frames,
            "at the end, the estimate is the video"
        );
        // Later estimates are nearer the video than the first.
        let distance = |v: &Video| -> u64 {
            v.frames
                .iter()
                .flatten()
                .zip(plain.frames.iter().flatten())
                .map(|(a, b)| u64::from(a.abs_diff(*b)))
                .sum()
        };
        assert!(
            distance(&previews[4]) < distance(&previews[0]),
            "{} vs {}",
            distance(&previews[4]),
            distance(&previews[0])
        );
    }

    #[test]
    fn a_job_stopped_at_a_step_and_resumed_elsewhere_makes_the_same_video() {
        stopped_and_resumed_makes_the_same_video("tiny", "a heron");
        // The trained model, on a prompt of its world.
        stopped_and_resumed_makes_the_same_video("world", "a red circle moves to the left");
    }

    fn stopped_and_resumed_makes_the_same_video(model: &str, prompt: &str) {
        let (_root, p) = installed(model);
        let r = request(prompt, 7);
        let whole = run(&p, &r);
        for stop_after in 1..r.steps {
            let stopped = p
                .resume(&r, None, &mut |s| {
                    if s.done == stop_after {
                        ControlFlow::Break(())
                    } else {
                        ControlFlow::Continue(())
                    }
                })
                .expect("denoise");
            let Denoised::Stopped(checkpoint) = stopped else {
                panic!("not stopped after step {stop_after}")
            };
            assert_eq!(checkpoint.step, stop_after);
            // Through bytes, as it goes through the artifact store, and
            // into a second pipeline loaded from the same weights.
            let bytes = checkpoint.to_bytes(model, &r).expect("encode");
            let (_other_root, other) = installed(model);
            let shape = other.latent_shape(&r);
            let restored =
                Checkpoint::from_bytes(&bytes, model, &r, &shape, &Device::Cpu).expect("decode");
            let resumed = other
                .resume(&r, Some(restored), &mut |_| ControlFlow::Continue(()))
                .expect("resume");
            let Denoised::Finished(latent) = resumed else {
                panic!("resumed run stopped")
            };
            let video = other.decode(&latent, &r).expect("decode video");
            assert_eq!(
                video.frames, whole.frames,
                "{model} stopped after step {stop_after}"
            );
        }
    }

    #[test]
    fn a_checkpoint_for_another_request_or_damaged_is_refused() {
        let (_root, p) = tiny();
        let r = request("a heron", 7);
        let Denoised::Stopped(checkpoint) = p
            .resume(&r, None, &mut |_| ControlFlow::Break(()))
            .expect("denoise")
        else {
            panic!("not stopped")
        };
        let bytes = checkpoint.to_bytes("tiny", &r).expect("encode");
        let shape = p.latent_shape(&r);
        let load = |bytes: &[u8], model: &str, r: &GenerateRequest| {
            Checkpoint::from_bytes(bytes, model, r, &shape, &Device::Cpu)
                .expect_err("refused")
                .to_string()
        };
        assert!(load(&bytes, "tiny", &request("a heron", 8)).contains("another request"));
        assert!(load(&bytes, "small", &r).contains("another request"));
        assert!(load(&bytes[..bytes.len() / 2], "tiny", &r).contains("checkpoint"));
        assert!(load(b"garbage", "tiny", &r).contains("not a checkpoint"));
        let err = Checkpoint::from_bytes(&bytes, "tiny", &r, &[1, 2, 3], &Device::Cpu)
            .expect_err("wrong shape")
            .to_string();
        assert!(err.contains("shape"), "{err}");
    }

    #[test]
    fn a_stop_request_ends_the_run_after_that_step() {
        let (_root, p) = tiny();
        let mut calls = 0;
        let result = p
            .generate(&request("x", 1), &mut |_| {
                calls += 1;
                ControlFlow::Break(())
            })
            .expect("generate");
        assert!(result.is_none());
        assert_eq!(calls, 1);
    }

    #[test]
    fn init_is_reproducible_and_does_not_overwrite() {
        let a = tempfile::tempdir().expect("tempdir");
        let b = tempfile::tempdir().expect("tempdir");
        let ra = init_model(a.path(), "tiny", 5, false).expect("init a");
        init_model(b.path(), "tiny", 5, false).expect("init b");
        let file = |d: &Path| {
            std::fs::read(d.join("tiny").join(super::super::weights::WEIGHTS_FILE)).expect("read")
        };
        assert_eq!(file(a.path()), file(b.path()), "same seed, same bytes");
        assert!(ra.created && ra.parameters > 1_000_000);
        let again = init_model(a.path(), "tiny", 6, false).expect("init again");
        assert!(!again.created);
        assert_eq!(file(a.path()), file(b.path()), "left alone");
    }

    #[test]
    fn a_damaged_weights_file_is_a_clear_error() {
        let root = tempfile::tempdir().expect("tempdir");
        let report = init_model(root.path(), "tiny", 0, false).expect("init");
        std::fs::write(
            report.dir.join(super::super::weights::WEIGHTS_FILE),
            b"not safetensors",
        )
        .expect("write");
        let err = Pipeline::load(&report.dir, &Device::Cpu)
            .err()
            .expect("must fail")
            .to_string();
        assert!(
            err.contains("model.safetensors") && err.contains("not a usable"),
            "{err}"
        );
        let err = crate::model::init_model(root.path(), "giant", 0, false)
            .expect_err("unknown")
            .to_string();
        assert!(err.contains("giant") && err.contains("tiny"), "{err}");
    }
}
