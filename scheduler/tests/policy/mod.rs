//! Builders for policy views, and a small cluster that applies decisions,
//! shared by the scenario tables and the property tests.

#![allow(dead_code)] // each test binary uses its own part of the helpers

use std::collections::BTreeMap;

use genfleet_scheduler::policy::{
    ClusterView, Decision, FlavorQuota, GroupView, MemoryNeed, NodeView, PendingJob, Qos,
    QueueConfig, RunningJob,
};

pub const MINUTE: i64 = 60_000;

pub fn queue(name: &str, cohort: Option<&str>, quotas: &[(&str, FlavorQuota)]) -> QueueConfig {
    QueueConfig {
        name: name.into(),
        cohort: cohort.map(str::to_string),
        weight: 1,
        quotas: quotas
            .iter()
            .map(|(f, q)| (f.to_string(), *q))
            .collect::<BTreeMap<_, _>>(),
        budget: None,
    }
}

pub fn nominal(n: u32) -> FlavorQuota {
    FlavorQuota {
        nominal: n,
        ..FlavorQuota::default()
    }
}

/// A node with `size` devices of `flavor`, all free, serving "tiny".
pub fn node(name: &str, flavor: &str, size: u32) -> NodeView {
    NodeView {
        name: name.into(),
        cordoned: false,
        models: vec!["tiny".into()],
        groups: vec![GroupView {
            flavor: flavor.into(),
            devices: (0..size).collect(),
            free: (0..size).collect(),
            memory_bytes: 0,
        }],
        simulated: true,
    }
}

pub fn pending(id: &str, queue: &str, qos: Qos, tp: u32) -> PendingJob {
    PendingJob {
        id: id.into(),
        queue: queue.into(),
        qos,
        priority: 0,
        tp,
        model: "tiny".into(),
        steps_left: 20,
        waiting_since_ms: 0,
        nominated: false,
        position: 0,
        memory: MemoryNeed::default(),
        pixel_frames: 0,
    }
}

/// The view plus the time, with helpers that change both as a worker
/// fleet would.
pub struct World {
    pub view: ClusterView,
    pub now_ms: i64,
    next_position: u64,
    /// Jobs as submitted, to requeue them after a preemption.
    submitted: BTreeMap<String, PendingJob>,
}

impl World {
    pub fn new(queues: Vec<QueueConfig>, nodes: Vec<NodeView>) -> Self {
        World {
            view: ClusterView {
                queues,
                nodes,
                running: Vec::new(),
                pending: Vec::new(),
            },
            now_ms: 0,
            next_position: 0,
            submitted: BTreeMap::new(),
        }
    }

    /// Queues a job submitted now.
    pub fn submit(&mut self, mut job: PendingJob) {
        job.waiting_since_ms = self.now_ms;
        job.position = self.next_position;
        self.next_position += 1;
        self.submitted.insert(job.id.clone(), job.clone());
        self.view.pending.push(job);
    }

    /// Starts `job` on `node` devices `devices` at `started_at_ms`.
    pub fn run(&mut self, job: &PendingJob, node: &str, devices: &[u32], started_at_ms: i64) {
        let n = self
            .view
            .nodes
            .iter_mut()
            .find(|n| n.name == node)
            .expect("known node");
        let group = &mut n.groups[0];
        group.free.retain(|d| !devices.contains(d));
        let flavor = group.flavor.clone();
        self.view.running.push(RunningJob {
            id: job.id.clone(),
            queue: job.queue.clone(),
            qos: job.qos,
            flavor,
            node: node.into(),
            devices: devices.to_vec(),
            started_at_ms,
            preempting: false,
            remaining_s: 60.0,
        });
    }

    /// Carries out a decision: placed jobs start, preempted ones are told
    /// to stop (they keep their devices until [`World::checkpoint`]).
    pub fn apply(&mut self, decision: &Decision) {
        let placed: Vec<(String, String, Vec<u32>)> = decision
            .placements
            .iter()
            .map(|p| {
                let job = self.view.pending[p.job].id.clone();
                (
                    job,
                    self.view.nodes[p.node].name.clone(),
                    p.device_ids.clone(),
                )
            })
            .collect();
        for (id, node, devices) in placed {
            let at = self
                .view
                .pending
                .iter()
                .position(|j| j.id == id)
                .expect("placed job was pending");
            let job = self.view.pending.remove(at);
            self.run(&job, &node, &devices, self.now_ms);
        }
        for p in &decision.preemptions {
            if let Some(j) = self.view.pending.iter_mut().find(|j| j.id == p.for_job) {
                j.nominated = true;
            }
            let job = self
                .view
                .running
                .iter_mut()
                .find(|j| j.id == p.job_id)
                .expect("preempted job was running");
            job.preempting = true;
        }
    }

    /// Preempted jobs reach a step boundary: devices free, job requeued
    /// with its original submission time and position.
    pub fn checkpoint(&mut self) {
        let (stopped, running): (Vec<RunningJob>, Vec<RunningJob>) =
            std::mem::take(&mut self.view.running)
                .into_iter()
                .partition(|j| j.preempting);
        self.view.running = running;
        for job in stopped {
            self.free(&job);
            let mut requeued =
                self.submitted.get(&job.id).cloned().unwrap_or_else(|| {
                    pending(&job.id, &job.queue, job.qos, job.devices.len() as u32)
                });
            requeued.waiting_since_ms = self.now_ms;
            self.view.pending.push(requeued);
        }
    }

    /// `job` finished: its devices are free again.
    pub fn finish(&mut self, job_id: &str) {
        if let Some(at) = self.view.running.iter().position(|j| j.id == job_id) {
            let job = self.view.running.remove(at);
            self.free(&job);
        }
    }

    fn free(&mut self, job: &RunningJob) {
        if let Some(n) = self.view.nodes.iter_mut().find(|n| n.name == job.node) {
            if let Some(g) = n.groups.iter_mut().find(|g| g.flavor == job.flavor) {
                g.free.extend(&job.devices);
                g.free.sort_unstable();
            }
        }
    }
}
