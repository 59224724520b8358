//! Workers writing to an S3-compatible store: a real S3 server on loopback
//! (s3s-fs, which checks request signatures and keeps objects as files),
//! a scheduler and a worker process configured as an operator would
//! (--artifacts s3://bucket/prefix and the AWS_* environment). The job's
//! video, thumbnail and spritesheet land in the bucket and decode; a store
//! the worker cannot use stops it at start with the reason.

use crate::common;

use std::path::Path;

use common::*;
use genfleet_proto::JobState;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto::Builder as ConnBuilder;
use s3s::auth::SimpleAuth;
use s3s::service::S3ServiceBuilder;

const ACCESS_KEY: &str = "genfleet-test";
const SECRET_KEY: &str = "not-a-real-secret-0123456789";
const BUCKET: &str = "videos";

/// Serves the S3 API over the directory `root` (a bucket is a folder of
/// it) on a free loopback port; returns the endpoint URL.
async fn start_s3(root: &Path) -> String {
    let fs = s3s_fs::FileSystem::new(root).expect("s3s-fs root");
    let mut builder = S3ServiceBuilder::new(fs);
    builder.set_auth(SimpleAuth::from_single(ACCESS_KEY, SECRET_KEY));
    let service = builder.build().into_shared();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind S3");
    let addr = listener.local_addr().expect("S3 address");
    tokio::spawn(async move {
        while let Ok((socket, _)) = listener.accept().await {
            let service = service.clone();
            tokio::spawn(async move {
                let conn = ConnBuilder::new(TokioExecutor::new());
                let _ = conn.serve_connection(TokioIo::new(socket), service).await;
            });
        }
    });
    format!("http://{addr}")
}

/// An S3 server keeping its objects under `<dir>/s3`, with [`BUCKET`] in
/// it; returns that root and the endpoint.
async fn start_s3_with_bucket(dir: &Path) -> (std::path::PathBuf, String) {
    let root = dir.join("s3");
    std::fs::create_dir_all(root.join(BUCKET)).expect("bucket");
    let endpoint = start_s3(&root).await;
    (root, endpoint)
}

fn s3_env<'a>(endpoint: &'a str, secret: &'a str) -> [(&'a str, &'a str); 5] {
    [
        ("AWS_ENDPOINT_URL", endpoint),
        ("AWS_ACCESS_KEY_ID", ACCESS_KEY),
        ("AWS_SECRET_ACCESS_KEY", secret),
        ("AWS_REGION", "us-east-1"),
        ("AWS_ALLOW_HTTP", "true"),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_writes_a_jobs_files_to_an_s3_bucket() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (s3_root, endpoint) = start_s3_with_bucket(dir.path()).await;
    let models = dir.path().join("models");
    init_model(&models);
    let scheduler = start_scheduler(&dir.path().join("scheduler"), "127.0.0.1:0", &[]);
    let models_arg = models.to_string_lossy().to_string();
    let location = format!("s3://{BUCKET}/genfleet/outputs");
    let args = [
        "worker",
        "--scheduler",
        &scheduler.endpoint,
        "--node",
        "node-s3",
        "--models",
        &models_arg,
        "--artifacts",
        &location,
    ];
    let (_worker, ready) = spawn_ready_with_env(
        "worker",
        &args,
        &s3_env(&endpoint, SECRET_KEY),
        "genfleet worker ready",
    );
    assert!(ready.contains(&format!("artifacts={location}")), "{ready}");

    let mut client = client(&scheduler.endpoint).await;
    let spec = small_spec("a paper boat on a river", 3);
    let submitted = submit(&mut client, spec.clone()).await;
    let (job, _) = watch_to_end(&mut client, &submitted.id, 120).await;
    assert_eq!(job.state(), JobState::Completed, "message: {}", job.message);

    // Every file is an object under the prefix, kept by the S3 server as a
    // file at <root>/<bucket>/<key>: read it there, independently of the worker.
    let object = |kind: &str| {
        let artifact = job
            .artifacts
            .iter()
            .find(|a| a.kind == kind)
            .unwrap_or_else(|| panic!("no {kind} artifact: {:?}", job.artifacts));
        let key = artifact
            .uri
            .strip_prefix(&format!("s3://{BUCKET}/"))
            .unwrap_or_else(|| panic!("{} is not in the bucket", artifact.uri));
        assert!(
            key.starts_with(&format!("genfleet/outputs/{}/", job.id)),
            "{key}"
        );
        let path = s3_root.join(BUCKET).join(key);
        let size = std::fs::metadata(&path)
            .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
            .len();
        assert_eq!(size, artifact.size_bytes, "{kind}");
        path
    };
    check_mp4(
        &object("video"),
        spec.frames,
        spec.width,
        spec.height,
        spec.fps,
    );
    check_png(&object("thumbnail"), spec.width, spec.height);
    check_png(&object("spritesheet"), 4 * spec.width, 3 * spec.height);
}

/// Runs a worker that should refuse to start; returns what it printed.
fn refused_worker(dir: &Path, location: &str, env: &[(&str, &str)]) -> String {
    let models = dir.join("models");
    init_model(&models);
    let mut command = std::process::Command::new(BIN);
    without_aws_settings(&mut command);
    let child = command
        .args(["worker", "--scheduler", "http://127.0.0.1:9", "--node", "n"])
        .arg("--models")
        .arg(&models)
        .args(["--artifacts", location])
        .envs(env.iter().copied())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("run worker");
    // A worker that accepted the store would run on: bound the wait.
    let pid = child.id().to_string();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || tx.send(child.wait_with_output()));
    let output = match rx.recv_timeout(std::time::Duration::from_secs(60)) {
        Ok(output) => output.expect("wait for worker"),
        Err(_) => {
            let _ = std::process::Command::new("kill")
                .args(["-KILL", &pid])
                .status();
            panic!("the worker was still running 60 s after start with {location}");
        }
    };
    let status = output.status;
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert!(!status.success(), "the worker started with {location}");
    stderr
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_the_worker_cannot_use_stops_it_at_start_with_the_reason() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (_, endpoint) = start_s3_with_bucket(dir.path()).await;
    let location = format!("s3://{BUCKET}/out");

    let wrong_secret = refused_worker(dir.path(), &location, &s3_env(&endpoint, "wrong"));
    assert!(
        wrong_secret.contains(&format!("artifact store {location} does not take writes"))
            && wrong_secret.contains("SignatureDoesNotMatch"),
        "{wrong_secret}"
    );

    // (A missing bucket is not tried: s3s-fs creates one on the first
    // write, where S3 and MinIO answer NoSuchBucket.)
    let nobody = "http://127.0.0.1:9";
    let unreachable = refused_worker(dir.path(), &location, &s3_env(nobody, SECRET_KEY));
    assert!(
        unreachable.contains(&format!("artifact store {location} does not take writes"))
            && unreachable.contains("127.0.0.1:9"),
        "{unreachable}"
    );

    let no_bucket = refused_worker(dir.path(), "s3://", &s3_env(&endpoint, SECRET_KEY));
    assert!(no_bucket.contains("no bucket"), "{no_bucket}");
}
