//! `genfleet scheduler --kubernetes on` as a real process, talking over
//! loopback to a fake Kubernetes API server (a small axum app answering
//! with recorded objects): the leader mirrors a cordoned Node and turns a
//! GenQueue into a queue, and the CLI shows both; a Node cordoned while its
//! worker runs a job has the job checkpointed and resumed on another worker.
//! The controllers' logic is tested request by request in
//! scheduler/tests/kube.rs; these tests are about the binary's wiring: flag,
//! kubeconfig, leader loop, network.

use crate::common;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{Method, StatusCode};
use axum::response::{IntoResponse, Response};
use common::*;
use genfleet_proto as pb;
use serde_json::{json, Value};
use tokio::sync::{watch, Notify};
use tokio_stream::wrappers::WatchStream;
use tokio_stream::StreamExt as _;

const H100: &str = "nvidia-h100-80gb";

/// What the fake API server was asked to change.
#[derive(Default)]
struct Recorded {
    status_patches: Mutex<Vec<Value>>,
    patched: Notify,
}

fn node(name: &str) -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {
            "name": name,
            "resourceVersion": "100",
            "labels": {
                "nvidia.com/gpu.present": "true",
                "nvidia.com/gpu.product": "NVIDIA-H100-80GB-HBM3",
                "nvidia.com/gpu.count": "8"
            }
        },
        "spec": { "unschedulable": true },
        "status": {
            "conditions": [
                { "type": "Ready", "status": "True", "reason": "KubeletReady",
                  "message": "kubelet is posting ready status",
                  "lastHeartbeatTime": "2026-11-29T01:40:11Z",
                  "lastTransitionTime": "2026-11-20T08:15:40Z" }
            ]
        }
    })
}

fn genqueue() -> Value {
    json!({
        "apiVersion": "genfleet.dev/v1alpha1",
        "kind": "GenQueue",
        "metadata": {
            "name": "team-k8s",
            "resourceVersion": "200",
            "generation": 1,
            "finalizers": ["genfleet.dev/queue"]
        },
        "spec": { "cohort": "lab", "quotas": { H100: { "nominal": 4 } } }
    })
}

fn list(kind: &str, api_version: &str, items: Vec<Value>) -> Value {
    json!({ "apiVersion": api_version, "kind": kind, "metadata": { "resourceVersion": "300" }, "items": items })
}

fn json_response(status: StatusCode, body: &Value) -> Response {
    let bytes = serde_json::to_vec(body).unwrap_or_default();
    (
        status,
        [(axum::http::header::CONTENT_TYPE, "application/json")],
        bytes,
    )
        .into_response()
}

async fn api(State(recorded): State<Arc<Recorded>>, request: Request) -> Response {
    let (method, path) = (request.method().clone(), request.uri().path().to_string());
    let watching = request
        .uri()
        .query()
        .is_some_and(|q| q.contains("watch=true"));
    let body = axum::body::to_bytes(request.into_body(), 1 << 20)
        .await
        .unwrap_or_default();
    if watching {
        // A watch that sends nothing and stays open, like a quiet cluster.
        let quiet = futures::stream::pending::<Result<Bytes, std::io::Error>>();
        return (StatusCode::OK, Body::from_stream(quiet)).into_response();
    }
    match (method, path.as_str()) {
        (Method::GET, "/api/v1/nodes") => json_response(
            StatusCode::OK,
            &list("NodeList", "v1", vec![node("gpu-node-1")]),
        ),
        (Method::GET, "/apis/genfleet.dev/v1alpha1/genqueues") => json_response(
            StatusCode::OK,
            &list("GenQueueList", "genfleet.dev/v1alpha1", vec![genqueue()]),
        ),
        (Method::PATCH, "/apis/genfleet.dev/v1alpha1/genqueues/team-k8s/status") => {
            let patch: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
            let mut object = genqueue();
            object["status"] = patch["status"].clone();
            if let Ok(mut patches) = recorded.status_patches.lock() {
                patches.push(patch);
            }
            recorded.patched.notify_waiters();
            json_response(StatusCode::OK, &object)
        }
        (method, path) => json_response(
            StatusCode::NOT_FOUND,
            &json!({
                "kind": "Status", "apiVersion": "v1", "status": "Failure", "code": 404,
                "reason": "NotFound", "message": format!("the fake API server has no {method} {path}")
            }),
        ),
    }
}

/// Runs `check` on the CLI's output until it holds, for at most `secs`.
async fn eventually(secs: u64, what: &str, args: &[&str], check: impl Fn(&str) -> bool) -> String {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        let (ok, out, err) = tokio::task::block_in_place(|| cli(args));
        if ok && check(&out) {
            return out;
        }
        assert!(
            Instant::now() < deadline,
            "within {secs}s: {what}; last output: {out}{err}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Serves `app` as the fake API server on loopback and starts a scheduler
/// with `--kubernetes on` whose kubeconfig points at it; returns the
/// scheduler and its gRPC endpoint.
async fn scheduler_with_fake_kubernetes(
    dir: &std::path::Path,
    app: axum::Router,
) -> (Proc, String) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let api_addr = listener.local_addr().expect("addr");
    tokio::spawn(async move { axum::serve(listener, app).await });
    let kubeconfig = dir.join("kubeconfig");
    std::fs::write(
        &kubeconfig,
        format!(
            "apiVersion: v1\nkind: Config\ncurrent-context: test\nclusters:\n- name: fake\n  cluster:\n    server: http://{api_addr}\ncontexts:\n- name: test\n  context:\n    cluster: fake\n    user: genfleet\nusers:\n- name: genfleet\n  user:\n    token: not-a-secret\n"
        ),
    )
    .expect("write kubeconfig");
    let data = dir.join("scheduler").to_string_lossy().to_string();
    let (scheduler, line) = spawn_ready_with_env(
        "scheduler",
        &[
            "scheduler",
            "--data-dir",
            &data,
            "--listen",
            "127.0.0.1:0",
            "--kubernetes",
            "on",
        ],
        &[("KUBECONFIG", kubeconfig.to_string_lossy().as_ref())],
        "ready: grpc=",
    );
    let endpoint = line
        .split_whitespace()
        .find_map(|w| w.strip_prefix("grpc="))
        .expect("grpc= in the ready line")
        .to_string();
    (scheduler, endpoint)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_leader_mirrors_kubernetes_through_a_real_api_connection() {
    let dir = tempfile::tempdir().expect("tempdir");
    let recorded = Arc::new(Recorded::default());
    let app = axum::Router::new()
        .fallback(api)
        .with_state(recorded.clone());
    let (_scheduler, endpoint) = scheduler_with_fake_kubernetes(dir.path(), app).await;
    let models = dir.path().join("models");
    init_model(&models);
    let _worker = start_worker_with(
        &endpoint,
        "gpu-node-1",
        &models,
        &dir.path().join("artifacts"),
        &["--simulate", &format!("{H100}:8")],
    );

    // kubectl cordon (spec.unschedulable) reaches genfleet.
    eventually(
        30,
        "the cordoned Node is cordoned in genfleet",
        &["node", "list", "--scheduler", &endpoint],
        |out| {
            out.lines()
                .any(|l| l.contains("gpu-node-1") && l.contains("cordoned"))
        },
    )
    .await;
    // The GenQueue is a queue, and its status was written back.
    eventually(
        30,
        "the GenQueue became a queue",
        &["queue", "list", "--scheduler", &endpoint],
        |out| {
            out.lines()
                .any(|l| l.contains("team-k8s") && l.contains("lab"))
        },
    )
    .await;
    let patched = recorded.patched.notified();
    tokio::pin!(patched);
    patched.as_mut().enable();
    let already = recorded
        .status_patches
        .lock()
        .map(|p| !p.is_empty())
        .unwrap_or(false);
    if !already {
        within(30, "the GenQueue's status is patched", patched).await;
    }
    let patches = recorded.status_patches.lock().expect("lock").clone();
    let status = &patches[0]["status"];
    assert_eq!(status["conditions"][0]["status"], "True", "{status}");
    assert_eq!(status["usage"], format!("{H100} 0/4"), "{status}");
}

/// One Node whose spec changes while the test runs: the list answers its
/// current version, and a watch sends each change as a MODIFIED event, as
/// the API server does for `kubectl cordon`.
async fn changing_node_api(
    State(node): State<watch::Receiver<Value>>,
    request: Request,
) -> Response {
    let path = request.uri().path().to_string();
    let watching = request
        .uri()
        .query()
        .is_some_and(|q| q.contains("watch=true"));
    match (watching, path.as_str()) {
        (true, "/api/v1/nodes") => {
            let changes = WatchStream::from_changes(node).map(|object| {
                let event = json!({"type": "MODIFIED", "object": object});
                Ok::<_, std::io::Error>(Bytes::from(format!("{event}\n")))
            });
            (StatusCode::OK, Body::from_stream(changes)).into_response()
        }
        (true, _) => {
            let quiet = futures::stream::pending::<Result<Bytes, std::io::Error>>();
            (StatusCode::OK, Body::from_stream(quiet)).into_response()
        }
        (false, "/api/v1/nodes") => {
            let current = node.borrow().clone();
            json_response(StatusCode::OK, &list("NodeList", "v1", vec![current]))
        }
        (false, "/apis/genfleet.dev/v1alpha1/genqueues") => json_response(
            StatusCode::OK,
            &list("GenQueueList", "genfleet.dev/v1alpha1", Vec::new()),
        ),
        (false, path) => json_response(
            StatusCode::NOT_FOUND,
            &json!({
                "kind": "Status", "apiVersion": "v1", "status": "Failure", "code": 404,
                "reason": "NotFound", "message": format!("the fake API server has no {path}")
            }),
        ),
    }
}

/// `kubectl cordon` (or `kubectl drain`, which evicts every pod but the
/// worker's DaemonSet pod) of a Node whose worker runs a job: the leader
/// asks the job to checkpoint, it goes back to the queue, and a worker on
/// another node resumes it from the saved step and finishes it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cordoned_nodes_job_checkpoints_and_resumes_on_another_worker() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut node_a = node("node-a");
    node_a["spec"]["unschedulable"] = json!(false);
    // A CPU node: no GPU labels to check against its worker.
    node_a["metadata"]["labels"] = json!({});
    let (set_node, nodes) = watch::channel(node_a.clone());
    let app = axum::Router::new()
        .fallback(changing_node_api)
        .with_state(nodes);
    let (_scheduler, endpoint) = scheduler_with_fake_kubernetes(dir.path(), app).await;
    let models = dir.path().join("models");
    init_model(&models);
    let artifacts = dir.path().join("artifacts");
    let metrics = ["--metrics-listen", "127.0.0.1:0"];
    let _first = start_worker_with(&endpoint, "node-a", &models, &artifacts, &metrics);
    let mut jobs = client(&endpoint).await;
    let job = submit(&mut jobs, long_spec("a long pan over a harbour", 9)).await;
    watch_until(
        &mut jobs,
        &job.id,
        "the job runs a few steps on node-a",
        |j| j.state() == pb::JobState::Running && j.node == "node-a" && j.step >= 2,
    )
    .await;
    let (_second, second_metrics) =
        start_worker_with(&endpoint, "node-b", &models, &artifacts, &metrics);

    node_a["spec"]["unschedulable"] = json!(true);
    node_a["metadata"]["resourceVersion"] = json!("101");
    set_node.send(node_a).expect("the fake API server watches");

    let (done, _) = watch_to_end(&mut jobs, &job.id, 300).await;
    assert_eq!(done.state(), pb::JobState::Completed, "{done:?}");
    assert_eq!(done.node, "node-b", "{done:?}");
    assert_eq!(done.requeues, 1, "one trip back to the queue: {done:?}");
    assert_resumed_one_checkpoint(second_metrics.as_deref());
    let (ok, out, err) = cli(&["node", "list", "--scheduler", &endpoint]);
    assert!(ok, "{err}");
    assert!(
        out.lines()
            .any(|l| l.starts_with("node-a") && l.contains("cordoned")),
        "{out}"
    );
}

#[test]
fn kubernetes_on_without_a_cluster_is_a_clear_error() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("scheduler").to_string_lossy().to_string();
    let missing = dir
        .path()
        .join("no-such-kubeconfig")
        .to_string_lossy()
        .to_string();
    let out = std::process::Command::new(BIN)
        .args([
            "scheduler",
            "--data-dir",
            &data,
            "--listen",
            "127.0.0.1:0",
            "--kubernetes",
            "on",
        ])
        .env("KUBECONFIG", &missing)
        .env_remove("KUBERNETES_SERVICE_HOST")
        .output()
        .expect("run genfleet");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "must not start: {err}");
    assert!(
        err.contains("Kubernetes") && err.contains("--kubernetes off"),
        "{err}"
    );

    let (ok, _, err) = cli(&["scheduler", "--kubernetes", "maybe"]);
    assert!(!ok && err.contains("auto, on, off"), "{err}");
}
