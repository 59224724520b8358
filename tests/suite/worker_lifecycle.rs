//! A real worker through the events of its life: SIGTERM (what Kubernetes
//! sends before it stops a pod) makes it drain, SIGKILL costs at most one
//! periodic checkpoint's interval, and a scheduler failover does not stop
//! the job it runs.

use crate::common;

use common::replicas::Replicas;
use common::{
    artifact_path, assert_resumed_one_checkpoint, client, get_job, init_model, long_spec,
    start_worker_with, submit, watch_to_end, watch_until, Local,
};
use genfleet_proto as pb;

fn long_job(seed: u64) -> pb::JobSpec {
    long_spec("a long pan over a harbour", seed)
}

fn running_steps(j: &pb::Job) -> bool {
    j.state() == pb::JobState::Running && j.step >= 2
}

/// The worker drains: its running job checkpoints at the next step and goes
/// back to the queue with that checkpoint, the worker exits 0, and another
/// worker resumes the job from the saved step.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_told_to_stop_checkpoints_its_job_and_another_resumes_it() {
    let local = Local::start(&[]);
    let endpoint = local.endpoint.clone();
    let metrics = ["--metrics-listen", "127.0.0.1:0"];
    let (mut first, _) = start_worker_with(
        &endpoint,
        "node-a",
        &local.models,
        &local.artifacts,
        &metrics,
    );
    let mut jobs = client(&endpoint).await;
    let job = submit(&mut jobs, long_job(7)).await;
    watch_until(
        &mut jobs,
        &job.id,
        "the job runs a few steps",
        running_steps,
    )
    .await;

    let status = first.terminate(60);
    assert!(
        status.success(),
        "the worker exits 0 after draining: {status:?}"
    );
    let back = get_job(&mut jobs, &job.id).await;
    assert_eq!(back.state(), pb::JobState::Pending, "{back:?}");
    let checkpoint = back.checkpoint.clone().expect("a checkpoint");
    assert!(
        checkpoint.step >= 2 && checkpoint.step < 160,
        "{checkpoint:?}"
    );
    assert_eq!(
        (back.requeues, back.preemptions),
        (1, 0),
        "a drain is not a preemption"
    );
    let (ok, out, err) = common::cli(&["node", "list", "--scheduler", &endpoint]);
    assert!(ok, "{err}");
    assert!(
        out.lines()
            .any(|l| l.starts_with("node-a") && l.contains("draining")),
        "{out}"
    );

    let (_second, second_metrics) = start_worker_with(
        &endpoint,
        "node-b",
        &local.models,
        &local.artifacts,
        &metrics,
    );
    let (done, _) = watch_to_end(&mut jobs, &job.id, 300).await;
    assert_eq!(done.state(), pb::JobState::Completed, "{done:?}");
    assert_eq!(done.node, "node-b");
    assert_resumed_one_checkpoint(second_metrics.as_deref());
}

/// A worker killed with SIGKILL mid-job (a spot reclaim, an OOM kill, a
/// GPU fault: nothing is saved at the end) loses at most one checkpoint
/// interval: its job resumes on another worker from the last periodic
/// checkpoint, not from step 0, and the video is byte-identical to an
/// uninterrupted run of the same job.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_killed_mid_job_resumes_from_its_last_periodic_checkpoint() {
    let local = Local::start(&["--worker-grace", "1s"]);
    let endpoint = local.endpoint.clone();
    let periodic = [
        "--checkpoint-every",
        "300ms",
        "--metrics-listen",
        "127.0.0.1:0",
    ];
    let (mut first, _) = start_worker_with(
        &endpoint,
        "node-a",
        &local.models,
        &local.artifacts,
        &periodic,
    );
    let mut jobs = client(&endpoint).await;
    let spec = long_job(11);
    let job = submit(&mut jobs, spec.clone()).await;
    let saved = watch_until(
        &mut jobs,
        &job.id,
        "a periodic checkpoint is recorded",
        |j| j.state() == pb::JobState::Running && j.checkpoint.as_ref().is_some_and(|c| c.step > 0),
    )
    .await;
    let saved_step = saved.checkpoint.as_ref().map_or(0, |c| c.step);
    let killed = std::time::Instant::now();
    first.kill();
    // Its session gone, the job goes back to the queue at its checkpoint.
    let requeued = watch_until(&mut jobs, &job.id, "the job is requeued", |j| {
        j.state() == pb::JobState::Pending
    })
    .await;
    let resume_at = requeued.checkpoint.as_ref().map_or(0, |c| c.step);
    println!(
        "killed with SIGKILL at step {} of {}; requeued {:.1} s later at step {resume_at}",
        saved.step,
        spec.steps,
        killed.elapsed().as_secs_f64()
    );
    assert!(
        resume_at >= saved_step && requeued.step == resume_at,
        "requeued at step {} with a checkpoint at {resume_at}; one at {saved_step} was recorded",
        requeued.step
    );

    let metrics = ["--metrics-listen", "127.0.0.1:0"];
    let (_second, second_metrics) = start_worker_with(
        &endpoint,
        "node-b",
        &local.models,
        &local.artifacts,
        &metrics,
    );
    let (done, _) = watch_to_end(&mut jobs, &job.id, 300).await;
    assert_eq!(done.state(), pb::JobState::Completed, "{done:?}");
    assert_eq!(
        (done.node.as_str(), done.requeues),
        ("node-b", 1),
        "{done:?}"
    );
    assert_resumed_one_checkpoint(second_metrics.as_deref());

    // The same job without interruption makes the same bytes.
    let again = submit(&mut jobs, spec).await;
    let (again, _) = watch_to_end(&mut jobs, &again.id, 300).await;
    assert_eq!(again.state(), pb::JobState::Completed, "{again:?}");
    let video = |job: &pb::Job| {
        let path = artifact_path(job, "video");
        std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
    };
    assert!(
        video(&done) == video(&again),
        "the resumed video differs from an uninterrupted run's"
    );
}

/// The leader is killed while a worker runs a job: the worker finds the new
/// leader, and the job finishes under the lease it had (not requeued).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_running_job_survives_a_scheduler_failover() {
    let replicas = Replicas::new(3, &[]);
    replicas.converged(&[1, 2, 3]).await;
    let leader = replicas.leader().await.expect("a leader");
    let all: Vec<String> = (1..=3).map(|id| replicas.endpoint(id)).collect();
    let dir = tempfile::tempdir().expect("tempdir");
    let models = dir.path().join("models");
    init_model(&models);
    let (_worker, _) = start_worker_with(
        &all.join(","),
        "node-a",
        &models,
        &dir.path().join("artifacts"),
        &[],
    );
    // A client of a replica that survives (followers forward to the leader).
    let follower = (1..=3).find(|id| *id != leader).expect("a follower");
    let mut jobs = client(&replicas.endpoint(follower)).await;
    let job = submit(&mut jobs, long_job(8)).await;
    let running = watch_until(
        &mut jobs,
        &job.id,
        "the job runs a few steps",
        running_steps,
    )
    .await;

    let mut replicas = replicas;
    replicas.kill(leader);
    let alive: Vec<u64> = (1..=3).filter(|id| *id != leader).collect();
    replicas.converged(&alive).await;
    let (done, _) = watch_to_end(&mut jobs, &job.id, 300).await;
    assert_eq!(done.state(), pb::JobState::Completed, "{done:?}");
    assert_eq!(
        (done.lease_epoch, done.requeues),
        (running.lease_epoch, 0),
        "the job went on under its lease: {done:?}"
    );
}
