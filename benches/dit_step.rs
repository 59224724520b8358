//! Time of one denoising step of the video DiT on CPU: the production
//! sampler path (both classifier-free-guidance branches in one batch of 2,
//! then the Euler update), timed step by step through its progress callback.
//!
//! `cargo bench --bench dit_step` (set GENFLEET_BENCH_STEPS to time more steps).

use std::ops::ControlFlow;
use std::time::Instant;

use candle_core::Device;
use genfleet_worker::model::{GenerateRequest, Pipeline};

const WARMUP_STEPS: usize = 2;

struct Case {
    preset: &'static str,
    frames: usize,
    width: usize,
    height: usize,
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let timed: usize = std::env::var("GENFLEET_BENCH_STEPS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(10);
    let cases = [Case {
        preset: "tiny",
        frames: 17,
        width: 256,
        height: 256,
    }];
    let mut results = Vec::new();
    for case in cases {
        let pipeline = Pipeline::seeded(case.preset, 0, &Device::Cpu)?;
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
        let [_, t, h, w] = pipeline
            .config()
            .latent_shape(case.frames, case.height, case.width);
        let tokens = t * (h / 2) * (w / 2);
        let mut times = Vec::with_capacity(request.steps);
        let mut last = Instant::now();
        pipeline.denoise(&request, pipeline.initial_latent(&request)?, 0, &mut |_| {
            times.push(last.elapsed().as_secs_f64());
            last = Instant::now();
            ControlFlow::Continue(())
        })?;
        // The first step also encodes the prompt; warm-up steps are not counted.
        let mut steps: Vec<f64> = times.split_off(WARMUP_STEPS);
        steps.sort_by(f64::total_cmp);
        let mean = steps.iter().sum::<f64>() / steps.len() as f64;
        let p50 = steps[steps.len() / 2];
        let name = format!(
            "{}_{}x{}x{}",
            case.preset, case.width, case.height, case.frames
        );
        println!(
            "dit_step {name}: {tokens} tokens, CFG batch 2, {} timed steps on {} threads: mean {:.3} s, p50 {:.3} s, min {:.3} s, max {:.3} s",
            steps.len(),
            std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1),
            mean,
            p50,
            steps[0],
            steps[steps.len() - 1],
        );
        results.push((name, p50));
    }
    for (name, p50) in results {
        println!("RESULT dit_step_{name}_p50 {p50:.4} s");
    }
    Ok(())
}
