//! `genfleet node list/cordon/uncordon` against a running scheduler and
//! worker: a cordoned node finishes what it runs and takes nothing new.

use crate::common;

use common::{cli, client, small_spec, start_worker, submit, Local};
use common::{watch_to_end, watch_until};
use genfleet_proto as pb;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cordoned_node_finishes_its_work_and_takes_no_more_until_uncordoned() {
    let local = Local::start(&[]);
    let endpoint = local.endpoint.clone();
    let _worker = start_worker(&endpoint, "cpu-node", &local.models, &local.artifacts);
    let mut jobs = client(&endpoint).await;
    let node = |verb: &str, name: &str| cli(&["node", verb, name, "--scheduler", &endpoint]);

    // Cordoned while a job runs there: the job still finishes.
    let running = submit(&mut jobs, common::long_spec("a long heron", 1)).await;
    watch_until(&mut jobs, &running.id, "the first job starts", |j| {
        j.state() == pb::JobState::Running
    })
    .await;
    let (ok, out, err) = node("cordon", "cpu-node");
    assert!(ok, "{err}");
    assert!(out.contains("node cpu-node cordoned"), "{out}");
    let still = common::get_job(&mut jobs, &running.id).await;
    assert_eq!(
        still.state(),
        pb::JobState::Running,
        "cordoned while it runs"
    );
    let (ok, out, err) = cli(&["node", "list", "--scheduler", &endpoint]);
    assert!(ok, "{err}");
    let line = out.lines().find(|l| l.starts_with("cpu-node")).expect(&out);
    assert!(line.contains("cordoned") && line.contains("1xcpu"), "{out}");

    let waiting = submit(&mut jobs, small_spec("a waiting heron", 2)).await;
    let (done, _) = watch_to_end(&mut jobs, &running.id, 120).await;
    assert_eq!(done.state(), pb::JobState::Completed, "{done:?}");

    // The new job waits, and says why.
    let pending = watch_until(&mut jobs, &waiting.id, "the cycle names the cordon", |j| {
        j.pending_reason.contains("cordoned")
    })
    .await;
    assert_eq!(pending.state(), pb::JobState::Pending, "{pending:?}");

    let (ok, _, err) = node("cordon", "ghost");
    assert!(!ok && err.contains("no node named \"ghost\""), "{err}");

    let (ok, out, err) = node("uncordon", "cpu-node");
    assert!(ok && out.contains("uncordoned"), "{err}");
    let (done, _) = watch_to_end(&mut jobs, &waiting.id, 120).await;
    assert_eq!(done.state(), pb::JobState::Completed, "{done:?}");
    let (_, out, _) = cli(&["node", "list", "--scheduler", &endpoint]);
    assert!(out.contains("ready"), "{out}");
}
