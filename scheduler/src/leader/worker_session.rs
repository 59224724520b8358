//! A worker's session, as the leader runs it: it sends the worker the jobs
//! leased to its node, stops those whose lease is no longer live, records
//! progress, previews and results, and times steps. What the worker should
//! be running is always derived from the replicated state, so a reconnect,
//! a lagging event stream or a lying worker all end in the same
//! reconciliation. The gRPC edge that authenticates and registers the
//! worker is `api/workers.rs`.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use genfleet_proto as pb;
use pb::scheduler_message::Msg as Down;
use pb::worker_message::Msg as Up;
use pb::JobState;
use tokio::sync::{broadcast, mpsc, watch};
use tonic::{Status, Streaming};

use super::artifact_rules::ArtifactRules;
use super::node_events::{NodeEvent, Subscription};
use super::{SessionGuard, Sessions};
use crate::api::route::Router;
use crate::metrics::Metrics;
use crate::raft::{JobEvent, ProposeError, RaftHandle};
use crate::scheduling;
use crate::state::{Job, State};

const MAX_ARTIFACTS: usize = 16;
const MAX_URI_LEN: usize = 2048;
const MAX_MESSAGE_LEN: usize = 4096;

#[derive(Debug, Clone)]
pub struct SessionConfig {
    /// How often workers send a heartbeat.
    pub heartbeat_interval: Duration,
    /// A session silent this long is closed.
    pub silence_timeout: Duration,
    /// Time a new stream has to send its Register.
    pub register_timeout: Duration,
}

/// What every session of this replica shares.
#[derive(Clone)]
pub struct SessionContext {
    pub raft: RaftHandle,
    pub router: Arc<Router>,
    pub sessions: Arc<Sessions>,
    pub metrics: Metrics,
    pub config: SessionConfig,
    /// Where workers' files must be: see [`ArtifactRules`].
    pub artifacts: Arc<ArtifactRules>,
}

pub struct Session {
    node: String,
    /// The worker process, as it registered.
    instance: String,
    /// What every session of this replica shares.
    context: SessionContext,
    tx: mpsc::Sender<Result<pb::SchedulerMessage, Status>>,
    /// Job -> lease epoch the worker has been told to run (or said it runs).
    sent: HashMap<String, u64>,
    /// Job -> lease epoch the worker has been told to checkpoint.
    preempt_sent: HashMap<String, u64>,
    /// Job -> last step written to the log.
    replicated_steps: HashMap<String, u32>,
    /// Job -> (lease epoch, step) of the last periodic checkpoint written
    /// to the log: a worker's repeats of it cost no log entry.
    recorded_checkpoints: HashMap<String, (u64, u32)>,
    /// Job -> last step reported and when it arrived, to time steps.
    step_clock: HashMap<String, (u32, Instant)>,
    _guard: SessionGuard,
}

impl Session {
    /// The session of a worker that just registered `register`; it sends
    /// on `tx`.
    pub fn new(
        register: &pb::Register,
        context: &SessionContext,
        tx: mpsc::Sender<Result<pb::SchedulerMessage, Status>>,
    ) -> Self {
        Session {
            node: register.node.clone(),
            instance: register.instance.clone(),
            context: context.clone(),
            tx,
            sent: register
                .running
                .iter()
                .map(|l| (l.job_id.clone(), l.lease_epoch))
                .collect(),
            preempt_sent: HashMap::new(),
            replicated_steps: HashMap::new(),
            recorded_checkpoints: HashMap::new(),
            step_clock: HashMap::new(),
            _guard: context.sessions.open(&register.node),
        }
    }

    /// The node it serves.
    pub fn node(&self) -> &str {
        &self.node
    }
}

/// Why a worker's result cannot be recorded as sent, if it cannot.
fn result_refusal(f: &pb::Finished) -> Option<String> {
    // None is fine: simulated devices make no files.
    let bad = f.artifacts.len() > MAX_ARTIFACTS
        || f.artifacts
            .iter()
            .any(|a| a.uri.is_empty() || a.uri.len() > MAX_URI_LEN);
    bad.then(|| {
        format!("a result may list at most {MAX_ARTIFACTS} artifacts, each with a URI of 1 to {MAX_URI_LEN} bytes")
    })
}

/// The checks a session makes of a worker's message before it acts on it,
/// without a session (the fuzzing campaign): what it would refuse.
pub fn check_worker_message(message: &pb::WorkerMessage) -> Option<String> {
    match &message.msg {
        Some(Up::Failed(f)) => {
            let mut text = f.message.clone();
            clip(&mut text, MAX_MESSAGE_LEN);
            None
        }
        Some(Up::Progress(p)) => {
            worth_replicating(0, p.step, p.total_steps);
            worth_replicating(u32::MAX, p.step, p.total_steps);
            None
        }
        Some(Up::Finished(f)) => result_refusal(f),
        _ => None,
    }
}

/// Why a report from `node` under `lease` is refused, if it is (see
/// [`Session::not_leased_here`]).
fn lease_refusal(state: &State, node: &str, lease: &pb::JobLease) -> Option<String> {
    match state.job(&lease.job_id) {
        Some(j) if j.node == node && j.lease_epoch == lease.lease_epoch => None,
        Some(j) if j.node == node => Some(format!(
            "stale lease {} (the job's lease is {} now)",
            lease.lease_epoch, j.lease_epoch
        )),
        _ => Some("this job is not leased to this node".to_string()),
    }
}

/// A running job's model, flavor, tp and pixels x frames, whose step
/// times teach the throughput profile.
type Placement = (String, String, u32, u64);

/// Where `job` runs, for the profile; None on simulated devices: they sleep
/// the profile's own estimate, and learning from them would feed it back
/// with the timer's overhead added.
fn placement(state: &State, job: &Job) -> Option<Placement> {
    let group = scheduling::job_group(state, job)?;
    if group.simulated {
        return None;
    }
    Some((
        job.spec.model.clone(),
        group.flavor.clone(),
        job.spec.tp,
        scheduling::pixel_frames(&job.spec),
    ))
}

/// Cuts `text` to at most `max` bytes, at a character boundary (a worker's
/// message may be any UTF-8).
fn clip(text: &mut String, max: usize) {
    let end = text.floor_char_boundary(max);
    text.truncate(end);
}

/// Whether a progress report to `step` (of `total`) goes to the log, the
/// last one there being at `last`: coarse progress only, about every
/// quarter of the run. Any numbers a worker sends are safe here.
fn worth_replicating(last: u32, step: u32, total: u32) -> bool {
    let stride = (total / 4).max(1);
    step >= last.saturating_add(stride)
}

/// Why a session ended, for the log.
pub type EndReason = String;

impl Session {
    pub async fn run(
        mut self,
        mut inbound: Streaming<pb::WorkerMessage>,
        mut events: Subscription,
        mut stop: watch::Receiver<bool>,
    ) -> EndReason {
        let mut status = self.context.raft.watch_status();
        let registered = Down::Registered(pb::Registered {
            node: self.node.clone(),
            heartbeat_interval_ms: self.context.config.heartbeat_interval.as_millis() as u64,
        });
        if !self.send(registered).await {
            return "worker went away".into();
        }
        if !self.reconcile_all().await {
            return "worker went away".into();
        }
        loop {
            tokio::select! {
                _ = stop.changed() => {
                    let _ = self.tx.send(Err(Status::unavailable("the scheduler is shutting down"))).await;
                    return "scheduler shutting down".into();
                }
                _ = status.changed() => {
                    if !status.borrow().leader_ready {
                        let leader = self.context.raft.status().leader;
                        let refusal = self.context.router.refusal(&ProposeError::NotLeader { leader });
                        let _ = self.tx.send(Err(refusal)).await;
                        return "this replica is no longer the leader".into();
                    }
                }
                message = tokio::time::timeout(self.context.config.silence_timeout, inbound.message()) => {
                    match message {
                        Err(_) => return format!("worker silent for {:?}", self.context.config.silence_timeout),
                        Ok(Ok(Some(m))) => {
                            if let Err(reason) = self.handle(m).await {
                                return reason;
                            }
                        }
                        Ok(Ok(None)) => return "worker closed the stream".into(),
                        Ok(Err(status)) => return format!("stream error: {}", status.message()),
                    }
                }
                event = events.events.recv() => {
                    let delivered = match event {
                        Ok(NodeEvent::Job(id)) => self.reconcile_now(&id).await,
                        Ok(NodeEvent::Resync) | Err(broadcast::error::RecvError::Lagged(_)) => {
                            self.reconcile_all().await
                        }
                        Err(broadcast::error::RecvError::Closed) => return "raft replica stopped".into(),
                    };
                    if !delivered {
                        return "worker went away".into();
                    }
                }
            }
        }
    }

    /// Handles one message from the worker; Err ends the session.
    async fn handle(&mut self, message: pb::WorkerMessage) -> Result<(), EndReason> {
        match message.msg {
            Some(Up::Heartbeat(_)) | None => Ok(()),
            Some(Up::Register(_)) => {
                tracing::warn!(node = %self.node, "ignored a second Register on one session");
                Ok(())
            }
            Some(Up::Progress(p)) => self.on_progress(p).await,
            Some(Up::Preview(p)) => self.on_preview(p).await,
            Some(Up::CheckpointSaved(c)) => self.on_checkpoint_saved(c).await,
            Some(Up::Finished(f)) => {
                let lease = f.lease.clone().unwrap_or_default();
                let foreign = || {
                    f.artifacts
                        .iter()
                        .find_map(|a| self.context.artifacts.refusal(&lease.job_id, &a.uri))
                };
                if let Some(why) = result_refusal(&f).or_else(foreign) {
                    return self.report_failure(lease, why).await;
                }
                let finished = pb::JobFinished {
                    lease: f.lease,
                    artifacts: f.artifacts,
                };
                self.report(lease, pb::command::Kind::JobFinished(finished))
                    .await
            }
            Some(Up::Draining(_)) => {
                tracing::info!(node = %self.node, "worker draining: no new work for its node");
                let draining = pb::NodeDraining {
                    node: self.node.clone(),
                    instance: self.instance.clone(),
                };
                let command = pb::command::Kind::NodeDraining(draining);
                match self
                    .context
                    .raft
                    .propose(pb::Command {
                        kind: Some(command),
                    })
                    .await
                {
                    Ok(applied) => {
                        if let Err(why) = applied.result {
                            tracing::warn!(node = %self.node, %why, "drain refused");
                        }
                        Ok(())
                    }
                    Err(e) => Err(e.to_string()),
                }
            }
            Some(Up::Checkpointed(c)) => {
                let lease = c.lease.clone().unwrap_or_default();
                let uri = c.checkpoint.as_ref().map_or("", |k| k.uri.as_str());
                // Simulated devices checkpoint a step with no file. Checked
                // here so an oversized or foreign file never reaches the log.
                let refusal = (!uri.is_empty())
                    .then(|| self.file_refusal(&lease.job_id, uri))
                    .flatten();
                if let Some(why) = refusal {
                    return self.report_failure(lease, why).await;
                }
                let checkpointed = pb::JobCheckpointed {
                    lease: c.lease,
                    checkpoint: c.checkpoint,
                };
                self.report(lease, pb::command::Kind::JobCheckpointed(checkpointed))
                    .await
            }
            Some(Up::Failed(mut f)) => {
                let lease = f.lease.clone().unwrap_or_default();
                clip(&mut f.message, MAX_MESSAGE_LEN);
                let failed = pb::JobFailed {
                    lease: f.lease,
                    message: f.message,
                };
                self.report(lease, pb::command::Kind::JobFailed(failed))
                    .await
            }
        }
    }

    /// A worker's own result could not be accepted as sent: record the job as
    /// failed with why, if the lease is live.
    async fn report_failure(&mut self, lease: pb::JobLease, why: String) -> Result<(), EndReason> {
        let failed = pb::JobFailed {
            lease: Some(lease.clone()),
            message: format!("the worker's result was refused: {why}"),
        };
        self.report(lease, pb::command::Kind::JobFailed(failed))
            .await
    }

    async fn on_progress(&mut self, p: pb::Progress) -> Result<(), EndReason> {
        let lease = p.lease.clone().unwrap_or_default();
        // Every step of every job comes here: read the state once for the
        // lease check, the job to publish and where it runs.
        let view = self.context.raft.read(|state| {
            if lease_refusal(state, &self.node, &lease).is_some() {
                return None;
            }
            let job = state.job(&lease.job_id)?;
            Some((job.to_proto(), placement(state, job)))
        });
        let Some((mut job, placed)) =
            view.filter(|_| self.sent.get(&lease.job_id) == Some(&lease.lease_epoch))
        else {
            return self
                .settle(&lease, "no live lease for this job on this node")
                .await;
        };
        self.context
            .sessions
            .set_live_step(&lease.job_id, lease.lease_epoch, p.step);
        self.time_step(&lease.job_id, p.step, placed);
        self.context.sessions.overlay(&mut job);
        self.context.raft.publish(JobEvent { index: 0, job });
        let last = self
            .replicated_steps
            .get(&lease.job_id)
            .copied()
            .unwrap_or(0);
        if worth_replicating(last, p.step, p.total_steps) {
            self.replicated_steps.insert(lease.job_id.clone(), p.step);
            let progress = pb::JobProgress {
                lease: Some(lease.clone()),
                step: p.step,
                checkpoint: None,
            };
            return self
                .report(lease, pb::command::Kind::JobProgress(progress))
                .await;
        }
        Ok(())
    }

    /// Records where a running job can resume from (a periodic
    /// checkpoint). Best effort, like a preview: one that cannot be
    /// recorded (the lease moved on, a file outside the job's folder) is
    /// dropped and logged, and the job runs on.
    async fn on_checkpoint_saved(&mut self, c: pb::CheckpointSaved) -> Result<(), EndReason> {
        let lease = c.lease.clone().unwrap_or_default();
        let Some(checkpoint) = c.checkpoint else {
            return Ok(());
        };
        if self.sent.get(&lease.job_id) != Some(&lease.lease_epoch) {
            return Ok(());
        }
        // Within a lease checkpoints come in step order: one not after the
        // last recorded is a repeat, and earns no log entry.
        let last = self.recorded_checkpoints.get(&lease.job_id);
        if last.is_some_and(|&(epoch, step)| epoch == lease.lease_epoch && checkpoint.step <= step)
        {
            return Ok(());
        }
        // (The lease itself is checked when the entry is proposed.)
        if let Some(why) = self.file_refusal(&lease.job_id, &checkpoint.uri) {
            tracing::warn!(node = %self.node, job = %lease.job_id, %why, "a periodic checkpoint was dropped");
            return Ok(());
        }
        self.recorded_checkpoints
            .insert(lease.job_id.clone(), (lease.lease_epoch, checkpoint.step));
        let progress = pb::JobProgress {
            lease: Some(lease.clone()),
            step: checkpoint.step,
            checkpoint: Some(checkpoint),
        };
        self.report(lease, pb::command::Kind::JobProgress(progress))
            .await
    }

    /// Why a file a worker reports for `job` is refused, if it is: a URI
    /// of 1 to MAX_URI_LEN bytes, in the job's own folder of the store.
    fn file_refusal(&self, job: &str, uri: &str) -> Option<String> {
        if uri.is_empty() || uri.len() > MAX_URI_LEN {
            return Some(format!(
                "a file URI of {} bytes (1 to {MAX_URI_LEN})",
                uri.len()
            ));
        }
        self.context.artifacts.refusal(job, uri)
    }

    /// Records a running job's preview. Best effort: one that cannot be
    /// recorded (the lease moved on, bad URIs) is dropped and logged, and
    /// the job runs on.
    async fn on_preview(&mut self, p: pb::Preview) -> Result<(), EndReason> {
        let lease = p.lease.clone().unwrap_or_default();
        if self.sent.get(&lease.job_id) != Some(&lease.lease_epoch) {
            return Ok(());
        }
        if p.artifacts.len() > crate::state::PREVIEW_KINDS.len()
            || p.artifacts
                .iter()
                .any(|a| self.file_refusal(&lease.job_id, &a.uri).is_some())
            || self.not_leased_here(&lease).is_some()
        {
            tracing::warn!(node = %self.node, job = %lease.job_id, "a preview with bad artifacts was dropped");
            return Ok(());
        }
        let preview = pb::JobPreview {
            lease: Some(lease.clone()),
            artifacts: p.artifacts,
        };
        let command = pb::Command {
            kind: Some(pb::command::Kind::JobPreview(preview)),
        };
        match self.context.raft.propose(command).await {
            Ok(applied) => {
                if let Err(why) = applied.result {
                    tracing::info!(job = %lease.job_id, %why, "preview not recorded");
                }
                Ok(())
            }
            Err(e) => Err(format!("a preview could not be written: {e}")),
        }
    }

    /// Learns a step time from two progress reports of one job (the first
    /// report, which includes loading the model, only starts the clock).
    fn time_step(&mut self, job_id: &str, step: u32, placed: Option<Placement>) {
        let now = Instant::now();
        let Some((last, at)) = self.step_clock.insert(job_id.to_string(), (step, now)) else {
            return;
        };
        if step <= last {
            return;
        }
        let seconds = now.duration_since(at).as_secs_f64() / f64::from(step - last);
        if let Some((model, flavor, tp, pixel_frames)) = placed {
            let rate =
                self.context
                    .sessions
                    .observe_step(&model, &flavor, tp, pixel_frames, seconds);
            let tp = tp.to_string();
            self.context
                .metrics
                .profile_steps_per_second
                .with_label_values(&[model.as_str(), flavor.as_str(), tp.as_str()])
                .set(rate);
        }
    }

    /// Why a report under `lease` is not this session's to make, if it is
    /// not: a worker reports on its own node's jobs only, under their live
    /// lease. The lease epoch changes whenever a job is placed again, so a
    /// report that passes here and is applied under the same epoch is about
    /// a job still placed here.
    fn not_leased_here(&self, lease: &pb::JobLease) -> Option<String> {
        self.context
            .raft
            .read(|state| lease_refusal(state, &self.node, lease))
    }

    /// Writes a worker's report to the log; a refused one settles the lease.
    async fn report(
        &mut self,
        lease: pb::JobLease,
        kind: pb::command::Kind,
    ) -> Result<(), EndReason> {
        if let Some(why) = self.not_leased_here(&lease) {
            return self.settle(&lease, &why).await;
        }
        match self
            .context
            .raft
            .propose(pb::Command { kind: Some(kind) })
            .await
        {
            Ok(applied) => match applied.result {
                Ok(_) => Ok(()),
                Err(rejection) => self.settle(&lease, &rejection.to_string()).await,
            },
            // Not written: end the session, so the worker reconnects and
            // sends its unacknowledged reports again (dropping one here
            // would leave its job running in the state forever).
            Err(e) => {
                tracing::warn!(node = %self.node, error = %e, "a worker report was not written");
                Err(format!("a report could not be written: {e}"))
            }
        }
    }

    /// Tells the worker how a lease it spoke of ended: `done` if the job
    /// ended under that lease, `stop` otherwise.
    async fn settle(&mut self, lease: &pb::JobLease, reason: &str) -> Result<(), EndReason> {
        let ended_under_lease = self.context.raft.read(|state| {
            state.job(&lease.job_id).is_some_and(|j| {
                j.lease_epoch == lease.lease_epoch
                    && matches!(j.state, JobState::Completed | JobState::Failed)
            })
        });
        if self.sent.get(&lease.job_id) == Some(&lease.lease_epoch) {
            self.sent.remove(&lease.job_id);
        }
        let message = if ended_under_lease {
            Down::Done(lease.clone())
        } else {
            tracing::info!(node = %self.node, job = %lease.job_id, epoch = lease.lease_epoch, reason, "telling worker to stop a job");
            Down::Stop(pb::StopJob {
                lease: Some(lease.clone()),
                reason: reason.to_string(),
            })
        };
        if self.send(message).await {
            Ok(())
        } else {
            Err("worker went away".into())
        }
    }

    /// Brings the worker in line with the state for every job it runs or should.
    async fn reconcile_all(&mut self) -> bool {
        // The jobs that run here hold its devices: no scan of every job.
        let jobs: Vec<pb::Job> = self.context.raft.read(|state| {
            let here = state
                .node(&self.node)
                .into_iter()
                .flat_map(|n| n.busy.values());
            let ids: std::collections::BTreeSet<&String> = here.chain(self.sent.keys()).collect();
            ids.into_iter()
                .filter_map(|id| state.job(id))
                .filter(|j| {
                    (j.state == JobState::Running && j.node == self.node)
                        || self.sent.contains_key(&j.id)
                })
                .map(|j| j.to_proto())
                .collect()
        });
        let unknown: Vec<String> = self
            .sent
            .keys()
            .filter(|id| !jobs.iter().any(|j| &j.id == *id))
            .cloned()
            .collect();
        for id in unknown {
            if !self.stop_unknown(&id).await {
                return false;
            }
        }
        for job in &jobs {
            if !self.reconcile(job).await {
                return false;
            }
        }
        true
    }

    /// Reconciles job `id` as the state has it now. An event is only a
    /// hint that the job changed: it may be older than what this session
    /// has already read (events queue up while `reconcile_all` reads), and
    /// acting on its copy would stop and resend a job the worker runs.
    async fn reconcile_now(&mut self, id: &str) -> bool {
        let job = self
            .context
            .raft
            .read(|state| state.job(id).map(|j| j.to_proto()));
        match job {
            Some(job) => self.reconcile(&job).await,
            None if self.sent.contains_key(id) => self.stop_unknown(id).await,
            None => true,
        }
    }

    /// Stops a job the worker holds that the state no longer has.
    async fn stop_unknown(&mut self, id: &str) -> bool {
        let epoch = self.sent.remove(id).unwrap_or_default();
        let lease = pb::JobLease {
            job_id: id.to_string(),
            lease_epoch: epoch,
        };
        let stop = Down::Stop(pb::StopJob {
            lease: Some(lease),
            reason: "the scheduler has no such job".into(),
        });
        self.send(stop).await
    }

    /// Sends what makes the worker agree with `job`'s state; false if the
    /// worker is gone.
    async fn reconcile(&mut self, job: &pb::Job) -> bool {
        let wanted =
            (job.state() == JobState::Running && job.node == self.node).then_some(job.lease_epoch);
        let held = self.sent.get(&job.id).copied();
        let mut messages = Vec::new();
        if let Some(epoch) = held.filter(|h| Some(*h) != wanted) {
            self.sent.remove(&job.id);
            self.preempt_sent.remove(&job.id);
            self.replicated_steps.remove(&job.id);
            self.step_clock.remove(&job.id);
            let lease = pb::JobLease {
                job_id: job.id.clone(),
                lease_epoch: epoch,
            };
            let ended_here = epoch == job.lease_epoch
                && matches!(job.state(), JobState::Completed | JobState::Failed);
            if ended_here {
                self.context.sessions.forget_job(&job.id);
                messages.push(Down::Done(lease));
            } else {
                let reason = match job.state() {
                    JobState::Cancelled => "the job was cancelled".to_string(),
                    JobState::Pending => "the job was requeued".to_string(),
                    state => format!("the job is {} under another lease", state.label()),
                };
                messages.push(Down::Stop(pb::StopJob {
                    lease: Some(lease),
                    reason,
                }));
            }
        }
        if let Some(epoch) = wanted.filter(|w| Some(*w) != held) {
            self.sent.insert(job.id.clone(), epoch);
            let (device_ids, step_seconds) = self
                .context
                .raft
                .read(|state| {
                    let job = state.job(&job.id)?;
                    let step =
                        scheduling::step_seconds(state, job, &self.context.sessions.profile());
                    Some((job.device_ids.clone(), step))
                })
                .unwrap_or_default();
            messages.push(Down::Assignment(pb::Assignment {
                job_id: job.id.clone(),
                spec: job.spec.clone(),
                lease_epoch: epoch,
                device_ids,
                step_seconds,
                checkpoint: job.checkpoint.clone(),
                tenant: job.tenant.clone(),
            }));
        }
        let preempt = wanted.is_some() && !job.preempting.is_empty();
        if preempt && self.preempt_sent.get(&job.id) != Some(&job.lease_epoch) {
            self.preempt_sent.insert(job.id.clone(), job.lease_epoch);
            tracing::info!(node = %self.node, job = %job.id, reason = %job.preempting, "telling worker to checkpoint a job");
            messages.push(Down::Preempt(pb::PreemptJob {
                lease: Some(pb::JobLease {
                    job_id: job.id.clone(),
                    lease_epoch: job.lease_epoch,
                }),
                reason: job.preempting.clone(),
            }));
        }
        for message in messages {
            if !self.send(message).await {
                return false;
            }
        }
        true
    }

    async fn send(&self, message: Down) -> bool {
        self.tx
            .send(Ok(pb::SchedulerMessage { msg: Some(message) }))
            .await
            .is_ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_message_is_clipped_at_a_character_boundary() {
        // A 3-byte character across the limit.
        let mut text = format!("{}€ and more", "a".repeat(MAX_MESSAGE_LEN - 1));
        clip(&mut text, MAX_MESSAGE_LEN);
        assert_eq!(text.len(), MAX_MESSAGE_LEN - 1);
        let mut short = "fine".to_string();
        clip(&mut short, MAX_MESSAGE_LEN);
        assert_eq!(short, "fine");
    }

    /// The refusal says what is refused: too many files or bad URIs; a
    /// result with none (simulated devices) is fine.
    #[test]
    fn a_result_is_refused_as_its_message_says() {
        let artifact = |uri: &str| pb::Artifact {
            uri: uri.into(),
            ..Default::default()
        };
        let result = |artifacts| pb::Finished {
            lease: None,
            artifacts,
        };
        assert!(result_refusal(&result(Vec::new())).is_none());
        assert!(result_refusal(&result(vec![artifact("file:///v")])).is_none());
        let too_many = result(vec![artifact("file:///v"); MAX_ARTIFACTS + 1]);
        let why = result_refusal(&too_many).expect("refused");
        assert!(
            why.contains(&format!("at most {MAX_ARTIFACTS} artifacts")),
            "{why}"
        );
        assert!(result_refusal(&result(vec![artifact("")])).is_some());
    }

    #[test]
    fn progress_numbers_from_a_worker_cannot_overflow() {
        // Near u32::MAX the sum saturates instead of overflowing.
        assert!(worth_replicating(u32::MAX - 1, u32::MAX, 8));
        assert!(!worth_replicating(u32::MAX - 1, u32::MAX - 1, 8));
        assert!(worth_replicating(0, 1, 4));
        assert!(!worth_replicating(4, 4, 16));
        assert!(worth_replicating(4, 8, 16));
        // A run of 0 steps reported: a stride of 1, nothing overflows.
        assert!(worth_replicating(0, 1, 0));
    }
}
