//! The HTTP side of every genfleet process: Prometheus text on `/metrics`,
//! liveness on `/healthz`, and readiness on `/readyz` where the process has
//! a notion of it (a scheduler replica, a worker).

use std::collections::BTreeMap;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use crate::connections::GuardedListener;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;
use prometheus::proto::MetricFamily;
use prometheus::{Encoder, Registry, TextEncoder};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

/// Whether the process should take traffic now: `Err` carries the reason,
/// one line.
pub type Readiness = Arc<dyn Fn() -> Result<(), String> + Send + Sync>;

/// Serves `/metrics` (all of `registries`), `/healthz`, and `/readyz` when
/// `readiness` is given, on `listener` in a task of its own until
/// `shutdown`; warns first when the listener is reachable from elsewhere,
/// and logs why if the server stops on an error. Every process's metrics
/// port is started here.
pub fn spawn(
    listener: TcpListener,
    registries: Vec<Registry>,
    readiness: Option<Readiness>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> JoinHandle<()> {
    if let Ok(addr) = listener.local_addr() {
        warn_metrics_exposed(addr);
    }
    let serve = serve(listener, registries, readiness, shutdown);
    tokio::spawn(async move {
        if let Err(e) = serve.await {
            tracing::error!(error = %e, "metrics server stopped");
        }
    })
}

/// Metrics and health are served to anyone who reaches them: say so when
/// that is more than this machine.
fn warn_metrics_exposed(addr: SocketAddr) {
    if !addr.ip().is_loopback() {
        tracing::warn!(
            listener = "metrics",
            listen = %addr,
            "UNAUTHENTICATED METRICS: anyone who reaches this address reads /metrics (queue and \
             node names, job counts, raft indexes; on workers, the ids, queues and tenants of \
             the jobs holding each GPU; never prompts or keys); let only Prometheus and the \
             kubelet reach it (docs/security.md)"
        );
    }
}

/// `/readyz` answers 200 "ready", or 503 with the reason.
async fn serve(
    listener: TcpListener,
    registries: Vec<Registry>,
    readiness: Option<Readiness>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let mut app = Router::new()
        .route("/metrics", get(move || metrics(registries.clone())))
        .route("/healthz", get(|| async { "ok\n" }));
    if let Some(readiness) = readiness {
        app = app.route("/readyz", get(move || ready(readiness.clone())));
    }
    // Idle sockets cannot hold this process's files (connections.rs).
    axum::serve(GuardedListener::new(listener), app)
        .with_graceful_shutdown(shutdown)
        .await
}

async fn ready(readiness: Readiness) -> (StatusCode, String) {
    match readiness() {
        Ok(()) => (StatusCode::OK, "ready\n".into()),
        Err(why) => (StatusCode::SERVICE_UNAVAILABLE, format!("{why}\n")),
    }
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
    use std::sync::atomic::{AtomicBool, Ordering};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// The status line and body of `GET path` on `addr`.
    async fn get(addr: std::net::SocketAddr, path: &str) -> (String, String) {
        let mut stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
        let request = format!("GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n");
        stream.write_all(request.as_bytes()).await.expect("send");
        let mut response = String::new();
        stream.read_to_string(&mut response).await.expect("read");
        let (head, body) = response.split_once("\r\n\r\n").expect("a response");
        let status = head.lines().next().unwrap_or_default().to_string();
        (status, body.to_string())
    }

    #[tokio::test]
    async fn readyz_answers_ready_or_the_reason_and_is_absent_without_a_check() {
        let leader = Arc::new(AtomicBool::new(false));
        let known = leader.clone();
        let readiness: Readiness = Arc::new(move || {
            if known.load(Ordering::SeqCst) {
                Ok(())
            } else {
                Err("no leader known".into())
            }
        });
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(serve(listener, Vec::new(), Some(readiness), async {
            let _ = stopped.await;
        }));
        let (status, body) = get(addr, "/readyz").await;
        assert!(status.contains(" 503 "), "{status}");
        assert_eq!(body, "no leader known\n");
        leader.store(true, Ordering::SeqCst);
        let (status, body) = get(addr, "/readyz").await;
        assert!(status.contains(" 200 "), "{status}");
        assert_eq!(body, "ready\n");
        let (status, body) = get(addr, "/healthz").await;
        assert!(
            status.contains(" 200 ") && body == "ok\n",
            "{status} {body}"
        );
        let _ = stop.send(());
        server.await.expect("join").expect("served");

        // Without a readiness check (the embedded cluster) there is no /readyz.
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(serve(listener, Vec::new(), None, async {
            let _ = stopped.await;
        }));
        let (status, _) = get(addr, "/readyz").await;
        assert!(status.contains(" 404 "), "{status}");
        let _ = stop.send(());
        server.await.expect("join").expect("served");
    }

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
