//! The cluster as the policy indexes it: interned flavor, model and queue
//! names, one slot per (node, flavor) with its free devices, and the
//! running work with what it books (quota use, budget and work ahead).
//!
//! The leader builds a board from its view at every cycle
//! ([`Board::from_view`]). The planner keeps one for a whole simulation
//! and changes it as work starts and ends ([`Board::release`]), so a cycle
//! costs what its pending jobs cost, not what the fleet's size costs.
//! Either way the cycle is the same code: a cycle's placements and
//! preemptions are written into the board, and what it held for one cycle
//! only (slots, promised devices) is let go at its end.

use std::borrow::Cow;
use std::rc::Rc;
use std::sync::Arc;

use rustc_hash::FxHashMap as HashMap;

use super::capacity::{Slot, SlotIndex};
use super::types::{ClusterView, NodeView, Qos, RunningJob};

/// Names (of flavors, models, queues) as small ids; shared strings for
/// output.
#[derive(Default, Clone)]
pub(super) struct Names {
    ids: HashMap<Arc<str>, usize>,
    pub(super) names: Vec<Arc<str>>,
}

impl Names {
    /// The name's id, and whether it is new.
    fn intern(&mut self, name: &str) -> (usize, bool) {
        if let Some(&id) = self.ids.get(name) {
            return (id, false);
        }
        let shared: Arc<str> = name.into();
        self.names.push(shared.clone());
        self.ids.insert(shared, self.names.len() - 1);
        (self.names.len() - 1, true)
    }

    pub(super) fn get(&self, name: &str) -> Option<usize> {
        self.ids.get(name).copied()
    }
}

/// Flavor ids, best first, each with whether an uncordoned node has it.
pub(super) type Flavors = Rc<[(usize, bool)]>;

/// A running job in the board; its key is stable while it runs.
pub type RunKey = usize;

/// What the policy asks of a running job, kept small: a preemption
/// search looks through thousands of them.
#[derive(Debug, Clone, Copy)]
pub(super) struct Running {
    /// Board queue id (see [`Board::queue_names`]).
    pub(super) queue: usize,
    pub(super) qos: Qos,
    pub(super) flavor: usize,
    pub(super) slot: Option<usize>,
    pub(super) devices: u32,
    pub(super) started_at_ms: i64,
    /// When it is expected to end (for budgets and ETAs).
    pub(super) ends_at_ms: i64,
    /// Told to checkpoint and stop: its devices are on their way back.
    pub(super) preempting: bool,
}

/// Its name and devices, read when it is chosen or ends; a board built
/// from a view borrows them from the view instead of copying them.
#[derive(Debug, Clone)]
pub(super) struct RunData<'v> {
    pub(super) id: Cow<'v, str>,
    pub(super) devices: Cow<'v, [u32]>,
}

/// Sums over running work that give "device-seconds still to run" at any
/// time without visiting the jobs: sum(devices x (end - now)) =
/// sum(devices x end) - now x sum(devices). Integers, so the sum kept by
/// changes equals the one built from scratch.
#[derive(Debug, Clone, Copy, Default)]
struct WorkAhead {
    device_end_ms: i128,
    devices: i64,
}

impl WorkAhead {
    fn add(&mut self, devices: u32, ends_at_ms: i64, sign: i64) {
        self.devices += sign * i64::from(devices);
        self.device_end_ms += i128::from(sign * i64::from(devices)) * i128::from(ends_at_ms);
    }

    fn seconds_at(&self, now_ms: i64) -> f64 {
        let ms = self.device_end_ms - i128::from(now_ms) * i128::from(self.devices);
        ms.max(0) as f64 / 1000.0
    }
}

pub struct Board<'v> {
    pub(super) flavors: Names,
    pub(super) models: Names,
    /// Queue names of running work (ids differ from a cycle's quota ids).
    queues: Names,
    /// Per node: the model ids it serves, sorted.
    pub(super) node_models: Vec<Rc<[usize]>>,
    node_ids: HashMap<Cow<'v, str>, usize>,
    pub(super) slots: SlotIndex,
    slot_of: HashMap<(usize, usize), usize>,
    /// Per flavor: devices in the fleet, the most memory of a device and
    /// the most devices of any slot (what a job could ever get there).
    pub(super) capacity: Vec<u32>,
    pub(super) largest_memory: Vec<u64>,
    pub(super) largest_slot: Vec<u32>,
    /// Per flavor: slots with preempted work on its way out, ascending.
    pub(super) releasing_slots: Vec<Vec<usize>>,
    running: Vec<Option<Running>>,
    run_data: Vec<Option<RunData<'v>>>,
    free_keys: Vec<RunKey>,
    /// Per flavor: keys of its running jobs, and each key's place there.
    pub(super) running_by_flavor: Vec<Vec<RunKey>>,
    place_in_flavor: Vec<usize>,
    /// Per board queue id, per flavor: devices of its running work that is
    /// not stopping (what its quota books).
    usage: Vec<Vec<u32>>,
    /// Per board queue id: the same work's time ahead (for budgets).
    budget_ahead: Vec<WorkAhead>,
    /// Per board queue id: devices of its work told to stop (they still
    /// use its budget while they save, with no time ahead booked).
    stopping: Vec<u32>,
    /// Per flavor: all running work's time ahead (for ETAs).
    work_ahead: Vec<WorkAhead>,
    /// (model, tp, fastest first?) -> flavors that could run it.
    pub(super) rankings: HashMap<(usize, u32, bool), Flavors>,
}

impl<'v> Board<'v> {
    /// The nodes, with nothing running.
    pub fn new(nodes: &'v [NodeView]) -> Self {
        let mut board = Board {
            flavors: Names::default(),
            models: Names::default(),
            queues: Names::default(),
            node_models: Vec::with_capacity(nodes.len()),
            node_ids: HashMap::with_capacity_and_hasher(nodes.len(), Default::default()),
            slots: SlotIndex::new(Vec::new(), 0),
            slot_of: HashMap::with_capacity_and_hasher(nodes.len(), Default::default()),
            capacity: Vec::new(),
            largest_memory: Vec::new(),
            largest_slot: Vec::new(),
            releasing_slots: Vec::new(),
            running: Vec::new(),
            run_data: Vec::new(),
            free_keys: Vec::new(),
            running_by_flavor: Vec::new(),
            place_in_flavor: Vec::new(),
            usage: Vec::new(),
            budget_ahead: Vec::new(),
            stopping: Vec::new(),
            work_ahead: Vec::new(),
            rankings: HashMap::default(),
        };
        for node in nodes {
            for group in &node.groups {
                board.flavor(&group.flavor);
            }
        }
        let mut slots: Vec<Slot> = Vec::new();
        for (n, node) in nodes.iter().enumerate() {
            board.node_ids.insert(Cow::Borrowed(node.name.as_str()), n);
            // Nodes of a pool serve the same models: a node whose list
            // equals the one before shares its ids.
            let same = n > 0 && nodes[n - 1].models == node.models;
            let ids = match board.node_models.last() {
                Some(previous) if same => previous.clone(),
                _ => {
                    let mut ids: Vec<usize> = node
                        .models
                        .iter()
                        .map(|m| board.models.intern(m).0)
                        .collect();
                    ids.sort_unstable();
                    ids.dedup();
                    ids.into()
                }
            };
            board.node_models.push(ids);
            for group in &node.groups {
                let flavor = board.flavor(&group.flavor);
                board.capacity[flavor] += group.devices.len() as u32;
                let slot = *board.slot_of.entry((n, flavor)).or_insert_with(|| {
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
        for slot in &mut slots {
            slot.free.sort_unstable();
            slot.free.dedup();
            let f = slot.flavor;
            board.largest_memory[f] = board.largest_memory[f].max(slot.memory);
            board.largest_slot[f] = board.largest_slot[f].max(slot.size);
        }
        board.slots = SlotIndex::new(slots, board.flavors.names.len());
        board
    }

    /// The nodes and the running work of a view.
    pub fn from_view(view: &'v ClusterView, now_ms: i64) -> Self {
        let mut board = Board::new(&view.nodes);
        for name in view.queues.iter().flat_map(|q| q.quotas.keys()) {
            board.flavor(name);
        }
        for job in &view.running {
            board.add_running(job, now_ms);
        }
        board
    }

    /// The flavor's id; a new flavor gets an id and empty books.
    pub(super) fn flavor(&mut self, name: &str) -> usize {
        let (id, new) = self.flavors.intern(name);
        if new {
            self.capacity.push(0);
            self.largest_memory.push(0);
            self.largest_slot.push(0);
            self.releasing_slots.push(Vec::new());
            self.running_by_flavor.push(Vec::new());
            self.work_ahead.push(WorkAhead::default());
            for usage in &mut self.usage {
                usage.push(0);
            }
            self.slots.add_flavor();
        }
        id
    }

    /// The board id of a queue of running work.
    fn queue(&mut self, name: &str) -> usize {
        let (id, new) = self.queues.intern(name);
        if new {
            self.usage.push(vec![0; self.flavors.names.len()]);
            self.budget_ahead.push(WorkAhead::default());
            self.stopping.push(0);
        }
        id
    }

    pub(super) fn queue_names(&self) -> &[Arc<str>] {
        &self.queues.names
    }

    /// A board that outlives the nodes it was built from (the planner's,
    /// kept for a whole simulation): it copies what it borrowed.
    pub fn into_owned(self) -> Board<'static> {
        let own = |data: RunData<'v>| RunData {
            id: Cow::Owned(data.id.into_owned()),
            devices: Cow::Owned(data.devices.into_owned()),
        };
        Board {
            flavors: self.flavors,
            models: self.models,
            queues: self.queues,
            node_models: self.node_models,
            node_ids: self
                .node_ids
                .into_iter()
                .map(|(name, n)| (Cow::Owned(name.into_owned()), n))
                .collect(),
            slots: self.slots,
            slot_of: self.slot_of,
            capacity: self.capacity,
            largest_memory: self.largest_memory,
            largest_slot: self.largest_slot,
            releasing_slots: self.releasing_slots,
            running: self.running,
            run_data: self.run_data.into_iter().map(|r| r.map(own)).collect(),
            free_keys: self.free_keys,
            running_by_flavor: self.running_by_flavor,
            place_in_flavor: self.place_in_flavor,
            usage: self.usage,
            budget_ahead: self.budget_ahead,
            stopping: self.stopping,
            work_ahead: self.work_ahead,
            rankings: self.rankings,
        }
    }

    /// A job running on devices the view already counts as busy.
    fn add_running(&mut self, job: &'v RunningJob, now_ms: i64) -> RunKey {
        let flavor = self.flavor(&job.flavor);
        let slot = self
            .node_ids
            .get(job.node.as_str())
            .and_then(|n| self.slot_of.get(&(*n, flavor)).copied());
        let queue = self.queue(&job.queue);
        let remaining_ms = (job.remaining_s.max(0.0) * 1000.0).round() as i64;
        self.insert(
            Running {
                queue,
                qos: job.qos,
                flavor,
                slot,
                devices: job.devices.len() as u32,
                started_at_ms: job.started_at_ms,
                ends_at_ms: now_ms.saturating_add(remaining_ms),
                preempting: job.preempting,
            },
            RunData {
                id: Cow::Borrowed(job.id.as_str()),
                devices: Cow::Borrowed(job.devices.as_slice()),
            },
        )
    }

    /// A job placed by a cycle (its devices already taken from the slot).
    pub(super) fn start(&mut self, mut job: Running, data: RunData<'v>, queue: &str) -> RunKey {
        job.queue = self.queue(queue);
        self.insert(job, data)
    }

    fn insert(&mut self, job: Running, data: RunData<'v>) -> RunKey {
        let devices = job.devices;
        if job.preempting {
            self.stopping[job.queue] += devices;
            if let Some(slot) = job.slot {
                self.add_releasing(slot, devices);
            }
        } else {
            self.usage[job.queue][job.flavor] += devices;
            self.budget_ahead[job.queue].add(devices, job.ends_at_ms, 1);
        }
        self.work_ahead[job.flavor].add(devices, job.ends_at_ms, 1);
        let key = match self.free_keys.pop() {
            Some(key) => key,
            None => {
                self.running.push(None);
                self.run_data.push(None);
                self.place_in_flavor.push(0);
                self.running.len() - 1
            }
        };
        self.place_in_flavor[key] = self.running_by_flavor[job.flavor].len();
        self.running_by_flavor[job.flavor].push(key);
        self.running[key] = Some(job);
        self.run_data[key] = Some(data);
        key
    }

    pub(super) fn running(&self, key: RunKey) -> Option<&Running> {
        self.running.get(key).and_then(Option::as_ref)
    }

    /// A running job's id.
    pub(super) fn run_id(&self, key: RunKey) -> Option<&str> {
        let data = self.run_data.get(key).and_then(Option::as_ref)?;
        Some(&data.id)
    }

    /// A running job is told to stop: its devices leave its queue's quota
    /// and budget and are on their way back to its slot.
    pub(super) fn mark_preempting(&mut self, key: RunKey) {
        let Some(job) = self.running.get_mut(key).and_then(Option::as_mut) else {
            return;
        };
        if job.preempting {
            return;
        }
        job.preempting = true;
        let (queue, flavor, slot, ends) = (job.queue, job.flavor, job.slot, job.ends_at_ms);
        let devices = job.devices;
        self.usage[queue][flavor] -= devices;
        self.budget_ahead[queue].add(devices, ends, -1);
        self.stopping[queue] += devices;
        if let Some(slot) = slot {
            self.add_releasing(slot, devices);
        }
    }

    /// When a running job is now expected to end.
    pub fn set_ends_at(&mut self, key: RunKey, ends_at_ms: i64) {
        let Some(job) = self.running.get_mut(key).and_then(Option::as_mut) else {
            return;
        };
        let (old, devices) = (job.ends_at_ms, job.devices);
        job.ends_at_ms = ends_at_ms;
        let (queue, flavor, preempting) = (job.queue, job.flavor, job.preempting);
        self.work_ahead[flavor].add(devices, old, -1);
        self.work_ahead[flavor].add(devices, ends_at_ms, 1);
        if !preempting {
            self.budget_ahead[queue].add(devices, old, -1);
            self.budget_ahead[queue].add(devices, ends_at_ms, 1);
        }
    }

    /// A running job ended or stopped: its devices are free again.
    pub fn release(&mut self, key: RunKey) {
        let Some(job) = self.running.get_mut(key).and_then(Option::take) else {
            return;
        };
        let data = self.run_data.get_mut(key).and_then(Option::take);
        let devices = job.devices;
        if job.preempting {
            self.stopping[job.queue] -= devices;
            if let Some(slot) = job.slot {
                self.remove_releasing(slot, devices);
            }
        } else {
            self.usage[job.queue][job.flavor] -= devices;
            self.budget_ahead[job.queue].add(devices, job.ends_at_ms, -1);
        }
        self.work_ahead[job.flavor].add(devices, job.ends_at_ms, -1);
        let list = &mut self.running_by_flavor[job.flavor];
        let at = self.place_in_flavor[key];
        list.swap_remove(at);
        if let Some(&moved) = list.get(at) {
            self.place_in_flavor[moved] = at;
        }
        if let (Some(slot), Some(data)) = (job.slot, data) {
            self.slots.give_back(slot, &data.devices);
        }
        self.free_keys.push(key);
    }

    /// A node is cordoned (or down, in the planner) or back: it takes no
    /// work while cordoned.
    pub fn set_cordoned(&mut self, node: usize, cordoned: bool) {
        for f in 0..self.flavors.names.len() {
            if let Some(&slot) = self.slot_of.get(&(node, f)) {
                self.slots.set_cordoned(slot, cordoned);
            }
        }
        // Rankings say which flavors have an open node.
        self.rankings.clear();
    }

    fn add_releasing(&mut self, slot: usize, devices: u32) {
        let s = &mut self.slots.slots[slot];
        if s.releasing == 0 {
            // In slot order, however the work came to stop: the first
            // that fits is taken, so the order is part of the decision.
            let list = &mut self.releasing_slots[s.flavor];
            if let Err(at) = list.binary_search(&slot) {
                list.insert(at, slot);
            }
        }
        s.releasing += devices;
    }

    fn remove_releasing(&mut self, slot: usize, devices: u32) {
        let s = &mut self.slots.slots[slot];
        s.releasing = s.releasing.saturating_sub(devices);
        if s.releasing == 0 {
            let list = &mut self.releasing_slots[s.flavor];
            if let Ok(at) = list.binary_search(&slot) {
                list.remove(at);
            }
        }
    }

    /// Devices of running, not stopping work of board queue `q`, per flavor.
    pub(super) fn usage(&self, q: usize) -> &[u32] {
        &self.usage[q]
    }

    /// Device-seconds still to run of board queue `q`'s work that is not
    /// stopping.
    pub(super) fn budget_ahead_s(&self, q: usize, now_ms: i64) -> f64 {
        self.budget_ahead[q].seconds_at(now_ms)
    }

    /// Devices of board queue `q`'s work told to stop.
    pub(super) fn stopping(&self, q: usize) -> u32 {
        self.stopping[q]
    }

    /// Per flavor: device-seconds of all running work still to run.
    pub(super) fn work_ahead_s(&self, now_ms: i64) -> Vec<f64> {
        self.work_ahead
            .iter()
            .map(|w| w.seconds_at(now_ms))
            .collect()
    }
}
