//! genfleet's wire protocol, package `genfleet.v1`, generated at build time
//! from the files in `proto/genfleet/v1/`.
//!
//! # Layout
//! - `jobs.proto`: the client job API (`JobService`).
//! - `worker.proto`: the worker session stream (`WorkerSession`).
//! - `raft.proto`: raft message transport between scheduler replicas.
//! - `state.proto`: the replicated `Command`s written to the raft log.

/// Everything of package `genfleet.v1`.
pub mod v1 {
    tonic::include_proto!("genfleet.v1");
}

pub use v1::*;

impl JobState {
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
