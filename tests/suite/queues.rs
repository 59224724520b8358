//! `genfleet queue apply/list/delete` against a real scheduler, and what
//! submissions naming queues get.

use crate::common;

use common::{cli, start_scheduler, Local};

#[test]
fn queues_are_managed_with_the_cli_and_checked_at_submit() {
    let dir = tempfile::tempdir().expect("tempdir");
    let scheduler = start_scheduler(&dir.path().join("scheduler"), "127.0.0.1:0", &[]);
    let endpoint = scheduler.endpoint.as_str();
    let file = dir.path().join("queues.yaml");
    std::fs::write(
        &file,
        "name: research\ncohort: lab\nweight: 2\nquotas:\n  cpu: { nominal: 2, borrowing_limit: 1 }\n---\nname: product\ncohort: lab\nquotas:\n  cpu: { nominal: 1, lending_limit: 1 }\n",
    )
    .expect("write queue file");
    let file = file.to_string_lossy().to_string();

    // `default` always exists, and is listed before anything is applied.
    let (ok, out, err) = cli(&["queue", "list", "--scheduler", endpoint]);
    assert!(ok, "{err}");
    assert!(out.lines().any(|l| l.starts_with("default ")), "{out}");

    let (ok, out, err) = cli(&["queue", "apply", "-f", &file, "--scheduler", endpoint]);
    assert!(ok, "{err}");
    assert!(out.contains("queue research applied") && out.contains("queue product applied"));

    let (ok, out, err) = cli(&["queue", "list", "--scheduler", endpoint]);
    assert!(ok, "{err}");
    let research = out.lines().find(|l| l.starts_with("research")).expect(&out);
    assert!(out.lines().any(|l| l.starts_with("default ")), "{out}");
    assert!(
        research.contains("lab") && research.contains("cpu=2 borrow<=1"),
        "{out}"
    );

    // A job naming a queue that does not exist is refused, and says so.
    let submit = |queue: &str| {
        cli(&[
            "submit",
            "--prompt",
            "a heron",
            "--queue",
            queue,
            "--frames",
            "5",
            "--size",
            "64x64",
            "--steps",
            "2",
            "--scheduler",
            endpoint,
        ])
    };
    let (ok, _, err) = submit("nope");
    assert!(!ok && err.contains("no queue named \"nope\""), "{err}");
    let (ok, out, err) = submit("research");
    assert!(ok, "{err}");
    let job_id = out
        .split_whitespace()
        .find(|w| w.starts_with("j-"))
        .expect("job id in the output")
        .to_string();

    // In use: refused, and nothing changes.
    let (ok, _, err) = cli(&["queue", "delete", "research", "--scheduler", endpoint]);
    assert!(!ok && err.contains("1 unfinished jobs"), "{err}");
    let (ok, _, err) = cli(&["cancel", &job_id, "--scheduler", endpoint]);
    assert!(ok, "{err}");
    let (ok, _, err) = cli(&["queue", "delete", "research", "--scheduler", endpoint]);
    assert!(ok, "{err}");
    let (_, out, _) = cli(&["queue", "list", "--scheduler", endpoint]);
    assert!(
        !out.contains("research") && out.contains("product"),
        "{out}"
    );

    // Bad files name the file, the queue and the field.
    std::fs::write(&file, "name: x\nquota: {}\n").expect("write");
    let (ok, _, err) = cli(&["queue", "apply", "-f", &file, "--scheduler", endpoint]);
    assert!(
        !ok && err.contains("queue 1") && err.contains("quota"),
        "{err}"
    );
    std::fs::write(
        &file,
        "name: x\nquotas:\n  cpu: { nominal: 1, borrowing_limit: 2 }\n",
    )
    .expect("write");
    let (ok, _, err) = cli(&["queue", "apply", "-f", &file, "--scheduler", endpoint]);
    assert!(!ok && err.contains("no cohort"), "{err}");
    let (ok, _, err) = cli(&[
        "queue",
        "apply",
        "-f",
        "/nonexistent/q.yaml",
        "--scheduler",
        endpoint,
    ]);
    assert!(!ok && err.contains("/nonexistent/q.yaml"), "{err}");
}

/// A scheduler (serving /metrics) with `queues` applied, and a CPU worker.
fn cluster_with_queues(queues: &str) -> (Local, common::Proc) {
    let local = Local::start(&["--metrics-listen", "127.0.0.1:0"]);
    common::apply_queues(&local.endpoint, local.dir.path(), queues);
    let worker = common::start_worker(&local.endpoint, "cpu-node", &local.models, &local.artifacts);
    (local, worker)
}

/// The leader's cycle enforces quotas: a queue with no quota for the only
/// flavor waits, and says why; the default queue runs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quotas_hold_in_the_running_cluster_and_waits_are_explained() {
    use common::{client, small_spec, submit, watch_to_end};
    use genfleet_proto as pb;

    let (local, _worker) = cluster_with_queues("name: capped\nquotas:\n  cpu: { nominal: 0 }\n");
    let endpoint = local.endpoint.clone();
    let mut jobs = client(&endpoint).await;
    let mut capped = small_spec("a capped heron", 1);
    capped.queue = "capped".into();
    let capped = submit(&mut jobs, capped).await;
    let free = submit(&mut jobs, small_spec("a free heron", 2)).await;
    let (done, _) = watch_to_end(&mut jobs, &free.id, 120).await;
    assert_eq!(done.state(), pb::JobState::Completed, "{done:?}");

    // The capped job is still pending, with the cycle's reason (a
    // verdict's change reaches watchers).
    let waiting = common::watch_until(
        &mut jobs,
        &capped.id,
        "the cycle explains the capped job",
        |j| j.pending_reason.contains("over quota"),
    )
    .await;
    assert_eq!(waiting.state(), pb::JobState::Pending);
    assert!(waiting.pending_reason.contains("cpu"), "{waiting:?}");
    let text = common::http_get(local.scheduler.metrics.as_deref().expect("metrics url"));
    let labels = [
        ("queue", "capped"),
        ("qos", "standard"),
        ("reason", "over_quota"),
    ];
    assert_eq!(
        common::metric(&text, "genfleet_pending_jobs", &labels),
        Some(1.0),
        "{text}"
    );
    let placed = [("qos", "standard")];
    assert_eq!(
        common::metric(&text, "genfleet_job_wait_seconds_count", &placed),
        Some(1.0),
        "the free job was placed once: {text}"
    );
    // The capped queue's quota and use, as the last cycle saw them.
    for (kind, expected) in [("nominal", 0.0), ("used", 0.0), ("borrowed", 0.0)] {
        let labels = [("queue", "capped"), ("flavor", "cpu"), ("kind", kind)];
        let got = common::metric(&text, "genfleet_queue_devices", &labels);
        assert_eq!(got, Some(expected), "{kind}: {text}");
    }
    // The leader learned the CPU's step rate from the free job's progress.
    let learned = [("model", "tiny"), ("flavor", "cpu"), ("tp", "1")];
    let rate = common::metric(&text, "genfleet_profile_steps_per_second", &learned);
    assert!(rate.is_some_and(|r| r.is_finite() && r > 0.0), "{text}");
    let (ok, out, err) = cli(&["jobs", "--scheduler", &endpoint]);
    assert!(ok, "{err}");
    let line = out.lines().find(|l| l.contains(&capped.id)).expect(&out);
    assert!(line.contains("over quota on cpu"), "{out}");

    // A gang wider than every registered node is refused at submit.
    let (ok, _, err) = cli(&[
        "submit",
        "--prompt",
        "too wide",
        "--tp",
        "4",
        "--size",
        "64x64",
        "--frames",
        "5",
        "--scheduler",
        &endpoint,
    ]);
    assert!(
        !ok && err.contains("asks for 4 devices on one node"),
        "{err}"
    );
}

/// A queue's device-hour budget in the running cluster: once what its
/// work used and will use reaches the budget, its jobs wait for the next
/// period, and say so.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_spent_budget_holds_a_queues_jobs_until_the_next_period() {
    use common::{client, small_spec, submit, watch_to_end};
    use genfleet_proto as pb;

    // 36 ms of one device per day: the first job uses it all up.
    let (local, _worker) = cluster_with_queues(
        "name: tight\nquotas:\n  cpu: { nominal: 1 }\nbudget: { device_hours: 0.00001, period: 1day }\n",
    );
    let endpoint = local.endpoint.clone();
    let mut jobs = client(&endpoint).await;
    let in_tight = |seed| {
        let mut spec = small_spec("a frugal heron", seed);
        spec.queue = "tight".into();
        spec
    };
    let first = submit(&mut jobs, in_tight(1)).await;
    let second = submit(&mut jobs, in_tight(2)).await;
    let (first, _) = watch_to_end(&mut jobs, &first.id, 120).await;
    assert_eq!(first.state(), pb::JobState::Completed, "{first:?}");

    let waiting = common::watch_until(&mut jobs, &second.id, "the cycle names the budget", |j| {
        j.pending_reason.contains("budget")
    })
    .await;
    assert_eq!(waiting.state(), pb::JobState::Pending, "{waiting:?}");
    let eta = waiting.eta_seconds.expect("an ETA: the next period");
    assert!(eta > 0.0 && eta <= 86_400.0, "{eta}");

    let text = common::http_get(local.scheduler.metrics.as_deref().expect("metrics url"));
    let used = common::metric(
        &text,
        "genfleet_queue_budget_device_seconds",
        &[("queue", "tight"), ("kind", "used")],
    );
    assert!(used.is_some_and(|u| u > 0.0), "{text}");
    let (ok, out, err) = cli(&["queue", "list", "--scheduler", &endpoint]);
    assert!(ok, "{err}");
    let line = out.lines().find(|l| l.starts_with("tight")).expect(&out);
    assert!(line.contains("device-h per 1day"), "{out}");
}
