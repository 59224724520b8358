//! One raft replica without threads, clocks or sockets: the raft-rs
//! `RawNode`, its log on disk and the state it applies to. The driver
//! thread feeds it real time and a real network; the simulation tests feed
//! it simulated ones. Given the same inputs it does the same thing.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, RwLock};

use genfleet_proto as pb;
use prost::Message as _;
use raft::eraftpb::{ConfChangeV2, Message};
use raft::{RawNode, SnapshotStatus, StateRole};
use tokio::sync::{broadcast, oneshot};

mod apply;
mod peer_checks;

use super::storage::{Bootstrap, LogStorage, StorageFailure};
use super::{Applied, JobEvent, PeerProgress, ProposeError, RaftStatus, Role};
use crate::metrics::Metrics;
use crate::state::{State, LOG_ENTRY_VERSION};

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

/// Where raft messages for other replicas go, and what it learnt of them.
pub trait Transport: Send + 'static {
    fn send(&mut self, messages: Vec<Message>);
    /// Peers found unreachable and snapshots delivered or lost since the last call.
    fn feedback(&mut self) -> Vec<Feedback> {
        Vec::new()
    }
}

/// What a transport reports back to raft.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Feedback {
    Unreachable(u64),
    Snapshot { to: u64, delivered: bool },
}

/// How one replica is set up.
#[derive(Debug, Clone)]
pub struct ReplicaConfig {
    pub id: u64,
    /// Holds `raft/` (the log) and `snapshot.bin`.
    pub dir: PathBuf,
    pub bootstrap: Bootstrap,
    pub election_ticks: usize,
    pub heartbeat_ticks: usize,
    /// Randomized election timeout range in ticks, `[min, max)`; None for
    /// raft-rs's default `[election, 2 * election)`. Simulations give each
    /// replica a range of one so that runs repeat exactly.
    pub election_range: Option<(usize, usize)>,
    /// Applied entries between snapshots (log compaction).
    pub snapshot_every: u64,
    /// Distinguishes this run's proposals from an earlier run's.
    pub incarnation: u64,
}

type ProposalReply = oneshot::Sender<Result<Applied, ProposeError>>;
type ReadReply = oneshot::Sender<Result<u64, ProposeError>>;

pub struct Replica {
    node: RawNode<LogStorage>,
    state: Arc<RwLock<State>>,
    events: broadcast::Sender<JobEvent>,
    metrics: Metrics,
    /// Proposals of this run waiting to be applied, by number.
    proposals: HashMap<u64, ProposalReply>,
    /// Reads waiting for raft to confirm a read index, by number.
    reads: HashMap<u64, ReadReply>,
    /// Reads with a read index, waiting for the state to reach it.
    read_waits: Vec<(u64, ReadReply)>,
    next_request: u64,
    incarnation: u64,
    role: Role,
    leader: Option<u64>,
    snapshot_every: u64,
}

impl Replica {
    /// Opens the log (loading its snapshot) and creates the raft node.
    pub fn open(
        config: &ReplicaConfig,
        metrics: Metrics,
        events: broadcast::Sender<JobEvent>,
    ) -> Result<Self, DriverError> {
        let state = Arc::new(RwLock::new(State::default()));
        let opened = LogStorage::open(&config.dir, &config.bootstrap, state.clone())?;
        let applied = opened.state.applied_index();
        *state.write().unwrap_or_else(|e| e.into_inner()) = opened.state;
        let mut raft_config = raft::Config {
            id: config.id,
            election_tick: config.election_ticks,
            heartbeat_tick: config.heartbeat_ticks,
            applied,
            max_size_per_msg: 1024 * 1024,
            max_inflight_msgs: 256,
            check_quorum: true,
            pre_vote: true,
            // Followers learn a new commit index from the next append or
            // heartbeat instead of an extra append sent only to tell them:
            // under load that halves the leader's messages.
            skip_bcast_commit: true,
            // Appends to a peer made in one ready travel as one message.
            batch_append: true,
            ..Default::default()
        };
        if let Some((min, max)) = config.election_range {
            raft_config.min_election_tick = min;
            raft_config.max_election_tick = max;
        }
        raft_config.validate()?;
        let fresh = opened.storage.snapshot_index() == 1 && opened.storage.hard_state().term == 1;
        let mut node = RawNode::new(&raft_config, opened.storage, &super::logger::raft_logger())?;
        // A new cluster need not wait an election timeout: its lowest voter
        // campaigns at once (alone, it simply wins).
        let voters = node.store().conf_state().voters.clone();
        if fresh && voters.iter().min() == Some(&config.id) {
            node.campaign()?;
        }
        let replica = Self {
            node,
            state,
            events,
            metrics,
            proposals: HashMap::new(),
            reads: HashMap::new(),
            read_waits: Vec::new(),
            next_request: 1,
            incarnation: config.incarnation,
            role: Role::Follower,
            leader: None,
            snapshot_every: config.snapshot_every.max(1),
        };
        replica.publish_role();
        Ok(replica)
    }

    pub fn id(&self) -> u64 {
        self.node.raft.id
    }

    /// The state this replica has applied.
    pub fn state(&self) -> Arc<RwLock<State>> {
        self.state.clone()
    }

    fn request_number(&mut self) -> u64 {
        let n = self.next_request;
        self.next_request += 1;
        n
    }

    fn not_leader(&self) -> ProposeError {
        ProposeError::NotLeader {
            leader: self.leader.filter(|l| *l != self.id()),
        }
    }

    /// Proposes `command`, stamped with `at_ms`; `reply` gets the outcome
    /// once it is applied.
    pub fn propose(&mut self, command: pb::Command, at_ms: i64, reply: ProposalReply) {
        if self.node.raft.state != StateRole::Leader {
            let _ = reply.send(Err(self.not_leader()));
            return;
        }
        let entry = pb::LogEntry {
            version: LOG_ENTRY_VERSION,
            at_ms,
            command: Some(command),
        };
        let number = self.request_number();
        let context = request_context(self.id(), self.incarnation, number);
        match self.node.propose(context, entry.encode_to_vec()) {
            Ok(()) => {
                self.proposals.insert(number, reply);
            }
            Err(e) => {
                let _ = reply.send(Err(ProposeError::Refused(e.to_string())));
            }
        }
    }

    /// Proposes a membership change; the context carries the addresses of
    /// the replicas it adds.
    pub fn propose_conf_change(&mut self, change: ConfChangeV2, reply: ProposalReply) {
        if self.node.raft.state != StateRole::Leader {
            let _ = reply.send(Err(self.not_leader()));
            return;
        }
        let number = self.request_number();
        let context = request_context(self.id(), self.incarnation, number);
        match self.node.propose_conf_change(context, change) {
            Ok(()) => {
                self.proposals.insert(number, reply);
            }
            Err(e) => {
                let _ = reply.send(Err(ProposeError::Refused(e.to_string())));
            }
        }
    }

    /// Asks for a linearizable read point (ReadIndex); `reply` gets the
    /// index once this replica has applied up to it. Works on followers too.
    pub fn read_index(&mut self, reply: ReadReply) {
        if self.leader.is_none() {
            let _ = reply.send(Err(ProposeError::NotLeader { leader: None }));
            return;
        }
        let number = self.request_number();
        self.reads.insert(number, reply);
        self.node
            .read_index(request_context(self.id(), self.incarnation, number));
    }

    pub fn step(&mut self, message: Message) {
        let log = &self.node.raft.raft_log;
        if let Some(why) = peer_checks::refusal(&message, log.last_index(), log.committed) {
            tracing::warn!(from = message.from, %why, "refused a raft message from a peer");
            return;
        }
        if let Err(e) = self.node.step(message) {
            tracing::debug!(error = %e, "ignored a raft message");
        }
    }

    pub fn tick(&mut self) {
        self.node.tick();
    }

    pub fn transfer_leader(&mut self, to: u64) {
        self.node.transfer_leader(to);
    }

    pub fn feedback(&mut self, feedback: Feedback) {
        match feedback {
            Feedback::Unreachable(id) => self.node.report_unreachable(id),
            Feedback::Snapshot { to, delivered } => {
                let status = if delivered {
                    SnapshotStatus::Finish
                } else {
                    SnapshotStatus::Failure
                };
                self.node.report_snapshot(to, status);
            }
        }
    }

    /// Handles one `Ready`, in the order raft-rs documents for it.
    pub fn handle_ready(&mut self, transport: &mut dyn Transport) -> Result<(), DriverError> {
        if !self.node.has_ready() {
            return Ok(());
        }
        let mut ready = self.node.ready();

        // 1. A leader may send its messages before it persists its own log:
        // followers write in parallel with it.
        transport.send(ready.take_messages());

        // 2. A snapshot from the leader replaces log and state.
        if !ready.snapshot().is_empty() {
            let restored = self.node.mut_store().apply_snapshot(ready.snapshot())?;
            self.install_state(restored);
        }

        // 3. Apply what is committed (entries persisted by earlier readies).
        self.apply_entries(ready.take_committed_entries())?;

        // 4 and 5. New entries and the hard state: one synced write.
        self.node.mut_store().append(ready.entries(), ready.hs())?;

        // 6. Votes and append responses only once the log is on disk.
        transport.send(ready.take_persisted_messages());

        if let Some(soft) = ready.ss() {
            self.on_role_change(soft.raft_state, soft.leader_id);
        }
        for read in ready.take_read_states() {
            if let Some((_, _, number)) = self.own_context(&read.request_ctx) {
                if let Some(reply) = self.reads.remove(&number) {
                    self.read_waits.push((read.index, reply));
                }
            }
        }

        // 7. Advance, then handle what that made ready.
        let mut light = self.node.advance(ready);
        if let Some(commit) = light.commit_index() {
            self.node.mut_store().set_commit(commit)?;
        }
        transport.send(light.take_messages());
        self.apply_entries(light.take_committed_entries())?;
        self.node.advance_apply();
        self.release_reads();
        self.maybe_compact()?;
        Ok(())
    }

    /// Replaces the state with one restored from a snapshot; every job is
    /// announced as changed.
    fn install_state(&mut self, restored: State) {
        let index = restored.applied_index();
        let jobs: Vec<pb::Job> = restored.jobs().map(|j| j.to_proto()).collect();
        *self.state.write().unwrap_or_else(|e| e.into_inner()) = restored;
        for job in jobs {
            let _ = self.events.send(JobEvent { index, job });
        }
        tracing::info!(
            id = self.id(),
            index,
            "state restored from the leader's snapshot"
        );
    }

    /// (replica id, incarnation, number) of a context made by this run.
    fn own_context(&self, context: &[u8]) -> Option<(u64, u64, u64)> {
        let parsed = parse_request_context(context)?;
        (parsed.0 == self.id() && parsed.1 == self.incarnation).then_some(parsed)
    }

    /// Answers the proposer of an applied entry, if it was proposed here.
    fn reply(&mut self, context: &[u8], applied: Applied) {
        if let Some((_, _, number)) = self.own_context(context) {
            if let Some(reply) = self.proposals.remove(&number) {
                let _ = reply.send(Ok(applied));
            }
        }
    }

    /// Answers reads whose read index the state has reached.
    fn release_reads(&mut self) {
        let applied = self.node.raft.raft_log.applied;
        let (ready, waiting): (Vec<_>, Vec<_>) = self
            .read_waits
            .drain(..)
            .partition(|(index, _)| *index <= applied);
        self.read_waits = waiting;
        for (_, reply) in ready {
            let _ = reply.send(Ok(applied));
        }
    }

    /// Saves a snapshot and compacts the log every `snapshot_every` entries.
    fn maybe_compact(&mut self) -> Result<(), DriverError> {
        let applied = self.node.raft.raft_log.applied;
        if applied < self.node.store().snapshot_index() + self.snapshot_every {
            return Ok(());
        }
        let bytes = self
            .state
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .encode_snapshot();
        self.node.mut_store().compact(applied, bytes)?;
        tracing::debug!(
            id = self.id(),
            index = applied,
            "log compacted up to a snapshot"
        );
        Ok(())
    }

    fn on_role_change(&mut self, raft_state: StateRole, leader: u64) {
        let role = match raft_state {
            StateRole::Leader => Role::Leader,
            StateRole::Candidate | StateRole::PreCandidate => Role::Candidate,
            StateRole::Follower => Role::Follower,
        };
        if self.role == Role::Leader && role != Role::Leader {
            self.fail_proposals(ProposeError::LeadershipLost);
        }
        if role != self.role {
            tracing::info!(
                id = self.id(),
                role = role.label(),
                leader,
                term = self.node.raft.term,
                "raft role changed"
            );
        }
        let leader = Some(leader).filter(|l| *l != 0);
        if leader.is_some() && leader != self.leader {
            self.metrics.raft_leader_changes.inc();
        }
        self.leader = leader;
        self.role = role;
        self.publish_role();
    }

    fn fail_proposals(&mut self, error: ProposeError) {
        for (_, reply) in self.proposals.drain() {
            let _ = reply.send(Err(error.clone()));
        }
    }

    /// Fails everything waiting: the replica is stopping.
    pub fn fail_all(&mut self) {
        self.fail_proposals(ProposeError::Stopped);
        for (_, reply) in self.reads.drain() {
            let _ = reply.send(Err(ProposeError::Stopped));
        }
        for (_, reply) in self.read_waits.drain(..) {
            let _ = reply.send(Err(ProposeError::Stopped));
        }
    }

    /// Raft as this replica sees it now; updates the raft metrics.
    pub fn status(&self) -> RaftStatus {
        let raft = &self.node.raft;
        let log = &raft.raft_log;
        let leader_ready = self.role == Role::Leader
            && log.applied >= log.committed
            && log.term(log.committed).ok() == Some(raft.term);
        // Applied is never below the snapshot index, whose term the log
        // keeps: an error here is unexpected and counts as not current.
        let applied_current_term = log.term(log.applied).ok() == Some(raft.term);
        let conf = self.node.store().conf_state();
        let sorted = |ids: &[u64]| {
            let mut ids = ids.to_vec();
            ids.sort_unstable();
            ids
        };
        let progress = if self.role == Role::Leader {
            raft.prs()
                .iter()
                .map(|(id, p)| PeerProgress {
                    id: *id,
                    matched: p.matched,
                    next: p.next_idx,
                    state: match p.state {
                        raft::ProgressState::Probe => "probe",
                        raft::ProgressState::Replicate => "replicate",
                        raft::ProgressState::Snapshot => "snapshot",
                    },
                    recent_active: p.recent_active,
                })
                .collect()
        } else {
            Vec::new()
        };
        let status = RaftStatus {
            id: raft.id,
            role: self.role,
            leader: self.leader,
            term: raft.term,
            commit: log.committed,
            applied: log.applied,
            last_index: log.last_index(),
            snapshot_index: self.node.store().snapshot_index(),
            leader_ready,
            applied_current_term,
            voters: sorted(&conf.voters),
            learners: sorted(&conf.learners),
            progress,
            stopped: None,
        };
        self.metrics.raft_term.set(status.term as i64);
        self.metrics.raft_commit_index.set(status.commit as i64);
        status
    }

    /// Sets the role gauges: 1 for the role held, 0 for the others.
    fn publish_role(&self) {
        for role in Role::ALL {
            self.metrics
                .replica_role
                .with_label_values(&[role.label()])
                .set(i64::from(role == self.role));
        }
    }
}

/// A request's context: the replica that made it, the run of it, and the
/// request's number in that run. Entries replayed from an earlier run (or
/// proposed by another replica) never match this run's waiting requests.
fn request_context(id: u64, incarnation: u64, number: u64) -> Vec<u8> {
    [id, incarnation, number]
        .iter()
        .flat_map(|v| v.to_be_bytes())
        .collect()
}

fn parse_request_context(context: &[u8]) -> Option<(u64, u64, u64)> {
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
    fn request_contexts_round_trip_and_reject_garbage() {
        let context = request_context(3, 0xfeed, 42);
        assert_eq!(parse_request_context(&context), Some((3, 0xfeed, 42)));
        assert_eq!(parse_request_context(&context[..20]), None);
        assert_eq!(parse_request_context(b""), None);
    }
}
