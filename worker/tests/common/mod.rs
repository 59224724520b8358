//! What the tensor-parallel tests share: one request, and a pipeline run
//! to its final latent.

#![allow(dead_code)] // Each test file uses a part.

use std::ops::ControlFlow;

use candle_core::Tensor;
use genfleet_worker::model::{Denoised, GenerateRequest, Pipeline};

pub fn request() -> GenerateRequest {
    GenerateRequest {
        prompt: "a lighthouse in a storm".into(),
        negative_prompt: String::new(),
        frames: 5,
        width: 64,
        height: 48,
        steps: 3,
        seed: 11,
        guidance: 4.0,
    }
}

pub fn flat(t: &Tensor) -> Vec<f32> {
    t.flatten_all()
        .and_then(|t| t.to_vec1::<f32>())
        .expect("f32 latent")
}

/// The final latent of [`request`] on `pipeline`, flattened.
pub fn final_latent(pipeline: &Pipeline) -> Vec<f32> {
    let request = request();
    let noise = pipeline.initial_latent(&request).expect("noise");
    let done = pipeline
        .denoise(&request, noise, 0, &mut |_| ControlFlow::Continue(()))
        .expect("denoise");
    let Denoised::Finished(latent) = done else {
        panic!("stopped early");
    };
    flat(&latent)
}
