//! A server whose log nobody reads: a worker whose stderr was closed keeps
//! running jobs; a log line that cannot be written is dropped. (Before,
//! tracing-subscriber reported the failed write with eprintln!, which
//! panicked on the broken pipe and took the worker down.)

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

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
