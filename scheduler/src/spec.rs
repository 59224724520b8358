//! What a job may ask for. The same checks run at submit (to answer the
//! client clearly) and again at apply (so a bad entry never enters the state).

use genfleet_proto::JobSpec;

/// Longest prompt accepted, in characters.
pub const MAX_PROMPT_CHARS: usize = 2000;
/// Most frames one job may ask for (10 s at 24 fps).
pub const MAX_FRAMES: u32 = 241;
/// Width and height must be multiples of this: 8x VAE-style compression times
/// the 2x2 spatial patch of the transformer.
pub const SIDE_MULTIPLE: u32 = 16;
pub const MIN_SIDE: u32 = 16;
pub const MAX_SIDE: u32 = 1920;
/// Upper bound on frames x width x height, about 10 s of 720p.
pub const MAX_VOXELS: u64 = 241 * 1280 * 720;
/// Most denoising steps one job may ask for: DDPM's schedule of 1000, the
/// longest real samplers run (submissions and planner traces alike).
pub const MAX_STEPS: u32 = 1000;
pub const MAX_FPS: u32 = 60;
pub const MAX_GUIDANCE: f32 = 30.0;
/// Devices one job may span (one node).
pub const MAX_TP: u32 = 16;
use genfleet_proto::MAX_NAME_LEN;

/// The trained model (`genfleet model train`), shipped in the binary.
pub const DEFAULT_MODEL: &str = "world";
pub const DEFAULT_QUEUE: &str = "default";
pub const DEFAULT_FPS: u32 = 8;
/// A job's defaults, for every front (the CLI, the OpenAI-compatible API,
/// the planner's workloads) that takes a job without them.
pub const DEFAULT_STEPS: u32 = 20;
pub const DEFAULT_GUIDANCE: f32 = 5.0;
pub const DEFAULT_FRAMES: u32 = 17;

/// A job spec that cannot be run, with what was wrong and what is allowed.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum SpecError {
    #[error("the prompt is empty: give a text prompt describing the video")]
    EmptyPrompt,
    #[error("the prompt has {chars} characters; at most {MAX_PROMPT_CHARS} are allowed")]
    PromptTooLong { chars: usize },
    #[error("the negative prompt has {chars} characters; at most {MAX_PROMPT_CHARS} are allowed")]
    NegativePromptTooLong { chars: usize },
    #[error("frames = {0}: a video needs between 1 and {MAX_FRAMES} frames")]
    Frames(u32),
    #[error("{axis} = {value}: it must be between {MIN_SIDE} and {MAX_SIDE} pixels and a multiple of {SIDE_MULTIPLE}")]
    Side { axis: &'static str, value: u32 },
    #[error("{frames} frames of {width}x{height} is too large: frames x width x height may be at most {MAX_VOXELS}")]
    TooLarge {
        frames: u32,
        width: u32,
        height: u32,
    },
    #[error("steps = {0}: denoising needs between 1 and {MAX_STEPS} steps")]
    Steps(u32),
    #[error("fps = {0}: the frame rate must be between 1 and {MAX_FPS}")]
    Fps(u32),
    #[error(
        "guidance = {0}: classifier-free guidance must be a number between 0 and {MAX_GUIDANCE}"
    )]
    Guidance(f32),
    #[error("tp = {0}: a job runs on between 1 and {MAX_TP} devices of one node")]
    TensorParallel(u32),
    #[error(
        "{field} {value:?} is not a valid name: use 1 to {MAX_NAME_LEN} of a-z, 0-9, '-', '_', '.'"
    )]
    Name { field: &'static str, value: String },
    #[error("qos {0:?} is not one of interactive, standard, batch")]
    Qos(String),
    #[error("priority {0} is outside -{MAX_PRIORITY}..={MAX_PRIORITY}")]
    Priority(i32),
}

/// Largest priority (in absolute value) a job may carry.
pub const MAX_PRIORITY: i32 = 1000;

/// The job's class; a spec without one (older log entries) is standard.
pub fn qos(spec: &JobSpec) -> Option<crate::qos::Qos> {
    if spec.qos.is_empty() {
        return Some(crate::qos::Qos::Standard);
    }
    crate::qos::Qos::parse(&spec.qos)
}

/// Fills the fields whose zero value means "the default".
pub fn with_defaults(mut spec: JobSpec) -> JobSpec {
    if spec.model.is_empty() {
        spec.model = DEFAULT_MODEL.to_string();
    }
    if spec.queue.is_empty() {
        spec.queue = DEFAULT_QUEUE.to_string();
    }
    if spec.fps == 0 {
        spec.fps = DEFAULT_FPS;
    }
    if spec.tp == 0 {
        spec.tp = 1;
    }
    if spec.qos.is_empty() {
        spec.qos = crate::qos::Qos::Standard.label().to_string();
    }
    spec
}

/// Checks every field of a spec (after [`with_defaults`]).
pub fn validate(spec: &JobSpec) -> Result<(), SpecError> {
    let prompt_chars = spec.prompt.chars().count();
    if spec.prompt.trim().is_empty() {
        return Err(SpecError::EmptyPrompt);
    }
    if prompt_chars > MAX_PROMPT_CHARS {
        return Err(SpecError::PromptTooLong {
            chars: prompt_chars,
        });
    }
    let negative_chars = spec.negative_prompt.chars().count();
    if negative_chars > MAX_PROMPT_CHARS {
        return Err(SpecError::NegativePromptTooLong {
            chars: negative_chars,
        });
    }
    if spec.frames == 0 || spec.frames > MAX_FRAMES {
        return Err(SpecError::Frames(spec.frames));
    }
    for (axis, value) in [("width", spec.width), ("height", spec.height)] {
        if !(MIN_SIDE..=MAX_SIDE).contains(&value) || value % SIDE_MULTIPLE != 0 {
            return Err(SpecError::Side { axis, value });
        }
    }
    let voxels = u64::from(spec.frames) * u64::from(spec.width) * u64::from(spec.height);
    if voxels > MAX_VOXELS {
        return Err(SpecError::TooLarge {
            frames: spec.frames,
            width: spec.width,
            height: spec.height,
        });
    }
    if spec.steps == 0 || spec.steps > MAX_STEPS {
        return Err(SpecError::Steps(spec.steps));
    }
    if spec.fps == 0 || spec.fps > MAX_FPS {
        return Err(SpecError::Fps(spec.fps));
    }
    if !(0.0..=MAX_GUIDANCE).contains(&spec.guidance) {
        return Err(SpecError::Guidance(spec.guidance));
    }
    if spec.tp == 0 || spec.tp > MAX_TP {
        return Err(SpecError::TensorParallel(spec.tp));
    }
    validate_name("model", &spec.model)?;
    validate_name("queue", &spec.queue)?;
    if qos(spec).is_none() {
        return Err(SpecError::Qos(spec.qos.clone()));
    }
    // A range, not abs(): abs(i32::MIN) overflows.
    if !(-MAX_PRIORITY..=MAX_PRIORITY).contains(&spec.priority) {
        return Err(SpecError::Priority(spec.priority));
    }
    if !spec.remix_of.is_empty() {
        validate_name("remix_of", &spec.remix_of)?;
    }
    Ok(())
}

/// Names of models, queues and nodes: short, lower-case, safe in paths and labels.
pub fn validate_name(field: &'static str, value: &str) -> Result<(), SpecError> {
    if genfleet_proto::is_valid_name(value) {
        Ok(())
    } else {
        Err(SpecError::Name {
            field,
            value: value.to_string(),
        })
    }
}

/// Parses `WIDTHxHEIGHT` (the CLI's --size, a workload's size): one parser
/// for every place a frame size is written.
pub fn parse_size(s: &str) -> Result<(u32, u32), String> {
    let (w, h) = s
        .split_once(['x', 'X'])
        .ok_or_else(|| format!("{s:?} is not WIDTHxHEIGHT, e.g. 256x256"))?;
    let side = |v: &str| {
        v.trim()
            .parse::<u32>()
            .map_err(|_| format!("{v:?} in {s:?} is not a whole number of pixels"))
    };
    Ok((side(w)?, side(h)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse_or_say_why_not() {
        assert_eq!(parse_size("256x128"), Ok((256, 128)));
        assert_eq!(parse_size("64X64"), Ok((64, 64)));
        assert!(parse_size("256").unwrap_err().contains("WIDTHxHEIGHT"));
        assert!(parse_size("ax2").unwrap_err().contains("\"a\""));
        assert!(parse_size("-1x2").is_err());
    }

    fn good() -> JobSpec {
        with_defaults(JobSpec {
            prompt: "a red fox in the snow".into(),
            frames: 17,
            width: 256,
            height: 256,
            steps: 20,
            guidance: 5.0,
            ..Default::default()
        })
    }

    #[test]
    fn a_sampler_of_a_thousand_steps_is_accepted() {
        let spec = JobSpec {
            steps: 1000,
            ..good()
        };
        assert_eq!(validate(&spec), Ok(()));
    }

    #[test]
    fn a_reasonable_spec_passes_and_gets_defaults() {
        let spec = good();
        assert_eq!(validate(&spec), Ok(()));
        assert_eq!(spec.model, DEFAULT_MODEL);
        assert_eq!(spec.queue, DEFAULT_QUEUE);
        assert_eq!(spec.tp, 1);
        assert_eq!(spec.fps, DEFAULT_FPS);
    }

    #[test]
    fn each_bad_field_is_named() {
        type Case = (&'static str, fn(&mut JobSpec), &'static str);
        let cases: Vec<Case> = vec![
            (
                "empty prompt",
                |s| s.prompt = "  ".into(),
                "prompt is empty",
            ),
            (
                "long prompt",
                |s| s.prompt = "x".repeat(2001),
                "2001 characters",
            ),
            ("zero frames", |s| s.frames = 0, "frames = 0"),
            (
                "the lowest i32 priority",
                |s| s.priority = i32::MIN,
                "outside -1000..=1000",
            ),
            ("priority 1001", |s| s.priority = 1001, "outside"),
            ("absurd frames", |s| s.frames = 100_000, "frames = 100000"),
            ("odd width", |s| s.width = 250, "width = 250"),
            ("zero height", |s| s.height = 0, "height = 0"),
            ("huge side", |s| s.width = 8192, "width = 8192"),
            (
                "too many voxels",
                |s| {
                    s.frames = 241;
                    s.width = 1920;
                    s.height = 1920;
                },
                "too large",
            ),
            ("zero steps", |s| s.steps = 0, "steps = 0"),
            (
                "steps past DDPM's",
                |s| s.steps = 1001,
                "between 1 and 1000",
            ),
            ("nan guidance", |s| s.guidance = f32::NAN, "guidance = NaN"),
            ("big tp", |s| s.tp = 64, "tp = 64"),
            (
                "bad model",
                |s| s.model = "Tiny Model".into(),
                "model \"Tiny Model\"",
            ),
        ];
        for (name, mutate, expected) in cases {
            let mut spec = good();
            mutate(&mut spec);
            let err = validate(&spec).expect_err(name).to_string();
            assert!(err.contains(expected), "{name}: {err:?} lacks {expected:?}");
        }
    }
}
