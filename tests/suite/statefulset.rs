//! Scheduler replicas that find each other as the pods of a StatefulSet do:
//! raft ids from the pod names, peers from the host template (distinct
//! loopback addresses stand in for the headless Service's DNS names), a
//! `/readyz` that turns 200 only once a leader's entry is applied, and the
//! scale-up and scale-down of deploy/SCALING.md with the CLI.

use crate::common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::replicas::free_port;
use common::*;

const STATEFULSET: &str = "genfleet-scheduler";
/// Replica `ordinal + 1` listens on 127.0.0.<ordinal + 1>, as the template says.
const HOST_TEMPLATE: &str = "127.0.0.{id}";

/// Scheduler processes started as pods `genfleet-scheduler-<ordinal>`, all
/// on the same ports, each on its own loopback address.
struct Pods {
    dir: tempfile::TempDir,
    port: u16,
    metrics_port: u16,
    procs: BTreeMap<u64, Proc>,
}

impl Pods {
    fn new() -> Pods {
        Pods {
            dir: tempfile::tempdir().expect("tempdir"),
            port: port_free_on_every_host(),
            metrics_port: port_free_on_every_host(),
            procs: BTreeMap::new(),
        }
    }

    fn host(ordinal: u64) -> String {
        format!("127.0.0.{}", ordinal + 1)
    }

    fn endpoint(&self, ordinal: u64) -> String {
        format!("http://{}:{}", Self::host(ordinal), self.port)
    }

    fn readyz(&self, ordinal: u64) -> String {
        format!(
            "http://{}:{}/readyz",
            Self::host(ordinal),
            self.metrics_port
        )
    }

    /// Starts pod `ordinal` with the environment the StatefulSet gives it.
    fn start(&mut self, ordinal: u64) {
        let pod = format!("{STATEFULSET}-{ordinal}");
        let data = self.dir.path().join(&pod).to_string_lossy().to_string();
        let listen = format!("{}:{}", Self::host(ordinal), self.port);
        let metrics = format!("{}:{}", Self::host(ordinal), self.metrics_port);
        let args = [
            "scheduler",
            "--data-dir",
            &data,
            "--listen",
            &listen,
            "--metrics-listen",
            &metrics,
            "--raft-tick",
            "50ms",
            "--peer-host-template",
            HOST_TEMPLATE,
        ];
        let env = [
            ("POD_NAME", pod.as_str()),
            ("POD_NAMESPACE", "genfleet"),
            ("GENFLEET_PEER_SERVICE", "genfleet-scheduler-peers"),
            ("GENFLEET_INITIAL_REPLICAS", "3"),
            // Discovery alone: never the developer's own Kubernetes cluster.
            ("GENFLEET_KUBERNETES", "off"),
        ];
        let (proc, line) = spawn_ready_with_env(&pod, &args, &env, "ready: grpc=");
        let id = ordinal + 1;
        assert!(
            line.contains(&format!("genfleet scheduler {id} ready")),
            "{pod} should be raft replica {id} (ordinal + 1): {line}"
        );
        self.procs.insert(ordinal, proc);
    }

    fn kill(&mut self, ordinal: u64) {
        if let Some(mut proc) = self.procs.remove(&ordinal) {
            proc.kill();
        }
    }

    /// Polls pod `ordinal`'s /readyz until it answers `status` with a body
    /// that starts with `body`.
    async fn await_readyz(&self, ordinal: u64, status: u16, body: &str, why: &str) {
        let url = self.readyz(ordinal);
        let mut last = (0, String::new());
        let seen = within_or_none(60, async {
            loop {
                last = http_response(&url);
                if last.0 == status && last.1.starts_with(body) {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        })
        .await;
        assert!(
            seen.is_some(),
            "GET {url} should answer {status} {body:?} ({why}); it answers {} {:?}",
            last.0,
            last.1
        );
    }
}

/// Awaits `f` for at most `secs`; None when it took longer.
async fn within_or_none<T>(secs: u64, f: impl std::future::Future<Output = T>) -> Option<T> {
    tokio::time::timeout(Duration::from_secs(secs), f)
        .await
        .ok()
}

/// A port free on 127.0.0.1 to 127.0.0.4, where the pods listen.
fn port_free_on_every_host() -> u16 {
    for _ in 0..100 {
        let port = free_port();
        if (0..4).all(|o| std::net::TcpListener::bind((Pods::host(o).as_str(), port)).is_ok()) {
            return port;
        }
    }
    panic!("no port free on 127.0.0.1 to 127.0.0.4")
}

/// One row of `genfleet cluster status`.
#[derive(Debug)]
struct Row {
    id: u64,
    address: String,
    role: String,
    applied: u64,
}

/// `genfleet cluster status` asked of `endpoint`, parsed; None while it fails.
fn cluster_status(endpoint: &str) -> Option<Vec<Row>> {
    let (ok, out, _) = cli(&["cluster", "status", "--scheduler", endpoint]);
    if !ok {
        return None;
    }
    let rows = out.lines().skip(1).map(|line| {
        let words: Vec<&str> = line.split_whitespace().collect();
        Some(Row {
            id: words.first()?.parse().ok()?,
            address: words.get(1)?.to_string(),
            role: words.get(2)?.to_string(),
            applied: words.get(7)?.parse().ok()?,
        })
    });
    rows.collect()
}

/// Polls `genfleet cluster status` until every one of `ids` answers, one
/// leads and all have applied the same index; returns the rows.
async fn await_leader(pods: &Pods, ordinal: u64, ids: &[u64]) -> Vec<Row> {
    let endpoint = pods.endpoint(ordinal);
    let mut last = None;
    let done = within_or_none(60, async {
        loop {
            if let Some(rows) = cluster_status(&endpoint) {
                let listed: Vec<u64> = rows.iter().map(|r| r.id).collect();
                let leaders = rows.iter().filter(|r| r.role == "leader").count();
                let caught_up = rows.windows(2).all(|w| w[0].applied == w[1].applied);
                if listed == ids && leaders == 1 && caught_up {
                    return rows;
                }
                last = Some(rows);
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await;
    done.unwrap_or_else(|| {
        panic!("genfleet cluster status should list replicas {ids:?} with one leader; last seen: {last:#?}")
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pods_find_each_other_elect_a_leader_turn_ready_and_scale() {
    let mut pods = Pods::new();

    // One pod of three cannot elect a leader: running, not ready.
    pods.start(0);
    pods.await_readyz(
        0,
        503,
        "no leader known\n",
        "a lone replica of a 3-replica cluster",
    )
    .await;

    pods.start(1);
    pods.start(2);
    let rows = await_leader(&pods, 0, &[1, 2, 3]).await;
    for row in &rows {
        assert_eq!(
            row.address,
            pods.endpoint(row.id - 1),
            "replica {}'s address comes from the host template",
            row.id
        );
    }
    for ordinal in 0..3 {
        pods.await_readyz(
            ordinal,
            200,
            "ready\n",
            "a leader is known and its entry applied",
        )
        .await;
    }

    // Scaling up: pod 3 starts joining, and is not ready until added.
    pods.start(3);
    pods.await_readyz(
        3,
        503,
        "no leader known\n",
        "a pod that waits for add-replica",
    )
    .await;
    let address = pods.endpoint(3);
    let (ok, out, err) = cli(&[
        "cluster",
        "add-replica",
        "--id",
        "4",
        "--address",
        &address,
        "--scheduler",
        &pods.endpoint(1),
    ]);
    assert!(
        ok,
        "add-replica 4 should succeed once pod 3 joins: {out}{err}"
    );
    await_leader(&pods, 0, &[1, 2, 3, 4]).await;
    pods.await_readyz(3, 200, "ready\n", "an added replica that caught up")
        .await;

    // Scaling down: remove the replica first, then its pod.
    let (ok, out, err) = cli(&[
        "cluster",
        "remove-replica",
        "4",
        "--scheduler",
        &pods.endpoint(0),
    ]);
    assert!(ok, "remove-replica 4 should succeed: {out}{err}");
    pods.await_readyz(3, 503, "", "a removed replica").await;
    pods.kill(3);
    await_leader(&pods, 0, &[1, 2, 3]).await;

    // A pod restarted on its volume resumes from its log as the same replica.
    pods.kill(0);
    pods.start(0);
    await_leader(&pods, 1, &[1, 2, 3]).await;
    pods.await_readyz(0, 200, "ready\n", "a restarted replica caught up")
        .await;
}

#[test]
fn bad_discovery_settings_stop_the_scheduler_with_what_to_change() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data").to_string_lossy().to_string();
    let cases: [(&str, &[&str], &str); 4] = [
        (
            "--id next to --peer-service",
            &["--pod-name", "genfleet-scheduler-0", "--id", "2"],
            "drop --id,",
        ),
        (
            "--peers next to --peer-service",
            &[
                "--pod-name",
                "genfleet-scheduler-0",
                "--peers",
                "1=http://a:7070",
            ],
            "drop --peers,",
        ),
        (
            "a pod name without an ordinal",
            &["--pod-name", "scheduler"],
            "pod name \"scheduler\" does not end in -<ordinal>",
        ),
        (
            "no initial replicas",
            &[
                "--pod-name",
                "genfleet-scheduler-0",
                "--initial-replicas",
                "0",
            ],
            "GENFLEET_INITIAL_REPLICAS",
        ),
    ];
    for (scenario, extra, hint) in cases {
        let mut args = vec![
            "scheduler",
            "--data-dir",
            &data,
            // Port 0 is refused too, after every check above: a start
            // that gets past them fails instead of serving.
            "--listen",
            "127.0.0.1:0",
            "--peer-service",
            "genfleet-scheduler-peers",
            "--pod-namespace",
            "genfleet",
        ];
        args.extend_from_slice(extra);
        let (ok, out, err) = cli(&args);
        assert!(
            !ok,
            "{scenario}: the scheduler should refuse to start: {out}"
        );
        assert!(
            err.contains(hint),
            "{scenario}: {err:?} should say {hint:?}"
        );
    }
    // Outside a pod nothing says the namespace: refused rather than guessed.
    if !std::path::Path::new("/var/run/secrets/kubernetes.io/serviceaccount/namespace").exists() {
        let out = std::process::Command::new(BIN)
            .args(["scheduler", "--data-dir", &data, "--listen", "127.0.0.1:0"])
            .args([
                "--peer-service",
                "genfleet-scheduler-peers",
                "--pod-name",
                "genfleet-scheduler-0",
            ])
            .env_remove("POD_NAMESPACE")
            .output()
            .expect("run genfleet");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            !out.status.success() && err.contains("POD_NAMESPACE"),
            "{err}"
        );
    }
    assert!(
        !dir.path().join("data").exists(),
        "a refused start leaves no data directory"
    );
}
