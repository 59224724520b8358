//! The prompt encoder: hashed word tokens and a small transformer encoder.
//!
//! Open video DiTs condition on a large pretrained text encoder (umT5-XXL in
//! Wan2.1, T5 in Open-Sora and CogVideoX). Nothing is downloaded here, so a
//! small encoder of the same form (token embedding, learned positions,
//! pre-norm self-attention layers) stands in, with a vocabulary of hashed
//! lower-case words instead of a trained tokenizer.

use candle_core::{DType, Device, Module, Result, Tensor};
use candle_nn::{Embedding, Init, Linear, VarBuilder};
use genfleet_proto::vocabulary::prompt_words;

use super::config::ModelConfig;
use super::layers::{self, attention, linear, merge_heads, split_heads, FeedForward, LayerNorm};

const PAD: u32 = 0;
const BOS: u32 = 1;

/// How prompts become token ids.
#[derive(Debug, Clone)]
pub enum Tokenizer {
    /// Each word hashed into `vocab` ids (models made from a seed).
    Hashed { vocab: usize },
    /// Known words by position; the rest one unknown-word id (trained models).
    Words {
        ids: std::collections::HashMap<String, u32>,
        unknown: u32,
    },
}

impl Tokenizer {
    pub fn new(config: &ModelConfig) -> Self {
        if config.words.is_empty() {
            return Tokenizer::Hashed {
                vocab: config.text_vocab,
            };
        }
        let ids = config
            .words
            .iter()
            .enumerate()
            .map(|(i, w)| (w.to_lowercase(), 2 + i as u32))
            .collect();
        Tokenizer::Words {
            ids,
            unknown: 2 + config.words.len() as u32,
        }
    }

    /// Token ids and keep-mask (1 for tokens, 0 for padding), each `len`
    /// long, the first token BOS.
    pub fn tokens(&self, prompt: &str, len: usize) -> (Vec<u32>, Vec<f32>) {
        match self {
            Tokenizer::Hashed { vocab } => tokenize(prompt, *vocab, len),
            // Split as the scheduler's check splits (one function), so
            // the words it reports unknown are those this maps to `unknown`.
            Tokenizer::Words { ids, unknown } => {
                let words = prompt_words(prompt).map(|w| *ids.get(&w).unwrap_or(unknown));
                padded(words, len)
            }
        }
    }
}

/// BOS, then `ids` cut to fit, then padding: (ids, keep-mask).
fn padded(ids: impl Iterator<Item = u32>, len: usize) -> (Vec<u32>, Vec<f32>) {
    let mut all = vec![BOS];
    all.extend(ids.take(len.saturating_sub(1)));
    let mut mask = vec![1.0; all.len()];
    all.resize(len, PAD);
    mask.resize(len, 0.0);
    (all, mask)
}

/// Token ids and keep-mask (1 for tokens, 0 for padding), each `len` long.
/// The first token is always BOS, so even an empty prompt attends to one token.
pub fn tokenize(prompt: &str, vocab: usize, len: usize) -> (Vec<u32>, Vec<f32>) {
    let words = prompt_words(prompt).map(|word| 2 + (fnv1a(&word) % (vocab as u64 - 2)) as u32);
    padded(words, len)
}

fn fnv1a(s: &str) -> u64 {
    s.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

struct EncoderLayer {
    norm1: LayerNorm,
    qkv: Linear,
    out: Linear,
    norm2: LayerNorm,
    ffn: FeedForward,
    heads: usize,
}

impl EncoderLayer {
    fn new(config: &ModelConfig, vb: VarBuilder) -> Result<Self> {
        let d = config.text_dim;
        let out_gain = 1.0 / (2.0 * config.text_layers as f64).sqrt();
        Ok(Self {
            norm1: LayerNorm::new(d, config.eps, vb.pp("norm1"))?,
            qkv: linear(d, 3 * d, 1.0, vb.pp("attn.qkv"))?,
            out: linear(d, d, out_gain, vb.pp("attn.out"))?,
            norm2: LayerNorm::new(d, config.eps, vb.pp("norm2"))?,
            ffn: FeedForward::new(d, 4 * d, out_gain, vb.pp("ffn"))?,
            heads: config.text_heads,
        })
    }

    /// x: (B, L, D), bias: (B, 1, 1, L)
    fn forward(&self, x: &Tensor, bias: &Tensor) -> Result<Tensor> {
        let qkv = self.qkv.forward(&self.norm1.forward(x)?)?;
        let parts = qkv.chunk(3, 2)?;
        let [q, k, v] = [&parts[0], &parts[1], &parts[2]].map(|t| split_heads(t, self.heads));
        let y = merge_heads(&attention(&q?, &k?, &v?, Some(bias))?)?;
        let x = (x + self.out.forward(&y)?)?;
        &x + self.ffn.forward(&self.norm2.forward(&x)?)?
    }
}

pub struct TextEncoder {
    embedding: Embedding,
    position: Tensor,
    layers: Vec<EncoderLayer>,
    norm: LayerNorm,
    tokenizer: Tokenizer,
    len: usize,
    device: Device,
}

impl TextEncoder {
    pub fn new(config: &ModelConfig, vb: VarBuilder) -> Result<Self> {
        let d = config.text_dim;
        let table = vb.get_with_hints(
            (config.text_vocab, d),
            "embedding.weight",
            Init::Randn {
                mean: 0.0,
                stdev: 1.0,
            },
        )?;
        let position = vb.get_with_hints(
            (config.text_len, d),
            "position",
            Init::Randn {
                mean: 0.0,
                stdev: 0.1,
            },
        )?;
        let layers = (0..config.text_layers)
            .map(|i| EncoderLayer::new(config, vb.pp(format!("layers.{i}"))))
            .collect::<Result<Vec<_>>>()?;
        Ok(Self {
            embedding: Embedding::new(table, d),
            position,
            layers,
            norm: LayerNorm::new(d, config.eps, vb.pp("norm"))?,
            tokenizer: Tokenizer::new(config),
            len: config.text_len,
            device: vb.device().clone(),
        })
    }

    /// Encodes prompts: (tokens (B, L, text_dim), keep-mask (B, L)).
    pub fn encode(&self, prompts: &[&str]) -> Result<(Tensor, Tensor)> {
        let mut ids = Vec::with_capacity(prompts.len() * self.len);
        let mut mask = Vec::with_capacity(prompts.len() * self.len);
        for prompt in prompts {
            let (i, m) = self.tokenizer.tokens(prompt, self.len);
            ids.extend(i);
            mask.extend(m);
        }
        let b = prompts.len();
        let ids = Tensor::from_vec(ids, (b, self.len), &self.device)?;
        let mask = Tensor::from_vec(mask, (b, self.len), &self.device)?;
        let bias = layers::mask_to_bias(&mask)?.to_dtype(self.position.dtype())?;
        let mut x = self
            .embedding
            .forward(&ids)?
            .broadcast_add(&self.position)?;
        for layer in &self.layers {
            x = layer.forward(&x, &bias)?;
        }
        Ok((self.norm.forward(&x)?, mask.to_dtype(DType::F32)?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_stable_case_blind_and_padded() {
        let (a, ma) = tokenize("A red Fox, jumping!", 4096, 8);
        let (b, _) = tokenize("a red fox jumping", 4096, 8);
        assert_eq!(a, b);
        assert_eq!(a[0], BOS);
        assert_eq!(&ma[..5], &[1.0; 5]);
        assert_eq!(&a[5..], &[PAD; 3]);
        assert!(a[1..5].iter().all(|t| (2..4096).contains(t)));
        let (empty, mask) = tokenize("", 4096, 4);
        assert_eq!(
            (empty, mask),
            (vec![BOS, 0, 0, 0], vec![1.0, 0.0, 0.0, 0.0])
        );
        let (long, _) = tokenize(&"word ".repeat(100), 4096, 8);
        assert_eq!(long.len(), 8);
    }

    #[test]
    fn known_words_get_their_ids_and_others_the_unknown_one() {
        let mut config = ModelConfig::preset("tiny").expect("preset");
        config.words = vec!["red".into(), "ball".into()];
        let tokenizer = Tokenizer::new(&config);
        let (ids, mask) = tokenizer.tokens("Red zebra, BALL", 6);
        assert_eq!(ids, vec![BOS, 2, 4, 3, PAD, PAD]);
        assert_eq!(mask, vec![1.0, 1.0, 1.0, 1.0, 0.0, 0.0]);
    }

    /// The scheduler's word check (`genfleet_proto::vocabulary`) and the
    /// world model's tokenizer agree: the words reported unknown are the
    /// words the model reads as its unknown token, less function words.
    #[test]
    fn the_world_tokenizer_reads_as_unknown_what_the_scheduler_reports() {
        use genfleet_proto::vocabulary::{self, FUNCTION_WORDS};
        let config = ModelConfig::preset("world").expect("preset");
        let tokenizer = Tokenizer::new(&config);
        let Tokenizer::Words { unknown, .. } = &tokenizer else {
            panic!("the world model has a fixed vocabulary");
        };
        for prompt in [
            "a cyan hexagon spinning on a pink background",
            "A Big YELLOW square drifts to the right, on a gray backdrop!",
            "it is a red circle that rises slowly over the hills",
            "Zebra 3 dots, crimson-ish zebra; moving in a circle",
        ] {
            let (ids, _) = tokenizer.tokens(prompt, config.text_len);
            let words: Vec<String> = prompt_words(prompt).collect();
            let read_as_unknown: Vec<&String> = words
                .iter()
                .zip(&ids[1..])
                .filter(|(_, id)| *id == unknown)
                .map(|(w, _)| w)
                .collect();
            let mut seen = std::collections::BTreeSet::new();
            let expected: Vec<&String> = read_as_unknown
                .into_iter()
                .filter(|w| !FUNCTION_WORDS.contains(&w.as_str()) && seen.insert(*w))
                .collect();
            let reported = vocabulary::unknown_words("world", prompt).expect("world");
            assert_eq!(reported.iter().collect::<Vec<_>>(), expected, "{prompt}");
        }
    }
}
