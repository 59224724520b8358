//! The whole path with real processes: a scheduler and a worker on loopback,
//! a job submitted over gRPC, watched to `completed`, its files checked.

use crate::common;

use common::*;
use genfleet_proto::JobState;

/// A metric, its labels and the value it must have.
type Expected<'a> = (&'a str, &'a [(&'a str, &'a str)], f64);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_submitted_over_grpc_runs_to_a_valid_video() {
    let metrics_flag = ["--metrics-listen", "127.0.0.1:0"];
    let local = Local::start(&metrics_flag);
    let (_worker, worker_metrics) = start_worker_with(
        &local.endpoint,
        "node-a",
        &local.models,
        &local.artifacts,
        &metrics_flag,
    );
    let mut client = client(&local.endpoint).await;

    let spec = small_spec("a lighthouse in a storm", 7);
    let submitted = submit(&mut client, spec.clone()).await;
    assert_eq!(submitted.state(), JobState::Pending);
    assert!(submitted.id.starts_with("j-"), "{}", submitted.id);

    // (The watch may begin after the job started, or even ended: its first
    // event is the job as it is; intermediate states are not asserted.)
    let (job, _) = watch_to_end(&mut client, &submitted.id, 120).await;
    assert_eq!(job.state(), JobState::Completed, "message: {}", job.message);
    assert_eq!(job.node, "node-a");
    assert_eq!(job.step, spec.steps);
    assert!(job.finished_at_ms >= job.started_at_ms && job.started_at_ms >= job.created_at_ms);

    check_mp4(
        &artifact_path(&job, "video"),
        spec.frames,
        spec.width,
        spec.height,
        spec.fps,
    );
    check_png(&artifact_path(&job, "thumbnail"), spec.width, spec.height);
    // Every frame (up to 16) in rows of 4: 9 frames make 3 rows.
    assert_eq!(spec.frames, 9);
    check_png(
        &artifact_path(&job, "spritesheet"),
        4 * spec.width,
        3 * spec.height,
    );

    // The same seed and prompt give the same video, byte for byte.
    let again = submit(&mut client, spec).await;
    let (again, _) = watch_to_end(&mut client, &again.id, 120).await;
    let read = |j: &genfleet_proto::Job| std::fs::read(artifact_path(j, "video")).expect("video");
    assert_eq!(read(&job), read(&again));

    // Both processes account for the two jobs on /metrics.
    let text = http_get(
        local
            .scheduler
            .metrics
            .as_deref()
            .expect("scheduler metrics url"),
    );
    let expected: [Expected; 5] = [
        ("genfleet_jobs", &[("state", "completed")], 2.0),
        ("genfleet_jobs", &[("state", "pending")], 0.0),
        ("genfleet_jobs_submitted_total", &[], 2.0),
        ("genfleet_replica_role", &[("role", "leader")], 1.0),
        ("genfleet_workers_connected", &[], 1.0),
    ];
    for (name, labels, value) in expected {
        assert_eq!(
            metric(&text, name, labels),
            Some(value),
            "scheduler {name}{labels:?}:\n{text}"
        );
    }
    let text = http_get(worker_metrics.as_deref().expect("worker metrics url"));
    let node = ("node", "node-a");
    let completed = metric(
        &text,
        "genfleet_worker_jobs_total",
        &[node, ("result", "completed")],
    );
    assert_eq!(completed, Some(2.0), "{text}");
    let steps = metric(
        &text,
        "genfleet_worker_step_seconds_count",
        &[node, ("model", "tiny")],
    );
    assert_eq!(steps, Some(8.0), "two jobs of 4 steps:\n{text}");
}

/// A gang of two CPU devices: the worker splits the DiT over two ranks
/// (threads with a CPU all-reduce) and the video comes out whole.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tensor_parallel_gang_runs_to_a_valid_video() {
    let local = Local::start(&[]);
    let (_worker, worker_metrics) = start_worker_with(
        &local.endpoint,
        "node-a",
        &local.models,
        &local.artifacts,
        &["--cpu-slots", "2", "--metrics-listen", "127.0.0.1:0"],
    );
    let mut client = client(&local.endpoint).await;
    let mut spec = small_spec("a gang of two", 3);
    spec.tp = 2;
    let job = submit(&mut client, spec.clone()).await;
    let (job, _) = watch_to_end(&mut client, &job.id, 120).await;
    assert_eq!(job.state(), JobState::Completed, "message: {}", job.message);
    check_mp4(
        &artifact_path(&job, "video"),
        spec.frames,
        spec.width,
        spec.height,
        spec.fps,
    );
    let text = http_get(worker_metrics.as_deref().expect("metrics url"));
    let steps = metric(
        &text,
        "genfleet_worker_step_seconds_count",
        &[("model", "tiny"), ("tp", "2")],
    );
    assert_eq!(steps, Some(f64::from(spec.steps)), "{text}");
}
