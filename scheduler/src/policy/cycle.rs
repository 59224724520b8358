//! One scheduling cycle: orders the pending jobs (class with ageing, then
//! the queue with the lowest weighted dominant share, then priority and
//! submission order), places each on the best flavor its queue may use,
//! preempts where its class allows, and says why the rest waits.

use std::cmp::Ordering;
use std::collections::BinaryHeap;

use rustc_hash::FxHashMap as HashMap;

use super::board::{Board, Flavors, RunData, Running};
use super::capacity::Slot;
use super::profile::Profile;
use super::quota::QuotaBook;
use super::types::{
    BudgetLeft, ClusterView, Decision, PendingJob, PendingReason, PolicyConfig, Qos, QueueConfig,
};

/// Places, preempts and explains: a pure function of its inputs.
pub fn schedule(
    view: &ClusterView,
    profile: &Profile,
    config: &PolicyConfig,
    now_ms: i64,
) -> Decision {
    let mut board = Board::from_view(view, now_ms);
    Cycle::new(
        &mut board,
        &view.queues,
        &view.pending,
        profile,
        config,
        now_ms,
        false,
    )
    .run()
}

/// The same cycle on a board kept between cycles (the planner's): the
/// placements start on the board and the preempted work is marked
/// stopping there; the caller releases work as it ends. The board's
/// flavor rankings assume one profile for its life.
pub fn schedule_on(
    board: &mut Board<'_>,
    queues: &[QueueConfig],
    pending: &[PendingJob],
    profile: &Profile,
    config: &PolicyConfig,
    now_ms: i64,
) -> Decision {
    Cycle::new(board, queues, pending, profile, config, now_ms, true).run()
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
    pixel_frames: u64,
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

pub(super) struct Cycle<'a, 'v> {
    pub(super) board: &'a mut Board<'v>,
    /// Whether the board outlives the cycle: its placements then start
    /// on it, at the end of the cycle (within it, as on a board built
    /// from a view, work placed now is no one's victim).
    pub(super) keep: bool,
    /// Placements to start on the board: (index in the decision, run).
    pub(super) starts: Vec<(usize, Running, RunData<'v>)>,
    pub(super) pending: &'a [PendingJob],
    pub(super) profile: &'a Profile,
    pub(super) config: &'a PolicyConfig,
    pub(super) now_ms: i64,
    pub(super) quota: QuotaBook,
    /// Per board queue id: the queue's id in `quota`, if it has one.
    pub(super) quota_of: Vec<Option<usize>>,
    /// Per flavor: device-seconds of work before the next waiting job.
    pub(super) work_ahead_s: Vec<f64>,
    /// The board's rankings kept to the flavors a queue has quota for.
    pub(super) candidates: HashMap<(usize, u32, bool, usize), Flavors>,
    /// (model, flavor, tp, pixels x frames) -> steps per second, from the
    /// profile.
    pub(super) rates: HashMap<(usize, usize, u32, u64), f64>,
    /// Slots held this cycle, opened again at its end.
    pub(super) held: Vec<usize>,
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

impl<'a, 'v> Cycle<'a, 'v> {
    fn new(
        board: &'a mut Board<'v>,
        queues: &[QueueConfig],
        pending: &'a [PendingJob],
        profile: &'a Profile,
        config: &'a PolicyConfig,
        now_ms: i64,
        keep: bool,
    ) -> Self {
        for name in queues.iter().flat_map(|q| q.quotas.keys()) {
            board.flavor(name);
        }
        let flavors = &board.flavors;
        let mut quota = QuotaBook::new(queues, |name| flavors.get(name), board.capacity.clone());
        let mut budgets = vec![None; quota.queue_count()];
        for q in queues {
            if let Some(id) = quota.queue_id(&q.name) {
                budgets[id] = q.budget;
            }
        }
        // Running work books its queue's quota, and what it will still
        // use is spoken for in its budget.
        let quota_of: Vec<Option<usize>> = board
            .queue_names()
            .iter()
            .map(|name| quota.queue_id(name))
            .collect();
        for (b, q) in quota_of.iter().enumerate() {
            let Some(q) = *q else { continue };
            for (f, &devices) in board.usage(b).iter().enumerate() {
                if devices > 0 {
                    quota.add(q, f, devices);
                }
            }
            if let Some(budget) = &mut budgets[q] {
                budget.device_s -= board.budget_ahead_s(b, now_ms);
            }
        }
        let flavor_count = board.flavors.names.len();
        let work_ahead_s = board.work_ahead_s(now_ms);
        Cycle {
            board,
            keep,
            starts: Vec::new(),
            pending,
            profile,
            config,
            now_ms,
            quota,
            quota_of,
            work_ahead_s,
            candidates: HashMap::default(),
            rates: HashMap::default(),
            held: Vec::new(),
            held_free: vec![0; flavor_count],
            budgets,
            preempt_attempts: 0,
            preemptors: 0,
            starvation_holds: 0,
            decision: Decision::default(),
        }
    }

    fn run(mut self) -> Decision {
        let pending = self.pending;
        self.decision.pending.reserve(pending.len());
        // Per queue, its jobs in order, as compact keys (the sort then
        // stays in cache instead of chasing 100,000 job structs).
        // Each queue's jobs stay in the queue's own small array, so the
        // turns that jump between queues stay in cache.
        let queues = self.quota.queue_count();
        let mut wants: Vec<Vec<Want>> = vec![Vec::new(); queues];
        let mut by_queue: Vec<Vec<(u128, u32)>> = vec![Vec::new(); queues];
        for (index, job) in pending.iter().enumerate() {
            let mut want = Want {
                index: index as u32,
                queue: 0,
                model: self.board.models.get(&job.model).map(|m| m as u32),
                tp: job.tp,
                need: if job.memory.is_unknown() {
                    0
                } else {
                    job.memory.per_rank(job.tp)
                },
                qos: job.qos,
                steps_left: job.steps_left,
                waiting_since_ms: job.waiting_since_ms,
                pixel_frames: job.pixel_frames,
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
        // What was held was held for this cycle only.
        for slot in std::mem::take(&mut self.held) {
            self.board.slots.unhold(slot);
        }
        for (placement, run, data) in std::mem::take(&mut self.starts) {
            let queue = &self.pending[self.decision.placements[placement].job].queue;
            let key = self.board.start(run, data, queue);
            self.decision.placements[placement].run = Some(key);
        }
        // Only a board kept between cycles (the planner's) skips cycles:
        // the leader's cycles also refresh reasons and ETAs.
        let idle = self.decision.placements.is_empty() && self.decision.preemptions.is_empty();
        if self.keep && idle {
            self.decision.quiet_until_ms = Some(self.quiet_until_ms());
        }
        self.decision
    }

    /// When the cycle's inputs next change with time alone. The decision
    /// is a function of the view and of these moments only: ageing and
    /// starvation (per waiting job), minimum runtimes (per running job),
    /// budget periods (per queue); so, without a change to the view, a
    /// cycle before then decides what this one did.
    fn quiet_until_ms(&self) -> i64 {
        let now = self.now_ms;
        let mut until = i64::MAX;
        let mut after = |t: i64| {
            if t > now {
                until = until.min(t);
            }
        };
        let ageing = self.config.ageing_ms.max(1);
        for job in self.pending {
            let since = job.waiting_since_ms;
            after(since.saturating_add(ageing));
            after(since.saturating_add(ageing.saturating_mul(2)));
            after(since.saturating_add(self.config.starvation_ms));
        }
        for keys in &self.board.running_by_flavor {
            for job in keys.iter().filter_map(|&k| self.board.running(k)) {
                after(job.started_at_ms.saturating_add(self.config.min_runtime_ms));
            }
        }
        for budget in self.budgets.iter().flatten() {
            after(now.saturating_add((budget.resets_in_s * 1000.0).ceil().max(1.0) as i64));
        }
        // Work told to stop still spends its queue's budget while it
        // saves, with no time ahead booked: that budget shrinks with time
        // alone, so nothing is proved while there is such work.
        for (b, q) in self.quota_of.iter().enumerate() {
            let budgeted = q.is_some_and(|q| self.budgets[q].is_some());
            if budgeted && self.board.stopping(b) > 0 {
                after(now + 1);
            }
        }
        until
    }

    /// The job's class for ordering: one class up per `ageing_ms` waited.
    fn class(&self, job: &PendingJob) -> Qos {
        let waited = self.now_ms.saturating_sub(job.waiting_since_ms).max(0);
        let levels = waited / self.config.ageing_ms.max(1);
        (0..levels.min(2)).fold(job.qos, |qos, _| qos.promoted())
    }

    pub(super) fn serves(&self, node: usize, model: usize) -> bool {
        self.board.node_models[node].binary_search(&model).is_ok()
    }

    /// Whether a slot serves the job's model and has the memory one of
    /// its ranks needs.
    pub(super) fn usable(&self, slot: &Slot, want: &Want, model: usize) -> bool {
        slot.memory >= want.need && self.serves(slot.node, model)
    }

    /// Flavors that could ever run (model, tp), best first for the class.
    fn ranking(&mut self, model: usize, tp: u32, fastest: bool) -> Flavors {
        if let Some(r) = self.board.rankings.get(&(model, tp, fastest)) {
            return r.clone();
        }
        let mut fits: Vec<Option<bool>> = vec![None; self.board.flavors.names.len()];
        for slot in &self.board.slots.slots {
            if slot.size >= tp && self.serves(slot.node, model) {
                let open = fits[slot.flavor].unwrap_or(false) || !slot.cordoned;
                fits[slot.flavor] = Some(open);
            }
        }
        let model_name = &self.board.models.names[model];
        let mut ranked: Vec<(usize, bool)> = fits
            .iter()
            .enumerate()
            .filter_map(|(f, fit)| fit.map(|open| (f, open)))
            .collect();
        let names = &self.board.flavors.names;
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
        self.board
            .rankings
            .insert((model, tp, fastest), ranked.clone());
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

    /// Steps per second of the job (its model, size and tp) on flavor `f`.
    pub(super) fn rate(&mut self, want: &Want, f: usize) -> f64 {
        let Some(model) = want.model() else {
            return 1.0;
        };
        let key = (model, f, want.tp, want.pixel_frames);
        if let Some(rate) = self.rates.get(&key) {
            return *rate;
        }
        let names = (
            &self.board.models.names[model],
            &self.board.flavors.names[f],
        );
        let rate = self
            .profile
            .steps_per_s_at(names.0, names.1, want.tp, want.pixel_frames);
        self.rates.insert(key, rate);
        rate
    }

    pub(super) fn hold(&mut self, slot: usize) {
        self.board.slots.hold(slot);
        self.held.push(slot);
        let s = &self.board.slots.slots[slot];
        let free = &mut self.held_free[s.flavor];
        *free = (*free).max(s.free.len() as u32);
    }
}
