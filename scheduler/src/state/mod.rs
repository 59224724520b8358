//! The replicated state machine: jobs and nodes, changed only by [`State::apply`].
//!
//! `apply` is deterministic: it reads no clock and no randomness and does no
//! I/O; time comes stamped in the log entry. Every command is validated
//! again here, so a decision made on a stale view is rejected whole, never
//! half-applied, and every replica rejects it the same way.

mod history;
mod invariants;
mod jobs;
mod nodes;
pub(crate) mod queues;
mod restore;
mod snapshot;
mod tenants;

use std::collections::{BTreeMap, HashMap};

use genfleet_proto as pb;
use pb::JobState;

pub use history::{History, HistoryRecord, HISTORY_CAP};
pub use jobs::{Job, PREVIEW_KINDS};
pub use nodes::PlacementError;
pub use nodes::{Node, CORDONED_BY_KUBERNETES};
pub use queues::{validate_queue, QueueError};
pub use snapshot::{hash_of, SnapshotError, STATE_SNAPSHOT_VERSION};
pub use tenants::{validate_tenant, TenantError};

use crate::spec::SpecError;

/// The version of [`pb::LogEntry`] this code writes and understands.
pub const LOG_ENTRY_VERSION: u32 = 1;

/// Why a command changed nothing. Deterministic: the same on every replica.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum Rejection {
    #[error("invalid job: {0}")]
    Spec(#[from] SpecError),
    #[error("job {0} already exists")]
    DuplicateJob(String),
    #[error("no job with id {0:?}")]
    UnknownJob(String),
    #[error("job {job} has already ended ({state})")]
    AlreadyEnded { job: String, state: &'static str },
    #[error("job {job} is {state}: cancel it before deleting it")]
    NotEnded { job: String, state: &'static str },
    #[error("job {job} is {state}, not pending")]
    NotPending { job: String, state: &'static str },
    #[error("no node named {0:?} is registered")]
    UnknownNode(String),
    #[error("node {0} is down")]
    NodeDown(String),
    #[error("stale lease for job {job}: epoch {epoch}, the job's current lease is {current}")]
    StaleLease {
        job: String,
        epoch: u64,
        current: u64,
    },
    #[error("cannot place job {job} on node {node}: {why}")]
    Placement {
        job: String,
        node: String,
        why: nodes::PlacementError,
    },
    #[error("invalid node registration: {0}")]
    Registration(String),
    #[error(
        "log entry version {0} is not understood by this build (it writes {LOG_ENTRY_VERSION})"
    )]
    UnsupportedVersion(u32),
    #[error("malformed command: {0}")]
    Malformed(&'static str),
    #[error("invalid queue: {0}")]
    InvalidQueue(#[from] QueueError),
    #[error("no queue named {0:?}; `genfleet queue list` shows the queues")]
    UnknownQueue(String),
    #[error(
        "queue {queue} still has {jobs} unfinished jobs; cancel them or let them finish first"
    )]
    QueueInUse { queue: String, jobs: usize },
    #[error("job {0} was not asked to checkpoint (and its node is not draining)")]
    NotPreempting(String),
    #[error("checkpoint of job {job} refused: {why}")]
    BadCheckpoint { job: String, why: String },
    #[error("invalid tenant: {0}")]
    InvalidTenant(#[from] TenantError),
    #[error("no tenant named {0:?}; `genfleet tenant list` shows the tenants")]
    UnknownTenant(String),
    #[error("tenant {tenant} still has {keys} keys; revoke them first")]
    TenantInUse { tenant: String, keys: usize },
    #[error("invalid key: {0}")]
    InvalidKey(String),
    #[error("no key with id {0:?}; `genfleet key list` shows the keys")]
    UnknownKey(String),
    #[error("tenant {tenant}: {why}")]
    TenantLimit { tenant: String, why: String },
    #[error("tenant {tenant} has {jobs} unfinished jobs, its limit; wait for some to end")]
    TenantBusy { tenant: String, jobs: usize },
    #[error("a restore needs a fresh cluster, and this one holds {0}")]
    NotFresh(String),
    #[error("the backup cannot be restored: {0}")]
    BadBackup(String),
}

/// What an applied command did, for the one who proposed it.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// The job as it is after the command.
    Job(Box<Job>),
    /// A node was registered or marked down; these jobs went back to pending.
    Node { requeued: Vec<String> },
    /// One result per placement of an Assign batch, in order: the lease epoch given.
    Assigned(Vec<Result<u64, Rejection>>),
    /// One result per preemption of a PreemptJobs batch, in order.
    Preempted(Vec<Result<(), Rejection>>),
    /// A queue as stored after an apply.
    Queue(pb::Queue),
    /// A tenant as stored after an apply.
    Tenant(pb::Tenant),
    /// A key as stored (its hash, not its secret).
    Key(pb::ApiKey),
    /// Retention removed this many ended jobs.
    Forgotten(usize),
    /// Accepted, nothing to report (e.g. a progress report).
    Done,
    /// A backup was restored; this many running jobs went back to pending.
    Restored { requeued: usize },
}

/// Jobs and nodes as of `applied_index`.
#[derive(Debug, Default, Clone)]
pub struct State {
    jobs: BTreeMap<String, Job>,
    /// Pending jobs in the order they are considered: queue position -> id.
    pending: BTreeMap<u64, String>,
    nodes: BTreeMap<String, Node>,
    /// Client idempotency keys -> the job their submit created. Only looked
    /// up, never iterated (iteration order would differ between replicas).
    requests: HashMap<String, String>,
    /// Scheduler replicas' addresses, from membership changes.
    members: BTreeMap<u64, String>,
    /// Applied queues by name.
    queues: BTreeMap<String, pb::Queue>,
    /// Budgeted queues' use in their current period, by queue.
    budget_usage: BTreeMap<String, pb::BudgetUsage>,
    /// Tenants by name.
    tenants: BTreeMap<String, pb::Tenant>,
    /// API keys (hashes only) by id.
    keys: BTreeMap<String, pb::ApiKey>,
    /// Jobs retention (or a delete) removed, compact, the newest [`HISTORY_CAP`].
    history: History,
    /// Jobs not ended per tenant, for its limit: kept at submit and end
    /// (derived from `jobs`, so rebuilt from a snapshot, not stored).
    unfinished_by_tenant: HashMap<String, usize>,
    next_position: u64,
    last_lease_epoch: u64,
    applied_index: u64,
    /// Jobs changed by the last applied entry, for watchers.
    changed: Vec<String>,
}

impl State {
    /// Applies one committed log entry at raft index `index`.
    ///
    /// Entries are applied in index order; an error leaves the state as it was
    /// (apart from the applied index).
    pub fn apply(&mut self, index: u64, entry: &pb::LogEntry) -> Result<Outcome, Rejection> {
        self.applied_index = index;
        self.changed.clear();
        if entry.version != LOG_ENTRY_VERSION {
            return Err(Rejection::UnsupportedVersion(entry.version));
        }
        let at_ms = entry.at_ms;
        // Every entry is stamped with its proposer's clock; 0 would also
        // read as "not set" in the job times a snapshot carries.
        if at_ms <= 0 {
            return Err(Rejection::Malformed(
                "a log entry without the time it was proposed",
            ));
        }
        use pb::command::Kind;
        let kind = entry
            .command
            .as_ref()
            .and_then(|c| c.kind.as_ref())
            .ok_or(Rejection::Malformed("log entry without a command"))?;
        match kind {
            Kind::SubmitJob(c) => self.submit_job(c, at_ms),
            Kind::CancelJob(c) => self.cancel_job(&c.job_id, at_ms),
            Kind::DeleteJob(c) => self.delete_job(&c.job_id),
            Kind::RegisterNode(c) => self.register_node(c, at_ms),
            Kind::NodeDown(c) => self.node_down(&c.node, at_ms),
            Kind::Assign(c) => Ok(self.assign(c, at_ms)),
            Kind::JobProgress(c) => self.job_progress(c),
            Kind::JobFinished(c) => self.job_finished(c, at_ms),
            Kind::JobPreview(c) => self.job_preview(c),
            Kind::ForgetJobs(c) => Ok(self.forget_jobs(&c.job_ids)),
            Kind::JobFailed(c) => self.job_failed(c, at_ms),
            Kind::UpsertQueue(c) => self.upsert_queue(c),
            Kind::DeleteQueue(c) => self.delete_queue(&c.name),
            Kind::PreemptJobs(c) => Ok(self.preempt_jobs(c, at_ms)),
            Kind::JobCheckpointed(c) => self.job_checkpointed(c, at_ms),
            Kind::CordonNode(c) => self.cordon_node(c),
            Kind::RequeueJob(c) => self.requeue_job(c, at_ms),
            Kind::NodeDraining(c) => self.node_draining(c),
            Kind::UpsertTenant(c) => self.upsert_tenant(c),
            Kind::DeleteTenant(c) => self.delete_tenant(&c.name),
            Kind::CreateKey(c) => self.create_key(c),
            Kind::RevokeKey(c) => self.revoke_key(&c.id),
            Kind::RestoreState(c) => self.restore_state(c, at_ms),
        }
    }

    /// Records that an entry without a command (a leader's empty entry, a
    /// membership change) was applied.
    pub fn skip(&mut self, index: u64) {
        self.applied_index = index;
        self.changed.clear();
    }

    pub fn applied_index(&self) -> u64 {
        self.applied_index
    }

    /// Records a membership change applied at `index`: replica `id` joins at
    /// `address`, or leaves (`address` None).
    pub fn apply_membership(&mut self, index: u64, id: u64, address: Option<&str>) {
        self.skip(index);
        match address {
            Some(address) => {
                self.members.insert(id, address.to_string());
            }
            None => {
                self.members.remove(&id);
            }
        }
    }

    /// Replica id -> address, as recorded by membership changes.
    pub fn members(&self) -> &BTreeMap<u64, String> {
        &self.members
    }

    pub fn job(&self, id: &str) -> Option<&Job> {
        self.jobs.get(id)
    }

    /// All jobs, ordered by id.
    pub fn jobs(&self) -> impl Iterator<Item = &Job> {
        self.jobs.values()
    }

    /// How many pending jobs will be considered before `job`.
    pub fn jobs_ahead(&self, job: &Job) -> usize {
        match self.pending.last_key_value() {
            // A job just submitted is last: no need to count.
            Some((last, _)) if *last == job.position => self.pending.len() - 1,
            _ => self.pending.range(..job.position).count(),
        }
    }

    /// Pending jobs in the order they are to be placed.
    pub fn pending_jobs(&self) -> impl Iterator<Item = &Job> {
        self.pending.values().filter_map(|id| self.jobs.get(id))
    }

    pub fn node(&self, name: &str) -> Option<&Node> {
        self.nodes.get(name)
    }

    pub fn nodes(&self) -> impl Iterator<Item = &Node> {
        self.nodes.values()
    }

    /// Jobs changed by the last applied entry.
    pub fn changed_jobs(&self) -> impl Iterator<Item = &Job> {
        self.changed.iter().filter_map(|id| self.jobs.get(id))
    }

    /// Number of jobs in each state, zeros included.
    pub fn count_by_state(&self) -> BTreeMap<JobState, usize> {
        let mut counts: BTreeMap<JobState, usize> =
            JobState::ALL.into_iter().map(|s| (s, 0)).collect();
        for job in self.jobs.values() {
            *counts.entry(job.state).or_insert(0) += 1;
        }
        counts
    }

    fn mark_changed(&mut self, job_id: &str) {
        if !self.changed.iter().any(|c| c == job_id) {
            self.changed.push(job_id.to_string());
        }
    }

    /// Takes a running job off its node and puts it back at its old place in
    /// the pending order; its lease becomes stale.
    /// A checkpointed job keeps its checkpoint's step.
    fn requeue(&mut self, job_id: &str, at_ms: i64) {
        self.release_devices(job_id, at_ms);
        if let Some(job) = self.jobs.get_mut(job_id) {
            job.state = JobState::Pending;
            job.requeues += 1;
            job.step = job.resume_step();
            job.preempting.clear();
            job.queued_at_ms = at_ms;
            job.device_ids.clear();
            self.pending.insert(job.position, job.id.clone());
        }
        self.mark_changed(job_id);
    }

    /// Frees the devices a job holds on its node, and charges the lease
    /// that ends to its queue's budget.
    fn release_devices(&mut self, job_id: &str, at_ms: i64) {
        let Some(job) = self.jobs.get(job_id) else {
            return;
        };
        let node = job.node.clone();
        if job.state == JobState::Running {
            let lease = (job.leased_at_ms, job.device_ids.len() as u64);
            let queue = job.spec.queue.clone();
            self.charge_budget(&queue, lease, at_ms);
        }
        if let Some(node) = self.nodes.get_mut(&node) {
            node.busy.retain(|_, holder| holder != job_id);
        }
    }
}

#[cfg(test)]
mod tests;
