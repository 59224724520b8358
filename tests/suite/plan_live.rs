//! The planner against the live system: one workload of a few hundred
//! short jobs, replayed through a real local cluster (a scheduler and a
//! worker with simulated devices) and through `genfleet plan` with the
//! profile exported from that cluster. The planner's p50 and p95 wait per
//! class must be close to what the cluster measured (tolerance in
//! `common::replay`).

use crate::common;

use std::collections::BTreeMap;
use std::path::Path;

use common::replay::{self, compare_waits, plan_on_the_clusters_fleet};
use common::{client, watch_to_end, Local};
use genfleet_proto as pb;

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
    let _worker = replay::start_a100_worker(&local);

    // Replay the arrivals in real time.
    let ids = replay::replay(&local.endpoint, &replay::workload(7)).await;
    let mut jobs = client(&local.endpoint).await;
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
    let report = plan_on_the_clusters_fleet(&local, &trace);

    let (lines, misses) = compare_waits(waits_by_class(&ended), &report, &["p50", "p95"]);
    let summary = [
        format!(
            "{} jobs, {preempted} preemptions live, {} planned",
            ended.len(),
            report["preemptions"]
        ),
        lines.join("\n"),
    ]
    .join("\n");
    println!("{summary}");
    assert!(misses.is_empty(), "{misses:?} off:\n{summary}");
}
