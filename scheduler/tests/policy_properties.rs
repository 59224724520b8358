//! Properties of the scheduling policy over generated clusters, queues and
//! workloads, checked cycle by cycle while a simulated fleet carries the
//! decisions out (placed jobs start, preempted ones checkpoint at the next
//! cycle, jobs finish after their run time).

mod policy;

use std::collections::{BTreeMap, BTreeSet};

use genfleet_scheduler::policy::{
    schedule, ClusterView, Decision, FlavorQuota, PendingReason, PolicyConfig, PreemptReason,
    Profile, Qos, QueueConfig,
};
use policy::{node, pending, World};
use proptest::prelude::*;

const CYCLE_MS: i64 = 30_000;
const FLAVORS: [&str; 2] = ["nvidia-h100-80gb", "amd-mi300x"];

fn config() -> PolicyConfig {
    PolicyConfig {
        min_runtime_ms: 2 * CYCLE_MS,
        ageing_ms: 10 * CYCLE_MS,
        starvation_ms: 20 * CYCLE_MS,
        max_preemptors_per_cycle: 64,
    }
}

fn qos() -> impl Strategy<Value = Qos> {
    prop_oneof![
        Just(Qos::Batch),
        Just(Qos::Standard),
        Just(Qos::Interactive)
    ]
}

fn flavor_quota() -> impl Strategy<Value = FlavorQuota> {
    (
        0u32..=8,
        proptest::option::of(0u32..=8),
        proptest::option::of(0u32..=8),
    )
        .prop_map(|(nominal, borrowing_limit, lending_limit)| FlavorQuota {
            nominal,
            borrowing_limit,
            lending_limit,
        })
}

fn queues() -> impl Strategy<Value = Vec<QueueConfig>> {
    proptest::collection::vec(
        (any::<bool>(), flavor_quota(), flavor_quota(), 1u32..=3),
        1..=4,
    )
    .prop_map(|qs| {
        qs.into_iter()
            .enumerate()
            .map(|(i, (in_cohort, a, b, weight))| {
                let mut q = policy::queue(
                    &format!("q{i}"),
                    in_cohort.then_some("c"),
                    &[(FLAVORS[0], a), (FLAVORS[1], b)],
                );
                q.weight = weight;
                q
            })
            .collect()
    })
}

/// (flavor, devices) per node.
fn nodes() -> impl Strategy<Value = Vec<(usize, u32)>> {
    proptest::collection::vec(
        (
            0usize..2,
            prop_oneof![Just(1u32), Just(2), Just(4), Just(8)],
        ),
        1..=5,
    )
}

/// (cycle, queue, qos, tp, run cycles).
type Arrival = (usize, usize, Qos, u32, i64);

fn arrivals() -> impl Strategy<Value = Vec<Arrival>> {
    proptest::collection::vec(
        (
            0usize..16,
            0usize..4,
            qos(),
            prop_oneof![Just(1u32), Just(2), Just(4)],
            1i64..6,
        ),
        0..40,
    )
}

fn world(queues: Vec<QueueConfig>, nodes: &[(usize, u32)]) -> World {
    let nodes = nodes
        .iter()
        .enumerate()
        .map(|(i, (f, size))| node(&format!("n{i}"), FLAVORS[*f], *size))
        .collect();
    World::new(queues, nodes)
}

/// Devices each queue holds of each flavor (work not being preempted).
fn usage(view: &ClusterView) -> BTreeMap<(String, String), u32> {
    let mut used = BTreeMap::new();
    for job in view.running.iter().filter(|j| !j.preempting) {
        *used
            .entry((job.queue.clone(), job.flavor.clone()))
            .or_default() += job.devices.len() as u32;
    }
    used
}

/// What must hold after every cycle.
fn check_cycle(
    before: &ClusterView,
    now_ms: i64,
    decision: &Decision,
    after: &ClusterView,
    config: &PolicyConfig,
) {
    // Every pending job is either placed or explained, once.
    let mut seen = BTreeSet::new();
    for id in decision
        .placements
        .iter()
        .map(|p| &before.pending[p.job].id)
        .chain(decision.pending.iter().map(|p| &before.pending[p.job].id))
    {
        assert!(seen.insert(id.clone()), "{id} decided twice");
    }
    let pending: BTreeSet<String> = before.pending.iter().map(|j| j.id.clone()).collect();
    assert_eq!(seen, pending, "every pending job is decided");

    // No device held twice; no job on two nodes.
    let mut held = BTreeSet::new();
    let mut jobs = BTreeSet::new();
    for job in &after.running {
        assert!(jobs.insert(job.id.clone()), "{} runs twice", job.id);
        for d in &job.devices {
            assert!(
                held.insert((job.node.clone(), *d)),
                "device {d} of {} is held twice",
                job.node
            );
        }
    }

    // No queue beyond nominal plus its borrowing limit; no cohort beyond
    // what its members lend.
    let used = usage(after);
    let mut pools: BTreeMap<String, (u32, u32)> = BTreeMap::new();
    for q in &after.queues {
        for (flavor, quota) in &q.quotas {
            let u = used
                .get(&(q.name.clone(), flavor.clone()))
                .copied()
                .unwrap_or(0);
            let limit = match &q.cohort {
                Some(_) => quota
                    .nominal
                    .saturating_add(quota.borrowing_limit.unwrap_or(u32::MAX)),
                None => quota.nominal,
            };
            assert!(
                u <= limit,
                "{} holds {u} of {flavor}, limit {limit}",
                q.name
            );
            if q.cohort.is_some() {
                let pool = pools.entry(flavor.clone()).or_default();
                pool.0 += quota.lendable();
                pool.1 += u.saturating_sub(quota.nominal - quota.lendable());
            }
        }
    }
    for (flavor, (size, use_)) in pools {
        assert!(use_ <= size, "cohort uses {use_} of {flavor}, lends {size}");
    }

    // Preemption rules: not before the minimum runtime; interactive over
    // batch; reclaim (by any class) only of another cohort queue's work
    // beyond its nominal.
    let classes: BTreeMap<&str, (Qos, &str)> = before
        .pending
        .iter()
        .map(|j| (j.id.as_str(), (j.qos, j.queue.as_str())))
        .collect();
    let cohort_of = |queue: &str| {
        before
            .queues
            .iter()
            .find(|q| q.name == queue)
            .and_then(|q| q.cohort.clone())
    };
    for p in &decision.preemptions {
        let victim = before
            .running
            .iter()
            .find(|j| j.id == p.job_id)
            .expect("victim was running");
        assert!(!victim.preempting, "{} preempted twice", p.job_id);
        assert!(
            now_ms - victim.started_at_ms >= config.min_runtime_ms,
            "{} preempted before its minimum runtime",
            p.job_id
        );
        let (by, by_queue) = classes[p.for_job.as_str()];
        if p.reason == PreemptReason::InteractiveOverBatch {
            assert_eq!((by, victim.qos), (Qos::Interactive, Qos::Batch));
            continue;
        }
        assert_eq!(p.reason, PreemptReason::ReclaimQuota, "{p:?}");
        assert_ne!(victim.queue, by_queue, "reclaim within a queue");
        // (That it takes only borrowed devices is the quota limits above:
        // the policy counts work nominated for freed devices as used.)
        let cohort = cohort_of(&victim.queue);
        assert!(
            cohort.is_some() && cohort == cohort_of(by_queue),
            "reclaim across cohorts"
        );
    }
}

/// Runs the workload through `cycles` cycles, checking every one; returns
/// the cycle at which each job started (first time).
fn simulate(mut world: World, arrivals: &[Arrival], cycles: usize) -> BTreeMap<String, usize> {
    let config = config();
    let profile = Profile::seeded();
    let mut run_for: BTreeMap<String, i64> = BTreeMap::new();
    let mut started: BTreeMap<String, usize> = BTreeMap::new();
    for cycle in 0..cycles {
        world.now_ms = cycle as i64 * CYCLE_MS;
        world.checkpoint();
        let done: Vec<String> = world
            .view
            .running
            .iter()
            .filter(|j| world.now_ms - j.started_at_ms >= run_for[&j.id] * CYCLE_MS)
            .map(|j| j.id.clone())
            .collect();
        for id in done {
            world.finish(&id);
        }
        for (i, (at, queue, qos, tp, runs)) in arrivals.iter().enumerate() {
            if *at == cycle {
                let id = format!("j{i}");
                run_for.insert(id.clone(), *runs);
                let queue = format!("q{}", queue % world.view.queues.len());
                world.submit(pending(&id, &queue, *qos, *tp));
            }
        }
        let decision = schedule(&world.view, &profile, &config, world.now_ms);
        let before = world.view.clone();
        world.apply(&decision);
        check_cycle(&before, world.now_ms, &decision, &world.view, &config);
        for p in &decision.placements {
            started
                .entry(before.pending[p.job].id.clone())
                .or_insert(cycle);
        }
    }
    started
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    /// Quotas, devices and preemption rules hold in every cycle of any workload.
    #[test]
    fn every_cycle_keeps_quotas_devices_and_preemption_rules(
        queues in queues(),
        nodes in nodes(),
        arrivals in arrivals(),
    ) {
        simulate(world(queues, &nodes), &arrivals, 24);
    }

    /// Lent quota comes back within one cycle, whatever the class of the
    /// lender's job: it is placed or has borrowed work preempted for it.
    #[test]
    fn lent_quota_is_reclaimed_within_one_cycle(
        lender_nodes in 1u32..=2,
        other_nodes in 0u32..=2,
        borrowers in 1usize..=3,
        size in prop_oneof![Just(1u32), Just(2), Just(4), Just(8)],
        tp_pick in 0u32..8,
        class in qos(),
    ) {
        // Quotas are whole nodes and add up to the cluster; the borrowers
        // fill every node (one queue per node), one device per job.
        let flavor = FLAVORS[0];
        let mut queues = vec![policy::queue("lender", Some("c"), &[(flavor, policy::nominal(lender_nodes * size))])];
        for b in 0..borrowers {
            queues.push(policy::queue(&format!("b{b}"), Some("c"), &[(flavor, policy::nominal(other_nodes * size))]));
        }
        let node_count = lender_nodes + other_nodes * borrowers as u32;
        let nodes: Vec<(usize, u32)> = (0..node_count).map(|_| (0, size)).collect();
        let mut w = world(queues, &nodes);
        for n in 0..node_count as usize {
            let queue = format!("b{}", n % borrowers);
            for d in 0..size {
                let id = format!("x{n}-{d}");
                w.run(&pending(&id, &queue, Qos::Batch, 1), &format!("n{n}"), &[d], 0);
            }
        }
        w.now_ms = 100 * CYCLE_MS;
        let tp = 1 + tp_pick % size;
        w.submit(pending("mine", "lender", class, tp));
        let decision = schedule(&w.view, &Profile::seeded(), &config(), w.now_ms);
        let placed = decision.placements.iter().any(|p| w.view.pending[p.job].id == "mine");
        let freeing = decision.preemptions.iter().any(|p| p.for_job == "mine");
        prop_assert!(placed || freeing, "{decision:#?}");
        // And once the preempted work checkpoints, it starts.
        w.apply(&decision);
        w.checkpoint();
        w.now_ms += CYCLE_MS;
        let next = schedule(&w.view, &Profile::seeded(), &config(), w.now_ms);
        prop_assert!(placed || next.placements.iter().any(|p| w.view.pending[p.job].id == "mine"), "{next:#?}");
    }

    /// Nominal quota is a guarantee: once the borrowers' jobs (of any
    /// class) have run their minimum runtime, a queue with pending work
    /// (of any class) that fits its nominal runs at least min(nominal,
    /// demand) after one cycle and the checkpoints it starts.
    #[test]
    fn a_queue_below_nominal_runs_its_nominal_after_one_cycle(
        lender_nodes in 1u32..=2,
        borrowers in 1usize..=3,
        size in prop_oneof![Just(2u32), Just(4), Just(8)],
        borrowed_classes in proptest::collection::vec(qos(), 64),
        demand in 1u32..=20,
        class in qos(),
    ) {
        let flavor = FLAVORS[0];
        let mut queues = vec![policy::queue("lender", Some("c"), &[(flavor, policy::nominal(lender_nodes * size))])];
        for b in 0..borrowers {
            queues.push(policy::queue(&format!("b{b}"), Some("c"), &[(flavor, policy::nominal(size))]));
        }
        let node_count = lender_nodes + borrowers as u32;
        let nodes: Vec<(usize, u32)> = (0..node_count).map(|_| (0, size)).collect();
        let mut w = world(queues, &nodes);
        // The borrowers fill every device, their own and the lender's.
        let mut k = 0;
        for n in 0..node_count as usize {
            let queue = format!("b{}", n % borrowers);
            for d in 0..size {
                let class = borrowed_classes[k % borrowed_classes.len()];
                w.run(&pending(&format!("x{n}-{d}"), &queue, class, 1), &format!("n{n}"), &[d], 0);
                k += 1;
            }
        }
        w.now_ms = 100 * CYCLE_MS;
        for j in 0..demand {
            w.submit(pending(&format!("mine{j}"), "lender", class, 1));
        }
        let cfg = config();
        let first = schedule(&w.view, &Profile::seeded(), &cfg, w.now_ms);
        w.apply(&first);
        w.checkpoint();
        w.now_ms += CYCLE_MS;
        let second = schedule(&w.view, &Profile::seeded(), &cfg, w.now_ms);
        w.apply(&second);
        let running = w.view.running.iter().filter(|j| j.queue == "lender").count() as u32;
        let guaranteed = (lender_nodes * size).min(demand);
        prop_assert!(running >= guaranteed, "the lender runs {running}, guaranteed {guaranteed}: {first:#?} {second:#?}");
    }

    /// An interactive job never waits for devices batch work of its queue
    /// holds past the minimum runtime.
    #[test]
    fn interactive_never_waits_behind_preemptible_batch(
        nodes in proptest::collection::vec(prop_oneof![Just(2u32), Just(4), Just(8)], 1..=4),
        work in proptest::collection::vec((qos(), 0i64..6), 0..24),
        tp_pick in 0u32..8,
    ) {
        let flavor = FLAVORS[0];
        let total: u32 = nodes.iter().sum();
        let queues = vec![policy::queue("team", None, &[(flavor, policy::nominal(total))])];
        let node_list: Vec<(usize, u32)> = nodes.iter().map(|s| (0, *s)).collect();
        let mut w = world(queues, &node_list);
        // Fill devices one job per device with the generated classes and ages.
        let mut k = 0;
        'fill: for (n, size) in nodes.iter().enumerate() {
            for d in 0..*size {
                let Some((class, age)) = work.get(k) else { break 'fill };
                let class = if *class == Qos::Interactive { Qos::Standard } else { *class };
                w.run(&pending(&format!("r{k}"), "team", class, 1), &format!("n{n}"), &[d], -age * CYCLE_MS);
                k += 1;
            }
        }
        let tp = 1 + tp_pick % nodes.iter().max().copied().unwrap_or(1);
        w.submit(pending("chat", "team", Qos::Interactive, tp));
        let cfg = config();
        let decision = schedule(&w.view, &Profile::seeded(), &cfg, w.now_ms);
        let feasible = w.view.nodes.iter().any(|n| {
            let preemptible: usize = w.view.running.iter()
                .filter(|r| r.node == n.name && r.qos == Qos::Batch && w.now_ms - r.started_at_ms >= cfg.min_runtime_ms)
                .map(|r| r.devices.len())
                .sum();
            n.groups[0].free.len() + preemptible >= tp as usize
        });
        let served = decision.placements.iter().any(|p| w.view.pending[p.job].id == "chat")
            || decision.pending.iter().any(|p| w.view.pending[p.job].id == "chat"
                && matches!(p.reason, PendingReason::WaitingForPreemption { .. }));
        prop_assert_eq!(feasible, served, "{:#?}", decision);
    }

    /// Under ageing and holds, a big gang behind a stream of small jobs
    /// starts within starvation time plus the longest small job.
    #[test]
    fn a_gang_does_not_starve_behind_small_jobs(
        nodes in 1usize..=3,
        stream in proptest::collection::vec((qos(), 1i64..4), 140),
    ) {
        let flavor = FLAVORS[0];
        let queues = vec![policy::queue("q0", None, &[(flavor, policy::nominal(8 * nodes as u32))])];
        let w = world(queues, &vec![(0, 8); nodes]);
        // The gang comes first; two small jobs arrive every cycle after.
        let mut arrivals: Vec<Arrival> = vec![(0, 0, Qos::Batch, 8, 2)];
        for (i, (class, runs)) in stream.iter().enumerate() {
            let class = if *class == Qos::Batch { Qos::Standard } else { *class };
            arrivals.push((i / 2, 0, class, 2, *runs));
        }
        // The small jobs' arrival order fills every node before the gang.
        let started = simulate(w, &arrivals, 80);
        let bound = (config().starvation_ms / CYCLE_MS) as usize + 4 + 2;
        prop_assert!(started.get("j0").is_some_and(|c| *c <= bound), "gang started at {:?}", started.get("j0"));
    }
}
