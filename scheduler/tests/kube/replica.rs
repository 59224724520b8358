//! A real raft replica (a cluster of one, its log in a temporary
//! directory) for the Kubernetes controllers to act through.

use std::time::Duration;

use genfleet_proto as pb;
use genfleet_scheduler::metrics::Metrics;
use genfleet_scheduler::raft::{self, Bootstrap, RaftHandle, RaftThread, ReplicaConfig, Transport};
use genfleet_scheduler::state::{Outcome, State};

struct NoPeers;

impl Transport for NoPeers {
    fn send(&mut self, _messages: Vec<::raft::eraftpb::Message>) {}
}

pub struct Replica {
    pub raft: RaftHandle,
    pub metrics: Metrics,
    thread: Option<RaftThread>,
    _dir: tempfile::TempDir,
}

impl Replica {
    pub async fn start() -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let config = ReplicaConfig {
            id: 1,
            dir: dir.path().join("replica-1"),
            bootstrap: Bootstrap::NewCluster([(1, "http://127.0.0.1:1".to_string())].into()),
            election_ticks: 10,
            heartbeat_ticks: 2,
            election_range: None,
            snapshot_every: 10_000,
            incarnation: 1,
        };
        let metrics = Metrics::new(1).expect("metrics");
        let (raft, thread) =
            raft::spawn(config, Duration::from_millis(10), metrics.clone(), |_| {
                Box::new(NoPeers)
            })
            .expect("replica starts");
        tokio::time::timeout(Duration::from_secs(20), raft.ready_leader())
            .await
            .expect("a replica alone elects itself within 20 s")
            .expect("leads");
        Self {
            raft,
            metrics,
            thread: Some(thread),
            _dir: dir,
        }
    }

    /// Applies `kind` through raft; the state machine must accept it.
    pub async fn apply(&self, kind: pb::command::Kind) -> Outcome {
        let what = format!("{kind:?}");
        let applied = self
            .raft
            .propose(pb::Command { kind: Some(kind) })
            .await
            .unwrap_or_else(|e| panic!("{what} not proposed: {e}"));
        applied
            .result
            .unwrap_or_else(|e| panic!("{what} refused: {e}"))
    }

    /// Waits until `done` holds of the state; `what` names the bug if not.
    pub async fn wait_for(&self, what: &str, done: impl Fn(&State) -> bool) {
        let mut status = self.raft.watch_status();
        let waited = tokio::time::timeout(Duration::from_secs(20), async {
            loop {
                if self.raft.read(&done) {
                    return;
                }
                if status.changed().await.is_err() {
                    return;
                }
            }
        })
        .await;
        assert!(
            waited.is_ok() && self.raft.read(&done),
            "within 20 s: {what}"
        );
    }

    pub async fn stop(mut self) {
        if let Some(thread) = self.thread.take() {
            thread.stop().await.expect("the raft thread stops cleanly");
        }
    }
}

pub fn register(node: &str, flavor: &str, devices: u32) -> pb::command::Kind {
    pb::command::Kind::RegisterNode(pb::RegisterNode {
        node: node.into(),
        instance: format!("{node}-worker"),
        devices: vec![pb::DeviceGroup {
            flavor: flavor.into(),
            count: devices,
            memory_bytes: 0,
            free_memory_bytes: None,
            simulated: true,
        }],
        models: vec![genfleet_scheduler::spec::DEFAULT_MODEL.into()],
    })
}

pub fn submit(id: &str, queue: &str) -> pb::command::Kind {
    pb::command::Kind::SubmitJob(pb::SubmitJob {
        job_id: id.into(),
        spec: Some(genfleet_scheduler::spec::with_defaults(pb::JobSpec {
            prompt: "a lighthouse at dusk".into(),
            frames: 9,
            width: 64,
            height: 64,
            steps: 4,
            guidance: 4.0,
            queue: queue.into(),
            ..Default::default()
        })),
        request_id: String::new(),
        tenant: String::new(),
        unknown_words: Vec::new(),
    })
}

pub fn assign(job: &str, node: &str, device: u32) -> pb::command::Kind {
    pb::command::Kind::Assign(pb::Assign {
        placements: vec![pb::Placement {
            job_id: job.into(),
            node: node.into(),
            device_ids: vec![device],
        }],
    })
}
