//! The scheduler's state lives in its raft log on disk: a scheduler killed
//! with SIGKILL and started again on the same directory has every job it
//! had accepted, in the state it had reached.

use crate::common;

use std::collections::BTreeMap;

use common::*;
use genfleet_proto as pb;
use pb::JobState;

/// id -> (state, prompt, seed, lease epoch, artifact uris)
type Summary = BTreeMap<String, (JobState, String, u64, u64, Vec<String>)>;

fn summary(jobs: &[pb::Job]) -> Summary {
    jobs.iter()
        .map(|j| {
            let spec = j.spec.clone().unwrap_or_default();
            let uris = j.artifacts.iter().map(|a| a.uri.clone()).collect();
            (
                j.id.clone(),
                (j.state(), spec.prompt, spec.seed, j.lease_epoch, uris),
            )
        })
        .collect()
}

/// A job that no worker of one CPU slot can take: it waits for a wider node.
fn wide_spec(prompt: &str, seed: u64) -> pb::JobSpec {
    pb::JobSpec {
        tp: 2,
        ..small_spec(prompt, seed)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_scheduler_comes_back_with_every_accepted_job() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("scheduler");
    let models = dir.path().join("models");
    let artifacts = dir.path().join("artifacts");
    init_model(&models);

    // Two jobs ask for two devices, which the only worker (it joins after
    // them: once it is registered, such a gang is refused at submit) does
    // not have, so they stay pending; one of them is cancelled. One job
    // runs to completion.
    let mut scheduler = start_scheduler(&data, "127.0.0.1:0", &[]);
    let endpoint = scheduler.endpoint.clone();
    let mut c = client(&endpoint).await;
    let waiting = submit(&mut c, wide_spec("waiting", 2)).await;
    let cancelled = submit(&mut c, wide_spec("cancelled", 3)).await;
    let _narrow = start_worker(&endpoint, "node-a", &models, &artifacts);
    let done = submit(&mut c, small_spec("finished before the crash", 1)).await;
    let (done, _) = watch_to_end(&mut c, &done.id, 120).await;
    assert_eq!(done.state(), JobState::Completed);
    let cancel = c.cancel(pb::CancelJobRequest {
        id: cancelled.id.clone(),
    });
    within(30, "cancel", cancel).await.expect("cancel accepted");
    let before = summary(&list(&mut c).await);
    assert_eq!(before.len(), 3);
    assert_eq!(before[&waiting.id].0, JobState::Pending);
    assert_eq!(before[&cancelled.id].0, JobState::Cancelled);

    scheduler.proc.kill();
    let port = endpoint.rsplit(':').next().expect("port");
    let scheduler = start_scheduler(&data, &format!("127.0.0.1:{port}"), &[]);
    let mut c = client(&scheduler.endpoint).await;
    let after = summary(&list(&mut c).await);
    assert_eq!(
        after, before,
        "the restarted scheduler has the same jobs in the same states"
    );

    // A new submission is a new job (not an answer replayed from the old
    // log); it runs on the worker that reconnected by itself.
    let fresh = submit(&mut c, small_spec("after the restart", 4)).await;
    assert!(!before.contains_key(&fresh.id));
    let (fresh, _) = watch_to_end(&mut c, &fresh.id, 120).await;
    assert_eq!(fresh.state(), JobState::Completed, "{}", fresh.message);
    assert_eq!(fresh.node, "node-a");

    // A worker with two slots takes the job that waited across the restart.
    let wide = dir.path().join("artifacts-b");
    let (_wide, _) = start_worker_with(
        &scheduler.endpoint,
        "node-b",
        &models,
        &wide,
        &["--cpu-slots", "2"],
    );
    let (job, _) = watch_to_end(&mut c, &waiting.id, 120).await;
    assert_eq!(job.state(), JobState::Completed, "{}", job.message);
    assert_eq!(job.node, "node-b");
    let last = summary(&list(&mut c).await);
    assert_eq!(last[&done.id], before[&done.id]);
    assert_eq!(last[&cancelled.id], before[&cancelled.id]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_running_job_survives_a_scheduler_restart() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("scheduler");
    let models = dir.path().join("models");
    init_model(&models);
    let mut scheduler = start_scheduler(&data, "127.0.0.1:0", &[]);
    let endpoint = scheduler.endpoint.clone();
    let _worker = start_worker(&endpoint, "node-a", &models, &dir.path().join("artifacts"));
    let mut c = client(&endpoint).await;

    // Long enough to still be running when the scheduler dies.
    let mut spec = small_spec("outlives its scheduler", 9);
    spec.steps = 200;
    spec.width = 128;
    spec.height = 128;
    let job = submit(&mut c, spec).await;
    let running = within(60, "the job should start on the connected worker", async {
        let mut stream = c
            .watch(pb::WatchJobRequest { id: job.id.clone() })
            .await
            .expect("watch")
            .into_inner();
        loop {
            let event = stream
                .message()
                .await
                .expect("stream")
                .expect("stream open");
            let j = event.job.expect("job");
            if j.state() == JobState::Running && j.step > 0 {
                break j;
            }
        }
    })
    .await;

    scheduler.proc.kill();
    let port = endpoint.rsplit(':').next().expect("port");
    let scheduler = start_scheduler(&data, &format!("127.0.0.1:{port}"), &[]);
    let mut c = client(&scheduler.endpoint).await;
    let (finished, _) = watch_to_end(&mut c, &job.id, 180).await;
    assert_eq!(
        finished.state(),
        JobState::Completed,
        "{}",
        finished.message
    );
    assert_eq!(
        finished.lease_epoch, running.lease_epoch,
        "the same lease finished the job: it was not restarted"
    );
    assert_eq!(finished.requeues, 0);
}
