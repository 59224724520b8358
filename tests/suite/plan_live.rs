//! The planner against the live system: one workload of a few hundred
//! short jobs, replayed through a real local cluster (a scheduler and a
//! worker with simulated devices) and through `genfleet plan` with the
//! profile exported from that cluster. The planner's p50 and p95 wait per
//! class must be close to what the cluster measured (tolerance below).

use crate::common;

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use common::{cli, client, start_worker_with, submit, watch_to_end, Local};
use genfleet_planner::report::Quantiles;
use genfleet_proto as pb;
use rand::{Rng, SeedableRng};

/// Four simulated A100s: the seeded profile says 60 steps/s for the tiny
/// model, so a job of 30 steps holds a device for half a second.
const FLAVOR: &str = "nvidia-a100-80gb";
const DEVICES: u32 = 4;
/// Seconds of arrivals.
const SPAN_S: f64 = 40.0;

/// The live path adds to every job what the simulation leaves out: the
/// raft commit of each submit, lease and end (fsync included), the
/// session round trips, and timer slack on both sides, a few ms per job
/// on an idle machine and tens of ms on a busy 2-core CI runner. A wait
/// is within tolerance if it is within 10% of the measured one or within
/// this many seconds of it (which matters for waits of a few tenths).
const SLACK_S: f64 = 0.1;

struct Arrival {
    at_s: f64,
    qos: &'static str,
    steps: u32,
}

/// Interactive jobs of 12 steps and batch jobs of 15, 30 or 60 steps as
/// Poisson streams at about 55% load, and every 8 s a burst of 12 batch
/// jobs within a fifth of a second, which builds the queues the waits
/// come from (about 75% load overall).
fn workload(seed: u64) -> Vec<Arrival> {
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
        ..common::small_spec("a replayed job", seed)
    }
}

/// Seconds from arrival to first start, per class.
fn waits_by_class(jobs: &[pb::Job]) -> BTreeMap<String, Vec<f64>> {
    let mut waits: BTreeMap<String, Vec<f64>> = BTreeMap::new();
    for job in jobs {
        let qos = job.spec.as_ref().map_or("", |s| s.qos.as_str());
        let wait = (job.started_at_ms - job.created_at_ms) as f64 / 1000.0;
        waits.entry(qos.to_string()).or_default().push(wait);
    }
    waits
}

/// The jobs as `genfleet plan` reads a trace: arrivals as the cluster
/// stamped them, from the first.
fn write_trace(path: &Path, jobs: &[pb::Job]) {
    let first = jobs.iter().map(|j| j.created_at_ms).min().unwrap_or(0);
    let mut text = String::from("arrival_s,queue,qos,model,frames,size,steps,tp\n");
    for job in jobs {
        let s = job.spec.as_ref().expect("a job has its spec");
        let at = (job.created_at_ms - first) as f64 / 1000.0;
        text += &format!(
            "{at:.3},default,{},{},{},{}x{},{},1\n",
            s.qos, s.model, s.frames, s.width, s.height, s.steps
        );
    }
    std::fs::write(path, text).expect("write the trace");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_planner_predicts_the_waits_a_live_cluster_measures() {
    // Preemption as soon as it helps, on both sides: the jobs are short.
    let local = Local::start(&["--min-runtime", "0s"]);
    let endpoint = local.endpoint.clone();
    let simulate = format!("{FLAVOR}:{DEVICES}");
    let (_worker, _) = start_worker_with(
        &endpoint,
        "a100-node",
        &local.models,
        &local.artifacts,
        &["--simulate", &simulate],
    );

    // Replay the arrivals in real time.
    let arrivals = workload(7);
    let mut jobs = client(&endpoint).await;
    let start = tokio::time::Instant::now();
    let mut ids = Vec::new();
    for (i, arrival) in arrivals.iter().enumerate() {
        tokio::time::sleep_until(start + Duration::from_secs_f64(arrival.at_s)).await;
        ids.push(submit(&mut jobs, spec(arrival, i as u64)).await.id);
    }
    let mut ended = Vec::new();
    for id in &ids {
        let (job, _) = watch_to_end(&mut jobs, id, 120).await;
        assert_eq!(job.state(), pb::JobState::Completed, "{job:?}");
        assert!(job.simulated, "{job:?}");
        ended.push(job);
    }
    let preempted: u32 = ended.iter().map(|j| j.preemptions).sum();

    // The same jobs through the planner, with the cluster's profile.
    let trace = local.dir.path().join("trace.csv");
    write_trace(&trace, &ended);
    let profile = local.dir.path().join("profile.yaml");
    let fleet = local.dir.path().join("fleet.yaml");
    std::fs::write(
        &fleet,
        format!(
            "pools:\n  - {{flavor: {FLAVOR}, nodes: 1, devices_per_node: {DEVICES}, price_per_device_hour: 1.8}}\n"
        ),
    )
    .expect("write the fleet");
    let path = |p: &Path| p.to_str().expect("utf-8").to_string();
    let (ok, _, err) = cli(&[
        "profile",
        "export",
        "--scheduler",
        &endpoint,
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
    let out = local.dir.path().join("plan");
    let (ok, _, err) = cli(&[
        "plan",
        "--fleet",
        &path(&fleet),
        "--trace",
        &path(&trace),
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
    let report: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("report.json")).expect("report.json"))
            .expect("report.json is JSON");

    let live = waits_by_class(&ended);
    let mut lines = vec![format!(
        "{} jobs, {preempted} preemptions live, {} planned",
        ended.len(),
        report["preemptions"]
    )];
    let mut misses = Vec::new();
    for (class, waits) in live {
        let measured = Quantiles::of(waits);
        let planned = report["classes"]
            .as_array()
            .and_then(|c| c.iter().find(|g| g["name"] == class.as_str()))
            .unwrap_or_else(|| panic!("no class {class} in the plan: {report}"));
        for (name, live_s) in [("p50", measured.p50), ("p95", measured.p95)] {
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
    let summary = lines.join("\n");
    println!("{summary}");
    assert!(misses.is_empty(), "{misses:?} off:\n{summary}");
}
