//! The scheduling cycle: the policy over the state and the connected
//! nodes, its placements and preemptions proposed, its reasons kept.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use genfleet_proto as pb;
use tokio::sync::watch;

use super::{LeaderConfig, Sessions};
use crate::metrics::Metrics;
use crate::policy::CycleClock;
use crate::raft::RaftHandle;
use crate::scheduling::{self, LastVerdicts};
use crate::state::{Outcome, State};

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
    // The clock counts milliseconds of this monotonic clock.
    let epoch = Instant::now();
    let now_ms = || epoch.elapsed().as_millis() as i64;
    let mut clock = CycleClock::new(config.cycle_interval.as_millis() as i64, now_ms());
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
        let wait_ms = clock.earliest_ms() - now_ms();
        if wait_ms > 0 {
            tokio::time::sleep(Duration::from_millis(wait_ms as u64)).await;
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
        let started_ms = now_ms();
        if !clock.due(started_ms, free) {
            continue;
        }
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
        clock.ran(started_ms, now_ms() - started_ms);
        publish_cycle_metrics(&metrics, &outcome);
        let changed = verdicts.replace(outcome.verdicts);
        publish_verdicts(&raft, &changed);
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

/// The last cycle's view for Prometheus: pending jobs by queue, class and
/// reason; each queue's nominal, used and borrowed devices; budgets.
fn publish_cycle_metrics(metrics: &Metrics, outcome: &scheduling::CycleOutcome) {
    metrics.pending_jobs.reset();
    for ((queue, qos, reason), count) in &outcome.pending_counts {
        metrics
            .pending_jobs
            .with_label_values(&[queue.as_str(), qos, reason])
            .set(*count);
    }
    metrics.queue_devices.reset();
    for (queue, flavor, d) in outcome.queue_devices.iter() {
        let kinds = [
            ("nominal", d.nominal),
            ("used", d.used),
            ("borrowed", d.borrowed()),
        ];
        for (kind, count) in kinds {
            metrics
                .queue_devices
                .with_label_values(&[queue, flavor, kind])
                .set(i64::from(count));
        }
    }
    metrics.queue_budget.reset();
    for (queue, budget_s, used_s) in &outcome.budgets {
        for (kind, seconds) in [("budget", budget_s), ("used", used_s)] {
            metrics
                .queue_budget
                .with_label_values(&[queue.as_str(), kind])
                .set(*seconds);
        }
    }
}
