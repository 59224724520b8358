//! Positions of the latent patches over (frame, row, column): the 3D
//! rotary embedding of Wan2.1, whose head dim's rotation pairs are split
//! between time (the rest) and height and width (d/6 pairs each), and a
//! fixed sinusoidal absolute embedding over the same angles.

use candle_core::{Device, Result, Tensor};

/// The rotation angle of every (patch, pair) of a `width`-wide vector, for
/// the N = t*h*w patches of a (t, h, w) grid in row-major (frame, row,
/// column) order: (N * width / 2) angles, patch by patch.
fn angles(width: usize, grid: (usize, usize, usize), theta: f64) -> Vec<f64> {
    let (t, h, w) = grid;
    let pairs_hw = width / 6;
    let pairs_t = width / 2 - 2 * pairs_hw;
    let freqs = |pairs: usize| -> Vec<f64> {
        (0..pairs)
            .map(|j| 1.0 / theta.powf(2.0 * j as f64 / (2 * pairs) as f64))
            .collect()
    };
    let (ft, fh, fw) = (freqs(pairs_t), freqs(pairs_hw), freqs(pairs_hw));
    let mut out = Vec::with_capacity(t * h * w * (width / 2));
    for f in 0..t {
        for y in 0..h {
            for x in 0..w {
                out.extend(
                    ft.iter()
                        .map(|q| f as f64 * q)
                        .chain(fh.iter().map(|q| y as f64 * q))
                        .chain(fw.iter().map(|q| x as f64 * q)),
                );
            }
        }
    }
    out
}

/// cos and sin tables, each (N, head_dim / 2), for the N = t*h*w patches of
/// a (t, h, w) grid in row-major (frame, row, column) order. Applied with
/// `candle_nn::rotary_emb::rope_i` (interleaved pairs, like Wan's complex view).
pub fn rope_tables(
    head_dim: usize,
    grid: (usize, usize, usize),
    theta: f64,
    device: &Device,
) -> Result<(Tensor, Tensor)> {
    let angles = angles(head_dim, grid, theta);
    let n = grid.0 * grid.1 * grid.2;
    let half = head_dim / 2;
    let cos = angles.iter().map(|a| a.cos() as f32).collect();
    let sin = angles.iter().map(|a| a.sin() as f32).collect();
    Ok((
        Tensor::from_vec(cos, (n, half), device)?,
        Tensor::from_vec(sin, (n, half), device)?,
    ))
}

/// Fixed sinusoidal absolute positions, (N, dim): each patch's sines then
/// cosines of the same angles RoPE turns by, over the whole width. Added
/// to the patch embeddings of models that ask for it
/// ([`super::ModelConfig::absolute_positions`]): RoPE alone tells a patch
/// only where the others are relative to it, and a small model then
/// cannot say where in the frame, or when in the clip, an object is.
pub fn position_table(
    dim: usize,
    grid: (usize, usize, usize),
    theta: f64,
    device: &Device,
) -> Result<Tensor> {
    let angles = angles(dim, grid, theta);
    let n = grid.0 * grid.1 * grid.2;
    let table: Vec<f32> = angles
        .chunks_exact(dim / 2)
        .flat_map(|patch| {
            let sines = patch.iter().map(|a| a.sin() as f32);
            sines.chain(patch.iter().map(|a| a.cos() as f32))
        })
        .collect();
    Tensor::from_vec(table, (n, dim / 2 * 2), device)
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

    #[test]
    fn absolute_positions_tell_every_patch_apart() {
        let grid = (3, 4, 4);
        let table = position_table(128, grid, 10_000.0, &Device::Cpu).expect("table");
        assert_eq!(table.dims(), &[48, 128]);
        let rows: Vec<Vec<f32>> = table.to_vec2().expect("rows");
        // The first patch: every sine 0, every cosine 1.
        assert!(rows[0][..64].iter().all(|s| *s == 0.0));
        assert!(rows[0][64..].iter().all(|c| *c == 1.0));
        for (i, a) in rows.iter().enumerate() {
            for b in &rows[i + 1..] {
                let gap: f32 = a.iter().zip(b).map(|(x, y)| (x - y).abs()).sum();
                assert!(gap > 0.1, "two patches share a position ({gap})");
            }
        }
    }
}
