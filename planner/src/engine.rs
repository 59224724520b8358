//! The discrete-event simulation behind `genfleet plan`: simulated time,
//! a fleet of nodes, the workload's jobs, and at every cycle the leader's
//! own policy (`genfleet_scheduler::policy::schedule`) deciding from the
//! same view the leader builds (queues through `scheduling::queue_config`
//! and `default_queue`, memory through `scheduling::memory_need`).
//!
//! What the simulation adds is what the workers and the replicated state
//! do, as they do it: a placed job runs `steps_left / rate` seconds at the
//! profile's rate for its model, flavor and tp (after `reload_s` when it
//! resumes from a checkpoint); a preempted job stops at its next step
//! boundary, spends `checkpoint_s` saving, gives its devices back and
//! waits again from then with its steps kept; the job it was preempted for
//! is nominated until placed. Cycles run at the first tick (`cycle_s`)
//! after anything changes, and every tick while jobs wait (ageing).
//!
//! Node failures, where a flavor's MTBF is given, are events
//! (`failures`): a node fails, its jobs lose the work since their last
//! periodic checkpoint (taken at Young/Daly's interval, the workers' rule,
//! `genfleet_proto::checkpoints`), are requeued once the leader notices,
//! and the node comes back after its repair.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap};
use std::ops::ControlFlow;

use genfleet_proto as pb;
use genfleet_scheduler::policy::budget::{self, PeriodCharge};
use genfleet_scheduler::policy::{
    self, Board, CycleClock, GroupView, MemoryNeed, NodeView, PendingJob, PolicyConfig, Profile,
    Qos, QueueConfig, QueueDevices, RunKey, RunningJob,
};
use genfleet_scheduler::scheduling;
use genfleet_scheduler::spec::DEFAULT_QUEUE;

use super::failures::{self, Checkpointing, FailureClock, NodeFailures};
use super::fleet::Fleet;
use super::series::{self, Series};
use super::view::LiveView;
use super::workload::JobRequest;

/// Knobs of the simulation (the policy's own are in `policy`).
#[derive(Debug, Clone)]
pub struct SimConfig {
    pub policy: PolicyConfig,
    /// Seconds a preempted job spends writing its checkpoint.
    pub checkpoint_s: f64,
    /// Seconds a resumed job spends loading before its first step.
    pub reload_s: f64,
    /// The scheduling tick: a cycle runs at the first tick after a change.
    pub cycle_s: f64,
    /// Stop here (jobs not ended are reported as such); `None`: when every
    /// job has ended, or at twice the arrivals' span (at least an hour
    /// after the last arrival), whichever comes first.
    pub horizon_s: Option<f64>,
    /// Most buckets of the time series (queue depth, busy devices): the
    /// bucket is the shortest of a few round widths that keeps to this.
    pub buckets: usize,
    /// Mean time between failures of a node, for flavors without their
    /// own figure in `flavor_failures`; `None`: such nodes never fail.
    pub node_mtbf_s: Option<f64>,
    /// Seconds a failed node takes to come back (with `node_mtbf_s`).
    pub node_repair_s: f64,
    /// Per flavor: its nodes' failures (the fleet file's figures).
    pub flavor_failures: BTreeMap<String, NodeFailures>,
    /// Seconds from a node's failure until the leader requeues its jobs:
    /// a node that fails silently is declared down after the leader's
    /// `--worker-grace` (15 s by default).
    pub failure_detect_s: f64,
    /// Seeds the failure times: the same seed, the same failures.
    pub failure_seed: u64,
    /// Rebuild the policy's view of the whole fleet at every cycle and run
    /// every cycle, as the leader does, instead of keeping the view up to
    /// date by changes and skipping cycles proved idle: the same
    /// decisions, far slower at fleet scale (tests compare the two).
    pub rebuild_each_cycle: bool,
}

impl SimConfig {
    /// How the nodes of `flavor` fail, if they do.
    pub fn failures_of(&self, flavor: &str) -> Option<NodeFailures> {
        let failures = self.flavor_failures.get(flavor).copied().or_else(|| {
            self.node_mtbf_s.map(|mtbf_s| NodeFailures {
                mtbf_s,
                repair_s: self.node_repair_s,
            })
        });
        failures.filter(|f| f.mtbf_s > 0.0)
    }

    /// The periodic checkpoint interval the workers use with this MTBF,
    /// and the share of a run's time failures cost at it; None when nodes
    /// never fail.
    pub fn failure_cost(&self) -> Option<(std::time::Duration, f64)> {
        use genfleet_proto::checkpoints::{expected_waste, young_daly};
        use std::time::Duration;
        let mtbf = self.node_mtbf_s.filter(|m| *m > 0.0)?;
        let secs = |s: f64| Duration::from_secs_f64(s.max(0.0));
        let (cost, mtbf) = (secs(self.checkpoint_s), secs(mtbf));
        let interval = young_daly(cost, mtbf);
        Some((
            interval,
            expected_waste(cost, interval, secs(self.reload_s), mtbf),
        ))
    }
}

impl Default for SimConfig {
    fn default() -> Self {
        Self {
            policy: PolicyConfig::default(),
            checkpoint_s: 5.0,
            reload_s: 10.0,
            cycle_s: 1.0,
            horizon_s: None,
            buckets: 96,
            node_mtbf_s: None,
            node_repair_s: 4.0 * 3600.0,
            flavor_failures: BTreeMap::new(),
            failure_detect_s: 15.0,
            failure_seed: 0,
            rebuild_each_cycle: false,
        }
    }
}

/// How one job went.
#[derive(Debug, Clone, PartialEq)]
pub struct JobOutcome {
    pub queue: String,
    pub qos: Qos,
    pub arrival_s: f64,
    /// When it first started running.
    pub first_start_s: Option<f64>,
    /// When it completed.
    pub end_s: Option<f64>,
    pub preemptions: u32,
    /// Devices of its gang.
    pub tp: u32,
    /// Device-seconds its runs held, checkpoints and reloads included.
    pub device_s: f64,
    /// The pool (index in the fleet) of its last run.
    pub pool: Option<usize>,
}

/// One bucket of the time series: what held over `[start_s, start_s +
/// width_s)`, integrated over time (not sampled at an instant, so a spike
/// between two samples is not lost and a quiet bucket is not one).
#[derive(Debug, Clone, PartialEq)]
pub struct Bucket {
    pub start_s: f64,
    pub width_s: f64,
    /// Waiting jobs per class, in `Qos::ALL` order: the time-weighted mean
    /// and the most at any moment.
    pub pending_mean: [f64; 3],
    pub pending_max: [u32; 3],
    /// Busy devices per pool, in the fleet's order: mean and most.
    pub busy_mean: Vec<f64>,
    pub busy_max: Vec<u32>,
}

/// Told what happens as a run goes; either call may stop the run (a
/// sweep abandons a fleet that has provably missed a target).
pub trait Observer {
    /// `job` (its index in the workload) starts for the first time.
    fn started(&mut self, _job: usize, _wait_s: f64) -> ControlFlow<()> {
        ControlFlow::Continue(())
    }

    /// The simulated time, now and then.
    fn progress(&mut self, _now_s: f64) -> ControlFlow<()> {
        ControlFlow::Continue(())
    }
}

/// An observer that only reports the simulated time.
struct ProgressOnly<'f>(&'f mut dyn FnMut(f64));

impl Observer for ProgressOnly<'_> {
    fn progress(&mut self, now_s: f64) -> ControlFlow<()> {
        (self.0)(now_s);
        ControlFlow::Continue(())
    }
}

/// Everything a run measured.
#[derive(Debug, Clone)]
pub struct SimOutcome {
    pub jobs: Vec<JobOutcome>,
    /// Simulated seconds from the start to the last event (or the horizon).
    pub duration_s: f64,
    /// Device-seconds each pool's devices were held by jobs.
    pub busy_device_s: Vec<f64>,
    /// Per queue: device-seconds used, and of them beyond its nominal quota.
    pub queue_device_s: BTreeMap<String, (f64, f64)>,
    pub buckets: Vec<Bucket>,
    pub cycles: u64,
    /// Nodes that failed during the run.
    pub node_failures: u64,
    /// The observer stopped the run here (the rest is not simulated).
    pub stopped_at_s: Option<f64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum EventKind {
    /// A run ends with its last step.
    Finish,
    /// A preempted run has saved its checkpoint.
    Stopped,
    /// A node fails (the event's job field is the node's index).
    NodeFails,
    /// A failed node is back.
    NodeRepaired,
    /// The leader noticed a job's node is gone and requeues it.
    Requeue,
}

impl EventKind {
    /// Events of one run, stale once the run is replaced.
    fn of_run(self) -> bool {
        matches!(self, EventKind::Finish | EventKind::Stopped)
    }
}

/// Ordered by time, then kind, job and run: deterministic.
type Event = Reverse<(i64, EventKind, u32, u32)>;

#[derive(Debug, Clone)]
struct Run {
    /// Its key on the policy's board.
    key: Option<RunKey>,
    /// When its last step ends, unless it is stopped first.
    finish_ms: i64,
    node: usize,
    devices: Vec<u32>,
    placed_ms: i64,
    /// When its steps start (after a reload).
    compute_ms: i64,
    steps_per_s: f64,
    /// Steps done when it was placed.
    steps_at_start: u32,
    preempting: bool,
    /// Steps it will have done when it stops for a preemption.
    stops_after: Option<u32>,
}

#[derive(Debug, Clone)]
enum Phase {
    Future,
    Pending,
    Running(Run),
    /// Its node failed; the leader has not noticed yet.
    Lost,
    Done,
}

#[derive(Debug, Clone)]
struct SimJob {
    phase: Phase,
    steps_done: u32,
    waiting_since_ms: i64,
    nominated: bool,
    /// Bumped at every placement, so a stale event is ignored.
    run: u32,
    memory: MemoryNeed,
    first_start_ms: Option<i64>,
    end_ms: Option<i64>,
    preemptions: u32,
    /// Device-ms its ended runs held.
    device_ms: f64,
    pool: Option<usize>,
}

struct SimNode {
    pool: usize,
    name: String,
    /// The job on each device.
    busy: Vec<Option<u32>>,
    /// Failed and not repaired yet.
    down: bool,
}

/// A simulation of one fleet, one set of queues, one workload.
pub struct Simulation<'a> {
    fleet: &'a Fleet,
    queues: &'a [pb::Queue],
    requests: &'a [JobRequest],
    profile: &'a Profile,
    config: &'a SimConfig,
    nodes: Vec<SimNode>,
    jobs: Vec<SimJob>,
    events: BinaryHeap<Event>,
    /// The policy's view, with the jobs waiting and running.
    live: LiveView,
    /// The same fleet and running work as the policy indexes it, kept
    /// between cycles.
    board: Board<'static>,
    /// The implicit default queue (every device nominal), for fleets
    /// without one of that name.
    default_queue: QueueConfig,
    next_arrival: usize,
    /// Per queue: device-ms used and beyond nominal, and per flavor in use.
    in_use: BTreeMap<(String, String), u32>,
    queue_device_ms: BTreeMap<String, (f64, f64)>,
    /// Per queue with a budget: device-ms charged for ended runs.
    budget_charged: BTreeMap<String, PeriodCharge>,
    busy_device_ms: Vec<f64>,
    /// Devices no job holds.
    free_devices: u64,
    /// Waiting jobs per class and busy devices per pool, now.
    pending_by_class: [u32; 3],
    busy_by_pool: Vec<u32>,
    series: Series,
    cycles: u64,
    /// Set when the observer stops the run.
    stop: bool,
    /// Per pool: its nodes' failures and the checkpoints runs take there.
    failures: Vec<Option<(NodeFailures, Checkpointing)>>,
    failure_clock: FailureClock,
    /// Jobs whose node failed, not requeued yet.
    lost: usize,
    /// Until when cycles decide nothing, as the last one proved; reset
    /// by any change.
    quiet_until_ms: Option<i64>,
    node_failures: u64,
}

fn ms(seconds: f64) -> i64 {
    (seconds * 1000.0).round() as i64
}

/// A job's arrival in whole ms, rounded up: it never starts before it
/// arrived.
fn arrival_ms(request: &JobRequest) -> i64 {
    (request.arrival_s * 1000.0).ceil() as i64
}

impl<'a> Simulation<'a> {
    /// `requests` sorted by arrival (as `read_trace` and the generator give them).
    pub fn new(
        fleet: &'a Fleet,
        queues: &'a [pb::Queue],
        requests: &'a [JobRequest],
        profile: &'a Profile,
        config: &'a SimConfig,
    ) -> Self {
        let mut nodes = Vec::new();
        for (pool, p) in fleet.pools.iter().enumerate() {
            for i in 0..p.nodes {
                nodes.push(SimNode {
                    pool,
                    name: format!("{}-{i}", p.flavor),
                    busy: vec![None; p.devices_per_node as usize],
                    down: false,
                });
            }
        }
        let views: Vec<NodeView> = nodes
            .iter()
            .map(|n: &SimNode| {
                let pool = &fleet.pools[n.pool];
                let devices: Vec<u32> = (0..n.busy.len() as u32).collect();
                NodeView {
                    name: n.name.clone(),
                    cordoned: false,
                    models: pool.models.clone(),
                    groups: vec![GroupView {
                        flavor: pool.flavor.clone(),
                        free: devices.clone(),
                        devices,
                        memory_bytes: pool.memory_bytes,
                    }],
                    simulated: true,
                }
            })
            .collect();
        let board = Board::new(&views).into_owned();
        let default_queue = scheduling::default_queue(&views);
        let jobs: Vec<SimJob> = requests
            .iter()
            .map(|r| SimJob {
                phase: Phase::Future,
                steps_done: 0,
                waiting_since_ms: arrival_ms(r),
                nominated: false,
                run: 0,
                memory: scheduling::memory_need(&r.spec()),
                first_start_ms: None,
                end_ms: None,
                preemptions: 0,
                device_ms: 0.0,
                pool: None,
            })
            .collect();
        Self {
            fleet,
            queues,
            requests,
            profile,
            config,
            nodes,
            jobs,
            events: BinaryHeap::new(),
            live: LiveView::new(views, requests.len()),
            board,
            default_queue,
            next_arrival: 0,
            in_use: BTreeMap::new(),
            queue_device_ms: BTreeMap::new(),
            budget_charged: BTreeMap::new(),
            busy_device_ms: vec![0.0; fleet.pools.len()],
            free_devices: fleet.devices(),
            pending_by_class: [0; 3],
            busy_by_pool: vec![0; fleet.pools.len()],
            series: Series::new(0, 0),
            cycles: 0,
            stop: false,
            failures: fleet
                .pools
                .iter()
                .map(|p| {
                    config
                        .failures_of(&p.flavor)
                        .map(|f| (f, f.checkpointing(config.checkpoint_s)))
                })
                .collect(),
            failure_clock: FailureClock::new(config.failure_seed),
            lost: 0,
            quiet_until_ms: None,
            node_failures: 0,
        }
    }

    /// Runs to the end (or the horizon); `progress` is told the simulated
    /// time now and then.
    ///
    /// Cycles follow the leader's loop: after a change (an arrival, a job
    /// ending or stopping) a cycle runs at once when some device is free
    /// (after the gap of the leader's `CycleClock`), otherwise once the
    /// interval since the last cycle has passed; while jobs wait, one runs
    /// every interval anyway (ageing, minimum runtimes).
    pub fn run(self, progress: &mut dyn FnMut(f64)) -> SimOutcome {
        self.run_observed(&mut ProgressOnly(progress))
    }

    /// Runs to the end, the horizon, or until `observer` says stop.
    pub fn run_observed(mut self, observer: &mut dyn Observer) -> SimOutcome {
        let interval = ms(self.config.cycle_s).max(1);
        let last_arrival = self.requests.last().map_or(0, arrival_ms);
        // Without a horizon: twice the arrivals' span (at least an hour
        // more), so that a fleet too small for the workload still ends.
        let horizon = self
            .config
            .horizon_s
            .map_or(last_arrival + last_arrival.max(3_600_000), ms);
        self.series = Series::new(
            series::bucket_ms(horizon, self.config.buckets),
            self.fleet.pools.len(),
        );
        let mut now = 0i64;
        // The leader's clock; a simulated cycle takes no simulated time, so
        // the gap after it is the least one.
        let mut clock = CycleClock::new(interval, 0);
        let mut dirty = false;
        let mut steps = 0u64;
        let failing = self.failures.iter().any(Option::is_some);
        for node in 0..self.nodes.len() {
            if let Some((f, _)) = self.failures[self.nodes[node].pool] {
                let at = self.failure_clock.next_failure_ms(f.mtbf_s);
                self.events
                    .push(Reverse((at, EventKind::NodeFails, node as u32, 0)));
            }
        }
        loop {
            steps += 1;
            while let Some(&Reverse((at, kind, job, run))) = self.events.peek() {
                if at > now {
                    break;
                }
                self.events.pop();
                if self.apply(at, kind, job, run) {
                    dirty = true;
                    self.quiet_until_ms = None;
                }
            }
            while self.next_arrival < self.requests.len()
                && arrival_ms(&self.requests[self.next_arrival]) <= now
            {
                let job = self.next_arrival as u32;
                self.make_pending(job);
                self.next_arrival += 1;
                dirty = true;
                self.quiet_until_ms = None;
            }
            let waiting = !self.live.pending().is_empty();
            let due = (dirty && clock.due(now, self.free_devices > 0))
                || (waiting && clock.due(now, false));
            if due {
                // With nothing waiting, or nothing changed since a cycle
                // proved the next ones idle, the policy decides nothing:
                // the leader's cycle still runs (and counts for the next
                // one's timing), the simulation need not call it.
                // (A view rebuilt every cycle, the leader's way, runs them
                // all: the tests compare the two.)
                let quiet = !self.config.rebuild_each_cycle
                    && self.quiet_until_ms.is_some_and(|until| now < until);
                if self.live.pending().is_empty() || quiet {
                    self.cycles += 1;
                } else {
                    self.cycle(now, observer);
                }
                clock.ran(now, 0);
                dirty = false;
            }
            if steps.is_multiple_of(4096) && observer.progress(now as f64 / 1000.0).is_break() {
                self.stop = true;
            }
            if self.stop {
                let outcome = self.finish(now);
                return SimOutcome {
                    stopped_at_s: Some(outcome.duration_s),
                    ..outcome
                };
            }
            // The next moment something happens or a cycle is due (events
            // of runs since stopped or replaced do not count).
            self.drop_stale_events();
            let mut next: Option<i64> = self.events.peek().map(|Reverse((at, ..))| *at);
            let mut consider = |t: i64| next = Some(next.map_or(t, |n| n.min(t)));
            if let Some(r) = self.requests.get(self.next_arrival) {
                consider(arrival_ms(r));
            }
            if dirty {
                consider(clock.next_due_ms(self.free_devices > 0));
            }
            if !self.live.pending().is_empty() {
                consider(clock.interval_due_ms());
            }
            // Nodes fail and come back for ever: once no work is left,
            // their events are no reason to go on.
            let work_left = self.next_arrival < self.requests.len()
                || !self.live.pending().is_empty()
                || !self.live.running().is_empty()
                || self.lost > 0;
            let next = next.filter(|_| !failing || work_left);
            let Some(next) = next else {
                self.series
                    .add(now, now, &self.pending_by_class, &self.busy_by_pool);
                break;
            };
            let next = next.max(now + 1).min(horizon.max(now + 1));
            // The state holds from now until next.
            self.series
                .add(now, next, &self.pending_by_class, &self.busy_by_pool);
            self.account(now, next);
            now = next;
            if now >= horizon {
                break;
            }
        }
        self.finish(now)
    }

    /// Drops events at the top of the queue that belong to runs that no
    /// longer exist (a finish cancelled by a preemption).
    fn drop_stale_events(&mut self) {
        while let Some(&Reverse((_, kind, job, run))) = self.events.peek() {
            if !kind.of_run() {
                break;
            }
            let j = &self.jobs[job as usize];
            if j.run == run && matches!(j.phase, Phase::Running(_)) {
                break;
            }
            self.events.pop();
        }
    }

    /// Whether an event changed anything (a stale one does not).
    fn apply(&mut self, at: i64, kind: EventKind, job: u32, run: u32) -> bool {
        match kind {
            EventKind::NodeFails => return self.node_fails(job as usize, at),
            EventKind::NodeRepaired => return self.node_repaired(job as usize, at),
            EventKind::Requeue => return self.requeue(job, run, at),
            EventKind::Finish | EventKind::Stopped => {}
        }
        let j = &self.jobs[job as usize];
        if j.run != run || !matches!(j.phase, Phase::Running(_)) {
            return false;
        }
        let Phase::Running(r) =
            std::mem::replace(&mut self.jobs[job as usize].phase, Phase::Pending)
        else {
            return false;
        };
        self.release(job, &r, at);
        let total = self.requests[job as usize].steps;
        let j = &mut self.jobs[job as usize];
        match kind {
            EventKind::Finish => {
                j.steps_done = total;
                j.phase = Phase::Done;
                j.end_ms = Some(at);
            }
            EventKind::Stopped => {
                let done = r.stops_after.unwrap_or_else(|| steps_by(&r, at));
                j.steps_done = (r.steps_at_start + done).min(total.saturating_sub(1));
                j.waiting_since_ms = at;
                j.preemptions += 1;
                self.make_pending(job);
            }
            _ => {}
        }
        true
    }

    /// A node fails: its jobs lose the work since their last checkpoint
    /// and wait for the leader to notice; the node is down for its repair.
    fn node_fails(&mut self, node: usize, at: i64) -> bool {
        let Some((failures, checkpointing)) = self.failures[self.nodes[node].pool] else {
            return false;
        };
        if self.nodes[node].down {
            return false;
        }
        self.node_failures += 1;
        let mut jobs: Vec<u32> = self.nodes[node].busy.iter().flatten().copied().collect();
        jobs.sort_unstable();
        jobs.dedup();
        let interval_ms = ms(checkpointing.interval_s);
        for job in jobs {
            let Phase::Running(r) =
                std::mem::replace(&mut self.jobs[job as usize].phase, Phase::Lost)
            else {
                continue;
            };
            self.release(job, &r, at);
            let total = self.requests[job as usize].steps;
            let kept =
                failures::steps_at_last_checkpoint(at - r.compute_ms, interval_ms, r.steps_per_s);
            let j = &mut self.jobs[job as usize];
            j.steps_done = (r.steps_at_start + kept).min(total.saturating_sub(1));
            j.run += 1;
            self.lost += 1;
            let requeue = at + ms(self.config.failure_detect_s);
            self.events
                .push(Reverse((requeue, EventKind::Requeue, job, j.run)));
        }
        let n = &mut self.nodes[node];
        n.down = true;
        self.free_devices -= n.busy.len() as u64;
        self.board.set_cordoned(node, true);
        self.live.view.nodes[node].cordoned = true;
        let back = at + ms(failures.repair_s).max(1);
        self.events
            .push(Reverse((back, EventKind::NodeRepaired, node as u32, 0)));
        true
    }

    /// A repaired node is back, empty; its next failure is drawn.
    fn node_repaired(&mut self, node: usize, at: i64) -> bool {
        let Some((failures, _)) = self.failures[self.nodes[node].pool] else {
            return false;
        };
        let n = &mut self.nodes[node];
        if !n.down {
            return false;
        }
        n.down = false;
        self.free_devices += n.busy.len() as u64;
        self.board.set_cordoned(node, false);
        self.live.view.nodes[node].cordoned = false;
        let next = at + self.failure_clock.next_failure_ms(failures.mtbf_s);
        self.events
            .push(Reverse((next, EventKind::NodeFails, node as u32, 0)));
        true
    }

    /// The leader requeues a job whose node failed.
    fn requeue(&mut self, job: u32, run: u32, at: i64) -> bool {
        let j = &mut self.jobs[job as usize];
        if j.run != run || !matches!(j.phase, Phase::Lost) {
            return false;
        }
        j.waiting_since_ms = at;
        self.lost -= 1;
        self.make_pending(job);
        true
    }

    /// Gives a run's devices back and books its use.
    fn release(&mut self, job: u32, run: &Run, at: i64) {
        self.live.remove_running(job, run.node, &run.devices);
        if let Some(key) = run.key {
            self.board.release(key);
        }
        let node = &mut self.nodes[run.node];
        for &d in &run.devices {
            node.busy[d as usize] = None;
        }
        self.free_devices += run.devices.len() as u64;
        let pool = node.pool;
        self.busy_by_pool[pool] -= run.devices.len() as u32;
        let held_ms = (at - run.placed_ms).max(0) as f64 * run.devices.len() as f64;
        self.busy_device_ms[pool] += held_ms;
        self.jobs[job as usize].device_ms += held_ms;
        let request = &self.requests[job as usize];
        let flavor = self.fleet.pools[pool].flavor.clone();
        if let Some(count) = self.in_use.get_mut(&(request.queue.clone(), flavor)) {
            *count = count.saturating_sub(run.devices.len() as u32);
        }
        self.charge_budget(&request.queue.clone(), run, at);
    }

    /// Books an ended run's device-time against its queue's budget period,
    /// as the state charges an ended lease.
    fn charge_budget(&mut self, queue: &str, run: &Run, at: i64) {
        let Some(budget) = self.queue(queue).and_then(|q| q.budget) else {
            return;
        };
        self.budget_charged
            .entry(queue.to_string())
            .or_default()
            .charge(&budget, run.placed_ms, run.devices.len() as u64, at);
    }

    fn queue(&self, name: &str) -> Option<&pb::Queue> {
        self.queues.iter().find(|q| q.name == name)
    }

    /// Adds the time from `from` to `until` to each queue's use, and to
    /// its use beyond its nominal quota (borrowed from its cohort).
    fn account(&mut self, from: i64, until: i64) {
        let dt = (until - from).max(0) as f64;
        if dt == 0.0 {
            return;
        }
        let mut additions = Vec::new();
        for ((queue, flavor), &count) in &self.in_use {
            if count == 0 {
                continue;
            }
            // The implicit default queue holds every device as nominal.
            let nominal = match self.queue(queue) {
                Some(q) => q
                    .quotas
                    .iter()
                    .find(|f| f.flavor == *flavor)
                    .map_or(0, |f| f.nominal),
                None => u32::MAX,
            };
            let devices = QueueDevices {
                nominal,
                used: count,
            };
            additions.push((
                queue.clone(),
                f64::from(count) * dt,
                f64::from(devices.borrowed()) * dt,
            ));
        }
        for (queue, used, borrowed) in additions {
            let entry = self.queue_device_ms.entry(queue).or_default();
            entry.0 += used;
            entry.1 += borrowed;
        }
    }

    /// One scheduling cycle at `now`: the leader's policy on the view.
    fn cycle(&mut self, now: i64, observer: &mut dyn Observer) {
        self.cycles += 1;
        self.refresh_view(now);
        let decision = if self.config.rebuild_each_cycle {
            self.refresh_running(now);
            policy::schedule(&self.live.view, self.profile, &self.config.policy, now)
        } else {
            let view = &self.live.view;
            policy::schedule_on(
                &mut self.board,
                &view.queues,
                &view.pending,
                self.profile,
                &self.config.policy,
                now,
            )
        };
        self.quiet_until_ms = decision.quiet_until_ms;
        let rebuilt = self.config.rebuild_each_cycle;
        let placed: Vec<(u32, usize, Vec<u32>, Option<RunKey>)> = decision
            .placements
            .into_iter()
            .map(|p| {
                let key = p.run.filter(|_| !rebuilt);
                (self.live.pending()[p.job], p.node, p.device_ids, key)
            })
            .collect();
        for (job, node, devices, key) in &placed {
            let first = self.jobs[*job as usize].first_start_ms.is_none();
            self.start(*job, *node, devices, now, *key);
            if first {
                let wait_s =
                    (now as f64 / 1000.0 - self.requests[*job as usize].arrival_s).max(0.0);
                self.stop |= observer.started(*job as usize, wait_s).is_break();
            }
        }
        if !placed.is_empty() {
            let jobs = &self.jobs;
            self.live
                .retain_pending(|j| matches!(jobs[j as usize].phase, Phase::Pending));
        }
        for p in &decision.preemptions {
            let (Some(victim), Some(for_job)) = (job_index(&p.job_id), job_index(&p.for_job))
            else {
                continue;
            };
            self.jobs[for_job as usize].nominated = true;
            self.preempt(victim, now);
        }
    }

    fn start(&mut self, job: u32, node: usize, devices: &[u32], now: i64, key: Option<RunKey>) {
        let pool = self.nodes[node].pool;
        let flavor = &self.fleet.pools[pool].flavor;
        let request = &self.requests[job as usize];
        let steps_per_s = self
            .profile
            .steps_per_s_at(&request.model, flavor, request.tp, pixel_frames(request))
            .max(1e-9)
            / self.failures[pool].map_or(1.0, |(_, c)| c.slowdown);
        for &d in devices {
            self.nodes[node].busy[d as usize] = Some(job);
        }
        self.free_devices -= devices.len() as u64;
        self.busy_by_pool[pool] += devices.len() as u32;
        self.pending_by_class[class_index(request.qos)] -= 1;
        *self
            .in_use
            .entry((request.queue.clone(), flavor.clone()))
            .or_default() += devices.len() as u32;
        let steps_done = self.jobs[job as usize].steps_done;
        let reload = if steps_done > 0 {
            ms(self.config.reload_s)
        } else {
            0
        };
        let left = request.steps.saturating_sub(steps_done);
        let finish = now + reload + ms(f64::from(left) / steps_per_s);
        if let Some(key) = key {
            self.board.set_ends_at(key, finish);
        }
        let j = &mut self.jobs[job as usize];
        let run = Run {
            key,
            finish_ms: finish,
            node,
            devices: devices.to_vec(),
            placed_ms: now,
            compute_ms: now + reload,
            steps_per_s,
            steps_at_start: j.steps_done,
            preempting: false,
            stops_after: None,
        };
        j.run += 1;
        j.nominated = false;
        j.first_start_ms.get_or_insert(now);
        j.pool = Some(pool);
        let entry = RunningJob {
            id: job_id(job),
            queue: request.queue.clone(),
            qos: request.qos,
            flavor: flavor.clone(),
            node: self.nodes[node].name.clone(),
            devices: devices.to_vec(),
            started_at_ms: now,
            preempting: false,
            remaining_s: f64::from(left) / steps_per_s,
        };
        j.phase = Phase::Running(run);
        self.live.add_running(job, entry, node, devices);
        self.events.push(Reverse((
            finish,
            EventKind::Finish,
            job,
            self.jobs[job as usize].run,
        )));
    }

    /// Tells a running job to checkpoint: it stops at its next step
    /// boundary, unless that is its last.
    fn preempt(&mut self, job: u32, now: i64) {
        let total = self.requests[job as usize].steps;
        let checkpoint = ms(self.config.checkpoint_s);
        let j = &mut self.jobs[job as usize];
        let Phase::Running(run) = &mut j.phase else {
            return;
        };
        if run.preempting {
            return;
        }
        run.preempting = true;
        if let Some(entry) = self.live.running_entry(job) {
            entry.preempting = true;
        }
        let boundary = steps_by(run, now.max(run.compute_ms)) + 1;
        if run.steps_at_start + boundary >= total {
            // Its next boundary is its last step: it finishes instead.
            return;
        }
        run.stops_after = Some(boundary);
        // The worker computes no step past the boundary: the run's finish
        // event no longer holds, even if saving would outlast it.
        j.run += 1;
        let at = run.compute_ms + ms(f64::from(boundary) / run.steps_per_s) + checkpoint;
        self.events
            .push(Reverse((at.max(now), EventKind::Stopped, job, j.run)));
    }

    /// A job starts waiting (it arrived, or it stopped for a preemption).
    fn make_pending(&mut self, job: u32) {
        let request = &self.requests[job as usize];
        let j = &mut self.jobs[job as usize];
        j.phase = Phase::Pending;
        self.pending_by_class[class_index(request.qos)] += 1;
        let entry = PendingJob {
            id: job_id(job),
            queue: request.queue.clone(),
            qos: request.qos,
            priority: request.priority,
            tp: request.tp,
            model: request.model.clone(),
            steps_left: request.steps.saturating_sub(j.steps_done),
            waiting_since_ms: j.waiting_since_ms,
            nominated: j.nominated,
            position: u64::from(job),
            memory: j.memory,
            pixel_frames: pixel_frames(request),
        };
        self.live.add_pending(job, entry);
    }

    /// Brings what changes with time into the view: queues' budgets, the
    /// running jobs' remaining time, nominations.
    fn refresh_view(&mut self, now: i64) {
        let mut queues: Vec<_> = self
            .queues
            .iter()
            .map(|q| scheduling::queue_config(q, self.budget_used_s(q, now), now))
            .collect();
        if !queues.iter().any(|q| q.name == DEFAULT_QUEUE) {
            queues.push(self.default_queue.clone());
        }
        self.live.view.queues = queues;
        let jobs = &self.jobs;
        for (job, entry) in self.live.pending_entries() {
            entry.nominated = jobs[job as usize].nominated;
        }
    }

    /// The running jobs' time left, for a view rebuilt at every cycle (the
    /// board keeps each run's end instead).
    fn refresh_running(&mut self, now: i64) {
        let jobs = &self.jobs;
        for (job, entry) in self.live.running_entries() {
            if let Phase::Running(run) = &jobs[job as usize].phase {
                entry.remaining_s = (run.finish_ms - now) as f64 / 1000.0;
            }
        }
    }

    /// Device-seconds of `queue`'s budget used in the period of `now`, as
    /// the state counts them: ended runs charged to the period, plus what
    /// running work used since the later of its start and the period's.
    fn budget_used_s(&self, queue: &pb::Queue, now: i64) -> Option<f64> {
        let budget = queue.budget.as_ref()?;
        let charged = self
            .budget_charged
            .get(&queue.name)
            .copied()
            .unwrap_or_default();
        let running = self.live.running().iter().filter_map(|&job| {
            if self.requests[job as usize].queue != queue.name {
                return None;
            }
            match &self.jobs[job as usize].phase {
                Phase::Running(run) => Some((run.placed_ms, run.devices.len() as u64)),
                _ => None,
            }
        });
        Some(budget::used_s(budget, charged, running, now))
    }

    fn finish(mut self, now: i64) -> SimOutcome {
        // Runs still going at the horizon have held their devices so far.
        for &job in self.live.running() {
            if let Phase::Running(run) = &self.jobs[job as usize].phase {
                let held = (now - run.placed_ms).max(0) as f64 * run.devices.len() as f64;
                self.busy_device_ms[self.nodes[run.node].pool] += held;
                self.jobs[job as usize].device_ms += held;
            }
        }
        let jobs = self
            .jobs
            .iter()
            .zip(self.requests)
            .map(|(j, r)| JobOutcome {
                queue: r.queue.clone(),
                qos: r.qos,
                arrival_s: r.arrival_s,
                first_start_s: j.first_start_ms.map(|t| t as f64 / 1000.0),
                end_s: j.end_ms.map(|t| t as f64 / 1000.0),
                preemptions: j.preemptions,
                tp: r.tp,
                device_s: j.device_ms / 1000.0,
                pool: j.pool,
            })
            .collect();
        SimOutcome {
            jobs,
            duration_s: now as f64 / 1000.0,
            busy_device_s: self.busy_device_ms.iter().map(|m| m / 1000.0).collect(),
            queue_device_s: self
                .queue_device_ms
                .iter()
                .map(|(q, (used, borrowed))| (q.clone(), (used / 1000.0, borrowed / 1000.0)))
                .collect(),
            buckets: self.series.finish(now),
            cycles: self.cycles,
            node_failures: self.node_failures,
            stopped_at_s: None,
        }
    }
}

/// Whole steps a run has done by `at`.
fn steps_by(run: &Run, at: i64) -> u32 {
    let seconds = (at - run.compute_ms).max(0) as f64 / 1000.0;
    (seconds * run.steps_per_s + 1e-9).floor() as u32
}

/// Width x height x frames: what a job's step time grows with.
fn pixel_frames(request: &JobRequest) -> u64 {
    u64::from(request.width) * u64::from(request.height) * u64::from(request.frames)
}

fn class_index(qos: Qos) -> usize {
    Qos::ALL.iter().position(|q| *q == qos).unwrap_or(0)
}

fn job_id(job: u32) -> String {
    format!("j{job}")
}

fn job_index(id: &str) -> Option<u32> {
    id.strip_prefix('j')?.parse().ok()
}

#[cfg(test)]
#[path = "engine_tests.rs"]
mod tests;
