//! Nominal quota is a guarantee whatever the class of the waiting work: a
//! scheduler and two simulated 8-device H100 workers (real processes on
//! loopback), queues as deploy/examples/cohort-lab.yaml has them. research
//! fills 12 devices (8 + 4 borrowed); product then submits only batch jobs
//! and gets its nominal 8 back by preemption of research's borrowed work.

use crate::common;

use std::time::{Duration, Instant};

use common::{
    apply_queues, client, init_model, list, small_spec, start_scheduler, start_worker_with, submit,
    within,
};
use genfleet_proto as pb;

const H100: &str = "nvidia-h100-80gb";

const QUEUES: &str = "\
name: research
cohort: lab
quotas:
  nvidia-h100-80gb: { nominal: 8, borrowing_limit: 4 }
---
name: product
cohort: lab
quotas:
  nvidia-h100-80gb: { nominal: 8 }
";

/// A batch job of `queue` that runs about 200 s on simulated devices (a
/// model the profile has no rate for runs a step a second).
fn long_batch(queue: &str, prompt: &str, seed: u64) -> pb::JobSpec {
    pb::JobSpec {
        queue: queue.into(),
        qos: "batch".into(),
        model: "small".into(),
        steps: 200,
        ..small_spec(prompt, seed)
    }
}

/// Jobs of `queue` running now.
async fn running(
    jobs: &mut pb::job_service_client::JobServiceClient<tonic::transport::Channel>,
    queue: &str,
) -> usize {
    list(jobs)
        .await
        .iter()
        .filter(|j| {
            j.state() == pb::JobState::Running && j.spec.as_ref().is_some_and(|s| s.queue == queue)
        })
        .count()
}

/// Waits until `queue` runs `count` jobs; how long that took.
async fn until_running(
    jobs: &mut pb::job_service_client::JobServiceClient<tonic::transport::Channel>,
    queue: &str,
    count: usize,
) -> Duration {
    let start = Instant::now();
    within(120, &format!("{queue} to run {count} jobs"), async {
        while running(jobs, queue).await < count {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await;
    start.elapsed()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_only_queue_reclaims_its_nominal_from_a_borrower() {
    let dir = tempfile::tempdir().expect("tempdir");
    let scheduler = start_scheduler(
        &dir.path().join("scheduler"),
        "127.0.0.1:0",
        &["--min-runtime", "2s"],
    );
    let endpoint = scheduler.endpoint.clone();
    apply_queues(&endpoint, dir.path(), QUEUES);
    let models = dir.path().join("models");
    init_model(&models);
    let artifacts = dir.path().join("artifacts");
    let simulate = format!("{H100}:8");
    let _a = start_worker_with(
        &endpoint,
        "h100-a",
        &models,
        &artifacts,
        &["--simulate", &simulate],
    );
    let _b = start_worker_with(
        &endpoint,
        "h100-b",
        &models,
        &artifacts,
        &["--simulate", &simulate],
    );

    let mut jobs = client(&endpoint).await;
    for i in 0..12 {
        submit(&mut jobs, long_batch("research", "a research sweep", i)).await;
    }
    until_running(&mut jobs, "research", 12).await;

    // product asks for its own 8, with batch work only.
    for i in 0..16 {
        submit(
            &mut jobs,
            long_batch("product", "a product backfill", 100 + i),
        )
        .await;
    }
    let took = until_running(&mut jobs, "product", 8).await;
    let research = running(&mut jobs, "research").await;
    println!(
        "product (batch only) got its nominal 8 of 8 back in {:.1} s; research runs {research} (nominal 8)",
        took.as_secs_f64()
    );
    assert_eq!(research, 8, "research keeps its nominal and no more");

    // The preempted research jobs wait with their checkpoints, not lost.
    let preempted: Vec<pb::Job> = list(&mut jobs)
        .await
        .into_iter()
        .filter(|j| j.preemptions > 0)
        .collect();
    assert_eq!(preempted.len(), 4, "{preempted:?}");
    for job in preempted {
        assert_eq!(
            job.spec.as_ref().map(|s| s.queue.as_str()),
            Some("research")
        );
        assert!(job.checkpoint.is_some() || job.step == 0, "{job:?}");
    }
}
