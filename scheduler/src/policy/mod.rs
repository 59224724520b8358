//! The scheduling policy, as a pure function: from queues, nodes, running
//! and pending jobs to placements, preemptions and a reason (with an ETA)
//! for every job left waiting. No clock, no randomness, no I/O: the same
//! view gives the same decision, so it is property-tested and benchmarked
//! on its own. Semantics in docs/scheduling.md.
//!
//! - `types`: what a cycle sees and decides.
//! - `quota`: nominal quota, borrowing and lending within a cohort.
//! - `capacity`: free devices indexed for best-fit gang placement.
//! - `profile`: steps/s per model x flavor x tp, and device costs.
//! - `cycle`: the cycle itself (order, place, explain).
//! - `preempt`: what may be preempted for whom.

mod capacity;
mod cycle;
mod preempt;
mod profile;
mod quota;
mod types;

pub use cycle::schedule;
pub use profile::Profile;
pub use quota::{QuotaBook, QuotaCheck};
pub use types::*;
