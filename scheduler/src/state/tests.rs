//! Scenario tests of the state machine: each feeds log entries to `apply`
//! and checks what changed and what was refused.

use super::*;

fn entry(kind: pb::command::Kind, at_ms: i64) -> pb::LogEntry {
    pb::LogEntry {
        version: LOG_ENTRY_VERSION,
        at_ms,
        command: Some(pb::Command { kind: Some(kind) }),
    }
}

fn spec(tp: u32) -> pb::JobSpec {
    crate::spec::with_defaults(pb::JobSpec {
        prompt: "a lighthouse at dusk".into(),
        frames: 9,
        width: 64,
        height: 64,
        steps: 4,
        guidance: 4.0,
        tp,
        ..Default::default()
    })
}

fn submit(id: &str, tp: u32) -> pb::command::Kind {
    pb::command::Kind::SubmitJob(pb::SubmitJob {
        job_id: id.into(),
        spec: Some(spec(tp)),
        request_id: String::new(),
        tenant: String::new(),
        unknown_words: Vec::new(),
    })
}

fn register(node: &str, instance: &str, devices: u32) -> pb::command::Kind {
    pb::command::Kind::RegisterNode(pb::RegisterNode {
        node: node.into(),
        instance: instance.into(),
        devices: vec![pb::DeviceGroup {
            flavor: "cpu".into(),
            count: devices,
            memory_bytes: 24 << 30,
            free_memory_bytes: Some(20 << 30),
            simulated: false,
        }],
        models: vec![crate::spec::DEFAULT_MODEL.into()],
    })
}

fn assign(job: &str, node: &str, devices: &[u32]) -> pb::command::Kind {
    pb::command::Kind::Assign(pb::Assign {
        placements: vec![pb::Placement {
            job_id: job.into(),
            node: node.into(),
            device_ids: devices.to_vec(),
        }],
    })
}

fn lease(job: &str, epoch: u64) -> Option<pb::JobLease> {
    Some(pb::JobLease {
        job_id: job.into(),
        lease_epoch: epoch,
    })
}

fn finished(job: &str, epoch: u64) -> pb::command::Kind {
    pb::command::Kind::JobFinished(pb::JobFinished {
        lease: lease(job, epoch),
        artifacts: vec![pb::Artifact {
            kind: "video".into(),
            uri: format!("file:///tmp/{job}/video.mp4"),
            size_bytes: 10,
            content_type: "video/mp4".into(),
        }],
    })
}

/// Applies kinds in order at increasing indices; returns each result.
fn run(state: &mut State, kinds: Vec<pb::command::Kind>) -> Vec<Result<Outcome, Rejection>> {
    kinds
        .into_iter()
        .map(|kind| {
            let index = state.applied_index() + 1;
            state.apply(index, &entry(kind, 1_000 * index as i64))
        })
        .collect()
}

fn assigned_epoch(result: &Result<Outcome, Rejection>) -> u64 {
    match result {
        Ok(Outcome::Assigned(r)) => r[0].clone().expect("placement accepted"),
        other => panic!("expected an accepted placement, got {other:?}"),
    }
}

#[test]
fn a_job_runs_from_submit_to_completed() {
    let mut s = State::default();
    let r = run(
        &mut s,
        vec![
            register("n1", "i1", 1),
            submit("j1", 1),
            assign("j1", "n1", &[0]),
        ],
    );
    let epoch = assigned_epoch(&r[2]);
    assert_eq!(s.job("j1").map(|j| j.state), Some(JobState::Running));
    assert_eq!(s.node("n1").map(|n| n.busy.len()), Some(1));
    run(&mut s, vec![finished("j1", epoch)])
        .remove(0)
        .expect("finish accepted");
    let job = s.job("j1").expect("job kept");
    assert_eq!(job.state, JobState::Completed);
    assert_eq!(job.step, 4);
    assert_eq!(job.artifacts.len(), 1);
    assert_eq!(job.created_at_ms, 2_000, "time comes from the entry");
    assert_eq!(job.finished_at_ms, 4_000);
    assert!(
        s.node("n1").expect("node").busy.is_empty(),
        "devices released"
    );
}

#[test]
fn refusals_name_what_was_wrong_and_change_nothing() {
    type Case = (&'static str, Vec<pb::command::Kind>, &'static str);
    let cases: Vec<Case> = vec![
        (
            "duplicate id",
            vec![submit("j1", 1), submit("j1", 1)],
            "already exists",
        ),
        (
            "cancel unknown",
            vec![pb::command::Kind::CancelJob(pb::CancelJob {
                job_id: "nope".into(),
            })],
            "no job with id \"nope\"",
        ),
        (
            "assign to unknown node",
            vec![submit("j1", 1), assign("j1", "ghost", &[0])],
            "no node named",
        ),
        (
            "assign a missing device",
            vec![
                register("n1", "i1", 1),
                submit("j1", 1),
                assign("j1", "n1", &[3]),
            ],
            "has no device 3",
        ),
        (
            "gang of wrong size",
            vec![
                register("n1", "i1", 2),
                submit("j1", 2),
                assign("j1", "n1", &[0]),
            ],
            "needs 2 devices",
        ),
        (
            "finish under a stale lease",
            vec![
                register("n1", "i1", 1),
                submit("j1", 1),
                assign("j1", "n1", &[0]),
                finished("j1", 99),
            ],
            "stale lease",
        ),
        (
            "register with no devices",
            vec![register("n1", "i1", 0)],
            "0 devices",
        ),
        (
            "register a bad name",
            vec![register("N 1", "i1", 1)],
            "not a valid name",
        ),
    ];
    for (name, mut kinds, expected) in cases {
        let mut s = State::default();
        let last = kinds.pop().expect("case has commands");
        run(&mut s, kinds);
        let before = format!("{:?} {:?}", s.jobs, s.nodes);
        let err = match run(&mut s, vec![last]).remove(0) {
            Err(e) => e.to_string(),
            // An Assign batch refuses placement by placement.
            Ok(Outcome::Assigned(mut r)) if r.len() == 1 && r[0].is_err() => {
                r.remove(0).expect_err("checked").to_string()
            }
            Ok(o) => panic!("{name}: expected a refusal, got {o:?}"),
        };
        assert!(err.contains(expected), "{name}: {err:?} lacks {expected:?}");
        assert_eq!(
            before,
            format!("{:?} {:?}", s.jobs, s.nodes),
            "{name}: state unchanged"
        );
    }
}

#[test]
fn assign_batch_rejects_only_the_placements_that_no_longer_fit() {
    let mut s = State::default();
    run(
        &mut s,
        vec![register("n1", "i1", 1), submit("j1", 1), submit("j2", 1)],
    );
    let both = pb::command::Kind::Assign(pb::Assign {
        placements: vec![
            pb::Placement {
                job_id: "j1".into(),
                node: "n1".into(),
                device_ids: vec![0],
            },
            pb::Placement {
                job_id: "j2".into(),
                node: "n1".into(),
                device_ids: vec![0],
            },
        ],
    });
    let r = run(&mut s, vec![both]).remove(0);
    let Ok(Outcome::Assigned(results)) = r else {
        panic!("assign applied: {r:?}")
    };
    assert!(results[0].is_ok());
    let err = results[1].clone().expect_err("device 0 already taken");
    assert!(err.to_string().contains("held by job j1"), "{err}");
    assert_eq!(s.job("j2").map(|j| j.state), Some(JobState::Pending));
}

#[test]
fn a_node_going_down_requeues_its_jobs_and_stales_their_leases() {
    let mut s = State::default();
    let r = run(
        &mut s,
        vec![
            register("n1", "i1", 1),
            submit("j1", 1),
            assign("j1", "n1", &[0]),
        ],
    );
    let epoch = assigned_epoch(&r[2]);
    let down = pb::command::Kind::NodeDown(pb::NodeDown {
        node: "n1".into(),
        reason: "test".into(),
    });
    let r = run(&mut s, vec![down]).remove(0);
    assert_eq!(
        r,
        Ok(Outcome::Node {
            requeued: vec!["j1".into()]
        })
    );
    let job = s.job("j1").expect("job");
    assert_eq!((job.state, job.requeues), (JobState::Pending, 1));
    assert_eq!(s.pending_jobs().count(), 1);
    // The old worker's late report is refused.
    let late = run(&mut s, vec![finished("j1", epoch)]).remove(0);
    assert!(
        matches!(late, Err(Rejection::StaleLease { .. })),
        "{late:?}"
    );
    // Placed again, the job gets a newer epoch.
    let r = run(
        &mut s,
        vec![register("n1", "i2", 1), assign("j1", "n1", &[0])],
    );
    assert!(assigned_epoch(&r[1]) > epoch);
}

#[test]
fn a_worker_reconnecting_with_the_same_instance_keeps_its_jobs() {
    let mut s = State::default();
    let r = run(
        &mut s,
        vec![
            register("n1", "i1", 1),
            submit("j1", 1),
            assign("j1", "n1", &[0]),
        ],
    );
    let epoch = assigned_epoch(&r[2]);
    let again = run(&mut s, vec![register("n1", "i1", 1)]).remove(0);
    assert_eq!(again, Ok(Outcome::Node { requeued: vec![] }));
    assert_eq!(s.job("j1").map(|j| j.lease_epoch), Some(epoch));
    assert_eq!(
        s.node("n1").map(|n| n.busy.len()),
        Some(1),
        "device still held"
    );
    let restarted = run(&mut s, vec![register("n1", "i2", 1)]).remove(0);
    assert_eq!(
        restarted,
        Ok(Outcome::Node {
            requeued: vec!["j1".into()]
        })
    );
}

#[test]
fn cancelling_a_running_job_frees_its_devices() {
    let mut s = State::default();
    run(
        &mut s,
        vec![
            register("n1", "i1", 1),
            submit("j1", 1),
            assign("j1", "n1", &[0]),
        ],
    );
    let cancel = pb::command::Kind::CancelJob(pb::CancelJob {
        job_id: "j1".into(),
    });
    run(&mut s, vec![cancel.clone()])
        .remove(0)
        .expect("cancel accepted");
    assert_eq!(s.job("j1").map(|j| j.state), Some(JobState::Cancelled));
    assert!(s.node("n1").expect("node").busy.is_empty());
    let again = run(&mut s, vec![cancel]).remove(0);
    assert!(
        matches!(again, Err(Rejection::AlreadyEnded { .. })),
        "{again:?}"
    );
}

#[test]
fn apply_is_deterministic() {
    let script = || {
        vec![
            register("n1", "i1", 2),
            submit("a", 1),
            submit("b", 2),
            submit("c", 1),
            assign("a", "n1", &[1]),
            assign("b", "n1", &[0, 1]),
            assign("c", "n1", &[0]),
            finished("a", 1),
        ]
    };
    let (mut s1, mut s2) = (State::default(), State::default());
    let r1 = run(&mut s1, script());
    let r2 = run(&mut s2, script());
    assert_eq!(r1, r2);
    assert_eq!(format!("{:?}", s1.jobs), format!("{:?}", s2.jobs));
    assert_eq!(format!("{:?}", s1.nodes), format!("{:?}", s2.nodes));
}

#[test]
fn unknown_entry_versions_are_refused() {
    let mut s = State::default();
    let mut e = entry(submit("j1", 1), 1);
    e.version = 7;
    assert_eq!(s.apply(1, &e), Err(Rejection::UnsupportedVersion(7)));
    assert!(s.job("j1").is_none());
}

#[test]
fn a_retried_submit_with_the_same_request_id_returns_the_first_job() {
    let mut s = State::default();
    let with_key = |job_id: &str| {
        pb::command::Kind::SubmitJob(pb::SubmitJob {
            job_id: job_id.into(),
            spec: Some(spec(1)),
            request_id: "req-1".into(),
            tenant: String::new(),
            unknown_words: Vec::new(),
        })
    };
    let r = run(&mut s, vec![with_key("j1"), with_key("j2")]);
    let ids: Vec<String> = r
        .iter()
        .map(|o| match o {
            Ok(Outcome::Job(j)) => j.id.clone(),
            other => panic!("expected a job, got {other:?}"),
        })
        .collect();
    assert_eq!(ids, vec!["j1", "j1"]);
    assert_eq!(s.jobs().count(), 1);
}

#[test]
fn a_snapshot_restores_an_equal_state() {
    let mut s = State::default();
    let r = run(
        &mut s,
        vec![
            register("n1", "i1", 2),
            submit("a", 1),
            submit("b", 1),
            submit("c", 2),
            assign("a", "n1", &[1]),
            pb::command::Kind::CancelJob(pb::CancelJob { job_id: "b".into() }),
        ],
    );
    assert!(r.iter().all(|r| r.is_ok()));
    s.apply_membership(7, 2, Some("http://10.0.0.2:7070"));
    let restored = State::from_snapshot_bytes(&s.encode_snapshot()).expect("decodes");
    assert_eq!(restored.hash(), s.hash());
    assert_eq!(restored.applied_index(), s.applied_index());
    assert_eq!(format!("{:?}", restored.jobs), format!("{:?}", s.jobs));
    assert_eq!(format!("{:?}", restored.nodes), format!("{:?}", s.nodes));
    let group = &restored.nodes["n1"].devices[0];
    assert_eq!(
        (group.memory_bytes, group.free_memory_bytes),
        (24 << 30, Some(20 << 30)),
        "device memory survives for placement"
    );
    assert_eq!(restored.pending, s.pending, "pending order rebuilt");
    assert_eq!(restored.members, s.members);
    // The restored state goes on exactly like the original.
    let (mut a, mut b) = (s, restored);
    let more = || {
        vec![
            assign("c", "n1", &[0, 1]),
            finished("a", 1),
            assign("c", "n1", &[0, 1]),
        ]
    };
    assert_eq!(run(&mut a, more()), run(&mut b, more()));
    assert_eq!(a.hash(), b.hash());
}

#[test]
fn garbage_is_not_a_snapshot() {
    assert!(State::from_snapshot_bytes(b"\xff\xff\xff").is_err());
    let mut other = State::default().to_snapshot();
    other.version = 9;
    let bytes = prost::Message::encode_to_vec(&other);
    let err = State::from_snapshot_bytes(&bytes).expect_err("unknown version");
    assert!(err.to_string().contains("version 9"), "{err}");
}

fn apply_queue(name: &str, nominal: u32) -> pb::command::Kind {
    pb::command::Kind::UpsertQueue(pb::UpsertQueue {
        queue: Some(pb::Queue {
            name: name.into(),
            cohort: "lab".into(),
            weight: 0,
            quotas: vec![pb::FlavorQuota {
                flavor: "cpu".into(),
                nominal,
                borrowing_limit: None,
                lending_limit: None,
            }],
            budget: None,
        }),
    })
}

fn submit_to(id: &str, queue: &str) -> pb::command::Kind {
    let mut spec = spec(1);
    spec.queue = queue.into();
    pb::command::Kind::SubmitJob(pb::SubmitJob {
        job_id: id.into(),
        spec: Some(spec),
        request_id: String::new(),
        tenant: String::new(),
        unknown_words: Vec::new(),
    })
}

#[test]
fn queues_are_applied_replaced_and_deleted_only_when_idle() {
    let mut s = State::default();
    let r = run(
        &mut s,
        vec![
            submit_to("lost", "research"),
            apply_queue("research", 2),
            apply_queue("research", 4),
            submit_to("j", "research"),
            submit_to("d", "default"),
            pb::command::Kind::DeleteQueue(pb::DeleteQueue {
                name: "research".into(),
            }),
        ],
    );
    assert!(matches!(&r[0], Err(Rejection::UnknownQueue(q)) if q == "research"));
    let Ok(Outcome::Queue(q)) = &r[2] else {
        panic!("apply: {:?}", r[2])
    };
    assert_eq!(
        (q.weight, q.quotas[0].nominal),
        (1, 4),
        "replaced, weight defaulted"
    );
    assert!(
        r[3].is_ok() && r[4].is_ok(),
        "the default queue always exists"
    );
    assert!(matches!(&r[5], Err(Rejection::QueueInUse { jobs: 1, .. })));
    assert_eq!(s.queues().count(), 1);

    let r = run(
        &mut s,
        vec![
            pb::command::Kind::CancelJob(pb::CancelJob { job_id: "j".into() }),
            pb::command::Kind::DeleteQueue(pb::DeleteQueue {
                name: "research".into(),
            }),
            pb::command::Kind::DeleteQueue(pb::DeleteQueue {
                name: "research".into(),
            }),
        ],
    );
    assert!(r[0].is_ok() && r[1].is_ok(), "{r:?}");
    assert!(matches!(&r[2], Err(Rejection::UnknownQueue(_))));
    assert_eq!(s.queues().count(), 0);
}

#[test]
fn an_invalid_queue_is_refused_at_apply_too() {
    let mut s = State::default();
    let mut bad = apply_queue("research", 2);
    if let pb::command::Kind::UpsertQueue(u) = &mut bad {
        if let Some(q) = &mut u.queue {
            q.cohort = String::new();
            q.quotas[0].borrowing_limit = Some(1);
        }
    }
    let r = run(&mut s, vec![bad]);
    assert!(matches!(
        &r[0],
        Err(Rejection::InvalidQueue(
            QueueError::BorrowingWithoutCohort { .. }
        ))
    ));
    assert_eq!(s.queues().count(), 0);
}

#[test]
fn queues_survive_a_snapshot() {
    let mut s = State::default();
    let r = run(&mut s, vec![apply_queue("a", 2), apply_queue("b", 3)]);
    assert!(r.iter().all(|r| r.is_ok()));
    let restored = State::from_snapshot_bytes(&s.encode_snapshot()).expect("decodes");
    assert_eq!(restored.hash(), s.hash());
    assert_eq!(restored.queues, s.queues);
}

#[test]
fn a_gang_no_node_can_hold_is_named_impossible() {
    let mut s = State::default();
    assert_eq!(
        s.impossible_gang("default", 64),
        None,
        "no nodes yet: no verdict"
    );
    let r = run(
        &mut s,
        vec![register("n1", "i1", 4), apply_queue("research", 2)],
    );
    assert!(r.iter().all(|r| r.is_ok()), "{r:?}");
    assert_eq!(s.impossible_gang("default", 4), None);
    let why = s.impossible_gang("default", 5).expect("impossible");
    assert!(why.contains("5 devices") && why.contains("has 4"), "{why}");
    assert_eq!(
        s.impossible_gang("research", 2),
        None,
        "research may use cpu"
    );
    // A queue with quota only for GPUs cannot use the CPU node at all, but
    // its GPU nodes may not have registered yet: no verdict until they do.
    let mut gpu_only = apply_queue("vision", 8);
    if let pb::command::Kind::UpsertQueue(u) = &mut gpu_only {
        if let Some(q) = &mut u.queue {
            q.quotas[0].flavor = "nvidia-h100-80gb".into();
        }
    }
    let mut gpu_node = register("g1", "i1", 2);
    if let pb::command::Kind::RegisterNode(r) = &mut gpu_node {
        r.devices[0].flavor = "nvidia-h100-80gb".into();
    }
    assert!(run(&mut s, vec![gpu_only])[0].is_ok());
    assert_eq!(s.impossible_gang("vision", 4), None);
    assert!(run(&mut s, vec![gpu_node])[0].is_ok());
    assert_eq!(s.impossible_gang("vision", 2), None);
    let why = s.impossible_gang("vision", 4).expect("impossible");
    assert!(why.contains("has 2") && why.contains("vision"), "{why}");
}

fn preempt(job: &str, epoch: u64, for_job: &str) -> pb::command::Kind {
    pb::command::Kind::PreemptJobs(pb::PreemptJobs {
        preemptions: vec![pb::Preemption {
            lease: lease(job, epoch),
            reason: "interactive_over_batch".into(),
            for_job: for_job.into(),
        }],
    })
}

fn checkpointed(job: &str, epoch: u64, step: u32, uri: &str) -> pb::command::Kind {
    pb::command::Kind::JobCheckpointed(pb::JobCheckpointed {
        lease: lease(job, epoch),
        checkpoint: Some(pb::JobCheckpoint {
            uri: uri.into(),
            step,
        }),
    })
}

#[test]
fn a_preempted_job_returns_to_the_queue_with_its_checkpoint_and_resumes_from_it() {
    let mut s = State::default();
    let r = run(
        &mut s,
        vec![
            register("n1", "i1", 1),
            submit("victim", 1),
            assign("victim", "n1", &[0]),
            submit("urgent", 1),
        ],
    );
    let epoch = assigned_epoch(&r[2]);
    // A worker may not checkpoint a job nobody asked it to stop.
    let unasked = run(&mut s, vec![checkpointed("victim", epoch, 2, "file:///c")]).remove(0);
    assert_eq!(unasked, Err(Rejection::NotPreempting("victim".into())));

    let r = run(&mut s, vec![preempt("victim", epoch, "urgent")]).remove(0);
    assert_eq!(r, Ok(Outcome::Preempted(vec![Ok(())])));
    let victim = s.job("victim").expect("victim");
    assert_eq!(
        victim.state,
        JobState::Running,
        "it runs until it checkpoints"
    );
    assert_eq!(victim.preempting, "interactive_over_batch");
    assert!(s.job("urgent").is_some_and(|j| j.nominated));

    // Step 4 of 4 is not a checkpoint: the job would be done.
    let bad = run(&mut s, vec![checkpointed("victim", epoch, 4, "file:///c")]).remove(0);
    assert!(
        matches!(bad, Err(Rejection::BadCheckpoint { .. })),
        "{bad:?}"
    );
    run(
        &mut s,
        vec![checkpointed("victim", epoch, 2, "file:///c-2")],
    )
    .remove(0)
    .expect("checkpoint accepted");
    let victim = s.job("victim").expect("victim").clone();
    assert_eq!(victim.state, JobState::Pending);
    assert_eq!(
        (victim.step, victim.requeues, victim.preemptions),
        (2, 1, 1)
    );
    assert!(victim.preempting.is_empty());
    assert_eq!(
        victim.queued_at_ms, 8_000,
        "waits from its return (entry 8)"
    );
    assert!(s.node("n1").expect("node").busy.is_empty(), "devices freed");
    // The old lease is dead: a late result is refused.
    let late = run(&mut s, vec![finished("victim", epoch)]).remove(0);
    assert!(
        matches!(late, Err(Rejection::StaleLease { .. })),
        "{late:?}"
    );

    // The nominated job takes the device; the victim resumes later at step 2.
    let r = run(&mut s, vec![assign("urgent", "n1", &[0])]);
    let urgent_epoch = assigned_epoch(&r[0]);
    assert!(!s.job("urgent").expect("urgent").nominated);
    run(&mut s, vec![finished("urgent", urgent_epoch)])
        .remove(0)
        .expect("urgent finished");
    let r = run(&mut s, vec![assign("victim", "n1", &[0])]);
    assigned_epoch(&r[0]);
    let victim = s.job("victim").expect("victim");
    assert_eq!(victim.step, 2, "a new lease starts from the checkpoint");
    assert_eq!(
        victim.to_proto().checkpoint.map(|c| c.uri),
        Some("file:///c-2".to_string())
    );
}

#[test]
fn a_preemption_of_a_stale_lease_is_refused_and_a_node_loss_keeps_the_checkpoint() {
    let mut s = State::default();
    let r = run(
        &mut s,
        vec![
            register("n1", "i1", 1),
            submit("j1", 1),
            assign("j1", "n1", &[0]),
        ],
    );
    let epoch = assigned_epoch(&r[2]);
    let stale = run(&mut s, vec![preempt("j1", epoch + 1, "")]).remove(0);
    assert!(
        matches!(&stale, Ok(Outcome::Preempted(r)) if matches!(r[0], Err(Rejection::StaleLease { .. }))),
        "{stale:?}"
    );
    run(
        &mut s,
        vec![
            preempt("j1", epoch, ""),
            checkpointed("j1", epoch, 3, "file:///c-3"),
            register("n1", "i1", 1),
            assign("j1", "n1", &[0]),
        ],
    );
    let down = pb::command::Kind::NodeDown(pb::NodeDown {
        node: "n1".into(),
        reason: "test".into(),
    });
    run(&mut s, vec![down]);
    let job = s.job("j1").expect("job");
    assert_eq!(
        (job.state, job.step),
        (JobState::Pending, 3),
        "the checkpoint outlives the node"
    );
    // A snapshot carries all of it.
    let restored = State::from_snapshot_bytes(&s.encode_snapshot()).expect("restores");
    assert_eq!(restored.job("j1"), s.job("j1"));
}

#[test]
fn a_cordoned_node_refuses_placements_and_stays_cordoned_across_registrations() {
    let mut s = State::default();
    let cordon = |cordoned| {
        pb::command::Kind::CordonNode(pb::CordonNode {
            node: "n1".into(),
            cordoned,
            source: String::new(),
        })
    };
    let r = run(
        &mut s,
        vec![register("n1", "i1", 1), submit("j1", 1), cordon(true)],
    );
    assert!(r.iter().all(|r| r.is_ok()), "{r:?}");
    let refused = run(&mut s, vec![assign("j1", "n1", &[0])]).remove(0);
    assert!(
        matches!(&refused, Ok(Outcome::Assigned(r)) if matches!(&r[0], Err(Rejection::Placement { why: PlacementError::Cordoned, .. }))),
        "{refused:?}"
    );
    // A worker restart does not undo an operator's cordon; a snapshot keeps it.
    run(&mut s, vec![register("n1", "i2", 1)]);
    let restored = State::from_snapshot_bytes(&s.encode_snapshot()).expect("restores");
    assert!(restored.node("n1").is_some_and(|n| n.cordoned));
    let ghost = pb::command::Kind::CordonNode(pb::CordonNode {
        node: "ghost".into(),
        cordoned: true,
        source: String::new(),
    });
    assert_eq!(
        run(&mut s, vec![ghost]).remove(0),
        Err(Rejection::UnknownNode("ghost".into()))
    );
    let r = run(&mut s, vec![cordon(false), assign("j1", "n1", &[0])]);
    assigned_epoch(&r[1]);
}

#[test]
fn kubernetes_lifts_only_the_cordons_it_set() {
    let cordon = |cordoned, source: &str| {
        pb::command::Kind::CordonNode(pb::CordonNode {
            node: "n1".into(),
            cordoned,
            source: source.into(),
        })
    };
    let cordoned = |s: &State| s.node("n1").map(|n| (n.cordoned, n.cordon_source.clone()));
    let k8s = crate::state::CORDONED_BY_KUBERNETES;

    // Kubernetes cordons and uncordons its own.
    let mut s = State::default();
    run(&mut s, vec![register("n1", "i1", 1), cordon(true, k8s)]);
    assert_eq!(cordoned(&s), Some((true, k8s.to_string())));
    let restored = State::from_snapshot_bytes(&s.encode_snapshot()).expect("restores");
    assert_eq!(
        cordoned(&restored),
        Some((true, k8s.to_string())),
        "a snapshot keeps the source"
    );
    run(&mut s, vec![cordon(false, k8s)]);
    assert_eq!(cordoned(&s), Some((false, String::new())));

    // An operator's cordon is neither taken over nor lifted by Kubernetes.
    run(
        &mut s,
        vec![cordon(true, ""), cordon(true, k8s), cordon(false, k8s)],
    );
    assert_eq!(cordoned(&s), Some((true, String::new())));
    // An operator's cordon of a Kubernetes-cordoned node becomes the operator's.
    let mut s = State::default();
    run(
        &mut s,
        vec![register("n1", "i1", 1), cordon(true, k8s), cordon(true, "")],
    );
    assert_eq!(cordoned(&s), Some((true, String::new())));
}

/// Applies `kind` as the next entry, stamped `at_ms`.
fn apply_at(state: &mut State, kind: pb::command::Kind, at_ms: i64) -> Result<Outcome, Rejection> {
    let index = state.applied_index() + 1;
    state.apply(index, &entry(kind, at_ms))
}

#[test]
fn leases_are_charged_to_their_queues_budget_period_by_period() {
    let mut s = State::default();
    let mut budgeted = apply_queue("q", 4);
    if let pb::command::Kind::UpsertQueue(u) = &mut budgeted {
        if let Some(q) = &mut u.queue {
            q.budget = Some(pb::Budget {
                device_hours: 1.0,
                period_seconds: 60,
            });
        }
    }
    let mut j2 = submit_to("j2", "q");
    if let pb::command::Kind::SubmitJob(c) = &mut j2 {
        if let Some(spec) = &mut c.spec {
            spec.tp = 2;
        }
    }
    let steps = [
        (register("n1", "i1", 2), 1_000),
        (budgeted, 1_000),
        (j2, 1_000),
        (assign("j2", "n1", &[0, 1]), 10_000),
    ];
    for (kind, at_ms) in steps {
        apply_at(&mut s, kind, at_ms).expect("accepted");
    }
    // Running: 2 devices x 5 s so far, nothing charged yet.
    assert_eq!(s.budget_used_s(15_000).get("q").copied(), Some(10.0));
    assert_eq!(s.budget_charged_ms("q", 0), 0);
    let epoch = s.job("j2").expect("j2").lease_epoch;
    apply_at(&mut s, finished("j2", epoch), 20_000).expect("finished");
    assert_eq!(s.budget_charged_ms("q", 0), 20_000, "2 devices x 10 s");
    let restored = State::from_snapshot_bytes(&s.encode_snapshot()).expect("restores");
    assert_eq!(restored.budget_charged_ms("q", 0), 20_000);

    // A lease across the period boundary (60 s) is charged in the new
    // period only for what ran in it; the old period's use is dropped.
    apply_at(&mut s, submit_to("j3", "q"), 50_000).expect("submitted");
    apply_at(&mut s, assign("j3", "n1", &[0]), 50_000).expect("assigned");
    assert_eq!(s.budget_used_s(65_000).get("q").copied(), Some(5.0));
    let epoch = s.job("j3").expect("j3").lease_epoch;
    apply_at(&mut s, finished("j3", epoch), 70_000).expect("finished");
    assert_eq!(s.budget_charged_ms("q", 1), 10_000);
    assert_eq!(s.budget_charged_ms("q", 0), 0, "period 0 is over");
    // Queues without a budget are not tracked.
    assert_eq!(s.budget_used_s(70_000).get("default"), None);
}

fn apply_tenant(
    name: &str,
    queues: &[&str],
    max_qos: &str,
    max_unfinished: u32,
) -> pb::command::Kind {
    pb::command::Kind::UpsertTenant(pb::UpsertTenant {
        tenant: Some(pb::Tenant {
            name: name.into(),
            queues: queues.iter().map(|q| q.to_string()).collect(),
            max_qos: max_qos.into(),
            max_unfinished_jobs: max_unfinished,
            ..Default::default()
        }),
    })
}

fn tenant_submit(
    id: &str,
    tenant: &str,
    queue: &str,
    qos: &str,
    request: &str,
) -> pb::command::Kind {
    pb::command::Kind::SubmitJob(pb::SubmitJob {
        job_id: id.into(),
        spec: Some(pb::JobSpec {
            queue: queue.into(),
            qos: qos.into(),
            ..spec(1)
        }),
        request_id: request.into(),
        tenant: tenant.into(),
        unknown_words: Vec::new(),
    })
}

fn create_key(id: &str, role: pb::Role, tenant: &str) -> pb::command::Kind {
    pb::command::Kind::CreateKey(pb::CreateKey {
        key: Some(pb::ApiKey {
            id: id.into(),
            role: role as i32,
            tenant: tenant.into(),
            secret_sha256: vec![7; 32],
            ..Default::default()
        }),
    })
}

#[test]
fn a_tenant_submits_only_where_and_as_much_as_it_may() {
    let mut state = State::default();
    let results = run(
        &mut state,
        vec![
            apply_queue("red", 1),
            apply_tenant("alpha", &["red"], "standard", 2),
            tenant_submit("j-1", "alpha", "red", "standard", ""),
            tenant_submit("j-2", "alpha", "default", "standard", ""),
            tenant_submit("j-3", "alpha", "red", "interactive", ""),
            tenant_submit("j-4", "alpha", "red", "batch", ""),
            tenant_submit("j-5", "alpha", "red", "batch", ""),
            tenant_submit("j-6", "nobody", "red", "batch", ""),
        ],
    );
    assert!(results[2].is_ok(), "{:?}", results[2]);
    assert!(
        matches!(&results[3], Err(Rejection::TenantLimit { why, .. }) if why.contains("queue default")),
        "{:?}",
        results[3]
    );
    assert!(
        matches!(&results[4], Err(Rejection::TenantLimit { why, .. }) if why.contains("above its highest")),
        "{:?}",
        results[4]
    );
    assert!(results[5].is_ok(), "{:?}", results[5]);
    assert_eq!(
        results[6],
        Err(Rejection::TenantBusy {
            tenant: "alpha".into(),
            jobs: 2
        })
    );
    assert_eq!(results[7], Err(Rejection::UnknownTenant("nobody".into())));
    assert_eq!(state.job("j-1").map(|j| j.tenant.as_str()), Some("alpha"));
    // A cancelled job makes room.
    let results = run(
        &mut state,
        vec![
            pb::command::Kind::CancelJob(pb::CancelJob {
                job_id: "j-1".into(),
            }),
            tenant_submit("j-7", "alpha", "red", "batch", ""),
        ],
    );
    assert!(results.iter().all(Result::is_ok), "{results:?}");
}

#[test]
fn request_ids_are_each_tenants_own() {
    let mut state = State::default();
    let results = run(
        &mut state,
        vec![
            apply_queue("red", 1),
            apply_tenant("alpha", &["red"], "", 0),
            apply_tenant("beta", &["red"], "", 0),
            tenant_submit("j-a", "alpha", "red", "standard", "same-id"),
            tenant_submit("j-b", "beta", "red", "standard", "same-id"),
            tenant_submit("j-a2", "alpha", "red", "standard", "same-id"),
        ],
    );
    let id = |r: &Result<Outcome, Rejection>| match r {
        Ok(Outcome::Job(job)) => job.id.clone(),
        other => panic!("{other:?}"),
    };
    assert_eq!(id(&results[3]), "j-a");
    assert_eq!(id(&results[4]), "j-b", "beta's request id is not alpha's");
    assert_eq!(id(&results[5]), "j-a", "alpha's retry: its first job");
    let restored = State::from_snapshot_bytes(&state.encode_snapshot()).expect("snapshot");
    let mut restored = restored;
    let again = run(
        &mut restored,
        vec![tenant_submit("j-b2", "beta", "red", "standard", "same-id")],
    );
    assert_eq!(id(&again[0]), "j-b", "the scoping survives a snapshot");
}

#[test]
fn keys_are_created_revoked_and_kept_in_snapshots() {
    let mut state = State::default();
    let results = run(
        &mut state,
        vec![
            apply_queue("red", 1),
            apply_tenant("alpha", &["red"], "", 0),
            create_key("k1", pb::Role::Tenant, "alpha"),
            create_key("k2", pb::Role::Admin, ""),
            create_key("k3", pb::Role::Tenant, "nobody"),
            create_key("k4", pb::Role::Admin, "alpha"),
            create_key("k5", pb::Role::Unspecified, ""),
            create_key("k1", pb::Role::Tenant, "alpha"),
            apply_tenant("beta", &["blue"], "", 0),
            apply_tenant("gamma", &["red"], "galactic", 0),
        ],
    );
    assert!(results[2].is_ok() && results[3].is_ok(), "{results:?}");
    assert_eq!(results[4], Err(Rejection::UnknownTenant("nobody".into())));
    for refused in &results[5..8] {
        assert!(
            matches!(refused, Err(Rejection::InvalidKey(_))),
            "{refused:?}"
        );
    }
    assert_eq!(results[8], Err(Rejection::UnknownQueue("blue".into())));
    assert!(matches!(
        &results[9],
        Err(Rejection::InvalidTenant(TenantError::Class { .. }))
    ));

    let restored = State::from_snapshot_bytes(&state.encode_snapshot()).expect("snapshot");
    assert_eq!(restored.hash(), state.hash());
    assert!(restored.key("k1").is_some() && restored.tenant("alpha").is_some());

    let results = run(
        &mut state,
        vec![
            pb::command::Kind::DeleteTenant(pb::DeleteTenant {
                name: "alpha".into(),
            }),
            pb::command::Kind::RevokeKey(pb::RevokeKey { id: "k1".into() }),
            pb::command::Kind::RevokeKey(pb::RevokeKey { id: "k1".into() }),
            pb::command::Kind::DeleteTenant(pb::DeleteTenant {
                name: "alpha".into(),
            }),
        ],
    );
    assert!(matches!(
        results[0],
        Err(Rejection::TenantInUse { keys: 1, .. })
    ));
    assert!(results[1].is_ok());
    assert_eq!(results[2], Err(Rejection::UnknownKey("k1".into())));
    assert!(results[3].is_ok() && state.tenant("alpha").is_none());
    assert!(state.key("k1").is_none() && state.key("k2").is_some());
}

fn preview(job: &str, epoch: u64, version: u32) -> pb::command::Kind {
    let artifact = |kind: &str, name: &str| pb::Artifact {
        kind: kind.into(),
        uri: format!("file:///tmp/{job}/{name}-{version}"),
        size_bytes: 5,
        content_type: "video/mp4".into(),
    };
    pb::command::Kind::JobPreview(pb::JobPreview {
        lease: lease(job, epoch),
        artifacts: vec![
            artifact("preview", "preview.mp4"),
            artifact("preview_thumbnail", "preview.png"),
        ],
    })
}

#[test]
fn a_preview_is_kept_while_running_replaced_by_a_newer_one_and_kept_at_the_end() {
    let mut s = State::default();
    let r = run(
        &mut s,
        vec![
            register("n1", "i1", 1),
            submit("j1", 1),
            assign("j1", "n1", &[0]),
        ],
    );
    let epoch = assigned_epoch(&r[2]);
    let results = run(
        &mut s,
        vec![
            preview("j1", epoch, 1),
            preview("j1", epoch, 2),
            preview("j1", epoch + 1, 3),
        ],
    );
    assert!(results[0].is_ok() && results[1].is_ok(), "{results:?}");
    assert!(
        matches!(results[2], Err(Rejection::StaleLease { .. })),
        "another lease's preview: {:?}",
        results[2]
    );
    let uris = |s: &State| -> Vec<String> {
        s.job("j1")
            .expect("job")
            .artifacts
            .iter()
            .map(|a| a.uri.clone())
            .collect()
    };
    assert_eq!(
        uris(&s),
        [
            "file:///tmp/j1/preview.mp4-2",
            "file:///tmp/j1/preview.png-2"
        ],
        "the newer preview replaces the older"
    );
    // Only preview kinds are a preview.
    let mut bad = preview("j1", epoch, 4);
    if let pb::command::Kind::JobPreview(p) = &mut bad {
        p.artifacts[0].kind = "video".into();
    }
    assert!(matches!(
        run(&mut s, vec![bad]).remove(0),
        Err(Rejection::Malformed(_))
    ));

    // It survives a snapshot, and the job's end keeps it beside the video.
    let mut s = State::from_snapshot_bytes(&s.encode_snapshot()).expect("decodes");
    run(&mut s, vec![finished("j1", epoch)])
        .remove(0)
        .expect("finish");
    let kinds: Vec<String> = s
        .job("j1")
        .expect("job")
        .artifacts
        .iter()
        .map(|a| a.kind.clone())
        .collect();
    assert_eq!(kinds, ["video", "preview", "preview_thumbnail"]);
    // A preview after the end is refused.
    assert!(run(&mut s, vec![preview("j1", epoch, 5)])
        .remove(0)
        .is_err());
}

fn cancel(id: &str) -> pb::command::Kind {
    pb::command::Kind::CancelJob(pb::CancelJob { job_id: id.into() })
}

fn forget(ids: Vec<String>) -> pb::command::Kind {
    pb::command::Kind::ForgetJobs(pb::ForgetJobs { job_ids: ids })
}

#[test]
fn retention_picks_the_oldest_ended_jobs_and_forgets_only_ended_ones() {
    let mut s = State::default();
    // Entries are 1 s apart: job k ends at its cancel's time.
    let mut kinds = Vec::new();
    for k in 0..6 {
        kinds.push(submit(&format!("j{k}"), 1));
    }
    for k in 0..5 {
        kinds.push(cancel(&format!("j{k}")));
    }
    run(&mut s, kinds);
    let ended_at = |id: &str| s.job(id).expect("job").finished_at_ms;
    // Keep the newest 3 ended: j0 and j1 go.
    assert_eq!(s.expired_jobs(0, 3, 100), ["j0", "j1"]);
    // Or all that ended before j3 did.
    assert_eq!(s.expired_jobs(ended_at("j3"), 100, 100), ["j0", "j1", "j2"]);
    assert_eq!(s.expired_jobs(0, 3, 1), ["j0"], "a batch limit");
    assert!(s.expired_jobs(0, 10, 100).is_empty());

    // j5 has not ended: kept even when named; an unknown id is no error.
    let result = run(
        &mut s,
        vec![forget(vec!["j0".into(), "j5".into(), "nope".into()])],
    );
    assert!(matches!(result[0], Ok(Outcome::Forgotten(1))), "{result:?}");
    assert!(s.job("j0").is_none());
    assert!(s.job("j5").is_some());
    let restored = State::from_snapshot_bytes(&s.encode_snapshot()).expect("decodes");
    assert_eq!(restored.hash(), s.hash());
}

/// A long run of jobs that end, with retention keeping 500: the state and
/// its snapshot stop growing once the history of forgotten jobs is full
/// too (here a ring of 2,000, so that 20,000 jobs fill it; measured: the
/// snapshot's size after 5,000 and after 20,000 jobs).
#[test]
fn with_retention_the_state_stays_flat_over_a_long_run() {
    let mut s = State::with_history_cap(2_000);
    let mut sizes = Vec::new();
    for round in 0..20 {
        let mut kinds = Vec::new();
        for k in 0..1000 {
            let id = format!("j{round}-{k}");
            kinds.push(submit(&id, 1));
            kinds.push(cancel(&id));
        }
        run(&mut s, kinds);
        let expired = s.expired_jobs(0, 500, usize::MAX);
        run(&mut s, vec![forget(expired)]);
        sizes.push(s.encode_snapshot().len());
    }
    assert_eq!(s.jobs().count(), 500);
    assert_eq!(s.history().len(), 2_000, "the ring is full, not beyond");
    let (early, late) = (sizes[4], sizes[19]);
    assert!(
        late <= early + early / 10,
        "the snapshot grew from {early} to {late} bytes"
    );
}

#[test]
fn the_invariants_hold_through_a_run_and_catch_a_broken_state() {
    let mut s = State::default();
    let r = run(
        &mut s,
        vec![
            register("n1", "i1", 2),
            submit("j1", 1),
            submit("j2", 1),
            assign("j1", "n1", &[0]),
        ],
    );
    let epoch = assigned_epoch(&r[3]);
    s.check_invariants().expect("after assign");
    run(&mut s, vec![finished("j1", epoch), cancel("j2")]);
    s.check_invariants().expect("after the end");

    let mut broken = s.clone();
    broken
        .nodes
        .get_mut("n1")
        .expect("node")
        .busy
        .insert(1, "j2".into());
    assert!(
        broken.check_invariants().is_err(),
        "a device held by an ended job"
    );
    let mut broken = s.clone();
    broken.pending.insert(99, "j1".into());
    assert!(broken.check_invariants().is_err(), "a completed job queued");
}

/// Found by the fuzzing campaign: an entry stamped at 0 set a requeued
/// job's queue time to 0, which a snapshot restores as its creation time,
/// so replicas restored from a snapshot disagreed with the others.
#[test]
fn an_entry_without_a_time_is_refused() {
    let mut s = State::default();
    let result = s.apply(1, &entry(submit("j1", 1), 0));
    assert!(matches!(result, Err(Rejection::Malformed(_))), "{result:?}");
    assert!(s.job("j1").is_none());
}

fn progress_with_checkpoint(job: &str, epoch: u64, step: u32, uri: &str) -> pb::command::Kind {
    pb::command::Kind::JobProgress(pb::JobProgress {
        lease: lease(job, epoch),
        step,
        checkpoint: Some(pb::JobCheckpoint {
            uri: uri.into(),
            step,
        }),
    })
}

/// A periodic checkpoint is recorded while the job runs on (not requeued),
/// the newest from the live lease replaces it, one that could not be
/// resumed from is ignored (its progress still counts), and a node loss
/// resumes the job from it.
#[test]
fn a_running_jobs_periodic_checkpoint_is_where_a_node_loss_resumes_it() {
    let mut s = State::default();
    let r = run(
        &mut s,
        vec![
            register("n1", "i1", 1),
            submit("j1", 1),
            assign("j1", "n1", &[0]),
        ],
    );
    let epoch = assigned_epoch(&r[2]);
    let steps = s.job("j1").expect("job").spec.steps;
    assert!(steps > 3, "the test needs room: {steps} steps");
    let outcomes = run(
        &mut s,
        vec![
            progress_with_checkpoint("j1", epoch, 1, "file:///c-1"),
            // A later one replaces it (and an earlier one from this lease
            // would too: the worker may have started over).
            progress_with_checkpoint("j1", epoch, 2, "file:///c-2"),
            // The last step is no checkpoint; an empty URI neither.
            progress_with_checkpoint("j1", epoch, steps, "file:///c-end"),
            progress_with_checkpoint("j1", epoch, 3, ""),
        ],
    );
    assert!(outcomes.iter().all(|o| o.is_ok()), "{outcomes:?}");
    let job = s.job("j1").expect("job");
    assert_eq!(job.state, JobState::Running, "it runs on");
    assert_eq!(
        job.checkpoint.as_ref().map(|c| (c.step, c.uri.as_str())),
        Some((2, "file:///c-2"))
    );
    // A worker that found its checkpoint unreadable starts over: its
    // earlier checkpoints replace the one it could not read.
    run(
        &mut s,
        vec![progress_with_checkpoint("j1", epoch, 1, "file:///again-1")],
    );
    let recorded = s.job("j1").and_then(|j| j.checkpoint.clone());
    assert_eq!(recorded.map(|c| c.step), Some(1));
    run(
        &mut s,
        vec![progress_with_checkpoint("j1", epoch, 2, "file:///again-2")],
    );
    // A stale lease's checkpoint is refused with its progress.
    let stale = run(
        &mut s,
        vec![progress_with_checkpoint("j1", epoch + 1, 3, "file:///c-3")],
    );
    assert!(
        matches!(stale[0], Err(Rejection::StaleLease { .. })),
        "{stale:?}"
    );
    let down = pb::command::Kind::NodeDown(pb::NodeDown {
        node: "n1".into(),
        reason: "kill -9".into(),
    });
    run(&mut s, vec![down]);
    let job = s.job("j1").expect("job");
    assert_eq!((job.state, job.step), (JobState::Pending, 2));
}

/// A restore brings a saved state into a fresh cluster: its running jobs
/// wait again with their checkpoints, its nodes come back down, the
/// cluster's own nodes stay; a cluster that holds anything, or bytes that
/// are no backup, are refused.
#[test]
fn a_backup_restores_into_a_fresh_state_only() {
    let mut old = State::default();
    let budgeted = pb::command::Kind::UpsertQueue(pb::UpsertQueue {
        queue: Some(pb::Queue {
            name: "b".into(),
            weight: 1,
            quotas: vec![pb::FlavorQuota {
                flavor: "cpu".into(),
                nominal: 1,
                ..Default::default()
            }],
            budget: Some(pb::Budget {
                device_hours: 10.0,
                period_seconds: 86_400,
            }),
            ..Default::default()
        }),
    });
    let r = run(
        &mut old,
        vec![
            budgeted,
            register("n1", "i1", 1),
            submit_to("running", "b"),
            assign("running", "n1", &[0]),
            submit("waiting", 1),
        ],
    );
    let epoch = assigned_epoch(&r[3]);
    run(
        &mut old,
        vec![progress_with_checkpoint("running", epoch, 2, "file:///c-2")],
    );
    let backup = pb::RestoreState {
        state: old.encode_snapshot(),
    };
    let restore = || pb::command::Kind::RestoreState(backup.clone());

    let refused = run(&mut old, vec![restore()]).remove(0);
    assert!(
        matches!(refused, Err(Rejection::NotFresh(_))),
        "{refused:?}"
    );
    let mut fresh = State::default();
    let garbage = pb::command::Kind::RestoreState(pb::RestoreState {
        state: b"not a backup".to_vec(),
    });
    let bad = run(&mut fresh, vec![garbage]).remove(0);
    assert!(matches!(bad, Err(Rejection::BadBackup(_))), "{bad:?}");

    // Later entries: a restore charged as if the running lease had run
    // until now would show here.
    run(
        &mut fresh,
        (0..10).map(|_| register("n2", "i9", 1)).collect(),
    );
    let done = run(&mut fresh, vec![restore()]).remove(0);
    assert_eq!(done, Ok(Outcome::Restored { requeued: 1 }));
    fresh
        .check_invariants()
        .expect("a restored state keeps the invariants");
    assert_eq!(
        fresh.budget_charged_ms("b", 0),
        old.budget_charged_ms("b", 0),
        "a restore charges no budget for the time the backup was on the shelf"
    );
    let running = fresh.job("running").expect("restored");
    assert_eq!((running.state, running.step), (JobState::Pending, 2));
    assert_eq!(
        fresh.job("waiting").map(|j| j.state),
        Some(JobState::Pending)
    );
    assert!(fresh.node("n1").is_some_and(|n| !n.up && n.busy.is_empty()));
    assert!(
        fresh.node("n2").is_some_and(|n| n.up),
        "this cluster's node stays"
    );
    let again = run(&mut fresh, vec![restore()]).remove(0);
    assert!(matches!(again, Err(Rejection::NotFresh(_))), "{again:?}");
}

mod history;
mod unknown_words;
