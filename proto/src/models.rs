//! The shapes of the built-in model presets and what a job of each needs
//! in device memory, for the scheduler (which must not link candle) to
//! place jobs only where they fit. This table is the presets' one source:
//! the worker builds its candle configs from it
//! (`genfleet_worker::model::config`), and a test there checks that the
//! parameter counts below are those of the model candle builds.
//!
//! # The estimate, per tensor-parallel rank
//!
//! `need(tp) = replicated + sharded / tp`, in bytes, with `b` bytes per
//! value (the preset's weight dtype; activations are computed in it too):
//!
//! - Weights: the attention (q, k, v, o) and feed-forward matrices of every
//!   block are split over the ranks (Megatron style: `sharded`); the text
//!   encoder, decoder, embeddings, norms, modulation and the row-parallel
//!   biases are held whole by every rank (`replicated`).
//! - Transformer activations for `B` = 2 sequences (classifier-free
//!   guidance runs the conditional and unconditional branch in one batch;
//!   1 without guidance) of `N` latent tokens, `N = T' x H'/2 x W'/2` with
//!   `T' = 1 + ceil((frames - 1) / 4)`, `H' = height / 8`, `W' = width / 8`.
//!   Inference keeps one block's activations at a time, so there is no
//!   factor of depth: `8 B N dim b` replicated (the residual stream, its
//!   norm and modulated copies, the attention output, the sum, and the
//!   sampler's latent copies) and `2 B N (4 dim + ffn_dim) b` sharded (q, k,
//!   v and the attention output per rank's heads, the feed-forward hidden
//!   features, each with one temporary alive).
//! - Attention is assumed memory-efficient (the blocked kernel on the CPU,
//!   flash attention on GPUs): no `N x N` score matrix. An attention that
//!   materializes scores needs `B x heads/tp x N^2 x b` more: a long video
//!   would not fit where this says it does.
//! - The decoder, replicated, in f32: one chunk of 8 frames at full
//!   resolution with its last two stages' channels, plus every output
//!   frame as f32 RGB twice (the decoded tensor and its permuted copy) and
//!   once as bytes.
//! - A fixed [`RUNTIME_OVERHEAD_BYTES`] per rank for the runtime (a CUDA
//!   context, allocator slack).
//!
//! It is an estimate: good to a few tens of percent, meant to keep a job off
//! a device where it cannot fit, not to pack memory exactly.

/// The shape of one built-in preset (the fields of the worker's
/// `ModelConfig` that size it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ModelShape {
    pub name: &'static str,
    pub latent_channels: usize,
    pub patch: [usize; 3],
    pub vae_stride: [usize; 3],
    pub dim: usize,
    pub ffn_dim: usize,
    pub heads: usize,
    pub depth: usize,
    pub freq_dim: usize,
    pub text_vocab: usize,
    pub text_dim: usize,
    pub text_layers: usize,
    pub text_heads: usize,
    pub text_len: usize,
    pub decoder_channels: [usize; 4],
    /// Bytes per weight (and activation) value on a GPU: the preset's
    /// precision (f32: 4, bf16: 2). CPU workers compute every preset in
    /// f32, so a bf16 preset on a CPU node needs up to twice this.
    pub weight_bytes: usize,
    /// Whether patch embeddings also get fixed absolute positions (the
    /// trained `world` model; Wan has RoPE only).
    pub absolute_positions: bool,
    /// Timestep shift of the flow-matching schedule, in tenths (Wan2.1
    /// uses 5 at 480p; the small presets 3).
    pub sample_shift_tenths: u32,
}

/// Per rank, for the runtime and allocator slack.
pub const RUNTIME_OVERHEAD_BYTES: u64 = 512 << 20;

/// Frames the decoder turns into pixels at once (the worker's decoder).
const DECODER_CHUNK_FRAMES: usize = 8;

const fn preset(
    name: &'static str,
    (dim, ffn_dim, heads, depth): (usize, usize, usize, usize),
    (text_vocab, text_dim, text_layers, text_heads, text_len): (usize, usize, usize, usize, usize),
    decoder_channels: [usize; 4],
    weight_bytes: usize,
) -> ModelShape {
    ModelShape {
        name,
        latent_channels: 16,
        patch: [1, 2, 2],
        vae_stride: [4, 8, 8],
        dim,
        ffn_dim,
        heads,
        depth,
        freq_dim: 256,
        text_vocab,
        text_dim,
        text_layers,
        text_heads,
        text_len,
        decoder_channels,
        weight_bytes,
        absolute_positions: false,
        sample_shift_tenths: 50,
    }
}

/// `shape` with the small presets' schedule shift (3) and, for the trained
/// model, absolute positions.
const fn small(shape: ModelShape, absolute_positions: bool) -> ModelShape {
    ModelShape {
        sample_shift_tenths: 30,
        absolute_positions,
        ..shape
    }
}

/// The built-in presets, smallest first: the one table of them. The
/// worker builds its candle models from it (`ModelConfig::preset`), the
/// scheduler and the planner size jobs by it.
pub const MODEL_SHAPES: &[ModelShape] = &[
    // Runs a 256x256, 17-frame video in seconds on two CPU cores.
    small(
        preset(
            "tiny",
            (128, 512, 4, 4),
            (4096, 128, 2, 4, 32),
            [32, 32, 16, 16],
            4,
        ),
        false,
    ),
    // Trained on the procedural world: tiny's transformer, a word
    // vocabulary (89 words and 3 special tokens), 64-wide text.
    small(
        preset(
            "world",
            (128, 512, 4, 4),
            (92, 64, 2, 4, 24),
            [32, 32, 16, 16],
            4,
        ),
        true,
    ),
    preset(
        "small",
        (256, 1024, 4, 8),
        (8192, 256, 2, 4, 64),
        [64, 48, 32, 16],
        4,
    ),
    preset(
        "medium",
        (512, 2048, 8, 12),
        (8192, 512, 2, 8, 64),
        [64, 48, 32, 16],
        2,
    ),
    preset(
        "wan2.1-1.3b",
        (1536, 8960, 12, 30),
        (32_768, 1024, 4, 16, 512),
        [128, 96, 64, 32],
        2,
    ),
];

/// The presets' names, smallest first.
pub const PRESETS: [&str; MODEL_SHAPES.len()] = preset_names();

const fn preset_names() -> [&'static str; MODEL_SHAPES.len()] {
    let mut names = [""; MODEL_SHAPES.len()];
    let mut i = 0;
    while i < names.len() {
        names[i] = MODEL_SHAPES[i].name;
        i += 1;
    }
    names
}

/// The frame size (width, height) a request for `model` gets when it names
/// none: `world` makes the 64x64 it was trained at; the seeded presets
/// make 256x256 in seconds on a CPU.
pub fn default_size(model: &str) -> (u32, u32) {
    match model {
        "world" => (64, 64),
        _ => (256, 256),
    }
}

/// The shape of built-in preset `name`; `None` for other models (their
/// need is unknown: no memory limit applies).
pub fn model_shape(name: &str) -> Option<&'static ModelShape> {
    MODEL_SHAPES.iter().find(|s| s.name == name)
}

/// What one job needs on each device of its gang: `replicated` whole on
/// every rank, `sharded` split evenly over the ranks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct MemoryNeed {
    pub replicated_bytes: u64,
    pub sharded_bytes: u64,
}

impl MemoryNeed {
    /// Bytes one rank of a gang of `tp` needs.
    pub fn per_rank(&self, tp: u32) -> u64 {
        self.replicated_bytes
            .saturating_add(self.sharded_bytes.div_ceil(u64::from(tp.max(1))))
    }

    /// No estimate (a model this table does not know).
    pub fn is_unknown(&self) -> bool {
        self.replicated_bytes == 0 && self.sharded_bytes == 0
    }
}

/// The video a job asks for, as far as memory goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VideoSize {
    pub frames: usize,
    pub width: usize,
    pub height: usize,
    /// Classifier-free guidance (guidance != 1): two sequences per step.
    pub guided: bool,
}

fn linear(inputs: usize, outputs: usize) -> usize {
    inputs * outputs + outputs
}

impl ModelShape {
    fn head_dim(&self) -> usize {
        self.dim / self.heads
    }

    fn patch_features(&self) -> usize {
        self.latent_channels * self.patch.iter().product::<usize>()
    }

    /// Parameters split over the ranks: per block, q, k, v (weights and
    /// biases) and o (weight) of both attentions, and the feed-forward's
    /// up (weight and bias) and down (weight) projections.
    pub fn sharded_parameters(&self) -> usize {
        let d = self.dim;
        let attention = 3 * linear(d, d) + d * d;
        let ffn = linear(d, self.ffn_dim) + self.ffn_dim * d;
        self.depth * (2 * attention + ffn)
    }

    /// Every parameter of the model: transformer, text encoder, decoder.
    pub fn parameters(&self) -> usize {
        let d = self.dim;
        let pf = self.patch_features();
        // Per block, besides the sharded part: modulation (6d), norm3 (2d),
        // per attention the o bias and the q/k norms, the ffn down bias.
        let block_rest = 6 * d + 2 * d + 2 * (d + 2 * self.head_dim()) + d;
        let embeddings = linear(pf, d)
            + linear(self.text_dim, d)
            + linear(d, d)
            + linear(self.freq_dim, d)
            + linear(d, d)
            + linear(d, 6 * d)
            + 2 * d
            + linear(d, pf);
        let td = self.text_dim;
        let text_layer = 2 * td + linear(td, 3 * td) + linear(td, td) + 2 * td;
        let text_ffn = linear(td, 4 * td) + linear(4 * td, td);
        let text = self.text_vocab * td
            + self.text_len * td
            + self.text_layers * (text_layer + text_ffn)
            + 2 * td;
        let c = self.decoder_channels;
        let z = self.latent_channels;
        let conv = |cin: usize, cout: usize, k: usize| cout * cin * k * k + cout;
        let decoder = conv(z, c[0], 1)
            + (0..3).map(|i| conv(c[i], c[i + 1], 3)).sum::<usize>()
            + conv(c[3], 3, 1)
            + conv(z, 3, 1);
        self.sharded_parameters() + self.depth * block_rest + embeddings + text + decoder
    }

    /// Latent tokens of the transformer for a video of this size.
    pub fn tokens(&self, video: &VideoSize) -> usize {
        let [st, sh, sw] = self.vae_stride;
        let latent_frames = 1 + video.frames.saturating_sub(1).div_ceil(st);
        let [pt, ph, pw] = self.patch;
        (latent_frames / pt) * (video.height / sh / ph) * (video.width / sw / pw)
    }

    /// What one job of this model needs per device (see the module doc).
    pub fn memory_need(&self, video: &VideoSize) -> MemoryNeed {
        let b = self.weight_bytes as u64;
        let batch = if video.guided { 2 } else { 1 };
        let bn = (batch * self.tokens(video)) as u64;
        let (d, f) = (self.dim as u64, self.ffn_dim as u64);
        let sharded_weights = self.sharded_parameters() as u64 * b;
        let replicated_weights = (self.parameters() - self.sharded_parameters()) as u64 * b;
        let pixels = (video.width * video.height) as u64;
        let c = self.decoder_channels;
        let chunk = video.frames.min(DECODER_CHUNK_FRAMES) as u64;
        let decoder = chunk * pixels * (c[2] + c[3] + 3) as u64 * 4
            + video.frames as u64 * pixels * 3 * (4 * 2 + 1);
        MemoryNeed {
            replicated_bytes: replicated_weights
                + 8 * bn * d * b
                + decoder
                + RUNTIME_OVERHEAD_BYTES,
            sharded_bytes: sharded_weights + 2 * bn * (4 * d + f) * b,
        }
    }
}

/// `bytes` as GiB with one decimal, e.g. "61.2 GiB".
pub fn gib(bytes: u64) -> String {
    format!("{:.1} GiB", bytes as f64 / (1u64 << 30) as f64)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn video(frames: usize, width: usize, height: usize) -> VideoSize {
        VideoSize {
            frames,
            width,
            height,
            guided: true,
        }
    }

    #[test]
    fn the_largest_preset_needs_what_a_1_3b_model_needs() {
        let wan = model_shape("wan2.1-1.3b").expect("preset");
        let billions = wan.parameters() as f64 / 1e9;
        assert!((1.3..1.6).contains(&billions), "{billions} B parameters");
        // 480x832, 81 frames (Wan2.1's own setting): weights of about
        // 2.8 GB in bf16 plus several GB of activations at tp 1 (Wan2.1's
        // own 1.3B model is reported to need about 8 GiB with offloading).
        let need = wan.memory_need(&video(81, 832, 480));
        let tp1 = need.per_rank(1) as f64 / (1u64 << 30) as f64;
        assert!((8.0..24.0).contains(&tp1), "{tp1} GiB at tp 1");
        assert!(need.per_rank(2) < need.per_rank(1));
        assert!(need.per_rank(4) > need.replicated_bytes);
    }

    #[test]
    fn bigger_videos_need_more_and_guidance_doubles_the_batch() {
        let tiny = model_shape("tiny").expect("preset");
        let small = tiny.memory_need(&video(17, 256, 256));
        let large = tiny.memory_need(&video(81, 1280, 720));
        assert!(large.per_rank(1) > small.per_rank(1));
        let unguided = tiny.memory_need(&VideoSize {
            guided: false,
            ..video(81, 1280, 720)
        });
        assert!(unguided.sharded_bytes < large.sharded_bytes);
        assert_eq!(tiny.tokens(&video(17, 256, 256)), 5 * 16 * 16);
        assert!(model_shape("huge").is_none());
        assert!(MemoryNeed::default().is_unknown());
    }

    #[test]
    fn gib_has_one_decimal() {
        assert_eq!(gib(24 << 30), "24.0 GiB");
        assert_eq!(gib(61 * (1 << 30) + (1 << 28)), "61.2 GiB");
    }
}
