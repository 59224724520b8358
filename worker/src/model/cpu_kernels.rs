//! Fused CPU kernels for the hot spots of a DiT step.
//!
//! candle's CPU softmax and GELU call the scalar libm `expf`/`tanhf` one
//! element at a time, and its unary maps run on one thread; in a step of
//! the tiny preset they took about half the time. These kernels split rows
//! across rayon's pool and use an exp that the compiler vectorizes
//! (Cephes' `expf` polynomial after Cody-Waite range reduction, within 2
//! ulp of libm over the range that matters).
//!
//! Attention is computed a block of queries at a time for one head, so the
//! block's scores stay in the core's cache between the two products and the
//! softmax (the idea of FlashAttention, Dao et al., 2022, without the online
//! softmax: a block's row of scores spans all keys, which fits in cache at
//! these lengths). Other devices and dtypes keep candle's own ops.

use std::cell::RefCell;

use candle_core::{CpuStorage, CustomOp1, CustomOp3, DType, Layout, Result, Shape, Tensor};
use rayon::prelude::*;

/// Rows (or elements) handed to one rayon task at the least: small tasks
/// cost more to schedule than to run.
const MIN_TASK_ELEMENTS: usize = 16 * 1024;

/// GELU with the tanh approximation (Hendrycks and Gimpel, 2016), as
/// candle's `Tensor::gelu`.
pub fn gelu_tanh(x: &Tensor) -> Result<Tensor> {
    if x.device().is_cpu() && x.dtype() == DType::F32 {
        x.contiguous()?.apply_op1_no_bwd(&GeluTanh)
    } else {
        x.gelu()
    }
}

/// Queries of one head attended together: 64 rows of scores over a few
/// thousand keys is a few hundred KB, within a core's L2.
const QUERY_BLOCK: usize = 64;

/// Whether [`attention`] runs here (CPU, f32); elsewhere the caller uses
/// candle's ops.
pub fn has_fused_attention(q: &Tensor) -> bool {
    q.device().is_cpu() && q.dtype() == DType::F32
}

/// softmax(q k^T * scale + bias) v for q: (B, H, Nq, D), k: (B, H, Nk, D),
/// v: (B, H, Nk, Dv) and an optional additive bias over the keys (B, Nk),
/// on the CPU in f32 (see [`has_fused_attention`]).
pub fn attention(
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
    bias: Option<&Tensor>,
    scale: f32,
) -> Result<Tensor> {
    let bias = match bias {
        Some(b) => Some(b.flatten_all()?.to_vec1::<f32>()?),
        None => None,
    };
    let op = BlockedAttention { scale, bias };
    q.contiguous()?
        .apply_op3_no_bwd(&k.contiguous()?, &v.contiguous()?, &op)
}

struct BlockedAttention {
    scale: f32,
    /// Additive bias per (batch, key), flattened.
    bias: Option<Vec<f32>>,
}

thread_local! {
    /// A block's scores, kept between blocks run on the same thread.
    static SCORES: RefCell<Vec<f32>> = const { RefCell::new(Vec::new()) };
}

impl CustomOp3 for BlockedAttention {
    fn name(&self) -> &'static str {
        "genfleet-blocked-attention"
    }

    fn cpu_fwd(
        &self,
        q: &CpuStorage,
        lq: &Layout,
        k: &CpuStorage,
        lk: &Layout,
        v: &CpuStorage,
        lv: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let (q, k, v) = (
            contiguous_f32(q, lq, self.name())?,
            contiguous_f32(k, lk, self.name())?,
            contiguous_f32(v, lv, self.name())?,
        );
        let (&[b, h, nq, d], &[kb, kh, nk, kd], &[vb, vh, vn, dv]) =
            (lq.dims(), lk.dims(), lv.dims())
        else {
            candle_core::bail!("attention takes (B, H, N, D) queries, keys and values");
        };
        if (kb, kh, kd) != (b, h, d) || (vb, vh, vn) != (b, h, nk) {
            candle_core::bail!(
                "attention shapes do not fit: q {:?}, k {:?}, v {:?}",
                lq.dims(),
                lk.dims(),
                lv.dims()
            );
        }
        if let Some(bias) = &self.bias {
            if bias.len() != b * nk {
                candle_core::bail!("attention bias of {} values for {b}x{nk} keys", bias.len());
            }
        }
        let mut out = vec![0f32; b * h * nq * dv];
        if nq == 0 || nk == 0 || d == 0 || dv == 0 {
            return Ok((CpuStorage::F32(out), Shape::from((b, h, nq, dv))));
        }
        out.par_chunks_mut(nq * dv)
            .enumerate()
            .for_each(|(bh, out_head)| {
                let q_head = &q[bh * nq * d..(bh + 1) * nq * d];
                let k_head = &k[bh * nk * d..(bh + 1) * nk * d];
                let v_head = &v[bh * nk * dv..(bh + 1) * nk * dv];
                let bias = self
                    .bias
                    .as_ref()
                    .map(|all| &all[(bh / h) * nk..(bh / h + 1) * nk]);
                out_head
                    .par_chunks_mut(QUERY_BLOCK * dv)
                    .enumerate()
                    .for_each(|(block, out_block)| {
                        let rows = out_block.len() / dv;
                        let q_block = &q_head[block * QUERY_BLOCK * d..][..rows * d];
                        SCORES.with_borrow_mut(|scores| {
                            scores.resize(rows * nk, 0.0);
                            let head = Head { d, dv, nk };
                            head.attend(
                                q_block, k_head, v_head, bias, self.scale, scores, out_block,
                            );
                        });
                    });
            });
        Ok((CpuStorage::F32(out), Shape::from((b, h, nq, dv))))
    }
}

/// Sizes of one head's keys and values.
struct Head {
    d: usize,
    dv: usize,
    nk: usize,
}

impl Head {
    /// One block of queries: scores = scale * q k^T (+ bias), softmax over
    /// each row, out = scores v. All slices are row-major and contiguous.
    #[allow(clippy::too_many_arguments)]
    fn attend(
        &self,
        q: &[f32],
        k: &[f32],
        v: &[f32],
        bias: Option<&[f32]>,
        scale: f32,
        scores: &mut [f32],
        out: &mut [f32],
    ) {
        let Head { d, dv, nk } = *self;
        let rows = q.len() / d;
        // SAFETY: every pointer covers the matrix its sizes and strides
        // describe: q (rows x d), k read as k^T (d x nk), scores (rows x nk),
        // v (nk x dv), out (rows x dv); scores and out are not aliased.
        unsafe {
            gemm::gemm(
                rows,
                nk,
                d,
                scores.as_mut_ptr(),
                1,
                nk as isize,
                false,
                q.as_ptr(),
                1,
                d as isize,
                k.as_ptr(),
                d as isize,
                1,
                0.0,
                scale,
                false,
                false,
                false,
                gemm::Parallelism::None,
            );
        }
        let mut sums = [0f32; QUERY_BLOCK];
        let sums = &mut sums[..rows];
        exp_rows(scores, nk, bias, sums);
        // SAFETY: as above.
        unsafe {
            gemm::gemm(
                rows,
                dv,
                nk,
                out.as_mut_ptr(),
                1,
                dv as isize,
                false,
                scores.as_ptr(),
                1,
                nk as isize,
                v.as_ptr(),
                1,
                dv as isize,
                0.0,
                1.0,
                false,
                false,
                false,
                gemm::Parallelism::None,
            );
        }
        // Normalizing the output (dv values a row) instead of the weights
        // (nk values a row) saves a pass over the scores.
        for (row, sum) in out.chunks_exact_mut(dv).zip(sums.iter()) {
            let inv = 1.0 / sum;
            for x in row {
                *x *= inv;
            }
        }
    }
}

/// The contiguous f32 data of a CPU tensor.
fn contiguous_f32<'a>(storage: &'a CpuStorage, layout: &Layout, op: &str) -> Result<&'a [f32]> {
    let data = storage.as_slice::<f32>()?;
    match layout.contiguous_offsets() {
        Some((start, end)) => Ok(&data[start..end]),
        None => candle_core::bail!("{op} needs a contiguous tensor"),
    }
}

struct GeluTanh;

impl CustomOp1 for GeluTanh {
    fn name(&self) -> &'static str {
        "genfleet-gelu-tanh"
    }

    fn cpu_fwd(&self, storage: &CpuStorage, layout: &Layout) -> Result<(CpuStorage, Shape)> {
        let src = contiguous_f32(storage, layout, self.name())?;
        let mut dst = vec![0f32; src.len()];
        dst.par_chunks_mut(MIN_TASK_ELEMENTS)
            .zip(src.par_chunks(MIN_TASK_ELEMENTS))
            .for_each(|(dst, src)| {
                gelu_into(src, dst);
            });
        Ok((CpuStorage::F32(dst), layout.shape().clone()))
    }
}

/// Defines a kernel whose body is compiled three times: for AVX-512 (16
/// lanes) and for AVX2 with FMA (8), run when the CPU has them, and for
/// baseline x86-64 (SSE's 4), which the build targets so that one binary
/// runs on every node. The body
/// is a plain function inlined into both; helpers it calls must be
/// `#[inline(always)]` to be compiled wide too.
macro_rules! wide_kernel {
    ($(#[$doc:meta])* fn $name:ident($($arg:ident: $ty:ty),* $(,)?) $body:block) => {
        $(#[$doc])*
        fn $name($($arg: $ty),*) {
            #[inline(always)]
            fn body($($arg: $ty),*) $body
            #[cfg(target_arch = "x86_64")]
            {
                #[target_feature(enable = "avx512f,avx2,fma")]
                fn widest($($arg: $ty),*) {
                    body($($arg),*)
                }
                #[target_feature(enable = "avx2,fma")]
                fn wide($($arg: $ty),*) {
                    body($($arg),*)
                }
                let avx2 = is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma");
                if avx2 && is_x86_feature_detected!("avx512f") {
                    // SAFETY: the CPU was just seen to support these features.
                    return unsafe { widest($($arg),*) };
                }
                if avx2 {
                    // SAFETY: as above.
                    return unsafe { wide($($arg),*) };
                }
            }
            body($($arg),*)
        }
    };
}

wide_kernel! {
    /// Each row of `width` scores (plus `bias`, if any) to exp(score - the
    /// row's max) in place, and the row's sum into `sums`: softmax weights
    /// before their normalization.
    fn exp_rows(scores: &mut [f32], width: usize, bias: Option<&[f32]>, sums: &mut [f32]) {
        for (row, sum) in scores.chunks_exact_mut(width).zip(sums.iter_mut()) {
            if let Some(bias) = bias {
                for (s, b) in row.iter_mut().zip(bias) {
                    *s += b;
                }
            }
            let max = max_of(row);
            *sum = exp_and_sum(row, max);
        }
    }
}

wide_kernel! {
    /// GELU of every value of `src` into `dst`.
    fn gelu_into(src: &[f32], dst: &mut [f32]) {
        for (d, &x) in dst.iter_mut().zip(src) {
            *d = gelu(x);
        }
    }
}

/// Replaces each x of `row` by exp(x - max) and returns their sum, in one
/// pass (lane-wise partial sums, so it vectorizes).
#[inline(always)]
fn exp_and_sum(row: &mut [f32], max: f32) -> f32 {
    let mut acc = [0f32; LANES];
    let mut chunks = row.chunks_exact_mut(LANES);
    for chunk in &mut chunks {
        for (a, x) in acc.iter_mut().zip(chunk.iter_mut()) {
            *x = exp(*x - max);
            *a += *x;
        }
    }
    let mut rest = 0f32;
    for x in chunks.into_remainder() {
        *x = exp(*x - max);
        rest += *x;
    }
    acc.iter().sum::<f32>() + rest
}

/// Lanes of the reductions: independent accumulators let them vectorize.
const LANES: usize = 16;

#[inline(always)]
fn max_of(xs: &[f32]) -> f32 {
    let mut acc = [f32::NEG_INFINITY; LANES];
    let chunks = xs.chunks_exact(LANES);
    let rest = chunks.remainder();
    for chunk in chunks {
        for (a, &x) in acc.iter_mut().zip(chunk) {
            *a = if x > *a { x } else { *a };
        }
    }
    rest.iter()
        .chain(&acc)
        .copied()
        .fold(f32::NEG_INFINITY, f32::max)
}

#[inline(always)]
fn gelu(x: f32) -> f32 {
    const SQRT_TWO_OVER_PI: f32 = 0.797_884_6;
    let y = SQRT_TWO_OVER_PI * x * (1.0 + 0.044_715 * x * x);
    // 0.5 (1 + tanh y) = 1 / (1 + e^(-2y)): no cancellation where tanh
    // nears -1, and it saturates cleanly at both ends.
    x / (1.0 + exp(-2.0 * y))
}

/// e^x for f32 without libm: x = n ln2 + r with |r| <= ln2/2, e^r from
/// Cephes' degree-6 polynomial, 2^n put straight into the exponent bits.
/// Inputs below -87.3 give about 1e-38 rather than 0 (harmless in a
/// softmax, whose largest term is 1).
#[inline(always)]
fn exp(x: f32) -> f32 {
    const LOG2E: f32 = std::f32::consts::LOG2_E;
    const LN2_HI: f32 = 0.693_359_4;
    const LN2_LO: f32 = -2.121_944_4e-4;
    // Adding and subtracting 1.5 * 2^23 rounds to the nearest integer.
    const ROUND: f32 = 12_582_912.0;
    let x = x.clamp(-87.3, 88.3);
    let n = (x * LOG2E + ROUND) - ROUND;
    let r = x - n * LN2_HI - n * LN2_LO;
    let mut p = 1.987_569_1e-4_f32;
    p = p * r + 1.398_199_9e-3;
    p = p * r + 8.333_452e-3;
    p = p * r + 4.166_579_6e-2;
    p = p * r + 1.666_666_5e-1;
    p = p * r + 0.5;
    let e_r = p * r * r + r + 1.0;
    e_r * f32::from_bits(((n as i32 + 127) << 23) as u32)
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    fn max_relative_error(a: &Tensor, b: &Tensor) -> f32 {
        let diff = (a - b).and_then(|d| d.abs()).and_then(|d| d.max_all());
        let scale = b.abs().and_then(|d| d.max_all());
        let value = |t: Result<Tensor>| t.and_then(|t| t.to_scalar::<f32>()).expect("scalar");
        value(diff) / value(scale)
    }

    #[test]
    fn exp_follows_libm_across_the_range() {
        let mut worst = 0f32;
        let mut x = -87.0f32;
        while x < 88.0 {
            let (fast, libm) = (exp(x), x.exp());
            worst = worst.max(((fast - libm) / libm).abs());
            x += 0.0137;
        }
        assert!(worst < 3e-7, "worst relative error {worst}");
        assert_eq!(exp(-1e9), exp(-87.3));
        assert!(exp(-1e9) < 1e-37 && exp(1e9).is_finite());
    }

    #[test]
    fn gelu_matches_candle() {
        let dev = Device::Cpu;
        // Lengths below, at and past a task's chunk of elements.
        for shape in [(3usize, 1usize), (7, 5), (64, 1283)] {
            // Values over about [-7, 5], the same on every run.
            let n = (shape.0 * shape.1) as f32;
            let x = Tensor::arange(0f32, n, &dev)
                .and_then(|t| (t * 0.37)?.sin()? * 6.0)
                .and_then(|t| t - 1.0)
                .and_then(|t| t.reshape(shape))
                .expect("x");
            let ours = gelu_tanh(&x).expect("gelu");
            let theirs = x.gelu().expect("gelu");
            assert!(max_relative_error(&ours, &theirs) < 1e-6, "{shape:?}");
        }
    }

    /// Attention the plain way, with candle's ops.
    fn reference_attention(q: &Tensor, k: &Tensor, v: &Tensor, bias: Option<&Tensor>) -> Tensor {
        let scale = 1.0 / (q.dim(3).expect("d") as f64).sqrt();
        let mut scores = (q.matmul(&k.t().expect("t")).expect("qk") * scale).expect("scale");
        if let Some(bias) = bias {
            let (b, l) = bias.dims2().expect("bias");
            let bias = bias.reshape((b, 1, 1, l)).expect("bias");
            scores = scores.broadcast_add(&bias).expect("bias");
        }
        candle_nn::ops::softmax_last_dim(&scores)
            .and_then(|w| w.matmul(v))
            .expect("attention")
    }

    #[test]
    fn blocked_attention_matches_the_plain_computation() {
        let dev = Device::Cpu;
        // Query counts below, at and past a block; a key count that is not
        // a multiple of anything; a value width unlike the key width.
        for (nq, nk, d, dv) in [(5, 7, 8, 8), (64, 33, 16, 8), (150, 77, 32, 32)] {
            let q = Tensor::randn(0f32, 1.0, (2, 3, nq, d), &dev).expect("q");
            let k = Tensor::randn(0f32, 1.0, (2, 3, nk, d), &dev).expect("k");
            let v = Tensor::randn(0f32, 1.0, (2, 3, nk, dv), &dev).expect("v");
            let scale = 1.0 / (d as f32).sqrt();
            let ours = attention(&q, &k, &v, None, scale).expect("attention");
            let theirs = reference_attention(&q, &k, &v, None);
            assert!(max_relative_error(&ours, &theirs) < 1e-5, "{nq}x{nk}");

            // Padding: batch 0 keeps every key, batch 1 drops the last two.
            let mut keep = vec![0f32; 2 * nk];
            keep[nk..].iter_mut().rev().take(2).for_each(|x| *x = -1e9);
            let bias = Tensor::from_vec(keep, (2, nk), &dev).expect("bias");
            let ours = attention(&q, &k, &v, Some(&bias), scale).expect("attention");
            let theirs = reference_attention(&q, &k, &v, Some(&bias));
            assert!(
                max_relative_error(&ours, &theirs) < 1e-5,
                "{nq}x{nk} masked"
            );
        }
    }

    #[test]
    fn non_contiguous_input_is_made_contiguous() {
        let x = Tensor::randn(0f32, 1.0, (6, 9), &Device::Cpu).expect("x");
        let t = x.t().expect("t");
        let ours = gelu_tanh(&t).expect("gelu");
        let theirs = t.gelu().expect("gelu");
        assert!(max_relative_error(&ours, &theirs) < 1e-6);
    }
}
