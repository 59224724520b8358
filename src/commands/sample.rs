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
use genfleet_worker::model::{self, Denoised, GenerateRequest, Pipeline};

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
    let (width, height) = args.size;
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

fn sample(args: &ModelSampleArgs) -> anyhow::Result<()> {
    check_request(args)?;
    let compute = ComputeDevice::parse(&args.device).map_err(anyhow::Error::msg)?;
    let device = compute.open().map_err(anyhow::Error::msg)?;
    let dir = model::weights::model_dir(&args.dir, &args.model);
    let started = Instant::now();
    let (_, pipeline) = Pipeline::load(&dir, &device)
        .with_context(|| format!("loading model {} onto {}", args.model, args.device))?;
    device.synchronize()?;
    let load_seconds = started.elapsed().as_secs_f64();
    let request = GenerateRequest {
        prompt: args.prompt.clone(),
        negative_prompt: String::new(),
        frames: args.frames as usize,
        width: args.size.0 as usize,
        height: args.size.1 as usize,
        steps: args.steps as usize,
        seed: args.seed,
        guidance: f64::from(args.guidance),
    };

    let mut steps = Vec::with_capacity(request.steps);
    let mut last = Instant::now();
    let denoised = pipeline.resume(&request, None, &mut |_| {
        // Kernels run asynchronously on a GPU: wait for the step's.
        if let Err(e) = device.synchronize() {
            tracing::warn!("synchronizing {}: {e}", args.device);
        }
        steps.push(last.elapsed().as_secs_f64());
        last = Instant::now();
        ControlFlow::Continue(())
    })?;
    let Denoised::Finished(latent) = denoised else {
        bail!("the run stopped before its last step");
    };
    let latent = latent.to_device(&Device::Cpu)?.to_dtype(DType::F32)?;
    let mut sorted = steps.clone();
    sorted.sort_by(f64::total_cmp);
    println!(
        "{} on {} ({:?}): loaded in {load_seconds:.2} s; {} steps of {}x{}x{}, first {:.3} s, median {:.3} s",
        args.model,
        args.device,
        pipeline.dtype(),
        steps.len(),
        request.width,
        request.height,
        request.frames,
        steps.first().copied().unwrap_or(0.0),
        sorted[sorted.len() / 2],
    );

    if let Some(path) = &args.latent {
        let tensors = HashMap::from([(LATENT.to_string(), latent.clone())]);
        candle_core::safetensors::save(&tensors, path)
            .with_context(|| format!("writing {}", path.display()))?;
        println!("latent written to {}", path.display());
    }
    if let Some(path) = &args.video {
        let video = pipeline.decode(&latent.to_device(&device)?, &request)?;
        let mp4 = genfleet_worker::video::encode_mp4(&video, 8)?;
        std::fs::write(path, mp4).with_context(|| format!("writing {}", path.display()))?;
        println!("video written to {}", path.display());
    }
    if let Some(path) = &args.against {
        let tolerance = args
            .tolerance
            .unwrap_or_else(|| default_tolerance(pipeline.dtype()));
        compare(&latent, path, tolerance)?;
    }
    Ok(())
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
    println!(
        "against {}: largest difference {difference:.3e}, {relative:.3e} of the largest value {scale:.3}: {verdict} the tolerance {tolerance:.0e}",
        path.display()
    );
    if relative > tolerance {
        bail!("the latents differ by {relative:.3e} (relative), more than {tolerance:.0e}");
    }
    Ok(())
}
