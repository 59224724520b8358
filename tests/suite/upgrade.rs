//! Upgrades: a replica of this release reads the raft log and the snapshot
//! an older release wrote. Each `tests/fixtures/upgrade/NAME.tar.gz` is a
//! data directory made by that release (`make.sh` beside it says how):
//! a snapshot plus the entries after it, holding a queue, a tenant with a
//! key and jobs. This build starts on it, replays it, and must serve the
//! same state: the same state hash, every job, the tenant's key working.

use crate::common;
use crate::tenants::succeed;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

use common::{start_scheduler, within};

const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/upgrade");

/// `NAME.expected`: one `key value` per line.
fn expected(path: &Path) -> BTreeMap<String, String> {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    text.lines()
        .filter_map(|l| l.split_once(' '))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_replays_the_log_and_snapshot_of_every_older_release() {
    let mut releases: Vec<_> = std::fs::read_dir(FIXTURES)
        .expect("tests/fixtures/upgrade")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "expected"))
        .collect();
    releases.sort();
    assert!(!releases.is_empty(), "no older release to replay");
    for release in releases {
        let want = expected(&release);
        let name = release
            .file_stem()
            .map(|s| s.to_string_lossy().to_string())
            .unwrap_or_default();
        let dir = tempfile::tempdir().expect("tempdir");
        let archive = release.with_extension("tar.gz");
        let unpacked = Command::new("tar")
            .arg("-C")
            .arg(dir.path())
            .arg("-xzf")
            .arg(&archive)
            .status()
            .expect("run tar");
        assert!(unpacked.success(), "{}: tar failed", archive.display());
        let key_file = dir.path().join("admin.key");
        std::fs::write(&key_file, format!("{}\n", want["admin_key"])).expect("write the key");
        let key_file = key_file.to_string_lossy().to_string();
        let scheduler = start_scheduler(
            &dir.path().join("data"),
            "127.0.0.1:0",
            &["--admin-key-file", &key_file],
        );
        let ep = scheduler.endpoint.as_str();
        let config = dir.path();
        let admin = |args: &[&str]| {
            let mut v = args.to_vec();
            v.extend(["--scheduler", ep]);
            succeed(config, &want["admin_key"], &v)
        };

        // The replayed state is the one the old release served.
        let applied: u64 = want["applied"].parse().expect("applied");
        let status = within(60, "the replica replays the old log", async {
            loop {
                let out =
                    tokio::task::block_in_place(|| admin(&["cluster", "status", "-o", "json"]));
                let doc: serde_json::Value = serde_json::from_str(&out).expect("json");
                let replica = &doc["items"][0]["status"];
                // u64s are strings in JSON (proto3's mapping).
                let replayed = replica["applied"]
                    .as_str()
                    .and_then(|a| a.parse::<u64>().ok())
                    .is_some_and(|a| a >= applied);
                if replayed && replica["role"] == "leader" {
                    return replica.clone();
                }
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            }
        })
        .await;
        assert_eq!(
            status["state_hash"]
                .as_str()
                .or(status["stateHash"].as_str()),
            Some(want["state_hash"].as_str()),
            "{name}: the state after replay differs: {status}"
        );
        let jobs = tokio::task::block_in_place(|| admin(&["jobs"]));
        assert!(
            jobs.lines()
                .any(|l| l.contains(want["cancelled"].as_str()) && l.contains("cancelled")),
            "{name}: {jobs}"
        );
        let queues = tokio::task::block_in_place(|| admin(&["queue", "list"]));
        assert!(
            queues.lines().any(|l| l.starts_with("red")),
            "{name}: {queues}"
        );
        // The old release's tenant key works, and sees its 12 jobs.
        let alpha = want["alpha_key"].as_str();
        let seen = tokio::task::block_in_place(|| {
            succeed(config, alpha, &["jobs", "-o", "json", "--scheduler", ep])
        });
        let seen: serde_json::Value = serde_json::from_str(&seen).expect("json");
        let count = seen
            .as_array()
            .map(Vec::len)
            .or_else(|| seen["items"].as_array().map(Vec::len));
        assert_eq!(count, Some(12), "{name}: alpha's jobs: {seen}");
        // And it takes new work.
        tokio::task::block_in_place(|| admin(&["submit", "--prompt", "after the upgrade"]));
        drop(scheduler);
    }
}
