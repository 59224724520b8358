//! The leader's side of the policy: the policy's view of the replicated
//! state (queues, the nodes with a live session, running and pending
//! jobs), and the verdicts of the last cycle for the job API to show.

use std::collections::{BTreeSet, HashMap};
use std::sync::Mutex;

use genfleet_proto as pb;
use pb::models::VideoSize;
use pb::JobState;

use crate::policy::{
    self, BudgetLeft, ClusterView, Decision, DeviceUsage, FlavorQuota, GroupView, MemoryNeed,
    NodeView, PendingJob, PolicyConfig, Profile, QueueConfig, RunningJob,
};
use crate::spec::{self, DEFAULT_QUEUE};
use crate::state::{Job, State};

/// What one cycle decided, in the scheduler's terms.
pub struct CycleOutcome {
    /// To propose as one Assign command.
    pub placements: Vec<pb::Placement>,
    /// To propose as one PreemptJobs command.
    pub preemptions: Vec<pb::Preemption>,
    /// Why the other pending jobs wait.
    pub verdicts: Verdicts,
    /// (queue, qos, reason label) -> pending jobs, for the metrics.
    pub pending_counts: HashMap<(String, &'static str, &'static str), i64>,
    /// (queue, flavor) -> devices: nominal quota, in use, and borrowed (in
    /// use beyond nominal), after this cycle's placements.
    pub queue_devices: DeviceUsage,
    /// Budgeted queues: (name, device-seconds per period, used this period),
    /// in seconds as the metric exports them.
    pub budgets: Vec<(String, f64, f64)>,
}

fn queue_devices(view: &ClusterView, decision: &Decision) -> DeviceUsage {
    let mut usage = DeviceUsage::default();
    for queue in &view.queues {
        for (flavor, quota) in &queue.quotas {
            usage.quota(&queue.name, flavor, quota.nominal);
        }
    }
    for r in &view.running {
        usage.add(&r.queue, &r.flavor, r.devices.len() as u32);
    }
    for p in &decision.placements {
        let queue = &view.pending[p.job].queue;
        usage.add(queue, &p.flavor, p.device_ids.len() as u32);
    }
    usage
}

/// One cycle over the state.
pub fn cycle(
    state: &State,
    connected: &BTreeSet<String>,
    profile: &Profile,
    config: &PolicyConfig,
    now_ms: i64,
) -> CycleOutcome {
    let view = view(state, connected, profile, now_ms);
    let decision = policy::schedule(&view, profile, config, now_ms);
    let verdicts = verdicts(&view, &decision);
    let queue_devices = queue_devices(&view, &decision);
    let budgets = state
        .queues()
        .zip(&view.queues)
        .filter_map(|(q, config)| {
            let (budget, left) = (q.budget.as_ref()?, config.budget?);
            let budget_s = budget.device_hours * 3600.0;
            Some((q.name.clone(), budget_s, budget_s - left.device_s))
        })
        .collect();
    let mut pending_counts = HashMap::new();
    for p in &decision.pending {
        let job = &view.pending[p.job];
        let key = (job.queue.clone(), job.qos.label(), p.reason.label());
        *pending_counts.entry(key).or_default() += 1;
    }
    let preemptions = decision
        .preemptions
        .iter()
        .filter_map(|p| {
            let job = state.job(&p.job_id)?;
            Some(pb::Preemption {
                lease: Some(pb::JobLease {
                    job_id: job.id.clone(),
                    lease_epoch: job.lease_epoch,
                }),
                reason: p.reason.label().to_string(),
                for_job: p.for_job.clone(),
            })
        })
        .collect();
    let placements = decision
        .placements
        .into_iter()
        .map(|p| pb::Placement {
            job_id: view.pending[p.job].id.clone(),
            node: view.nodes[p.node].name.clone(),
            device_ids: p.device_ids,
        })
        .collect();
    CycleOutcome {
        placements,
        preemptions,
        verdicts,
        pending_counts,
        queue_devices,
        budgets,
    }
}

/// Job id -> why it waits and the estimated seconds until it starts.
pub type Verdicts = HashMap<String, (String, Option<f64>)>;

fn verdicts(view: &ClusterView, decision: &Decision) -> Verdicts {
    decision
        .pending
        .iter()
        .map(|p| {
            let id = view.pending[p.job].id.clone();
            (id, (p.reason.to_string(), p.eta_s))
        })
        .collect()
}

/// The policy's view of the state. Only nodes with a live session here
/// take work. The implicit `default` queue, unless applied, has every
/// device of every flavor as its nominal quota.
pub fn view(
    state: &State,
    connected: &BTreeSet<String>,
    profile: &Profile,
    now_ms: i64,
) -> ClusterView {
    let nodes: Vec<NodeView> = state
        .nodes()
        .filter(|n| n.up && connected.contains(&n.name))
        .map(|n| {
            let mut groups: Vec<GroupView> = n
                .devices
                .iter()
                .map(|g| GroupView {
                    flavor: g.flavor.clone(),
                    devices: Vec::new(),
                    free: Vec::new(),
                    memory_bytes: g.free_memory_bytes.unwrap_or(g.memory_bytes),
                })
                .collect();
            for (index, group) in n.device_indices() {
                groups[group].devices.push(index);
                if !n.busy.contains_key(&index) {
                    groups[group].free.push(index);
                }
            }
            NodeView {
                name: n.name.clone(),
                // A draining node takes no work, like a cordoned one.
                cordoned: n.cordoned || n.draining,
                models: n.models.clone(),
                groups,
                simulated: n.devices.iter().any(|g| g.simulated),
            }
        })
        .collect();
    let budget_used_s = state.budget_used_s(now_ms);
    let mut queues: Vec<QueueConfig> = state
        .queues()
        .map(|q| queue_config(q, budget_used_s.get(&q.name).copied(), now_ms))
        .collect();
    if !queues.iter().any(|q| q.name == DEFAULT_QUEUE) {
        queues.push(default_queue(&nodes));
    }
    let mut running = Vec::new();
    let mut pending = Vec::new();
    for job in state.jobs() {
        match job.state {
            JobState::Running => running.extend(running_job(state, job, profile)),
            JobState::Pending => pending.push(pending_job(job)),
            _ => {}
        }
    }
    ClusterView {
        queues,
        nodes,
        running,
        pending,
    }
}

/// The implicit `default` queue as `genfleet queue list` shows it (when
/// none was applied): every device of every flavor of the nodes that are up
/// as its nominal quota, as [`default_queue`] gives the policy.
pub fn implicit_default_queue(state: &State) -> genfleet_proto::Queue {
    let groups = state.nodes().filter(|n| n.up).flat_map(|n| &n.devices);
    genfleet_proto::Queue {
        name: DEFAULT_QUEUE.into(),
        weight: 1,
        quotas: devices_by_flavor(groups.map(|g| (g.flavor.as_str(), g.count)))
            .into_iter()
            .map(|(flavor, nominal)| genfleet_proto::FlavorQuota {
                flavor: flavor.to_string(),
                nominal,
                ..Default::default()
            })
            .collect(),
        ..Default::default()
    }
}

/// The implicit `default` queue (when none was applied): every device of
/// every flavor of `nodes` as its nominal quota.
pub fn default_queue(nodes: &[NodeView]) -> QueueConfig {
    let groups = nodes.iter().flat_map(|n| &n.groups);
    QueueConfig {
        name: DEFAULT_QUEUE.into(),
        cohort: None,
        weight: 1,
        quotas: devices_by_flavor(groups.map(|g| (g.flavor.as_str(), g.devices.len() as u32)))
            .into_iter()
            .map(|(flavor, devices)| {
                let quota = FlavorQuota {
                    nominal: devices,
                    ..FlavorQuota::default()
                };
                (flavor.to_string(), quota)
            })
            .collect(),
        budget: None,
    }
}

/// Devices per flavor, summed over (flavor, devices) groups: the implicit
/// `default` queue's quota, for the policy and for `queue list` alike.
fn devices_by_flavor<'a>(
    groups: impl Iterator<Item = (&'a str, u32)>,
) -> std::collections::BTreeMap<&'a str, u32> {
    let mut capacity = std::collections::BTreeMap::new();
    for (flavor, devices) in groups {
        *capacity.entry(flavor).or_default() += devices;
    }
    capacity
}

/// A queue as the policy sees it; `used_s`: device-seconds of its budget
/// used this period.
pub fn queue_config(q: &pb::Queue, used_s: Option<f64>, now_ms: i64) -> QueueConfig {
    let budget = q.budget.as_ref().map(|b| {
        let next = crate::policy::budget::period_of(b, now_ms) + 1;
        let resets_at_ms = crate::policy::budget::period_start_ms(b, next);
        BudgetLeft {
            device_s: b.device_hours * 3600.0 - used_s.unwrap_or(0.0),
            resets_in_s: (resets_at_ms - now_ms).max(0) as f64 / 1000.0,
        }
    });
    QueueConfig {
        name: q.name.clone(),
        cohort: (!q.cohort.is_empty()).then(|| q.cohort.clone()),
        weight: q.weight.max(1),
        quotas: q
            .quotas
            .iter()
            .map(|f| {
                let quota = FlavorQuota {
                    nominal: f.nominal,
                    borrowing_limit: f.borrowing_limit,
                    lending_limit: f.lending_limit,
                };
                (f.flavor.clone(), quota)
            })
            .collect(),
        budget,
    }
}

/// The device group a placed job's devices belong to.
pub fn job_group<'a>(state: &'a State, job: &Job) -> Option<&'a pb::DeviceGroup> {
    let node = state.node(&job.node)?;
    let first = *job.device_ids.first()?;
    let group = node
        .device_indices()
        .find(|(index, _)| *index == first)
        .map(|(_, group)| group)?;
    node.devices.get(group)
}

/// Seconds one step of a placed job should take on its devices, by the
/// throughput profile (0 if the job is not placed).
pub fn step_seconds(state: &State, job: &Job, profile: &Profile) -> f64 {
    let Some(group) = job_group(state, job) else {
        return 0.0;
    };
    1.0 / profile.steps_per_s_at(
        &job.spec.model,
        &group.flavor,
        job.spec.tp,
        pixel_frames(&job.spec),
    )
}

/// Whether a job runs (or ran) on simulated devices. An ended job has
/// given its devices back: then its node says.
pub fn on_simulated_devices(state: &State, job: &Job) -> bool {
    match job_group(state, job) {
        Some(group) => group.simulated,
        None => state
            .node(&job.node)
            .is_some_and(|n| n.devices.iter().any(|g| g.simulated)),
    }
}

fn running_job(state: &State, job: &Job, profile: &Profile) -> Option<RunningJob> {
    let flavor = job_group(state, job)?.flavor.clone();
    let steps_left = job.spec.steps.saturating_sub(job.step);
    let rate = profile.steps_per_s_at(
        &job.spec.model,
        &flavor,
        job.spec.tp,
        pixel_frames(&job.spec),
    );
    Some(RunningJob {
        id: job.id.clone(),
        queue: job.spec.queue.clone(),
        qos: spec::qos(&job.spec).unwrap_or(policy::Qos::Standard),
        flavor,
        node: job.node.clone(),
        devices: job.device_ids.clone(),
        started_at_ms: job.leased_at_ms,
        preempting: !job.preempting.is_empty(),
        remaining_s: f64::from(steps_left) / rate,
    })
}

fn pending_job(job: &Job) -> PendingJob {
    PendingJob {
        id: job.id.clone(),
        queue: job.spec.queue.clone(),
        qos: spec::qos(&job.spec).unwrap_or(policy::Qos::Standard),
        priority: job.spec.priority,
        tp: job.spec.tp,
        model: job.spec.model.clone(),
        steps_left: job.spec.steps.saturating_sub(job.step),
        waiting_since_ms: job.queued_at_ms,
        nominated: job.nominated,
        position: job.position,
        memory: memory_need(&job.spec),
        pixel_frames: pixel_frames(&job.spec),
    }
}

/// A job's width x height x frames, the size its step time grows with.
pub fn pixel_frames(spec: &pb::JobSpec) -> u64 {
    u64::from(spec.width) * u64::from(spec.height) * u64::from(spec.frames)
}

/// What a job of a built-in preset needs per device (docs/scheduling.md);
/// unknown for other models.
pub fn memory_need(spec: &pb::JobSpec) -> MemoryNeed {
    let Some(shape) = genfleet_proto::models::model_shape(&spec.model) else {
        return MemoryNeed::default();
    };
    shape.memory_need(&VideoSize {
        frames: spec.frames as usize,
        width: spec.width as usize,
        height: spec.height as usize,
        guided: spec.guidance != 1.0,
    })
}

/// The verdicts of the leader's last cycle, for Get/List/Watch.
#[derive(Default)]
pub struct LastVerdicts(Mutex<Verdicts>);

impl LastVerdicts {
    /// Keeps the new verdicts; returns the jobs whose reason changed (or
    /// that newly wait), for the leader to tell their watchers.
    pub fn replace(&self, verdicts: Verdicts) -> Vec<String> {
        let mut last = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let changed = verdicts
            .iter()
            .filter(|(id, (reason, _))| last.get(*id).is_none_or(|(old, _)| old != reason))
            .map(|(id, _)| id.clone())
            .collect();
        *last = verdicts;
        changed
    }

    pub fn get(&self, job_id: &str) -> Option<(String, Option<f64>)> {
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(job_id)
            .cloned()
    }
}
