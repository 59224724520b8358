//! From latent to RGB frames.
//!
//! Where Wan2.1 has a trained causal 3D VAE, this is a small untrained
//! decoder of the same geometry: latent frame k sits at video frame 4k
//! (frames between are interpolated in latent space), and each frame is
//! upsampled 8x by three (bilinear 2x, 3x3 conv, SiLU) stages, plus a
//! bilinear skip path from a 1x1 projection of the latent to RGB that
//! carries the large-scale colour.

use candle_core::{Module, Result, Tensor};
use candle_nn::{Conv2d, Conv2dConfig, Init, VarBuilder};

use super::config::ModelConfig;

/// Frames decoded at once: bounds memory for long videos.
const FRAMES_PER_CHUNK: usize = 8;

pub struct Decoder {
    conv_in: Conv2d,
    stages: Vec<Conv2d>,
    conv_out: Conv2d,
    skip: Conv2d,
    temporal_stride: usize,
}

/// A conv with weights of std `gain * sqrt(2 / fan_in)`.
fn conv(cin: usize, cout: usize, kernel: usize, gain: f64, vb: VarBuilder) -> Result<Conv2d> {
    let fan_in = (cin * kernel * kernel) as f64;
    let weight = vb.get_with_hints(
        (cout, cin, kernel, kernel),
        "weight",
        Init::Randn {
            mean: 0.0,
            stdev: gain * (2.0 / fan_in).sqrt(),
        },
    )?;
    let bias = vb.get_with_hints(cout, "bias", Init::Const(0.0))?;
    let config = Conv2dConfig {
        padding: kernel / 2,
        ..Default::default()
    };
    Ok(Conv2d::new(weight, Some(bias), config))
}

impl Decoder {
    pub fn new(config: &ModelConfig, vb: VarBuilder) -> Result<Self> {
        let c = config.decoder_channels;
        let z = config.latent_channels;
        Ok(Self {
            conv_in: conv(z, c[0], 1, 1.0, vb.pp("conv_in"))?,
            stages: (0..3)
                .map(|i| conv(c[i], c[i + 1], 3, 1.0, vb.pp(format!("stages.{i}"))))
                .collect::<Result<Vec<_>>>()?,
            // Small output gains keep an untrained decoder's colours off the
            // sigmoid's flat ends.
            conv_out: conv(c[3], 3, 1, 0.25, vb.pp("conv_out"))?,
            skip: conv(z, 3, 1, 0.25, vb.pp("skip"))?,
            temporal_stride: config.vae_stride[0],
        })
    }

    /// latent: (C, T, h, w) -> frames (frames, 3, 8h, 8w) in [0, 1].
    pub fn decode(&self, latent: &Tensor, frames: usize) -> Result<Tensor> {
        let per_frame = self.interpolate_frames(latent, frames)?;
        let mut decoded = Vec::with_capacity(frames.div_ceil(FRAMES_PER_CHUNK));
        for start in (0..frames).step_by(FRAMES_PER_CHUNK) {
            let n = FRAMES_PER_CHUNK.min(frames - start);
            decoded.push(self.decode_frames(&per_frame.narrow(0, start, n)?)?);
        }
        Tensor::cat(&decoded, 0)
    }

    /// (C, T, h, w) -> (frames, C, h, w): frame f is latent frame f/4,
    /// linearly interpolated between neighbours.
    fn interpolate_frames(&self, latent: &Tensor, frames: usize) -> Result<Tensor> {
        let latent_frames = latent.dim(1)?;
        let by_frame = latent.transpose(0, 1)?.contiguous()?;
        let mut out = Vec::with_capacity(frames);
        for f in 0..frames {
            let pos = f as f64 / self.temporal_stride as f64;
            let lo = (pos.floor() as usize).min(latent_frames - 1);
            let hi = (lo + 1).min(latent_frames - 1);
            let a = pos - lo as f64;
            let frame = if a == 0.0 || lo == hi {
                by_frame.get(lo)?
            } else {
                ((by_frame.get(lo)? * (1.0 - a))? + (by_frame.get(hi)? * a)?)?
            };
            out.push(frame);
        }
        Tensor::stack(&out, 0)
    }

    /// (N, C, h, w) -> (N, 3, 8h, 8w)
    fn decode_frames(&self, z: &Tensor) -> Result<Tensor> {
        let (_, _, h, w) = z.dims4()?;
        let mut x = self.conv_in.forward(z)?.silu()?;
        let mut scale = 1;
        for stage in &self.stages {
            scale *= 2;
            x = x.upsample_bilinear2d(h * scale, w * scale, false)?;
            x = stage.forward(&x)?.silu()?;
        }
        let skip = self
            .skip
            .forward(z)?
            .upsample_bilinear2d(h * scale, w * scale, false)?;
        candle_nn::ops::sigmoid(&(self.conv_out.forward(&x)? + skip)?)
    }
}
