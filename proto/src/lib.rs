//! genfleet's wire protocol, package `genfleet.v1`, generated at build time
//! from the files in `proto/genfleet/v1/`.
//!
//! # Layout
//! - `jobs.proto`: the client job API (`JobService`).
//! - `worker.proto`: the worker session stream (`WorkerSession`).
//! - `raft.proto`: raft message transport between scheduler replicas.
//! - `state.proto`: the replicated `Command`s written to the raft log.
//! - [`models`]: the one table of built-in model presets: their shapes,
//!   precision and the device memory a job of each needs (the worker builds
//!   its candle models from it; the scheduler and the planner size jobs by it).
//! - [`flavors`]: device flavor names from what drivers report, the memory
//!   of known flavors, and memory sizes as written (`80GiB`).
//! - [`metrics`]: metrics made and registered in one step (both processes).
//! - [`tls`]: certificates, and the client and server TLS every part uses.
//! - [`vocabulary`]: the words a model trained on a fixed vocabulary knows
//!   (`world`), and which words of a prompt it does not (scheduler and
//!   worker read the one table).

/// Everything of package `genfleet.v1`.
// Generated: message sizes follow the .proto, not clippy's taste.
#[allow(clippy::large_enum_variant)]
pub mod v1 {
    tonic::include_proto!("genfleet.v1");
    include!(concat!(env!("OUT_DIR"), "/genfleet.v1.serde.rs"));
}

pub use v1::*;

/// The compiled descriptors of package genfleet.v1, for server reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/genfleet_descriptor.bin"));

pub mod checkpoints;
pub mod flavors;
pub mod metrics;
pub mod models;
pub mod tls;
pub mod vocabulary;

/// Longest name of a node, model, queue or flavor.
pub const MAX_NAME_LEN: usize = 63;

/// The largest backup (a state snapshot) the cluster API carries, each
/// way: far above the state of ~100k jobs (a few hundred MiB at most is
/// held in memory anyway), and only an admin's call may send one.
pub const MAX_BACKUP_BYTES: usize = 256 << 20;

/// Whether `name` is a valid node, model, queue or flavor name: 1 to 63 of
/// `a-z`, `0-9`, `-`, `_`, `.`; safe in file paths and metric labels.
pub fn is_valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_NAME_LEN
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"-_.".contains(&b))
        && name != "."
        && name != ".."
}

impl JobState {
    /// Every state a job can be in (not `Unspecified`).
    pub const ALL: [JobState; 5] = [
        JobState::Pending,
        JobState::Running,
        JobState::Completed,
        JobState::Failed,
        JobState::Cancelled,
    ];

    /// Whether the job will never change again.
    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            JobState::Completed | JobState::Failed | JobState::Cancelled
        )
    }

    /// Short lower-case name for people: `pending`, `running`, ...
    pub fn label(self) -> &'static str {
        match self {
            JobState::Unspecified => "unknown",
            JobState::Pending => "pending",
            JobState::Running => "running",
            JobState::Completed => "completed",
            JobState::Failed => "failed",
            JobState::Cancelled => "cancelled",
        }
    }
}
