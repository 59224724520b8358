//! Work only the leader does, and what it knows that is not replicated:
//! which workers have a session open here, their latest per-step progress,
//! the scheduling cycle, and declaring silent nodes down.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use genfleet_proto as pb;
use tokio::sync::{watch, Notify};

use crate::metrics::Metrics;
use crate::policy::{PolicyConfig, Profile};
use crate::raft::RaftHandle;
use crate::scheduling::{self, LastVerdicts};
use crate::state::{Outcome, State};

/// Worker sessions open on this replica, shared by the session handlers and
/// the leader's loops.
pub struct Sessions {
    inner: Mutex<SessionsInner>,
    /// Woken when a session opens or closes.
    changed: Notify,
    /// Steps per second per model x flavor x tp: seeded, then refined from
    /// the step times workers' progress shows.
    profile: Mutex<Profile>,
}

impl Default for Sessions {
    fn default() -> Self {
        Self {
            inner: Mutex::default(),
            changed: Notify::new(),
            profile: Mutex::new(Profile::seeded()),
        }
    }
}

#[derive(Default)]
struct SessionsInner {
    /// Node -> number of open sessions (a reconnect may overlap the old one's end).
    open: BTreeMap<String, u32>,
    /// Node -> when its last session closed.
    closed_at: BTreeMap<String, Instant>,
    /// Job -> (lease epoch, step) as last reported, finer than the log's copy.
    live_steps: HashMap<String, (u64, u32)>,
}

/// Keeps a node counted as connected while it lives.
pub struct SessionGuard {
    sessions: Arc<Sessions>,
    node: String,
}

impl Drop for SessionGuard {
    fn drop(&mut self) {
        let mut inner = self.sessions.lock();
        if let Some(count) = inner.open.get_mut(&self.node) {
            *count -= 1;
            if *count == 0 {
                inner.open.remove(&self.node);
                inner.closed_at.insert(self.node.clone(), Instant::now());
            }
        }
        drop(inner);
        self.sessions.changed.notify_waiters();
    }
}

impl Sessions {
    fn lock(&self) -> MutexGuard<'_, SessionsInner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn open(self: &Arc<Self>, node: &str) -> SessionGuard {
        {
            let mut inner = self.lock();
            *inner.open.entry(node.to_string()).or_insert(0) += 1;
            inner.closed_at.remove(node);
        }
        self.changed.notify_waiters();
        SessionGuard {
            sessions: self.clone(),
            node: node.to_string(),
        }
    }

    pub fn connected(&self) -> BTreeSet<String> {
        self.lock().open.keys().cloned().collect()
    }

    /// How long a node has had no session, if it has none; `None` if it is
    /// connected or never connected to this replica.
    fn disconnected_for(&self, node: &str, now: Instant) -> Option<Duration> {
        self.lock()
            .closed_at
            .get(node)
            .map(|at| now.saturating_duration_since(*at))
    }

    fn is_connected(&self, node: &str) -> bool {
        self.lock().open.contains_key(node)
    }

    pub fn set_live_step(&self, job: &str, epoch: u64, step: u32) {
        self.lock()
            .live_steps
            .insert(job.to_string(), (epoch, step));
    }

    /// Fills in the freshest progress known here for a running job.
    pub fn overlay(&self, job: &mut pb::Job) {
        if job.state != pb::JobState::Running as i32 {
            return;
        }
        if let Some((epoch, step)) = self.lock().live_steps.get(&job.id) {
            if *epoch == job.lease_epoch {
                job.step = job.step.max(*step);
            }
        }
    }

    pub fn forget_job(&self, job: &str) {
        self.lock().live_steps.remove(job);
    }

    /// The throughput profile as it stands.
    pub fn profile(&self) -> Profile {
        self.profile
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Folds an observed step time into the profile; returns the new rate.
    pub fn observe_step(&self, model: &str, flavor: &str, tp: u32, seconds: f64) -> f64 {
        let mut profile = self.profile.lock().unwrap_or_else(|e| e.into_inner());
        profile.observe(model, flavor, tp, seconds);
        profile.steps_per_s(model, flavor, tp)
    }
}

/// Shortest time between two scheduling cycles.
const MIN_CYCLE_GAP: Duration = Duration::from_millis(5);

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

/// Places pending jobs while this replica leads; stops when `stop` changes.
/// A cycle runs on every change while a connected node has a free device;
/// otherwise once per `cycle_interval`, to keep reasons and ETAs fresh.
pub async fn scheduling_loop(
    raft: RaftHandle,
    sessions: Arc<Sessions>,
    verdicts: Arc<LastVerdicts>,
    metrics: Metrics,
    config: LeaderConfig,
    mut stop: watch::Receiver<bool>,
) {
    let mut status = raft.watch_status();
    // As if the last cycle were one interval ago: the first one runs at once.
    let mut last_cycle = Instant::now()
        .checked_sub(config.cycle_interval)
        .unwrap_or_else(Instant::now);
    let policy = config.policy.clone();
    let mut was_leading = false;
    loop {
        let woken = sessions.changed.notified();
        tokio::select! {
            _ = stop.changed() => return,
            _ = status.changed() => {}
            _ = woken => {}
            _ = tokio::time::sleep(config.cycle_interval) => {}
        }
        // Under a stream of writes the state changes thousands of times a
        // second: let changes gather rather than run a cycle for each.
        let since = last_cycle.elapsed();
        if since < MIN_CYCLE_GAP {
            tokio::time::sleep(MIN_CYCLE_GAP - since).await;
        }
        if !raft.is_leader() {
            if std::mem::take(&mut was_leading) {
                // A follower's copy would go stale: only the leader reports.
                metrics.pending_jobs.reset();
                metrics.queue_devices.reset();
                metrics.queue_budget.reset();
            }
            continue;
        }
        was_leading = true;
        let connected = sessions.connected();
        if connected.is_empty() {
            verdicts.replace(Default::default());
            continue;
        }
        let free = raft.read(|state| has_free_device(state, &connected));
        if !free && last_cycle.elapsed() < config.cycle_interval {
            continue;
        }
        last_cycle = Instant::now();
        let timer = metrics.schedule_cycle_seconds.start_timer();
        let profile = sessions.profile();
        let outcome = raft.read(|state| {
            scheduling::cycle(
                state,
                &connected,
                &profile,
                &policy,
                crate::clock::unix_ms(),
            )
        });
        timer.observe_duration();
        let changed = verdicts.replace(outcome.verdicts);
        publish_verdicts(&raft, &changed);
        metrics.pending_jobs.reset();
        for ((queue, qos, reason), count) in outcome.pending_counts {
            metrics
                .pending_jobs
                .with_label_values(&[queue.as_str(), qos, reason])
                .set(count);
        }
        metrics.queue_devices.reset();
        for ((queue, flavor), d) in &outcome.queue_devices {
            let kinds = [
                ("nominal", d.nominal),
                ("used", d.used),
                ("borrowed", d.borrowed()),
            ];
            for (kind, count) in kinds {
                metrics
                    .queue_devices
                    .with_label_values(&[queue.as_str(), flavor.as_str(), kind])
                    .set(i64::from(count));
            }
        }
        metrics.queue_budget.reset();
        for (queue, budget, used) in &outcome.budgets {
            for (kind, hours) in [("budget", budget), ("used", used)] {
                metrics
                    .queue_budget
                    .with_label_values(&[queue.as_str(), kind])
                    .set(*hours);
            }
        }
        if !outcome.preemptions.is_empty() {
            propose_preemptions(&raft, &metrics, outcome.preemptions).await;
        }
        let placements = outcome.placements;
        if placements.is_empty() {
            continue;
        }
        let command = pb::Command {
            kind: Some(pb::command::Kind::Assign(pb::Assign {
                placements: placements.clone(),
            })),
        };
        match raft.propose(command).await {
            Ok(applied) => {
                observe_waits(&raft, &metrics, &placements, &applied.result);
                log_assignments(&placements, applied.result);
            }
            Err(e) => tracing::warn!(error = %e, "assignments not proposed"),
        }
    }
}

/// Tells the watchers of jobs whose reason to wait changed (the job API
/// adds the new reason to the event): a verdict is not a log change.
fn publish_verdicts(raft: &RaftHandle, changed: &[String]) {
    for id in changed {
        let job = raft.read(|state| state.job(id).map(|j| j.to_proto()));
        if let Some(job) = job {
            raft.publish(crate::raft::JobEvent { index: 0, job });
        }
    }
}

/// Tells running jobs to checkpoint and stop; counts those accepted.
async fn propose_preemptions(
    raft: &RaftHandle,
    metrics: &Metrics,
    preemptions: Vec<pb::Preemption>,
) {
    let command = pb::Command {
        kind: Some(pb::command::Kind::PreemptJobs(pb::PreemptJobs {
            preemptions: preemptions.clone(),
        })),
    };
    let results = match raft.propose(command).await {
        Ok(applied) => match applied.result {
            Ok(Outcome::Preempted(results)) => results,
            other => {
                tracing::warn!(?other, "unexpected outcome of a preemption");
                return;
            }
        },
        Err(e) => {
            tracing::warn!(error = %e, "preemptions not proposed");
            return;
        }
    };
    for (p, result) in preemptions.iter().zip(results) {
        let job = p.lease.as_ref().map_or("", |l| l.job_id.as_str());
        match result {
            Ok(()) => {
                tracing::info!(%job, reason = %p.reason, for_job = %p.for_job, "preempting job");
                metrics
                    .preemptions
                    .with_label_values(&[p.reason.as_str()])
                    .inc();
            }
            Err(why) => tracing::debug!(%job, %why, "preemption refused at apply"),
        }
    }
}

/// Records how long each job that was placed had waited, by class.
fn observe_waits(
    raft: &RaftHandle,
    metrics: &Metrics,
    placements: &[pb::Placement],
    result: &Result<Outcome, crate::state::Rejection>,
) {
    let Ok(Outcome::Assigned(results)) = result else {
        return;
    };
    raft.read(|state| {
        for (p, r) in placements.iter().zip(results) {
            let Some(job) = state.job(&p.job_id).filter(|_| r.is_ok()) else {
                continue;
            };
            let waited_ms = (job.started_at_ms - job.created_at_ms).max(0);
            let qos = crate::spec::qos(&job.spec).map_or("standard", |q| q.label());
            metrics
                .wait_seconds
                .with_label_values(&[qos])
                .observe(waited_ms as f64 / 1000.0);
        }
    });
}

/// Whether some connected, up node has a device no job holds.
fn has_free_device(state: &State, connected: &BTreeSet<String>) -> bool {
    state.nodes().any(|n| {
        n.up && !n.cordoned
            && !n.draining
            && connected.contains(&n.name)
            && n.device_indices().any(|(i, _)| !n.busy.contains_key(&i))
    })
}

fn log_assignments(placements: &[pb::Placement], result: Result<Outcome, crate::state::Rejection>) {
    match result {
        Ok(Outcome::Assigned(results)) => {
            for (p, r) in placements.iter().zip(results) {
                match r {
                    Ok(epoch) => {
                        tracing::info!(job = %p.job_id, node = %p.node, devices = ?p.device_ids, epoch, "job assigned")
                    }
                    Err(why) => {
                        tracing::debug!(job = %p.job_id, %why, "placement refused at apply")
                    }
                }
            }
        }
        other => tracing::warn!(?other, "unexpected outcome of an assign"),
    }
}

/// Declares nodes down that have had no session here for `worker_grace`,
/// so their jobs go back to pending.
pub async fn liveness_loop(
    raft: RaftHandle,
    sessions: Arc<Sessions>,
    config: LeaderConfig,
    mut stop: watch::Receiver<bool>,
) {
    let mut leading_since: Option<Instant> = None;
    // Leadership is noticed within one check: the grace period counts from
    // then, which errs on the side of waiting longer.
    let check_every = (config.worker_grace / 8).max(Duration::from_millis(50));
    loop {
        tokio::select! {
            _ = stop.changed() => return,
            _ = tokio::time::sleep(check_every) => {}
        }
        let now = Instant::now();
        let is_leader = raft.is_leader();
        match (is_leader, leading_since) {
            (true, None) => leading_since = Some(now),
            (false, _) => {
                leading_since = None;
                continue;
            }
            (true, Some(_)) => {}
        }
        let led_for = leading_since.map_or(Duration::ZERO, |t| now - t);
        let silent: Vec<String> = raft.read(|state| {
            state
                .nodes()
                .filter(|n| n.up && !sessions.is_connected(&n.name))
                .filter(|n| {
                    // A node that never connected to this leader gets the
                    // grace period counted from when this replica took over.
                    let gone = sessions.disconnected_for(&n.name, now).unwrap_or(led_for);
                    gone.min(led_for) >= config.worker_grace
                })
                .map(|n| n.name.clone())
                .collect()
        });
        requeue_overdue_preemptions(&raft, config.preempt_timeout).await;
        for node in silent {
            let reason = format!("no worker session for {:?}", config.worker_grace);
            tracing::warn!(%node, %reason, "declaring node down");
            let command = pb::Command {
                kind: Some(pb::command::Kind::NodeDown(pb::NodeDown {
                    node: node.clone(),
                    reason,
                })),
            };
            match raft.propose(command).await {
                Ok(applied) => match applied.result {
                    Ok(Outcome::Node { requeued }) if !requeued.is_empty() => {
                        tracing::info!(%node, ?requeued, "jobs of a lost node requeued");
                    }
                    _ => {}
                },
                Err(e) => tracing::warn!(%node, error = %e, "node-down not proposed"),
            }
        }
    }
}

/// Requeues preempted jobs whose workers have not checkpointed them within
/// `timeout` (a hung worker, or one that does not know the message): they
/// keep their last checkpoint, and the worker is told to stop.
async fn requeue_overdue_preemptions(raft: &RaftHandle, timeout: Duration) {
    let now_ms = crate::clock::unix_ms();
    let timeout_ms = timeout.as_millis() as i64;
    let overdue: Vec<pb::JobLease> = raft.read(|state| {
        state
            .jobs()
            .filter(|j| j.state == pb::JobState::Running && !j.preempting.is_empty())
            .filter(|j| now_ms - j.preempted_at_ms >= timeout_ms)
            .map(|j| pb::JobLease {
                job_id: j.id.clone(),
                lease_epoch: j.lease_epoch,
            })
            .collect()
    });
    for lease in overdue {
        let reason = format!("no checkpoint within {timeout:?} of its preemption");
        tracing::warn!(job = %lease.job_id, %reason, "requeueing a preempted job");
        let command = pb::Command {
            kind: Some(pb::command::Kind::RequeueJob(pb::RequeueJob {
                lease: Some(lease.clone()),
                reason,
            })),
        };
        if let Err(e) = raft.propose(command).await {
            tracing::warn!(job = %lease.job_id, error = %e, "requeue not proposed");
        }
    }
}

/// Promotes learners to voters once they have caught up with the leader's
/// log (a new replica joins as a learner so it cannot hold up commits while
/// it copies the log). One promotion at a time: each is awaited until
/// applied, so the next status no longer lists a promoted learner and
/// nothing is proposed twice.
pub async fn membership_loop(raft: RaftHandle, mut stop: watch::Receiver<bool>) {
    loop {
        tokio::select! {
            _ = stop.changed() => return,
            _ = tokio::time::sleep(Duration::from_millis(200)) => {}
        }
        let status = raft.status();
        if !status.leader_ready {
            continue;
        }
        for learner in &status.learners {
            let caught_up = status
                .progress
                .iter()
                .any(|p| p.id == *learner && p.matched >= status.commit);
            if !caught_up {
                continue;
            }
            let mut change = raft::eraftpb::ConfChangeSingle {
                node_id: *learner,
                ..Default::default()
            };
            change.set_change_type(raft::eraftpb::ConfChangeType::AddNode);
            let mut cc = raft::eraftpb::ConfChangeV2::default();
            cc.set_changes(vec![change].into());
            match raft.propose_conf_change(cc).await {
                Ok(_) => {
                    tracing::info!(replica = learner, "learner caught up and promoted to voter")
                }
                Err(e) => tracing::warn!(replica = learner, error = %e, "promotion not proposed"),
            }
        }
    }
}
