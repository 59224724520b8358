//! A restore from a backup: a fresh cluster takes a saved state. Jobs,
//! queues, tenants, keys and budget use come back as saved; the cluster's
//! own replicas and registered nodes stay (the backup's members are
//! another cluster's addresses). Jobs that were running go back to the
//! queue, with their checkpoints: their workers belong to the old cluster.
//! Nodes the backup knows and this cluster does not come back down, with
//! their cordons, until their workers register. The history of forgotten
//! jobs is the backup's, then this cluster's own.

use super::{JobState, Outcome, Rejection, State};
use genfleet_proto as pb;

impl State {
    pub(super) fn restore_state(
        &mut self,
        c: &pb::RestoreState,
        at_ms: i64,
    ) -> Result<Outcome, Rejection> {
        if let Some(held) = self.what_it_holds() {
            return Err(Rejection::NotFresh(held));
        }
        let mut restored = State::from_snapshot_bytes(&c.state)
            .map_err(|e| Rejection::BadBackup(e.to_string()))?;
        // A file may be corrupt or made by hand: the same checks as every
        // state passes, before it replaces anything.
        restored.check_invariants().map_err(Rejection::BadBackup)?;
        let running: Vec<String> = restored
            .jobs
            .values()
            .filter(|j| j.state == JobState::Running)
            .map(|j| j.id.clone())
            .collect();
        // Their leases ended when the backup was taken, not now: the
        // budget use the backup holds already counts them, so requeueing
        // charges nothing more.
        let charged = restored.budget_usage.clone();
        for id in &running {
            restored.requeue(id, at_ms);
        }
        restored.budget_usage = charged;
        for node in restored.nodes.values_mut() {
            node.up = false;
            node.busy.clear();
            node.draining = false;
        }
        // This cluster's own: its raft position, its replicas, the nodes
        // whose workers registered with it.
        restored.applied_index = self.applied_index;
        // Lease epochs and queue positions only ever grow, whatever this
        // cluster gave out before (jobs since forgotten).
        restored.last_lease_epoch = restored.last_lease_epoch.max(self.last_lease_epoch);
        restored.next_position = restored.next_position.max(self.next_position);
        restored.members = std::mem::take(&mut self.members);
        // Jobs this cluster ran and forgot before the restore stay in its
        // history, after the backup's (the newest HISTORY_CAP kept).
        restored.history.append(std::mem::take(&mut self.history));
        restored.nodes.append(&mut self.nodes);
        restored.changed = restored.jobs.keys().cloned().collect();
        *self = restored;
        Ok(Outcome::Restored {
            requeued: running.len(),
        })
    }

    /// What a cluster that may not be restored into already holds, if
    /// anything (`default` is every cluster's queue, not a queue it holds).
    fn what_it_holds(&self) -> Option<String> {
        let counts = [
            (self.jobs.len(), "jobs"),
            (self.queues.len(), "queues"),
            (self.tenants.len(), "tenants"),
            (self.keys.len(), "keys"),
        ];
        let held: Vec<String> = counts
            .iter()
            .filter(|(n, _)| *n > 0)
            .map(|(n, what)| format!("{n} {what}"))
            .collect();
        (!held.is_empty()).then(|| held.join(", "))
    }
}
