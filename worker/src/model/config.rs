//! Model presets: the shape of the video DiT, its text encoder and decoder.
//!
//! The architecture follows Wan2.1 (Wan Team, "Wan: Open and Advanced
//! Large-Scale Video Generative Models", 2025): a (1, 2, 2) spacetime patch
//! embedding of a latent compressed 4x in time and 8x in space, blocks of
//! self-attention with 3D RoPE and QK RMSNorm, cross-attention to text
//! tokens, adaLN-style modulation from the timestep, flow matching.

use candle_core::{DType, Device};
use serde::{Deserialize, Serialize};

/// The number format a model computes in on an accelerator. The CPU
/// always computes in f32: candle's CPU kernels (and the fused ones in
/// `cpu_kernels`) are fast in f32 only, and the exactness tests run there.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Precision {
    #[default]
    F32,
    /// bfloat16: half the memory and the tensor cores' rate, 8 bits of
    /// mantissa (what Wan2.1 and most video DiTs are served in).
    Bf16,
}

impl Precision {
    pub fn dtype(self) -> DType {
        match self {
            Precision::F32 => DType::F32,
            Precision::Bf16 => DType::BF16,
        }
    }
}

/// The shape of one model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelConfig {
    pub name: String,
    /// Channels of the video latent (Wan's VAE: 16).
    pub latent_channels: usize,
    /// Spacetime patch of the transformer (t, h, w).
    pub patch: [usize; 3],
    /// Compression of the latent relative to pixels (t, h, w).
    pub vae_stride: [usize; 3],
    /// Width of the transformer.
    pub dim: usize,
    pub ffn_dim: usize,
    pub heads: usize,
    pub depth: usize,
    /// Width of the sinusoidal timestep features.
    pub freq_dim: usize,
    /// Text encoder: vocabulary (hashed words), width, layers, heads, tokens.
    pub text_vocab: usize,
    /// The known words of a model trained on a fixed vocabulary: word `i`
    /// is token `2 + i` and any other word one unknown-word token. Empty:
    /// words are hashed into `text_vocab` tokens.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub words: Vec<String>,
    pub text_dim: usize,
    pub text_layers: usize,
    pub text_heads: usize,
    pub text_len: usize,
    /// Decoder channels at 1x, 2x, 4x, 8x of the latent resolution.
    pub decoder_channels: [usize; 4],
    /// Epsilon of the norms.
    pub eps: f64,
    /// Base of the rotary position frequencies.
    pub rope_theta: f64,
    /// Whether patch embeddings get fixed sinusoidal absolute positions
    /// besides RoPE (Wan has RoPE only). The trained `world` model does:
    /// without them it learned colours but not where things are or which
    /// way they move.
    #[serde(default)]
    pub absolute_positions: bool,
    /// Timestep shift of the flow-matching schedule (Wan2.1 uses 5 at 480p).
    pub sample_shift: f64,
    /// What it computes in on a GPU (model directories written before this
    /// field existed compute in f32).
    #[serde(default)]
    pub precision: Precision,
}

/// Why a model configuration cannot be built.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ConfigError {
    #[error("dim {dim} must be a positive multiple of heads {heads}")]
    Heads { dim: usize, heads: usize },
    #[error("head dim {0} must be even and at least 6 for 3D RoPE")]
    HeadDim(usize),
    #[error("text dim {dim} must be a multiple of text heads {heads}")]
    TextHeads { dim: usize, heads: usize },
    #[error("patch {0:?}: only temporal patch 1 is supported")]
    Patch([usize; 3]),
    #[error("vae stride {0:?}: the decoder supports [4, 8, 8]")]
    VaeStride([usize; 3]),
    #[error("text_vocab {vocab} must hold the {words} words plus padding, start and unknown")]
    Vocabulary { vocab: usize, words: usize },
    #[error("text_len >= 2, text_vocab >= 16, depth >= 1 and an even freq_dim are required")]
    Sizes,
}

/// Names of the built-in presets, smallest first (proto's table).
pub use genfleet_proto::models::PRESETS;

impl ModelConfig {
    /// A built-in preset by name: its shape from the one preset table
    /// (`genfleet_proto::models`), plus what only candle needs.
    pub fn preset(name: &str) -> Option<Self> {
        let shape = genfleet_proto::models::model_shape(name)?;
        // A model trained on a fixed vocabulary knows its words.
        let words = if name == crate::train::PRESET {
            crate::world::vocabulary()
        } else {
            Vec::new()
        };
        Some(ModelConfig {
            name: shape.name.to_string(),
            latent_channels: shape.latent_channels,
            patch: shape.patch,
            vae_stride: shape.vae_stride,
            dim: shape.dim,
            ffn_dim: shape.ffn_dim,
            heads: shape.heads,
            depth: shape.depth,
            freq_dim: shape.freq_dim,
            text_vocab: shape.text_vocab,
            words,
            text_dim: shape.text_dim,
            text_layers: shape.text_layers,
            text_heads: shape.text_heads,
            text_len: shape.text_len,
            decoder_channels: shape.decoder_channels,
            eps: 1e-6,
            rope_theta: 10_000.0,
            absolute_positions: shape.absolute_positions,
            sample_shift: f64::from(shape.sample_shift_tenths) / 10.0,
            // The small presets stay f32 on GPUs too, so that a GPU run can
            // be compared with the CPU's closely; the large ones are served
            // as real models are.
            precision: if shape.weight_bytes == 2 {
                Precision::Bf16
            } else {
                Precision::F32
            },
        })
    }

    /// The dtype weights and activations have on `device`.
    pub fn dtype_on(&self, device: &Device) -> DType {
        if device.is_cpu() {
            DType::F32
        } else {
            self.precision.dtype()
        }
    }

    pub fn head_dim(&self) -> usize {
        self.dim / self.heads
    }

    /// Inputs of one patch: channels x patch volume.
    pub fn patch_features(&self) -> usize {
        self.latent_channels * self.patch.iter().product::<usize>()
    }

    /// Checks that the shapes fit together.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.dim == 0 || self.heads == 0 || !self.dim.is_multiple_of(self.heads) {
            return Err(ConfigError::Heads {
                dim: self.dim,
                heads: self.heads,
            });
        }
        if !self.head_dim().is_multiple_of(2) || self.head_dim() < 6 {
            return Err(ConfigError::HeadDim(self.head_dim()));
        }
        if self.text_heads == 0 || !self.text_dim.is_multiple_of(self.text_heads) {
            return Err(ConfigError::TextHeads {
                dim: self.text_dim,
                heads: self.text_heads,
            });
        }
        if self.patch[0] != 1 || self.patch[1] == 0 || self.patch[2] == 0 {
            return Err(ConfigError::Patch(self.patch));
        }
        if self.vae_stride != [4, 8, 8] {
            return Err(ConfigError::VaeStride(self.vae_stride));
        }
        if !self.words.is_empty() && self.text_vocab < self.words.len() + 3 {
            return Err(ConfigError::Vocabulary {
                vocab: self.text_vocab,
                words: self.words.len(),
            });
        }
        if self.text_len < 2
            || self.text_vocab < 16
            || self.depth == 0
            || !self.freq_dim.is_multiple_of(2)
        {
            return Err(ConfigError::Sizes);
        }
        Ok(())
    }

    /// Latent shape (channels, frames, height, width) for a video of
    /// `frames` x `height` x `width` pixels: like Wan's causal VAE, the first
    /// frame has a latent frame of its own and every 4 more frames share one.
    pub fn latent_shape(&self, frames: usize, height: usize, width: usize) -> [usize; 4] {
        let [st, sh, sw] = self.vae_stride;
        let latent_frames = 1 + frames.saturating_sub(1).div_ceil(st);
        [self.latent_channels, latent_frames, height / sh, width / sw]
    }

    /// Parameters of the transformer alone (the part worth sharding).
    pub fn transformer_parameters(&self) -> usize {
        let d = self.dim;
        let attention = 4 * (d * d + d) + 2 * d;
        let block = 2 * attention + 2 * d + 2 * d * self.ffn_dim + self.ffn_dim + d + 6 * d;
        self.depth * block
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_preset_is_valid() {
        for name in PRESETS {
            let config = ModelConfig::preset(name).expect("preset exists");
            assert_eq!(config.validate(), Ok(()), "{name}");
        }
        assert!(ModelConfig::preset("huge").is_none());
    }

    #[test]
    fn the_largest_preset_has_the_size_of_wan_1_3b() {
        let wan = ModelConfig::preset("wan2.1-1.3b").expect("preset");
        let billions = wan.transformer_parameters() as f64 / 1e9;
        assert!((1.1..1.5).contains(&billions), "{billions} B parameters");
    }

    /// The world preset's vocabulary size in the preset table is its words
    /// plus the three special tokens.
    #[test]
    fn the_world_presets_vocabulary_is_its_words() {
        let world = ModelConfig::preset("world").expect("preset");
        assert_eq!(world.text_vocab, world.words.len() + 3);
        assert!(world.absolute_positions);
        assert_eq!(world.sample_shift, 3.0);
    }

    /// The scheduler and the planner size jobs by the preset table's
    /// parameter counts: they must be what candle builds.
    #[test]
    fn the_preset_tables_parameter_counts_are_what_candle_builds() {
        use candle_core::{DType, Device};
        use genfleet_proto::models::model_shape;

        // Every preset is the same architecture: count the small ones' tensors.
        let split = [
            "attn.q.weight",
            "attn.q.bias",
            "attn.k.weight",
            "attn.k.bias",
            "attn.v.weight",
            "attn.v.bias",
            "attn.o.weight",
            "ffn.0.weight",
            "ffn.0.bias",
            "ffn.2.weight",
        ];
        for name in ["tiny", "small"] {
            let init = super::super::weights::SeededInit::new(1);
            let vb = candle_nn::VarBuilder::from_backend(
                Box::new(init.clone()),
                DType::F32,
                Device::Cpu,
            );
            let config = ModelConfig::preset(name).expect("preset");
            super::super::Pipeline::build(&config, vb).expect("builds");
            let tensors = init.tensors();
            let total: usize = tensors.values().map(|t| t.elem_count()).sum();
            let sharded: usize = tensors
                .iter()
                .filter(|(n, _)| n.starts_with("blocks.") && split.iter().any(|s| n.ends_with(s)))
                .map(|(_, t)| t.elem_count())
                .sum();
            let s = model_shape(name).expect("in the table");
            assert_eq!(
                (total, sharded),
                (s.parameters(), s.sharded_parameters()),
                "{name}: (all parameters, split ones)"
            );
        }
    }

    #[test]
    fn latent_frames_follow_the_causal_vae() {
        let tiny = ModelConfig::preset("tiny").expect("preset");
        assert_eq!(tiny.latent_shape(1, 256, 256), [16, 1, 32, 32]);
        assert_eq!(tiny.latent_shape(17, 256, 128), [16, 5, 32, 16]);
        assert_eq!(tiny.latent_shape(18, 64, 64), [16, 6, 8, 8]);
    }
}
