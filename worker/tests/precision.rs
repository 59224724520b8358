//! The presets' precision: what a GPU computes in (bf16 for the large
//! presets), rehearsed on the CPU by forcing a dtype, and checkpoints that
//! stay f32 on the host whatever made them.

use std::ops::ControlFlow;
use std::sync::Arc;

use candle_core::{DType, Device, Tensor};
use genfleet_worker::model::config::Precision;
use genfleet_worker::model::{
    Checkpoint, Denoised, GenerateRequest, ModelConfig, Pipeline, PRESETS,
};
use genfleet_worker::parallel::Solo;

fn request() -> GenerateRequest {
    GenerateRequest {
        prompt: "a lighthouse at dusk".into(),
        negative_prompt: String::new(),
        frames: 9,
        width: 64,
        height: 48,
        steps: 3,
        seed: 11,
        guidance: 4.0,
    }
}

fn tiny_as(dtype: DType) -> Pipeline {
    let config = ModelConfig::preset("tiny").expect("preset");
    Pipeline::seeded_as(&config, 0, &Device::Cpu, dtype, Arc::new(Solo)).expect("model")
}

fn finish(p: &Pipeline, r: &GenerateRequest, from: Option<Checkpoint>) -> Tensor {
    match p.resume(r, from, &mut |_| ControlFlow::Continue(())) {
        Ok(Denoised::Finished(latent)) => latent,
        other => panic!("expected a finished run, got {other:?}"),
    }
}

/// Largest difference relative to the reference's largest magnitude.
fn relative_diff(a: &Tensor, reference: &Tensor) -> f32 {
    let diff = (a - reference)
        .and_then(|d| d.abs())
        .and_then(|d| d.max_all());
    let scale = reference.abs().and_then(|r| r.max_all());
    let value =
        |t: candle_core::Result<Tensor>| t.and_then(|t| t.to_scalar::<f32>()).expect("scalar");
    value(diff) / value(scale)
}

#[test]
fn the_cpu_computes_in_f32_and_gpus_in_the_presets_precision() {
    for name in PRESETS {
        let config = ModelConfig::preset(name).expect("preset");
        assert_eq!(config.dtype_on(&Device::Cpu), DType::F32, "{name}");
    }
    let precision = |name| ModelConfig::preset(name).expect("preset").precision;
    assert_eq!(
        precision("tiny"),
        Precision::F32,
        "compared with the CPU closely"
    );
    assert_eq!(
        precision("wan2.1-1.3b"),
        Precision::Bf16,
        "served as Wan2.1 is"
    );
    assert_eq!(precision("medium"), Precision::Bf16);

    // A model directory written before the field existed computes in f32.
    let mut json =
        serde_json::to_value(ModelConfig::preset("medium").expect("preset")).expect("json");
    json.as_object_mut().expect("object").remove("precision");
    let old: ModelConfig = serde_json::from_value(json).expect("old config reads");
    assert_eq!(old.precision, Precision::F32);
}

#[test]
fn a_bf16_run_follows_the_f32_run_within_bf16_rounding() {
    let r = request();
    let exact = tiny_as(DType::F32);
    let half = tiny_as(DType::BF16);
    assert_eq!(half.dtype(), DType::BF16);
    let reference = finish(&exact, &r, None);
    let latent = finish(&half, &r, None);
    assert_eq!(latent.dtype(), DType::F32, "the latent stays f32");
    let diff = relative_diff(&latent, &reference);
    // bf16 keeps 8 bits of mantissa (about 4e-3 per rounding); three steps
    // of a four-block model stay within a few percent of the f32 run.
    assert!(diff > 0.0, "bf16 must really have computed in bf16");
    assert!(diff < 5e-2, "bf16 run {diff} from f32, relative");
    println!("tiny, 3 steps, bf16 on the CPU: {diff:.2e} from f32, relative");

    // Its video decodes (the decoder computes in f32 whatever the preset).
    let video = half.decode(&latent, &r).expect("decode");
    assert_eq!(video.frames.len(), r.frames);
}

#[test]
fn a_checkpoint_made_in_bf16_resumes_in_f32_and_is_stored_as_f32() {
    let r = request();
    let half = tiny_as(DType::BF16);
    let stopped = half
        .resume(&r, None, &mut |s| {
            if s.done == 1 {
                ControlFlow::Break(())
            } else {
                ControlFlow::Continue(())
            }
        })
        .expect("run");
    let Denoised::Stopped(checkpoint) = stopped else {
        panic!("expected a stop after step 1");
    };
    let bytes = checkpoint.to_bytes("tiny", &r).expect("to bytes");
    let stored = safetensors::SafeTensors::deserialize(&bytes).expect("safetensors");
    assert_eq!(
        stored.tensor("latent").expect("latent").dtype(),
        safetensors::Dtype::F32,
        "device-independent form"
    );

    let exact = tiny_as(DType::F32);
    let shape = exact.latent_shape(&r);
    let resumed =
        Checkpoint::from_bytes(&bytes, "tiny", &r, &shape, &Device::Cpu).expect("from bytes");
    assert_eq!(resumed.step, 1);
    let latent = finish(&exact, &r, Some(resumed));
    let reference = finish(&exact, &r, None);
    let diff = relative_diff(&latent, &reference);
    assert!(diff < 5e-2, "resumed run {diff} from the f32 run, relative");
}
