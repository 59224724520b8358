//! What must hold of the state after every applied entry, whatever the
//! entries were: the fuzzing campaign (`cargo bench --bench fuzz`) and the
//! state's tests check it.

use std::collections::BTreeMap;

use genfleet_proto::JobState;

use super::jobs::request_key;
use super::State;

impl State {
    /// The first broken invariant, described; `Ok` when all hold.
    pub fn check_invariants(&self) -> Result<(), String> {
        // Every pending job is queued exactly once, and only pending jobs are.
        let mut queued: BTreeMap<&str, u64> = BTreeMap::new();
        for (position, id) in &self.pending {
            let job = self
                .jobs
                .get(id)
                .ok_or_else(|| format!("the pending queue names {id}, which does not exist"))?;
            if job.state != JobState::Pending {
                return Err(format!("{id} is queued but {}", job.state.label()));
            }
            if job.position != *position {
                return Err(format!(
                    "{id} is queued at {position}, its position says {}",
                    job.position
                ));
            }
            if queued.insert(id, *position).is_some() {
                return Err(format!("{id} is queued twice"));
            }
        }
        let mut unfinished: BTreeMap<&str, usize> = BTreeMap::new();
        for job in self.jobs.values() {
            if job.state == JobState::Pending && !queued.contains_key(job.id.as_str()) {
                return Err(format!("{} is pending but not queued", job.id));
            }
            if job.lease_epoch > self.last_lease_epoch {
                return Err(format!(
                    "{} holds lease {}, beyond the last given ({})",
                    job.id, job.lease_epoch, self.last_lease_epoch
                ));
            }
            // Counted for tenants only: jobs of an open cluster have none.
            if !job.state.is_terminal() && !job.tenant.is_empty() {
                *unfinished.entry(job.tenant.as_str()).or_default() += 1;
            }
            // A running job holds its devices on its node, and they say so.
            if job.state == JobState::Running {
                let node = self
                    .nodes
                    .get(&job.node)
                    .ok_or_else(|| format!("{} runs on {}, an unknown node", job.id, job.node))?;
                for device in &job.device_ids {
                    if node.busy.get(device) != Some(&job.id) {
                        return Err(format!(
                            "{} runs on {}:{device}, which the node does not give it",
                            job.id, job.node
                        ));
                    }
                }
            }
            if !job.request_id.is_empty()
                && self
                    .requests
                    .get(&request_key(&job.tenant, &job.request_id))
                    != Some(&job.id)
            {
                return Err(format!("{}'s request id does not lead back to it", job.id));
            }
        }
        // A busy device is held by a job that runs there.
        for node in self.nodes.values() {
            for (device, id) in &node.busy {
                let holds = self.jobs.get(id).is_some_and(|j| {
                    j.state == JobState::Running
                        && j.node == node.name
                        && j.device_ids.contains(device)
                });
                if !holds {
                    return Err(format!(
                        "{}:{device} is held by {id}, which does not run there",
                        node.name
                    ));
                }
            }
        }
        // The per-tenant count of unfinished jobs is what the jobs say.
        for (tenant, count) in &self.unfinished_by_tenant {
            let actual = unfinished.get(tenant.as_str()).copied().unwrap_or(0);
            if *count != actual {
                return Err(format!(
                    "tenant {tenant:?} counts {count} unfinished jobs, has {actual}"
                ));
            }
        }
        for (tenant, actual) in unfinished {
            if self.unfinished_by_tenant.get(tenant).copied().unwrap_or(0) != actual {
                return Err(format!(
                    "tenant {tenant:?} has {actual} unfinished jobs, counted otherwise"
                ));
            }
        }
        // The ring keeps its bound and holds only jobs that had ended.
        if self.history.len() > self.history.cap() {
            return Err(format!(
                "the history holds {} records, beyond its {}",
                self.history.len(),
                self.history.cap()
            ));
        }
        for record in self.history.records() {
            record.check()?;
        }
        // Every request id leads to a job that names it.
        for (key, id) in &self.requests {
            let job = self
                .jobs
                .get(id)
                .ok_or_else(|| format!("request {key:?} leads to {id}, which does not exist"))?;
            if request_key(&job.tenant, &job.request_id) != *key {
                return Err(format!("request {key:?} leads to {id}, which has another"));
            }
        }
        Ok(())
    }
}
