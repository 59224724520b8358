//! 3D rotary position embedding over (frame, row, column) of the latent
//! patches, as in Wan2.1: the head dim's rotation pairs are split between
//! time (the rest) and height and width (d/6 pairs each).

use candle_core::{Device, Result, Tensor};

/// cos and sin tables, each (N, head_dim / 2), for the N = t*h*w patches of
/// a (t, h, w) grid in row-major (frame, row, column) order. Applied with
/// `candle_nn::rotary_emb::rope_i` (interleaved pairs, like Wan's complex view).
pub fn rope_tables(
    head_dim: usize,
    grid: (usize, usize, usize),
    theta: f64,
    device: &Device,
) -> Result<(Tensor, Tensor)> {
    let (t, h, w) = grid;
    let pairs_hw = head_dim / 6;
    let pairs_t = head_dim / 2 - 2 * pairs_hw;
    let freqs = |pairs: usize| -> Vec<f64> {
        (0..pairs)
            .map(|j| 1.0 / theta.powf(2.0 * j as f64 / (2 * pairs) as f64))
            .collect()
    };
    let (ft, fh, fw) = (freqs(pairs_t), freqs(pairs_hw), freqs(pairs_hw));
    let n = t * h * w;
    let half = head_dim / 2;
    let mut cos = Vec::with_capacity(n * half);
    let mut sin = Vec::with_capacity(n * half);
    for f in 0..t {
        for y in 0..h {
            for x in 0..w {
                let angles = ft
                    .iter()
                    .map(|q| f as f64 * q)
                    .chain(fh.iter().map(|q| y as f64 * q))
                    .chain(fw.iter().map(|q| x as f64 * q));
                for a in angles {
                    cos.push(a.cos() as f32);
                    sin.push(a.sin() as f32);
                }
            }
        }
    }
    Ok((
        Tensor::from_vec(cos, (n, half), device)?,
        Tensor::from_vec(sin, (n, half), device)?,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_cover_every_patch_and_start_at_identity() {
        let (cos, sin) = rope_tables(32, (2, 3, 4), 10_000.0, &Device::Cpu).expect("tables");
        assert_eq!(cos.dims(), &[24, 16]);
        let first_cos: Vec<f32> = cos.get(0).and_then(|r| r.to_vec1()).expect("row");
        let first_sin: Vec<f32> = sin.get(0).and_then(|r| r.to_vec1()).expect("row");
        assert!(first_cos.iter().all(|c| *c == 1.0));
        assert!(first_sin.iter().all(|s| *s == 0.0));
        // Patch (0, 0, 1) rotates only the width pairs (the last 5 of 16).
        let next: Vec<f32> = sin.get(1).and_then(|r| r.to_vec1()).expect("row");
        assert!(next[..11].iter().all(|s| *s == 0.0));
        assert!(next[11] != 0.0);
    }
}
