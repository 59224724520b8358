//! Trains the `world` preset on the procedural world with candle's autograd
//! and Adam, in two stages:
//!
//! 1. an autoencoder: the encoder here and the model's own decoder learn to
//!    carry clips through the latent (reconstruction loss); the latent is
//!    then rescaled to unit spread, as the sampler's noise assumes;
//! 2. the text encoder and the DiT, by flow matching on those latents
//!    (Lipman et al., 2023): from x = (1 - s) z + s e the DiT predicts
//!    e - z, with a caption one time in ten left empty so that
//!    classifier-free guidance has an unconditional model to push from.
//!
//! Everything comes from the seed: the initial weights (as `model init`
//! makes the seeded presets) and every batch (from the seed and the step
//! number), so a run is reproduced by its command. A checkpoint every few
//! hundred steps holds the weights and the optimizer's moments, so an
//! interrupted run resumes to the weights an uninterrupted one makes.

mod encoder;
pub mod eval;
mod optimizer;
mod vars;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use candle_core::{DType, Device, Tensor};
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::model::decoder::Decoder;
use crate::model::dit::Dit;
use crate::model::layers::{mask_to_bias, TpBuilder};
use crate::model::sampler::shifted;
use crate::model::text::TextEncoder;
use crate::model::weights::{io_error, replace_file, save_model, InitReport, Origin};
use crate::model::{ModelConfig, ModelError};
use crate::parallel::Solo;
use crate::rng::SeededRng;
use crate::world::{self, Split};
use encoder::Encoder;
use optimizer::Adam;
use vars::SeededVars;

/// The preset this trains.
pub const PRESET: &str = "world";

/// What a run does; the defaults make the shipped weights.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainOptions {
    pub seed: u64,
    pub autoencoder_steps: usize,
    pub dit_steps: usize,
    /// Clips per step.
    pub batch: usize,
    pub autoencoder_learning_rate: f64,
    pub dit_learning_rate: f64,
    /// Clip length and side in pixels.
    pub frames: usize,
    pub size: usize,
    pub checkpoint_every: usize,
}

impl Default for TrainOptions {
    fn default() -> Self {
        Self {
            seed: 2026,
            autoencoder_steps: 400,
            dit_steps: 6000,
            batch: 8,
            autoencoder_learning_rate: 2e-3,
            dit_learning_rate: 1e-3,
            frames: 17,
            size: 64,
            checkpoint_every: 200,
        }
    }
}

/// One step's report.
#[derive(Debug, Clone)]
pub struct Progress {
    pub stage: &'static str,
    /// Steps done, over both stages.
    pub step: usize,
    pub total: usize,
    pub loss: f32,
    pub seconds: f64,
}

/// Where training checkpoints live under its work directory.
const CHECKPOINT_WEIGHTS: &str = "checkpoint.safetensors";
const CHECKPOINT_MOMENTS: &str = "optimizer.safetensors";
const CHECKPOINT_STATE: &str = "checkpoint.json";

#[derive(Debug, Serialize, Deserialize)]
struct CheckpointState {
    options: TrainOptions,
    step: usize,
    /// Steps each optimizer (autoencoder, diffusion) has taken; absent in
    /// checkpoints made before their moments were saved.
    #[serde(default)]
    optimizer_steps: Option<[u64; 2]>,
}

/// The two stages' optimizers, and the prefixes of their moments in a
/// checkpoint.
struct Optimizers {
    autoencoder: Adam,
    dit: Adam,
}

const AUTOENCODER_MOMENTS: &str = "autoencoder/";
const DIT_MOMENTS: &str = "dit/";

/// What the seeded presets' linear weights are scaled by before training:
/// 1/sqrt(3), which makes their spread PyTorch's default (uniform within
/// 1/sqrt(fan_in)). A PyTorch copy of this training learned motion to 74%
/// of held-out captions in 4,000 steps from that init, and to 17% from
/// the presets' own.
const LINEAR_INIT_SCALE: f64 = 0.577_350_269_189_625_8;

/// Names of the tensors training owns but the shipped model does not.
const ENCODER: &str = "encoder.";
/// Names of the tensors the first stage trains; the second trains the rest.
const AUTOENCODER: [&str; 2] = [ENCODER, "decoder."];

struct Model {
    vars: SeededVars,
    config: ModelConfig,
    text: TextEncoder,
    dit: Dit,
    decoder: Decoder,
    encoder: Encoder,
}

impl Model {
    fn new(seed: u64) -> Result<Self, ModelError> {
        let config = ModelConfig::preset(PRESET).ok_or_else(|| ModelError::UnknownPreset {
            name: PRESET.into(),
            known: crate::model::PRESETS.join(", "),
        })?;
        let vars = SeededVars::new(seed);
        let vb = vars.builder();
        let tp = TpBuilder::slicing(vb.clone(), Arc::new(Solo));
        let model = Self {
            text: TextEncoder::new(&config, vb.pp("text"))?,
            dit: Dit::new(&config, &tp)?,
            decoder: Decoder::new(&config, vb.pp("decoder"))?,
            encoder: Encoder::new(&config, vb.pp("encoder"))?,
            config,
            vars,
        };
        // Narrower linear layers to start from, as PyTorch's default
        // init makes them: from the seeded presets' init, the DiT took
        // far longer to learn where the object goes (see LINEAR_INIT_SCALE).
        for (name, var) in model.vars.without_prefix(&AUTOENCODER) {
            let linear = name.ends_with(".weight") && var.as_tensor().rank() == 2;
            if linear && !name.starts_with("text.embedding") {
                model.vars.scale(&name, LINEAR_INIT_SCALE)?;
            }
        }
        Ok(model)
    }
}

/// Clips of step `step` of a stage: (scene, frames (F, 3, S, S) in [0, 1]).
fn clips(
    options: &TrainOptions,
    stage: u64,
    step: usize,
) -> Result<Vec<(world::Scene, Tensor)>, ModelError> {
    let seed = options.seed ^ (stage << 56) ^ step as u64;
    let scenes: Vec<world::Scene> = (0..options.batch)
        .map(|i| world::scene(Split::Train, &mut SeededRng::for_name(seed, &i.to_string())))
        .collect();
    let rendered: Vec<Vec<f32>> = scenes
        .par_iter()
        .map(|s| {
            let frames = s.render(options.frames, options.size);
            // (F, S, S, 3) bytes -> (F, 3, S, S) in [0, 1]
            let (f, n) = (frames.len(), options.size * options.size);
            let mut out = vec![0f32; f * 3 * n];
            for (t, frame) in frames.iter().enumerate() {
                for (p, rgb) in frame.chunks_exact(3).enumerate() {
                    for c in 0..3 {
                        out[(t * 3 + c) * n + p] = f32::from(rgb[c]) / 255.0;
                    }
                }
            }
            out
        })
        .collect();
    let shape = (options.frames, 3, options.size, options.size);
    scenes
        .into_iter()
        .zip(rendered)
        .map(|(s, data)| Ok((s, Tensor::from_vec(data, shape, &Device::Cpu)?)))
        .collect()
}

fn mse(a: &Tensor, b: &Tensor) -> candle_core::Result<Tensor> {
    (a - b)?.sqr()?.mean_all()
}

/// One autoencoder step's loss: reconstruction of the key frames from
/// their latents, plus a little pull of the latent towards zero (it keeps
/// its spread bounded for the rescale). Frames between key frames are
/// decoded from interpolated latents and need nothing of their own; the
/// decoder's backward pass over all 17 frames cost 3.5 times as much.
fn autoencoder_loss(model: &Model, clips: &[(world::Scene, Tensor)]) -> Result<Tensor, ModelError> {
    let mut total: Option<Tensor> = None;
    for (_, frames) in clips {
        let z = model.encoder.encode(frames)?;
        let decoded = model.decoder.decode_frames(&z.transpose(0, 1)?)?;
        let keys = model.encoder.key_frames(frames)?;
        let loss = (mse(&decoded, &keys)? + (z.sqr()?.mean_all()? * 1e-4)?)?;
        total = Some(match total {
            Some(t) => (t + loss)?,
            None => loss,
        });
    }
    let total = total.ok_or_else(|| ModelError::InvalidConfig("a batch of no clips".into()))?;
    Ok((total / clips.len() as f64)?)
}

/// The latents of `clips`, out of the gradient's way: (B, C, T, h, w).
fn latents(model: &Model, clips: &[(world::Scene, Tensor)]) -> Result<Tensor, ModelError> {
    let z: Vec<Tensor> = clips
        .iter()
        .map(|(_, f)| model.encoder.encode(f).map(|z| z.detach()))
        .collect::<candle_core::Result<_>>()?;
    Ok(Tensor::stack(&z, 0)?)
}

/// Makes the latent's spread 1: the encoder's output divided by its
/// standard deviation, the decoder's inputs multiplied by it.
fn normalize_latent(model: &Model, options: &TrainOptions) -> Result<f64, ModelError> {
    let z = latents(model, &clips(options, 3, 0)?)?;
    let std = f64::from(z.flatten_all()?.var(0)?.sqrt()?.to_scalar::<f32>()?).max(1e-3);
    let vars = &model.vars;
    vars.scale("encoder.conv_out.weight", 1.0 / std)?;
    vars.scale("encoder.conv_out.bias", 1.0 / std)?;
    vars.scale("decoder.conv_in.weight", std)?;
    vars.scale("decoder.skip.weight", std)?;
    Ok(std)
}

/// One flow-matching step's loss.
fn flow_loss(
    model: &Model,
    clips: &[(world::Scene, Tensor)],
    rng: &mut SeededRng,
) -> Result<Tensor, ModelError> {
    let z = latents(model, clips)?;
    let b = clips.len();
    let device = z.device();
    // Noise levels from a logit-normal (Esser et al., 2024), shifted as
    // the sampler shifts its schedule: training goes where the sampler
    // spends its steps. High noise is where a video's layout (where the
    // object is, which way it goes) is decided.
    let shift = model.config.sample_shift;
    let sigmas: Vec<f32> = (0..b)
        .map(|_| shifted(1.0 / (1.0 + (-rng.normal()).exp()), shift) as f32)
        .collect();
    let sigma = Tensor::from_vec(sigmas.clone(), (b, 1, 1, 1, 1), device)?;
    let noise = Tensor::from_vec(rng.normals(z.elem_count()), z.shape(), device)?;
    let x = (z.broadcast_mul(&(1.0 - &sigma)?)? + noise.broadcast_mul(&sigma)?)?;
    let target = (&noise - &z)?;
    let prompts: Vec<String> = clips
        .iter()
        .map(|(scene, _)| {
            if rng.uniform() < 0.1 {
                String::new()
            } else {
                world::caption(scene, rng)
            }
        })
        .collect();
    let prompts: Vec<&str> = prompts.iter().map(String::as_str).collect();
    let (tokens, mask) = model.text.encode(&prompts)?;
    let text = model.dit.embed_text(&tokens)?;
    let bias = mask_to_bias(&mask)?;
    let t = Tensor::from_vec(
        sigmas
            .iter()
            .map(|s| s * crate::model::sampler::TRAIN_TIMESTEPS as f32)
            .collect(),
        b,
        device,
    )?;
    let predicted = model.dit.forward(&x, &t, &text, &bias)?;
    Ok(mse(&predicted, &target)?)
}

impl Optimizers {
    fn new(model: &Model, options: &TrainOptions) -> Result<Self, ModelError> {
        Ok(Self {
            autoencoder: Adam::new(
                model.vars.with_prefix(&AUTOENCODER),
                options.autoencoder_learning_rate,
            )?,
            dit: Adam::new(
                model.vars.without_prefix(&AUTOENCODER),
                options.dit_learning_rate,
            )?,
        })
    }
}

fn save_checkpoint(
    model: &Model,
    optimizers: &Optimizers,
    options: &TrainOptions,
    step: usize,
    work: &Path,
) -> Result<(), ModelError> {
    std::fs::create_dir_all(work).map_err(io_error(work))?;
    replace_file(&work.join(CHECKPOINT_WEIGHTS), |partial| {
        Ok(model.vars.map().save(partial)?)
    })?;
    let mut moments = optimizers.autoencoder.moments(AUTOENCODER_MOMENTS);
    moments.extend(optimizers.dit.moments(DIT_MOMENTS));
    replace_file(&work.join(CHECKPOINT_MOMENTS), |partial| {
        Ok(candle_core::safetensors::save(&moments, partial)?)
    })?;
    let state = CheckpointState {
        options: options.clone(),
        step,
        optimizer_steps: Some([optimizers.autoencoder.steps(), optimizers.dit.steps()]),
    };
    let path = work.join(CHECKPOINT_STATE);
    let json =
        serde_json::to_vec_pretty(&state).map_err(|e| ModelError::Checkpoint(e.to_string()))?;
    std::fs::write(&path, json).map_err(io_error(&path))
}

/// The step to resume from: that of the checkpoint in `work` if it was made
/// with the same options (its weights and the optimizers' moments are then
/// loaded), else 0.
fn resume(
    model: &Model,
    optimizers: &mut Optimizers,
    options: &TrainOptions,
    work: &Path,
) -> Result<usize, ModelError> {
    let path = work.join(CHECKPOINT_STATE);
    let Ok(bytes) = std::fs::read(&path) else {
        return Ok(0);
    };
    let state: CheckpointState =
        serde_json::from_slice(&bytes).map_err(|e| ModelError::BadFile {
            path: path.clone(),
            why: e.to_string(),
        })?;
    // More (or fewer) diffusion steps extend (or end) the same run; any
    // other change makes another run.
    let same_run = TrainOptions {
        dit_steps: options.dit_steps,
        ..state.options.clone()
    };
    if &same_run != options {
        return Err(ModelError::Checkpoint(format!(
            "{} was made with other options ({:?}); remove it or pass the same options \
             (only --dit-steps may change)",
            path.display(),
            state.options
        )));
    }
    let weights = work.join(CHECKPOINT_WEIGHTS);
    let tensors = candle_core::safetensors::load(&weights, &Device::Cpu).map_err(|e| {
        ModelError::BadFile {
            path: weights.clone(),
            why: e.to_string(),
        }
    })?;
    let data = model
        .vars
        .map()
        .data()
        .lock()
        .unwrap_or_else(|e| e.into_inner());
    for (name, var) in data.iter() {
        let saved = tensors.get(name).ok_or_else(|| ModelError::BadFile {
            path: weights.clone(),
            why: format!("no tensor {name}"),
        })?;
        var.set(saved)?;
    }
    drop(data);
    if let Some([autoencoder_steps, dit_steps]) = state.optimizer_steps {
        let path = work.join(CHECKPOINT_MOMENTS);
        let bad = |why: String| ModelError::BadFile {
            path: path.clone(),
            why,
        };
        let moments =
            candle_core::safetensors::load(&path, &Device::Cpu).map_err(|e| bad(e.to_string()))?;
        optimizers
            .autoencoder
            .restore(&moments, AUTOENCODER_MOMENTS, autoencoder_steps)
            .map_err(bad)?;
        optimizers
            .dit
            .restore(&moments, DIT_MOMENTS, dit_steps)
            .map_err(bad)?;
    }
    Ok(state.step)
}

/// What a finished run made.
#[derive(Debug, Clone)]
pub struct TrainReport {
    pub model: InitReport,
    pub final_loss: f32,
    pub latent_std: Option<f64>,
}

/// Trains from `options`, checkpointing in `work`, and saves the model as
/// `<models>/world`. `on_progress` hears every step.
pub fn train(
    options: &TrainOptions,
    work: &Path,
    models: &Path,
    on_progress: &mut dyn FnMut(&Progress),
) -> Result<TrainReport, ModelError> {
    if options.batch == 0 || options.frames == 0 || !options.size.is_multiple_of(16) {
        return Err(ModelError::InvalidConfig(
            "training needs a batch of at least 1, at least one frame and a size that is a multiple of 16".into(),
        ));
    }
    let model = Model::new(options.seed)?;
    let mut optimizers = Optimizers::new(&model, options)?;
    let start = resume(&model, &mut optimizers, options, work)?;
    let total = options.autoencoder_steps + options.dit_steps;
    let began = Instant::now();
    let (mut final_loss, mut latent_std) = (f32::NAN, None);
    for step in start..total {
        let in_autoencoder = step < options.autoencoder_steps;
        if step == options.autoencoder_steps {
            latent_std = Some(normalize_latent(&model, options)?);
        }
        let (stage, loss) = if in_autoencoder {
            let loss = autoencoder_loss(&model, &clips(options, 1, step)?)?;
            optimizers.autoencoder.backward_step(&loss)?;
            ("autoencoder", loss)
        } else {
            let mut rng = SeededRng::for_name(options.seed, &format!("flow-{step}"));
            let loss = flow_loss(&model, &clips(options, 2, step)?, &mut rng)?;
            optimizers.dit.backward_step(&loss)?;
            ("diffusion", loss)
        };
        final_loss = loss.to_dtype(DType::F32)?.to_scalar::<f32>()?;
        if !final_loss.is_finite() {
            return Err(ModelError::InvalidConfig(format!(
                "the {stage} loss became {final_loss} at step {step}; lower the learning rate"
            )));
        }
        on_progress(&Progress {
            stage,
            step: step + 1,
            total,
            loss: final_loss,
            seconds: began.elapsed().as_secs_f64(),
        });
        if (step + 1) % options.checkpoint_every.max(1) == 0 {
            save_checkpoint(&model, &optimizers, options, step + 1, work)?;
        }
    }
    // The end is a checkpoint too: a longer run continues from it.
    if total > start && !total.is_multiple_of(options.checkpoint_every.max(1)) {
        save_checkpoint(&model, &optimizers, options, total, work)?;
    }
    let tensors = model
        .vars
        .map()
        .data()
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .iter()
        .filter(|(name, _)| !name.starts_with(ENCODER))
        .map(|(name, var)| (name.clone(), var.as_tensor().clone()))
        .collect();
    let report = save_model(
        models,
        PRESET,
        Origin::Trained(options.seed),
        &model.config,
        &tensors,
    )?;
    Ok(TrainReport {
        model: report,
        final_loss,
        latent_std,
    })
}

/// The mean of the last `n` losses.
pub fn mean_tail(losses: &[f32], n: usize) -> f32 {
    let tail = &losses[losses.len().saturating_sub(n)..];
    tail.iter().sum::<f32>() / tail.len().max(1) as f32
}

/// Where `genfleet model train` keeps its checkpoints by default.
pub fn default_work_dir(models: &Path) -> PathBuf {
    models.join(".train-world")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn quick(autoencoder_steps: usize, dit_steps: usize) -> TrainOptions {
        TrainOptions {
            autoencoder_steps,
            dit_steps,
            batch: 2,
            frames: 5,
            size: 32,
            checkpoint_every: 1000,
            ..Default::default()
        }
    }

    #[test]
    fn a_few_steps_of_each_stage_lower_the_loss() {
        // One fixed batch, seen again and again: its loss must fall.
        let options = quick(25, 25);
        let mut losses: Vec<(&'static str, f32)> = Vec::new();
        let model = Model::new(options.seed).expect("model");
        let batch = clips(&options, 1, 0).expect("clips");
        let mut opt = Adam::new(
            model.vars.with_prefix(&AUTOENCODER),
            options.autoencoder_learning_rate,
        )
        .expect("adam");
        for _ in 0..options.autoencoder_steps {
            let loss = autoencoder_loss(&model, &batch).expect("loss");
            opt.backward_step(&loss).expect("step");
            losses.push(("ae", loss.to_scalar::<f32>().expect("scalar")));
        }
        normalize_latent(&model, &options).expect("normalize");
        let mut opt = Adam::new(
            model.vars.without_prefix(&AUTOENCODER),
            options.dit_learning_rate * 2.0,
        )
        .expect("adam");
        for _ in 0..options.dit_steps {
            let mut rng = SeededRng::new(9);
            let loss = flow_loss(&model, &batch, &mut rng).expect("loss");
            opt.backward_step(&loss).expect("step");
            losses.push(("flow", loss.to_scalar::<f32>().expect("scalar")));
        }
        for stage in ["ae", "flow"] {
            let l: Vec<f32> = losses
                .iter()
                .filter(|(s, _)| *s == stage)
                .map(|(_, l)| *l)
                .collect();
            let (first, last) = (l[0], mean_tail(&l, 3));
            assert!(
                last < 0.7 * first,
                "{stage} loss went from {first} to {last}: {l:?}"
            );
        }
    }

    #[test]
    fn a_run_saves_a_model_the_pipeline_loads_and_resumes_from_its_checkpoint() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (work, models) = (dir.path().join("work"), dir.path().join("models"));
        let options = TrainOptions {
            checkpoint_every: 2,
            ..quick(2, 2)
        };
        let mut steps = Vec::new();
        let report = train(&options, &work, &models, &mut |p| steps.push(p.step)).expect("train");
        assert_eq!(steps, vec![1, 2, 3, 4]);
        assert!(report.latent_std.is_some());
        let (manifest, _pipeline) =
            crate::model::Pipeline::load(&report.model.dir, &Device::Cpu).expect("load");
        assert_eq!(manifest.config.name, PRESET);

        // The checkpoint is at the end: a rerun resumes there and trains no more.
        let mut again = Vec::new();
        train(&options, &work, &models, &mut |p| again.push(p.step)).expect("rerun");
        assert!(again.is_empty(), "resumed run trained {again:?}");

        // More diffusion steps extend the run from where it stopped.
        let longer = TrainOptions {
            dit_steps: 3,
            ..options.clone()
        };
        let mut extended = Vec::new();
        train(&longer, &work, &models, &mut |p| extended.push(p.step)).expect("extend");
        assert_eq!(extended, vec![5]);

        let other = TrainOptions { seed: 1, ..options };
        let refused = train(&other, &work, &models, &mut |_| {});
        assert!(matches!(refused, Err(ModelError::Checkpoint(_))));
    }

    /// A run stopped at a checkpoint and resumed makes the weights an
    /// uninterrupted run makes: the checkpoint holds the optimizers'
    /// moments, not only the weights.
    #[test]
    fn a_resumed_run_makes_the_weights_of_an_uninterrupted_one() {
        let dir = tempfile::tempdir().expect("tempdir");
        let weights = |name: &str, runs: &[TrainOptions]| {
            let (work, models) = (
                dir.path().join(name),
                dir.path().join(format!("{name}-models")),
            );
            let mut report = None;
            for options in runs {
                report = Some(train(options, &work, &models, &mut |_| {}).expect("train"));
            }
            let file = report
                .expect("a run")
                .model
                .dir
                .join(crate::model::weights::WEIGHTS_FILE);
            std::fs::read(file).expect("weights")
        };
        let whole = weights("whole", &[quick(2, 4)]);
        let resumed = weights("resumed", &[quick(2, 2), quick(2, 4)]);
        assert!(whole == resumed, "the resumed run's weights differ");
    }

    /// Training takes candle's composed ops (they have gradients), the
    /// worker its fused kernels: the same weights must compute the same
    /// velocity both ways, or the model is trained on one function and
    /// sampled from another.
    #[test]
    fn the_trained_path_computes_what_inference_does() {
        let model = Model::new(3).expect("model");
        let frozen: std::collections::HashMap<String, Tensor> = model
            .vars
            .map()
            .data()
            .lock()
            .expect("vars")
            .iter()
            .map(|(name, var)| (name.clone(), var.as_tensor().detach()))
            .collect();
        let vb = candle_nn::VarBuilder::from_tensors(frozen, DType::F32, &Device::Cpu);
        let tp = TpBuilder::slicing(vb.clone(), Arc::new(Solo));
        let text = TextEncoder::new(&model.config, vb.pp("text")).expect("text");
        let dit = Dit::new(&model.config, &tp).expect("dit");

        let x = Tensor::randn(0f32, 1.0, (2, 16, 5, 8, 8), &Device::Cpu).expect("x");
        let t = Tensor::new(&[700f32, 120.0], &Device::Cpu).expect("t");
        let prompts = [
            "a red circle moves to the left",
            "a big blue square on a gray background",
        ];
        let velocity = |text: &TextEncoder, dit: &Dit| {
            let (tokens, mask) = text.encode(&prompts).expect("encode");
            let embedded = dit.embed_text(&tokens).expect("embed");
            let bias = mask_to_bias(&mask).expect("bias");
            dit.forward(&x, &t, &embedded, &bias).expect("forward")
        };
        let trained = velocity(&model.text, &model.dit);
        let served = velocity(&text, &dit);
        let diff = (trained - served)
            .and_then(|d| d.abs())
            .and_then(|d| d.max_all())
            .and_then(|d| d.to_scalar::<f32>())
            .expect("diff");
        assert!(diff < 1e-4, "the paths differ by {diff}");
    }
}
