//! The OpenAI Videos API's shapes: the video object a job is shown as, the
//! create parameters a job spec is made from, and the error body.

use std::collections::BTreeMap;

use crate::spec::{self, SpecError};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use genfleet_proto as pb;
use serde::Serialize;
use serde_json::{json, Value};

/// Seconds of video when a request gives none (OpenAI's default).
pub const DEFAULT_SECONDS: u32 = 4;
/// Frames per second when a request gives none (the CLI's default too).
pub const DEFAULT_FPS: u32 = spec::DEFAULT_FPS;
/// Denoising steps and guidance when a request gives none (as the CLI).
use spec::{DEFAULT_GUIDANCE, DEFAULT_STEPS};

/// An error as OpenAI's API answers it: `{"error": {message, type, param, code}}`.
#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub message: String,
    pub param: Option<String>,
    pub code: Option<&'static str>,
}

impl ApiError {
    pub fn bad(param: &str, message: impl Into<String>) -> Self {
        Self {
            status: StatusCode::BAD_REQUEST,
            message: message.into(),
            param: Some(param.to_string()),
            code: None,
        }
    }

    /// A gRPC answer as the HTTP status and error type OpenAI would use.
    fn from_status(status: &tonic::Status) -> Self {
        use tonic::Code;
        let (http, code) = match status.code() {
            Code::InvalidArgument => (StatusCode::BAD_REQUEST, None),
            Code::Unauthenticated => (StatusCode::UNAUTHORIZED, Some("invalid_api_key")),
            Code::PermissionDenied => (StatusCode::FORBIDDEN, None),
            Code::NotFound => (StatusCode::NOT_FOUND, None),
            Code::ResourceExhausted => (StatusCode::TOO_MANY_REQUESTS, None),
            Code::FailedPrecondition | Code::AlreadyExists => (StatusCode::CONFLICT, None),
            Code::Unavailable => (StatusCode::SERVICE_UNAVAILABLE, None),
            _ => (StatusCode::INTERNAL_SERVER_ERROR, None),
        };
        Self {
            status: http,
            message: status.message().to_string(),
            param: None,
            code,
        }
    }
}

impl From<tonic::Status> for ApiError {
    fn from(status: tonic::Status) -> Self {
        Self::from_status(&status)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let kind = match self.status {
            StatusCode::UNAUTHORIZED => "authentication_error",
            StatusCode::FORBIDDEN => "permission_error",
            StatusCode::NOT_FOUND => "not_found_error",
            StatusCode::TOO_MANY_REQUESTS => "rate_limit_error",
            s if s.is_server_error() => "server_error",
            _ => "invalid_request_error",
        };
        let body = json!({
            "error": {
                "message": self.message,
                "type": kind,
                "param": self.param,
                "code": self.code,
            }
        });
        (self.status, axum::Json(body)).into_response()
    }
}

/// The video object as the OpenAI SDK parses it.
#[derive(Debug, Serialize)]
pub struct Video {
    pub id: String,
    pub object: &'static str,
    pub status: &'static str,
    pub progress: u32,
    pub created_at: i64,
    pub completed_at: Option<i64>,
    pub expires_at: Option<i64>,
    pub model: String,
    pub seconds: String,
    pub size: String,
    pub prompt: String,
    pub remixed_from_video_id: Option<String>,
    pub error: Option<Value>,
    /// genfleet's own: the queue, class and why a queued job waits.
    pub queue: String,
    pub qos: String,
    pub pending_reason: Option<String>,
    /// Whether a preview is there (`variant=preview` and
    /// `variant=preview_thumbnail`), while the job runs and after.
    pub has_preview: bool,
    /// Words of the prompt the model does not know (`world`'s vocabulary
    /// is small): it will not show them.
    pub unknown_words: Vec<String>,
}

/// Frames for `seconds` at `fps`: a first frame, then `fps` per second.
pub fn frames_for(seconds: u32, fps: u32) -> u32 {
    seconds.saturating_mul(fps).saturating_add(1)
}

pub fn video(job: &pb::Job) -> Video {
    let spec = job.spec.clone().unwrap_or_default();
    let state = job.state();
    let status = match state {
        pb::JobState::Pending => "queued",
        pb::JobState::Running => "in_progress",
        pb::JobState::Completed => "completed",
        _ => "failed",
    };
    let progress = match state {
        pb::JobState::Completed => 100,
        _ if spec.steps > 0 => (job.step.min(spec.steps) * 100 / spec.steps).min(99),
        _ => 0,
    };
    let fps = spec.fps.max(1);
    let error = match state {
        pb::JobState::Failed => Some(json!({"code": "generation_failed", "message": job.message})),
        pb::JobState::Cancelled => Some(json!({"code": "cancelled", "message": job.message})),
        _ => None,
    };
    let seconds_of = |ms: i64| ms / 1000;
    Video {
        id: job.id.clone(),
        object: "video",
        status,
        progress,
        created_at: seconds_of(job.created_at_ms),
        completed_at: (job.finished_at_ms > 0).then(|| seconds_of(job.finished_at_ms)),
        expires_at: None,
        model: spec.model.clone(),
        seconds: (spec.frames.saturating_sub(1) / fps).to_string(),
        size: format!("{}x{}", spec.width, spec.height),
        prompt: spec.prompt.clone(),
        remixed_from_video_id: Some(spec.remix_of.clone()).filter(|r| !r.is_empty()),
        error,
        queue: spec.queue.clone(),
        qos: spec.qos.clone(),
        pending_reason: (state == pb::JobState::Pending && !job.pending_reason.is_empty())
            .then(|| job.pending_reason.clone()),
        has_preview: job.artifacts.iter().any(|a| a.kind == "preview"),
        unknown_words: job.unknown_words.clone(),
    }
}

/// The parameters a create request may carry: OpenAI's, then genfleet's
/// own (sent by the SDK as extra body fields).
const PARAMS: &[&str] = &[
    "prompt",
    "model",
    "seconds",
    "size",
    "queue",
    "qos",
    "steps",
    "seed",
    "fps",
    "negative_prompt",
    "guidance",
    "priority",
    "tp",
];

fn number<T: std::str::FromStr>(
    fields: &BTreeMap<String, String>,
    name: &str,
) -> Result<Option<T>, ApiError> {
    match fields.get(name) {
        None => Ok(None),
        Some(text) => text
            .trim()
            .parse()
            .map(Some)
            .map_err(|_| ApiError::bad(name, format!("{name} {text:?} is not a number"))),
    }
}

/// A job spec from a create request's fields (all as text), checked as
/// the scheduler checks it, each error naming the parameter.
pub fn spec_from(
    fields: &BTreeMap<String, String>,
    models: &[&str],
) -> Result<pb::JobSpec, ApiError> {
    if let Some(unknown) = fields.keys().find(|k| !PARAMS.contains(&k.as_str())) {
        let message = if unknown == "input_reference" {
            "input_reference (an image to start from) is not supported".to_string()
        } else {
            format!(
                "unknown parameter {unknown:?}; genfleet takes {}",
                PARAMS.join(", ")
            )
        };
        return Err(ApiError::bad(unknown, message));
    }
    let prompt = fields.get("prompt").cloned().unwrap_or_default();
    if prompt.trim().is_empty() {
        return Err(ApiError::bad(
            "prompt",
            "give a prompt: what the video shows",
        ));
    }
    let model = fields
        .get("model")
        .cloned()
        .unwrap_or_else(|| spec::DEFAULT_MODEL.to_string());
    if !models.contains(&model.as_str()) {
        return Err(ApiError::bad(
            "model",
            format!(
                "model {model:?} is not served here; the models are {}",
                models.join(", ")
            ),
        ));
    }
    let seconds: u32 = number(fields, "seconds")?.unwrap_or(DEFAULT_SECONDS);
    if seconds == 0 {
        return Err(ApiError::bad("seconds", "seconds must be at least 1"));
    }
    let fps: u32 = number(fields, "fps")?.unwrap_or(DEFAULT_FPS);
    // A form can tell a zero that was sent from a field left out: a zero
    // is refused here, not taken for the default as the wire format's is.
    if fps == 0 {
        return Err(ApiError::bad("fps", SpecError::Fps(0).to_string()));
    }
    let tp: u32 = number(fields, "tp")?.unwrap_or(1);
    if tp == 0 {
        return Err(ApiError::bad(
            "tp",
            SpecError::TensorParallel(0).to_string(),
        ));
    }
    let default_size = {
        let (w, h) = pb::models::default_size(&model);
        format!("{w}x{h}")
    };
    let size = fields
        .get("size")
        .map_or(default_size.as_str(), String::as_str);
    let (width, height) =
        spec::parse_size(size).map_err(|why| ApiError::bad("size", format!("size {why}")))?;
    let job = pb::JobSpec {
        prompt,
        negative_prompt: fields.get("negative_prompt").cloned().unwrap_or_default(),
        frames: frames_for(seconds, fps),
        width,
        height,
        steps: number(fields, "steps")?.unwrap_or(DEFAULT_STEPS),
        seed: number(fields, "seed")?.unwrap_or_else(rand::random),
        guidance: number(fields, "guidance")?.unwrap_or(DEFAULT_GUIDANCE),
        fps,
        model,
        tp,
        queue: fields.get("queue").cloned().unwrap_or_default(),
        qos: fields.get("qos").cloned().unwrap_or_default(),
        priority: number(fields, "priority")?.unwrap_or(0),
        remix_of: String::new(),
    };
    check(&job)?;
    Ok(job)
}

/// `job` checked as the scheduler checks it, an error naming the parameter
/// of the Videos API that set what is wrong.
pub fn check(job: &pb::JobSpec) -> Result<(), ApiError> {
    spec::validate(&spec::with_defaults(job.clone())).map_err(|e| {
        let param = match &e {
            SpecError::EmptyPrompt | SpecError::PromptTooLong { .. } => "prompt",
            SpecError::NegativePromptTooLong { .. } => "negative_prompt",
            SpecError::Frames(_) | SpecError::TooLarge { .. } => "seconds",
            SpecError::Side { .. } => "size",
            SpecError::Steps(_) => "steps",
            SpecError::Fps(_) => "fps",
            SpecError::Guidance(_) => "guidance",
            SpecError::TensorParallel(_) => "tp",
            SpecError::Name { field, .. } => field,
            SpecError::Qos(_) => "qos",
            SpecError::Priority(_) => "priority",
        };
        let message = match &e {
            SpecError::Frames(_) | SpecError::TooLarge { .. } => format!(
                "{} s at {} fps is {} frames of {}x{}: {e}",
                job.frames.saturating_sub(1) / job.fps.max(1),
                job.fps,
                job.frames,
                job.width,
                job.height
            ),
            _ => e.to_string(),
        };
        ApiError::bad(param, message)
    })
}

/// Text fields of a JSON object (numbers and booleans as their text).
pub fn fields_of_json(body: &Value) -> Result<BTreeMap<String, String>, ApiError> {
    let object = body
        .as_object()
        .ok_or_else(|| ApiError::bad("body", "the body must be a JSON object"))?;
    let mut fields = BTreeMap::new();
    for (name, value) in object {
        let text = match value {
            Value::Null => continue,
            Value::String(s) => s.clone(),
            Value::Number(n) => n.to_string(),
            Value::Bool(b) => b.to_string(),
            _ => {
                return Err(ApiError::bad(
                    name,
                    format!("{name} must be a string or a number"),
                ))
            }
        };
        fields.insert(name.clone(), text);
    }
    Ok(fields)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MODELS: &[&str] = &["world", "tiny", "small"];

    fn fields(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn seconds_and_size_become_frames_and_pixels() {
        let spec = spec_from(
            &fields(&[
                ("prompt", "a kite"),
                ("seconds", "2"),
                ("size", "320x192"),
                ("fps", "12"),
            ]),
            MODELS,
        )
        .expect("valid");
        assert_eq!(
            (spec.frames, spec.width, spec.height, spec.fps),
            (25, 320, 192, 12)
        );
        // Without a model or size: the trained model at its own size.
        let spec = spec_from(&fields(&[("prompt", "a kite")]), MODELS).expect("valid");
        assert_eq!(
            (spec.model.as_str(), spec.frames, spec.width, spec.height),
            ("world", 33, 64, 64)
        );
        let tiny = fields(&[("prompt", "a kite"), ("model", "tiny")]);
        let spec = spec_from(&tiny, MODELS).expect("valid");
        assert_eq!((spec.width, spec.height), (256, 256));
    }

    #[test]
    fn bad_values_name_their_parameter() {
        for (pairs, param) in [
            (vec![("prompt", " ")], "prompt"),
            (vec![("prompt", "x"), ("model", "sora-2")], "model"),
            (vec![("prompt", "x"), ("size", "big")], "size"),
            (vec![("prompt", "x"), ("size", "250x256")], "size"),
            (vec![("prompt", "x"), ("seconds", "0")], "seconds"),
            (vec![("prompt", "x"), ("seconds", "60")], "seconds"),
            (vec![("prompt", "x"), ("steps", "many")], "steps"),
            (vec![("prompt", "x"), ("fps", "0")], "fps"),
            (vec![("prompt", "x"), ("tp", "0")], "tp"),
            (vec![("prompt", "x"), ("qos", "urgent")], "qos"),
            (vec![("prompt", "x"), ("colour", "red")], "colour"),
        ] {
            let err = spec_from(&fields(&pairs), MODELS).expect_err(param);
            assert_eq!(
                err.param.as_deref(),
                Some(param),
                "{pairs:?}: {}",
                err.message
            );
            assert_eq!(err.status, StatusCode::BAD_REQUEST);
        }
    }

    #[test]
    fn a_job_shows_as_a_video() {
        let job = pb::Job {
            id: "j-1".into(),
            state: pb::JobState::Running as i32,
            step: 5,
            created_at_ms: 1_700_000_000_500,
            spec: Some(pb::JobSpec {
                prompt: "a kite".into(),
                frames: 33,
                fps: 8,
                width: 256,
                height: 128,
                steps: 20,
                model: "tiny".into(),
                ..Default::default()
            }),
            ..Default::default()
        };
        let v = video(&job);
        assert_eq!(
            (v.status, v.progress, v.seconds.as_str(), v.size.as_str()),
            ("in_progress", 25, "4", "256x128")
        );
        assert_eq!((v.created_at, v.completed_at), (1_700_000_000, None));
    }
}
