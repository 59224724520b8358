//! The raft log on disk: raft-rs's `Storage` over raft-engine.
//!
//! Entries and the hard state of one ready are written in one synced batch,
//! so a crash leaves either both or neither. The log's start (the snapshot
//! point) and the membership are kept as raft-engine key-values beside it.

use std::path::Path;
use std::sync::Arc;

use raft::eraftpb::{ConfState, Entry, HardState, Snapshot, SnapshotMetadata};
use raft::{GetEntriesContext, RaftState, StorageError};
use raft_engine::{Config as EngineConfig, Engine, LogBatch, MessageExt};

/// One raft group per scheduler: its id in raft-engine.
const GROUP: u64 = 1;
const KEY_HARD_STATE: &[u8] = b"hard_state";
const KEY_CONF_STATE: &[u8] = b"conf_state";
const KEY_SNAPSHOT_META: &[u8] = b"snapshot_meta";

/// Tells raft-engine how to find the index of a raft entry.
#[derive(Clone)]
pub struct EntryExt;

impl MessageExt for EntryExt {
    type Entry = Entry;
    fn index(e: &Entry) -> u64 {
        e.index
    }
}

#[derive(Debug, thiserror::Error)]
pub enum StorageFailure {
    #[error("raft log at {dir}: {source}")]
    Engine {
        dir: String,
        #[source]
        source: raft_engine::Error,
    },
    #[error("raft log at {dir} holds no membership; it was not created by genfleet or is damaged")]
    NoMembership { dir: String },
}

pub struct LogStorage {
    engine: Arc<Engine>,
    dir: String,
    hard_state: HardState,
    conf_state: ConfState,
    /// Index and term of the last entry before the log's first one.
    snapshot_meta: SnapshotMetadata,
}

impl LogStorage {
    /// Opens the log in `dir`, creating it with `voters` as the membership if
    /// the directory holds none yet.
    pub fn open(dir: &Path, voters: &[u64]) -> Result<Self, StorageFailure> {
        let dir_str = dir.display().to_string();
        let wrap = |source| StorageFailure::Engine {
            dir: dir_str.clone(),
            source,
        };
        let config = EngineConfig {
            dir: dir_str.clone(),
            ..Default::default()
        };
        let engine = Arc::new(Engine::open(config).map_err(wrap)?);
        let stored_conf: Option<ConfState> =
            engine.get_message(GROUP, KEY_CONF_STATE).map_err(wrap)?;
        let mut storage = Self {
            engine,
            dir: dir_str.clone(),
            hard_state: HardState::default(),
            conf_state: ConfState::default(),
            snapshot_meta: SnapshotMetadata::default(),
        };
        match stored_conf {
            Some(conf) => {
                storage.conf_state = conf;
                storage.hard_state = storage
                    .engine
                    .get_message(GROUP, KEY_HARD_STATE)
                    .map_err(wrap)?
                    .unwrap_or_default();
                storage.snapshot_meta = storage
                    .engine
                    .get_message(GROUP, KEY_SNAPSHOT_META)
                    .map_err(wrap)?
                    .unwrap_or_default();
            }
            None if storage.engine.last_index(GROUP).is_some() => {
                return Err(StorageFailure::NoMembership { dir: dir_str });
            }
            None => storage.bootstrap(voters).map_err(wrap)?,
        }
        Ok(storage)
    }

    /// A new log starts as if a snapshot at index 1, term 1 held the
    /// membership, so that a fresh follower's empty log is behind every
    /// initialized replica's (the convention of raft-rs's MemStorage).
    fn bootstrap(&mut self, voters: &[u64]) -> Result<(), raft_engine::Error> {
        self.conf_state.voters = voters.to_vec();
        self.snapshot_meta.index = 1;
        self.snapshot_meta.term = 1;
        self.snapshot_meta.set_conf_state(self.conf_state.clone());
        self.hard_state.term = 1;
        self.hard_state.commit = 1;
        let mut batch = LogBatch::default();
        batch.put_message(GROUP, KEY_CONF_STATE.to_vec(), &self.conf_state)?;
        batch.put_message(GROUP, KEY_SNAPSHOT_META.to_vec(), &self.snapshot_meta)?;
        batch.put_message(GROUP, KEY_HARD_STATE.to_vec(), &self.hard_state)?;
        self.engine.write(&mut batch, true)?;
        Ok(())
    }

    pub fn dir(&self) -> &str {
        &self.dir
    }

    pub fn hard_state(&self) -> &HardState {
        &self.hard_state
    }

    pub fn conf_state(&self) -> &ConfState {
        &self.conf_state
    }

    /// Appends `entries` (replacing any conflicting suffix) and records
    /// `hard_state`, in one fsynced write.
    pub fn append(
        &mut self,
        entries: &[Entry],
        hard_state: Option<&HardState>,
    ) -> Result<(), raft_engine::Error> {
        let mut batch = LogBatch::default();
        for chunk in entries.chunks(256) {
            batch.add_entries::<EntryExt>(GROUP, chunk)?;
        }
        if let Some(hs) = hard_state {
            batch.put_message(GROUP, KEY_HARD_STATE.to_vec(), hs)?;
        }
        if !batch.is_empty() {
            self.engine.write(&mut batch, true)?;
        }
        if let Some(hs) = hard_state {
            self.hard_state = hs.clone();
        }
        Ok(())
    }

    /// Records a newer commit index (from a light ready), synced.
    pub fn set_commit(&mut self, commit: u64) -> Result<(), raft_engine::Error> {
        let mut hs = self.hard_state.clone();
        hs.commit = commit;
        self.append(&[], Some(&hs))
    }

    /// Records the membership after an applied configuration change.
    pub fn set_conf_state(&mut self, conf: ConfState) -> Result<(), raft_engine::Error> {
        let mut batch = LogBatch::default();
        batch.put_message(GROUP, KEY_CONF_STATE.to_vec(), &conf)?;
        self.engine.write(&mut batch, true)?;
        self.conf_state = conf;
        Ok(())
    }

    fn first(&self) -> u64 {
        self.engine
            .first_index(GROUP)
            .unwrap_or(self.snapshot_meta.index + 1)
    }

    fn last(&self) -> u64 {
        self.engine
            .last_index(GROUP)
            .unwrap_or(self.snapshot_meta.index)
    }
}

fn engine_error(e: raft_engine::Error) -> raft::Error {
    raft::Error::Store(StorageError::Other(Box::new(e)))
}

impl raft::Storage for LogStorage {
    fn initial_state(&self) -> raft::Result<RaftState> {
        Ok(RaftState {
            hard_state: self.hard_state.clone(),
            conf_state: self.conf_state.clone(),
        })
    }

    fn entries(
        &self,
        low: u64,
        high: u64,
        max_size: impl Into<Option<u64>>,
        _context: GetEntriesContext,
    ) -> raft::Result<Vec<Entry>> {
        if low < self.first() {
            return Err(raft::Error::Store(StorageError::Compacted));
        }
        if high > self.last() + 1 {
            return Err(raft::Error::Store(StorageError::Unavailable));
        }
        let mut entries = Vec::with_capacity((high - low) as usize);
        let max_size = max_size.into().map(|s| s as usize);
        self.engine
            .fetch_entries_to::<EntryExt>(GROUP, low, high, max_size, &mut entries)
            .map_err(engine_error)?;
        Ok(entries)
    }

    fn term(&self, idx: u64) -> raft::Result<u64> {
        if idx == self.snapshot_meta.index {
            return Ok(self.snapshot_meta.term);
        }
        if idx < self.first() {
            return Err(raft::Error::Store(StorageError::Compacted));
        }
        if idx > self.last() {
            return Err(raft::Error::Store(StorageError::Unavailable));
        }
        match self
            .engine
            .get_entry::<EntryExt>(GROUP, idx)
            .map_err(engine_error)?
        {
            Some(entry) => Ok(entry.term),
            None => Err(raft::Error::Store(StorageError::Unavailable)),
        }
    }

    fn first_index(&self) -> raft::Result<u64> {
        Ok(self.first())
    }

    fn last_index(&self) -> raft::Result<u64> {
        Ok(self.last())
    }

    fn snapshot(&self, _request_index: u64, _to: u64) -> raft::Result<Snapshot> {
        // The log is never compacted yet, so a peer can always be caught up
        // from entries; state snapshots come with multi-replica support.
        Err(raft::Error::Store(
            StorageError::SnapshotTemporarilyUnavailable,
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use raft::Storage;

    fn entry(index: u64, term: u64, data: &[u8]) -> Entry {
        let mut e = Entry::default();
        e.index = index;
        e.term = term;
        e.data = data.to_vec().into();
        e
    }

    #[test]
    fn entries_and_hard_state_survive_reopen() {
        let dir = tempfile::tempdir().expect("tempdir");
        {
            let mut s = LogStorage::open(dir.path(), &[1]).expect("open");
            assert_eq!(
                (s.first_index().ok(), s.last_index().ok()),
                (Some(2), Some(1))
            );
            let mut hs = HardState::default();
            hs.term = 2;
            hs.vote = 1;
            hs.commit = 3;
            s.append(&[entry(2, 2, b"a"), entry(3, 2, b"b")], Some(&hs))
                .expect("append");
        }
        let s = LogStorage::open(dir.path(), &[7, 8, 9]).expect("reopen");
        assert_eq!(
            s.conf_state().voters,
            vec![1],
            "membership kept, not re-bootstrapped"
        );
        assert_eq!(s.hard_state().commit, 3);
        assert_eq!(s.last_index().ok(), Some(3));
        assert_eq!(s.term(3).ok(), Some(2));
        assert_eq!(s.term(1).ok(), Some(1), "term of the snapshot point");
        let got = s
            .entries(2, 4, None, GetEntriesContext::empty(false))
            .expect("entries");
        assert_eq!(
            got.iter().map(|e| e.data.to_vec()).collect::<Vec<_>>(),
            vec![b"a".to_vec(), b"b".to_vec()]
        );
    }

    #[test]
    fn a_conflicting_append_replaces_the_suffix() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut s = LogStorage::open(dir.path(), &[1]).expect("open");
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
        let s = LogStorage::open(dir.path(), &[1]).expect("open");
        assert!(s.term(5).is_err());
        assert!(s
            .entries(2, 9, None, GetEntriesContext::empty(false))
            .is_err());
    }
}
