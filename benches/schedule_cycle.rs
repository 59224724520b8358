//! One scheduling cycle at fleet scale: 10,000 nodes with 80,000 devices
//! of three flavors, half of them busy, 100,000 pending jobs of all three
//! classes in 200 queues (20 cohorts). Times `policy::schedule` on one core.
//!
//! `cargo bench --bench schedule_cycle`
//! GENFLEET_BENCH_CYCLES (default 10): cycles timed after one warm-up.

use std::collections::BTreeMap;
use std::time::Instant;

use genfleet_scheduler::policy::{
    schedule, ClusterView, FlavorQuota, GroupView, MemoryNeed, NodeView, PendingJob, PolicyConfig,
    Profile, Qos, QueueConfig, RunningJob,
};

const NODES: usize = 10_000;
const DEVICES_PER_NODE: u32 = 8;
const QUEUES: usize = 200;
const COHORTS: usize = 20;
const PENDING: usize = 100_000;
/// (flavor, share of the nodes in percent)
const FLAVORS: [(&str, usize); 3] = [
    ("nvidia-h100-80gb", 60),
    ("amd-mi300x", 25),
    ("nvidia-a100-80gb", 15),
];

/// A small deterministic generator (SplitMix64): the same fleet every run.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

fn flavor_of(node: usize) -> &'static str {
    let percent = node * 100 / NODES;
    let mut upto = 0;
    for (flavor, share) in FLAVORS {
        upto += share;
        if percent < upto {
            return flavor;
        }
    }
    FLAVORS[0].0
}

fn tp(rng: &mut Rng) -> u32 {
    [1, 1, 1, 2, 2, 4, 8][rng.below(7) as usize]
}

fn qos(rng: &mut Rng) -> Qos {
    match rng.below(10) {
        0 => Qos::Interactive,
        1..=5 => Qos::Standard,
        _ => Qos::Batch,
    }
}

fn fleet() -> ClusterView {
    let mut rng = Rng(2026);
    let now = 3_600_000;
    // Quotas: each flavor's devices split evenly over the queues, lent
    // within cohorts of ten.
    let queues: Vec<QueueConfig> = (0..QUEUES)
        .map(|q| QueueConfig {
            name: format!("team-{q:03}"),
            cohort: Some(format!("cohort-{:02}", q % COHORTS)),
            weight: 1 + (q % 3) as u32,
            quotas: FLAVORS
                .iter()
                .map(|(flavor, share)| {
                    let devices = NODES * share / 100 * DEVICES_PER_NODE as usize;
                    let quota = FlavorQuota {
                        nominal: (devices / QUEUES) as u32,
                        borrowing_limit: None,
                        lending_limit: None,
                    };
                    (flavor.to_string(), quota)
                })
                .collect::<BTreeMap<_, _>>(),
            budget: None,
        })
        .collect();
    let mut nodes = Vec::with_capacity(NODES);
    let mut running = Vec::new();
    for n in 0..NODES {
        let flavor = flavor_of(n);
        let name = format!("node-{n:05}");
        // About half of each node is busy with running jobs.
        let mut free: Vec<u32> = (0..DEVICES_PER_NODE).collect();
        let mut busy_left = rng.below(DEVICES_PER_NODE as u64 + 1) as u32;
        while busy_left > 0 {
            let size = tp(&mut rng).min(busy_left);
            let devices: Vec<u32> = free.drain(..size as usize).collect();
            busy_left -= size;
            running.push(RunningJob {
                id: format!("run-{}", running.len()),
                queue: format!("team-{:03}", rng.below(QUEUES as u64)),
                qos: qos(&mut rng),
                flavor: flavor.into(),
                node: name.clone(),
                devices,
                started_at_ms: now - rng.below(1_800_000) as i64,
                preempting: false,
                remaining_s: rng.below(600) as f64,
            });
        }
        nodes.push(NodeView {
            name,
            cordoned: n % 500 == 0,
            models: vec!["tiny".into(), "medium".into()],
            groups: vec![GroupView {
                flavor: flavor.into(),
                devices: (0..DEVICES_PER_NODE).collect(),
                free,
                // Every job fits (the check runs; the outcome is as before).
                memory_bytes: 80 << 30,
            }],
            simulated: true,
        });
    }
    let pending = (0..PENDING)
        .map(|i| PendingJob {
            id: format!("job-{i:06}"),
            queue: format!("team-{:03}", rng.below(QUEUES as u64)),
            qos: qos(&mut rng),
            priority: rng.below(3) as i32,
            tp: tp(&mut rng),
            model: if rng.below(4) == 0 { "medium" } else { "tiny" }.into(),
            steps_left: 30,
            waiting_since_ms: now - rng.below(3_600_000) as i64,
            nominated: false,
            position: i as u64,
            memory: MemoryNeed {
                replicated_bytes: 1 << 30,
                sharded_bytes: 4 << 30,
            },
            pixel_frames: 832 * 480 * 33,
        })
        .collect();
    ClusterView {
        queues,
        nodes,
        running,
        pending,
    }
}

fn main() {
    let cycles: usize = std::env::var("GENFLEET_BENCH_CYCLES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10);
    let view = fleet();
    let busy: usize = view.running.iter().map(|r| r.devices.len()).sum();
    println!(
        "{} nodes, {} devices ({busy} busy, {} running jobs), {} pending jobs in {QUEUES} queues",
        view.nodes.len(),
        NODES * DEVICES_PER_NODE as usize,
        view.running.len(),
        view.pending.len()
    );
    let profile = Profile::seeded();
    let config = PolicyConfig::default();
    let now = 3_600_000;
    let warm = schedule(&view, &profile, &config, now);
    let mut reasons: BTreeMap<&str, usize> = BTreeMap::new();
    for p in &warm.pending {
        *reasons.entry(p.reason.label()).or_default() += 1;
    }
    println!(
        "one cycle: {} placements, {} preemptions, pending by reason {reasons:?}",
        warm.placements.len(),
        warm.preemptions.len()
    );
    let mut seconds = Vec::with_capacity(cycles);
    let mut placements = 0;
    for _ in 0..cycles {
        let started = Instant::now();
        let decision = schedule(&view, &profile, &config, now);
        seconds.push(started.elapsed().as_secs_f64());
        placements += decision.placements.len();
    }
    seconds.sort_by(f64::total_cmp);
    let p50 = seconds[seconds.len() / 2];
    let total: f64 = seconds.iter().sum();
    let rate = placements as f64 / total;
    println!(
        "{cycles} cycles: p50 {:.1} ms, min {:.1} ms, max {:.1} ms",
        p50 * 1e3,
        seconds[0] * 1e3,
        seconds[seconds.len() - 1] * 1e3
    );
    println!("RESULT schedule_cycle_p50 {:.1} ms", p50 * 1e3);
    println!("RESULT schedule_placements_per_s {rate:.0} placements/s");
}
