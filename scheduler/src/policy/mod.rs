//! The scheduling policy, as a pure function: from queues, nodes, running
//! and pending jobs to placements, preemptions and a reason (with an ETA)
//! for every job left waiting. No clock, no randomness, no I/O: the same
//! view gives the same decision, so it is property-tested and benchmarked
//! on its own. Semantics in docs/scheduling.md.
//!
//! - `types`: what a cycle sees and decides.
//! - `quota`: nominal quota, borrowing and lending within a cohort.
//! - `board`: the cluster indexed for the policy, kept between cycles or not.
//! - `capacity`: free devices indexed for best-fit gang placement.
//! - `profile`: steps/s per model x flavor x tp, and device costs.
//! - `cycle`: the cycle: what it knows, and the order jobs get their turn.
//! - `decide`: one job's turn: place it, or why it waits and for how long.
//! - `preempt`: what may be preempted for whom.
//! - `budget`: what a run costs of its queue's device-time budget.
//! - `usage`: each queue's devices of each flavor: nominal, used, borrowed.
//! - `cycle_clock`: when a cycle runs (the leader's loop and the planner).

mod board;
pub mod budget;
mod capacity;
mod cycle;
mod cycle_clock;
mod decide;
mod preempt;
mod profile;
mod quota;
mod types;
mod usage;

pub use board::{Board, RunKey};
pub use cycle::{schedule, schedule_on};
pub use cycle_clock::CycleClock;
pub use profile::Profile;
pub use quota::{QuotaBook, QuotaCheck};
pub use types::*;
pub use usage::{DeviceUsage, QueueDevices};
