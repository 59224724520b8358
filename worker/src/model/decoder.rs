//! From latent to RGB frames.
//!
//! Where Wan2.1 has a trained causal 3D VAE, this is a small untrained
//! decoder of the same geometry: latent frame k sits at video frame 4k
//! (frames between are interpolated in latent space), and each frame is
//! upsampled 8x by three (bilinear 2x, 3x3 conv, SiLU) stages, plus a
//! bilinear skip path from a 1x1 projection of the latent to RGB that
//! carries the large-scale colour.

use candle_core::{Device, Module, Result, Tensor};
use candle_nn::{Conv2d, Conv2dConfig, Init, VarBuilder};

use super::config::ModelConfig;
use super::layers::training;

/// Frames decoded at once: bounds memory for long videos.
const FRAMES_PER_CHUNK: usize = 8;

pub struct Decoder {
    conv_in: Conv2d,
    stages: Vec<Conv2d>,
    conv_out: Conv2d,
    skip: Conv2d,
    temporal_stride: usize,
}

/// Bilinear upsampling of (N, C, h, w) to (N, C, height, width) with
/// half-pixel centres, as candle's `upsample_bilinear2d`. That one has no
/// backward pass; in training the same values come from two matrix
/// products with the interpolation matrices.
pub fn upsample_bilinear(x: &Tensor, height: usize, width: usize) -> Result<Tensor> {
    if !training(x) {
        return x.upsample_bilinear2d(height, width, false);
    }
    let (_, _, h, w) = x.dims4()?;
    let rows = interpolation(height, h, x.device())?;
    let columns = interpolation(width, w, x.device())?.t()?;
    rows.broadcast_matmul(&x.broadcast_matmul(&columns)?)
}

/// The (out, input) matrix of linear interpolation between sample
/// centres, clamped at the edges.
fn interpolation(out: usize, input: usize, device: &Device) -> Result<Tensor> {
    let mut m = vec![0f32; out * input];
    let scale = input as f64 / out as f64;
    for i in 0..out {
        let source = ((i as f64 + 0.5) * scale - 0.5).max(0.0);
        let lo = (source.floor() as usize).min(input - 1);
        let hi = (lo + 1).min(input - 1);
        let weight = (source - lo as f64) as f32;
        m[i * input + lo] += 1.0 - weight;
        m[i * input + hi] += weight;
    }
    Tensor::from_vec(m, (out, input), device)
}

/// A conv with weights of std `gain * sqrt(2 / fan_in)`.
fn conv(cin: usize, cout: usize, kernel: usize, gain: f64, vb: VarBuilder) -> Result<Conv2d> {
    strided_conv(cin, cout, kernel, 1, gain, vb)
}

/// [`conv`] moving `stride` pixels at a time (the training encoder's).
pub(crate) fn strided_conv(
    cin: usize,
    cout: usize,
    kernel: usize,
    stride: usize,
    gain: f64,
    vb: VarBuilder,
) -> Result<Conv2d> {
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
        stride,
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
    pub(crate) fn decode_frames(&self, z: &Tensor) -> Result<Tensor> {
        let (_, _, h, w) = z.dims4()?;
        let mut x = self.conv_in.forward(z)?.silu()?;
        let mut scale = 1;
        for stage in &self.stages {
            scale *= 2;
            x = upsample_bilinear(&x, h * scale, w * scale)?;
            x = stage.forward(&x)?.silu()?;
        }
        let skip = upsample_bilinear(&self.skip.forward(z)?, h * scale, w * scale)?;
        candle_nn::ops::sigmoid(&(self.conv_out.forward(&x)? + skip)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Var;

    #[test]
    fn trained_upsampling_computes_what_inference_does() {
        let x = Tensor::randn(0f32, 1.0, (2, 3, 4, 5), &Device::Cpu).expect("x");
        let var = Var::from_tensor(&x).expect("var");
        for (h, w) in [(8, 10), (32, 40), (4, 5)] {
            let fast = x.upsample_bilinear2d(h, w, false).expect("native");
            let trained = upsample_bilinear(var.as_tensor(), h, w).expect("matmul");
            let diff = (fast - &trained)
                .and_then(|d| d.abs()?.max_all()?.to_scalar::<f32>())
                .expect("diff");
            assert!(diff < 1e-5, "{h}x{w}: differs by {diff}");
            let grads = trained
                .sum_all()
                .and_then(|s| s.backward())
                .expect("backward");
            assert!(grads.get(var.as_tensor()).is_some(), "no gradient");
        }
    }
}
