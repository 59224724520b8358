//! Retention: the leader removes ended jobs (completed, failed, cancelled)
//! from the replicated state once they are older than the configured age,
//! or beyond the configured number of ended jobs, through a raft command so
//! every replica forgets the same jobs. Their files stay in the artifact
//! store, whose own lifecycle rules decide how long videos are kept
//! (docs/operations.md). Without this the state, every snapshot and every
//! list would grow for as long as the cluster runs.

use std::time::Duration;

use genfleet_proto as pb;
use tokio::sync::watch;

use crate::metrics::Metrics;
use crate::raft::RaftHandle;
use crate::state::Outcome;

/// How long ended jobs are kept, and how many.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Retention {
    /// An ended job older than this leaves the state.
    pub max_age: Duration,
    /// At most this many ended jobs are kept (the newest).
    pub max_ended: usize,
    /// How often the leader looks.
    pub every: Duration,
}

impl Default for Retention {
    fn default() -> Self {
        Self {
            max_age: Duration::from_secs(7 * 24 * 3600),
            max_ended: 100_000,
            every: Duration::from_secs(10),
        }
    }
}

/// Jobs one command forgets at most (a log entry stays small).
const BATCH: usize = 1000;

/// While this replica leads: every `retention.every`, forgets the ended
/// jobs retention no longer keeps, in batches.
pub async fn retention_loop(
    raft: RaftHandle,
    retention: Retention,
    metrics: Metrics,
    mut stop: watch::Receiver<bool>,
) {
    loop {
        tokio::select! {
            _ = stop.changed() => return,
            _ = tokio::time::sleep(retention.every) => {}
        }
        if !raft.is_leader() {
            continue;
        }
        loop {
            let max_age_ms = i64::try_from(retention.max_age.as_millis()).unwrap_or(i64::MAX);
            let cutoff = crate::clock::unix_ms().saturating_sub(max_age_ms);
            let expired = raft.read(|s| s.expired_jobs(cutoff, retention.max_ended, BATCH));
            if expired.is_empty() {
                break;
            }
            let full = expired.len() == BATCH;
            let command = pb::Command {
                kind: Some(pb::command::Kind::ForgetJobs(pb::ForgetJobs {
                    job_ids: expired,
                })),
            };
            match raft.propose(command).await {
                Ok(applied) => {
                    if let Ok(Outcome::Forgotten(n)) = applied.result {
                        metrics.jobs_forgotten.inc_by(n as u64);
                        tracing::debug!(jobs = n, "retention: ended jobs forgotten");
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, "retention: forgetting ended jobs not proposed");
                    break;
                }
            }
            if !full {
                break;
            }
        }
    }
}
