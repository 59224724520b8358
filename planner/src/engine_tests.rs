//! The board kept between cycles decides exactly as a view rebuilt at
//! every cycle (the leader's way) does, on random fleets, queues and
//! workloads that preempt, borrow, reclaim and run out of budget.

use genfleet_proto as pb;
use genfleet_scheduler::policy::{PolicyConfig, Profile, Qos};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::{SimConfig, Simulation};
use crate::fleet::{Fleet, Pool};
use crate::workload::JobRequest;

const FLAVORS: [&str; 3] = ["nvidia-h100-80gb", "nvidia-l4", "amd-mi300x"];

fn fleet(rng: &mut StdRng) -> Fleet {
    let pools = rng.random_range(1..=3);
    Fleet {
        pools: FLAVORS[..pools]
            .iter()
            .map(|flavor| Pool {
                flavor: flavor.to_string(),
                nodes: rng.random_range(1..=6),
                devices_per_node: [1, 2, 4, 8][rng.random_range(0..4)],
                price_per_device_hour: rng.random_range(0.5..4.0),
                memory_bytes: 0,
                models: vec!["tiny".into()],
            })
            .collect(),
    }
}

fn queues(rng: &mut StdRng, fleet: &Fleet) -> Vec<pb::Queue> {
    ["product", "research", "batch"]
        .iter()
        .map(|name| pb::Queue {
            name: name.to_string(),
            cohort: if rng.random_bool(0.8) {
                "all".into()
            } else {
                String::new()
            },
            weight: rng.random_range(1..=3),
            quotas: fleet
                .pools
                .iter()
                .map(|p| {
                    let devices = p.nodes * p.devices_per_node;
                    pb::FlavorQuota {
                        flavor: p.flavor.clone(),
                        nominal: rng.random_range(0..=devices / 2 + 1),
                        borrowing_limit: rng
                            .random_bool(0.3)
                            .then(|| rng.random_range(0..=devices)),
                        lending_limit: rng
                            .random_bool(0.3)
                            .then(|| rng.random_range(0..=devices / 2)),
                    }
                })
                .collect(),
            budget: rng.random_bool(0.25).then(|| pb::Budget {
                device_hours: rng.random_range(0.05..2.0),
                period_seconds: [600, 3600][rng.random_range(0..2)],
            }),
        })
        .collect()
}

fn workload(rng: &mut StdRng, n: usize) -> Vec<JobRequest> {
    let mut t = 0.0;
    (0..n)
        .map(|_| {
            t += -(1.0 - rng.random::<f64>()).ln() * rng.random_range(0.2..3.0);
            let (queue, qos) = match rng.random_range(0..4) {
                0 => ("product", Qos::Interactive),
                1 => ("research", Qos::Standard),
                2 => ("batch", Qos::Batch),
                // A queue no fleet defines: the default queue, or unknown.
                _ => (
                    "default",
                    [Qos::Interactive, Qos::Batch][rng.random_range(0..2)],
                ),
            };
            JobRequest {
                arrival_s: t,
                queue: queue.into(),
                qos,
                priority: rng.random_range(-2..=2),
                model: "tiny".into(),
                frames: 17,
                width: 64,
                height: 64,
                steps: rng.random_range(1..=200),
                tp: [1, 1, 2, 4][rng.random_range(0..4)],
                guidance: 5.0,
                line: 0,
            }
        })
        .collect()
}

/// The same run the planner's way (`kept`: a board kept by changes,
/// idle cycles skipped) and the leader's (view rebuilt, every cycle run).
fn both_ways(
    fleet: &Fleet,
    queues: &[pb::Queue],
    jobs: &[JobRequest],
    profile: &Profile,
    kept: &SimConfig,
) -> (super::SimOutcome, super::SimOutcome) {
    let rebuilt = SimConfig {
        rebuild_each_cycle: true,
        ..kept.clone()
    };
    (
        Simulation::new(fleet, queues, jobs, profile, kept).run(&mut |_| {}),
        Simulation::new(fleet, queues, jobs, profile, &rebuilt).run(&mut |_| {}),
    )
}

#[test]
fn a_board_kept_by_changes_decides_as_a_view_rebuilt_every_cycle() {
    let mut preempted = 0;
    let mut checked = 0;
    for seed in 0..30u64 {
        let mut rng = StdRng::seed_from_u64(seed);
        let fleet = fleet(&mut rng);
        let queues = queues(&mut rng, &fleet);
        let jobs = workload(&mut rng, 300);
        let mut profile = Profile::seeded();
        for (i, flavor) in FLAVORS.iter().enumerate() {
            for tp in [1, 2, 4] {
                profile.set("tiny", flavor, tp, 2.0 + i as f64 * f64::from(tp));
            }
        }
        let kept = SimConfig {
            policy: PolicyConfig {
                min_runtime_ms: rng.random_range(0..20_000),
                ageing_ms: rng.random_range(10_000..120_000),
                starvation_ms: rng.random_range(20_000..240_000),
                max_preemptors_per_cycle: rng.random_range(1..6),
            },
            checkpoint_s: rng.random_range(0.0..3.0),
            reload_s: rng.random_range(0.0..3.0),
            ..SimConfig::default()
        };
        let (a, b) = both_ways(&fleet, &queues, &jobs, &profile, &kept);
        assert_eq!(a.jobs, b.jobs, "seed {seed}: the jobs went differently");
        assert_eq!(a.cycles, b.cycles, "seed {seed}");
        assert_eq!(a.busy_device_s, b.busy_device_s, "seed {seed}");
        preempted += a.jobs.iter().map(|j| j.preemptions).sum::<u32>();
        checked += a.jobs.iter().filter(|j| j.first_start_s.is_some()).count();
    }
    // The workloads did what the comparison is for.
    assert!(preempted > 50, "only {preempted} preemptions in all");
    assert!(checked > 5_000, "only {checked} jobs started");
}

/// Jobs of an hour each (200 steps at 1 step per 18 s) at time 0 on a
/// fleet with twice as many one-device nodes, so a requeued job finds a
/// node at once.
fn hour_long_jobs(n: usize) -> (Fleet, Vec<JobRequest>, Profile) {
    let fleet = Fleet {
        pools: vec![Pool {
            flavor: "gpu".into(),
            nodes: 2 * n as u32,
            devices_per_node: 1,
            price_per_device_hour: 1.0,
            memory_bytes: 0,
            models: vec!["tiny".into()],
        }],
    };
    let jobs = (0..n)
        .map(|_| JobRequest {
            arrival_s: 0.0,
            queue: "default".into(),
            qos: Qos::Standard,
            priority: 0,
            model: "tiny".into(),
            frames: 17,
            width: 64,
            height: 64,
            steps: 200,
            tp: 1,
            guidance: 5.0,
            line: 0,
        })
        .collect();
    let mut profile = Profile::default();
    profile.set("tiny", "gpu", 1, 1.0 / 18.0);
    (fleet, jobs, profile)
}

fn mean_run_s(outcome: &super::SimOutcome) -> f64 {
    let runs: Vec<f64> = outcome
        .jobs
        .iter()
        .map(|j| j.end_s.expect("ended") - j.first_start_s.expect("started"))
        .collect();
    runs.iter().sum::<f64>() / runs.len() as f64
}

#[test]
fn failed_nodes_cost_their_jobs_the_work_since_the_last_checkpoint() {
    let (fleet, jobs, profile) = hour_long_jobs(400);
    let healthy = SimConfig {
        horizon_s: Some(20_000.0),
        ..SimConfig::default()
    };
    let outcome = Simulation::new(&fleet, &[], &jobs, &profile, &healthy).run(&mut |_| {});
    assert_eq!(outcome.node_failures, 0);
    assert!((mean_run_s(&outcome) - 3600.0).abs() < 0.01);

    let mtbf_s = 4.0 * 3600.0;
    let failing = SimConfig {
        node_mtbf_s: Some(mtbf_s),
        node_repair_s: 1800.0,
        ..healthy.clone()
    };
    let outcome = Simulation::new(&fleet, &[], &jobs, &profile, &failing).run(&mut |_| {});
    assert!(
        outcome.jobs.iter().all(|j| j.end_s.is_some()),
        "every job ends"
    );
    // Every node fails as a Poisson process while up: about
    // nodes x time / (MTBF + repair) failures, give or take 4 sigma.
    let expected = 800.0 * outcome.duration_s / (mtbf_s + 1800.0);
    let failures = outcome.node_failures as f64;
    assert!(
        (failures - expected).abs() < 4.0 * expected.sqrt() + 1.0,
        "{failures} failures, about {expected} expected"
    );
    // What a job loses, first order: saving every interval (C / τ of its
    // time), and per failure of its node (3600 / MTBF of them) half an
    // interval redone, the time to notice and the reload.
    let checkpoints = crate::failures::NodeFailures {
        mtbf_s,
        repair_s: 1800.0,
    }
    .checkpointing(failing.checkpoint_s);
    let per_failure = checkpoints.interval_s / 2.0 + failing.failure_detect_s + failing.reload_s;
    let expected_extra = 3600.0 * (checkpoints.slowdown - 1.0) + 3600.0 / mtbf_s * per_failure;
    let extra = mean_run_s(&outcome) - 3600.0;
    println!(
        "{failures} node failures ({expected:.0} expected); runs {extra:.1} s longer on average ({expected_extra:.1} s expected)"
    );
    assert!(
        extra > 0.6 * expected_extra && extra < 1.4 * expected_extra,
        "runs took {extra:.1} s longer on average, about {expected_extra:.1} s expected"
    );
    // The same seed, the same failures; another seed, others.
    let again = Simulation::new(&fleet, &[], &jobs, &profile, &failing).run(&mut |_| {});
    assert_eq!(again.jobs, outcome.jobs);
    let reseeded = SimConfig {
        failure_seed: 1,
        ..failing.clone()
    };
    let other = Simulation::new(&fleet, &[], &jobs, &profile, &reseeded).run(&mut |_| {});
    assert_ne!(other.jobs, outcome.jobs);
}

#[test]
fn a_board_kept_by_changes_decides_as_a_rebuilt_view_when_nodes_fail() {
    let mut rng = StdRng::seed_from_u64(99);
    for seed in 0..8u64 {
        let fleet = fleet(&mut rng);
        let queues = queues(&mut rng, &fleet);
        let jobs = workload(&mut rng, 300);
        let profile = Profile::seeded();
        let kept = SimConfig {
            node_mtbf_s: Some(rng.random_range(300.0..3_000.0)),
            node_repair_s: rng.random_range(10.0..600.0),
            failure_seed: seed,
            checkpoint_s: 1.0,
            ..SimConfig::default()
        };
        let (a, b) = both_ways(&fleet, &queues, &jobs, &profile, &kept);
        assert!(a.node_failures > 0, "seed {seed}: no node failed");
        assert_eq!(a.jobs, b.jobs, "seed {seed}");
    }
}
