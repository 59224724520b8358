//! The `state_commands` target: random command sequences applied to one
//! replicated state, its invariants checked after every entry and a
//! snapshot round trip now and then. Its commands also fill the entries
//! the lying peers append (`lying_peer`).

use genfleet_proto as pb;
use genfleet_scheduler::state::State;
use prost::Message as _;
use rand::rngs::StdRng;
use rand::Rng;

use super::{mutated, number, spec, text};

/// Random commands applied to one state, its invariants checked after each.
#[derive(Default)]
pub(super) struct CommandFuzz {
    state: State,
    applied: u64,
}

impl CommandFuzz {
    /// Applies one command; whether it was accepted and whether a job runs.
    pub(super) fn step(&mut self, rng: &mut StdRng) -> Result<(bool, bool), String> {
        let entry = if rng.random_bool(0.05) {
            // Bytes that may or may not be a log entry.
            let valid = pb::LogEntry {
                version: 1,
                at_ms: rng.random_range(0..1_000_000),
                command: Some(pb::Command {
                    kind: Some(command(rng)),
                }),
            }
            .encode_to_vec();
            match pb::LogEntry::decode(mutated(rng, valid).as_slice()) {
                Ok(entry) => entry,
                Err(_) => return Ok((false, false)),
            }
        } else {
            pb::LogEntry {
                version: 1,
                at_ms: self.applied as i64 * 1000,
                command: Some(pb::Command {
                    kind: Some(command(rng)),
                }),
            }
        };
        self.applied += 1;
        let accepted = self.state.apply(self.applied, &entry).is_ok();
        self.state.check_invariants()?;
        let running = self.state.jobs().any(|j| j.state == pb::JobState::Running);
        if self.applied.is_multiple_of(500) {
            let restored = State::from_snapshot_bytes(&self.state.encode_snapshot())
                .map_err(|e| format!("a snapshot does not decode: {e}"))?;
            if restored.hash() != self.state.hash() {
                return Err(format!(
                    "a snapshot restores another state: {}",
                    snapshot_difference(&self.state.to_snapshot(), &restored.to_snapshot())
                ));
            }
            restored.check_invariants()?;
        }
        Ok((accepted, running))
    }
}

/// Where two snapshots of the state differ, described.
fn snapshot_difference(a: &pb::StateSnapshot, b: &pb::StateSnapshot) -> String {
    for (x, y) in a.jobs.iter().zip(&b.jobs) {
        if x != y {
            return format!("job before {x:?}\nafter {y:?}");
        }
    }
    for (x, y) in a.nodes.iter().zip(&b.nodes) {
        if x != y {
            return format!("node before {x:?}\nafter {y:?}");
        }
    }
    let parts = [
        ("jobs", a.jobs.len() != b.jobs.len()),
        ("nodes", a.nodes.len() != b.nodes.len()),
        ("queues", a.queues != b.queues),
        ("budget usage", a.budget_usage != b.budget_usage),
        ("tenants", a.tenants != b.tenants),
        ("keys", a.keys != b.keys),
        ("members", a.members != b.members),
        (
            "positions and leases",
            (a.next_position, a.last_lease_epoch) != (b.next_position, b.last_lease_epoch),
        ),
    ];
    let differ: Vec<&str> = parts.iter().filter(|(_, d)| *d).map(|(n, _)| *n).collect();
    format!("{differ:?}")
}

/// A command over a few jobs, nodes and tenants, so they meet.
pub(super) fn command(rng: &mut StdRng) -> pb::command::Kind {
    use pb::command::Kind;
    let job = format!("j{}", rng.random_range(0..12));
    let node = format!("n{}", rng.random_range(0..3));
    let tenant = ["", "acme", "zeta"][rng.random_range(0..3)].to_string();
    let lease = Some(pb::JobLease {
        job_id: job.clone(),
        lease_epoch: rng.random_range(0..8),
    });
    let small_spec = || {
        genfleet_scheduler::spec::with_defaults(pb::JobSpec {
            prompt: "a kite".into(),
            frames: 9,
            width: 64,
            height: 64,
            steps: 4,
            guidance: 4.0,
            ..Default::default()
        })
    };
    match rng.random_range(0..16) {
        0 | 1 => Kind::SubmitJob(pb::SubmitJob {
            job_id: job,
            spec: Some(if rng.random_bool(0.9) {
                small_spec()
            } else {
                spec(rng)
            }),
            request_id: ["", "r1", "r2"][rng.random_range(0..3)].into(),
            tenant,
            unknown_words: Vec::new(),
        }),
        2 => Kind::CancelJob(pb::CancelJob { job_id: job }),
        3 => Kind::DeleteJob(pb::DeleteJob { job_id: job }),
        4 => Kind::RegisterNode(pb::RegisterNode {
            node,
            instance: format!("i{}", rng.random_range(0..3)),
            devices: vec![pb::DeviceGroup {
                flavor: "cpu".into(),
                count: rng.random_range(0..4),
                memory_bytes: 24 << 30,
                free_memory_bytes: None,
                simulated: false,
            }],
            models: vec![genfleet_scheduler::spec::DEFAULT_MODEL.into()],
        }),
        5 => Kind::NodeDown(pb::NodeDown {
            node,
            ..Default::default()
        }),
        6 | 7 => Kind::Assign(pb::Assign {
            placements: vec![pb::Placement {
                job_id: job,
                node,
                device_ids: (0..rng.random_range(0..3))
                    .map(|_| rng.random_range(0..5))
                    .collect(),
            }],
        }),
        8 => Kind::JobProgress(pb::JobProgress {
            lease,
            step: number(rng),
            checkpoint: rng.random_bool(0.3).then(|| pb::JobCheckpoint {
                uri: text(rng),
                step: number(rng),
            }),
        }),
        9 => Kind::JobFinished(pb::JobFinished {
            lease,
            artifacts: vec![pb::Artifact {
                kind: ["video", "preview"][rng.random_range(0..2)].into(),
                uri: "file:///x".into(),
                ..Default::default()
            }],
        }),
        10 => Kind::JobFailed(pb::JobFailed {
            lease,
            message: text(rng),
        }),
        11 => Kind::JobCheckpointed(pb::JobCheckpointed {
            lease,
            checkpoint: Some(pb::JobCheckpoint {
                uri: text(rng),
                step: number(rng),
            }),
        }),
        12 => Kind::PreemptJobs(pb::PreemptJobs {
            preemptions: vec![pb::Preemption {
                lease,
                reason: text(rng),
                ..Default::default()
            }],
        }),
        13 => Kind::ForgetJobs(pb::ForgetJobs {
            job_ids: vec![job, format!("j{}", rng.random_range(0..12))],
        }),
        14 => Kind::JobPreview(pb::JobPreview {
            lease,
            artifacts: vec![pb::Artifact {
                kind: ["preview", "video"][rng.random_range(0..2)].into(),
                uri: "file:///p".into(),
                ..Default::default()
            }],
        }),
        _ => Kind::UpsertTenant(pb::UpsertTenant {
            tenant: Some(pb::Tenant {
                name: if tenant.is_empty() {
                    "acme".into()
                } else {
                    tenant
                },
                queues: vec!["default".into()],
                max_unfinished_jobs: rng.random_range(0..4),
                ..Default::default()
            }),
        }),
    }
}
