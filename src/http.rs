//! The HTTP side of every genfleet process: Prometheus text on `/metrics`,
//! liveness on `/healthz`.

use std::collections::BTreeMap;
use std::future::Future;

use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;
use prometheus::proto::MetricFamily;
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
    let families = merged_families(&registries);
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

/// Gathers every registry, merging families of the same name (several
/// workers in one process each register `genfleet_worker_*`, told apart by
/// their `node` label): the text format allows one family per name.
fn merged_families(registries: &[Registry]) -> Vec<MetricFamily> {
    let mut by_name: BTreeMap<String, MetricFamily> = BTreeMap::new();
    for mut family in registries.iter().flat_map(|r| r.gather()) {
        match by_name.get_mut(family.name()) {
            Some(existing) => existing.mut_metric().extend(family.take_metric()),
            None => {
                by_name.insert(family.name().to_string(), family);
            }
        }
    }
    by_name.into_values().collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use prometheus::{IntGauge, Opts};

    #[test]
    fn families_of_the_same_name_are_merged() {
        let registry = |node: &str| {
            let r =
                Registry::new_custom(None, Some([("node".to_string(), node.to_string())].into()))
                    .expect("registry");
            let g = IntGauge::with_opts(Opts::new("genfleet_worker_jobs_running", "help"))
                .expect("gauge");
            g.set(1);
            r.register(Box::new(g)).expect("register");
            r
        };
        let families = merged_families(&[registry("a"), registry("b")]);
        assert_eq!(families.len(), 1);
        assert_eq!(families[0].get_metric().len(), 2);
        let mut text = Vec::new();
        TextEncoder::new()
            .encode(&families, &mut text)
            .expect("encode");
        let text = String::from_utf8(text).expect("utf8");
        assert_eq!(
            text.matches("# TYPE genfleet_worker_jobs_running").count(),
            1
        );
        assert!(
            text.contains("node=\"a\"") && text.contains("node=\"b\""),
            "{text}"
        );
    }
}
