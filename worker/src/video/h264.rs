//! RGB frames to H.264 with Cisco's OpenH264 (built from source by the
//! openh264 crate), split into NAL units.

use openh264::encoder::{Encoder, EncoderConfig, FrameRate, QpRange, RateControlMode};
use openh264::formats::{RgbSliceU8, YUVBuffer};
use openh264::OpenH264API;

use super::VideoError;
use crate::model::Video;

/// One encoded picture: its NAL units without start codes.
#[derive(Debug, Clone)]
pub struct EncodedFrame {
    pub nals: Vec<Vec<u8>>,
}

/// NAL unit types that matter for muxing (ITU-T H.264, table 7-1).
pub const NAL_IDR: u8 = 5;
pub const NAL_SPS: u8 = 7;
pub const NAL_PPS: u8 = 8;

pub fn nal_type(nal: &[u8]) -> u8 {
    nal.first().map_or(0, |b| b & 0x1f)
}

impl EncodedFrame {
    pub fn is_keyframe(&self) -> bool {
        self.nals.iter().any(|n| nal_type(n) == NAL_IDR)
    }
}

pub fn encode_h264(video: &Video, fps: u32) -> Result<Vec<EncodedFrame>, VideoError> {
    let (width, height) = (video.width, video.height);
    if width % 2 != 0 || height % 2 != 0 || width < 16 || height < 16 {
        return Err(VideoError::Size { width, height });
    }
    if video.frames.is_empty() {
        return Err(VideoError::NoFrames);
    }
    // Constant quality rather than a bitrate target: clips are short, every
    // frame must be kept (rate control may only hold a bitrate by skipping
    // frames), and a QP of 16 to 26 looks clean.
    let config = EncoderConfig::new()
        .max_frame_rate(FrameRate::from_hz(fps as f32))
        .rate_control_mode(RateControlMode::Off)
        .qp(QpRange::new(16, 26))
        .skip_frames(false);
    let mut encoder = Encoder::with_api_config(OpenH264API::from_source(), config)
        .map_err(|e| VideoError::Encoder(e.to_string()))?;
    let expected = width * height * 3;
    let mut out = Vec::with_capacity(video.frames.len());
    for (index, rgb) in video.frames.iter().enumerate() {
        if rgb.len() != expected {
            return Err(VideoError::FrameBytes {
                index,
                got: rgb.len(),
                expected,
                width,
                height,
            });
        }
        let yuv = YUVBuffer::from_rgb8_source(RgbSliceU8::new(rgb, (width, height)));
        let stream = encoder
            .encode(&yuv)
            .map_err(|e| VideoError::Encoder(e.to_string()))?;
        let mut nals = Vec::new();
        for l in 0..stream.num_layers() {
            let Some(layer) = stream.layer(l) else {
                continue;
            };
            for n in 0..layer.nal_count() {
                if let Some(nal) = layer.nal_unit(n) {
                    nals.push(strip_start_code(nal).to_vec());
                }
            }
        }
        if nals.is_empty() {
            return Err(VideoError::DroppedFrame(index));
        }
        out.push(EncodedFrame { nals });
    }
    Ok(out)
}

/// Removes a leading Annex B start code (00 00 01 or 00 00 00 01).
fn strip_start_code(nal: &[u8]) -> &[u8] {
    if nal.starts_with(&[0, 0, 0, 1]) {
        &nal[4..]
    } else if nal.starts_with(&[0, 0, 1]) {
        &nal[3..]
    } else {
        nal
    }
}
