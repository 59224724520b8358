//! Building blocks shared by the text encoder, the DiT and the decoder.

use std::sync::Arc;

use candle_core::{DType, Module, Result, Tensor, D};
use candle_nn::init::{FanInOut, NonLinearity, NormalOrUniform};
use candle_nn::var_builder::{Shard, ShardedVarBuilder};
use candle_nn::{Init, Linear, VarBuilder};

use crate::parallel::{Communicator, Solo};

/// Scores held at once: queries are attended in chunks whose (B, H, rows,
/// N) score matrix stays under this many elements (16 MB), which bounds the
/// memory of long videos and keeps the buffer small enough for the
/// allocator to reuse rather than map fresh pages every time.
const ATTENTION_SCORE_ELEMENTS: usize = 4 << 20;

/// The same bound on a GPU, larger: every chunk costs a handful of kernel
/// launches, and small chunks would leave the GPU waiting on them (64 M
/// scores: 128 MiB in bf16, a few hundred MiB with the softmax's copies).
const ATTENTION_SCORE_ELEMENTS_GPU: usize = 64 << 20;

/// A linear layer whose weights start with std `gain / sqrt(fan_in)` and
/// zero bias. Output projections take a smaller gain so the residual stream
/// of a randomly initialized model stays in range.
pub fn linear(in_dim: usize, out_dim: usize, gain: f64, vb: VarBuilder) -> Result<Linear> {
    let init = Init::Kaiming {
        dist: NormalOrUniform::Normal,
        fan: FanInOut::FanIn,
        non_linearity: NonLinearity::ExplicitGain(gain),
    };
    let weight = vb.get_with_hints((out_dim, in_dim), "weight", init)?;
    let bias = vb.get_with_hints(out_dim, "bias", Init::Const(0.0))?;
    Ok(Linear::new(weight, Some(bias)))
}

/// Whether gradients flow through `x` (it depends on a variable being
/// trained). The fused kernels (ours in `cpu_kernels`, candle's norms,
/// softmax, RoPE and bilinear upsampling) have no backward pass, so
/// training takes candle's composed ops, which compute the same values.
pub fn training(x: &Tensor) -> bool {
    x.track_op()
}

/// RMSNorm with a learned scale (Zhang and Sennrich, 2019).
#[derive(Debug, Clone)]
pub struct RmsNorm {
    weight: Tensor,
    eps: f32,
}

impl RmsNorm {
    pub fn new(dim: usize, eps: f64, vb: VarBuilder) -> Result<Self> {
        Ok(Self {
            weight: vb.get_with_hints(dim, "weight", Init::Const(1.0))?,
            eps: eps as f32,
        })
    }

    /// x: (.., dim)
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        if training(x) || training(&self.weight) {
            return candle_nn::ops::rms_norm_slow(x, &self.weight, self.eps);
        }
        candle_nn::ops::rms_norm(&x.contiguous()?, &self.weight, self.eps)
    }
}

/// LayerNorm over the last dim, with or without a learned affine.
#[derive(Debug, Clone)]
pub struct LayerNorm {
    weight: Tensor,
    bias: Tensor,
    eps: f32,
}

impl LayerNorm {
    pub fn new(dim: usize, eps: f64, vb: VarBuilder) -> Result<Self> {
        Ok(Self {
            weight: vb.get_with_hints(dim, "weight", Init::Const(1.0))?,
            bias: vb.get_with_hints(dim, "bias", Init::Const(0.0))?,
            eps: eps as f32,
        })
    }

    /// Without learned parameters (the DiT's modulated norms).
    pub fn plain(dim: usize, eps: f64, vb: &VarBuilder) -> Result<Self> {
        Ok(Self {
            weight: Tensor::ones(dim, vb.dtype(), vb.device())?,
            bias: Tensor::zeros(dim, vb.dtype(), vb.device())?,
            eps: eps as f32,
        })
    }

    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        if training(x) || training(&self.weight) {
            return candle_nn::ops::layer_norm_slow(x, &self.weight, &self.bias, self.eps);
        }
        candle_nn::ops::layer_norm(&x.contiguous()?, &self.weight, &self.bias, self.eps)
    }
}

/// Builds a rank's share of the split layers. Saved weights are read
/// sharded (candle-nn's sharded var builder slices each tensor as it reads
/// it from the safetensors file, so a rank never holds a whole split layer);
/// weights made from a seed are built whole and sliced, as Megatron-LM
/// splits them: column-parallel layers by outputs (q, k, v, the
/// feed-forward's up projection), row-parallel by inputs (the attention
/// output and the down projection).
#[derive(Clone)]
pub struct TpBuilder<'a> {
    /// Every tensor, whole (replicated layers; seeded split layers).
    pub vb: VarBuilder<'a>,
    /// Slices read from the file, when the weights are saved ones.
    shards: Option<ShardedVarBuilder<'a>>,
    pub comm: Arc<dyn Communicator>,
}

impl<'a> TpBuilder<'a> {
    /// Split layers built whole over `vb` and sliced.
    pub fn slicing(vb: VarBuilder<'a>, comm: Arc<dyn Communicator>) -> Self {
        Self {
            vb,
            shards: None,
            comm,
        }
    }

    /// Split layers read as slices from `shards`; the rest whole from `vb`.
    pub fn loading(
        vb: VarBuilder<'a>,
        shards: ShardedVarBuilder<'a>,
        comm: Arc<dyn Communicator>,
    ) -> Self {
        Self {
            vb,
            shards: Some(shards),
            comm,
        }
    }

    pub fn pp(&self, name: impl ToString) -> Self {
        let name = name.to_string();
        Self {
            vb: self.vb.pp(&name),
            shards: self.shards.as_ref().map(|s| s.pp(&name)),
            comm: self.comm.clone(),
        }
    }

    /// This rank's slice of tensor `name` along `dim`, checked against the
    /// shape it must have (candle-nn checks only unsharded reads).
    fn shard(
        &self,
        shards: &ShardedVarBuilder,
        name: &str,
        dim: usize,
        shape: &[usize],
    ) -> Result<Tensor> {
        let hint = Shard {
            dim,
            rank: self.comm.rank(),
            world_size: self.comm.size(),
        };
        let tensor = shards.get_with_hints(shape.to_vec(), name, hint)?;
        if tensor.dims() != shape {
            candle_core::bail!(
                "{}.{name}: rank {} of {} expected a slice of shape {shape:?}, the file gave {:?}",
                shards.prefix(),
                self.comm.rank(),
                self.comm.size(),
                tensor.dims()
            );
        }
        Ok(tensor)
    }

    /// A column-parallel linear layer `name`: this rank's `out_dim / size` outputs.
    pub fn column(&self, in_dim: usize, out_dim: usize, gain: f64, name: &str) -> Result<Linear> {
        let part = out_dim / self.comm.size();
        let Some(shards) = &self.shards else {
            let whole = linear(in_dim, out_dim, gain, self.vb.pp(name))?;
            return column_shard(&whole, self.comm.as_ref());
        };
        let shards = shards.pp(name);
        let weight = self.shard(&shards, "weight", 0, &[part, in_dim])?;
        let bias = self.shard(&shards, "bias", 0, &[part])?;
        Ok(Linear::new(weight, Some(bias)))
    }

    /// A row-parallel linear layer `name`: this rank's `in_dim / size` inputs.
    pub fn row(&self, in_dim: usize, out_dim: usize, gain: f64, name: &str) -> Result<RowParallel> {
        let Some(shards) = &self.shards else {
            let whole = linear(in_dim, out_dim, gain, self.vb.pp(name))?;
            return RowParallel::new(&whole, self.comm.clone());
        };
        let shards = shards.pp(name);
        let weight = self.shard(&shards, "weight", 1, &[out_dim, in_dim / self.comm.size()])?;
        // The bias is added once, after the sum: every rank holds all of it.
        let bias = shards.get_with_hints(out_dim, "bias", Shard::default())?;
        Ok(RowParallel {
            shard: Linear::new(weight, None),
            bias: Some(bias),
            comm: self.comm.clone(),
        })
    }
}

/// Rank `rank`'s share of a linear layer's outputs (column-parallel).
fn column_shard(layer: &Linear, comm: &dyn Communicator) -> Result<Linear> {
    let (rank, size) = (comm.rank(), comm.size());
    let part = layer.weight().dim(0)? / size;
    let weight = layer.weight().narrow(0, rank * part, part)?.contiguous()?;
    let bias = match layer.bias() {
        Some(b) => Some(b.narrow(0, rank * part, part)?.contiguous()?),
        None => None,
    };
    Ok(Linear::new(weight, bias))
}

/// A linear layer split by its inputs (row-parallel). Each rank multiplies
/// its slice of the features; the partial products are summed over the
/// ranks, then the bias is added once.
#[derive(Clone)]
pub struct RowParallel {
    shard: Linear,
    bias: Option<Tensor>,
    comm: Arc<dyn Communicator>,
}

impl RowParallel {
    fn new(layer: &Linear, comm: Arc<dyn Communicator>) -> Result<Self> {
        let (rank, size) = (comm.rank(), comm.size());
        let part = layer.weight().dim(1)? / size;
        let weight = layer.weight().narrow(1, rank * part, part)?.contiguous()?;
        Ok(Self {
            shard: Linear::new(weight, None),
            bias: layer.bias().cloned(),
            comm,
        })
    }

    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let y = self.comm.all_reduce_sum(&self.shard.forward(x)?)?;
        match &self.bias {
            Some(bias) => y.broadcast_add(bias),
            None => Ok(y),
        }
    }
}

/// Two linear layers with a tanh-approximated GELU between them; split
/// across a tensor-parallel group by its hidden features.
#[derive(Clone)]
pub struct FeedForward {
    up: Linear,
    down: RowParallel,
}

impl FeedForward {
    /// Weights `0` (up) and `2` (down), as in a torch `Sequential`.
    pub fn new(dim: usize, hidden: usize, out_gain: f64, vb: VarBuilder) -> Result<Self> {
        Self::parallel(
            dim,
            hidden,
            out_gain,
            &TpBuilder::slicing(vb, Arc::new(Solo)),
        )
    }

    /// This rank's share of the layer (all of it in a group of one).
    pub fn parallel(dim: usize, hidden: usize, out_gain: f64, tp: &TpBuilder) -> Result<Self> {
        Ok(Self {
            up: tp.column(dim, hidden, 1.0, "0")?,
            down: tp.row(hidden, dim, out_gain, "2")?,
        })
    }

    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let up = self.up.forward(x)?;
        let hidden = if training(&up) {
            up.gelu()?
        } else {
            super::cpu_kernels::gelu_tanh(&up)?
        };
        self.down.forward(&hidden)
    }
}

/// adaLN modulation: x * (1 + scale) + shift, with shift and scale (B, 1, C).
pub fn modulate(x: &Tensor, shift: &Tensor, scale: &Tensor) -> Result<Tensor> {
    x.broadcast_mul(&(scale + 1.0)?)?.broadcast_add(shift)
}

/// Splits (B, N, H*D) into heads: (B, H, N, D), contiguous.
pub fn split_heads(x: &Tensor, heads: usize) -> Result<Tensor> {
    let (b, n, c) = x.dims3()?;
    x.reshape((b, n, heads, c / heads))?
        .transpose(1, 2)?
        .contiguous()
}

/// Joins heads back: (B, H, N, D) -> (B, N, H*D).
pub fn merge_heads(x: &Tensor) -> Result<Tensor> {
    let (b, h, n, d) = x.dims4()?;
    x.transpose(1, 2)?.reshape((b, n, h * d))
}

/// Scaled dot-product attention (Vaswani et al., 2017).
/// q: (B, H, Nq, D), k and v: (B, H, Nk, D), bias: broadcastable to
/// (B, H, Nq, Nk) and added to the scores (0 keeps, -inf-like drops).
pub fn attention(q: &Tensor, k: &Tensor, v: &Tensor, bias: Option<&Tensor>) -> Result<Tensor> {
    let scale = 1.0 / (q.dim(D::Minus1)? as f64).sqrt();
    let trained = [q, k, v].iter().any(|t| training(t));
    if super::cpu_kernels::has_fused_attention(q) && !trained {
        return super::cpu_kernels::attention(q, k, v, bias, scale as f32);
    }
    chunked_attention(q, k, v, bias, scale)
}

/// [`attention`] with candle's ops (other devices and dtypes), the queries
/// in chunks to bound the score matrix.
fn chunked_attention(
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
    bias: Option<&Tensor>,
    scale: f64,
) -> Result<Tensor> {
    // Scaling the queries costs a pass over (.., Nq, D), not over the scores.
    let q = (q * scale)?;
    let k_t = k.t()?.contiguous()?;
    let (b, h, nq, _) = q.dims4()?;
    let nk = k.dim(2)?;
    let budget = if q.device().is_cpu() {
        ATTENTION_SCORE_ELEMENTS
    } else {
        ATTENTION_SCORE_ELEMENTS_GPU
    };
    let rows = (budget / (b * h * nk).max(1)).clamp(1, nq.max(1));
    let mut outputs = Vec::with_capacity(nq.div_ceil(rows));
    for start in (0..nq).step_by(rows) {
        let q_chunk = q.narrow(2, start, rows.min(nq - start))?;
        let mut scores = q_chunk.matmul(&k_t)?;
        if let Some(bias) = bias {
            scores = scores.broadcast_add(bias)?;
        }
        let weights = if training(&scores) {
            candle_nn::ops::softmax(&scores, D::Minus1)?
        } else {
            candle_nn::ops::softmax_last_dim(&scores)?
        };
        outputs.push(weights.matmul(v)?);
    }
    if outputs.len() == 1 {
        Ok(outputs.remove(0))
    } else {
        Tensor::cat(&outputs, 2)
    }
}

/// Additive attention bias from a (B, L) keep-mask of 1s and 0s: (B, 1, 1, L).
pub fn mask_to_bias(mask: &Tensor) -> Result<Tensor> {
    let (b, l) = mask.dims2()?;
    // (mask - 1) * 1e9: 0 where kept, -1e9 where padded.
    ((mask.to_dtype(DType::F32)? - 1.0)? * 1e9)?.reshape((b, 1, 1, l))
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    #[test]
    fn chunked_attention_equals_whole() {
        let dev = Device::Cpu;
        // Enough queries for several chunks, the last one short.
        let keys = 4096;
        let n = 2 * ATTENTION_SCORE_ELEMENTS / (2 * keys) + 37;
        let q = Tensor::randn(0f32, 1.0, (1, 2, n, 8), &dev).expect("q");
        let k = Tensor::randn(0f32, 1.0, (1, 2, keys, 8), &dev).expect("k");
        let v = Tensor::randn(0f32, 1.0, (1, 2, keys, 8), &dev).expect("v");
        let chunked = chunked_attention(&q, &k, &v, None, 1.0 / 8f64.sqrt()).expect("attention");
        let scores = (q.matmul(&k.t().expect("t")).expect("mm") / (8f64).sqrt()).expect("scale");
        let whole = candle_nn::ops::softmax_last_dim(&scores)
            .expect("softmax")
            .matmul(&v)
            .expect("mm");
        let diff = (chunked - whole)
            .expect("sub")
            .abs()
            .expect("abs")
            .max_all()
            .expect("max");
        assert!(diff.to_scalar::<f32>().expect("scalar") < 1e-5);
    }

    #[test]
    fn masked_keys_get_no_weight() {
        let dev = Device::Cpu;
        let q = Tensor::ones((1, 1, 1, 4), DType::F32, &dev).expect("q");
        let k = Tensor::ones((1, 1, 2, 4), DType::F32, &dev).expect("k");
        let v = Tensor::new(&[[[[1f32, 1., 1., 1.], [9., 9., 9., 9.]]]], &dev).expect("v");
        let mask = Tensor::new(&[[1f32, 0.]], &dev).expect("mask");
        let bias = mask_to_bias(&mask).expect("bias");
        let out = attention(&q, &k, &v, Some(&bias)).expect("attention");
        let values: Vec<f32> = out.flatten_all().and_then(|t| t.to_vec1()).expect("vec");
        assert_eq!(values, vec![1.0; 4]);
    }
}
