//! The encoder half of the trained autoencoder: frames to the latent the
//! model's decoder reads. Only training needs it (the DiT learns to make
//! its latents); it lives in checkpoints, not in the shipped model.
//!
//! Like the decoder's geometry, latent frame k is video frame 4k, and each
//! is 8x smaller in space: three stride-2 3x3 convs, then a 1x1 to the
//! latent channels.

use candle_core::{Module, Result, Tensor};
use candle_nn::{Conv2d, VarBuilder};

use crate::model::decoder::strided_conv;
use crate::model::ModelConfig;

pub struct Encoder {
    stages: Vec<Conv2d>,
    conv_out: Conv2d,
    temporal_stride: usize,
}

/// Channels of the encoder's stages.
const WIDTH: usize = 32;

impl Encoder {
    pub fn new(config: &ModelConfig, vb: VarBuilder) -> Result<Self> {
        let inputs = [3, WIDTH, WIDTH];
        Ok(Self {
            stages: inputs
                .iter()
                .enumerate()
                .map(|(i, &cin)| strided_conv(cin, WIDTH, 3, 2, 1.0, vb.pp(format!("stages.{i}"))))
                .collect::<Result<Vec<_>>>()?,
            conv_out: strided_conv(WIDTH, config.latent_channels, 1, 1, 0.5, vb.pp("conv_out"))?,
            temporal_stride: config.vae_stride[0],
        })
    }

    /// The frames a latent frame each stands for: 0, 4, 8, ...
    pub fn key_frames(&self, frames: &Tensor) -> Result<Tensor> {
        let keys: Vec<u32> = (0..frames.dim(0)?)
            .step_by(self.temporal_stride)
            .map(|f| f as u32)
            .collect();
        frames.index_select(&Tensor::new(keys.as_slice(), frames.device())?, 0)
    }

    /// frames: (F, 3, H, W) in [0, 1] -> latent (C, T, H/8, W/8), T = 1 + (F-1)/4.
    pub fn encode(&self, frames: &Tensor) -> Result<Tensor> {
        let mut x = (self.key_frames(frames)? - 0.5)?;
        for stage in &self.stages {
            x = stage.forward(&x)?.silu()?;
        }
        // (T, C, h, w) -> (C, T, h, w)
        self.conv_out.forward(&x)?.transpose(0, 1)?.contiguous()
    }
}
