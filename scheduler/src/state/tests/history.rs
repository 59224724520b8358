//! The history of forgotten jobs: fed by retention and deletes, bounded,
//! carried in snapshots and backups, and exported with the live jobs.

use super::*;
use prost::Message as _;

/// Submits `ids`, one entry each.
fn submitted(state: &mut State, ids: &[&str]) {
    run(state, ids.iter().map(|id| submit(id, 1)).collect());
}

fn arrivals(records: &[pb::TraceRecord]) -> Vec<i64> {
    records.iter().map(|r| r.arrival_ms).collect()
}

#[test]
fn retention_moves_ended_jobs_into_the_history_and_the_trace_keeps_them() {
    let mut s = State::default();
    let r = run(
        &mut s,
        vec![
            register("n1", "i1", 2),
            submit("done", 1),
            submit("dropped", 1),
            submit("waiting", 1),
            submit("running", 1),
            assign("done", "n1", &[0]),
            assign("running", "n1", &[1]),
        ],
    );
    let epoch = assigned_epoch(&r[5]);
    run(&mut s, vec![finished("done", epoch), cancel("dropped")]);
    // Retention names every job; only the ended ones go.
    let ids = ["done", "dropped", "waiting", "running"];
    let forgotten = run(&mut s, vec![forget(ids.map(String::from).to_vec())]).remove(0);
    assert_eq!(forgotten, Ok(Outcome::Forgotten(2)));
    assert!(s.job("done").is_none() && s.job("dropped").is_none());
    s.check_invariants().expect("after retention");

    let kept: Vec<_> = s.history().records().collect();
    assert_eq!(kept.len(), 2);
    let done = kept[0];
    // Entries are 1 s apart: submit at 2 s, start at 6 s, end at 8 s.
    assert_eq!(
        (
            done.arrival_ms,
            done.started_ms,
            done.ended_ms,
            done.outcome
        ),
        (2_000, 6_000, 8_000, JobState::Completed)
    );
    assert_eq!((&*done.queue, &*done.model), ("default", "world"));
    assert_eq!(
        (done.frames, done.width, done.height, done.steps, done.tp),
        (9, 64, 64, 4, 1)
    );
    let dropped = kept[1];
    assert_eq!(
        (dropped.started_ms, dropped.ended_ms, dropped.outcome),
        (0, 9_000, JobState::Cancelled),
        "cancelled before it started"
    );

    // The trace: the forgotten jobs and the live ones, by arrival once sorted.
    let mut trace: Vec<_> = s
        .trace(None, None)
        .iter()
        .map(HistoryRecord::to_proto)
        .collect();
    trace.sort_by_key(|r| r.arrival_ms);
    assert_eq!(arrivals(&trace), [2_000, 3_000, 4_000, 5_000]);
    let states: Vec<_> = trace.iter().map(|r| r.outcome()).collect();
    assert_eq!(
        states,
        [
            JobState::Completed,
            JobState::Cancelled,
            JobState::Pending,
            JobState::Running
        ]
    );
    assert_eq!((trace[3].started_ms, trace[3].ended_ms), (7_000, 0));
    // Arrivals in since..until, since included, until not.
    let mut window: Vec<_> = (s.trace(Some(3_000), Some(5_000)).iter())
        .map(HistoryRecord::to_proto)
        .collect();
    window.sort_by_key(|r| r.arrival_ms);
    assert_eq!(arrivals(&window), [3_000, 4_000]);
}

#[test]
fn a_deleted_job_is_kept_in_the_history_too() {
    let mut s = State::default();
    submitted(&mut s, &["j1"]);
    run(&mut s, vec![cancel("j1")]);
    let deleted = run(
        &mut s,
        vec![pb::command::Kind::DeleteJob(pb::DeleteJob {
            job_id: "j1".into(),
        })],
    )
    .remove(0);
    assert_eq!(deleted, Ok(Outcome::Done));
    assert_eq!(s.history().len(), 1);
    assert_eq!(s.trace(None, None).len(), 1);
}

#[test]
fn the_ring_keeps_the_newest_records_up_to_its_bound() {
    let mut s = State::with_history_cap(3);
    let ids: Vec<String> = (0..5).map(|k| format!("j{k}")).collect();
    for id in &ids {
        run(&mut s, vec![submit(id, 1), cancel(id)]);
        run(&mut s, vec![forget(vec![id.clone()])]);
        s.check_invariants()
            .expect("the ring stays within its bound");
    }
    assert_eq!(s.history().len(), 3);
    // Job k was submitted at entry 3k + 1: the two oldest are gone.
    let kept: Vec<i64> = s.history().records().map(|r| r.arrival_ms).collect();
    assert_eq!(kept, [7_000, 10_000, 13_000]);
    assert_eq!(
        HISTORY_CAP,
        State::default().history().cap(),
        "the bound every replica uses"
    );
}

#[test]
fn the_history_travels_in_snapshots_and_counts_in_the_hash() {
    let mut s = State::default();
    submitted(&mut s, &["a", "b"]);
    run(&mut s, vec![cancel("a"), cancel("b")]);
    run(&mut s, vec![forget(vec!["a".into(), "b".into()])]);
    let copy = State::from_snapshot_bytes(&s.encode_snapshot()).expect("decodes");
    assert_eq!(
        copy.history().records().collect::<Vec<_>>(),
        s.history().records().collect::<Vec<_>>()
    );
    assert_eq!(copy.hash(), s.hash());
    // Replicas whose rings differ disagree on the hash.
    let mut other = s.clone();
    let extra = other.history().records().next().cloned().expect("a record");
    other.history.push(extra);
    assert_ne!(other.hash(), s.hash());
}

/// A snapshot an older release wrote has no history: it loads with an
/// empty ring and hashes as it did (an empty repeated field encodes to
/// nothing), so a replayed old log keeps the old release's state hash.
#[test]
fn a_snapshot_without_history_loads_with_an_empty_ring() {
    let mut s = State::default();
    submitted(&mut s, &["a", "b"]);
    run(&mut s, vec![cancel("a")]);
    run(&mut s, vec![forget(vec!["a".into()])]);
    let mut old = s.to_snapshot();
    assert_eq!(old.history.len(), 1);
    old.history.clear();
    let loaded = State::from_snapshot_bytes(&old.encode_to_vec()).expect("an old snapshot");
    assert!(loaded.history().is_empty());
    assert_eq!(loaded.jobs().count(), 1);
    assert_eq!(loaded.hash(), hash_of(old));
}

#[test]
fn a_backup_with_a_bad_history_record_is_refused() {
    let mut s = State::default();
    submitted(&mut s, &["a"]);
    run(&mut s, vec![cancel("a")]);
    run(&mut s, vec![forget(vec!["a".into()])]);
    let good = s.to_snapshot();
    type Case = (&'static str, fn(&mut pb::TraceRecord), &'static str);
    let cases: Vec<Case> = vec![
        ("an unknown class", |r| r.qos = "urgent".into(), "class"),
        (
            "a job that had not ended",
            |r| r.outcome = JobState::Running as i32,
            "had not ended",
        ),
        (
            "a queue that is no name",
            |r| r.queue = "a,b".into(),
            "is not a name",
        ),
        ("an unknown outcome", |r| r.outcome = 99, "outcome 99"),
    ];
    for (name, spoil, words) in cases {
        let mut bad = good.clone();
        spoil(&mut bad.history[0]);
        let restore = pb::command::Kind::RestoreState(pb::RestoreState {
            state: bad.encode_to_vec(),
        });
        let mut fresh = State::default();
        let refused = run(&mut fresh, vec![restore]).remove(0);
        match refused {
            Err(Rejection::BadBackup(why)) => assert!(why.contains(words), "{name}: {why}"),
            other => panic!("{name}: {other:?}"),
        }
    }
}

#[test]
fn a_restore_keeps_the_backups_history_then_the_clusters_own() {
    let mut old = State::default();
    submitted(&mut old, &["old"]);
    run(&mut old, vec![cancel("old")]);
    run(&mut old, vec![forget(vec!["old".into()])]);
    // The fresh cluster ran a job and forgot it: it holds no jobs.
    let mut fresh = State::default();
    run(&mut fresh, (0..5).map(|_| register("n", "i", 1)).collect());
    submitted(&mut fresh, &["mine"]);
    run(&mut fresh, vec![cancel("mine")]);
    run(&mut fresh, vec![forget(vec!["mine".into()])]);
    let restore = pb::command::Kind::RestoreState(pb::RestoreState {
        state: old.encode_snapshot(),
    });
    let done = run(&mut fresh, vec![restore]).remove(0);
    assert_eq!(done, Ok(Outcome::Restored { requeued: 0 }));
    let kept: Vec<i64> = fresh.history().records().map(|r| r.arrival_ms).collect();
    // "old" was submitted at 1 s of its cluster, "mine" at 6 s of this one.
    assert_eq!(kept, [1_000, 6_000]);
    fresh.check_invariants().expect("after the restore");
}

/// The bound's cost, as the docs state it: 96 bytes inline per record in
/// memory, and about 60 bytes in a snapshot for names of typical length.
#[test]
fn a_history_record_is_small() {
    assert!(std::mem::size_of::<HistoryRecord>() <= 96);
    let mut s = State::default();
    let n = 1_000;
    for k in 0..n {
        let id = format!("j{k}");
        run(&mut s, vec![submit(&id, 1), cancel(&id)]);
    }
    let ids: Vec<String> = (0..n).map(|k| format!("j{k}")).collect();
    let as_jobs = s.encode_snapshot().len();
    run(&mut s, vec![forget(ids)]);
    let as_history = s.encode_snapshot().len();
    assert!(s.jobs().next().is_none());
    // Each record, with its field's tag and length.
    let bytes: usize = s
        .to_snapshot()
        .history
        .iter()
        .map(|r| r.encoded_len() + 2)
        .sum();
    let per_record = bytes / n;
    println!("{per_record} bytes per record in a snapshot ({n} ended jobs: {as_jobs} bytes as jobs, {as_history} as history)");
    assert!(per_record <= 70, "{per_record} bytes per record");
}
