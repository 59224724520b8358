//! Job commands: submit, cancel, assign, progress, finish, fail.

use std::collections::BTreeSet;

use genfleet_proto as pb;
use pb::JobState;

use super::{Outcome, Rejection, State};
use crate::spec;

/// A message field the command cannot do without.
fn required<'a, T>(field: &'a Option<T>, missing: &'static str) -> Result<&'a T, Rejection> {
    field.as_ref().ok_or(Rejection::Malformed(missing))
}

/// Longest preemption reason a log entry may carry.
const MAX_REASON_LEN: usize = 64;
/// Longest checkpoint URI a log entry may carry.
const MAX_URI_LEN: usize = 2048;

/// A job as the replicated state holds it.
#[derive(Debug, Clone, PartialEq)]
pub struct Job {
    pub id: String,
    pub spec: pb::JobSpec,
    pub state: JobState,
    /// Node running the job, or that last ran it.
    pub node: String,
    pub device_ids: Vec<u32>,
    /// Epoch of the job's current lease; 0 before the first assignment.
    pub lease_epoch: u64,
    /// Denoising steps done, as last replicated.
    pub step: u32,
    pub created_at_ms: i64,
    pub started_at_ms: i64,
    pub finished_at_ms: i64,
    pub artifacts: Vec<pb::Artifact>,
    pub message: String,
    pub requeues: u32,
    /// Place in the pending order, kept across requeues.
    pub position: u64,
    /// The client's idempotency key, if it gave one.
    pub request_id: String,
    /// Why a running job was told to checkpoint and stop; empty if it was not.
    pub preempting: String,
    /// Where a preempted job resumes from.
    pub checkpoint: Option<pb::JobCheckpoint>,
    /// Work is being preempted so this pending job can start.
    pub nominated: bool,
    /// When the current (or last) lease began.
    pub leased_at_ms: i64,
    /// When the job last entered the queue.
    pub queued_at_ms: i64,
    pub preemptions: u32,
    /// When the running job was told to checkpoint.
    pub preempted_at_ms: i64,
    /// The tenant that submitted it; empty: an admin.
    pub tenant: String,
    /// Words of the prompt its model does not know, as the leader found
    /// them at submit.
    pub unknown_words: Vec<String>,
}

/// The idempotency map's key: a request id is its tenant's own, so one
/// tenant's retry never answers with another's job.
pub(super) fn request_key(tenant: &str, request_id: &str) -> String {
    if tenant.is_empty() {
        request_id.to_string()
    } else {
        format!("{tenant}\u{0}{request_id}")
    }
}

/// Most entries a job's unknown-word list may hold.
const MAX_UNKNOWN_WORDS: usize = 256;

/// The leader's list of a prompt's unknown words, bounded: at most
/// [`MAX_UNKNOWN_WORDS`] entries, none empty or twice, each no longer than
/// the prompt and all together at most twice its length (an entry is a
/// prompt word, or a colour word and "background"). Checked on bytes only:
/// a check that used Unicode case tables could judge an old log entry
/// differently under a newer toolchain and split the replicas.
fn check_unknown_words(unknown: &[String], prompt: &str) -> Result<(), Rejection> {
    let bound = prompt.len().saturating_mul(2);
    let total: usize = unknown.iter().map(String::len).sum();
    let mut seen = BTreeSet::new();
    let valid = unknown.len() <= MAX_UNKNOWN_WORDS
        && total <= bound
        && unknown
            .iter()
            .all(|entry| !entry.is_empty() && entry.len() <= prompt.len() && seen.insert(entry));
    if valid {
        Ok(())
    } else {
        Err(Rejection::Malformed(
            "an unknown-word list longer than its prompt allows",
        ))
    }
}

impl Job {
    pub fn to_proto(&self) -> pb::Job {
        pb::Job {
            id: self.id.clone(),
            spec: Some(self.spec.clone()),
            state: self.state as i32,
            node: self.node.clone(),
            lease_epoch: self.lease_epoch,
            step: self.step,
            created_at_ms: self.created_at_ms,
            started_at_ms: self.started_at_ms,
            finished_at_ms: self.finished_at_ms,
            artifacts: self.artifacts.clone(),
            message: self.message.clone(),
            pending_reason: String::new(),
            eta_seconds: None,
            simulated: false,
            requeues: self.requeues,
            request_id: self.request_id.clone(),
            preempting: self.preempting.clone(),
            checkpoint: self.checkpoint.clone(),
            nominated: self.nominated,
            leased_at_ms: self.leased_at_ms,
            queued_at_ms: self.queued_at_ms,
            preemptions: self.preemptions,
            preempted_at_ms: self.preempted_at_ms,
            tenant: self.tenant.clone(),
            position: self.position,
            unknown_words: self.unknown_words.clone(),
        }
    }

    /// The step a new lease starts from: the checkpoint's, if any.
    pub fn resume_step(&self) -> u32 {
        self.checkpoint.as_ref().map_or(0, |c| c.step)
    }

    /// Whether `lease` is this job's live lease.
    pub fn is_leased_by(&self, lease: &pb::JobLease) -> bool {
        self.state == JobState::Running && self.lease_epoch == lease.lease_epoch
    }
}

impl State {
    pub(super) fn submit_job(
        &mut self,
        c: &pb::SubmitJob,
        at_ms: i64,
    ) -> Result<Outcome, Rejection> {
        let request = request_key(&c.tenant, &c.request_id);
        let retried = self.requests.get(&request).and_then(|id| self.jobs.get(id));
        if let Some(existing) = retried {
            // A retry of a submit that was applied already: the same job.
            return Ok(Outcome::Job(Box::new(existing.clone())));
        }
        let spec = c
            .spec
            .clone()
            .ok_or(Rejection::Malformed("submit without a job spec"))?;
        spec::validate(&spec)?;
        if !self.queue_exists(&spec.queue) {
            return Err(Rejection::UnknownQueue(spec.queue.clone()));
        }
        if !c.tenant.is_empty() {
            self.check_tenant_submit(&c.tenant, &spec)?;
        }
        if !genfleet_proto::is_valid_name(&c.job_id) {
            return Err(Rejection::Malformed("a job id must be a valid name"));
        }
        if self.jobs.contains_key(&c.job_id) {
            return Err(Rejection::DuplicateJob(c.job_id.clone()));
        }
        check_unknown_words(&c.unknown_words, &spec.prompt)?;
        let position = self.next_position;
        self.next_position += 1;
        let job = Job {
            id: c.job_id.clone(),
            spec,
            state: JobState::Pending,
            node: String::new(),
            device_ids: Vec::new(),
            lease_epoch: 0,
            step: 0,
            created_at_ms: at_ms,
            started_at_ms: 0,
            finished_at_ms: 0,
            artifacts: Vec::new(),
            message: String::new(),
            requeues: 0,
            position,
            request_id: c.request_id.clone(),
            preempting: String::new(),
            checkpoint: None,
            nominated: false,
            leased_at_ms: 0,
            queued_at_ms: at_ms,
            preemptions: 0,
            preempted_at_ms: 0,
            tenant: c.tenant.clone(),
            unknown_words: c.unknown_words.clone(),
        };
        if !c.request_id.is_empty() {
            self.requests.insert(request, job.id.clone());
        }
        if !job.tenant.is_empty() {
            *self
                .unfinished_by_tenant
                .entry(job.tenant.clone())
                .or_default() += 1;
        }
        self.pending.insert(position, job.id.clone());
        self.jobs.insert(job.id.clone(), job.clone());
        self.mark_changed(&c.job_id);
        Ok(Outcome::Job(Box::new(job)))
    }

    pub(super) fn cancel_job(&mut self, job_id: &str, at_ms: i64) -> Result<Outcome, Rejection> {
        let job = self
            .jobs
            .get(job_id)
            .ok_or_else(|| Rejection::UnknownJob(job_id.to_string()))?;
        if job.state.is_terminal() {
            return Err(Rejection::AlreadyEnded {
                job: job_id.to_string(),
                state: job.state.label(),
            });
        }
        let position = job.position;
        self.release_devices(job_id, at_ms);
        self.pending.remove(&position);
        let job = self.end_job(job_id, JobState::Cancelled, at_ms, "cancelled by request")?;
        Ok(Outcome::Job(Box::new(job)))
    }

    /// Retention: removes the ended jobs among `ids`; others are kept.
    pub(super) fn forget_jobs(&mut self, ids: &[String]) -> Outcome {
        let forgotten = ids.iter().filter(|id| self.delete_job(id).is_ok()).count();
        Outcome::Forgotten(forgotten)
    }

    /// Ended jobs that retention removes now: those that ended before
    /// `ended_before_ms`, and the oldest beyond the newest `keep`; oldest
    /// first, at most `limit`.
    pub fn expired_jobs(&self, ended_before_ms: i64, keep: usize, limit: usize) -> Vec<String> {
        let mut ended: Vec<(i64, &str)> = self
            .jobs
            .values()
            .filter(|j| j.state.is_terminal())
            .map(|j| (j.finished_at_ms, j.id.as_str()))
            .collect();
        ended.sort_unstable();
        let over = ended.len().saturating_sub(keep);
        ended
            .iter()
            .enumerate()
            .take_while(|(i, (finished, _))| *i < over || *finished < ended_before_ms)
            .take(limit)
            .map(|(_, (_, id))| id.to_string())
            .collect()
    }

    pub(super) fn delete_job(&mut self, job_id: &str) -> Result<Outcome, Rejection> {
        let job = self
            .jobs
            .get(job_id)
            .ok_or_else(|| Rejection::UnknownJob(job_id.to_string()))?;
        if !job.state.is_terminal() {
            return Err(Rejection::NotEnded {
                job: job_id.to_string(),
                state: job.state.label(),
            });
        }
        if !job.request_id.is_empty() {
            self.requests
                .remove(&request_key(&job.tenant, &job.request_id));
        }
        // Gone from the state, kept for the planner (`trace export`).
        self.history.push(super::HistoryRecord::of(job));
        self.jobs.remove(job_id);
        Ok(Outcome::Done)
    }

    /// Applies a batch of placements, each on its own: one that no longer
    /// fits (the job left pending, the node went down, devices got taken) is
    /// rejected without affecting the others.
    pub(super) fn assign(&mut self, c: &pb::Assign, at_ms: i64) -> Outcome {
        let results = c.placements.iter().map(|p| self.place(p, at_ms)).collect();
        Outcome::Assigned(results)
    }

    fn place(&mut self, p: &pb::Placement, at_ms: i64) -> Result<u64, Rejection> {
        let job = self
            .jobs
            .get(&p.job_id)
            .ok_or_else(|| Rejection::UnknownJob(p.job_id.clone()))?;
        if job.state != JobState::Pending {
            return Err(Rejection::NotPending {
                job: p.job_id.clone(),
                state: job.state.label(),
            });
        }
        let node = self
            .nodes
            .get(&p.node)
            .ok_or_else(|| Rejection::UnknownNode(p.node.clone()))?;
        node.check_placement(job, &p.device_ids)
            .map_err(|why| Rejection::Placement {
                job: p.job_id.clone(),
                node: p.node.clone(),
                why,
            })?;
        self.last_lease_epoch += 1;
        let epoch = self.last_lease_epoch;
        let position = job.position;
        if let Some(node) = self.nodes.get_mut(&p.node) {
            for device in &p.device_ids {
                node.busy.insert(*device, p.job_id.clone());
            }
        }
        self.pending.remove(&position);
        if let Some(job) = self.jobs.get_mut(&p.job_id) {
            job.state = JobState::Running;
            job.node = p.node.clone();
            job.device_ids = p.device_ids.clone();
            job.lease_epoch = epoch;
            job.step = job.resume_step();
            job.leased_at_ms = at_ms;
            job.nominated = false;
            job.preempting.clear();
            if job.started_at_ms == 0 {
                job.started_at_ms = at_ms;
            }
        }
        self.mark_changed(&p.job_id);
        Ok(epoch)
    }

    pub(super) fn job_progress(&mut self, c: &pb::JobProgress) -> Result<Outcome, Rejection> {
        let lease = required(&c.lease, "progress without a lease")?;
        let job = self.leased_job_mut(lease)?;
        let total = job.spec.steps;
        job.step = job.step.max(c.step.min(total));
        // A periodic checkpoint: where the job resumes if it is requeued.
        // One that could not be resumed from is ignored (the progress still
        // counts). Any other from the live lease replaces the recorded one,
        // even at a lower step, as a preemption's does: the worker may have
        // found the old one unreadable and started over. (A lease's
        // checkpoints arrive in step order: its worker stores one at a time.)
        if let Some(saved) = &c.checkpoint {
            let usable = saved.step > 0
                && saved.step < total
                && !saved.uri.is_empty()
                && saved.uri.len() <= MAX_URI_LEN;
            if usable {
                job.checkpoint = Some(saved.clone());
            }
        }
        let id = job.id.clone();
        self.mark_changed(&id);
        Ok(Outcome::Done)
    }

    pub(super) fn job_finished(
        &mut self,
        c: &pb::JobFinished,
        at_ms: i64,
    ) -> Result<Outcome, Rejection> {
        let lease = required(&c.lease, "finish without a lease")?;
        let job = self.leased_job_mut(lease)?;
        // The preview stays beside the final files.
        let previews = job.artifacts.iter().filter(|a| is_preview(a)).cloned();
        let finals = c.artifacts.iter().filter(|a| !is_preview(a)).cloned();
        job.artifacts = finals.chain(previews).collect();
        job.step = job.spec.steps;
        self.release_devices(&lease.job_id, at_ms);
        let job = self.end_job(&lease.job_id, JobState::Completed, at_ms, "")?;
        Ok(Outcome::Job(Box::new(job)))
    }

    /// A running job's preview: replaces the one it had, if any.
    pub(super) fn job_preview(&mut self, c: &pb::JobPreview) -> Result<Outcome, Rejection> {
        let lease = required(&c.lease, "preview without a lease")?;
        if c.artifacts.is_empty() || !c.artifacts.iter().all(is_preview) {
            return Err(Rejection::Malformed(
                "a preview lists only preview and preview_thumbnail artifacts",
            ));
        }
        let job = self.leased_job_mut(lease)?;
        job.artifacts.retain(|a| !is_preview(a));
        job.artifacts.extend(c.artifacts.iter().cloned());
        let id = job.id.clone();
        self.mark_changed(&id);
        Ok(Outcome::Done)
    }

    pub(super) fn job_failed(
        &mut self,
        c: &pb::JobFailed,
        at_ms: i64,
    ) -> Result<Outcome, Rejection> {
        let lease = required(&c.lease, "failure without a lease")?;
        self.leased_job_mut(lease)?;
        self.release_devices(&lease.job_id, at_ms);
        let job = self.end_job(&lease.job_id, JobState::Failed, at_ms, &c.message)?;
        Ok(Outcome::Job(Box::new(job)))
    }

    /// Marks running jobs to be checkpointed and stopped, each on its own:
    /// one whose lease has changed since the cycle decided is refused.
    pub(super) fn preempt_jobs(&mut self, c: &pb::PreemptJobs, at_ms: i64) -> Outcome {
        let results = c
            .preemptions
            .iter()
            .map(|p| self.preempt(p, at_ms))
            .collect();
        Outcome::Preempted(results)
    }

    fn preempt(&mut self, p: &pb::Preemption, at_ms: i64) -> Result<(), Rejection> {
        let lease = required(&p.lease, "preemption without a lease")?;
        if p.reason.is_empty() || p.reason.len() > MAX_REASON_LEN {
            return Err(Rejection::Malformed(
                "a preemption needs a reason of at most 64 bytes",
            ));
        }
        let job = self.leased_job_mut(lease)?;
        if job.preempting.is_empty() {
            job.preempting = p.reason.clone();
            job.preempted_at_ms = at_ms;
        }
        self.mark_changed(&lease.job_id);
        if let Some(for_job) = self.jobs.get_mut(&p.for_job) {
            if for_job.state == JobState::Pending {
                for_job.nominated = true;
                self.mark_changed(&p.for_job);
            }
        }
        Ok(())
    }

    /// A preempted job saved its progress: back to its place in the queue,
    /// to resume from the checkpoint.
    pub(super) fn job_checkpointed(
        &mut self,
        c: &pb::JobCheckpointed,
        at_ms: i64,
    ) -> Result<Outcome, Rejection> {
        let lease = required(&c.lease, "checkpoint without a lease")?;
        let checkpoint = c.checkpoint.as_ref().ok_or(Rejection::Malformed(
            "checkpoint report without a checkpoint",
        ))?;
        let draining = self
            .jobs
            .get(&lease.job_id)
            .and_then(|j| self.nodes.get(&j.node))
            .is_some_and(|n| n.draining);
        let job = self.leased_job_mut(lease)?;
        let preempted = !job.preempting.is_empty();
        if !preempted && !draining {
            return Err(Rejection::NotPreempting(lease.job_id.clone()));
        }
        if checkpoint.step >= job.spec.steps || (checkpoint.step == 0 && !checkpoint.uri.is_empty())
        {
            return Err(Rejection::BadCheckpoint {
                job: lease.job_id.clone(),
                why: format!(
                    "step {} is outside 1..{} (or 0 without data)",
                    checkpoint.step, job.spec.steps
                ),
            });
        }
        if checkpoint.uri.len() > MAX_URI_LEN {
            return Err(Rejection::BadCheckpoint {
                job: lease.job_id.clone(),
                why: format!("a URI of over {MAX_URI_LEN} bytes"),
            });
        }
        // A checkpoint at step 0 has nothing in it: keep an older one. Any
        // other from the live lease replaces it, even at a lower step: the
        // worker may have found the old one unreadable and started over.
        if checkpoint.step > 0 {
            job.checkpoint = Some(checkpoint.clone());
        }
        if preempted {
            job.preemptions += 1;
        }
        self.requeue_to_outcome(&lease.job_id, at_ms)
    }

    /// Ends a running job's lease without a result and requeues it (see
    /// [`pb::RequeueJob`]).
    pub(super) fn requeue_job(
        &mut self,
        c: &pb::RequeueJob,
        at_ms: i64,
    ) -> Result<Outcome, Rejection> {
        let lease = required(&c.lease, "requeue without a lease")?;
        self.leased_job_mut(lease)?;
        self.requeue_to_outcome(&lease.job_id, at_ms)
    }

    /// Requeues a running job; returns it as it now is.
    fn requeue_to_outcome(&mut self, job_id: &str, at_ms: i64) -> Result<Outcome, Rejection> {
        self.requeue(job_id, at_ms);
        let job = self
            .jobs
            .get(job_id)
            .cloned()
            .ok_or_else(|| Rejection::UnknownJob(job_id.to_string()))?;
        Ok(Outcome::Job(Box::new(job)))
    }

    /// The job `lease` names, if that lease is still the live one.
    fn leased_job_mut(&mut self, lease: &pb::JobLease) -> Result<&mut super::Job, Rejection> {
        let job = self
            .jobs
            .get_mut(&lease.job_id)
            .ok_or_else(|| Rejection::UnknownJob(lease.job_id.clone()))?;
        if !job.is_leased_by(lease) {
            return Err(Rejection::StaleLease {
                job: lease.job_id.clone(),
                epoch: lease.lease_epoch,
                current: job.lease_epoch,
            });
        }
        Ok(job)
    }

    /// Moves a job to a terminal state; returns it as it now is.
    fn end_job(
        &mut self,
        job_id: &str,
        state: JobState,
        at_ms: i64,
        message: &str,
    ) -> Result<Job, Rejection> {
        let job = self
            .jobs
            .get_mut(job_id)
            .ok_or_else(|| Rejection::UnknownJob(job_id.to_string()))?;
        if !job.state.is_terminal() {
            if let Some(count) = self.unfinished_by_tenant.get_mut(&job.tenant) {
                *count = count.saturating_sub(1);
            }
        }
        job.state = state;
        job.finished_at_ms = at_ms;
        job.message = message.to_string();
        job.device_ids.clear();
        let job = job.clone();
        self.mark_changed(job_id);
        Ok(job)
    }
}

/// Kinds of the files a job's preview is made of.
pub const PREVIEW_KINDS: [&str; 2] = ["preview", "preview_thumbnail"];

fn is_preview(artifact: &pb::Artifact) -> bool {
    PREVIEW_KINDS.contains(&artifact.kind.as_str())
}
