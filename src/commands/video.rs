//! `genfleet video check`: read a video back and decode every frame.

use anyhow::{bail, Context};
use genfleet_worker::video::probe_mp4;

use crate::cli::{VideoCheckArgs, VideoCommand};

pub fn run(command: VideoCommand) -> anyhow::Result<()> {
    match command {
        VideoCommand::Check(args) => check(args),
    }
}

fn check(args: VideoCheckArgs) -> anyhow::Result<()> {
    let path = args.file.display();
    let bytes = std::fs::read(&args.file).with_context(|| format!("reading {path}"))?;
    let video = probe_mp4(&bytes).with_context(|| format!("{path}"))?;
    let [r, g, b] = video.mean_rgb;
    say!(
        "{path}: H.264 {}x{}, {} frames at {} fps, {} decoded, mean RGB {r:.0} {g:.0} {b:.0}",
        video.width,
        video.height,
        video.frames,
        video.fps,
        video.decoded
    );
    let mut wrong = Vec::new();
    if video.decoded != video.frames {
        wrong.push(format!(
            "only {} of its {} frames decode",
            video.decoded, video.frames
        ));
    }
    if let Some(frames) = args.frames.filter(|f| *f != video.frames) {
        wrong.push(format!("it has {} frames, not {frames}", video.frames));
    }
    if let Some((w, h)) = args.size.filter(|s| *s != (video.width, video.height)) {
        wrong.push(format!(
            "it is {}x{}, not {w}x{h}",
            video.width, video.height
        ));
    }
    if let Some(fps) = args
        .fps
        .filter(|f| (video.fps - f64::from(*f)).abs() > 1e-6)
    {
        wrong.push(format!("it plays at {} fps, not {fps}", video.fps));
    }
    if !wrong.is_empty() {
        bail!("{path}: {}", wrong.join("; "));
    }
    Ok(())
}
