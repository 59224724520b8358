//! The video diffusion transformer and everything around it: presets,
//! weights, the prompt encoder, the sampler and the decoder.

pub mod checkpoint;
pub mod config;
mod cpu_kernels;
pub(crate) mod decoder;
pub(crate) mod dit;
mod group;
pub(crate) mod layers;
mod pipeline;
mod request;
mod rope;
pub mod sampler;
pub mod shipped;
pub(crate) mod text;
pub mod weights;

use std::path::PathBuf;

pub use checkpoint::Checkpoint;
pub use config::{ModelConfig, PRESETS};
pub use group::{generate_parallel, Generated};
pub use pipeline::{Conditioning, Denoised, GenerateRequest, Pipeline, StepProgress, Video};
pub use weights::{available_models, init_model, InitReport};

#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    #[error("unknown model preset {name:?}; the presets are {known}")]
    UnknownPreset { name: String, known: String },
    #[error("invalid model config: {0}")]
    InvalidConfig(String),
    #[error("invalid model configuration: {0}")]
    Config(#[from] config::ConfigError),
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path} is not a usable genfleet model file: {why}")]
    BadFile { path: PathBuf, why: String },
    #[error("model computation: {0}")]
    Candle(#[from] candle_core::Error),
    #[error("checkpoint: {0}")]
    Checkpoint(String),
    #[error("tensor-parallel rank {rank} failed: {why}")]
    RankFailed { rank: usize, why: String },
}
