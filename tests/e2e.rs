//! The whole path with real processes: a scheduler and a worker on loopback,
//! a job submitted over gRPC, watched to `completed`, its files checked.

mod common;

use common::*;
use genfleet_proto::JobState;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_submitted_over_grpc_runs_to_a_valid_video() {
    let dir = tempfile::tempdir().expect("tempdir");
    let models = dir.path().join("models");
    init_model(&models);
    let scheduler = start_scheduler(&dir.path().join("scheduler"), "127.0.0.1:0", &[]);
    let _worker = start_worker(
        &scheduler.endpoint,
        "node-a",
        &models,
        &dir.path().join("artifacts"),
    );
    let mut client = client(&scheduler.endpoint).await;

    let spec = small_spec("a lighthouse in a storm", 7);
    let submitted = submit(&mut client, spec.clone()).await;
    assert_eq!(submitted.state(), JobState::Pending);
    assert!(submitted.id.starts_with("j-"), "{}", submitted.id);

    let (job, states) = watch_to_end(&mut client, &submitted.id, 120).await;
    assert_eq!(job.state(), JobState::Completed, "message: {}", job.message);
    assert_eq!(states.first(), Some(&JobState::Pending));
    assert!(
        states.contains(&JobState::Running),
        "states seen: {states:?}"
    );
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

    // The same seed and prompt give the same video, byte for byte.
    let again = submit(&mut client, spec).await;
    let (again, _) = watch_to_end(&mut client, &again.id, 120).await;
    let read = |j: &genfleet_proto::Job| std::fs::read(artifact_path(j, "video")).expect("video");
    assert_eq!(read(&job), read(&again));
}
