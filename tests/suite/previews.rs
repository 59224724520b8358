//! Previews on a real scheduler and worker: an interactive job stores a
//! half-resolution preview (MP4 and thumbnail) a quarter of the way through,
//! while it is still running; the Videos API says so and serves it; the
//! final video is byte for byte the one the same job makes without a
//! preview (a standard job makes none).

use crate::common;

use common::*;
use genfleet_proto as pb;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_interactive_job_shows_a_preview_while_it_runs_and_the_video_is_unchanged() {
    let dir = tempfile::tempdir().expect("tempdir");
    let artifacts = dir.path().join("artifacts");
    let artifacts_arg = artifacts.to_string_lossy().to_string();
    let scheduler = start_scheduler(
        &dir.path().join("scheduler"),
        "127.0.0.1:0",
        &["--api-listen", "127.0.0.1:0", "--artifacts", &artifacts_arg],
    );
    let api = scheduler.api.clone().expect("an api= address");
    let models = dir.path().join("models");
    init_model(&models);
    let (_worker, _) = start_worker_with(
        &scheduler.endpoint,
        "node-preview",
        &models,
        &artifacts,
        &["--preview-at", "0.25"],
    );
    let mut client = client(&scheduler.endpoint).await;

    let spec = pb::JobSpec {
        steps: 8,
        ..small_spec("a lighthouse in a storm", 11)
    };
    let interactive = submit(
        &mut client,
        pb::JobSpec {
            qos: "interactive".into(),
            ..spec.clone()
        },
    )
    .await;
    let has_preview = |job: &pb::Job| job.artifacts.iter().any(|a| a.kind == "preview");
    let seen = watch_until(
        &mut client,
        &interactive.id,
        "a preview appears",
        has_preview,
    )
    .await;
    assert_eq!(
        seen.state(),
        pb::JobState::Running,
        "the preview came while it ran"
    );

    // The API says a preview is there, and serves it while the job runs or after.
    let (status, body) = http_request("GET", &format!("{api}/videos/{}", interactive.id), &[], "");
    assert_eq!(status, 200, "{body}");
    let video: serde_json::Value = serde_json::from_str(&body).expect("a video object");
    assert_eq!(video["has_preview"], true, "{video}");
    let (status, bytes) = http_request_bytes(
        "GET",
        &format!("{api}/videos/{}/content?variant=preview", interactive.id),
        &[],
        "",
    );
    assert_eq!(status, 200);
    assert!(bytes.len() > 100, "{} bytes", bytes.len());

    let (interactive, _) = watch_to_end(&mut client, &interactive.id, 120).await;
    assert_eq!(
        interactive.state(),
        pb::JobState::Completed,
        "{}",
        interactive.message
    );
    let preview = artifact_path(&interactive, "preview");
    check_mp4(
        &preview,
        spec.frames,
        spec.width / 2,
        spec.height / 2,
        spec.fps,
    );
    check_png(
        &artifact_path(&interactive, "preview_thumbnail"),
        spec.width / 2,
        spec.height / 2,
    );
    let (status, served) = http_request_bytes(
        "GET",
        &format!(
            "{api}/videos/{}/content?variant=preview_thumbnail",
            interactive.id
        ),
        &[],
        "",
    );
    assert_eq!(status, 200);
    assert_eq!(
        served,
        std::fs::read(artifact_path(&interactive, "preview_thumbnail")).expect("read")
    );

    // The same job as a standard one: no preview, the same video.
    let standard = submit(&mut client, spec.clone()).await;
    let (standard, _) = watch_to_end(&mut client, &standard.id, 120).await;
    assert_eq!(
        standard.state(),
        pb::JobState::Completed,
        "{}",
        standard.message
    );
    assert!(!has_preview(&standard), "{:?}", standard.artifacts);
    let (status, _) = http_request_bytes(
        "GET",
        &format!("{api}/videos/{}/content?variant=preview", standard.id),
        &[],
        "",
    );
    assert_eq!(status, 404);
    let read = |job: &pb::Job| std::fs::read(artifact_path(job, "video")).expect("read video");
    assert_eq!(
        read(&interactive),
        read(&standard),
        "making a preview changed the video"
    );
}
