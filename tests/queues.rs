//! `genfleet queue apply/list/delete` against a real scheduler, and what
//! submissions naming queues get.

mod common;

use common::{cli, start_scheduler};

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

    let (ok, out, err) = cli(&["queue", "apply", "-f", &file, "--scheduler", endpoint]);
    assert!(ok, "{err}");
    assert!(out.contains("queue research applied") && out.contains("queue product applied"));

    let (ok, out, err) = cli(&["queue", "list", "--scheduler", endpoint]);
    assert!(ok, "{err}");
    let research = out.lines().find(|l| l.starts_with("research")).expect(&out);
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
