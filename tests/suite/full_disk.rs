//! A full disk. The processes run under a file size limit (`ulimit -f`,
//! with SIGXFSZ ignored), so a write past it fails as one on a full
//! filesystem does, without needing a real one:
//!
//! - a scheduler whose raft log cannot grow refuses new work with an error
//!   that says why, exits, and once restarted with room has every job it
//!   acknowledged and takes new ones;
//! - a worker whose artifact store refuses a file fails that job with the
//!   store's error and goes on running the others.

#![cfg(unix)]

use crate::common;

use std::io::{BufRead, BufReader, Read};
use std::process::{Command, Stdio};
use std::time::Duration;

use common::*;
use genfleet_proto as pb;

/// Starts `genfleet <args>` with every file it writes capped at `kib` KiB;
/// returns the process, the line containing `ready`, and what it writes
/// to stderr (read as it comes, so the process never blocks on it).
fn spawn_capped(
    kib: u64,
    args: &[&str],
    ready: &str,
) -> (std::process::Child, String, std::thread::JoinHandle<String>) {
    let mut child = Command::new("sh")
        .arg("-c")
        .arg(format!("trap '' XFSZ; ulimit -f {kib}; exec \"$0\" \"$@\""))
        .arg(BIN)
        .args(args)
        .env("GENFLEET_KUBERNETES", "off")
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start genfleet under sh");
    let stdout = child.stdout.take().expect("stdout");
    let mut stderr = child.stderr.take().expect("stderr");
    let stderr = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = stderr.read_to_string(&mut text);
        text
    });
    let mut lines = BufReader::new(stdout).lines();
    let line = loop {
        match lines.next() {
            Some(Ok(line)) if line.contains(ready) => break line,
            Some(Ok(_)) => {}
            _ => panic!("genfleet {args:?} exited before {ready:?}"),
        }
    };
    // Keep draining stdout so the process never blocks on it.
    std::thread::spawn(move || for _ in lines {});
    (child, line, stderr)
}

/// Waits for `child` to exit, at most `secs`; its exit status.
fn wait_exit(child: &mut std::process::Child, secs: u64) -> std::process::ExitStatus {
    let (tx, rx) = std::sync::mpsc::channel();
    let pid = child.id().to_string();
    std::thread::scope(|scope| {
        let waiting = &mut *child;
        scope.spawn(move || {
            let _ = tx.send(waiting.wait());
        });
        match rx.recv_timeout(Duration::from_secs(secs)) {
            Ok(status) => status.expect("wait"),
            Err(_) => {
                // Still running: kill it so the waiting thread returns.
                let _ = Command::new("kill").args(["-KILL", &pid]).status();
                panic!("the process did not exit within {secs}s")
            }
        }
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scheduler_that_cannot_write_its_log_stops_cleanly_and_carries_on_with_room() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("scheduler");
    let data_arg = data.to_string_lossy().to_string();
    // raft-engine's first 2 MiB chunk of log fits; growing it does not.
    let (mut child, line, stderr) = spawn_capped(
        2049,
        &[
            "scheduler",
            "--data-dir",
            &data_arg,
            "--listen",
            "127.0.0.1:0",
        ],
        "ready: grpc=",
    );
    let endpoint = line
        .split_whitespace()
        .find_map(|w| w.strip_prefix("grpc="))
        .expect("grpc=")
        .to_string();
    let mut jobs = client(&endpoint).await;
    // Big prompts fill the log quickly.
    let prompt = "a very long prompt ".repeat(100);
    let mut acknowledged = Vec::new();
    let refusal = loop {
        assert!(acknowledged.len() < 5000, "the log never filled");
        let spec = small_spec(&prompt, acknowledged.len() as u64);
        let request = pb::SubmitRequest {
            spec: Some(spec),
            request_id: format!("r-{}", acknowledged.len()),
        };
        match jobs.submit(request).await {
            Ok(reply) => acknowledged.push(reply.into_inner().job.expect("a job").id),
            Err(status) => break status,
        }
    };
    assert!(
        acknowledged.len() > 100,
        "only {} submits fit",
        acknowledged.len()
    );
    assert_eq!(refusal.code(), tonic::Code::Unavailable, "{refusal:?}");
    assert!(
        refusal.message().contains("raft log"),
        "{}",
        refusal.message()
    );
    let status = wait_exit(&mut child, 30);
    assert!(!status.success(), "a halted replica exits with an error");
    let err = stderr.join().expect("stderr");
    assert!(err.contains("restart this replica"), "{err}");

    // Room again: the same data directory, no limit.
    let scheduler = start_scheduler(&data, "127.0.0.1:0", &[]);
    let mut jobs = client(&scheduler.endpoint).await;
    let listed: std::collections::BTreeSet<String> =
        list(&mut jobs).await.into_iter().map(|j| j.id).collect();
    let lost: Vec<&String> = acknowledged
        .iter()
        .filter(|id| !listed.contains(*id))
        .collect();
    assert!(
        lost.is_empty(),
        "{} acknowledged jobs lost: {lost:?}",
        lost.len()
    );
    submit(&mut jobs, small_spec("after the disk was freed", 1)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_artifact_store_fails_only_the_job_that_did_not_fit() {
    let dir = tempfile::tempdir().expect("tempdir");
    let scheduler = start_scheduler(&dir.path().join("scheduler"), "127.0.0.1:0", &[]);
    let models = dir.path().join("models");
    init_model(&models);
    let models_arg = models.to_string_lossy().to_string();
    let artifacts = dir.path().join("artifacts").to_string_lossy().to_string();
    // Files of up to 12 KiB: a 64x48 job's spritesheet (about 20 KiB of
    // noise) does not fit, a one-frame 32x32 job's files do.
    let (mut worker, _, worker_log) = spawn_capped(
        12,
        &[
            "worker",
            "--scheduler",
            &scheduler.endpoint,
            "--node",
            "full",
            "--models",
            &models_arg,
            "--artifacts",
            &artifacts,
        ],
        "genfleet worker ready",
    );
    let mut jobs = client(&scheduler.endpoint).await;
    let big = submit(&mut jobs, small_spec("a harbour at night", 3)).await;
    let (big, _) = watch_to_end(&mut jobs, &big.id, 120).await;
    assert_eq!(big.state(), pb::JobState::Failed);
    assert!(big.message.contains("storing artifacts"), "{}", big.message);
    // The tenant is told what failed, not where this server keeps files.
    let store = std::fs::canonicalize(&artifacts).expect("the artifact folder");
    assert!(
        !big.message.contains(&*store.to_string_lossy()),
        "a server path reached the tenant: {}",
        big.message
    );
    let small = pb::JobSpec {
        frames: 1,
        width: 32,
        height: 32,
        ..small_spec("a single star", 4)
    };
    let small = submit(&mut jobs, small).await;
    let (small, _) = watch_to_end(&mut jobs, &small.id, 120).await;
    assert_eq!(small.state(), pb::JobState::Completed, "{}", small.message);
    let _ = worker.kill();
    let _ = worker.wait();
    let log = worker_log.join().expect("stderr");
    assert!(!log.contains("panicked"), "{log}");
}
