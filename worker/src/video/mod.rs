//! The files users download: an H.264 MP4, a PNG thumbnail and a PNG
//! spritesheet.

mod h264;
mod mp4_mux;
mod preview;
mod probe;
mod thumbnail;

pub use h264::{encode_h264, EncodedFrame};
pub use mp4_mux::mux_mp4;
pub use preview::half_resolution;
pub use probe::{probe_mp4, Mp4Summary};
pub use thumbnail::{spritesheet_png, thumbnail_png};

use crate::model::Video;

#[derive(Debug, thiserror::Error)]
pub enum VideoError {
    #[error("video size {width}x{height} must be even on both sides and at least 16")]
    Size { width: usize, height: usize },
    #[error("frame {index} has {got} bytes; {width}x{height} RGB needs {expected}")]
    FrameBytes {
        index: usize,
        got: usize,
        expected: usize,
        width: usize,
        height: usize,
    },
    #[error("a video needs at least one frame")]
    NoFrames,
    #[error("H.264 encoder: {0}")]
    Encoder(String),
    #[error("H.264 encoder produced no picture for frame {0}")]
    DroppedFrame(usize),
    #[error("H.264 stream lacks its {0} parameter set")]
    MissingParameterSet(&'static str),
    #[error("MP4 muxer: {0}")]
    Mux(#[from] mp4::Error),
    #[error("PNG encoder: {0}")]
    Png(#[from] png::EncodingError),
    #[error("not a playable video: {0}")]
    Unreadable(String),
}

/// Encodes a decoded video as an H.264 MP4 at `fps` frames per second.
pub fn encode_mp4(video: &Video, fps: u32) -> Result<Vec<u8>, VideoError> {
    let frames = encode_h264(video, fps)?;
    mux_mp4(&frames, video.width, video.height, fps)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A moving gradient: frame i shifts the pattern by i pixels.
    fn gradient(frames: usize, width: usize, height: usize) -> Video {
        let frames = (0..frames)
            .map(|i| {
                let mut rgb = Vec::with_capacity(width * height * 3);
                for y in 0..height {
                    for x in 0..width {
                        rgb.extend_from_slice(&[((x + i) * 4) as u8, (y * 4) as u8, 128]);
                    }
                }
                rgb
            })
            .collect();
        Video {
            width,
            height,
            frames,
        }
    }

    #[test]
    fn mp4_holds_every_frame_as_h264_at_the_given_rate() {
        let video = gradient(13, 96, 64);
        let bytes = encode_mp4(&video, 12).expect("encode");
        let size = bytes.len() as u64;
        let reader =
            mp4::Mp4Reader::read_header(std::io::Cursor::new(bytes), size).expect("readable mp4");
        let track = reader.tracks().get(&1).expect("video track");
        assert_eq!(
            track.media_type().expect("media type"),
            mp4::MediaType::H264
        );
        assert_eq!((track.width(), track.height()), (96, 64));
        assert_eq!(track.sample_count(), 13);
        assert!(
            (track.frame_rate() - 12.0).abs() < 1e-6,
            "fps {}",
            track.frame_rate()
        );
    }

    #[test]
    fn bad_frames_are_refused_with_the_reason() {
        let mut video = gradient(2, 32, 32);
        video.frames[1].pop();
        let err = encode_mp4(&video, 8).expect_err("short frame").to_string();
        assert!(err.contains("frame 1 has 3071 bytes"), "{err}");
        let odd = Video {
            width: 33,
            height: 32,
            frames: vec![vec![0; 33 * 32 * 3]],
        };
        assert!(matches!(encode_mp4(&odd, 8), Err(VideoError::Size { .. })));
        let none = Video {
            width: 32,
            height: 32,
            frames: vec![],
        };
        assert!(matches!(encode_mp4(&none, 8), Err(VideoError::NoFrames)));
    }

    #[test]
    fn thumbnail_is_a_png_of_the_video_size() {
        let png_bytes = thumbnail_png(&gradient(3, 48, 32)).expect("png");
        let decoder = png::Decoder::new(std::io::Cursor::new(png_bytes));
        let reader = decoder.read_info().expect("decodes");
        let info = reader.info();
        assert_eq!((info.width, info.height), (48, 32));
    }

    /// Width, height and the RGB bytes of a PNG.
    fn decode(png_bytes: Vec<u8>) -> (u32, u32, Vec<u8>) {
        let mut reader = png::Decoder::new(std::io::Cursor::new(png_bytes))
            .read_info()
            .expect("decodes");
        let mut pixels = vec![0; reader.output_buffer_size().expect("size")];
        let info = reader.next_frame(&mut pixels).expect("a frame");
        pixels.truncate(info.buffer_size());
        (info.width, info.height, pixels)
    }

    #[test]
    fn spritesheet_tiles_evenly_spaced_frames_in_rows_of_four() {
        // 17 frames: 16 tiles (frames 0, 1, ... 16 spaced evenly), 4 x 4.
        let video = gradient(17, 48, 32);
        let (w, h, pixels) = decode(spritesheet_png(&video).expect("png"));
        assert_eq!((w, h), (4 * 48, 4 * 32));
        // The last tile's top-left pixel is the last frame's.
        let last_tile = ((3 * 32) * (4 * 48) + 3 * 48) * 3;
        assert_eq!(&pixels[last_tile..last_tile + 3], &video.frames[16][..3]);
        // Three frames: one row of three.
        let (w, h, _) = decode(spritesheet_png(&gradient(3, 48, 32)).expect("png"));
        assert_eq!((w, h), (3 * 48, 32));
        let none = Video {
            width: 32,
            height: 32,
            frames: vec![],
        };
        assert!(matches!(spritesheet_png(&none), Err(VideoError::NoFrames)));
    }
}
