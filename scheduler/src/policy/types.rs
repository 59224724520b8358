//! What a scheduling cycle sees (queues, nodes, running and pending jobs)
//! and what it decides (placements, preemptions, and why the rest waits).

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use genfleet_proto::models::gib;
pub use genfleet_proto::models::MemoryNeed;

pub use crate::qos::Qos;

/// A queue's share of one flavor, in devices.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct FlavorQuota {
    /// Devices guaranteed to the queue.
    pub nominal: u32,
    /// Devices it may use beyond `nominal`, borrowed from its cohort
    /// (`None`: as many as the cohort has unused).
    pub borrowing_limit: Option<u32>,
    /// Of `nominal`, how many others in the cohort may borrow while it is
    /// unused (`None`: all of it).
    pub lending_limit: Option<u32>,
}

impl FlavorQuota {
    /// The part of `nominal` that may be lent.
    pub fn lendable(&self) -> u32 {
        self.lending_limit.unwrap_or(self.nominal).min(self.nominal)
    }
}

/// A team's queue.
#[derive(Debug, Clone, PartialEq)]
pub struct QueueConfig {
    pub name: String,
    /// Queues of one cohort lend unused quota to each other; `None`: alone.
    pub cohort: Option<String>,
    /// Fair-share weight (at least 1): twice the weight, twice the share.
    pub weight: u32,
    /// Flavor name -> quota. A flavor not listed has no quota here.
    pub quotas: BTreeMap<String, FlavorQuota>,
    /// What is left of its device-hour budget, if it has one.
    pub budget: Option<BudgetLeft>,
}

/// A queue's budget in the current period, as the cycle sees it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BudgetLeft {
    /// Device-seconds left, after what ended and what runs so far (the
    /// cycle also books what running work will still use).
    pub device_s: f64,
    /// Seconds until the next period starts with the whole budget.
    pub resets_in_s: f64,
}

/// Devices of one flavor on one node (a node may hold several groups).
#[derive(Debug, Clone, PartialEq)]
pub struct GroupView {
    pub flavor: String,
    /// Device indexes on the node, all of them.
    pub devices: Vec<u32>,
    /// The free ones among `devices`.
    pub free: Vec<u32>,
    /// Memory a job may use on each device, bytes; 0: unknown (no limit).
    pub memory_bytes: u64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct NodeView {
    pub name: String,
    /// Cordoned nodes finish their work but take none.
    pub cordoned: bool,
    /// Model presets this node's worker can run.
    pub models: Vec<String>,
    pub groups: Vec<GroupView>,
    /// Simulated devices (`genfleet worker --simulate`).
    pub simulated: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub struct RunningJob {
    pub id: String,
    pub queue: String,
    pub qos: Qos,
    pub flavor: String,
    pub node: String,
    pub devices: Vec<u32>,
    pub started_at_ms: i64,
    /// Told to checkpoint and stop: its devices are on their way back.
    pub preempting: bool,
    /// Expected seconds until it finishes (for ETAs).
    pub remaining_s: f64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct PendingJob {
    pub id: String,
    pub queue: String,
    pub qos: Qos,
    /// Orders jobs of one class in one queue; higher first.
    pub priority: i32,
    /// Devices of one flavor on one node, all or nothing.
    pub tp: u32,
    pub model: String,
    /// Denoising steps still to run (all of them unless resumed).
    pub steps_left: u32,
    /// Since when it waits: its submission, or its return to the queue
    /// after a preemption (work that ran is not starving). Ageing counts
    /// from here.
    pub waiting_since_ms: i64,
    /// Work has been preempted for this job: it goes before every other
    /// job, so what was freed for it is not taken by someone else.
    pub nominated: bool,
    /// Submission order (ties broken by it: first come, first served).
    pub position: u64,
    /// Device memory it needs (estimated from its model and video size);
    /// unknown: no limit.
    pub memory: MemoryNeed,
    /// Its video's width x height x frames (0: unknown): its step time
    /// grows with it (`Profile::steps_per_s_at`).
    pub pixel_frames: u64,
}

/// Everything a cycle decides from.
#[derive(Debug, Clone, Default)]
pub struct ClusterView {
    pub queues: Vec<QueueConfig>,
    pub nodes: Vec<NodeView>,
    pub running: Vec<RunningJob>,
    pub pending: Vec<PendingJob>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Placement {
    /// Index of the job in [`ClusterView::pending`] (indexes, not names:
    /// a cycle places tens of thousands of jobs).
    pub job: usize,
    /// Index of the node in [`ClusterView::nodes`].
    pub node: usize,
    pub flavor: Arc<str>,
    pub device_ids: Vec<u32>,
    /// The job's key on the board the cycle ran on, when that board
    /// outlives the cycle (the planner's; the leader's does not).
    pub run: Option<super::board::RunKey>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum PreemptReason {
    /// An interactive job needed devices a batch job held.
    InteractiveOverBatch,
    /// A queue took back nominal quota another queue had borrowed.
    ReclaimQuota,
}

impl PreemptReason {
    pub fn label(self) -> &'static str {
        match self {
            PreemptReason::InteractiveOverBatch => "interactive_over_batch",
            PreemptReason::ReclaimQuota => "reclaim_quota",
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Preemption {
    pub job_id: String,
    pub reason: PreemptReason,
    /// The pending job the devices are freed for.
    pub for_job: String,
}

/// Why a job is still pending.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum PendingReason {
    /// The job names a queue that does not exist.
    UnknownQueue,
    /// No node of any flavor the queue has quota for serves the model.
    NoFlavor,
    /// Its queue (with what it may borrow) has no room for it.
    OverQuota { flavor: Arc<str> },
    /// Its queue's device-hour budget for this period is used up.
    OverBudget,
    /// Every device of the flavor is busy.
    NoCapacity { flavor: Arc<str> },
    /// Enough devices are free, but not `tp` of them on one node.
    WaitingForGang { flavor: Arc<str> },
    /// The only nodes that could take it are cordoned.
    Cordoned { flavor: Arc<str> },
    /// Devices are being freed for it by preemption.
    WaitingForPreemption { flavor: Arc<str> },
    /// Capacity is held for an older job that has waited too long.
    Reserved { flavor: Arc<str> },
    /// No device of the flavors it may use has the memory one rank needs:
    /// `flavor` is the one with the most.
    Memory {
        flavor: Arc<str>,
        tp: u32,
        /// Bytes one rank needs at `tp`.
        need_bytes: u64,
        /// The most any device of `flavor` offers.
        largest_bytes: u64,
        /// The smallest larger gang (a power of two that a node of
        /// `flavor` holds) at which a rank would fit, if any.
        fits_at_tp: Option<u32>,
    },
}

impl PendingReason {
    /// A short label for metrics (no flavor: that is another label).
    pub fn label(&self) -> &'static str {
        match self {
            PendingReason::UnknownQueue => "unknown_queue",
            PendingReason::NoFlavor => "no_flavor",
            PendingReason::OverQuota { .. } => "over_quota",
            PendingReason::OverBudget => "over_budget",
            PendingReason::NoCapacity { .. } => "no_capacity",
            PendingReason::WaitingForGang { .. } => "waiting_for_gang",
            PendingReason::Cordoned { .. } => "cordoned",
            PendingReason::WaitingForPreemption { .. } => "waiting_for_preemption",
            PendingReason::Reserved { .. } => "reserved_for_older_job",
            PendingReason::Memory { .. } => "memory",
        }
    }
}

impl fmt::Display for PendingReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PendingReason::UnknownQueue => write!(f, "its queue does not exist"),
            PendingReason::NoFlavor => {
                write!(
                    f,
                    "no node of a flavor its queue has quota for serves its model"
                )
            }
            PendingReason::OverQuota { flavor } => {
                write!(
                    f,
                    "over quota on {flavor} (nominal plus what it may borrow)"
                )
            }
            PendingReason::OverBudget => write!(
                f,
                "its queue's device-hour budget for this period is used up"
            ),
            PendingReason::NoCapacity { flavor } => write!(f, "no free {flavor} devices"),
            PendingReason::WaitingForGang { flavor } => {
                write!(f, "waiting for enough free {flavor} devices on one node")
            }
            PendingReason::Cordoned { flavor } => {
                write!(f, "the {flavor} nodes that could take it are cordoned")
            }
            PendingReason::WaitingForPreemption { flavor } => {
                write!(f, "{flavor} devices are being freed for it by preemption")
            }
            PendingReason::Reserved { flavor } => {
                write!(f, "{flavor} capacity is held for an older job")
            }
            PendingReason::Memory {
                flavor,
                tp,
                need_bytes,
                largest_bytes,
                fits_at_tp,
            } => {
                write!(
                    f,
                    "needs {} per device at tp {tp}; the largest {flavor} has {}: ask for ",
                    gib(*need_bytes),
                    gib(*largest_bytes)
                )?;
                match fits_at_tp {
                    Some(t) => write!(f, "--tp {t} or a smaller size"),
                    None => write!(f, "a smaller size (fewer frames or pixels)"),
                }
            }
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct PendingStatus {
    /// Index of the job in [`ClusterView::pending`].
    pub job: usize,
    pub reason: PendingReason,
    /// Estimated seconds until it starts; `None` when nothing running will
    /// make room (no flavor, unknown queue).
    pub eta_s: Option<f64>,
}

/// What one cycle decided.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Decision {
    pub placements: Vec<Placement>,
    pub preemptions: Vec<Preemption>,
    pub pending: Vec<PendingStatus>,
    /// Set, on a board kept between cycles, when the cycle placed and
    /// preempted nothing: until then, with no change to the jobs, nodes or
    /// queues, every cycle decides nothing too (the first moment a waiting
    /// job ages or starves, running work passes its minimum runtime, or a
    /// budget period ends; none while budgeted work is stopping).
    pub quiet_until_ms: Option<i64>,
}

/// Knobs of the policy.
#[derive(Debug, Clone, PartialEq)]
pub struct PolicyConfig {
    /// Running work younger than this is never preempted.
    pub min_runtime_ms: i64,
    /// A pending job is ordered one class higher per this much waiting.
    pub ageing_ms: i64,
    /// A job waiting this long has a node held for it (no backfill there).
    pub starvation_ms: i64,
    /// Most jobs that start preemptions in one cycle (bounds churn).
    pub max_preemptors_per_cycle: usize,
}

impl Default for PolicyConfig {
    fn default() -> Self {
        Self {
            min_runtime_ms: 60_000,
            ageing_ms: 15 * 60_000,
            starvation_ms: 30 * 60_000,
            max_preemptors_per_cycle: 16,
        }
    }
}
