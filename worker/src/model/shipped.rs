//! Weights trained here and shipped inside the binary. `world` was trained
//! by `genfleet model train` on the procedural world (docs/world-model.md
//! has the command, the seed and what it reaches). Every other preset is
//! made from a seed.

/// The shipped weights (safetensors) of `preset`, if it has trained ones,
/// and the seed `genfleet model train` made them from.
pub fn weights(preset: &str) -> Option<(&'static [u8], u64)> {
    match preset {
        "world" => Some((include_bytes!("../../weights/world.safetensors"), 2026)),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{GenerateRequest, ModelConfig, Pipeline};
    use candle_core::Device;
    use candle_nn::VarBuilder;
    use std::ops::ControlFlow;

    /// The shipped file holds every tensor the preset's pipeline needs,
    /// each of its shape, and they make a video.
    #[test]
    fn the_shipped_world_weights_build_the_world_pipeline() {
        let (bytes, _) = weights("world").expect("world ships weights");
        let tensors = candle_core::safetensors::load_buffer(bytes, &Device::Cpu).expect("load");
        let config = ModelConfig::preset("world").expect("preset");
        let vb = VarBuilder::from_tensors(tensors, candle_core::DType::F32, &Device::Cpu);
        let pipeline = Pipeline::build(&config, vb).expect("every tensor is there");
        let request = GenerateRequest {
            prompt: "a red circle moves to the left on a navy background".into(),
            negative_prompt: String::new(),
            frames: 5,
            width: 32,
            height: 32,
            steps: 2,
            seed: 1,
            guidance: 4.0,
        };
        let video = pipeline
            .generate(&request, &mut |_| ControlFlow::Continue(()))
            .expect("generate")
            .expect("not stopped");
        assert_eq!(video.frames.len(), 5);
        assert!(weights("tiny").is_none());
    }
}
