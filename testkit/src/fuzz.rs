//! The fuzzing campaign: generated and mutated inputs against every place
//! that takes bytes or commands from outside, each input run under
//! `catch_unwind` so a panic is counted, not fatal. `cargo bench --bench
//! fuzz` runs a million inputs and prints RESULT lines; the test command
//! runs a short campaign (tests/suite/fuzz.rs).
//!
//! Targets:
//! - client requests (submit, list, queue, tenant, key) decoded from
//!   random or mutated bytes, then checked as the API checks them;
//! - worker messages decoded the same way, with the checks the session makes;
//! - the replicated state: random command sequences applied, invariants
//!   checked after every entry, a snapshot round trip now and then
//!   (`fuzz/state_commands.rs`);
//! - raft messages from a peer: random or mutated bytes through the
//!   transport's parsing;
//! - a lying peer: forged and mutated raft messages, and the replica's own
//!   messages sent back to it, stepped into a live replica with its log on
//!   disk, as leader and as follower (`fuzz/lying_peer.rs`);
//! - the queue YAML parser, on generated and mutated text;
//! - the worker's handling of assignments with bad ids, devices and specs.

use std::collections::BTreeMap;
use std::panic::{catch_unwind, AssertUnwindSafe};

use genfleet_proto as pb;
use prost::Message as _;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

mod lying_peer;
mod state_commands;

use state_commands::{command, CommandFuzz};

/// What a campaign saw, per target.
#[derive(Debug, Default)]
pub struct Report {
    pub inputs: BTreeMap<&'static str, u64>,
    pub panics: BTreeMap<&'static str, u64>,
    pub violations: BTreeMap<&'static str, u64>,
    /// The first few failures, described.
    pub failures: Vec<String>,
    /// Commands the state accepted (the rest it refused), and entries
    /// after which some job was running: how deep the command fuzzing got.
    pub commands_accepted: u64,
    pub entries_with_running_jobs: u64,
    /// Inputs the lying peers sent while the replica was leader, follower
    /// or candidate, and entries it applied meanwhile: how deep they got.
    pub lying_peer_roles: BTreeMap<&'static str, u64>,
    pub lying_peer_entries_applied: u64,
    /// Inputs of each kind they sent (honest, mutated, echoes of the
    /// replica's own messages, lies), and the types of those echoed.
    pub lying_peer_kinds: BTreeMap<&'static str, u64>,
    pub lying_peer_echoed: BTreeMap<&'static str, u64>,
}

impl Report {
    pub fn total(map: &BTreeMap<&'static str, u64>) -> u64 {
        map.values().sum()
    }

    fn fail(&mut self, target: &'static str, kind: &str, what: String) {
        if self.failures.len() < 20 {
            self.failures.push(format!("{target}: {kind}: {what}"));
        }
    }
}

/// Runs `inputs` inputs spread over the targets, from `seed`.
pub fn run(inputs: u64, seed: u64) -> Report {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut report = Report::default();
    // Panics are counted here: keep their messages off the terminal.
    let hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(|_| {}));
    let mut state = CommandFuzz::default();
    let mut lying = lying_peer::LyingPeer::default();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .ok();
    for i in 0..inputs {
        let target = match i % 10 {
            0..=1 => "client_requests",
            2 => "worker_messages",
            3..=6 => "state_commands",
            7 => "raft_messages",
            8 => "queue_yaml",
            _ if i % 1000 == 9 && runtime.is_some() => "assignments",
            _ if i % 20 == 9 => "raft_lying_peer",
            _ => "client_requests",
        };
        *report.inputs.entry(target).or_default() += 1;
        let result = catch_unwind(AssertUnwindSafe(|| match target {
            "client_requests" => client_request(&mut rng),
            "worker_messages" => worker_message(&mut rng),
            "state_commands" => state.step(&mut rng).map(|(accepted, running)| {
                report.commands_accepted += u64::from(accepted);
                report.entries_with_running_jobs += u64::from(running);
            }),
            "raft_messages" => raft_message(&mut rng),
            "raft_lying_peer" => lying.input(&mut rng).map(|depth| depth.count(&mut report)),
            "queue_yaml" => queue_yaml(&mut rng),
            _ => match &runtime {
                Some(rt) => assignment(&mut rng, rt),
                None => Ok(()),
            },
        }));
        match result {
            Ok(Ok(())) => {}
            Ok(Err(violation)) => {
                *report.violations.entry(target).or_default() += 1;
                report.fail(target, "invariant", with_input(target, violation, &lying));
                start_over(target, &mut state, &mut lying);
            }
            Err(panic) => {
                *report.panics.entry(target).or_default() += 1;
                let message = panic
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                    .unwrap_or_default();
                report.fail(target, "panic", with_input(target, message, &lying));
                start_over(target, &mut state, &mut lying);
            }
        }
    }
    std::panic::set_hook(hook);
    report
}

/// After a failure, the targets that keep something between inputs start
/// over from something that holds.
fn start_over(target: &str, state: &mut CommandFuzz, lying: &mut lying_peer::LyingPeer) {
    match target {
        "state_commands" => *state = CommandFuzz::default(),
        "raft_lying_peer" => lying.reset(),
        _ => {}
    }
}

/// A failure's description, with the input that caused it where the
/// target keeps one.
fn with_input(target: &str, what: String, lying: &lying_peer::LyingPeer) -> String {
    match target {
        "raft_lying_peer" => format!("{what}\n    after: {}", lying.last_input()),
        _ => what,
    }
}

/// Random bytes, or a valid encoding with a few bytes changed, cut or added.
fn mutated(rng: &mut StdRng, valid: Vec<u8>) -> Vec<u8> {
    if rng.random_bool(0.2) {
        let len = rng.random_range(0..64);
        return (0..len).map(|_| rng.random()).collect();
    }
    let mut bytes = valid;
    for _ in 0..rng.random_range(1..4) {
        match rng.random_range(0..4) {
            0 if !bytes.is_empty() => {
                let at = rng.random_range(0..bytes.len());
                bytes[at] = rng.random();
            }
            1 if !bytes.is_empty() => {
                let at = rng.random_range(0..bytes.len());
                bytes.truncate(at);
            }
            2 => {
                let at = rng.random_range(0..=bytes.len());
                bytes.insert(at, rng.random());
            }
            _ => {
                // A varint at its largest.
                bytes.extend([0xff; 9]);
                bytes.push(0x01);
            }
        }
    }
    bytes
}

/// Text that looks like what clients send, sometimes not at all.
fn text(rng: &mut StdRng) -> String {
    const PIECES: [&str; 10] = [
        "a", "default", "j-1", "€", "\u{0}", "../x", "A B", "-", "queue", "n1",
    ];
    let n = rng.random_range(0..4);
    let mut s: String = (0..n)
        .map(|_| PIECES[rng.random_range(0..PIECES.len())])
        .collect();
    if rng.random_bool(0.05) {
        s = "x".repeat(rng.random_range(60..5000));
    }
    s
}

fn number(rng: &mut StdRng) -> u32 {
    match rng.random_range(0..5) {
        0 => 0,
        1 => u32::MAX,
        2 => rng.random_range(1..64),
        3 => rng.random_range(1..2048),
        _ => rng.random(),
    }
}

fn spec(rng: &mut StdRng) -> pb::JobSpec {
    pb::JobSpec {
        prompt: text(rng),
        negative_prompt: text(rng),
        frames: number(rng),
        width: number(rng),
        height: number(rng),
        steps: number(rng),
        seed: rng.random(),
        guidance: f32::from_bits(rng.random()),
        fps: number(rng),
        model: text(rng),
        tp: number(rng),
        queue: text(rng),
        qos: ["", "interactive", "batch", "gold"][rng.random_range(0..4)].into(),
        priority: [i32::MIN, i32::MAX, 0, -1000, 1001][rng.random_range(0..5)],
        remix_of: text(rng),
    }
}

fn client_request(rng: &mut StdRng) -> Result<(), String> {
    match rng.random_range(0..4) {
        0 => {
            let valid = pb::SubmitRequest {
                spec: Some(spec(rng)),
                request_id: text(rng),
            }
            .encode_to_vec();
            if let Ok(request) = pb::SubmitRequest::decode(mutated(rng, valid).as_slice()) {
                let spec =
                    genfleet_scheduler::spec::with_defaults(request.spec.unwrap_or_default());
                let _ = genfleet_scheduler::spec::validate(&spec);
            }
        }
        1 => {
            let valid = pb::ListJobsRequest {
                states: vec![rng.random()],
                page_size: number(rng),
                page_token: format!("{}.{}", rng.random::<i64>(), text(rng)),
                queue: text(rng),
                oldest_first: rng.random(),
            }
            .encode_to_vec();
            if let Ok(request) = pb::ListJobsRequest::decode(mutated(rng, valid).as_slice()) {
                let _ = genfleet_scheduler::api::paging::parse_token(&request.page_token);
                let _ = genfleet_scheduler::api::paging::page_size(request.page_size);
            }
        }
        2 => {
            let queue = pb::Queue {
                name: text(rng),
                weight: number(rng),
                ..Default::default()
            };
            let valid = pb::ApplyQueueRequest { queue: Some(queue) }.encode_to_vec();
            if let Ok(request) = pb::ApplyQueueRequest::decode(mutated(rng, valid).as_slice()) {
                let _ =
                    genfleet_scheduler::state::validate_queue(request.queue.unwrap_or_default());
            }
        }
        _ => {
            let tenant = pb::Tenant {
                name: text(rng),
                queues: vec![text(rng), text(rng)],
                default_queue: text(rng),
                default_qos: text(rng),
                max_qos: text(rng),
                max_unfinished_jobs: rng.random(),
            };
            let valid = pb::ApplyTenantRequest {
                tenant: Some(tenant),
            }
            .encode_to_vec();
            if let Ok(request) = pb::ApplyTenantRequest::decode(mutated(rng, valid).as_slice()) {
                let _ =
                    genfleet_scheduler::state::validate_tenant(request.tenant.unwrap_or_default());
            }
        }
    }
    Ok(())
}

fn worker_message(rng: &mut StdRng) -> Result<(), String> {
    let lease = Some(pb::JobLease {
        job_id: text(rng),
        lease_epoch: rng.random(),
    });
    let msg = match rng.random_range(0..4) {
        0 => pb::worker_message::Msg::Progress(pb::Progress {
            lease,
            step: number(rng),
            total_steps: number(rng),
        }),
        1 => pb::worker_message::Msg::Failed(pb::Failed {
            lease,
            message: text(rng),
        }),
        2 => pb::worker_message::Msg::Register(pb::Register {
            node: text(rng),
            instance: text(rng),
            devices: vec![pb::DeviceGroup {
                flavor: text(rng),
                count: number(rng),
                memory_bytes: rng.random(),
                free_memory_bytes: Some(rng.random()),
                simulated: rng.random(),
            }],
            models: vec![text(rng)],
            running: Vec::new(),
        }),
        _ => pb::worker_message::Msg::Finished(pb::Finished {
            lease,
            artifacts: vec![pb::Artifact {
                kind: text(rng),
                uri: text(rng),
                size_bytes: rng.random(),
                content_type: text(rng),
            }],
        }),
    };
    let valid = pb::WorkerMessage { msg: Some(msg) }.encode_to_vec();
    if let Ok(message) = pb::WorkerMessage::decode(mutated(rng, valid).as_slice()) {
        genfleet_scheduler::api::check_worker_message(&message);
    }
    Ok(())
}

fn raft_message(rng: &mut StdRng) -> Result<(), String> {
    let inner: Vec<u8> = (0..rng.random_range(0..48)).map(|_| rng.random()).collect();
    let valid = pb::RaftBatch {
        from: rng.random(),
        messages: vec![inner],
    }
    .encode_to_vec();
    if let Ok(batch) = pb::RaftBatch::decode(mutated(rng, valid).as_slice()) {
        for bytes in &batch.messages {
            let _ = genfleet_scheduler::api::parse_peer_message(batch.from, bytes);
        }
    }
    Ok(())
}

fn queue_yaml(rng: &mut StdRng) -> Result<(), String> {
    let valid = format!(
        "name: {}\ncohort: {}\nweight: {}\nquotas:\n  - flavor: {}\n    nominal: {}\n    borrowingLimit: {}\nbudget:\n  deviceHours: {}\n  period: {}\n",
        text(rng),
        text(rng),
        [ "1", "-3", "1e400", "x", "0" ][rng.random_range(0..5)],
        text(rng),
        number(rng),
        number(rng),
        ["1", "nan", "-1"][rng.random_range(0..3)],
        ["24h", "0s", "x", "99999999999d"][rng.random_range(0..4)],
    );
    let bytes = mutated(rng, valid.into_bytes());
    let text = String::from_utf8_lossy(&bytes);
    let _ = genfleet_scheduler::queue_file::parse("fuzz", &text);
    Ok(())
}

/// An assignment a worker could be sent by a scheduler that lies: it must
/// end as a failed job (or a stopped one), never take the worker down.
fn assignment(rng: &mut StdRng, runtime: &tokio::runtime::Runtime) -> Result<(), String> {
    use genfleet_worker::executor::{Executor, Reporter, StopSignal};
    let dir = tempfile_dir();
    let store = genfleet_worker::artifacts::ArtifactStore::local(&dir.join("artifacts"))
        .map_err(|e| e.to_string())?;
    let metrics =
        genfleet_worker::metrics::WorkerMetrics::new("fuzz").map_err(|e| e.to_string())?;
    let executor = std::sync::Arc::new(Executor::new(
        dir.join("models"),
        store,
        metrics,
        Default::default(),
        false,
        0.25,
        genfleet_worker::executor::checkpoint_interval::CheckpointInterval::off(),
    ));
    let assignment = pb::Assignment {
        job_id: ["j-1", "../../etc", "", "j\u{0}"][rng.random_range(0..4)].into(),
        spec: rng.random_bool(0.8).then(|| spec(rng)),
        lease_epoch: rng.random(),
        device_ids: (0..rng.random_range(0..3)).map(|_| rng.random()).collect(),
        step_seconds: f64::from_bits(rng.random()),
        checkpoint: rng.random_bool(0.3).then(|| pb::JobCheckpoint {
            uri: text(rng),
            step: number(rng),
        }),
        tenant: text(rng),
    };
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let reporter = Reporter::new(pb::JobLease::default(), 0, tx);
    let stop = std::sync::Arc::new(StopSignal::default());
    runtime.block_on(executor.run(assignment, stop, reporter));
    let _ = std::fs::remove_dir_all(&dir);
    match rx.try_recv() {
        Ok(update) => match update.update {
            genfleet_worker::executor::JobUpdate::Failed { .. }
            | genfleet_worker::executor::JobUpdate::Stopped => Ok(()),
            other => Err(format!("a bad assignment ended as {other:?}")),
        },
        Err(_) => Err("a bad assignment ended without a word".into()),
    }
}

/// A fresh directory under the system's temporary one.
fn tempfile_dir() -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("genfleet-fuzz-{:016x}", rand::random::<u64>()));
    let _ = std::fs::create_dir_all(&dir);
    dir
}
