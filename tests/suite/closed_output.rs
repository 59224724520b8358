//! Output nobody reads. A worker whose stderr was closed keeps running
//! jobs; a log line that cannot be written is dropped. (Before,
//! tracing-subscriber reported the failed write with eprintln!, which
//! panicked on the broken pipe and took the worker down.) `genfleet up`
//! whose terminal went away keeps serving, and a client command piped into
//! a reader that stopped (`genfleet plan | head`) ends quietly. (Before,
//! println! panicked on the broken pipe: CI saw `up` die that way.)

use crate::common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use common::replicas::free_port;
use common::*;
use genfleet_proto as pb;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_whose_log_nobody_reads_keeps_working() {
    let dir = tempfile::tempdir().expect("tempdir");
    let scheduler = start_scheduler(&dir.path().join("scheduler"), "127.0.0.1:0", &[]);
    let models = dir.path().join("models");
    init_model(&models);
    let mut worker = Command::new(BIN)
        .args([
            "worker",
            "--scheduler",
            &scheduler.endpoint,
            "--node",
            "mute",
            "--models",
        ])
        .arg(&models)
        .arg("--artifacts")
        .arg(dir.path().join("artifacts"))
        .env("GENFLEET_KUBERNETES", "off")
        // Every session and job logs at info: each line meets the closed pipe.
        .env("RUST_LOG", "info")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start the worker");
    drop(worker.stderr.take());
    let stdout = worker.stdout.take().expect("stdout");
    let mut lines = BufReader::new(stdout).lines();
    assert!(
        lines.any(|l| l.is_ok_and(|l| l.contains("genfleet worker ready"))),
        "the worker did not start"
    );
    std::thread::spawn(move || for _ in lines {});

    let mut jobs = client(&scheduler.endpoint).await;
    let job = submit(&mut jobs, small_spec("a quiet harbour", 5)).await;
    let (job, _) = watch_to_end(&mut jobs, &job.id, 120).await;
    assert_eq!(job.state(), pb::JobState::Completed, "{}", job.message);
    assert!(
        worker.try_wait().expect("wait").is_none(),
        "the worker exited"
    );
    let _ = worker.kill();
    let _ = worker.wait();
}

/// A pipe whose reader is already gone: every write to it fails with
/// EPIPE, as it does under `| head` once head has exited.
fn closed_pipe() -> Stdio {
    let (reader, writer) = std::io::pipe().expect("pipe");
    drop(reader);
    Stdio::from(writer)
}

#[test]
fn up_whose_terminal_went_away_keeps_serving_and_stops_cleanly() {
    let dir = tempfile::tempdir().expect("tempdir");
    let port = free_port();
    let endpoint = format!("http://127.0.0.1:{port}");
    let mut up = Command::new(BIN);
    up.args(["up", "--listen", &format!("127.0.0.1:{port}")])
        .arg("--data-dir")
        .arg(dir.path().join("data"))
        .env("XDG_CONFIG_HOME", dir.path().join("config"))
        .env("GENFLEET_KUBERNETES", "off")
        .env("RUST_LOG", "info")
        .stdout(closed_pipe())
        .stderr(Stdio::piped());
    let mut child = up.spawn().expect("start genfleet up");
    let stderr = child.stderr.take().expect("stderr");
    let mut up = Proc {
        child,
        name: "up".into(),
    };
    let (tx, log) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    // The worker's session opens as the cluster becomes ready; the banner
    // (the first write to the closed stdout) follows it.
    let mut seen = Vec::new();
    while !seen
        .iter()
        .any(|l: &String| l.contains("session with the scheduler open"))
    {
        match log.recv_timeout(Duration::from_secs(60)) {
            Ok(line) => seen.push(line),
            Err(_) => panic!("genfleet up did not become ready: {seen:#?}"),
        }
    }

    let config = dir.path().join("config");
    let submitted = Command::new(BIN)
        .args(["submit", "--scheduler", &endpoint, "--prompt", "a kite"])
        .args([
            "--steps", "2", "--frames", "2", "--size", "32x32", "--watch",
        ])
        .env("XDG_CONFIG_HOME", &config)
        .env_remove("GENFLEET_API_KEY")
        .output()
        .expect("run genfleet submit");
    assert!(
        submitted.status.success(),
        "a job on the cluster whose terminal went away: {}",
        String::from_utf8_lossy(&submitted.stderr)
    );

    let status = up.terminate(60);
    seen.extend(log.try_iter());
    assert!(
        status.success(),
        "genfleet up exited with {status}: {seen:#?}"
    );
    assert!(
        !seen.iter().any(|l| l.contains("panicked")),
        "genfleet up panicked: {seen:#?}"
    );
}

#[test]
fn a_client_command_whose_reader_stopped_ends_quietly() {
    let examples = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/examples/plan");
    let out = Command::new(BIN)
        .arg("plan")
        .arg("--fleet")
        .arg(examples.join("fleet.yaml"))
        .arg("--queues")
        .arg(examples.join("queues.yaml"))
        .arg("--trace")
        .arg(examples.join("trace.csv"))
        .stdout(closed_pipe())
        .output()
        .expect("run genfleet plan");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert!(out.status.success(), "exit {}: {stderr}", out.status);
}
