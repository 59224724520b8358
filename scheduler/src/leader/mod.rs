//! Work only the leader does, and what it knows that is not replicated:
//! which workers have a session open here and their latest per-step
//! progress (`sessions`), the scheduling cycle (`scheduling_loop`),
//! declaring silent nodes down (`liveness`) and promoting learners
//! (`membership`).

mod liveness;
mod membership;
mod scheduling_loop;
mod sessions;

use std::time::Duration;

use crate::policy::PolicyConfig;

pub use liveness::liveness_loop;
pub use membership::membership_loop;
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
