//! A PNG of the video's middle frame, for listings and previews.

use super::VideoError;
use crate::model::Video;

pub fn thumbnail_png(video: &Video) -> Result<Vec<u8>, VideoError> {
    let frame = video
        .frames
        .get(video.frames.len() / 2)
        .ok_or(VideoError::NoFrames)?;
    let mut out = Vec::new();
    let mut encoder = png::Encoder::new(&mut out, video.width as u32, video.height as u32);
    encoder.set_color(png::ColorType::Rgb);
    encoder.set_depth(png::BitDepth::Eight);
    let mut writer = encoder.write_header()?;
    writer.write_image_data(frame)?;
    writer.finish()?;
    Ok(out)
}
