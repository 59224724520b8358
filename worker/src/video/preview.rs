//! Previews: a running job's estimate of its video, at half resolution
//! where the encoder allows it (smaller to store and quicker to fetch).

use crate::model::Video;

/// `video` at half its width and height (each 2x2 block averaged), or as
/// it is when a half side would be odd (H.264 needs even sides) or below
/// 16 pixels.
pub fn half_resolution(video: &Video) -> Video {
    let (w, h) = (video.width / 2, video.height / 2);
    if w % 2 != 0 || h % 2 != 0 || w < 16 || h < 16 {
        return video.clone();
    }
    let frames = video
        .frames
        .iter()
        .map(|frame| {
            let mut out = Vec::with_capacity(w * h * 3);
            for y in 0..h {
                for x in 0..w {
                    for c in 0..3 {
                        let at = |dy: usize, dx: usize| {
                            u32::from(frame[((2 * y + dy) * video.width + 2 * x + dx) * 3 + c])
                        };
                        let sum = at(0, 0) + at(0, 1) + at(1, 0) + at(1, 1);
                        out.push(((sum + 2) / 4) as u8);
                    }
                }
            }
            out
        })
        .collect();
    Video {
        width: w,
        height: h,
        frames,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn halves_each_side_by_averaging_blocks() {
        // 32x32, one frame: a left half of 0 and a right half of 200.
        let mut frame = vec![0u8; 32 * 32 * 3];
        for y in 0..32 {
            for x in 16..32 {
                frame[(y * 32 + x) * 3..(y * 32 + x) * 3 + 3].fill(200);
            }
        }
        let video = Video {
            width: 32,
            height: 32,
            frames: vec![frame],
        };
        let half = half_resolution(&video);
        assert_eq!((half.width, half.height), (16, 16));
        assert_eq!(half.frames[0].len(), 16 * 16 * 3);
        assert_eq!(half.frames[0][0], 0);
        assert_eq!(half.frames[0][(15) * 3], 200);
    }

    #[test]
    fn keeps_a_size_the_encoder_could_not_take_halved() {
        let video = Video {
            width: 64,
            height: 48,
            frames: vec![vec![7; 64 * 48 * 3]],
        };
        // 24 rows would do; 48/2 = 24 and 64/2 = 32 are even and >= 16.
        assert_eq!(half_resolution(&video).height, 24);
        let odd = Video {
            width: 48,
            height: 48,
            frames: vec![vec![7; 48 * 48 * 3]],
        };
        // 48/2 = 24 is fine; 16/2 = 8 would be below 16.
        assert_eq!(half_resolution(&odd).width, 24);
        let small = Video {
            width: 16,
            height: 16,
            frames: vec![vec![7; 16 * 16 * 3]],
        };
        assert_eq!(half_resolution(&small).width, 16);
    }
}
