//! The policy's view of the simulated cluster, kept up to date as jobs
//! arrive, start and end instead of being rebuilt at every cycle (a plan
//! runs hundreds of thousands of cycles).

use genfleet_scheduler::policy::{ClusterView, NodeView, PendingJob, RunningJob};

/// No position: the job is not in that list.
const NONE: usize = usize::MAX;

pub struct LiveView {
    pub view: ClusterView,
    /// The job of each `view.pending` entry.
    pending_jobs: Vec<u32>,
    /// The job of each `view.running` entry.
    running_jobs: Vec<u32>,
    /// Per job, its index in `view.running`.
    running_at: Vec<usize>,
}

impl LiveView {
    pub fn new(nodes: Vec<NodeView>, jobs: usize) -> Self {
        Self {
            view: ClusterView {
                nodes,
                ..ClusterView::default()
            },
            pending_jobs: Vec::new(),
            running_jobs: Vec::new(),
            running_at: vec![NONE; jobs],
        }
    }

    pub fn pending(&self) -> &[u32] {
        &self.pending_jobs
    }

    pub fn running(&self) -> &[u32] {
        &self.running_jobs
    }

    pub fn add_pending(&mut self, job: u32, entry: PendingJob) {
        self.pending_jobs.push(job);
        self.view.pending.push(entry);
    }

    /// Drops the pending entries of jobs `keep` says are no longer waiting.
    pub fn retain_pending(&mut self, keep: impl Fn(u32) -> bool) {
        let kept: Vec<bool> = self.pending_jobs.iter().map(|&j| keep(j)).collect();
        let mut i = 0;
        self.view.pending.retain(|_| {
            i += 1;
            kept[i - 1]
        });
        let mut i = 0;
        self.pending_jobs.retain(|_| {
            i += 1;
            kept[i - 1]
        });
    }

    pub fn pending_entries(&mut self) -> impl Iterator<Item = (u32, &mut PendingJob)> {
        self.pending_jobs
            .iter()
            .copied()
            .zip(self.view.pending.iter_mut())
    }

    /// A job starts on `devices` of `node` (taken from its free list).
    pub fn add_running(&mut self, job: u32, entry: RunningJob, node: usize, devices: &[u32]) {
        if let Some(group) = self.view.nodes[node].groups.first_mut() {
            group.free.retain(|d| !devices.contains(d));
        }
        self.running_at[job as usize] = self.view.running.len();
        self.running_jobs.push(job);
        self.view.running.push(entry);
    }

    /// A job ends or stops and gives its devices back.
    pub fn remove_running(&mut self, job: u32, node: usize, devices: &[u32]) {
        let at = std::mem::replace(&mut self.running_at[job as usize], NONE);
        if at == NONE {
            return;
        }
        self.view.running.swap_remove(at);
        self.running_jobs.swap_remove(at);
        if let Some(&moved) = self.running_jobs.get(at) {
            self.running_at[moved as usize] = at;
        }
        if let Some(group) = self.view.nodes[node].groups.first_mut() {
            group.free.extend_from_slice(devices);
            group.free.sort_unstable();
        }
    }

    pub fn running_entry(&mut self, job: u32) -> Option<&mut RunningJob> {
        let at = self.running_at[job as usize];
        self.view.running.get_mut(at)
    }

    pub fn running_entries(&mut self) -> impl Iterator<Item = (u32, &mut RunningJob)> {
        self.running_jobs
            .iter()
            .copied()
            .zip(self.view.running.iter_mut())
    }
}
