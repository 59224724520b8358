//! Declaring silent nodes down, and requeueing preempted jobs whose
//! checkpoint never came.

use std::sync::Arc;
use std::time::{Duration, Instant};

use genfleet_proto as pb;
use tokio::sync::watch;

use super::{LeaderConfig, Sessions};
use crate::raft::RaftHandle;
use crate::state::Outcome;

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
