//! H.264 pictures into an MP4 container (ISO/IEC 14496-12 and -15): the
//! parameter sets go into the avcC box, each picture becomes one sample of
//! length-prefixed NAL units.

use std::io::Cursor;

use bytes::Bytes;
use mp4::{
    AvcConfig, FourCC, MediaConfig, Mp4Config, Mp4Sample, Mp4Writer, TrackConfig, TrackType,
};

use super::h264::{nal_type, EncodedFrame, NAL_PPS, NAL_SPS};
use super::VideoError;

/// Ticks per frame: the track's timescale is fps * this.
const TICKS_PER_FRAME: u32 = 1000;

pub fn mux_mp4(
    frames: &[EncodedFrame],
    width: usize,
    height: usize,
    fps: u32,
) -> Result<Vec<u8>, VideoError> {
    let find = |kind: u8| {
        frames
            .iter()
            .flat_map(|f| f.nals.iter())
            .find(|n| nal_type(n) == kind)
            .cloned()
    };
    let sps = find(NAL_SPS).ok_or(VideoError::MissingParameterSet("sequence"))?;
    let pps = find(NAL_PPS).ok_or(VideoError::MissingParameterSet("picture"))?;
    let brand = |s: &[u8; 4]| FourCC { value: *s };
    let config = Mp4Config {
        major_brand: brand(b"isom"),
        minor_version: 512,
        compatible_brands: vec![
            brand(b"isom"),
            brand(b"iso2"),
            brand(b"avc1"),
            brand(b"mp41"),
        ],
        timescale: 1000,
    };
    let mut writer = Mp4Writer::write_start(Cursor::new(Vec::new()), &config)?;
    writer.add_track(&TrackConfig {
        track_type: TrackType::Video,
        timescale: fps * TICKS_PER_FRAME,
        language: "und".into(),
        media_conf: MediaConfig::AvcConfig(AvcConfig {
            width: width as u16,
            height: height as u16,
            seq_param_set: sps,
            pic_param_set: pps,
        }),
    })?;
    for (i, frame) in frames.iter().enumerate() {
        let mut sample = Vec::new();
        for nal in frame
            .nals
            .iter()
            .filter(|n| !matches!(nal_type(n), NAL_SPS | NAL_PPS))
        {
            sample.extend_from_slice(&(nal.len() as u32).to_be_bytes());
            sample.extend_from_slice(nal);
        }
        writer.write_sample(
            1,
            &Mp4Sample {
                start_time: i as u64 * u64::from(TICKS_PER_FRAME),
                duration: TICKS_PER_FRAME,
                rendering_offset: 0,
                is_sync: frame.is_keyframe(),
                bytes: Bytes::from(sample),
            },
        )?;
    }
    writer.write_end()?;
    Ok(writer.into_writer().into_inner())
}
