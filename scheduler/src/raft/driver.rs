//! The raft thread: owns the `RawNode`, turns proposals into log entries,
//! handles each `Ready` in the order raft-rs documents, and applies committed
//! entries to the state.

use std::collections::HashMap;
use std::sync::{mpsc, Arc, RwLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use genfleet_proto as pb;
use prost::Message as _;
use protobuf::Message as _;
use raft::eraftpb::{ConfChange, ConfChangeV2, Entry, EntryType, Message};
use raft::{RawNode, StateRole};
use tokio::sync::{broadcast, oneshot, watch};

use super::storage::{LogStorage, StorageFailure};
use super::{Applied, Input, JobEvent, ProposeError, RaftConfig, RaftHandle, RaftStatus, Role};
use crate::metrics::Metrics;
use crate::state::{Rejection, State, LOG_ENTRY_VERSION};

/// Inputs taken from the inbox before one `Ready` is handled: proposals that
/// arrive together share one fsync.
const MAX_INPUTS_PER_READY: usize = 4096;
const EVENT_BUFFER: usize = 4096;

#[derive(Debug, thiserror::Error)]
pub enum DriverError {
    #[error(transparent)]
    Storage(#[from] StorageFailure),
    #[error("raft: {0}")]
    Raft(#[from] raft::Error),
    #[error("writing the raft log: {0}")]
    Write(#[from] raft_engine::Error),
    #[error("decoding a configuration change at index {index}: {source}")]
    ConfChange {
        index: u64,
        #[source]
        source: protobuf::ProtobufError,
    },
    #[error("starting the raft thread: {0}")]
    Thread(#[from] std::io::Error),
}

/// Where raft messages for other replicas go.
pub trait Transport: Send + 'static {
    fn send(&mut self, messages: Vec<Message>);
}

/// The transport of a single-replica cluster: there is nobody to send to.
pub struct NoPeers;

impl Transport for NoPeers {
    fn send(&mut self, messages: Vec<Message>) {
        for m in messages {
            tracing::warn!(
                to = m.to,
                "dropping a raft message: no peer transport is configured"
            );
        }
    }
}

/// The running raft thread; joins it on [`RaftThread::stop`].
pub struct RaftThread {
    handle: RaftHandle,
    thread: Option<JoinHandle<Result<(), DriverError>>>,
}

impl RaftThread {
    /// Asks the thread to stop and waits for it (pending proposals fail).
    pub async fn stop(mut self) -> Result<(), DriverError> {
        self.handle.shutdown();
        let Some(thread) = self.thread.take() else {
            return Ok(());
        };
        match tokio::task::spawn_blocking(move || thread.join()).await {
            Ok(Ok(result)) => result,
            Ok(Err(_)) | Err(_) => Err(DriverError::Thread(std::io::Error::other(
                "the raft thread panicked",
            ))),
        }
    }
}

impl Drop for RaftThread {
    fn drop(&mut self) {
        self.handle.shutdown();
    }
}

/// Opens the log, replays it into a fresh state and starts the raft thread.
pub fn spawn(
    config: RaftConfig,
    metrics: Metrics,
    transport: Box<dyn Transport>,
) -> Result<(RaftHandle, RaftThread), DriverError> {
    let storage = LogStorage::open(&config.log_dir, &config.voters)?;
    let raft_config = raft::Config {
        id: config.id,
        election_tick: config.election_ticks,
        heartbeat_tick: config.heartbeat_ticks,
        max_size_per_msg: 1024 * 1024,
        max_inflight_msgs: 256,
        check_quorum: true,
        pre_vote: true,
        ..Default::default()
    };
    raft_config.validate()?;
    let mut node = RawNode::new(&raft_config, storage, &super::logger::raft_logger())?;
    // The only voter needs no election timeout to know it wins.
    let voters = &node.store().conf_state().voters;
    if voters.len() == 1 && voters[0] == config.id {
        node.campaign()?;
    }

    let (inbox, inputs) = mpsc::channel();
    let state = Arc::new(RwLock::new(State::default()));
    let (status_tx, status) = watch::channel(RaftStatus {
        id: config.id,
        role: Role::Follower,
        leader: None,
        term: node.raft.term,
        commit: node.raft.raft_log.committed,
        applied: 0,
        leader_ready: false,
    });
    let (events, _) = broadcast::channel(EVENT_BUFFER);
    let handle = RaftHandle {
        inbox,
        state: state.clone(),
        status,
        events: events.clone(),
        metrics: metrics.clone(),
    };
    let mut driver = Driver {
        node,
        tick: config.tick,
        inputs,
        transport,
        state,
        status: status_tx,
        events,
        metrics,
        pending: HashMap::new(),
        next_proposal: 1,
        incarnation: rand::random(),
        role: Role::Follower,
    };
    let thread = std::thread::Builder::new()
        .name(format!("raft-{}", config.id))
        .spawn(move || driver.run())?;
    Ok((
        handle.clone(),
        RaftThread {
            handle,
            thread: Some(thread),
        },
    ))
}

struct PendingProposal {
    reply: oneshot::Sender<Result<Applied, ProposeError>>,
}

struct Driver {
    node: RawNode<LogStorage>,
    tick: Duration,
    inputs: mpsc::Receiver<Input>,
    transport: Box<dyn Transport>,
    state: Arc<RwLock<State>>,
    status: watch::Sender<RaftStatus>,
    events: broadcast::Sender<JobEvent>,
    metrics: Metrics,
    /// Proposals of this replica waiting to be applied, by proposal number.
    pending: HashMap<u64, PendingProposal>,
    next_proposal: u64,
    /// Random per start: entries proposed by an earlier run of this replica
    /// (replayed from the log) never match this run's pending proposals.
    incarnation: u64,
    role: Role,
}

impl Driver {
    fn run(&mut self) -> Result<(), DriverError> {
        let result = self.run_loop();
        if let Err(e) = &result {
            tracing::error!(error = %e, log = self.node.store().dir(), "raft replica stopped");
        }
        self.fail_pending(ProposeError::Stopped);
        result
    }

    fn run_loop(&mut self) -> Result<(), DriverError> {
        let mut next_tick = Instant::now() + self.tick;
        loop {
            let wait = next_tick.saturating_duration_since(Instant::now());
            match self.inputs.recv_timeout(wait) {
                Ok(input) => {
                    if !self.handle_input(input)? {
                        return Ok(());
                    }
                    for _ in 0..MAX_INPUTS_PER_READY {
                        let Ok(input) = self.inputs.try_recv() else {
                            break;
                        };
                        if !self.handle_input(input)? {
                            return Ok(());
                        }
                    }
                }
                Err(mpsc::RecvTimeoutError::Timeout) => {}
                Err(mpsc::RecvTimeoutError::Disconnected) => return Ok(()),
            }
            let now = Instant::now();
            if now >= next_tick {
                self.node.tick();
                // After a long stall, tick once rather than catch up in a burst.
                next_tick = (next_tick + self.tick).max(now);
            }
            self.handle_ready()?;
        }
    }

    /// Returns false when asked to stop.
    fn handle_input(&mut self, input: Input) -> Result<bool, DriverError> {
        match input {
            Input::Propose { command, reply } => self.propose(command, reply),
            Input::Step(message) => {
                if let Err(e) = self.node.step(*message) {
                    tracing::debug!(error = %e, "ignored a raft message");
                }
            }
            Input::Shutdown => return Ok(false),
        }
        Ok(true)
    }

    fn propose(
        &mut self,
        command: pb::Command,
        reply: oneshot::Sender<Result<Applied, ProposeError>>,
    ) {
        if self.node.raft.state != StateRole::Leader {
            let leader = Some(self.node.raft.leader_id).filter(|l| *l != 0);
            let _ = reply.send(Err(ProposeError::NotLeader { leader }));
            return;
        }
        // The leader stamps the time; apply never reads a clock.
        let entry = pb::LogEntry {
            version: LOG_ENTRY_VERSION,
            at_ms: unix_ms(),
            command: Some(command),
        };
        let number = self.next_proposal;
        self.next_proposal += 1;
        let context = proposal_context(self.node.raft.id, self.incarnation, number);
        match self.node.propose(context, entry.encode_to_vec()) {
            Ok(()) => {
                self.pending.insert(number, PendingProposal { reply });
            }
            Err(e) => {
                let _ = reply.send(Err(ProposeError::Refused(e.to_string())));
            }
        }
    }

    /// Handles one `Ready`, in the order raft-rs documents for it.
    fn handle_ready(&mut self) -> Result<(), DriverError> {
        if !self.node.has_ready() {
            return Ok(());
        }
        let mut ready = self.node.ready();

        // 1. A leader may send its messages before it persists its own log.
        self.transport.send(ready.take_messages());

        // 2. A snapshot from the leader. This build never compacts its log,
        // so none is ever produced; refuse one loudly rather than diverge.
        if !ready.snapshot().is_empty() {
            return Err(DriverError::Raft(raft::Error::Store(
                raft::StorageError::SnapshotTemporarilyUnavailable,
            )));
        }

        // 3. Apply what is committed (entries persisted by earlier readies).
        self.apply_entries(ready.take_committed_entries())?;

        // 4 and 5. New entries and the hard state: one synced write.
        self.node.mut_store().append(ready.entries(), ready.hs())?;

        // 6. Votes and append responses only once the log is on disk.
        self.transport.send(ready.take_persisted_messages());

        if let Some(soft) = ready.ss() {
            self.on_role_change(soft.raft_state, soft.leader_id);
        }

        // 7. Advance, then handle what that made ready: the commit index
        // (not synced: a lost one is recomputed by the next leader), more
        // messages and newly committed entries.
        let mut light = self.node.advance(ready);
        if let Some(commit) = light.commit_index() {
            self.node.mut_store().set_commit(commit)?;
        }
        self.transport.send(light.take_messages());
        self.apply_entries(light.take_committed_entries())?;
        self.node.advance_apply();
        self.publish_status();
        Ok(())
    }

    fn apply_entries(&mut self, entries: Vec<Entry>) -> Result<(), DriverError> {
        if entries.is_empty() {
            return Ok(());
        }
        let shared = self.state.clone();
        let mut state = shared.write().unwrap_or_else(|e| e.into_inner());
        for entry in entries {
            let index = entry.index;
            match entry.get_entry_type() {
                EntryType::EntryNormal if entry.data.is_empty() => state.skip(index),
                EntryType::EntryNormal => {
                    let result = match pb::LogEntry::decode(&entry.data[..]) {
                        Ok(log_entry) => state.apply(index, &log_entry),
                        Err(_) => Err(Rejection::Malformed("log entry is not a genfleet LogEntry")),
                    };
                    if let Err(rejection) = &result {
                        tracing::debug!(index, %rejection, "command rejected at apply");
                    }
                    for job in state.changed_jobs() {
                        let _ = self.events.send(JobEvent {
                            index,
                            job: job.to_proto(),
                        });
                    }
                    self.reply(&entry.context, Applied { index, result });
                }
                EntryType::EntryConfChange | EntryType::EntryConfChangeV2 => {
                    let conf = self.apply_conf_change(&entry)?;
                    self.node.mut_store().set_conf_state(conf)?;
                    state.skip(index);
                }
            }
        }
        self.metrics
            .raft_applied_index
            .set(state.applied_index() as i64);
        for (job_state, count) in state.count_by_state() {
            self.metrics
                .jobs
                .with_label_values(&[job_state.label()])
                .set(count as i64);
        }
        Ok(())
    }

    fn apply_conf_change(
        &mut self,
        entry: &Entry,
    ) -> Result<raft::eraftpb::ConfState, DriverError> {
        let wrap = |source| DriverError::ConfChange {
            index: entry.index,
            source,
        };
        let conf = if entry.get_entry_type() == EntryType::EntryConfChange {
            let mut cc = ConfChange::default();
            cc.merge_from_bytes(&entry.data).map_err(wrap)?;
            self.node.apply_conf_change(&cc)?
        } else {
            let mut cc = ConfChangeV2::default();
            cc.merge_from_bytes(&entry.data).map_err(wrap)?;
            self.node.apply_conf_change(&cc)?
        };
        Ok(conf)
    }

    /// Answers the proposer of an applied entry, if it was proposed here.
    fn reply(&mut self, context: &[u8], applied: Applied) {
        let Some((id, incarnation, number)) = parse_proposal_context(context) else {
            return;
        };
        if id != self.node.raft.id || incarnation != self.incarnation {
            return;
        }
        if let Some(p) = self.pending.remove(&number) {
            let _ = p.reply.send(Ok(applied));
        }
    }

    fn on_role_change(&mut self, raft_state: StateRole, leader: u64) {
        let role = match raft_state {
            StateRole::Leader => Role::Leader,
            StateRole::Candidate | StateRole::PreCandidate => Role::Candidate,
            StateRole::Follower => Role::Follower,
        };
        if self.role == Role::Leader && role != Role::Leader {
            self.fail_pending(ProposeError::LeadershipLost);
        }
        if role != self.role {
            tracing::info!(
                id = self.node.raft.id,
                role = role.label(),
                leader,
                term = self.node.raft.term,
                "raft role changed"
            );
        }
        if leader != 0 && Some(leader) != self.status.borrow().leader {
            self.metrics.raft_leader_changes.inc();
        }
        self.role = role;
    }

    fn fail_pending(&mut self, error: ProposeError) {
        for (_, p) in self.pending.drain() {
            let _ = p.reply.send(Err(error.clone()));
        }
    }

    fn publish_status(&mut self) {
        let raft = &self.node.raft;
        let leader = Some(raft.leader_id).filter(|l| *l != 0);
        let log = &raft.raft_log;
        let leader_ready = self.role == Role::Leader
            && log.applied >= log.committed
            && log.term(log.committed).ok() == Some(raft.term);
        let status = RaftStatus {
            id: raft.id,
            role: self.role,
            leader,
            term: raft.term,
            commit: log.committed,
            applied: log.applied,
            leader_ready,
        };
        self.metrics.raft_term.set(status.term as i64);
        self.metrics.raft_commit_index.set(status.commit as i64);
        for role in Role::ALL {
            let value = i64::from(role == self.role);
            self.metrics
                .replica_role
                .with_label_values(&[role.label()])
                .set(value);
        }
        self.status.send_if_modified(|current| {
            let changed = *current != status;
            *current = status;
            changed
        });
    }
}

fn unix_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// A proposal's context: the proposing replica's id, the run of it that
/// proposed, and the proposal's number in that run.
fn proposal_context(id: u64, incarnation: u64, number: u64) -> Vec<u8> {
    [id, incarnation, number]
        .iter()
        .flat_map(|v| v.to_be_bytes())
        .collect()
}

fn parse_proposal_context(context: &[u8]) -> Option<(u64, u64, u64)> {
    let word = |i: usize| -> Option<u64> {
        Some(u64::from_be_bytes(
            context.get(i * 8..i * 8 + 8)?.try_into().ok()?,
        ))
    };
    Some((word(0)?, word(1)?, word(2)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proposal_contexts_round_trip_and_reject_garbage() {
        let context = proposal_context(3, 0xfeed, 42);
        assert_eq!(parse_proposal_context(&context), Some((3, 0xfeed, 42)));
        assert_eq!(parse_proposal_context(&context[..20]), None);
        assert_eq!(parse_proposal_context(b""), None);
    }
}
