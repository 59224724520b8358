//! How fast `genfleet plan` simulates: a fleet of 1,000 nodes (8 devices
//! each, two flavors), three queues in a cohort, a workload of three
//! classes at about 80% load, 100,000 and 1,000,000 jobs
//! (GENFLEET_BENCH_PLAN_JOBS: a comma-separated list of sizes instead).
//! Goal: a million jobs in under 30 s on one core.
//!
//! The policy's board is kept between cycles and changed as work starts
//! and ends, so a cycle costs what its pending jobs cost. For comparison
//! the bench also runs 10,000 jobs the leader's way, with the view of
//! the whole fleet rebuilt at every cycle (the same decisions: a test in
//! the planner checks that), which is what a plan cost before.

use std::time::Instant;

use genfleet_planner::engine::{SimConfig, Simulation};
use genfleet_planner::fleet::{Fleet, Pool};
use genfleet_planner::report::report;
use genfleet_planner::workload::JobRequest;
use genfleet_proto as pb;
use genfleet_scheduler::policy::{Profile, Qos};
use rand::{Rng, SeedableRng};

const NODES: u32 = 1000;
const DEVICES_PER_NODE: u32 = 8;
/// Seconds of a job of the mix on average (the profile below).
const MEAN_SERVICE_S: f64 = 60.0;
const LOAD: f64 = 0.8;

fn fleet() -> Fleet {
    let pool = |flavor: &str, nodes, price| Pool {
        flavor: flavor.into(),
        nodes,
        devices_per_node: DEVICES_PER_NODE,
        price_per_device_hour: price,
        memory_bytes: 0,
        models: vec!["tiny".into()],
    };
    Fleet {
        pools: vec![
            pool("nvidia-h100-80gb", NODES / 2, 2.5),
            pool("nvidia-l4", NODES / 2, 0.8),
        ],
    }
}

fn queues() -> Vec<pb::Queue> {
    let quota = |flavor: &str, nominal| pb::FlavorQuota {
        flavor: flavor.into(),
        nominal,
        ..Default::default()
    };
    let devices = NODES / 2 * DEVICES_PER_NODE;
    ["product", "research", "batch"]
        .iter()
        .map(|name| pb::Queue {
            name: name.to_string(),
            cohort: "all".into(),
            weight: 1,
            quotas: vec![
                quota("nvidia-h100-80gb", devices / 3),
                quota("nvidia-l4", devices / 3),
            ],
            ..Default::default()
        })
        .collect()
}

/// `n` jobs arriving as a Poisson process at the rate that loads the
/// fleet to `LOAD`.
fn workload(n: usize) -> Vec<JobRequest> {
    let devices = f64::from(NODES * DEVICES_PER_NODE);
    let rate = LOAD * devices / MEAN_SERVICE_S;
    let mut rng = rand::rngs::StdRng::seed_from_u64(1);
    let mut t = 0.0;
    (0..n)
        .map(|_| {
            t += -(1.0 - rng.random::<f64>()).ln() / rate;
            let (queue, qos) = match rng.random_range(0..3) {
                0 => ("product", Qos::Interactive),
                1 => ("research", Qos::Standard),
                _ => ("batch", Qos::Batch),
            };
            // At 1 step/s on either flavor (below), steps are seconds.
            let steps = (-(1.0 - rng.random::<f64>()).ln() * MEAN_SERVICE_S)
                .ceil()
                .max(1.0) as u32;
            JobRequest {
                arrival_s: t,
                queue: queue.into(),
                qos,
                priority: 0,
                model: "tiny".into(),
                frames: 17,
                width: 256,
                height: 256,
                steps: steps.min(1000),
                tp: 1,
                guidance: 5.0,
                line: 0,
            }
        })
        .collect()
}

fn main() {
    let sizes: Vec<usize> = match std::env::var("GENFLEET_BENCH_PLAN_JOBS") {
        Ok(list) => list
            .split(',')
            .map(|s| {
                s.trim()
                    .parse()
                    .expect("GENFLEET_BENCH_PLAN_JOBS: whole numbers, comma-separated")
            })
            .collect(),
        Err(_) => vec![100_000, 1_000_000],
    };
    let fleet = fleet();
    let queues = queues();
    let mut profile = Profile::seeded();
    profile.set("tiny", "nvidia-h100-80gb", 1, 1.0);
    profile.set("tiny", "nvidia-l4", 1, 1.0);
    let config = SimConfig::default();
    println!("fleet: {NODES} nodes x {DEVICES_PER_NODE} devices; load {LOAD}; mean job {MEAN_SERVICE_S} s");
    let mut results = Vec::new();
    for &n in &sizes {
        let jobs = workload(n);
        let started = Instant::now();
        let outcome = Simulation::new(&fleet, &queues, &jobs, &profile, &config).run(&mut |_| {});
        let seconds = started.elapsed().as_secs_f64();
        let r = report(&outcome, &fleet, &[]).expect("conservation");
        println!(
            "{n:>9} jobs: {seconds:8.2} s wall, {:>9.0} jobs/s, {} cycles, {:.1} h simulated, {} completed, interactive wait p95 {:.1} s",
            n as f64 / seconds,
            outcome.cycles,
            outcome.duration_s / 3600.0,
            r.completed,
            r.classes.first().map_or(0.0, |c| c.wait_s.p95),
        );
        results.push((n, seconds));
    }
    let rebuilt = SimConfig {
        rebuild_each_cycle: true,
        ..SimConfig::default()
    };
    let jobs = workload(10_000);
    let started = Instant::now();
    Simulation::new(&fleet, &queues, &jobs, &profile, &rebuilt).run(&mut |_| {});
    let seconds = started.elapsed().as_secs_f64();
    println!(
        "    10000 jobs, view rebuilt every cycle: {seconds:8.2} s wall, {:>9.0} jobs/s",
        10_000.0 / seconds
    );
    if let Some(&(n, seconds)) = results.last() {
        println!("RESULT plan_jobs_per_s {:.0} jobs/s", n as f64 / seconds);
        println!("RESULT plan_{n}_jobs_seconds {seconds:.2} s");
    }
}
