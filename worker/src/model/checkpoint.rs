//! A job's progress as bytes: the latent after a denoising step, so a
//! preempted job resumes where it stopped, on any worker. Stored as
//! safetensors with the step and a fingerprint of the request in the
//! metadata; a checkpoint is refused for any other request.

use std::collections::HashMap;

use candle_core::safetensors::Load;
use candle_core::{DType, Device, Tensor};
use safetensors::SafeTensors;

use super::request::GenerateRequest;
use super::ModelError;

const LATENT: &str = "latent";
const STEP: &str = "genfleet.step";
const FINGERPRINT: &str = "genfleet.request";

/// The latent after `step` of the request's denoising steps.
#[derive(Debug, Clone)]
pub struct Checkpoint {
    pub step: usize,
    pub latent: Tensor,
}

/// What the request's result depends on, as a stable 64-bit FNV-1a hash
/// (`model` included: another model's latent is meaningless here).
pub fn fingerprint(model: &str, request: &GenerateRequest) -> String {
    let text = format!(
        "{model}\u{1f}{}\u{1f}{}\u{1f}{}x{}x{}\u{1f}{}\u{1f}{}\u{1f}{}",
        request.prompt,
        request.negative_prompt,
        request.frames,
        request.width,
        request.height,
        request.steps,
        request.seed,
        request.guidance.to_bits()
    );
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in text.bytes() {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    format!("{hash:016x}")
}

fn damaged(why: impl Into<String>) -> ModelError {
    ModelError::Checkpoint(why.into())
}

impl Checkpoint {
    pub fn to_bytes(&self, model: &str, request: &GenerateRequest) -> Result<Vec<u8>, ModelError> {
        let metadata = HashMap::from([
            (STEP.to_string(), self.step.to_string()),
            (FINGERPRINT.to_string(), fingerprint(model, request)),
        ]);
        // Host f32 whatever the device: a checkpoint made on a GPU resumes
        // on the CPU, and the reverse.
        let latent = self
            .latent
            .to_device(&Device::Cpu)
            .and_then(|l| l.to_dtype(DType::F32))
            .map_err(|e| damaged(format!("cannot read the latent back: {e}")))?;
        safetensors::serialize([(LATENT, &latent)], Some(metadata))
            .map_err(|e| damaged(format!("cannot serialize the latent: {e}")))
    }

    /// Reads a checkpoint for `request`, refusing one that is damaged,
    /// made for another request or model, or of the wrong shape.
    pub fn from_bytes(
        bytes: &[u8],
        model: &str,
        request: &GenerateRequest,
        expected_shape: &[usize],
        device: &Device,
    ) -> Result<Self, ModelError> {
        let (_, header) = SafeTensors::read_metadata(bytes)
            .map_err(|e| damaged(format!("not a checkpoint: {e}")))?;
        let metadata = header.metadata().clone().unwrap_or_default();
        let want = fingerprint(model, request);
        match metadata.get(FINGERPRINT) {
            Some(got) if *got == want => {}
            _ => return Err(damaged("the checkpoint was made for another request")),
        }
        let step: usize = metadata
            .get(STEP)
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| damaged("the checkpoint has no step"))?;
        if step == 0 || step >= request.steps {
            return Err(damaged(format!(
                "checkpoint step {step} is outside 1..{}",
                request.steps
            )));
        }
        let tensors = SafeTensors::deserialize(bytes)
            .map_err(|e| damaged(format!("not a checkpoint: {e}")))?;
        let view = tensors
            .tensor(LATENT)
            .map_err(|e| damaged(format!("no latent: {e}")))?;
        if view.shape() != expected_shape {
            return Err(damaged(format!(
                "latent of shape {:?}, the request needs {expected_shape:?}",
                view.shape()
            )));
        }
        let latent = view
            .load(&Device::Cpu)
            .and_then(|l| l.to_dtype(DType::F32))
            .and_then(|l| l.to_device(device))
            .map_err(|e| damaged(format!("unreadable latent: {e}")))?;
        Ok(Self { step, latent })
    }
}
