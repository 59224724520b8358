//! The raft log on disk: raft-rs's `Storage` over raft-engine, plus the
//! snapshot file the log starts after.
//!
//! - Entries and the hard state of one ready are written in one synced
//!   raft-engine batch, so a crash leaves either both or neither.
//! - `snapshot.bin` holds the state and the membership at some index; the
//!   log holds the entries after it. A new cluster's first snapshot is an
//!   empty state at index 1 (the convention of raft-rs's `MemStorage`), so a
//!   joining replica's empty log is behind every initialized one's.
//! - Snapshots for peers are made from the live state (it is the state at
//!   the applied index), so none has to be kept on disk for them.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use genfleet_proto as pb;
use prost::Message as _;
use protobuf::Message as _;
use raft::eraftpb::{ConfState, Entry, HardState, Snapshot, SnapshotMetadata};
use raft::{GetEntriesContext, RaftState, StorageError};
use raft_engine::{Command, Config as EngineConfig, Engine, LogBatch, MessageExt};

use crate::state::State;

/// One raft group per scheduler: its id in raft-engine.
const GROUP: u64 = 1;
const KEY_HARD_STATE: &[u8] = b"hard_state";
const SNAPSHOT_FILE: &str = "snapshot.bin";

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
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path} is damaged: {why}")]
    Damaged { path: PathBuf, why: String },
    #[error("raft log at {dir} has entries but no snapshot file beside it; it was not made by this version of genfleet or {SNAPSHOT_FILE} was deleted")]
    NoSnapshot { dir: String },
}

/// How a replica's log begins when its directory is empty.
#[derive(Debug, Clone)]
pub enum Bootstrap {
    /// A new cluster of these voters (id -> address).
    NewCluster(BTreeMap<u64, String>),
    /// Joining a running cluster: wait for the leader's snapshot.
    Join,
}

pub struct LogStorage {
    engine: Arc<Engine>,
    dir: PathBuf,
    hard_state: HardState,
    /// Membership as of the applied index (changes are applied in memory;
    /// the snapshot file keeps the one at its index).
    conf_state: ConfState,
    /// Index and term of the snapshot the log starts after.
    snapshot_meta: SnapshotMetadata,
    /// The live state, which peer snapshots are made from.
    state: Arc<RwLock<State>>,
}

/// What `open` found: the storage and, if there was a snapshot, its state.
pub struct Opened {
    pub storage: LogStorage,
    /// The state of the snapshot file (applied index = its index).
    pub state: State,
}

impl LogStorage {
    /// Opens (or creates) the log under `dir` (`dir/raft` for raft-engine,
    /// `dir/snapshot.bin`). `state` is the live state handle the replica uses.
    pub fn open(
        dir: &Path,
        bootstrap: &Bootstrap,
        state: Arc<RwLock<State>>,
    ) -> Result<Opened, StorageFailure> {
        let log_dir = dir.join("raft");
        let log_dir_str = log_dir.display().to_string();
        let engine_error = |source| StorageFailure::Engine {
            dir: log_dir_str.clone(),
            source,
        };
        std::fs::create_dir_all(dir).map_err(|source| StorageFailure::Io {
            path: dir.to_path_buf(),
            source,
        })?;
        let config = EngineConfig {
            dir: log_dir_str.clone(),
            // Entries are small and CPU is scarcer than disk: no LZ4.
            batch_compression_threshold: raft_engine::ReadableSize(0),
            ..Default::default()
        };
        let engine = Arc::new(Engine::open(config).map_err(engine_error)?);
        let hard_state: HardState = engine
            .get_message(GROUP, KEY_HARD_STATE)
            .map_err(engine_error)?
            .unwrap_or_default();
        let mut storage = Self {
            engine,
            dir: dir.to_path_buf(),
            hard_state,
            conf_state: ConfState::default(),
            snapshot_meta: SnapshotMetadata::default(),
            state,
        };
        let snapshot_path = dir.join(SNAPSHOT_FILE);
        let loaded = match read_snapshot_file(&snapshot_path)? {
            Some(file) => {
                storage.install_meta(&file)?;
                // A commit index written without fsync may lag the snapshot
                // after a power loss; the snapshot only holds committed state.
                if storage.hard_state.commit < file.index {
                    storage.hard_state.commit = file.index;
                }
                State::from_snapshot_bytes(&file.state).map_err(|e| StorageFailure::Damaged {
                    path: snapshot_path.clone(),
                    why: e.to_string(),
                })?
            }
            None if storage.engine.last_index(GROUP).is_some() => {
                return Err(StorageFailure::NoSnapshot { dir: log_dir_str });
            }
            None => match bootstrap {
                Bootstrap::NewCluster(members) => {
                    let conf = ConfState {
                        voters: members.keys().copied().collect(),
                        ..Default::default()
                    };
                    // The addresses stay out of the replicated state: each
                    // replica may have been given its own route to a peer,
                    // and the state must be equal everywhere. Membership
                    // changes record addresses through the log.
                    let mut state = State::default();
                    state.skip(1);
                    let file = storage.snapshot_file(1, 1, &conf, state.encode_snapshot());
                    storage.write_snapshot_file(&file)?;
                    storage.install_meta(&file)?;
                    storage.hard_state.term = 1;
                    storage.hard_state.commit = 1;
                    let hs = storage.hard_state.clone();
                    storage.append(&[], Some(&hs)).map_err(engine_error)?;
                    state
                }
                Bootstrap::Join => State::default(),
            },
        };
        Ok(Opened {
            storage,
            state: loaded,
        })
    }

    fn snapshot_file(
        &self,
        index: u64,
        term: u64,
        conf: &ConfState,
        state: Vec<u8>,
    ) -> pb::SnapshotFile {
        pb::SnapshotFile {
            index,
            term,
            conf_state: conf.write_to_bytes().unwrap_or_default(),
            state,
        }
    }

    /// Takes index, term and membership from a snapshot file.
    fn install_meta(&mut self, file: &pb::SnapshotFile) -> Result<(), StorageFailure> {
        let mut conf = ConfState::default();
        conf.merge_from_bytes(&file.conf_state)
            .map_err(|e| StorageFailure::Damaged {
                path: self.dir.join(SNAPSHOT_FILE),
                why: format!("membership: {e}"),
            })?;
        self.snapshot_meta.index = file.index;
        self.snapshot_meta.term = file.term;
        self.snapshot_meta.set_conf_state(conf.clone());
        self.conf_state = conf;
        Ok(())
    }

    /// Writes the snapshot file atomically (temporary file, fsync, rename, fsync dir).
    fn write_snapshot_file(&self, file: &pb::SnapshotFile) -> Result<(), StorageFailure> {
        let path = self.dir.join(SNAPSHOT_FILE);
        let partial = self.dir.join(format!("{SNAPSHOT_FILE}.partial"));
        let io = |path: &Path| {
            let path = path.to_path_buf();
            move |source| StorageFailure::Io { path, source }
        };
        {
            use std::io::Write;
            let mut f = std::fs::File::create(&partial).map_err(io(&partial))?;
            f.write_all(&file.encode_to_vec()).map_err(io(&partial))?;
            f.sync_all().map_err(io(&partial))?;
        }
        std::fs::rename(&partial, &path).map_err(io(&path))?;
        std::fs::File::open(&self.dir)
            .and_then(|d| d.sync_all())
            .map_err(io(&self.dir))?;
        Ok(())
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn hard_state(&self) -> &HardState {
        &self.hard_state
    }

    pub fn conf_state(&self) -> &ConfState {
        &self.conf_state
    }

    /// Index of the snapshot the log starts after.
    pub fn snapshot_index(&self) -> u64 {
        self.snapshot_meta.index
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

    /// Records a newer commit index. Not synced: a lost commit index is
    /// learnt again from the leader (or, alone, by committing anew).
    pub fn set_commit(&mut self, commit: u64) -> Result<(), raft_engine::Error> {
        let mut hs = self.hard_state.clone();
        hs.commit = commit;
        let mut batch = LogBatch::default();
        batch.put_message(GROUP, KEY_HARD_STATE.to_vec(), &hs)?;
        self.engine.write(&mut batch, false)?;
        self.hard_state = hs;
        Ok(())
    }

    /// The membership after a configuration change applied in memory.
    pub fn set_conf_state(&mut self, conf: ConfState) {
        self.conf_state = conf;
    }

    /// Replaces the whole log with a snapshot received from the leader:
    /// snapshot file first, then the entries go. Returns its state.
    pub fn apply_snapshot(&mut self, snapshot: &Snapshot) -> Result<State, StorageFailure> {
        let meta = snapshot.get_metadata();
        let path = self.dir.join(SNAPSHOT_FILE);
        let state =
            State::from_snapshot_bytes(&snapshot.data).map_err(|e| StorageFailure::Damaged {
                path: PathBuf::from(format!("snapshot from the leader at index {}", meta.index)),
                why: e.to_string(),
            })?;
        let file = self.snapshot_file(
            meta.index,
            meta.term,
            meta.get_conf_state(),
            snapshot.data.to_vec(),
        );
        self.write_snapshot_file(&file)?;
        self.install_meta(&file)?;
        let engine_error = |source| StorageFailure::Engine {
            dir: path.display().to_string(),
            source,
        };
        let mut hs = self.hard_state.clone();
        hs.commit = hs.commit.max(meta.index);
        hs.term = hs.term.max(meta.term);
        let mut batch = LogBatch::default();
        batch.add_command(GROUP, Command::Clean);
        batch
            .put_message(GROUP, KEY_HARD_STATE.to_vec(), &hs)
            .map_err(engine_error)?;
        self.engine.write(&mut batch, true).map_err(engine_error)?;
        self.hard_state = hs;
        Ok(state)
    }

    /// Saves `state` (the state at applied index `index`) as the snapshot and
    /// drops the log entries up to it.
    pub fn compact(&mut self, index: u64, state: Vec<u8>) -> Result<(), StorageFailure> {
        let term = raft::Storage::term(self, index).map_err(|e| StorageFailure::Damaged {
            path: self.dir.join("raft"),
            why: format!("no term for index {index}: {e}"),
        })?;
        let file = self.snapshot_file(index, term, &self.conf_state.clone(), state);
        self.write_snapshot_file(&file)?;
        self.snapshot_meta.index = index;
        self.snapshot_meta.term = term;
        self.snapshot_meta.set_conf_state(self.conf_state.clone());
        self.engine.compact_to(GROUP, index + 1);
        if let Err(e) = self.engine.purge_expired_files() {
            tracing::warn!(error = %e, "raft log files not purged after compaction");
        }
        Ok(())
    }

    fn first(&self) -> u64 {
        self.engine
            .first_index(GROUP)
            .map_or(self.snapshot_meta.index + 1, |f| {
                f.max(self.snapshot_meta.index + 1)
            })
    }

    fn last(&self) -> u64 {
        self.engine
            .last_index(GROUP)
            .map_or(self.snapshot_meta.index, |l| {
                l.max(self.snapshot_meta.index)
            })
    }
}

/// Reads `path` if it exists.
fn read_snapshot_file(path: &Path) -> Result<Option<pb::SnapshotFile>, StorageFailure> {
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(source) => {
            return Err(StorageFailure::Io {
                path: path.to_path_buf(),
                source,
            })
        }
    };
    pb::SnapshotFile::decode(&bytes[..])
        .map(Some)
        .map_err(|e| StorageFailure::Damaged {
            path: path.to_path_buf(),
            why: e.to_string(),
        })
}

fn engine_error(e: raft_engine::Error) -> raft::Error {
    raft::Error::Store(StorageError::Other(Box::new(e)))
}

impl raft::Storage for LogStorage {
    fn initial_state(&self) -> raft::Result<RaftState> {
        Ok(RaftState {
            hard_state: self.hard_state.clone(),
            conf_state: self.snapshot_meta.get_conf_state().clone(),
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

    /// The state at the applied index, with the membership then.
    fn snapshot(&self, request_index: u64, _to: u64) -> raft::Result<Snapshot> {
        let state = self.state.read().unwrap_or_else(|e| e.into_inner());
        let index = state.applied_index();
        if index < request_index || index < self.snapshot_meta.index {
            return Err(raft::Error::Store(
                StorageError::SnapshotTemporarilyUnavailable,
            ));
        }
        let mut snapshot = Snapshot {
            data: state.encode_snapshot().into(),
            ..Default::default()
        };
        drop(state);
        let meta = snapshot.mut_metadata();
        meta.index = index;
        meta.term = self.term(index)?;
        meta.set_conf_state(self.conf_state.clone());
        Ok(snapshot)
    }
}

#[cfg(test)]
mod tests;
