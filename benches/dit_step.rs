//! Time of one denoising step of the video DiT: the production sampler path
//! (both classifier-free-guidance branches in one batch of 2, then the Euler
//! update), timed step by step through its progress callback.
//!
//! CPU cases: the trained world model (its shipped weights, at the 64x64 it
//! was trained at), then the tiny and medium presets, at tensor-parallel
//! degrees 1, 2 and 4 (ranks are threads sharing a CPU all-reduce, as on a
//! CPU worker).
//!
//! GPU cases, where the bench is built with the `cuda` feature and CUDA
//! device 0 opens: the tiny preset at its CPU size (a quick sanity line),
//! then the Wan2.1-1.3B-sized preset at 832x480, 33 frames, tp 1, in the
//! precision the pipeline computes in on a GPU. A GPU step is only queued
//! when the sampler returns from it, so the clock is read after
//! `Device::synchronize` at every step boundary.
//!
//! Beside each, PyTorch runs the same architecture (benches/dit_reference.py)
//! on the same device, in the same precision, with the same weights (the
//! model directory `genfleet model init` writes) on the inputs candle saw,
//! checks that its first step lands where candle's did, and times its
//! steps; the bench prints candle's time over PyTorch's. PyTorch is
//! installed by the bench into its own venv (target/torch-venv, once, about
//! 5 GB), never by CI; GENFLEET_TORCH_PYTHON names a python that has torch
//! instead (then nothing is installed), and GENFLEET_BENCH_TORCH=0 skips
//! the reference.
//!
//! `cargo bench --bench dit_step`, with
//! - GENFLEET_BENCH_STEPS: timed steps per case (default 5);
//! - GENFLEET_BENCH_PRESETS=tiny,...: those presets only;
//! - GENFLEET_BENCH_DEVICE=cpu|cuda|all: the CPU cases, the GPU cases (an
//!   error where there is no GPU), or (the default) both, the GPU cases
//!   only where there is a GPU;
//! - GENFLEET_BENCH_GPU_SIZE=WxHxF: the size of the Wan-sized GPU case.
//!
//! The RESULT lines come last, one per headline figure.

use std::collections::HashMap;
use std::fmt;
use std::ops::ControlFlow;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::Instant;

use candle_core::{DType, Device, Tensor};
use genfleet_worker::model::sampler::FlowSchedule;
use genfleet_worker::model::{init_model, shipped, GenerateRequest, Pipeline};
use genfleet_worker::parallel::{Communicator, Solo, ThreadGroup};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Largest difference of PyTorch's step from candle's, relative to the
/// latent's largest value, for the two to count as the same computation
/// when both compute in f32.
const MAX_REFERENCE_DIFF: f64 = 1e-4;

/// [`MAX_REFERENCE_DIFF`] for bf16, which f32's 1e-4 would fail. bf16
/// keeps 8 significant bits, so each rounding moves a value by up to 2^-8
/// (about 4e-3) of itself, and candle and PyTorch round at different places
/// (fused kernels, accumulation order) in every layer: PyTorch's bf16 step
/// on the CPU lands 2.3e-3 from candle's f32 one (tiny and medium presets).
/// The first step moves the latent by 6-8% of its largest value, so 2e-2
/// still fails a velocity that is off by a third.
const MAX_REFERENCE_DIFF_BF16: f64 = 2e-2;

/// The PyTorch the venv gets: pinned, so reruns compare like with like.
const TORCH_REQUIREMENTS: &[&str] = &["torch==2.15.0", "numpy", "safetensors"];

const WARMUP_STEPS: usize = 2;

/// The size of the Wan-sized GPU case: Wan2.1-1.3B's 480p, 33 frames.
const GPU_SIZE: (usize, usize, usize) = (832, 480, 33);

struct Case {
    preset: &'static str,
    frames: usize,
    width: usize,
    height: usize,
}

impl Case {
    /// `preset` at the size of the CPU cases: 256x256, 17 frames.
    fn at_cpu_size(preset: &'static str) -> Self {
        Self {
            preset,
            frames: 17,
            width: 256,
            height: 256,
        }
    }

    /// The trained model at the size it was trained at.
    fn world() -> Self {
        Self {
            preset: "world",
            frames: 17,
            width: 64,
            height: 64,
        }
    }

    fn request(&self, steps: usize) -> GenerateRequest {
        let prompt = if self.preset == "world" {
            "a small red circle moves to the left on a navy background"
        } else {
            "a red fox running through fresh snow"
        };
        GenerateRequest {
            prompt: prompt.into(),
            negative_prompt: String::new(),
            frames: self.frames,
            width: self.width,
            height: self.height,
            steps,
            seed: 0,
            guidance: 5.0,
        }
    }

    fn shape(&self) -> String {
        format!("{}x{}x{}", self.width, self.height, self.frames)
    }
}

/// A figure for the RESULT lines: name, value, unit.
type Figure = (String, String, &'static str);

/// The timed steps, summarized.
struct Stats {
    n: usize,
    mean: f64,
    p50: f64,
    min: f64,
    max: f64,
}

impl Stats {
    fn of(mut steps: Vec<f64>) -> Result<Self, String> {
        if steps.is_empty() {
            return Err("no step was timed".into());
        }
        steps.sort_by(f64::total_cmp);
        Ok(Self {
            n: steps.len(),
            mean: steps.iter().sum::<f64>() / steps.len() as f64,
            p50: steps[steps.len() / 2],
            min: steps[0],
            max: steps[steps.len() - 1],
        })
    }
}

impl fmt::Display for Stats {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "mean {:.3} s, p50 {:.3} s, min {:.3} s, max {:.3} s",
            self.mean, self.p50, self.min, self.max
        )
    }
}

/// The reference's `--dtype` for a candle dtype, and the largest relative
/// difference of its step from candle's that still counts as agreement.
fn reference_precision(dtype: DType) -> Option<(&'static str, f64)> {
    match dtype {
        DType::F32 => Some(("f32", MAX_REFERENCE_DIFF)),
        DType::BF16 => Some(("bf16", MAX_REFERENCE_DIFF_BF16)),
        _ => None,
    }
}

/// Seconds of each step of `request` after the warm-up, on `device`.
fn time_denoise(
    pipeline: &Pipeline,
    request: &GenerateRequest,
    device: &Device,
) -> Result<Vec<f64>, BoxError> {
    let noise = pipeline.initial_latent(request)?;
    device.synchronize()?;
    let mut times = Vec::with_capacity(request.steps);
    let mut failed = None;
    let mut last = Instant::now();
    pipeline.denoise(request, noise, 0, &mut |_| {
        // The step's kernels may still be running: wait for them.
        if let Err(e) = device.synchronize() {
            failed = Some(e);
            return ControlFlow::Break(());
        }
        times.push(last.elapsed().as_secs_f64());
        last = Instant::now();
        ControlFlow::Continue(())
    })?;
    if let Some(e) = failed {
        return Err(e.into());
    }
    // The first steps also encode the prompt and warm caches.
    Ok(times.split_off(WARMUP_STEPS.min(times.len())))
}

/// Seconds of each step after the warm-up, as rank 0 of `tp` CPU ranks saw
/// them. The ranks read their slices of `installed` (a model directory)
/// where given, else slice weights made from seed 0.
fn time_cpu_steps(
    case: &Case,
    tp: usize,
    request: &GenerateRequest,
    installed: Option<&Path>,
) -> Result<Vec<f64>, BoxError> {
    std::thread::scope(|scope| {
        let ranks: Vec<_> = ThreadGroup::new(tp)
            .into_iter()
            .map(|comm| {
                let rank = comm.rank();
                let handle = scope.spawn(move || -> Result<Vec<f64>, BoxError> {
                    let comm: Arc<dyn Communicator> = Arc::new(comm);
                    let pipeline = match installed {
                        Some(dir) => Pipeline::load_rank(dir, &Device::Cpu, comm)?.1,
                        None => Pipeline::seeded_parallel(case.preset, 0, &Device::Cpu, comm)?,
                    };
                    time_denoise(&pipeline, request, &Device::Cpu)
                });
                (rank, handle)
            })
            .collect();
        let mut rank0 = Vec::new();
        let mut failures = Vec::new();
        for (rank, handle) in ranks {
            match handle.join() {
                Ok(Ok(times)) if rank == 0 => rank0 = times,
                Ok(Ok(_)) => {}
                Ok(Err(e)) => failures.push(format!("rank {rank}: {e}")),
                Err(_) => failures.push(format!("rank {rank} panicked")),
            }
        }
        if failures.is_empty() {
            Ok(rank0)
        } else {
            Err(failures.join("; ").into())
        }
    })
}

/// The model directory the reference loads for `case`: its shipped trained
/// weights, or weights from seed 0, as the candle pipelines here use.
fn reference_model(case: &Case, scratch: &Path) -> Result<PathBuf, BoxError> {
    Ok(init_model(&scratch.join("models"), case.preset, 0, false)?.dir)
}

/// Saves what the PyTorch reference needs besides the model: the first step
/// of `request` by `pipeline`, its inputs and its result, in f32 on the CPU
/// whatever the pipeline computed in.
fn save_step_inputs(
    pipeline: &Pipeline,
    request: &GenerateRequest,
    file: &Path,
) -> Result<(), BoxError> {
    let schedule = FlowSchedule::new(request.steps, pipeline.config().sample_shift);
    let conditioning = pipeline.condition(request)?;
    let latent = pipeline.initial_latent(request)?;
    let (timestep, delta) = (schedule.timestep(0), schedule.delta(0));
    let expected = pipeline.step(&conditioning, &latent, timestep, delta)?;
    let host = |t: &Tensor| t.to_device(&Device::Cpu)?.to_dtype(DType::F32);
    let scalar = |v: f64| Tensor::new(&[v], &Device::Cpu);
    let tensors: HashMap<String, Tensor> = [
        ("text", host(&conditioning.text)?),
        ("bias", host(&conditioning.bias)?),
        ("latent", host(&latent)?),
        ("expected", host(&expected)?),
        ("timestep", scalar(timestep)?),
        ("delta", scalar(delta)?),
        ("guidance", scalar(conditioning.guidance.unwrap_or(1.0))?),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    Ok(candle_core::safetensors::save(&tensors, file)?)
}

/// A python with torch: GENFLEET_TORCH_PYTHON, or the bench's own venv,
/// made on first use. None (and why) if there is none to be had.
fn torch_python(target: &Path) -> Result<PathBuf, String> {
    if std::env::var("GENFLEET_BENCH_TORCH").as_deref() == Ok("0") {
        return Err("GENFLEET_BENCH_TORCH=0".into());
    }
    if let Ok(python) = std::env::var("GENFLEET_TORCH_PYTHON") {
        return Ok(PathBuf::from(python));
    }
    let venv = target.join("torch-venv");
    let python = venv.join("bin").join("python");
    let has_torch = |python: &Path| {
        Command::new(python)
            .args(["-c", "import torch, safetensors"])
            .status()
            .is_ok_and(|s| s.success())
    };
    if has_torch(&python) {
        return Ok(python);
    }
    println!(
        "installing {} into {} (once; a few GB)",
        TORCH_REQUIREMENTS.join(" "),
        venv.display()
    );
    let run = |cmd: &mut Command| -> Result<(), String> {
        let status = cmd.status().map_err(|e| format!("{cmd:?}: {e}"))?;
        if status.success() {
            Ok(())
        } else {
            Err(format!("{cmd:?} failed: {status}"))
        }
    };
    run(Command::new("python3").args(["-m", "venv"]).arg(&venv))?;
    run(Command::new(&python)
        .args(["-m", "pip", "install", "--quiet"])
        .args(TORCH_REQUIREMENTS))?;
    if has_torch(&python) {
        Ok(python)
    } else {
        Err(format!(
            "{} cannot import torch after the install",
            python.display()
        ))
    }
}

/// Why `python` cannot run the reference on a GPU, if it cannot.
fn torch_cuda_missing(python: &Path) -> Option<String> {
    const PROBE: &str =
        "import sys, torch, safetensors; sys.exit(None if torch.cuda.is_available() \
        else f'torch {torch.__version__} sees no CUDA device')";
    let output = match Command::new(python).args(["-c", PROBE]).output() {
        Ok(output) if output.status.success() => return None,
        Ok(output) => output,
        Err(e) => return Some(format!("{}: {e}", python.display())),
    };
    let stderr = String::from_utf8_lossy(&output.stderr);
    let why = match stderr.lines().rfind(|l| !l.trim().is_empty()) {
        Some(line) => line.trim().to_string(),
        None => format!("exited with {}", output.status),
    };
    Some(format!("{}: {why}", python.display()))
}

/// Where the reference runs (`--device`) and in what (`--dtype`).
#[derive(Clone, Copy)]
struct Target {
    device: &'static str,
    dtype: DType,
}

/// What the reference printed last: its p50 step and its distance from candle.
struct Reference {
    p50: f64,
    rel_diff: f64,
}

fn run_reference(
    python: &Path,
    model: &Path,
    inputs: &Path,
    timed: usize,
    threads: usize,
    target: Target,
) -> Result<Reference, String> {
    let (dtype, tolerance) = reference_precision(target.dtype)
        .ok_or_else(|| format!("the reference runs in f32 or bf16, not {:?}", target.dtype))?;
    // Beside the sources it was built from, or (a binary carried to
    // another machine) under the current directory.
    let script = [Path::new(env!("CARGO_MANIFEST_DIR")), Path::new(".")]
        .map(|root| root.join("benches/dit_reference.py"))
        .into_iter()
        .find(|p| p.is_file())
        .ok_or("benches/dit_reference.py is not here")?;
    let output = Command::new(python)
        .arg(&script)
        .arg("--model")
        .arg(model)
        .arg("--inputs")
        .arg(inputs)
        .args(["--steps", &timed.to_string()])
        .args(["--warmup", &WARMUP_STEPS.to_string()])
        .args(["--threads", &threads.to_string()])
        .args(["--device", target.device])
        .args(["--dtype", dtype])
        .output()
        .map_err(|e| format!("{}: {e}", script.display()))?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    if !output.status.success() {
        return Err(format!(
            "{} failed: {}{}",
            script.display(),
            stdout,
            String::from_utf8_lossy(&output.stderr)
        ));
    }
    let mut lines = stdout.lines().filter(|l| !l.trim().is_empty());
    let last = lines.next_back().unwrap_or_default();
    for line in lines {
        println!("  {line}");
    }
    let parsed: serde_json::Value =
        serde_json::from_str(last).map_err(|e| format!("reference printed {last:?}: {e}"))?;
    let number = |key: &str| {
        parsed[key]
            .as_f64()
            .ok_or_else(|| format!("reference printed no {key}: {last}"))
    };
    let reference = Reference {
        p50: number("p50")?,
        rel_diff: number("rel_diff")?,
    };
    // Timings compare the same computation only if the results agree.
    if reference.rel_diff > tolerance {
        return Err(format!(
            "PyTorch's step is {:.1e} relative from candle's (at most {tolerance:e} allowed in {dtype}): not the same computation, no ratio",
            reference.rel_diff
        ));
    }
    Ok(reference)
}

/// Which cases run: GENFLEET_BENCH_DEVICE.
#[derive(Clone, Copy, PartialEq)]
enum Devices {
    Cpu,
    Cuda,
    All,
}

/// The bench's settings, from its environment.
struct Settings {
    timed: usize,
    devices: Devices,
    wanted: Option<Vec<String>>,
    gpu_size: (usize, usize, usize),
}

impl Settings {
    fn from_env() -> Result<Self, String> {
        let var = |name: &str| std::env::var(name).ok().filter(|v| !v.trim().is_empty());
        let timed = match var("GENFLEET_BENCH_STEPS") {
            None => 5,
            Some(s) => s.trim().parse().ok().filter(|&n| n > 0).ok_or_else(|| {
                format!("GENFLEET_BENCH_STEPS={s:?}: expected a positive number of timed steps")
            })?,
        };
        let devices = match var("GENFLEET_BENCH_DEVICE").as_deref().map(str::trim) {
            None | Some("all") => Devices::All,
            Some("cpu") => Devices::Cpu,
            Some("cuda") => Devices::Cuda,
            Some(other) => {
                return Err(format!(
                    "GENFLEET_BENCH_DEVICE={other:?}: expected cpu, cuda or all"
                ))
            }
        };
        let wanted = var("GENFLEET_BENCH_PRESETS")
            .map(|list| list.split(',').map(|p| p.trim().to_string()).collect());
        let gpu_size = match var("GENFLEET_BENCH_GPU_SIZE") {
            None => GPU_SIZE,
            Some(spec) => parse_size(&spec).map_err(|why| {
                format!("GENFLEET_BENCH_GPU_SIZE={spec:?}: {why} (e.g. 832x480x33)")
            })?,
        };
        Ok(Self {
            timed,
            devices,
            wanted,
            gpu_size,
        })
    }

    /// GENFLEET_BENCH_PRESETS=tiny: some of the presets only.
    fn wants(&self, preset: &str) -> bool {
        self.wanted
            .as_ref()
            .is_none_or(|list| list.iter().any(|p| p == preset))
    }
}

/// WxHxF: width and height in pixels, frames.
fn parse_size(spec: &str) -> Result<(usize, usize, usize), String> {
    let numbers: Vec<usize> = spec
        .split('x')
        .map(|n| n.trim().parse())
        .collect::<Result<_, _>>()
        .map_err(|_| "expected width x height x frames".to_string())?;
    let [width, height, frames] = numbers[..] else {
        return Err("expected width x height x frames".into());
    };
    // The latent is 8x smaller than the frame, then cut into 2x2 patches.
    let fits = |pixels: usize| pixels > 0 && pixels.is_multiple_of(16);
    if !(fits(width) && fits(height) && frames > 0) {
        return Err("width and height must be positive multiples of 16, frames at least 1".into());
    }
    Ok((width, height, frames))
}

/// The GPU the bench runs on, or why there is none.
#[cfg(feature = "cuda")]
fn open_gpu() -> Result<Device, String> {
    Device::new_cuda(0).map_err(|e| format!("no CUDA device: {e}"))
}

#[cfg(not(feature = "cuda"))]
fn open_gpu() -> Result<Device, String> {
    Err("built without the `cuda` feature".into())
}

/// cargo's scratch directory for benches (target/tmp), or, for a binary
/// carried to another machine, target/tmp under the current directory.
fn scratch_dir() -> PathBuf {
    let built = Path::new(env!("CARGO_TARGET_TMPDIR"));
    let tmp = if built.is_dir() {
        built.to_path_buf()
    } else {
        PathBuf::from("target").join("tmp")
    };
    tmp.join("dit_step")
}

/// The CPU cases of `case`: candle at tp 1, 2 and 4, then PyTorch.
fn run_cpu_case(
    case: &Case,
    settings: &Settings,
    python: Option<&Path>,
    scratch: &Path,
    results: &mut Vec<Figure>,
) -> Result<(), BoxError> {
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let request = case.request(WARMUP_STEPS + settings.timed);
    let shape = case.shape();
    let mut candle_tp1 = None;
    // A trained model runs its shipped weights, as a worker has them.
    let installed = match shipped::weights(case.preset) {
        Some(_) => Some(reference_model(case, scratch)?),
        None => None,
    };
    for tp in [1, 2, 4] {
        let stats = Stats::of(time_cpu_steps(case, tp, &request, installed.as_deref())?)?;
        let name = format!("{}_{shape}_tp{tp}", case.preset);
        println!(
            "dit_step {name}: CFG batch 2, {} timed steps on {threads} CPU threads: {stats}",
            stats.n
        );
        results.push((
            format!("dit_step_{name}_p50"),
            format!("{:.4}", stats.p50),
            "s",
        ));
        if tp == 1 {
            candle_tp1 = Some(stats.p50);
        }
    }
    let Some(python) = python else { return Ok(()) };
    let model = reference_model(case, scratch)?;
    let (_, pipeline) = Pipeline::load(&model, &Device::Cpu)?;
    let inputs = scratch.join(format!("{}-step-inputs.safetensors", case.preset));
    save_step_inputs(&pipeline, &request, &inputs)?;
    let target = Target {
        device: "cpu",
        dtype: pipeline.dtype(),
    };
    match run_reference(python, &model, &inputs, settings.timed, threads, target) {
        Ok(reference) => {
            let name = format!("{}_{shape}", case.preset);
            let ratio = candle_tp1.unwrap_or(f64::NAN) / reference.p50;
            println!(
                "dit_step {name}: PyTorch p50 {:.3} s, candle tp1 / PyTorch = {ratio:.2}x; PyTorch's first step is {:.1e} relative from candle's",
                reference.p50, reference.rel_diff
            );
            let rows = [
                ("pytorch_p50", format!("{:.4}", reference.p50), "s"),
                ("candle_over_pytorch", format!("{ratio:.3}"), "x"),
                (
                    "pytorch_rel_diff",
                    format!("{:.2e}", reference.rel_diff),
                    "relative",
                ),
            ];
            for (what, value, unit) in rows {
                results.push((format!("dit_step_{name}_{what}"), value, unit));
            }
        }
        Err(why) => println!("PyTorch reference for {} failed: {why}", case.preset),
    }
    Ok(())
}

/// The GPU case `case` on `device`: candle at tp 1, then PyTorch on the
/// same GPU from the inputs of candle's GPU run (a CPU step of the Wan
/// size takes minutes).
fn run_gpu_case(
    case: &Case,
    device: &Device,
    settings: &Settings,
    python: Option<&Path>,
    scratch: &Path,
    results: &mut Vec<Figure>,
) -> Result<(), BoxError> {
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let request = case.request(WARMUP_STEPS + settings.timed);
    let name = format!("{}_{}", case.preset, case.shape());
    let pipeline = Pipeline::seeded_parallel(case.preset, 0, device, Arc::new(Solo))?;
    // What the DiT computes in there (bf16 or f32, by preset); the latent is f32.
    let dtype = pipeline.dtype();
    let stats = Stats::of(time_denoise(&pipeline, &request, device)?)?;
    println!(
        "dit_step gpu {name}_tp1: CFG batch 2, precision: {}, {} timed steps on CUDA device 0: {stats}",
        dtype.as_str(),
        stats.n
    );
    let figure = |what: &str| format!("dit_step_gpu_{}_{what}", case.preset);
    results.push((figure("candle"), format!("{:.4}", stats.p50), "s"));
    let Some(python) = python else { return Ok(()) };
    let model = reference_model(case, scratch)?;
    let inputs = scratch.join(format!("gpu-{name}-step-inputs.safetensors"));
    save_step_inputs(&pipeline, &request, &inputs)?;
    // The GPU's memory is PyTorch's now.
    drop(pipeline);
    let target = Target {
        device: "cuda",
        dtype,
    };
    match run_reference(python, &model, &inputs, settings.timed, threads, target) {
        Ok(reference) => {
            let ratio = stats.p50 / reference.p50;
            println!(
                "dit_step gpu {name}: PyTorch p50 {:.3} s in {}, candle / PyTorch = {ratio:.2}x; PyTorch's first step is {:.1e} relative from candle's",
                reference.p50,
                dtype.as_str(),
                reference.rel_diff
            );
            results.push((figure("torch"), format!("{:.4}", reference.p50), "s"));
            results.push((figure("ratio"), format!("{ratio:.3}"), "x"));
        }
        Err(why) => println!("PyTorch reference for gpu {name} failed: {why}"),
    }
    Ok(())
}

fn main() -> Result<(), BoxError> {
    let settings = Settings::from_env()?;
    let gpu = match settings.devices {
        Devices::Cpu => Err("GENFLEET_BENCH_DEVICE=cpu".to_string()),
        Devices::Cuda | Devices::All => open_gpu(),
    };
    if let Err(why) = &gpu {
        if settings.devices == Devices::Cuda {
            return Err(
                format!("GENFLEET_BENCH_DEVICE=cuda, but there is no GPU mode: {why}").into(),
            );
        }
        println!("GPU mode: skipped ({why})");
    }
    let scratch = scratch_dir();
    let target = scratch
        .parent()
        .and_then(Path::parent)
        .map(Path::to_path_buf)
        .unwrap_or_else(|| scratch.clone());
    let python = torch_python(&target);
    if let Err(why) = &python {
        println!("PyTorch reference skipped: {why}");
    }
    let python = python.ok();
    let mut results = Vec::new();

    if settings.devices != Devices::Cuda {
        let cases = [
            Case::world(),
            Case::at_cpu_size("tiny"),
            Case::at_cpu_size("medium"),
        ];
        for case in cases.iter().filter(|c| settings.wants(c.preset)) {
            run_cpu_case(case, &settings, python.as_deref(), &scratch, &mut results)?;
        }
    }

    if let Ok(device) = &gpu {
        let gpu_python = python.as_deref().filter(|python| {
            let missing = torch_cuda_missing(python);
            if let Some(why) = &missing {
                println!("PyTorch reference on the GPU skipped: {why}");
            }
            missing.is_none()
        });
        let (width, height, frames) = settings.gpu_size;
        let cases = [
            Case::at_cpu_size("tiny"),
            Case {
                preset: "wan2.1-1.3b",
                frames,
                width,
                height,
            },
        ];
        for case in cases.iter().filter(|c| settings.wants(c.preset)) {
            run_gpu_case(case, device, &settings, gpu_python, &scratch, &mut results)?;
        }
    }

    for (name, value, unit) in results {
        println!("RESULT {name} {value} {unit}");
    }
    Ok(())
}
