//! Still images of a video: a PNG of its middle frame (for listings and
//! previews), and a spritesheet PNG of evenly spaced frames in a grid (for
//! scrubbing previews in a player).

use super::VideoError;
use crate::model::Video;

/// Most frames a spritesheet shows, and how many per row.
const SPRITE_FRAMES: usize = 16;
const SPRITE_COLUMNS: usize = 4;

pub fn thumbnail_png(video: &Video) -> Result<Vec<u8>, VideoError> {
    let frame = video
        .frames
        .get(video.frames.len() / 2)
        .ok_or(VideoError::NoFrames)?;
    rgb_png(frame, video.width, video.height)
}

/// Up to 16 frames, evenly spaced from first to last, in rows of 4 (fewer
/// columns when there are fewer frames), each at the video's size.
pub fn spritesheet_png(video: &Video) -> Result<Vec<u8>, VideoError> {
    let total = video.frames.len();
    if total == 0 {
        return Err(VideoError::NoFrames);
    }
    let count = total.min(SPRITE_FRAMES);
    let picks: Vec<usize> = (0..count)
        .map(|i| {
            if count == 1 {
                0
            } else {
                i * (total - 1) / (count - 1)
            }
        })
        .collect();
    let columns = count.min(SPRITE_COLUMNS);
    let rows = count.div_ceil(columns);
    let (w, h) = (video.width, video.height);
    let sheet_width = columns * w;
    let mut sheet = vec![0u8; sheet_width * rows * h * 3];
    for (tile, &frame) in picks.iter().enumerate() {
        let (column, row) = (tile % columns, tile / columns);
        let pixels = &video.frames[frame];
        if pixels.len() != w * h * 3 {
            return Err(VideoError::FrameBytes {
                index: frame,
                got: pixels.len(),
                expected: w * h * 3,
                width: w,
                height: h,
            });
        }
        for y in 0..h {
            let from = &pixels[y * w * 3..(y + 1) * w * 3];
            let at = ((row * h + y) * sheet_width + column * w) * 3;
            sheet[at..at + w * 3].copy_from_slice(from);
        }
    }
    rgb_png(&sheet, sheet_width, rows * h)
}

fn rgb_png(pixels: &[u8], width: usize, height: usize) -> Result<Vec<u8>, VideoError> {
    let mut out = Vec::new();
    let mut encoder = png::Encoder::new(&mut out, width as u32, height as u32);
    encoder.set_color(png::ColorType::Rgb);
    encoder.set_depth(png::BitDepth::Eight);
    let mut writer = encoder.write_header()?;
    writer.write_image_data(pixels)?;
    writer.finish()?;
    Ok(out)
}
