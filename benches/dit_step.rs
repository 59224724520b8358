//! Time of one denoising step of the video DiT on CPU: the production
//! sampler path (both classifier-free-guidance branches in one batch of 2,
//! then the Euler update), timed step by step through its progress callback,
//! for the tiny and medium presets at tensor-parallel degrees 1, 2 and 4
//! (ranks are threads sharing a CPU all-reduce, as on a CPU worker).
//!
//! `cargo bench --bench dit_step` (GENFLEET_BENCH_STEPS: timed steps per
//! case, default 5). Not yet here: the same architecture in PyTorch beside
//! it (issue 5).

use std::ops::ControlFlow;
use std::sync::Arc;
use std::time::Instant;

use candle_core::Device;
use genfleet_worker::model::{GenerateRequest, Pipeline};
use genfleet_worker::parallel::{Communicator, ThreadGroup};

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
    let mut results = Vec::new();
    for case in &cases {
        for tp in [1, 2, 4] {
            let request = GenerateRequest {
                prompt: "a red fox running through fresh snow".into(),
                negative_prompt: String::new(),
                frames: case.frames,
                width: case.width,
                height: case.height,
                steps: WARMUP_STEPS + timed,
                seed: 0,
                guidance: 5.0,
            };
            let mut steps = time_steps(case, tp, &request);
            steps.sort_by(f64::total_cmp);
            let mean = steps.iter().sum::<f64>() / steps.len() as f64;
            let p50 = steps[steps.len() / 2];
            let name = format!(
                "{}_{}x{}x{}_tp{tp}",
                case.preset, case.width, case.height, case.frames
            );
            println!(
                "dit_step {name}: CFG batch 2, {} timed steps on {threads} CPU threads: mean {:.3} s, p50 {:.3} s, min {:.3} s, max {:.3} s",
                steps.len(),
                mean,
                p50,
                steps[0],
                steps[steps.len() - 1],
            );
            results.push((name, p50));
        }
    }
    for (name, p50) in results {
        println!("RESULT dit_step_{name}_p50 {p50:.4} s");
    }
    Ok(())
}
