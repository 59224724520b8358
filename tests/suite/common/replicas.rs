//! Scheduler replicas as separate processes on loopback ports, for tests
//! and benchmarks of the replicated scheduler.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use genfleet_proto as pb;
use pb::cluster_service_client::ClusterServiceClient;
use pb::job_service_client::JobServiceClient;
use tonic::transport::Channel;

use super::{client, start_scheduler, within, Proc};

/// A port that was free a moment ago, for a process that must come back on
/// the same port after a restart. It is taken below the kernel's ephemeral
/// range, so outgoing connections never hold it as their local port while
/// the process is down.
pub fn free_port() -> u16 {
    use rand::Rng;
    let mut rng = rand::rng();
    for _ in 0..1000 {
        let port = rng.random_range(20_000..32_000);
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no free port between 20000 and 32000")
}

pub struct Replicas {
    /// Where their data lives.
    pub dir: tempfile::TempDir,
    pub ports: BTreeMap<u64, u16>,
    procs: BTreeMap<u64, Proc>,
    /// `http://.../metrics` of replicas started with `--metrics-listen`.
    pub metrics: BTreeMap<u64, String>,
    extra: Vec<String>,
}

impl Replicas {
    pub fn new(n: u64, extra: &[&str]) -> Replicas {
        let mut r = Replicas {
            dir: tempfile::tempdir().expect("tempdir"),
            ports: (1..=n).map(|id| (id, free_port())).collect(),
            procs: BTreeMap::new(),
            metrics: BTreeMap::new(),
            extra: extra.iter().map(|s| s.to_string()).collect(),
        };
        for id in 1..=n {
            r.start(id, false);
        }
        r
    }

    pub fn endpoint(&self, id: u64) -> String {
        format!("http://127.0.0.1:{}", self.ports[&id])
    }

    /// `id=address` of the cluster's first replicas (and of `joining`).
    pub fn peers(&self, joining: Option<u64>) -> String {
        self.ports
            .keys()
            .filter(|id| **id <= 3 || Some(**id) == joining)
            .map(|id| format!("{id}={}", self.endpoint(*id)))
            .collect::<Vec<_>>()
            .join(",")
    }

    pub fn start(&mut self, id: u64, join: bool) {
        self.ports.entry(id).or_insert_with(free_port);
        let data = self.dir.path().join(format!("replica-{id}"));
        let listen = format!("127.0.0.1:{}", self.ports[&id]);
        let id_arg = id.to_string();
        let peers = self.peers(join.then_some(id));
        let mut args: Vec<&str> = vec!["--id", &id_arg, "--peers", &peers];
        if join {
            args.push("--join");
        }
        let extra: Vec<&str> = self.extra.iter().map(String::as_str).collect();
        args.extend(extra);
        let started = start_scheduler(&data, &listen, &args);
        if let Some(url) = started.metrics {
            self.metrics.insert(id, url);
        }
        self.procs.insert(id, started.proc);
    }

    /// The process id of replica `id`, if it runs.
    #[allow(dead_code)] // benches/failover.rs
    pub fn pid(&self, id: u64) -> Option<u32> {
        self.procs.get(&id).map(|p| p.pid())
    }

    /// Stops replica `id` as Kubernetes does (SIGTERM) and waits for it to
    /// exit, at most `secs`.
    pub fn terminate(&mut self, id: u64, secs: u64) -> Option<std::process::ExitStatus> {
        self.procs.remove(&id).map(|mut p| p.terminate(secs))
    }

    pub fn kill(&mut self, id: u64) {
        if let Some(mut p) = self.procs.remove(&id) {
            p.kill();
        }
    }

    pub async fn status(&self, id: u64) -> Option<pb::ReplicaStatus> {
        let channel = Channel::from_shared(self.endpoint(id))
            .ok()?
            .connect()
            .await
            .ok()?;
        let reply = ClusterServiceClient::new(channel)
            .status(pb::ReplicaStatusRequest {})
            .await
            .ok()?;
        Some(reply.into_inner())
    }

    /// Waits until `ids` all report the same applied index and state hash,
    /// and one of them leads; returns the statuses.
    pub async fn converged(&self, ids: &[u64]) -> BTreeMap<u64, pb::ReplicaStatus> {
        within(60, "the replicas converge on one state", async {
            loop {
                let mut statuses = BTreeMap::new();
                for id in ids {
                    if let Some(s) = self.status(*id).await {
                        statuses.insert(*id, s);
                    }
                }
                let hashes: BTreeSet<&String> = statuses.values().map(|s| &s.state_hash).collect();
                let applied: BTreeSet<u64> = statuses.values().map(|s| s.applied).collect();
                let leads = statuses.values().any(|s| s.role == "leader");
                if statuses.len() == ids.len() && hashes.len() == 1 && applied.len() == 1 && leads {
                    return statuses;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        })
        .await
    }
}

impl Replicas {
    /// The replica that says it leads, if one answers so.
    pub async fn leader(&self) -> Option<u64> {
        for id in self.ports.keys() {
            if self.procs.contains_key(id) {
                if let Some(s) = self.status(*id).await {
                    if s.role == "leader" {
                        return Some(s.id);
                    }
                }
            }
        }
        None
    }

    /// A job client of the replica that leads now; fails the test if none does.
    pub async fn leader_client(&self) -> JobServiceClient<Channel> {
        let leader = self.leader().await.expect("a leader");
        client(&self.endpoint(leader)).await
    }

    /// Ids of the replicas running now.
    #[allow(dead_code)] // benches/failover.rs
    pub fn running(&self) -> Vec<u64> {
        self.procs.keys().copied().collect()
    }
}
