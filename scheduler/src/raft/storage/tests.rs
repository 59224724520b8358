use super::*;
use raft::Storage;

fn entry(index: u64, term: u64, data: &[u8]) -> Entry {
    Entry {
        index,
        term,
        data: data.to_vec().into(),
        ..Default::default()
    }
}

fn open(dir: &Path, bootstrap: Bootstrap) -> Opened {
    LogStorage::open(dir, &bootstrap, Arc::default()).expect("open")
}

fn new_cluster(voters: &[u64]) -> Bootstrap {
    Bootstrap::NewCluster(
        voters
            .iter()
            .map(|id| (*id, format!("http://replica-{id}")))
            .collect(),
    )
}

fn data_of(s: &LogStorage, low: u64, high: u64) -> Vec<Vec<u8>> {
    s.entries(low, high, None, GetEntriesContext::empty(false))
        .expect("entries")
        .iter()
        .map(|e| e.data.to_vec())
        .collect()
}

#[test]
fn entries_and_hard_state_survive_reopen() {
    let dir = tempfile::tempdir().expect("tempdir");
    {
        let mut s = open(dir.path(), new_cluster(&[1])).storage;
        assert_eq!(
            (s.first_index().ok(), s.last_index().ok()),
            (Some(2), Some(1))
        );
        let hs = HardState {
            term: 2,
            vote: 1,
            commit: 3,
            ..Default::default()
        };
        s.append(&[entry(2, 2, b"a"), entry(3, 2, b"b")], Some(&hs))
            .expect("append");
    }
    let s = open(dir.path(), new_cluster(&[7, 8, 9])).storage;
    let initial = s.initial_state().expect("initial state");
    assert_eq!(
        initial.conf_state.voters,
        vec![1],
        "membership kept, not re-bootstrapped"
    );
    assert_eq!(initial.hard_state.commit, 3);
    assert_eq!(s.last_index().ok(), Some(3));
    assert_eq!(s.term(3).ok(), Some(2));
    assert_eq!(s.term(1).ok(), Some(1), "term of the snapshot point");
    assert_eq!(data_of(&s, 2, 4), vec![b"a".to_vec(), b"b".to_vec()]);
}

#[test]
fn a_conflicting_append_replaces_the_suffix() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut s = open(dir.path(), new_cluster(&[1])).storage;
    s.append(
        &[entry(2, 1, b"a"), entry(3, 1, b"b"), entry(4, 1, b"c")],
        None,
    )
    .expect("append");
    s.append(&[entry(3, 2, b"x")], None).expect("overwrite");
    assert_eq!(s.last_index().ok(), Some(3));
    assert_eq!(s.term(3).ok(), Some(2));
}

#[test]
fn out_of_range_reads_are_errors_not_panics() {
    let dir = tempfile::tempdir().expect("tempdir");
    let s = open(dir.path(), new_cluster(&[1])).storage;
    assert!(s.term(5).is_err());
    assert!(s
        .entries(2, 9, None, GetEntriesContext::empty(false))
        .is_err());
}

#[test]
fn compaction_keeps_the_state_and_drops_the_entries_before_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut state = State::default();
    state.apply_membership(6, 2, Some("http://b:7070"));
    {
        let mut s = open(dir.path(), new_cluster(&[1, 2])).storage;
        let entries: Vec<Entry> = (2..=10).map(|i| entry(i, 1, &[i as u8])).collect();
        s.append(&entries, None).expect("append");
        s.compact(6, state.encode_snapshot()).expect("compact");
        assert_eq!(s.first_index().ok(), Some(7));
        assert_eq!(s.term(6).ok(), Some(1));
        assert!(matches!(
            s.entries(5, 8, None, GetEntriesContext::empty(false)),
            Err(raft::Error::Store(StorageError::Compacted))
        ));
        assert_eq!(data_of(&s, 7, 11).len(), 4);
    }
    let opened = open(dir.path(), new_cluster(&[1]));
    assert_eq!(opened.storage.snapshot_index(), 6);
    assert_eq!(opened.storage.first_index().ok(), Some(7));
    assert_eq!(opened.state.hash(), state.hash());
    assert_eq!(
        opened.state.members().get(&2).map(String::as_str),
        Some("http://b:7070")
    );
    assert_eq!(
        opened
            .storage
            .initial_state()
            .expect("state")
            .conf_state
            .voters,
        vec![1, 2]
    );
}

#[test]
fn a_snapshot_from_the_leader_replaces_the_whole_log() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut leader_state = State::default();
    leader_state.apply_membership(20, 3, Some("http://c:7070"));
    let mut snapshot = Snapshot {
        data: leader_state.encode_snapshot().into(),
        ..Default::default()
    };
    snapshot.mut_metadata().index = 20;
    snapshot.mut_metadata().term = 3;
    snapshot.mut_metadata().mut_conf_state().voters = vec![1, 2, 3];
    {
        let mut s = open(dir.path(), new_cluster(&[1, 2, 3])).storage;
        s.append(
            &(2..=30).map(|i| entry(i, 1, b"old")).collect::<Vec<_>>(),
            None,
        )
        .expect("append");
        let state = s.apply_snapshot(&snapshot).expect("apply snapshot");
        assert_eq!(state.hash(), leader_state.hash());
        assert_eq!(
            (s.first_index().ok(), s.last_index().ok()),
            (Some(21), Some(20))
        );
        assert_eq!(s.term(20).ok(), Some(3));
        assert_eq!(s.hard_state().commit, 20);
        s.append(&[entry(21, 3, b"new")], None)
            .expect("append after the snapshot");
    }
    let opened = open(dir.path(), new_cluster(&[9]));
    assert_eq!(opened.storage.snapshot_index(), 20);
    assert_eq!(
        (
            opened.storage.first_index().ok(),
            opened.storage.last_index().ok()
        ),
        (Some(21), Some(21))
    );
    assert_eq!(data_of(&opened.storage, 21, 22), vec![b"new".to_vec()]);
    assert_eq!(opened.state.hash(), leader_state.hash());
}

#[test]
fn a_joining_replica_starts_empty_and_writes_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let s = open(dir.path(), Bootstrap::Join).storage;
    assert_eq!(
        (s.first_index().ok(), s.last_index().ok()),
        (Some(1), Some(0))
    );
    assert!(s
        .initial_state()
        .expect("state")
        .conf_state
        .voters
        .is_empty());
    assert!(!dir.path().join(SNAPSHOT_FILE).exists());
}

#[test]
fn a_damaged_or_missing_snapshot_is_a_clear_error() {
    let dir = tempfile::tempdir().expect("tempdir");
    {
        let mut s = open(dir.path(), new_cluster(&[1])).storage;
        s.append(&[entry(2, 1, b"a")], None).expect("append");
    }
    std::fs::write(dir.path().join(SNAPSHOT_FILE), b"\xff\xffgarbage").expect("damage");
    let err = LogStorage::open(dir.path(), &new_cluster(&[1]), Arc::default())
        .err()
        .expect("damaged");
    assert!(err.to_string().contains("snapshot.bin is damaged"), "{err}");
    std::fs::remove_file(dir.path().join(SNAPSHOT_FILE)).expect("remove");
    let err = LogStorage::open(dir.path(), &new_cluster(&[1]), Arc::default())
        .err()
        .expect("missing");
    assert!(err.to_string().contains("no snapshot file"), "{err}");
}
