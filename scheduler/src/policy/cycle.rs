//! One scheduling cycle: orders the pending jobs (class with ageing, then
//! the queue with the lowest weighted dominant share, then priority and
//! submission order), places each on the best flavor its queue may use,
//! preempts where its class allows, and says why the rest waits.

use std::cmp::Ordering;
use std::collections::BinaryHeap;
use std::rc::Rc;
use std::sync::Arc;

use rustc_hash::FxHashMap as HashMap;

use super::capacity::{Slot, SlotIndex};
use super::profile::Profile;
use super::quota::QuotaBook;
use super::types::{
    BudgetLeft, ClusterView, Decision, PendingJob, PendingReason, PolicyConfig, Qos,
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

/// Names (of flavors, models) as small ids; shared strings for output.
#[derive(Default)]
pub(super) struct Names {
    ids: HashMap<Arc<str>, usize>,
    pub(super) names: Vec<Arc<str>>,
}

impl Names {
    fn intern(&mut self, name: &str) -> usize {
        if let Some(&id) = self.ids.get(name) {
            return id;
        }
        let shared: Arc<str> = name.into();
        self.names.push(shared.clone());
        self.ids.insert(shared, self.names.len() - 1);
        self.names.len() - 1
    }

    fn get(&self, name: &str) -> Option<usize> {
        self.ids.get(name).copied()
    }
}

/// Flavor ids, best first, each with whether an uncordoned node has it.
pub(super) type Flavors = Rc<[(usize, bool)]>;

/// Each node's models as interned ids. Nodes of a pool serve the same
/// models: a node whose list equals the one before shares its ids.
fn node_models(view: &ClusterView, models: &mut Names) -> Vec<Rc<[usize]>> {
    let mut node_models: Vec<Rc<[usize]>> = Vec::with_capacity(view.nodes.len());
    for (i, n) in view.nodes.iter().enumerate() {
        let same = i > 0 && view.nodes[i - 1].models == n.models;
        let ids = match node_models.last() {
            Some(previous) if same => previous.clone(),
            _ => {
                let mut ids: Vec<usize> = n.models.iter().map(|m| models.intern(m)).collect();
                ids.sort_unstable();
                ids.dedup();
                ids.into()
            }
        };
        node_models.push(ids);
    }
    node_models
}

/// One slot per (node, flavor): a gang needs one flavor on one node.
struct Slots {
    slots: Vec<Slot>,
    slot_of: HashMap<(usize, usize), usize>,
    /// Devices per flavor in the fleet.
    capacity: Vec<u32>,
    largest_memory: Vec<u64>,
    largest_slot: Vec<u32>,
}

impl Slots {
    fn of(view: &ClusterView, flavors: &mut Names) -> Self {
        let mut slots: Vec<Slot> = Vec::new();
        let mut slot_of: HashMap<(usize, usize), usize> =
            HashMap::with_capacity_and_hasher(view.nodes.len(), Default::default());
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
                        memory: u64::MAX,
                        free: Vec::new(),
                        releasing: 0,
                        cordoned: node.cordoned,
                        held: false,
                        promised: 0,
                    });
                    slots.len() - 1
                });
                slots[slot].size += group.devices.len() as u32;
                slots[slot].free.extend(&group.free);
                // Groups of one flavor on one node: the smallest device counts.
                if group.memory_bytes > 0 {
                    slots[slot].memory = slots[slot].memory.min(group.memory_bytes);
                }
            }
        }
        let mut largest_memory = vec![0u64; flavors.names.len()];
        let mut largest_slot = vec![0u32; flavors.names.len()];
        for slot in &mut slots {
            slot.free.sort_unstable();
            slot.free.dedup();
            largest_memory[slot.flavor] = largest_memory[slot.flavor].max(slot.memory);
            largest_slot[slot.flavor] = largest_slot[slot.flavor].max(slot.size);
        }
        Slots {
            slots,
            slot_of,
            capacity,
            largest_memory,
            largest_slot,
        }
    }
}

/// The running jobs, booked: their queues' use and budgets, the devices
/// being released by jobs told to stop, and the work ahead per flavor.
struct RunningWork {
    jobs: Vec<Running>,
    by_flavor: Vec<Vec<usize>>,
    work_ahead_s: Vec<f64>,
}

impl RunningWork {
    fn of(
        view: &ClusterView,
        running_flavors: &[usize],
        slot_of: &HashMap<(usize, usize), usize>,
        slots: &mut [Slot],
        quota: &mut QuotaBook,
        budgets: &mut [Option<BudgetLeft>],
        flavor_count: usize,
    ) -> Self {
        let node_ids: HashMap<&str, usize> = view
            .nodes
            .iter()
            .enumerate()
            .map(|(i, n)| (n.name.as_str(), i))
            .collect();
        let mut jobs = Vec::with_capacity(view.running.len());
        let mut by_flavor = vec![Vec::new(); flavor_count];
        let mut work_ahead_s = vec![0.0; flavor_count];
        for (i, (job, &flavor)) in view.running.iter().zip(running_flavors).enumerate() {
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
                // What running work will still use is spoken for.
                if let Some(budget) = &mut budgets[q] {
                    budget.device_s -= f64::from(devices) * job.remaining_s.max(0.0);
                }
            }
            work_ahead_s[flavor] += f64::from(devices) * job.remaining_s.max(0.0);
            by_flavor[flavor].push(i);
            jobs.push(Running {
                slot,
                queue,
                flavor,
                devices,
                preempting: job.preempting,
            });
        }
        RunningWork {
            jobs,
            by_flavor,
            work_ahead_s,
        }
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

/// What the cycle needs of a pending job, gathered in one sequential
/// pass: the ordering then never goes back to the (large, scattered) job.
#[derive(Clone, Copy)]
pub(super) struct Want {
    index: u32,
    queue: u32,
    model: Option<u32>,
    pub(super) tp: u32,
    /// Bytes one rank needs at `tp` (0: unknown, fits anywhere).
    pub(super) need: u64,
    pub(super) qos: Qos,
    pub(super) steps_left: u32,
    pub(super) waiting_since_ms: i64,
}

impl Want {
    /// Index of the job in [`ClusterView::pending`].
    pub(super) fn index(&self) -> usize {
        self.index as usize
    }

    pub(super) fn queue(&self) -> usize {
        self.queue as usize
    }

    /// The model's id, if any node serves it.
    pub(super) fn model(&self) -> Option<usize> {
        self.model.map(|m| m as usize)
    }
}

/// A job's place within its queue as one number; smaller goes first:
/// nominated jobs, then higher (aged) classes, higher priority, earlier
/// submission. Turns read class, nomination and position back from it.
fn order_key(nominated: bool, class: Qos, priority: i32, position: u64) -> u128 {
    let class_rank = Qos::Interactive as u128 - class as u128;
    let priority_rank = (i64::from(i32::MAX) - i64::from(priority)) as u128;
    (u128::from(!nominated) << 127)
        | (class_rank << 125)
        | (priority_rank << 64)
        | u128::from(position)
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
    pub(super) node_models: Vec<Rc<[usize]>>,
    pub(super) slots: SlotIndex,
    pub(super) capacity: Vec<u32>,
    /// Per flavor: the most memory of a device and the most devices of
    /// any of its slots (what a job could ever get there).
    pub(super) largest_memory: Vec<u64>,
    pub(super) largest_slot: Vec<u32>,
    pub(super) quota: QuotaBook,
    pub(super) running: Vec<Running>,
    pub(super) running_by_flavor: Vec<Vec<usize>>,
    /// Per flavor: device-seconds of work before the next waiting job.
    pub(super) work_ahead_s: Vec<f64>,
    /// (model, tp, fastest first?) -> flavors that could run it, best first,
    /// and whether an uncordoned node of each could.
    pub(super) rankings: HashMap<(usize, u32, bool), Flavors>,
    /// The same, kept to the flavors a queue has quota for.
    pub(super) candidates: HashMap<(usize, u32, bool, usize), Flavors>,
    /// (model, flavor, tp) -> steps per second, from the profile.
    pub(super) rates: HashMap<(usize, usize, u32), f64>,
    /// Per flavor: slots with preempted work on its way out that are not
    /// held yet (few: only these are looked through).
    pub(super) releasing_slots: Vec<Vec<usize>>,
    /// Per flavor: the most free devices on a slot held this cycle (held
    /// slots take no placements, so this only grows).
    pub(super) held_free: Vec<u32>,
    /// Per queue id: its budget, less what running work will still use
    /// and what this cycle placed; `None`: no budget.
    pub(super) budgets: Vec<Option<BudgetLeft>>,
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
        let running_flavors: Vec<usize> = view
            .running
            .iter()
            .map(|job| flavors.intern(&job.flavor))
            .collect();
        let node_models = node_models(view, &mut models);
        let Slots {
            mut slots,
            slot_of,
            capacity,
            largest_memory,
            largest_slot,
        } = Slots::of(view, &mut flavors);
        let mut quota = QuotaBook::new(&view.queues, |name| flavors.get(name), capacity.clone());
        let mut budgets = vec![None; quota.queue_count()];
        for q in &view.queues {
            if let Some(id) = quota.queue_id(&q.name) {
                budgets[id] = q.budget;
            }
        }
        let flavor_count = flavors.names.len();
        let running = RunningWork::of(
            view,
            &running_flavors,
            &slot_of,
            &mut slots,
            &mut quota,
            &mut budgets,
            flavor_count,
        );
        let mut releasing_slots = vec![Vec::new(); flavor_count];
        for (i, slot) in slots.iter().enumerate() {
            if slot.releasing > 0 {
                releasing_slots[slot.flavor].push(i);
            }
        }
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
            largest_memory,
            largest_slot,
            quota,
            running: running.jobs,
            running_by_flavor: running.by_flavor,
            work_ahead_s: running.work_ahead_s,
            rankings: HashMap::default(),
            candidates: HashMap::default(),
            rates: HashMap::default(),
            releasing_slots,
            held_free: vec![0; flavor_count],
            budgets,
            preempt_attempts: 0,
            preemptors: 0,
            starvation_holds: 0,
            decision: Decision::default(),
        }
    }

    fn run(mut self) -> Decision {
        let view = self.view;
        self.decision.pending.reserve(view.pending.len());
        // Per queue, its jobs in order, as compact keys (the sort then
        // stays in cache instead of chasing 100,000 job structs).
        // Each queue's jobs stay in the queue's own small array, so the
        // turns that jump between queues stay in cache.
        let queues = self.quota.queue_count();
        let mut wants: Vec<Vec<Want>> = vec![Vec::new(); queues];
        let mut by_queue: Vec<Vec<(u128, u32)>> = vec![Vec::new(); queues];
        for (index, job) in view.pending.iter().enumerate() {
            let mut want = Want {
                index: index as u32,
                queue: 0,
                model: self.models.get(&job.model).map(|m| m as u32),
                tp: job.tp,
                need: if job.memory.is_unknown() {
                    0
                } else {
                    job.memory.per_rank(job.tp)
                },
                qos: job.qos,
                steps_left: job.steps_left,
                waiting_since_ms: job.waiting_since_ms,
            };
            match self.quota.queue_id(&job.queue) {
                Some(q) => {
                    want.queue = q as u32;
                    let key = order_key(job.nominated, self.class(job), job.priority, job.position);
                    by_queue[q].push((key, wants[q].len() as u32));
                    wants[q].push(want);
                }
                None => self.wait(&want, PendingReason::UnknownQueue, None),
            }
        }
        // Each queue's wants in its turn order: the loop below then reads
        // every queue front to back.
        for (keys, wants) in by_queue.iter_mut().zip(wants.iter_mut()) {
            keys.sort_unstable();
            *wants = keys.iter().map(|(_, i)| wants[*i as usize]).collect();
        }
        let mut cursor = vec![0usize; by_queue.len()];
        let mut turns: BinaryHeap<Turn> = BinaryHeap::new();
        // Everything a turn needs is in the key: no trip to `wants`.
        let turn = |q: usize, next: &(u128, u32), quota: &QuotaBook| Turn {
            nominated: next.0 >> 127 == 0,
            class: Qos::ALL[2 - ((next.0 >> 125) & 3) as usize],
            share: quota.dominant_share(q),
            position: next.0 as u64,
            queue: q,
        };
        for (q, jobs) in by_queue.iter().enumerate() {
            if let Some(first) = jobs.first() {
                turns.push(turn(q, first, &self.quota));
            }
        }
        while let Some(Turn { queue: q, .. }) = turns.pop() {
            // A queue keeps the turn while its next job still comes first:
            // one comparison with the top instead of a push and a pop.
            loop {
                let want = wants[q][cursor[q]];
                cursor[q] += 1;
                self.consider(&want);
                let Some(next) = by_queue[q].get(cursor[q]) else {
                    break;
                };
                let next = turn(q, next, &self.quota);
                if turns.peek().is_some_and(|top| *top > next) {
                    turns.push(next);
                    break;
                }
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

    /// Whether a slot serves the job's model and has the memory one of
    /// its ranks needs.
    pub(super) fn usable(&self, slot: &Slot, want: &Want, model: usize) -> bool {
        slot.memory >= want.need && self.serves(slot.node, model)
    }

    /// Flavors that could ever run (model, tp), best first for the class.
    fn ranking(&mut self, model: usize, tp: u32, fastest: bool) -> Flavors {
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
        let ranked: Flavors = ranked.into();
        self.rankings.insert((model, tp, fastest), ranked.clone());
        ranked
    }

    /// The ranking kept to flavors queue `q` has quota for.
    pub(super) fn candidates(&mut self, want: &Want, model: usize) -> Flavors {
        let fastest = want.qos == Qos::Interactive;
        let key = (model, want.tp, fastest, want.queue());
        if let Some(c) = self.candidates.get(&key) {
            return c.clone();
        }
        let ranked = self.ranking(model, want.tp, fastest);
        let kept: Flavors = ranked
            .iter()
            .copied()
            .filter(|(f, _)| self.quota.has_quota(want.queue(), *f))
            .collect();
        self.candidates.insert(key, kept.clone());
        kept
    }

    /// Steps per second of the job's model on flavor `f`.
    pub(super) fn rate(&mut self, want: &Want, f: usize) -> f64 {
        let Some(model) = want.model() else {
            return 1.0;
        };
        let key = (model, f, want.tp);
        if let Some(rate) = self.rates.get(&key) {
            return *rate;
        }
        let names = (&self.models.names[model], &self.flavors.names[f]);
        let rate = self.profile.steps_per_s(names.0, names.1, want.tp);
        self.rates.insert(key, rate);
        rate
    }

    pub(super) fn hold(&mut self, slot: usize) {
        self.slots.hold(slot);
        let s = &self.slots.slots[slot];
        let free = &mut self.held_free[s.flavor];
        *free = (*free).max(s.free.len() as u32);
    }
}
