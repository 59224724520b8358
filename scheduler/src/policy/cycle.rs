//! One scheduling cycle: orders the pending jobs (class with ageing, then
//! the queue with the lowest weighted dominant share, then priority and
//! submission order), places each on the best flavor its queue may use,
//! preempts where its class allows, and says why the rest waits.

use std::cmp::Ordering;
use std::collections::{BinaryHeap, HashMap};

use super::capacity::{Slot, SlotIndex};
use super::profile::Profile;
use super::quota::{QuotaBook, QuotaCheck};
use super::types::{
    ClusterView, Decision, PendingJob, PendingReason, PendingStatus, Placement, PolicyConfig, Qos,
};

/// Places, preempts and explains: a pure function of its inputs.
pub fn schedule(
    view: &ClusterView,
    profile: &Profile,
    config: &PolicyConfig,
    now_ms: i64,
) -> Decision {
    Cycle::new(view, profile, config, now_ms).run()
}

#[derive(Default)]
pub(super) struct Names {
    ids: HashMap<String, usize>,
    pub(super) names: Vec<String>,
}

impl Names {
    fn intern(&mut self, name: &str) -> usize {
        if let Some(&id) = self.ids.get(name) {
            return id;
        }
        self.names.push(name.to_string());
        self.ids.insert(name.to_string(), self.names.len() - 1);
        self.names.len() - 1
    }

    fn get(&self, name: &str) -> Option<usize> {
        self.ids.get(name).copied()
    }
}

/// What the cycle knows of a running job.
pub(super) struct Running {
    pub(super) slot: Option<usize>,
    pub(super) queue: Option<usize>,
    pub(super) flavor: usize,
    pub(super) devices: u32,
    /// Already told to stop (earlier or in this cycle).
    pub(super) preempting: bool,
}

/// A queue's turn in the order: whether its next job has work preempted
/// for it, that job's class, the queue's share, the job's submission
/// position. Greater goes first.
struct Turn {
    nominated: bool,
    class: Qos,
    share: f64,
    position: u64,
    queue: usize,
}

impl Ord for Turn {
    fn cmp(&self, other: &Self) -> Ordering {
        self.nominated
            .cmp(&other.nominated)
            .then(self.class.cmp(&other.class))
            .then(other.share.total_cmp(&self.share))
            .then(other.position.cmp(&self.position))
            .then(other.queue.cmp(&self.queue))
    }
}

impl PartialOrd for Turn {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl PartialEq for Turn {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl Eq for Turn {}

pub(super) struct Cycle<'a> {
    pub(super) view: &'a ClusterView,
    pub(super) profile: &'a Profile,
    pub(super) config: &'a PolicyConfig,
    pub(super) now_ms: i64,
    pub(super) flavors: Names,
    pub(super) models: Names,
    /// Per node: the model ids it serves, sorted.
    pub(super) node_models: Vec<Vec<usize>>,
    pub(super) slots: SlotIndex,
    pub(super) capacity: Vec<u32>,
    pub(super) quota: QuotaBook,
    pub(super) running: Vec<Running>,
    pub(super) running_by_flavor: Vec<Vec<usize>>,
    /// Per flavor: device-seconds of work before the next waiting job.
    pub(super) work_ahead_s: Vec<f64>,
    /// (model, tp, fastest first?) -> flavors that could run it, best first,
    /// and whether an uncordoned node of each could.
    pub(super) rankings: HashMap<(usize, u32, bool), Vec<(usize, bool)>>,
    /// Slots with preempted work on its way out, and slots held this
    /// cycle: both few, so reasons look through them instead of all slots.
    pub(super) releasing_slots: Vec<usize>,
    pub(super) held_slots: Vec<usize>,
    pub(super) preempt_attempts: usize,
    pub(super) preemptors: usize,
    pub(super) starvation_holds: usize,
    pub(super) decision: Decision,
}

impl<'a> Cycle<'a> {
    fn new(
        view: &'a ClusterView,
        profile: &'a Profile,
        config: &'a PolicyConfig,
        now_ms: i64,
    ) -> Self {
        let mut flavors = Names::default();
        let mut models = Names::default();
        for node in &view.nodes {
            for group in &node.groups {
                flavors.intern(&group.flavor);
            }
        }
        for name in view.queues.iter().flat_map(|q| q.quotas.keys()) {
            flavors.intern(name);
        }
        for job in &view.running {
            flavors.intern(&job.flavor);
        }
        let node_models: Vec<Vec<usize>> = view
            .nodes
            .iter()
            .map(|n| {
                let mut ids: Vec<usize> = n.models.iter().map(|m| models.intern(m)).collect();
                ids.sort_unstable();
                ids.dedup();
                ids
            })
            .collect();

        // One slot per (node, flavor): a gang needs one flavor on one node.
        let mut slots: Vec<Slot> = Vec::new();
        let mut slot_of: HashMap<(usize, usize), usize> = HashMap::new();
        let mut capacity = vec![0u32; flavors.names.len()];
        for (n, node) in view.nodes.iter().enumerate() {
            for group in &node.groups {
                let flavor = flavors.intern(&group.flavor);
                capacity[flavor] += group.devices.len() as u32;
                let slot = *slot_of.entry((n, flavor)).or_insert_with(|| {
                    slots.push(Slot {
                        node: n,
                        flavor,
                        size: 0,
                        free: Vec::new(),
                        releasing: 0,
                        cordoned: node.cordoned,
                        held: false,
                    });
                    slots.len() - 1
                });
                slots[slot].size += group.devices.len() as u32;
                slots[slot].free.extend(&group.free);
            }
        }
        for slot in &mut slots {
            slot.free.sort_unstable();
            slot.free.dedup();
        }
        let node_ids: HashMap<&str, usize> = view
            .nodes
            .iter()
            .enumerate()
            .map(|(i, n)| (n.name.as_str(), i))
            .collect();
        let mut quota = QuotaBook::new(&view.queues, &flavors.ids, capacity.clone());
        let mut running = Vec::with_capacity(view.running.len());
        let mut running_by_flavor = vec![Vec::new(); flavors.names.len()];
        let mut work_ahead_s = vec![0.0; flavors.names.len()];
        for (i, job) in view.running.iter().enumerate() {
            let flavor = flavors.get(&job.flavor).unwrap_or_default();
            let slot = node_ids
                .get(job.node.as_str())
                .and_then(|n| slot_of.get(&(*n, flavor)).copied());
            let queue = quota.queue_id(&job.queue);
            let devices = job.devices.len() as u32;
            if job.preempting {
                if let Some(slot) = slot {
                    slots[slot].releasing += devices;
                }
            } else if let Some(q) = queue {
                quota.add(q, flavor, devices);
            }
            work_ahead_s[flavor] += f64::from(devices) * job.remaining_s.max(0.0);
            running_by_flavor[flavor].push(i);
            running.push(Running {
                slot,
                queue,
                flavor,
                devices,
                preempting: job.preempting,
            });
        }
        let releasing_slots = (0..slots.len())
            .filter(|&s| slots[s].releasing > 0)
            .collect();
        let flavor_count = flavors.names.len();
        Cycle {
            view,
            profile,
            config,
            now_ms,
            flavors,
            models,
            node_models,
            slots: SlotIndex::new(slots, flavor_count),
            capacity,
            quota,
            running,
            running_by_flavor,
            work_ahead_s,
            rankings: HashMap::new(),
            releasing_slots,
            held_slots: Vec::new(),
            preempt_attempts: 0,
            preemptors: 0,
            starvation_holds: 0,
            decision: Decision::default(),
        }
    }

    fn run(mut self) -> Decision {
        let view = self.view;
        let mut by_queue: Vec<Vec<usize>> = vec![Vec::new(); self.quota.queue_count()];
        for (j, job) in view.pending.iter().enumerate() {
            match self.quota.queue_id(&job.queue) {
                Some(q) => by_queue[q].push(j),
                None => self.wait(job, PendingReason::UnknownQueue, None),
            }
        }
        let classes: Vec<Qos> = view.pending.iter().map(|j| self.class(j)).collect();
        for jobs in &mut by_queue {
            jobs.sort_by(|&a, &b| {
                let (ja, jb) = (&view.pending[a], &view.pending[b]);
                jb.nominated
                    .cmp(&ja.nominated)
                    .then(classes[b].cmp(&classes[a]))
                    .then(jb.priority.cmp(&ja.priority))
                    .then(ja.position.cmp(&jb.position))
            });
        }
        let mut cursor = vec![0usize; by_queue.len()];
        let mut turns: BinaryHeap<Turn> = BinaryHeap::new();
        let turn = |q: usize, next: usize, quota: &QuotaBook| Turn {
            nominated: view.pending[next].nominated,
            class: classes[next],
            share: quota.dominant_share(q),
            position: view.pending[next].position,
            queue: q,
        };
        for (q, jobs) in by_queue.iter().enumerate() {
            if let Some(&first) = jobs.first() {
                turns.push(turn(q, first, &self.quota));
            }
        }
        while let Some(Turn { queue: q, .. }) = turns.pop() {
            let j = by_queue[q][cursor[q]];
            cursor[q] += 1;
            self.consider(&view.pending[j], q);
            if let Some(&next) = by_queue[q].get(cursor[q]) {
                turns.push(turn(q, next, &self.quota));
            }
        }
        self.decision
    }

    /// The job's class for ordering: one class up per `ageing_ms` waited.
    fn class(&self, job: &PendingJob) -> Qos {
        let waited = self.now_ms.saturating_sub(job.waiting_since_ms).max(0);
        let levels = waited / self.config.ageing_ms.max(1);
        (0..levels.min(2)).fold(job.qos, |qos, _| qos.promoted())
    }

    pub(super) fn serves(&self, node: usize, model: usize) -> bool {
        self.node_models[node].binary_search(&model).is_ok()
    }

    /// Flavors that could ever run (model, tp), best first for the class.
    fn ranking(&mut self, model: usize, tp: u32, fastest: bool) -> Vec<(usize, bool)> {
        if let Some(r) = self.rankings.get(&(model, tp, fastest)) {
            return r.clone();
        }
        let mut fits: Vec<Option<bool>> = vec![None; self.flavors.names.len()];
        for slot in &self.slots.slots {
            if slot.size >= tp && self.serves(slot.node, model) {
                let open = fits[slot.flavor].unwrap_or(false) || !slot.cordoned;
                fits[slot.flavor] = Some(open);
            }
        }
        let model_name = &self.models.names[model];
        let mut ranked: Vec<(usize, bool)> = fits
            .iter()
            .enumerate()
            .filter_map(|(f, fit)| fit.map(|open| (f, open)))
            .collect();
        let names = &self.flavors.names;
        let profile = self.profile;
        let score = |f: usize| {
            if fastest {
                -profile.steps_per_s(model_name, &names[f], tp)
            } else {
                profile.cost_per_step(model_name, &names[f], tp)
            }
        };
        ranked.sort_by(|a, b| {
            score(a.0)
                .total_cmp(&score(b.0))
                .then(names[a.0].cmp(&names[b.0]))
        });
        self.rankings.insert((model, tp, fastest), ranked.clone());
        ranked
    }

    fn consider(&mut self, job: &PendingJob, q: usize) {
        let Some(model) = self.models.get(&job.model) else {
            return self.wait(job, PendingReason::NoFlavor, None);
        };
        let candidates: Vec<(usize, bool)> = self
            .ranking(model, job.tp, job.qos == Qos::Interactive)
            .into_iter()
            .filter(|(f, _)| self.quota.has_quota(q, *f))
            .collect();
        if candidates.is_empty() {
            return self.wait(job, PendingReason::NoFlavor, None);
        }
        let mut first: Option<(PendingReason, usize)> = None;
        for &(f, open) in &candidates {
            let reason = match self.quota.check(q, f, job.tp) {
                QuotaCheck::Fits => {
                    let node_models = &self.node_models;
                    let usable = |s: &Slot| node_models[s.node].binary_search(&model).is_ok();
                    if let Some(slot) = self.slots.best_fit(f, job.tp, usable) {
                        return self.place(job, q, f, slot);
                    }
                    if let Some(slot) = self.releasing_slot(f, job.tp, model) {
                        // Preempted work is on its way out for this job.
                        self.hold(slot);
                        self.quota.add(q, f, job.tp);
                        let reason = PendingReason::WaitingForPreemption {
                            flavor: self.flavors.names[f].clone(),
                        };
                        return self.wait(job, reason, Some(f));
                    }
                    self.capacity_reason(f, job.tp, open)
                }
                QuotaCheck::NeedsReclaim { .. } | QuotaCheck::Over => PendingReason::OverQuota {
                    flavor: self.flavors.names[f].clone(),
                },
            };
            first.get_or_insert((reason, f));
        }
        if job.qos >= Qos::Standard
            && self.preemptors < self.config.max_preemptors_per_cycle
            && self.preempt_attempts < 4 * self.config.max_preemptors_per_cycle.max(1)
        {
            for &(f, _) in &candidates {
                if self.try_preempt(job, q, f, model) {
                    return;
                }
            }
        }
        let Some((reason, f)) = first else { return };
        self.hold_for_starving(job, q, f, model, &reason);
        self.wait(job, reason, Some(f));
    }

    fn place(&mut self, job: &PendingJob, q: usize, f: usize, slot: usize) {
        let device_ids = self.slots.take(slot, job.tp);
        self.quota.add(q, f, job.tp);
        let node = self.slots.slots[slot].node;
        self.decision.placements.push(Placement {
            job_id: job.id.clone(),
            node: self.view.nodes[node].name.clone(),
            flavor: self.flavors.names[f].clone(),
            device_ids,
        });
    }

    pub(super) fn hold(&mut self, slot: usize) {
        self.slots.hold(slot);
        self.held_slots.push(slot);
    }

    /// An open slot where free plus releasing devices hold `tp`.
    fn releasing_slot(&self, f: usize, tp: u32, model: usize) -> Option<usize> {
        self.releasing_slots.iter().copied().find(|&slot| {
            let s = &self.slots.slots[slot];
            s.flavor == f
                && s.releasing > 0
                && !s.held
                && !s.cordoned
                && s.free.len() as u32 + s.releasing >= tp
                && self.serves(s.node, model)
        })
    }

    fn capacity_reason(&self, f: usize, tp: u32, open: bool) -> PendingReason {
        let flavor = self.flavors.names[f].clone();
        if !open {
            return PendingReason::Cordoned { flavor };
        }
        let held_fits = self.held_slots.iter().any(|&slot| {
            let s = &self.slots.slots[slot];
            s.flavor == f && !s.cordoned && s.free.len() as u32 >= tp
        });
        if held_fits {
            PendingReason::Reserved { flavor }
        } else if self.slots.free_total(f) >= u64::from(tp) {
            PendingReason::WaitingForGang { flavor }
        } else {
            PendingReason::NoCapacity { flavor }
        }
    }

    /// A job that has waited past `starvation_ms` for quota or capacity
    /// gets them held: work drains instead of being backfilled.
    fn hold_for_starving(
        &mut self,
        job: &PendingJob,
        q: usize,
        f: usize,
        model: usize,
        reason: &PendingReason,
    ) {
        let starving =
            self.now_ms.saturating_sub(job.waiting_since_ms) >= self.config.starvation_ms;
        // Waits that drain: its queue's own work finishing frees the quota,
        // running work finishing frees the devices.
        let drains = matches!(
            reason,
            PendingReason::NoCapacity { .. }
                | PendingReason::WaitingForGang { .. }
                | PendingReason::OverQuota { .. }
        );
        if !starving || !drains || self.starvation_holds >= self.config.max_preemptors_per_cycle {
            return;
        }
        // Its quota is booked, so later jobs of the queue do not take what
        // frees up; and the emptiest usable slot is held for it.
        self.quota.add(q, f, job.tp);
        self.starvation_holds += 1;
        let node_models = &self.node_models;
        let usable =
            |s: &Slot| s.size >= job.tp && node_models[s.node].binary_search(&model).is_ok();
        if let Some(slot) = self.slots.emptiest(f, usable) {
            self.hold(slot);
        }
    }

    pub(super) fn wait(&mut self, job: &PendingJob, reason: PendingReason, flavor: Option<usize>) {
        let eta_s = flavor.map(|f| {
            let rate = self
                .profile
                .steps_per_s(&job.model, &self.flavors.names[f], job.tp);
            let own = f64::from(job.tp) * f64::from(job.steps_left) / rate;
            if matches!(reason, PendingReason::WaitingForPreemption { .. }) {
                return 1.0 / rate; // the victims' next step boundary, about
            }
            let eta = self.work_ahead_s[f] / f64::from(self.capacity[f].max(1));
            self.work_ahead_s[f] += own;
            eta
        });
        self.decision.pending.push(PendingStatus {
            job_id: job.id.clone(),
            reason,
            eta_s,
        });
    }
}
