//! Time of one denoising step of the video DiT on CPU: the production
//! sampler path (both classifier-free-guidance branches in one batch of 2,
//! then the Euler update), timed step by step through its progress callback,
//! for the tiny and medium presets at tensor-parallel degrees 1, 2 and 4
//! (ranks are threads sharing a CPU all-reduce, as on a CPU worker).
//!
//! Beside it, PyTorch on the same CPU threads runs the same architecture
//! (benches/dit_reference.py) with the same weights (the model directory
//! `genfleet model init` writes) on the inputs candle saw, checks that its
//! first step lands where candle's did, and times its steps; the bench
//! prints candle's time over PyTorch's. PyTorch is installed by the bench
//! into its own venv (target/torch-venv, once, about 5 GB), never by CI;
//! GENFLEET_TORCH_PYTHON names a python that has torch instead, and
//! GENFLEET_BENCH_TORCH=0 skips the reference.
//!
//! `cargo bench --bench dit_step` (GENFLEET_BENCH_STEPS: timed steps per
//! case, default 5; GENFLEET_BENCH_PRESETS=tiny: those presets only).

use std::collections::HashMap;
use std::ops::ControlFlow;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::Instant;

use candle_core::{Device, Tensor};
use genfleet_worker::model::sampler::FlowSchedule;
use genfleet_worker::model::{init_model, GenerateRequest, Pipeline};
use genfleet_worker::parallel::{Communicator, ThreadGroup};

/// Largest difference of PyTorch's step from candle's, relative to the
/// latent's largest value, for the two to count as the same computation.
const MAX_REFERENCE_DIFF: f64 = 1e-4;

/// The PyTorch the venv gets: pinned, so reruns compare like with like.
const TORCH_REQUIREMENTS: &[&str] = &["torch==2.15.0", "numpy", "safetensors"];

const WARMUP_STEPS: usize = 2;

struct Case {
    preset: &'static str,
    frames: usize,
    width: usize,
    height: usize,
}

/// Seconds of each step after the warm-up, as rank 0 of `tp` saw them.
fn time_steps(case: &Case, tp: usize, request: &GenerateRequest) -> Vec<f64> {
    std::thread::scope(|scope| {
        let ranks: Vec<_> = ThreadGroup::new(tp)
            .into_iter()
            .map(|comm| {
                scope.spawn(move || {
                    let rank = comm.rank();
                    let comm: Arc<dyn Communicator> = Arc::new(comm);
                    let pipeline = Pipeline::seeded_parallel(case.preset, 0, &Device::Cpu, comm)
                        .expect("model");
                    let noise = pipeline.initial_latent(request).expect("noise");
                    let mut times = Vec::with_capacity(request.steps);
                    let mut last = Instant::now();
                    pipeline
                        .denoise(request, noise, 0, &mut |_| {
                            times.push(last.elapsed().as_secs_f64());
                            last = Instant::now();
                            ControlFlow::Continue(())
                        })
                        .expect("denoise");
                    (rank, times)
                })
            })
            .collect();
        let mut times = Vec::new();
        for rank in ranks {
            let (r, t) = rank.join().expect("rank");
            if r == 0 {
                times = t;
            }
        }
        // The first steps also encode the prompt and warm caches.
        times.split_off(WARMUP_STEPS.min(times.len()))
    })
}

/// Saves what the PyTorch reference needs for `case`: the model directory
/// (weights from seed 0, as the candle pipelines here use) and one step's
/// inputs with candle's result of it. Returns the model directory and the
/// inputs file.
fn write_reference_inputs(
    case: &Case,
    request: &GenerateRequest,
    dir: &Path,
) -> Result<(PathBuf, PathBuf), Box<dyn std::error::Error>> {
    let report = init_model(&dir.join("models"), case.preset, 0, false)?;
    let (_, pipeline) = Pipeline::load(&report.dir, &Device::Cpu)?;
    let schedule = FlowSchedule::new(request.steps, pipeline.config().sample_shift);
    let conditioning = pipeline.condition(request)?;
    let latent = pipeline.initial_latent(request)?;
    let (timestep, delta) = (schedule.timestep(0), schedule.delta(0));
    let expected = pipeline.step(&conditioning, &latent, timestep, delta)?;
    let scalar = |v: f64| Tensor::new(&[v], &Device::Cpu);
    let tensors: HashMap<String, Tensor> = [
        ("text", conditioning.text.clone()),
        ("bias", conditioning.bias.clone()),
        ("latent", latent),
        ("expected", expected),
        ("timestep", scalar(timestep)?),
        ("delta", scalar(delta)?),
        ("guidance", scalar(conditioning.guidance.unwrap_or(1.0))?),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    let inputs = dir.join(format!("{}-step-inputs.safetensors", case.preset));
    candle_core::safetensors::save(&tensors, &inputs)?;
    Ok((report.dir, inputs))
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
) -> Result<Reference, String> {
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
    if reference.rel_diff > MAX_REFERENCE_DIFF {
        return Err(format!(
            "PyTorch's step is {:.1e} relative from candle's (at most {MAX_REFERENCE_DIFF:e} allowed): not the same computation, no ratio",
            reference.rel_diff
        ));
    }
    Ok(reference)
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let timed: usize = std::env::var("GENFLEET_BENCH_STEPS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(5);
    let cases = [
        Case {
            preset: "tiny",
            frames: 17,
            width: 256,
            height: 256,
        },
        Case {
            preset: "medium",
            frames: 17,
            width: 256,
            height: 256,
        },
    ];
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    // target/tmp: cargo's scratch directory for benches.
    let scratch = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("dit_step");
    let target = scratch
        .parent()
        .and_then(Path::parent)
        .map(Path::to_path_buf)
        .unwrap_or_else(|| scratch.clone());
    let python = torch_python(&target);
    if let Err(why) = &python {
        println!("PyTorch reference skipped: {why}");
    }
    let mut results = Vec::new();
    // GENFLEET_BENCH_PRESETS=tiny: some of the presets only.
    let wanted = std::env::var("GENFLEET_BENCH_PRESETS").ok();
    let wanted = |preset: &str| {
        wanted
            .as_deref()
            .is_none_or(|list| list.split(',').any(|p| p.trim() == preset))
    };
    for case in cases.iter().filter(|c| wanted(c.preset)) {
        let request = |steps| GenerateRequest {
            prompt: "a red fox running through fresh snow".into(),
            negative_prompt: String::new(),
            frames: case.frames,
            width: case.width,
            height: case.height,
            steps,
            seed: 0,
            guidance: 5.0,
        };
        let shape = format!("{}x{}x{}", case.width, case.height, case.frames);
        let mut candle_tp1 = None;
        for tp in [1, 2, 4] {
            let mut steps = time_steps(case, tp, &request(WARMUP_STEPS + timed));
            steps.sort_by(f64::total_cmp);
            let mean = steps.iter().sum::<f64>() / steps.len() as f64;
            let p50 = steps[steps.len() / 2];
            let name = format!("{}_{shape}_tp{tp}", case.preset);
            println!(
                "dit_step {name}: CFG batch 2, {} timed steps on {threads} CPU threads: mean {:.3} s, p50 {:.3} s, min {:.3} s, max {:.3} s",
                steps.len(),
                mean,
                p50,
                steps[0],
                steps[steps.len() - 1],
            );
            results.push((format!("dit_step_{name}_p50"), format!("{p50:.4}"), "s"));
            if tp == 1 {
                candle_tp1 = Some(p50);
            }
        }
        let Ok(python) = &python else { continue };
        let (model, inputs) =
            write_reference_inputs(case, &request(WARMUP_STEPS + timed), &scratch)?;
        match run_reference(python, &model, &inputs, timed, threads) {
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
    }
    for (name, value, unit) in results {
        println!("RESULT {name} {value} {unit}");
    }
    Ok(())
}
