//! The video diffusion transformer, after Wan2.1's `WanModel`: patchify the
//! latent, run blocks of modulated self-attention (3D RoPE), cross-attention
//! to the text and a feed-forward net, then a modulated head and unpatchify.
//! Per-head QK RMSNorm follows HunyuanVideo and CogVideoX (Wan normalizes
//! over all heads at once); per head keeps attention heads independent,
//! which is what tensor parallelism splits.
//!
//! Tensor parallel after Megatron-LM: each rank of a group holds
//! `heads / size` attention heads (column-parallel q, k, v; row-parallel
//! output with an all-reduce) and `ffn_dim / size` feed-forward features;
//! everything else is replicated, so every rank ends each block with the
//! same activations.

use candle_core::{Module, Result, Tensor, D};
use candle_nn::{Init, Linear};

use super::config::ModelConfig;
use super::layers::{
    attention, linear, merge_heads, modulate, split_heads, training, FeedForward, LayerNorm,
    RmsNorm, RowParallel, TpBuilder,
};
use super::rope::{position_table, rope_tables};

struct Attention {
    q: Linear,
    k: Linear,
    v: Linear,
    o: RowParallel,
    norm_q: RmsNorm,
    norm_k: RmsNorm,
    /// This rank's heads.
    heads: usize,
}

impl Attention {
    fn new(dim: usize, kv_dim: usize, config: &ModelConfig, tp: &TpBuilder) -> Result<Self> {
        let out_gain = 1.0 / (2.0 * config.depth as f64).sqrt();
        let head_dim = config.head_dim();
        Ok(Self {
            q: tp.column(dim, dim, 1.0, "q")?,
            k: tp.column(kv_dim, dim, 1.0, "k")?,
            v: tp.column(kv_dim, dim, 1.0, "v")?,
            o: tp.row(dim, dim, out_gain, "o")?,
            norm_q: RmsNorm::new(head_dim, config.eps, tp.vb.pp("norm_q"))?,
            norm_k: RmsNorm::new(head_dim, config.eps, tp.vb.pp("norm_k"))?,
            heads: config.heads / tp.comm.size(),
        })
    }

    /// Per-head queries from x, keys and values from `context`, with QK
    /// norm: each (B, H, N, D).
    fn project(&self, x: &Tensor, context: &Tensor) -> Result<(Tensor, Tensor, Tensor)> {
        let heads = |t: Tensor| split_heads(&t, self.heads);
        let q = self.norm_q.forward(&heads(self.q.forward(x)?)?)?;
        let k = self.norm_k.forward(&heads(self.k.forward(context)?)?)?;
        let v = heads(self.v.forward(context)?)?;
        Ok((q, k, v))
    }

    /// Self-attention with rotary positions. x: (B, N, C), cos/sin: (N, D/2).
    fn self_attention(&self, x: &Tensor, cos: &Tensor, sin: &Tensor) -> Result<Tensor> {
        let (q, k, v) = self.project(x, x)?;
        let rope = if training(&q) {
            candle_nn::rotary_emb::rope_i_slow
        } else {
            candle_nn::rotary_emb::rope_i
        };
        let q = rope(&q, cos, sin)?;
        let k = rope(&k, cos, sin)?;
        self.o.forward(&merge_heads(&attention(&q, &k, &v, None)?)?)
    }

    /// Cross-attention from x (B, N, C) to text (B, L, C), bias (B, 1, 1, L).
    fn cross_attention(&self, x: &Tensor, text: &Tensor, bias: &Tensor) -> Result<Tensor> {
        let (q, k, v) = self.project(x, text)?;
        self.o
            .forward(&merge_heads(&attention(&q, &k, &v, Some(bias))?)?)
    }
}

struct Block {
    /// Learned offsets of the six modulation vectors: (1, 6, C).
    modulation: Tensor,
    norm1: LayerNorm,
    self_attn: Attention,
    norm3: LayerNorm,
    cross_attn: Attention,
    norm2: LayerNorm,
    ffn: FeedForward,
}

impl Block {
    fn new(config: &ModelConfig, tp: &TpBuilder) -> Result<Self> {
        let vb = &tp.vb;
        let d = config.dim;
        let scale = 1.0 / (d as f64).sqrt();
        Ok(Self {
            modulation: vb.get_with_hints(
                (1, 6, d),
                "modulation",
                Init::Randn {
                    mean: 0.0,
                    stdev: scale,
                },
            )?,
            norm1: LayerNorm::plain(d, config.eps, vb)?,
            self_attn: Attention::new(d, d, config, &tp.pp("self_attn"))?,
            norm3: LayerNorm::new(d, config.eps, vb.pp("norm3"))?,
            cross_attn: Attention::new(d, d, config, &tp.pp("cross_attn"))?,
            norm2: LayerNorm::plain(d, config.eps, vb)?,
            ffn: FeedForward::parallel(
                d,
                config.ffn_dim,
                1.0 / (2.0 * config.depth as f64).sqrt(),
                &tp.pp("ffn"),
            )?,
        })
    }

    /// x: (B, N, C); e: (B, 6, C) from the timestep; text: (B, L, C).
    fn forward(
        &self,
        x: &Tensor,
        e: &Tensor,
        text: &Tensor,
        bias: &Tensor,
        rope: &(Tensor, Tensor),
    ) -> Result<Tensor> {
        let e = e.broadcast_add(&self.modulation)?.chunk(6, 1)?;
        let (shift_msa, scale_msa, gate_msa) = (&e[0], &e[1], &e[2]);
        let (shift_mlp, scale_mlp, gate_mlp) = (&e[3], &e[4], &e[5]);
        let y = self.self_attn.self_attention(
            &modulate(&self.norm1.forward(x)?, shift_msa, scale_msa)?,
            &rope.0,
            &rope.1,
        )?;
        let x = (x + y.broadcast_mul(gate_msa)?)?;
        let x = (&x
            + self
                .cross_attn
                .cross_attention(&self.norm3.forward(&x)?, text, bias)?)?;
        let y = self
            .ffn
            .forward(&modulate(&self.norm2.forward(&x)?, shift_mlp, scale_mlp)?)?;
        x + y.broadcast_mul(gate_mlp)?
    }
}

pub struct Dit {
    config: ModelConfig,
    patch_embedding: Linear,
    text_embedding: (Linear, Linear),
    time_embedding: (Linear, Linear),
    time_projection: Linear,
    blocks: Vec<Block>,
    head_modulation: Tensor,
    head_norm: LayerNorm,
    head: Linear,
}

impl Dit {
    /// This rank's part of the model (all of it for a group of one); the
    /// group's size must divide the heads and the feed-forward width.
    pub fn new(config: &ModelConfig, tp: &TpBuilder) -> Result<Self> {
        let vb = &tp.vb;
        let d = config.dim;
        let size = tp.comm.size();
        if size == 0 || !config.heads.is_multiple_of(size) || !config.ffn_dim.is_multiple_of(size) {
            return Err(candle_core::Error::Msg(format!(
                "tensor parallel degree {size} must divide the {} heads and the feed-forward width {}",
                config.heads, config.ffn_dim
            )));
        }
        let blocks = (0..config.depth)
            .map(|i| Block::new(config, &tp.pp(format!("blocks.{i}"))))
            .collect::<Result<Vec<_>>>()?;
        Ok(Self {
            config: config.clone(),
            patch_embedding: linear(config.patch_features(), d, 1.0, vb.pp("patch_embedding"))?,
            text_embedding: (
                linear(config.text_dim, d, 1.0, vb.pp("text_embedding.0"))?,
                linear(d, d, 1.0, vb.pp("text_embedding.2"))?,
            ),
            time_embedding: (
                linear(config.freq_dim, d, 1.0, vb.pp("time_embedding.0"))?,
                linear(d, d, 1.0, vb.pp("time_embedding.2"))?,
            ),
            time_projection: linear(d, 6 * d, 0.5, vb.pp("time_projection.1"))?,
            blocks,
            head_modulation: vb.get_with_hints(
                (1, 2, d),
                "head.modulation",
                Init::Randn {
                    mean: 0.0,
                    stdev: 1.0 / (d as f64).sqrt(),
                },
            )?,
            head_norm: LayerNorm::plain(d, config.eps, vb)?,
            head: linear(d, config.patch_features(), 1.0, vb.pp("head.head"))?,
        })
    }

    /// Embeds encoded text for cross-attention: (B, L, text_dim) -> (B, L, C).
    pub fn embed_text(&self, text: &Tensor) -> Result<Tensor> {
        self.text_embedding
            .1
            .forward(&self.text_embedding.0.forward(text)?.gelu()?)
    }

    /// Predicts the flow velocity.
    /// x: latent (B, C, T, H, W); t: timesteps (B,) in [0, 1000];
    /// text: embedded text (B, L, C) from [`Dit::embed_text`]; bias: (B, 1, 1, L).
    pub fn forward(&self, x: &Tensor, t: &Tensor, text: &Tensor, bias: &Tensor) -> Result<Tensor> {
        let (b, _c, frames, height, width) = x.dims5()?;
        let [_, ph, pw] = self.config.patch;
        let grid = (frames, height / ph, width / pw);
        let mut tokens = self.patch_embedding.forward(&self.patchify(x)?)?;
        if self.config.absolute_positions {
            let table = position_table(self.config.dim, grid, self.config.rope_theta, x.device())?;
            tokens = tokens.broadcast_add(&table.to_dtype(x.dtype())?)?;
        }

        let e = self.time_embedding.1.forward(
            &self
                .time_embedding
                .0
                .forward(&sinusoidal(t, self.config.freq_dim)?.to_dtype(x.dtype())?)?
                .silu()?,
        )?;
        let e0 = self
            .time_projection
            .forward(&e.silu()?)?
            .reshape((b, 6, self.config.dim))?;

        let rope = rope_tables(
            self.config.head_dim(),
            grid,
            self.config.rope_theta,
            x.device(),
        )?;
        let rope = (rope.0.to_dtype(x.dtype())?, rope.1.to_dtype(x.dtype())?);
        let mut h = tokens;
        for block in &self.blocks {
            h = block.forward(&h, &e0, text, bias, &rope)?;
        }
        let m = self
            .head_modulation
            .broadcast_add(&e.unsqueeze(1)?)?
            .chunk(2, 1)?;
        let out = self
            .head
            .forward(&modulate(&self.head_norm.forward(&h)?, &m[0], &m[1])?)?;
        self.unpatchify(&out, grid)
    }

    /// (B, C, T, H, W) -> (B, T*(H/ph)*(W/pw), C*ph*pw), tokens in (t, h, w) order.
    fn patchify(&self, x: &Tensor) -> Result<Tensor> {
        let (b, c, t, h, w) = x.dims5()?;
        let [_, ph, pw] = self.config.patch;
        let (hp, wp) = (h / ph, w / pw);
        x.reshape(vec![b, c, t, hp, ph, wp, pw])?
            .permute(vec![0, 2, 3, 5, 1, 4, 6])?
            .reshape((b, t * hp * wp, c * ph * pw))
    }

    /// Inverse of [`Dit::patchify`].
    fn unpatchify(&self, x: &Tensor, (t, hp, wp): (usize, usize, usize)) -> Result<Tensor> {
        let b = x.dim(0)?;
        let [_, ph, pw] = self.config.patch;
        let c = self.config.latent_channels;
        x.reshape(vec![b, t, hp, wp, c, ph, pw])?
            .permute(vec![0, 4, 1, 2, 5, 3, 6])?
            .reshape((b, c, t, hp * ph, wp * pw))
    }
}

/// Sinusoidal timestep features (B,) -> (B, dim): [cos, sin] of t * 10000^(-i/half).
fn sinusoidal(t: &Tensor, dim: usize) -> Result<Tensor> {
    let half = dim / 2;
    let freqs: Vec<f32> = (0..half)
        .map(|i| (-(10_000f64.ln()) * i as f64 / half as f64).exp() as f32)
        .collect();
    let freqs = Tensor::from_vec(freqs, (1, half), t.device())?;
    let args = t.unsqueeze(1)?.broadcast_mul(&freqs)?;
    Tensor::cat(&[args.cos()?, args.sin()?], D::Minus1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{DType, Device};

    #[test]
    fn patchify_round_trips() {
        let config = ModelConfig::preset("tiny").expect("preset");
        let vb = candle_nn::VarBuilder::zeros(DType::F32, &Device::Cpu);
        let tp = TpBuilder::slicing(vb, std::sync::Arc::new(crate::parallel::Solo));
        let dit = Dit::new(&config, &tp).expect("model");
        let x = Tensor::arange(0f32, (2 * 16 * 3 * 4 * 6) as f32, &Device::Cpu)
            .and_then(|t| t.reshape((2, 16, 3, 4, 6)))
            .expect("x");
        let tokens = dit.patchify(&x).expect("patchify");
        assert_eq!(tokens.dims(), &[2, 3 * 2 * 3, 64]);
        let back = dit.unpatchify(&tokens, (3, 2, 3)).expect("unpatchify");
        let same = back
            .eq(&x)
            .and_then(|m| m.min_all())
            .and_then(|m| m.to_scalar::<u8>())
            .expect("cmp");
        assert_eq!(same, 1);
    }
}
