//! Promoting caught-up learners to voters.

use std::time::Duration;

use tokio::sync::watch;

use crate::raft::RaftHandle;

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
