//! A scheduler that listens off loopback says, loudly and per listener
//! (gRPC, REST API, metrics), what anyone who reaches it could do: an open
//! cluster that everyone administers, one without TLS, metrics without a
//! credential. One with keys and a cluster secret is not called open.

use crate::common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::BIN;

/// The scheduler's log lines until every one of `expected` has appeared
/// (each a set of fragments one line must hold), then it is stopped.
fn log_until(args: &[&str], expected: &[&[&str]]) -> Vec<String> {
    let mut child = Command::new(BIN)
        .args(args)
        .env("GENFLEET_KUBERNETES", "off")
        .env("RUST_LOG", "warn")
        .env("NO_COLOR", "1")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start the scheduler");
    let stderr = child.stderr.take().expect("stderr is piped");
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let mut lines = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    let seen = |lines: &[String], fragments: &[&str]| {
        lines
            .iter()
            .any(|l| fragments.iter().all(|f| l.contains(f)))
    };
    while !expected.iter().all(|e| seen(&lines, e)) {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(line) => lines.push(line),
            Err(_) => {
                let _ = child.kill();
                let missing: Vec<_> = expected.iter().filter(|e| !seen(&lines, e)).collect();
                panic!(
                    "the scheduler never logged {missing:?}; it logged:\n{}",
                    lines.join("\n")
                );
            }
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    lines
}

#[test]
fn every_listener_off_loopback_is_called_out() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("scheduler").to_string_lossy().to_string();
    let artifacts = dir.path().join("artifacts").to_string_lossy().to_string();
    let listeners = [
        "--listen",
        "0.0.0.0:0",
        "--api-listen",
        "0.0.0.0:0",
        "--metrics-listen",
        "0.0.0.0:0",
        "--artifacts",
        &artifacts,
    ];
    let mut open = vec!["scheduler", "--data-dir", &data];
    open.extend_from_slice(&listeners);
    let lines = log_until(
        &open,
        &[
            &["OPEN CLUSTER", "REST API"],
            &["OPEN CLUSTER", "gRPC"],
            &["UNAUTHENTICATED METRICS"],
            &["NO TLS", "gRPC"],
        ],
    );
    assert!(
        lines
            .iter()
            .any(|l| l.contains("NO TLS") && l.contains("REST API")),
        "{lines:?}"
    );

    // With keys and a cluster secret: no longer open, still in the clear.
    let secrets = dir.path().join("secrets");
    let (ok, _, err) = common::cli(&["secrets", "init", "--dir", &secrets.to_string_lossy()]);
    assert!(ok, "{err}");
    let admin = dir.path().join("admin-key");
    std::fs::write(&admin, "k".repeat(40)).expect("admin key");
    let (admin, secret) = (
        admin.to_string_lossy().to_string(),
        secrets.join("cluster-secret").to_string_lossy().to_string(),
    );
    let data = dir.path().join("keyed").to_string_lossy().to_string();
    let mut keyed = vec![
        "scheduler",
        "--data-dir",
        &data,
        "--admin-key-file",
        &admin,
        "--cluster-secret-file",
        &secret,
    ];
    keyed.extend_from_slice(&listeners);
    let lines = log_until(&keyed, &[&["NO TLS", "REST API"], &["NO TLS", "gRPC"]]);
    assert!(
        !lines
            .iter()
            .any(|l| l.contains("OPEN CLUSTER") || l.contains("NO API KEYS")),
        "a keyed scheduler was called open: {lines:?}"
    );
}
