//! Work only the leader does, and what it knows that is not replicated:
//! which workers have a session open here and their latest per-step
//! progress (`sessions`), the scheduling cycle (`scheduling_loop`),
//! declaring silent nodes down (`liveness`), promoting learners
//! (`membership`), each worker's session (`worker_session`, fed by
//! `node_events`) and forgetting ended jobs (`retention`).

pub mod artifact_rules;
mod liveness;
mod membership;
pub mod node_events;
mod retention;
mod scheduling_loop;
mod sessions;
pub mod worker_session;

use std::time::Duration;

use crate::policy::PolicyConfig;

pub use liveness::liveness_loop;
pub use membership::membership_loop;
pub use retention::{retention_loop, Retention};
pub use scheduling_loop::scheduling_loop;
pub use sessions::{SessionGuard, Sessions};

/// Timings of the leader's loops.
#[derive(Debug, Clone)]
pub struct LeaderConfig {
    /// Longest a registered node may go without a session before it is
    /// declared down and its jobs requeued.
    pub worker_grace: Duration,
    /// A scheduling cycle runs at least this often, and on every change.
    pub cycle_interval: Duration,
    /// The policy's knobs (minimum runtime, ageing, preemption bounds).
    pub policy: PolicyConfig,
    /// A preempted job whose worker has not checkpointed it by then is
    /// requeued without a new checkpoint (its devices are needed).
    pub preempt_timeout: Duration,
}
