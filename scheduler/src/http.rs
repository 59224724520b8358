//! The HTTP side of every genfleet process: Prometheus text on `/metrics`,
//! liveness on `/healthz`.

use std::future::Future;

use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;
use prometheus::{Encoder, Registry, TextEncoder};
use tokio::net::TcpListener;

/// Serves `/metrics` (all of `registries`) and `/healthz` until `shutdown`.
pub async fn serve(
    listener: TcpListener,
    registries: Vec<Registry>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let app = Router::new()
        .route("/metrics", get(move || metrics(registries.clone())))
        .route("/healthz", get(|| async { "ok\n" }));
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await
}

async fn metrics(registries: Vec<Registry>) -> impl IntoResponse {
    let families: Vec<_> = registries.iter().flat_map(|r| r.gather()).collect();
    let mut body = Vec::new();
    match TextEncoder::new().encode(&families, &mut body) {
        Ok(()) => (
            StatusCode::OK,
            [(header::CONTENT_TYPE, prometheus::TEXT_FORMAT)],
            body,
        ),
        Err(e) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
            format!("encoding metrics: {e}\n").into_bytes(),
        ),
    }
}
