//! `genfleet model sample`: one video straight through the model on one
//! device, without a cluster. It times the steps, saves the final latent,
//! and compares it with a latent another device made for the same request,
//! which is how a GPU build is checked against the CPU's.

use std::collections::HashMap;
use std::ops::ControlFlow;
use std::path::Path;
use std::time::Instant;

use anyhow::{bail, Context};
use genfleet_worker::candle_core::{self, DType, Device, Tensor};
use genfleet_worker::device::compute::ComputeDevice;
use genfleet_worker::model::{
    self, Denoised, GenerateRequest, Generated, Pipeline, StepProgress, Video,
};

use crate::cli::ModelSampleArgs;

/// The tensor name of the latent in `--latent` files.
const LATENT: &str = "latent";

/// Default `--tolerance`: f32 on two devices differs by summation order
/// (about 1e-6 per operation, grown over the layers and steps); bf16 by
/// its 8-bit mantissa (about 4e-3 per rounding).
fn default_tolerance(dtype: DType) -> f64 {
    match dtype {
        DType::F32 | DType::F64 => 1e-3,
        _ => 5e-2,
    }
}

pub async fn run(args: ModelSampleArgs) -> anyhow::Result<()> {
    tokio::task::spawn_blocking(move || sample(&args))
        .await
        .context("the sampling task")?
}

fn check_request(args: &ModelSampleArgs) -> anyhow::Result<()> {
    let (width, height) = args.size();
    if width == 0 || height == 0 || width % 16 != 0 || height % 16 != 0 {
        bail!("size {width}x{height}: give multiples of 16 on both sides");
    }
    if args.frames == 0 || args.frames > 241 {
        bail!("frames = {}: give between 1 and 241", args.frames);
    }
    if args.steps == 0 || args.steps > 1000 {
        bail!("steps = {}: give between 1 and 1000", args.steps);
    }
    if !args.guidance.is_finite() || args.guidance <= 0.0 {
        bail!("guidance = {}: give a positive number", args.guidance);
    }
    if args.tolerance.is_some_and(|t| !t.is_finite() || t < 0.0) {
        bail!("--tolerance must be a number of at least 0");
    }
    Ok(())
}

/// What one sampled run produced.
struct Sampled {
    /// The final latent, on the host, f32.
    latent: Tensor,
    video: Video,
    /// What the model computed in.
    dtype: DType,
    load_seconds: f64,
    /// Seconds of each step, as rank 0 saw them.
    steps: Vec<f64>,
}

fn sample(args: &ModelSampleArgs) -> anyhow::Result<()> {
    check_request(args)?;
    let request = GenerateRequest {
        prompt: args.prompt.clone(),
        negative_prompt: String::new(),
        frames: args.frames as usize,
        width: args.size().0 as usize,
        height: args.size().1 as usize,
        steps: args.steps as usize,
        seed: args.seed,
        guidance: f64::from(args.guidance),
    };
    let run = if args.tp > 1 {
        sample_parallel(args, &request)?
    } else {
        sample_one(args, &request)?
    };
    let mut sorted = run.steps.clone();
    sorted.sort_by(f64::total_cmp);
    say!(
        "{} on {} x{} ({:?}): loaded in {:.2} s; {} steps of {}x{}x{}, first {:.3} s, median {:.3} s",
        args.model,
        args.device,
        args.tp,
        run.dtype,
        run.load_seconds,
        run.steps.len(),
        request.width,
        request.height,
        request.frames,
        run.steps.first().copied().unwrap_or(0.0),
        sorted.get(sorted.len() / 2).copied().unwrap_or(0.0),
    );
    if let Some(path) = &args.latent {
        let tensors = HashMap::from([(LATENT.to_string(), run.latent.clone())]);
        candle_core::safetensors::save(&tensors, path)
            .with_context(|| format!("writing {}", path.display()))?;
        say!("latent written to {}", path.display());
    }
    if let Some(path) = &args.video {
        let mp4 = genfleet_worker::video::encode_mp4(&run.video, 8)?;
        std::fs::write(path, mp4).with_context(|| format!("writing {}", path.display()))?;
        say!("video written to {}", path.display());
    }
    if let Some(path) = &args.against {
        let tolerance = args
            .tolerance
            .unwrap_or_else(|| default_tolerance(run.dtype));
        compare(&run.latent, path, tolerance)?;
    }
    Ok(())
}

/// A step timer for `on_step`: kernels run asynchronously on a GPU, so it
/// waits for the step's before reading the clock.
fn step_timer<'a>(
    device: &'a Device,
    steps: &'a mut Vec<f64>,
) -> impl FnMut(StepProgress) -> ControlFlow<()> + 'a {
    let mut last = Instant::now();
    move |_| {
        if let Err(e) = device.synchronize() {
            tracing::warn!("synchronizing the device: {e}");
        }
        steps.push(last.elapsed().as_secs_f64());
        last = Instant::now();
        ControlFlow::Continue(())
    }
}

fn open_device(args: &ModelSampleArgs) -> anyhow::Result<Device> {
    Ok(ComputeDevice::parse(&args.device)?.open()?)
}

/// The whole model on one device.
fn sample_one(args: &ModelSampleArgs, request: &GenerateRequest) -> anyhow::Result<Sampled> {
    let device = open_device(args)?;
    let dir = model::weights::model_dir(&args.dir, &args.model);
    let started = Instant::now();
    let (_, pipeline) = Pipeline::load(&dir, &device)
        .with_context(|| format!("loading model {} onto {}", args.model, args.device))?;
    device.synchronize()?;
    let load_seconds = started.elapsed().as_secs_f64();
    let mut steps = Vec::with_capacity(request.steps);
    let denoised = pipeline.resume(request, None, &mut step_timer(&device, &mut steps))?;
    let Denoised::Finished(latent) = denoised else {
        bail!("the run stopped before its last step");
    };
    let video = pipeline.decode(&latent, request)?;
    Ok(Sampled {
        latent: latent.to_device(&Device::Cpu)?.to_dtype(DType::F32)?,
        video,
        dtype: pipeline.dtype(),
        load_seconds,
        steps,
    })
}

/// The model split over --tp ranks, each on its own handle of --device
/// (its own stream on a GPU): the sharded load and the tensor-parallel
/// step, as a worker runs a gang, on one device.
fn sample_parallel(args: &ModelSampleArgs, request: &GenerateRequest) -> anyhow::Result<Sampled> {
    let devices = (0..args.tp)
        .map(|_| open_device(args))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let dir = model::weights::model_dir(&args.dir, &args.model);
    let config = model::weights::read_manifest(&dir)
        .with_context(|| format!("model {}", args.model))?
        .config;
    let started = Instant::now();
    let mut steps = Vec::with_capacity(request.steps);
    let generated = model::generate_parallel(
        &dir,
        &devices,
        request,
        None,
        &mut step_timer(&devices[0], &mut steps),
    )?;
    let Generated::Finished { latent, video } = generated else {
        bail!("the run stopped before its last step");
    };
    let total = started.elapsed().as_secs_f64();
    Ok(Sampled {
        latent: latent.to_dtype(DType::F32)?,
        video,
        dtype: config.dtype_on(&devices[0]),
        // Loading and stepping are one call here.
        load_seconds: total - steps.iter().sum::<f64>(),
        steps,
    })
}

/// Fails unless `latent` is within `tolerance` of the latent saved in
/// `path`, relative to that one's largest magnitude.
fn compare(latent: &Tensor, path: &Path, tolerance: f64) -> anyhow::Result<()> {
    let saved = candle_core::safetensors::load(path, &Device::Cpu)
        .with_context(|| format!("reading {}", path.display()))?;
    let reference = saved
        .get(LATENT)
        .with_context(|| format!("{} has no tensor named {LATENT:?}", path.display()))?
        .to_dtype(DType::F32)?;
    if reference.dims() != latent.dims() {
        bail!(
            "{} holds a latent of shape {:?}; this request's is {:?} (another request?)",
            path.display(),
            reference.dims(),
            latent.dims()
        );
    }
    let difference = (latent - &reference)?
        .abs()?
        .max_all()?
        .to_scalar::<f32>()?;
    let scale = reference.abs()?.max_all()?.to_scalar::<f32>()?;
    let relative = f64::from(difference) / f64::from(scale.max(f32::MIN_POSITIVE));
    let verdict = if relative <= tolerance {
        "within"
    } else {
        "OUTSIDE"
    };
    say!(
        "against {}: largest difference {difference:.3e}, {relative:.3e} of the largest value {scale:.3}: {verdict} the tolerance {tolerance:.0e}",
        path.display()
    );
    if relative > tolerance {
        bail!("the latents differ by {relative:.3e} (relative), more than {tolerance:.0e}");
    }
    Ok(())
}
