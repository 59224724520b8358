//! Reading a video back as a player would: the MP4's H.264 track, and every
//! frame decoded with openh264. `genfleet video check` uses it to verify a
//! video where no ffprobe is installed (a GPU machine, a slim image).

use std::io::Cursor;

use openh264::decoder::Decoder;
use openh264::formats::YUVSource;

use super::VideoError;

/// What an MP4 holds, with its frames decoded.
#[derive(Debug, Clone, PartialEq)]
pub struct Mp4Summary {
    pub width: u32,
    pub height: u32,
    /// Samples in the track.
    pub frames: u32,
    pub fps: f64,
    /// Frames the decoder produced (equal to `frames` for a sound file).
    pub decoded: u32,
    /// Mean of each RGB channel over the decoded frames, 0 to 255.
    pub mean_rgb: [f64; 3],
}

fn bad(why: impl Into<String>) -> VideoError {
    VideoError::Unreadable(why.into())
}

/// NAL units with 4-byte big-endian lengths (as MP4 stores them) in
/// Annex B form (start codes), as the decoder reads them.
fn annex_b(avcc: &[u8], out: &mut Vec<u8>) -> Result<(), VideoError> {
    let mut rest = avcc;
    while !rest.is_empty() {
        let (len, tail) = rest
            .split_first_chunk::<4>()
            .ok_or_else(|| bad("a sample ends inside a NAL length"))?;
        let len = u32::from_be_bytes(*len) as usize;
        let nal = tail
            .get(..len)
            .ok_or_else(|| bad("a NAL unit runs past its sample"))?;
        out.extend_from_slice(&[0, 0, 0, 1]);
        out.extend_from_slice(nal);
        rest = &tail[len..];
    }
    Ok(())
}

/// Reads the MP4 in `bytes` and decodes every frame of its first track.
pub fn probe_mp4(bytes: &[u8]) -> Result<Mp4Summary, VideoError> {
    let size = bytes.len() as u64;
    let mut reader = mp4::Mp4Reader::read_header(Cursor::new(bytes), size)?;
    let (&track_id, track) = reader
        .tracks()
        .iter()
        .min_by_key(|(id, _)| **id)
        .ok_or_else(|| bad("the file has no track"))?;
    if track.media_type()? != mp4::MediaType::H264 {
        return Err(bad(format!("track {track_id} is not H.264")));
    }
    let (width, height) = (u32::from(track.width()), u32::from(track.height()));
    let (frames, fps) = (track.sample_count(), track.frame_rate());
    let mut parameters = Vec::new();
    for set in [
        track.sequence_parameter_set()?,
        track.picture_parameter_set()?,
    ] {
        parameters.extend_from_slice(&[0, 0, 0, 1]);
        parameters.extend_from_slice(set);
    }
    let mut decoder = Decoder::new().map_err(|e| bad(format!("H.264 decoder: {e}")))?;
    decoder
        .decode(&parameters)
        .map_err(|e| bad(format!("parameter sets: {e}")))?;
    let mut decoded = 0u32;
    let mut sums = [0f64; 3];
    let mut pixels = 0f64;
    let mut rgb = Vec::new();
    let mut packet = Vec::new();
    for sample_id in 1..=frames {
        let sample = reader
            .read_sample(track_id, sample_id)?
            .ok_or_else(|| bad(format!("sample {sample_id} is missing")))?;
        packet.clear();
        annex_b(&sample.bytes, &mut packet)?;
        let picture = decoder
            .decode(&packet)
            .map_err(|e| bad(format!("frame {sample_id}: {e}")))?;
        if let Some(picture) = picture {
            let (w, h) = picture.dimensions();
            if (w as u32, h as u32) != (width, height) {
                return Err(bad(format!(
                    "frame {sample_id} decodes to {w}x{h}; the track says {width}x{height}"
                )));
            }
            rgb.resize(w * h * 3, 0);
            picture.write_rgb8(&mut rgb);
            for pixel in rgb.chunks_exact(3) {
                for (sum, value) in sums.iter_mut().zip(pixel) {
                    *sum += f64::from(*value);
                }
            }
            pixels += (w * h) as f64;
            decoded += 1;
        }
    }
    let late = decoder
        .flush_remaining()
        .map_err(|e| bad(format!("flushing the decoder: {e}")))?;
    decoded += late.len() as u32;
    Ok(Mp4Summary {
        width,
        height,
        frames,
        fps,
        decoded,
        mean_rgb: sums.map(|s| if pixels > 0.0 { s / pixels } else { 0.0 }),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Video;

    #[test]
    fn an_encoded_video_decodes_frame_by_frame_with_its_colours() {
        // A reddish video: every frame the same colour.
        let (width, height) = (64, 48);
        let frame: Vec<u8> = [200u8, 40, 40].repeat(width * height);
        let video = Video {
            width,
            height,
            frames: vec![frame; 9],
        };
        let mp4 = super::super::encode_mp4(&video, 8).expect("encode");
        let summary = probe_mp4(&mp4).expect("probe");
        assert_eq!((summary.width, summary.height), (64, 48));
        assert_eq!((summary.frames, summary.decoded), (9, 9));
        assert!((summary.fps - 8.0).abs() < 1e-6);
        let [r, g, b] = summary.mean_rgb;
        assert!(
            (r - 200.0).abs() < 8.0 && (g - 40.0).abs() < 8.0 && (b - 40.0).abs() < 8.0,
            "{:?}",
            summary.mean_rgb
        );

        assert!(probe_mp4(&mp4[..mp4.len() / 2]).is_err(), "a cut file");
        assert!(probe_mp4(b"not an mp4").is_err());
    }
}
