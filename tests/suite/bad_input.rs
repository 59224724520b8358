//! Bad input gets a clear error naming what was wrong and changes nothing:
//! through the gRPC API, through the CLI, and from a worker that lies.

use crate::common;

use common::*;
use genfleet_proto as pb;
use pb::scheduler_message::Msg as Down;
use pb::worker_message::Msg as Up;
use tonic::Code;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_requests_are_refused_and_change_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let scheduler = start_scheduler(&dir.path().join("scheduler"), "127.0.0.1:0", &[]);
    let mut c = client(&scheduler.endpoint).await;

    type Case = (&'static str, fn(&mut pb::JobSpec), &'static str);
    let cases: Vec<Case> = vec![
        (
            "empty prompt",
            |s| s.prompt = String::new(),
            "prompt is empty",
        ),
        (
            "oversized prompt",
            |s| s.prompt = "a".repeat(5000),
            "5000 characters",
        ),
        ("zero frames", |s| s.frames = 0, "frames = 0"),
        (
            "absurd frames",
            |s| s.frames = 1_000_000,
            "frames = 1000000",
        ),
        (
            "width not a multiple of 16",
            |s| s.width = 250,
            "width = 250",
        ),
        ("zero height", |s| s.height = 0, "height = 0"),
        ("absurd size", |s| s.width = 65_536, "width = 65536"),
        ("zero steps", |s| s.steps = 0, "steps = 0"),
        ("negative guidance", |s| s.guidance = -1.0, "guidance = -1"),
        (
            "path in model name",
            |s| s.model = "../../etc".into(),
            "model \"../../etc\"",
        ),
    ];
    for (name, mutate, expected) in cases {
        let mut spec = small_spec("valid", 1);
        mutate(&mut spec);
        let status = within(
            30,
            name,
            c.submit(pb::SubmitRequest {
                spec: Some(spec),
                request_id: String::new(),
            }),
        )
        .await
        .expect_err(name);
        assert_eq!(status.code(), Code::InvalidArgument, "{name}: {status:?}");
        assert!(
            status.message().contains(expected),
            "{name}: {:?} lacks {expected:?}",
            status.message()
        );
    }
    let status = c
        .submit(pb::SubmitRequest {
            spec: None,
            request_id: String::new(),
        })
        .await
        .expect_err("no spec");
    assert_eq!(status.code(), Code::InvalidArgument);
    assert!(list(&mut c).await.is_empty(), "nothing was accepted");

    for status in [
        c.get(pb::GetJobRequest {
            id: "j-nope".into(),
        })
        .await
        .map(|_| ()),
        c.cancel(pb::CancelJobRequest {
            id: "j-nope".into(),
        })
        .await
        .map(|_| ()),
        c.watch(pb::WatchJobRequest {
            id: "j-nope".into(),
        })
        .await
        .map(|_| ()),
    ] {
        let status = status.expect_err("unknown id");
        assert_eq!(status.code(), Code::NotFound);
        assert!(status.message().contains("\"j-nope\""), "{status:?}");
    }

    // Cancelling twice: the second is refused, the first stands.
    let job = submit(&mut c, small_spec("to cancel", 1)).await;
    c.cancel(pb::CancelJobRequest { id: job.id.clone() })
        .await
        .expect("first cancel");
    let again = c
        .cancel(pb::CancelJobRequest { id: job.id.clone() })
        .await
        .expect_err("second cancel");
    assert_eq!(again.code(), Code::FailedPrecondition);
    assert!(
        again.message().contains("already ended (cancelled)"),
        "{again:?}"
    );
    let jobs = list(&mut c).await;
    assert_eq!(jobs.len(), 1);
    assert_eq!(jobs[0].state(), pb::JobState::Cancelled);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_says_what_was_wrong() {
    let dir = tempfile::tempdir().expect("tempdir");
    let scheduler = start_scheduler(&dir.path().join("scheduler"), "127.0.0.1:0", &[]);
    let s = scheduler.endpoint.as_str();
    let cases: Vec<(&str, Vec<&str>, &str)> = vec![
        (
            "empty prompt",
            vec!["submit", "--scheduler", s, "--prompt", ""],
            "prompt is empty",
        ),
        (
            "tiny size",
            vec![
                "submit",
                "--scheduler",
                s,
                "--prompt",
                "x",
                "--size",
                "10x10",
            ],
            "width = 10",
        ),
        (
            "malformed size",
            vec!["submit", "--scheduler", s, "--prompt", "x", "--size", "big"],
            "WIDTHxHEIGHT",
        ),
        (
            "zero frames",
            vec!["submit", "--scheduler", s, "--prompt", "x", "--frames", "0"],
            "frames = 0",
        ),
        // Zeros the user typed are refused, not replaced by the defaults.
        (
            "zero devices",
            vec!["submit", "--scheduler", s, "--prompt", "x", "--tp", "0"],
            "invalid value '0' for '--tp",
        ),
        (
            "zero frame rate",
            vec!["submit", "--scheduler", s, "--prompt", "x", "--fps", "0"],
            "invalid value '0' for '--fps",
        ),
        (
            "no replicas",
            vec!["up", "--replicas", "0"],
            "invalid value '0' for '--replicas",
        ),
        (
            "unknown job",
            vec!["get", "--scheduler", s, "j-missing"],
            "no job with id \"j-missing\"",
        ),
        (
            "unknown state",
            vec!["jobs", "--scheduler", s, "--state", "sleeping"],
            "unknown state \"sleeping\"",
        ),
        (
            "address without scheme",
            vec!["jobs", "--scheduler", "127.0.0.1:7070"],
            "not a scheduler address",
        ),
        (
            "unreachable scheduler",
            vec!["jobs", "--scheduler", "http://127.0.0.1:1"],
            "cannot reach the scheduler at http://127.0.0.1:1",
        ),
    ];
    for (name, args, expected) in cases {
        let (ok, _, stderr) = cli(&args);
        assert!(!ok, "{name}: should fail");
        assert!(
            stderr.contains(expected),
            "{name}: stderr lacks {expected:?}:\n{stderr}"
        );
    }
    let (ok, stdout, _) = cli(&["jobs", "--scheduler", s]);
    assert!(ok);
    assert_eq!(stdout.trim(), "no jobs", "no bad submission got through");

    let empty = dir.path().join("no-models");
    let (ok, _, stderr) = cli(&[
        "worker",
        "--scheduler",
        s,
        "--models",
        &empty.to_string_lossy(),
    ]);
    assert!(!ok);
    assert!(
        stderr.contains("no models under") && stderr.contains("genfleet model init"),
        "{stderr}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_that_lies_is_refused_or_told_to_stop() {
    let dir = tempfile::tempdir().expect("tempdir");
    let scheduler = start_scheduler(&dir.path().join("scheduler"), "127.0.0.1:0", &[]);
    let mut c = client(&scheduler.endpoint).await;
    let job = submit(&mut c, small_spec("not yours", 1)).await;
    let mut sessions =
        pb::worker_session_client::WorkerSessionClient::connect(scheduler.endpoint.clone())
            .await
            .expect("connect");

    let register = |devices: u32| pb::WorkerMessage {
        msg: Some(Up::Register(pb::Register {
            node: "liar".into(),
            instance: "i-1".into(),
            devices: vec![pb::DeviceGroup {
                flavor: "cpu".into(),
                count: devices,
                memory_bytes: 0,
                free_memory_bytes: None,
                simulated: false,
            }],
            models: vec!["tiny".into()],
            running: vec![],
        })),
    };
    // 10,000 devices on one node is a lie.
    let refused = sessions
        .session(tokio_stream::iter(vec![register(10_000)]))
        .await
        .expect_err("registration refused");
    assert_eq!(refused.code(), Code::InvalidArgument);
    assert!(refused.message().contains("10000 devices"), "{refused:?}");

    // Registered honestly, it then claims a result under a lease it was never
    // given: the scheduler records nothing and tells it to stop.
    let (tx, rx) = tokio::sync::mpsc::channel(8);
    tx.send(register(1)).await.expect("send");
    let mut inbound = sessions
        .session(tokio_stream::wrappers::ReceiverStream::new(rx))
        .await
        .expect("session")
        .into_inner();
    let forged = pb::JobLease {
        job_id: job.id.clone(),
        lease_epoch: 77,
    };
    tx.send(pb::WorkerMessage {
        msg: Some(Up::Finished(pb::Finished {
            lease: Some(forged.clone()),
            artifacts: vec![pb::Artifact {
                kind: "video".into(),
                uri: "file:///evil".into(),
                ..Default::default()
            }],
        })),
    })
    .await
    .expect("send");
    let stop = within(
        30,
        "the scheduler should answer a forged result with stop",
        async {
            loop {
                match inbound.message().await.expect("stream").expect("open").msg {
                    Some(Down::Stop(stop)) if stop.lease.as_ref() == Some(&forged) => break stop,
                    _ => {}
                }
            }
        },
    )
    .await;
    // Placed on the liar's node by now or not: either way not its lease.
    assert!(
        stop.reason.contains("stale lease") || stop.reason.contains("not leased to this node"),
        "{}",
        stop.reason
    );
    let after = c
        .get(pb::GetJobRequest { id: job.id.clone() })
        .await
        .expect("get")
        .into_inner();
    assert!(
        after.artifacts.is_empty(),
        "the forged artifacts were not recorded"
    );
    assert_ne!(after.state(), pb::JobState::Completed);
}

/// A worker that ignores a preemption (hung, or too old to know the
/// message) does not hold the devices: after --preempt-timeout the job is
/// requeued, the worker told to stop it, and the waiting job takes its place.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_that_ignores_a_preemption_loses_the_lease_after_the_timeout() {
    let dir = tempfile::tempdir().expect("tempdir");
    let scheduler = start_scheduler(
        &dir.path().join("scheduler"),
        "127.0.0.1:0",
        &["--min-runtime", "0s", "--preempt-timeout", "1s"],
    );
    let mut c = client(&scheduler.endpoint).await;
    let mut sessions =
        pb::worker_session_client::WorkerSessionClient::connect(scheduler.endpoint.clone())
            .await
            .expect("connect");
    let (tx, rx) = tokio::sync::mpsc::channel(8);
    tx.send(pb::WorkerMessage {
        msg: Some(Up::Register(pb::Register {
            node: "mute".into(),
            instance: "i-1".into(),
            devices: vec![pb::DeviceGroup {
                flavor: "cpu".into(),
                count: 1,
                memory_bytes: 0,
                free_memory_bytes: None,
                simulated: false,
            }],
            models: vec!["tiny".into()],
            running: vec![],
        })),
    })
    .await
    .expect("send");
    let mut inbound = sessions
        .session(tokio_stream::wrappers::ReceiverStream::new(rx))
        .await
        .expect("session")
        .into_inner();
    async fn next(inbound: &mut tonic::Streaming<pb::SchedulerMessage>) -> Option<Down> {
        within(30, "a message from the scheduler", inbound.message())
            .await
            .expect("stream")
            .expect("open")
            .msg
    }

    let mut batch = small_spec("batch work", 1);
    batch.qos = "batch".into();
    let batch = submit(&mut c, batch).await;
    let lease = loop {
        if let Some(Down::Assignment(a)) = next(&mut inbound).await {
            break pb::JobLease {
                job_id: a.job_id,
                lease_epoch: a.lease_epoch,
            };
        }
    };
    assert_eq!(lease.job_id, batch.id);
    let mut chat = small_spec("someone is waiting", 2);
    chat.qos = "interactive".into();
    let chat = submit(&mut c, chat).await;
    // Told to checkpoint; it never does. Then: stop, and the chat job.
    let mut seen = Vec::new();
    while seen.len() < 3 {
        match next(&mut inbound).await {
            Some(Down::Preempt(p)) if p.lease.as_ref() == Some(&lease) => seen.push("preempt"),
            Some(Down::Stop(s)) if s.lease.as_ref() == Some(&lease) => seen.push("stop"),
            Some(Down::Assignment(a)) if a.job_id == chat.id => seen.push("chat"),
            _ => {}
        }
    }
    assert_eq!(seen, ["preempt", "stop", "chat"]);
    let after = c
        .get(pb::GetJobRequest {
            id: batch.id.clone(),
        })
        .await
        .expect("get")
        .into_inner();
    assert_eq!(after.state(), pb::JobState::Pending, "{after:?}");
    assert_eq!((after.requeues, after.preemptions), (1, 0), "{after:?}");
    assert!(after.checkpoint.is_none(), "it never saved one");
}
