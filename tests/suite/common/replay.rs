//! A workload replayed through a real local cluster (a scheduler and a
//! worker with simulated devices) and through `genfleet plan`, and the two
//! compared: shared by `plan_live` (the planner against the live waits)
//! and `trace_export` (the planner fed the cluster's own export).

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use genfleet_planner::report::Quantiles;
use genfleet_proto as pb;
use rand::{Rng, SeedableRng};

use super::{cli, client, start_worker_with, submit, Local, Proc};

/// Four simulated A100s: the seeded profile says 60 steps/s for the tiny
/// model, so a job of 30 steps holds a device for half a second.
pub const FLAVOR: &str = "nvidia-a100-80gb";
pub const DEVICES: u32 = 4;
/// Seconds of arrivals.
const SPAN_S: f64 = 40.0;

/// The live path adds to every job what the simulation leaves out: the
/// raft commit of each submit, lease and end (fsync included), the
/// session round trips, and timer slack on both sides, a few ms per job
/// on an idle machine and tens of ms on a busy 2-core CI runner. A wait
/// is within tolerance if it is within 10% of the measured one or within
/// this many seconds of it (which matters for waits of a few tenths).
pub const SLACK_S: f64 = 0.1;

pub struct Arrival {
    pub at_s: f64,
    pub qos: &'static str,
    pub steps: u32,
}

/// Interactive jobs of 12 steps and batch jobs of 15, 30 or 60 steps as
/// Poisson streams at about 55% load, and every 8 s a burst of 12 batch
/// jobs within a fifth of a second, which builds the queues the waits
/// come from (about 75% load overall).
pub fn workload(seed: u64) -> Vec<Arrival> {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let mut arrivals = Vec::new();
    let mut stream = |rate_per_s: f64, qos: &'static str, rng: &mut rand::rngs::StdRng| {
        let mut t = 0.0;
        loop {
            t += -(1.0 - rng.random::<f64>()).ln() / rate_per_s;
            if t >= SPAN_S {
                break;
            }
            arrivals.push(Arrival {
                at_s: t,
                qos,
                steps: batch_or_interactive_steps(qos, rng),
            });
        }
    };
    stream(2.0, "interactive", &mut rng);
    stream(3.0, "batch", &mut rng);
    let mut burst = 4.0;
    while burst < SPAN_S {
        for _ in 0..12 {
            let at_s = burst + rng.random::<f64>() * 0.2;
            let steps = batch_or_interactive_steps("batch", &mut rng);
            arrivals.push(Arrival {
                at_s,
                qos: "batch",
                steps,
            });
        }
        burst += 8.0;
    }
    arrivals.sort_by(|a, b| a.at_s.total_cmp(&b.at_s));
    arrivals
}

fn batch_or_interactive_steps(qos: &str, rng: &mut rand::rngs::StdRng) -> u32 {
    match qos {
        "interactive" => 12,
        _ => [15, 30, 60][rng.random_range(0..3)],
    }
}

fn spec(arrival: &Arrival, seed: u64) -> pb::JobSpec {
    pb::JobSpec {
        steps: arrival.steps,
        qos: arrival.qos.into(),
        ..super::small_spec("a replayed job", seed)
    }
}

/// The simulated A100 node, serving `local`'s scheduler.
pub fn start_a100_worker(local: &Local) -> Proc {
    let simulate = format!("{FLAVOR}:{DEVICES}");
    let (worker, _) = start_worker_with(
        &local.endpoint,
        "a100-node",
        &local.models,
        &local.artifacts,
        &["--simulate", &simulate],
    );
    worker
}

/// Submits the arrivals in real time; returns the jobs' ids.
pub async fn replay(endpoint: &str, arrivals: &[Arrival]) -> Vec<String> {
    let mut jobs = client(endpoint).await;
    let start = tokio::time::Instant::now();
    let mut ids = Vec::new();
    for (i, arrival) in arrivals.iter().enumerate() {
        tokio::time::sleep_until(start + Duration::from_secs_f64(arrival.at_s)).await;
        ids.push(submit(&mut jobs, spec(arrival, i as u64)).await.id);
    }
    ids
}

fn path(p: &Path) -> String {
    p.to_str().expect("a UTF-8 path").to_string()
}

/// `genfleet plan` of `trace` on the cluster's fleet, with the profile its
/// leader exports and the cluster's timings (nothing to load or save on
/// simulated devices, preemption as soon as it helps); the report.
pub fn plan_on_the_clusters_fleet(local: &Local, trace: &Path) -> serde_json::Value {
    let dir = local.dir.path();
    let profile = dir.join("profile.yaml");
    let fleet = dir.join("fleet.yaml");
    std::fs::write(
        &fleet,
        format!(
            "pools:\n  - {{flavor: {FLAVOR}, nodes: 1, devices_per_node: {DEVICES}, price_per_device_hour: 1.8}}\n"
        ),
    )
    .expect("write the fleet");
    let (ok, _, err) = cli(&[
        "profile",
        "export",
        "--scheduler",
        &local.endpoint,
        "--out",
        &path(&profile),
    ]);
    assert!(ok, "{err}");
    let exported = std::fs::read_to_string(&profile).expect("profile");
    assert!(
        exported.contains(&format!(
            "model: tiny, flavor: {FLAVOR}, tp: 1, steps_per_s: 60 }}"
        )),
        "simulated devices teach the leader nothing (they sleep its estimate): {exported}"
    );
    let out = dir.join("plan");
    let (ok, _, err) = cli(&[
        "plan",
        "--fleet",
        &path(&fleet),
        "--trace",
        &path(trace),
        "--profile",
        &path(&profile),
        "--checkpoint-time",
        "0s",
        "--reload-time",
        "0s",
        "--min-runtime",
        "0s",
        "--out",
        &path(&out),
    ]);
    assert!(ok, "{err}");
    serde_json::from_slice(&std::fs::read(out.join("report.json")).expect("report.json"))
        .expect("report.json is JSON")
}

/// Compares the planned waits with the measured ones (seconds per class)
/// at the quantiles named: a line per class and quantile, and the misses
/// beyond 10% or [`SLACK_S`].
pub fn compare_waits(
    measured: BTreeMap<String, Vec<f64>>,
    report: &serde_json::Value,
    quantiles: &[&str],
) -> (Vec<String>, Vec<String>) {
    let mut lines = Vec::new();
    let mut misses = Vec::new();
    for (class, waits) in measured {
        let live = Quantiles::of(waits);
        let planned = report["classes"]
            .as_array()
            .and_then(|c| c.iter().find(|g| g["name"] == class.as_str()))
            .unwrap_or_else(|| panic!("no class {class} in the plan: {report}"));
        for name in quantiles {
            let live_s = match *name {
                "p50" => live.p50,
                "p95" => live.p95,
                "p99" => live.p99,
                other => panic!("no quantile {other}"),
            };
            let plan_s = planned["wait_s"][name].as_f64().expect("a wait quantile");
            let within = (plan_s - live_s).abs() <= (0.1 * live_s).max(SLACK_S);
            lines.push(format!(
                "{class} {name} wait: live {live_s:.3} s, planned {plan_s:.3} s{}",
                if within { "" } else { "  <- off" }
            ));
            if !within {
                misses.push(format!("{class} {name}"));
            }
        }
    }
    (lines, misses)
}
