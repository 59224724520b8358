//! The OpenAI-compatible Videos API over HTTP, on every scheduler replica:
//! each call becomes a call of this replica's own gRPC job API with the
//! caller's key, so authentication, tenant isolation, validation and
//! forwarding to the leader are the gRPC API's, not a second copy.
//!
//! - `POST /v1/videos` (multipart form or JSON): create
//! - `GET /v1/videos/{id}`, `GET /v1/videos` (after, limit, order)
//! - `DELETE /v1/videos/{id}`: cancel if still running, then remove
//! - `GET /v1/videos/{id}/content?variant=video|thumbnail|spritesheet`

mod video;

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{FromRequest, Multipart, Path, Query, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use genfleet_artifacts::ArtifactStore;
use genfleet_proto as pb;
use genfleet_proto::tls::TlsDir;

use crate::connections::GuardedListener;
use crate::leader::artifact_rules::file_of_job;
use pb::job_service_client::JobServiceClient;
use pb::tenant_service_client::TenantServiceClient;
use serde::Deserialize;
use serde_json::json;
use tokio::net::TcpListener;
use tonic::transport::Channel;

pub use video::{frames_for, ApiError, Video};

/// Why the REST API could not be served.
#[derive(Debug, thiserror::Error)]
pub enum RestServerError {
    #[error("the replica's gRPC address: {0}")]
    Grpc(#[from] genfleet_proto::tls::TlsError),
    #[error("TLS for the REST API with {dir}: {source}")]
    Tls {
        dir: String,
        #[source]
        source: std::io::Error,
    },
    #[error("serving the REST API: {0}")]
    Io(#[from] std::io::Error),
}

/// Content variants of a completed video, and of a preview.
const FINAL_VARIANTS: [&str; 3] = ["video", "thumbnail", "spritesheet"];
const PREVIEW_VARIANTS: [&str; 2] = ["preview", "preview_thumbnail"];

/// Longest list page a client may ask for.
const MAX_PAGE: usize = 100;
const DEFAULT_PAGE: usize = 20;
/// Bounds of the poll interval the SDK is told to wait.
const MIN_POLL_MS: u64 = 500;
const MAX_POLL_MS: u64 = 10_000;

#[derive(Clone)]
struct Api {
    jobs: JobServiceClient<Channel>,
    /// Checks a caller's key before a request's body is read.
    tenants: TenantServiceClient<Channel>,
    store: Arc<ArtifactStore>,
    models: Arc<Vec<&'static str>>,
}

/// Serves the API on `listener` until `shutdown`, calling the gRPC API at
/// `grpc` (this replica's) and reading artifacts from `store`; over TLS
/// with the replica's certificate when `tls` is given.
pub async fn serve(
    listener: TcpListener,
    grpc: &str,
    store: ArtifactStore,
    tls: Option<TlsDir>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), RestServerError> {
    // This replica's own gRPC port, on loopback: its certificate must name
    // localhost (docs/tls.md).
    let grpc_tls = tls
        .as_ref()
        .map(|t| genfleet_proto::tls::api_client(t.ca_pem()).domain_name(LOOPBACK_NAME));
    let channel = genfleet_proto::tls::endpoint(grpc, grpc_tls.as_ref())?.connect_lazy();
    let api = Api {
        jobs: JobServiceClient::new(channel.clone()),
        tenants: TenantServiceClient::new(channel),
        store: Arc::new(store),
        models: Arc::new(genfleet_proto::models::PRESETS.to_vec()),
    };
    let app = Router::new()
        .route("/v1/videos", get(list).post(create))
        .route("/v1/videos/{id}", get(retrieve).delete(delete))
        .route("/v1/videos/{id}/content", get(content))
        .route("/v1/videos/{id}/remix", post(remix))
        .fallback(|| async {
            ApiError {
                status: StatusCode::NOT_FOUND,
                message: "no such endpoint; genfleet serves /v1/videos".into(),
                param: None,
                code: None,
            }
        })
        .layer(axum::middleware::from_fn_with_state(
            api.clone(),
            known_caller_first,
        ))
        .with_state(api);
    let Some(tls) = tls else {
        axum::serve(GuardedListener::new(listener), app)
            .with_graceful_shutdown(shutdown)
            .await?;
        return Ok(());
    };
    let config = axum_server::tls_rustls::RustlsConfig::from_pem(
        tls.cert_pem().to_vec(),
        tls.key_pem().to_vec(),
    )
    .await
    .map_err(|source| RestServerError::Tls {
        dir: tls.dir.display().to_string(),
        source,
    })?;
    let handle = axum_server::Handle::new();
    let stopper = handle.clone();
    tokio::spawn(async move {
        shutdown.await;
        stopper.graceful_shutdown(Some(std::time::Duration::from_secs(10)));
    });
    axum_server::from_tcp_rustls(listener.into_std()?, config)?
        .handle(handle)
        .serve(app.into_make_service())
        .await?;
    Ok(())
}

/// Longest `Authorization` header passed on (keys are under 100 bytes).
const MAX_AUTHORIZATION_BYTES: usize = 1024;

/// A request with a body (a create, a remix: up to 2 MiB of form) is read
/// only once its key is known good: a caller without one holds no memory
/// here. Requests without a body go straight on (the gRPC call checks them).
async fn known_caller_first(
    State(api): State<Api>,
    request: Request,
    next: axum::middleware::Next,
) -> Response {
    // No key is this long: one that is would be refused by the gRPC port's
    // 16 KiB header limit, tearing down the connection this front shares
    // with every other caller's requests.
    let oversized = request
        .headers()
        .get(header::AUTHORIZATION)
        .is_some_and(|key| key.len() > MAX_AUTHORIZATION_BYTES);
    if oversized {
        let refused = tonic::Status::unauthenticated(format!(
            "the API key is not valid (longer than {MAX_AUTHORIZATION_BYTES} bytes)"
        ));
        return ApiError::from(refused).into_response();
    }
    if request.method() == axum::http::Method::POST {
        let mut tenants = api.tenants.clone();
        let check = tenants.who_am_i(grpc(request.headers(), pb::WhoAmIRequest {}));
        if let Err(status) = check.await {
            return ApiError::from(status).into_response();
        }
    }
    next.run(request).await
}

/// The name the API front checks its own replica's certificate against.
const LOOPBACK_NAME: &str = "localhost";

/// `inner` as a gRPC request carrying the HTTP caller's key.
fn grpc<T>(headers: &HeaderMap, inner: T) -> tonic::Request<T> {
    let mut request = tonic::Request::new(inner);
    if let Some(value) = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
    {
        request.metadata_mut().insert("authorization", value);
    }
    request
}

/// The video, with the poll interval the SDK's poller honours: about half
/// the time a queued job is expected to wait, else a second.
fn video_response(job: &pb::Job) -> Response {
    let poll_ms = match (job.state(), job.eta_seconds) {
        (pb::JobState::Pending, Some(eta)) if eta.is_finite() && eta > 0.0 => {
            ((eta * 500.0) as u64).clamp(MIN_POLL_MS, MAX_POLL_MS)
        }
        _ => 1000,
    };
    let mut response = Json(video::video(job)).into_response();
    response
        .headers_mut()
        .insert("openai-poll-after-ms", HeaderValue::from(poll_ms));
    response
}

async fn create(State(api): State<Api>, request: Request) -> Result<Response, ApiError> {
    let headers = request.headers().clone();
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    let fields = if content_type.starts_with("multipart/form-data") {
        let mut form = Multipart::from_request(request, &())
            .await
            .map_err(|e| ApiError::bad("body", format!("not a multipart form: {e}")))?;
        let mut fields = BTreeMap::new();
        while let Some(field) = form
            .next_field()
            .await
            .map_err(|e| ApiError::bad("body", format!("a bad multipart form: {e}")))?
        {
            let name = field.name().unwrap_or_default().to_string();
            if field.file_name().is_some() {
                return Err(ApiError::bad(
                    &name,
                    format!("{name}: file uploads are not supported"),
                ));
            }
            let text = field
                .text()
                .await
                .map_err(|e| ApiError::bad(&name, format!("{name}: {e}")))?;
            fields.insert(name, text);
        }
        fields
    } else {
        let body = Bytes::from_request(request, &())
            .await
            .map_err(|e| ApiError::bad("body", e.to_string()))?;
        let value: serde_json::Value = serde_json::from_slice(&body)
            .map_err(|e| ApiError::bad("body", format!("the body is not JSON: {e}")))?;
        video::fields_of_json(&value)?
    };
    let spec = video::spec_from(&fields, &api.models)?;
    submit_video(&api, &headers, spec).await
}

/// A new video from a completed one: its model, size, length, steps, seed
/// and guidance, with a new prompt. The same seed starts from the same
/// noise, so the composition carries over as far as the model keeps it
/// (docs/openai-api.md).
async fn remix(
    State(api): State<Api>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let value: serde_json::Value = serde_json::from_slice(&body)
        .map_err(|e| ApiError::bad("body", format!("the body is not JSON: {e}")))?;
    let fields = video::fields_of_json(&value)?;
    if let Some(unknown) = fields.keys().find(|k| k.as_str() != "prompt") {
        return Err(ApiError::bad(
            unknown,
            format!("a remix takes only a prompt, not {unknown:?}"),
        ));
    }
    let prompt = fields.get("prompt").cloned().unwrap_or_default();
    let source = get_job(&api, &headers, &id).await?;
    if source.state() != pb::JobState::Completed {
        return Err(ApiError {
            status: StatusCode::CONFLICT,
            message: format!(
                "video {id} is {}: only a completed video can be remixed",
                source.state().label()
            ),
            param: None,
            code: Some("video_not_ready"),
        });
    }
    let spec = pb::JobSpec {
        prompt,
        remix_of: id,
        ..source.spec.unwrap_or_default()
    };
    video::check(&spec)?;
    submit_video(&api, &headers, spec).await
}

/// Submits `spec` as the caller; answers with the new video.
async fn submit_video(
    api: &Api,
    headers: &HeaderMap,
    spec: pb::JobSpec,
) -> Result<Response, ApiError> {
    let submit = pb::SubmitRequest {
        spec: Some(spec),
        request_id: String::new(),
    };
    let job = api
        .jobs
        .clone()
        .submit(grpc(headers, submit))
        .await?
        .into_inner()
        .job
        .ok_or_else(|| tonic::Status::internal("submit returned no job"))?;
    Ok(video_response(&job))
}

async fn get_job(api: &Api, headers: &HeaderMap, id: &str) -> Result<pb::Job, ApiError> {
    api.jobs
        .clone()
        .get(grpc(headers, pb::GetJobRequest { id: id.to_string() }))
        .await
        .map(tonic::Response::into_inner)
        .map_err(ApiError::from)
}

async fn retrieve(
    State(api): State<Api>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    Ok(video_response(&get_job(&api, &headers, &id).await?))
}

#[derive(Debug, Deserialize)]
struct ListParams {
    after: Option<String>,
    limit: Option<usize>,
    order: Option<String>,
}

async fn list(
    State(api): State<Api>,
    Query(params): Query<ListParams>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let limit = params.limit.unwrap_or(DEFAULT_PAGE);
    if limit == 0 || limit > MAX_PAGE {
        return Err(ApiError::bad(
            "limit",
            format!("limit must be 1 to {MAX_PAGE}"),
        ));
    }
    let newest_first = match params.order.as_deref() {
        None | Some("desc") => true,
        Some("asc") => false,
        Some(other) => {
            return Err(ApiError::bad(
                "order",
                format!("order {other:?}: asc or desc"),
            ))
        }
    };
    // `after` names a video: the page continues after its place in the order.
    let page_token = match &params.after {
        Some(after) => {
            let job = get_job(&api, &headers, after)
                .await
                .map_err(|e| match e.status {
                    StatusCode::NOT_FOUND => {
                        ApiError::bad("after", format!("no video {after:?} to list after"))
                    }
                    _ => e,
                })?;
            crate::api::paging::token(&(job.created_at_ms, job.position))
        }
        None => String::new(),
    };
    let request = pb::ListJobsRequest {
        page_size: limit as u32,
        page_token,
        oldest_first: !newest_first,
        ..Default::default()
    };
    let listed = api
        .jobs
        .clone()
        .list(grpc(&headers, request))
        .await?
        .into_inner();
    let page: Vec<Video> = listed.jobs.iter().map(video::video).collect();
    let has_more = !listed.next_page_token.is_empty();
    let body = json!({
        "object": "list",
        "first_id": page.first().map(|v| v.id.clone()),
        "last_id": page.last().map(|v| v.id.clone()),
        "has_more": has_more,
        "data": page,
    });
    Ok(Json(body).into_response())
}

async fn delete(
    State(api): State<Api>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let job = get_job(&api, &headers, &id).await?;
    let mut jobs = api.jobs.clone();
    if !job.state().is_terminal() {
        jobs.cancel(grpc(&headers, pb::CancelJobRequest { id: id.clone() }))
            .await?;
    }
    jobs.delete(grpc(&headers, pb::DeleteJobRequest { id: id.clone() }))
        .await?;
    Ok(Json(json!({"id": id, "object": "video.deleted", "deleted": true})).into_response())
}

#[derive(Debug, Deserialize)]
struct ContentParams {
    variant: Option<String>,
}

async fn content(
    State(api): State<Api>,
    Path(id): Path<String>,
    Query(params): Query<ContentParams>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let variant = params.variant.unwrap_or_else(|| "video".into());
    let preview = PREVIEW_VARIANTS.contains(&variant.as_str());
    if !preview && !FINAL_VARIANTS.contains(&variant.as_str()) {
        return Err(ApiError::bad(
            "variant",
            format!(
                "variant {variant:?}: {} or {}",
                FINAL_VARIANTS.join(", "),
                PREVIEW_VARIANTS.join(", ")
            ),
        ));
    }
    let job = get_job(&api, &headers, &id).await?;
    // A preview is served as soon as it is there; the final files once
    // the video completes.
    if !preview && job.state() != pb::JobState::Completed {
        return Err(ApiError {
            status: StatusCode::CONFLICT,
            message: format!(
                "video {id} is {}: its content is there once it completes",
                job.state().label()
            ),
            param: None,
            code: Some("video_not_ready"),
        });
    }
    let artifact = job
        .artifacts
        .iter()
        .find(|a| a.kind == variant)
        .ok_or_else(|| ApiError {
            status: StatusCode::NOT_FOUND,
            message: if preview {
                format!(
                    "video {id} has no preview (yet): interactive jobs make one part way through"
                )
            } else {
                format!("video {id} has no {variant} (simulated devices make none)")
            },
            param: Some("variant".into()),
            code: None,
        })?;
    // A tenant is told what is missing, never where the server keeps it.
    let unreadable = || ApiError {
        status: StatusCode::INTERNAL_SERVER_ERROR,
        message: format!("the {variant} of video {id} cannot be read from the artifact store"),
        param: None,
        code: None,
    };
    // Only the job's own files: a URI outside its folder is not served.
    if file_of_job(api.store.base_uri(), &job.id, &artifact.uri).is_none() {
        tracing::warn!(job = %job.id, uri = %artifact.uri, "refused to serve a file outside the job's folder");
        return Err(unreadable());
    }
    let (size, stream) = api
        .store
        .get_stream(&artifact.uri)
        .await
        .map_err(|e| {
            tracing::warn!(job = %job.id, uri = %artifact.uri, error = %e, "cannot read a video's file");
            unreadable()
        })?;
    let content_type = HeaderValue::from_str(&artifact.content_type)
        .unwrap_or(HeaderValue::from_static("application/octet-stream"));
    let headers = [
        (header::CONTENT_TYPE, content_type),
        (header::CONTENT_LENGTH, HeaderValue::from(size)),
    ];
    Ok((headers, axum::body::Body::from_stream(stream)).into_response())
}
