//! The raft replica: [`replica::Replica`] is raft-rs's `RawNode` with its
//! log and the replicated [`State`], free of threads and clocks; the driver
//! runs it on a thread in real time, and the rest of the scheduler talks to
//! that thread through a [`RaftHandle`].

mod driver;
mod logger;
pub mod replica;
pub mod storage;
pub mod transport;

use std::sync::{mpsc, Arc, RwLock};
use std::time::Duration;

use genfleet_proto as pb;
use raft::eraftpb::ConfChangeV2;
use tokio::sync::{broadcast, oneshot, watch};

use crate::metrics::Metrics;
use crate::state::{Outcome, Rejection, State};

pub use driver::{spawn, RaftThread};
pub use replica::{DriverError, Feedback, Replica, ReplicaConfig, Transport};
pub use storage::Bootstrap;

/// How long a call waits for a leader while an election is under way.
const LEADER_WAIT: Duration = Duration::from_secs(5);
/// How long a linearizable read waits for its read index.
const READ_WAIT: Duration = Duration::from_secs(5);
/// Bytes of peers' raft messages that may wait for the raft thread at
/// once; past it, the transport stops reading peers' streams until the
/// thread catches up. A snapshot larger than this waits for an empty inbox.
pub const PEER_INBOX_BYTES: usize = 256 * 1024 * 1024;

/// The role of this replica in raft, as a label value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Follower,
    Candidate,
    Leader,
}

impl Role {
    pub const ALL: [Role; 3] = [Role::Follower, Role::Candidate, Role::Leader];

    pub fn label(self) -> &'static str {
        match self {
            Role::Follower => "follower",
            Role::Candidate => "candidate",
            Role::Leader => "leader",
        }
    }
}

/// What this replica knows of raft now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RaftStatus {
    pub id: u64,
    pub role: Role,
    /// Current leader's id, if one is known.
    pub leader: Option<u64>,
    pub term: u64,
    pub commit: u64,
    pub applied: u64,
    pub last_index: u64,
    /// The index the log starts after (its snapshot).
    pub snapshot_index: u64,
    /// This replica leads and has applied every entry committed before its
    /// term began (its own first entry is applied): its state is current.
    pub leader_ready: bool,
    /// The entry at `applied` is of the current term: this replica has
    /// applied the current leader's first entry, so its state includes
    /// everything committed before that leader took over.
    pub applied_current_term: bool,
    pub voters: Vec<u64>,
    pub learners: Vec<u64>,
    /// Replication progress of every member (on the leader only).
    pub progress: Vec<PeerProgress>,
    /// Why the raft thread stopped, if it stopped on an error (a raft log
    /// that cannot be written: a full disk). The replica takes no more work.
    pub stopped: Option<String>,
}

impl RaftStatus {
    /// Whether this replica should take traffic (a Kubernetes readiness
    /// probe): it knows a leader, is a member, and has applied an entry of
    /// the current term, so requests it forwards find a leader and its
    /// reads are not from an older term.
    pub fn readiness(&self) -> Result<(), NotReady> {
        if let Some(why) = &self.stopped {
            return Err(NotReady::Stopped(why.clone()));
        }
        if self.leader.is_none() {
            return Err(NotReady::NoLeader);
        }
        // A removed replica that applied its removal never campaigns again,
        // so it would keep the last leader it knew.
        if !self.voters.contains(&self.id) && !self.learners.contains(&self.id) {
            return Err(NotReady::NotMember { id: self.id });
        }
        if !self.applied_current_term {
            return Err(NotReady::OlderTerm {
                applied: self.applied,
                term: self.term,
            });
        }
        Ok(())
    }
}

/// Why a replica is not ready, in one line (the body of a 503 on `/readyz`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NotReady {
    #[error("the raft replica has not started")]
    NotStarted,
    #[error("no leader known")]
    NoLeader,
    #[error("replica {id} is not a member (removed, or not added yet)")]
    NotMember { id: u64 },
    #[error("applied index {applied} is from an older term than {term}")]
    OlderTerm { applied: u64, term: u64 },
    #[error("the raft replica stopped: {0}")]
    Stopped(String),
}

/// How far the leader has replicated to one member.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerProgress {
    pub id: u64,
    /// Highest index known to be in the member's log.
    pub matched: u64,
    pub next: u64,
    /// probe, replicate or snapshot.
    pub state: &'static str,
    pub recent_active: bool,
}

/// A job as it changed at log index `index` (0: progress between entries).
#[derive(Debug, Clone)]
pub struct JobEvent {
    pub index: u64,
    pub job: pb::Job,
}

/// A command that made it through the log.
#[derive(Debug, Clone)]
pub struct Applied {
    pub index: u64,
    pub result: Result<Outcome, Rejection>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProposeError {
    #[error("this replica is not the leader (leader: {})", leader.map_or("unknown".to_string(), |l| l.to_string()))]
    NotLeader { leader: Option<u64> },
    #[error(
        "leadership changed before the command was applied; it may or may not have taken effect"
    )]
    LeadershipLost,
    #[error("raft refused the proposal: {0}")]
    Refused(String),
    #[error("no read index within {READ_WAIT:?}: the leader may be cut off")]
    ReadTimeout,
    #[error("the raft replica has stopped")]
    Stopped,
    /// Stopped on an error: the replica refuses work until it is restarted.
    #[error("this replica stopped and takes no more work until it is restarted: {0}")]
    Halted(String),
}

/// Messages into the raft thread.
pub(crate) enum Input {
    Propose {
        command: pb::Command,
        reply: oneshot::Sender<Result<Applied, ProposeError>>,
    },
    ProposeConfChange {
        change: ConfChangeV2,
        reply: oneshot::Sender<Result<Applied, ProposeError>>,
    },
    ReadIndex {
        reply: oneshot::Sender<Result<u64, ProposeError>>,
    },
    /// A raft message from a peer, with its share of the inbox's budget
    /// for peer messages (released once the raft thread has stepped it).
    Step(
        Box<raft::eraftpb::Message>,
        Option<tokio::sync::OwnedSemaphorePermit>,
    ),
    TransferLeader(u64),
    Shutdown,
}

/// The way to the raft thread, cheap to clone.
#[derive(Clone)]
pub struct RaftHandle {
    inbox: mpsc::Sender<Input>,
    /// KiB of peer messages that may wait in the inbox at once.
    peer_budget: Arc<tokio::sync::Semaphore>,
    state: Arc<RwLock<State>>,
    status: watch::Receiver<RaftStatus>,
    events: broadcast::Sender<JobEvent>,
    metrics: Metrics,
}

impl RaftHandle {
    /// Proposes `command` and waits until it is applied (or cannot be).
    pub async fn propose(&self, command: pb::Command) -> Result<Applied, ProposeError> {
        self.ready_leader().await?;
        let (reply, applied) = oneshot::channel();
        let timer = self.metrics.proposal_seconds.start_timer();
        self.inbox
            .send(Input::Propose { command, reply })
            .map_err(|_| ProposeError::Stopped)?;
        let result = applied
            .await
            .unwrap_or(Err(ProposeError::Stopped))
            .map_err(|e| self.halted_or(e));
        let label = match &result {
            Ok(Applied { result: Ok(_), .. }) => {
                timer.observe_duration();
                "applied"
            }
            Ok(Applied { result: Err(_), .. }) => "rejected",
            Err(ProposeError::NotLeader { .. }) => "not_leader",
            Err(_) => "failed",
        };
        self.metrics.proposals.with_label_values(&[label]).inc();
        result
    }

    /// Refuses at once when the replica stopped on an error.
    fn check_running(&self) -> Result<(), ProposeError> {
        match &self.status.borrow().stopped {
            Some(why) => Err(ProposeError::Halted(why.clone())),
            None => Ok(()),
        }
    }

    /// `e`, or why the replica stopped when it stopped on an error.
    fn halted_or(&self, e: ProposeError) -> ProposeError {
        match (&e, &self.status.borrow().stopped) {
            (ProposeError::Stopped, Some(why)) => ProposeError::Halted(why.clone()),
            _ => e,
        }
    }

    /// Proposes a membership change and waits until it is applied.
    pub async fn propose_conf_change(&self, change: ConfChangeV2) -> Result<Applied, ProposeError> {
        self.ready_leader().await?;
        let (reply, applied) = oneshot::channel();
        self.inbox
            .send(Input::ProposeConfChange { change, reply })
            .map_err(|_| ProposeError::Stopped)?;
        applied.await.unwrap_or(Err(ProposeError::Stopped))
    }

    /// Waits until this replica's state includes every change committed
    /// before the call (raft's ReadIndex): a read of the state after this is
    /// linearizable, on followers too.
    pub async fn linearizable_read(&self) -> Result<(), ProposeError> {
        self.check_running()?;
        let mut status = self.status.clone();
        // Without a known leader there is nobody to confirm the read index.
        let leader_known = tokio::time::timeout(LEADER_WAIT, async {
            status.wait_for(|s| s.leader.is_some()).await.map(|_| ())
        })
        .await;
        match leader_known {
            Ok(Ok(_)) => {}
            Ok(Err(_)) => return Err(ProposeError::Stopped),
            Err(_) => return Err(ProposeError::NotLeader { leader: None }),
        }
        let (reply, index) = oneshot::channel();
        self.inbox
            .send(Input::ReadIndex { reply })
            .map_err(|_| ProposeError::Stopped)?;
        match tokio::time::timeout(READ_WAIT, index).await {
            Ok(Ok(Ok(_))) => Ok(()),
            Ok(Ok(Err(e))) => Err(e),
            Ok(Err(_)) => Err(ProposeError::Stopped),
            Err(_) => Err(ProposeError::ReadTimeout),
        }
    }

    /// Asks the leader to hand leadership to `to`.
    pub fn transfer_leader(&self, to: u64) -> Result<(), ProposeError> {
        self.inbox
            .send(Input::TransferLeader(to))
            .map_err(|_| ProposeError::Stopped)
    }

    /// Before this replica stops (SIGTERM in a rolling restart): if it
    /// leads, hands leadership to the voter whose log is most complete and
    /// waits, at most `wait`, until that voter leads. The cluster then has
    /// a leader at once instead of after an election timeout, in which no
    /// submission is accepted. The new leader, or None when this replica
    /// does not lead, no other voter is active, or the hand-over did not
    /// finish in time (the replica then stops anyway, and the others elect).
    pub async fn hand_over_leadership(&self, wait: Duration) -> Option<u64> {
        let status = self.status();
        if status.role != Role::Leader {
            return None;
        }
        let to = status
            .progress
            .iter()
            .filter(|p| p.id != status.id && p.recent_active && status.voters.contains(&p.id))
            .max_by_key(|p| p.matched)?
            .id;
        self.transfer_leader(to).ok()?;
        let mut changes = self.watch_status();
        let led = tokio::time::timeout(
            wait,
            changes.wait_for(|s| s.leader == Some(to) && s.role != Role::Leader),
        )
        .await
        .is_ok_and(|seen| seen.is_ok());
        led.then_some(to)
    }

    /// The state itself, for the parts that read it under their own rules
    /// (the peer address book).
    pub fn shared_state(&self) -> Arc<RwLock<State>> {
        self.state.clone()
    }

    /// The replica's own raft id.
    pub fn id(&self) -> u64 {
        self.status.borrow().id
    }

    /// Hands a peer's raft message of `bytes` to the raft thread once the
    /// inbox has room for it ([`PEER_INBOX_BYTES`] at most wait at once):
    /// a peer that sends faster than the raft thread steps is slowed down
    /// (its stream is not read meanwhile) instead of filling memory.
    pub async fn step(
        &self,
        message: raft::eraftpb::Message,
        bytes: usize,
    ) -> Result<(), ProposeError> {
        let kib = bytes.div_ceil(1024).clamp(1, PEER_INBOX_BYTES / 1024) as u32;
        let permit = self
            .peer_budget
            .clone()
            .acquire_many_owned(kib)
            .await
            .map_err(|_| ProposeError::Stopped)?;
        self.inbox
            .send(Input::Step(Box::new(message), Some(permit)))
            .map_err(|_| ProposeError::Stopped)
    }

    /// Reads the replicated state as this replica has applied it.
    pub fn read<R>(&self, f: impl FnOnce(&State) -> R) -> R {
        // A panic while the raft thread held the lock would have stopped the
        // replica; the state it left is still the last applied one.
        let state = self.state.read().unwrap_or_else(|e| e.into_inner());
        f(&state)
    }

    pub fn status(&self) -> RaftStatus {
        self.status.borrow().clone()
    }

    /// Changes of the status (role, leader, indexes) as they happen.
    pub fn watch_status(&self) -> watch::Receiver<RaftStatus> {
        self.status.clone()
    }

    /// Job changes from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<JobEvent> {
        self.events.subscribe()
    }

    /// Publishes a change that is not in the log (per-step progress).
    pub fn publish(&self, event: JobEvent) {
        let _ = self.events.send(event);
    }

    /// Leads, with a current state (see [`RaftStatus::leader_ready`]).
    pub fn is_leader(&self) -> bool {
        self.status.borrow().leader_ready
    }

    /// Waits until this replica is a ready leader; fails at once if another
    /// replica leads, or after a bounded wait if no leader emerges.
    ///
    /// Reads are served only by a ready leader: a replica that just started
    /// has not replayed its log yet, and a follower may lag.
    pub async fn ready_leader(&self) -> Result<(), ProposeError> {
        self.check_running()?;
        let mut status = self.status.clone();
        let id = status.borrow().id;
        let waited = tokio::time::timeout(LEADER_WAIT, async {
            status
                .wait_for(|s| s.leader_ready || s.leader.is_some_and(|l| l != id))
                .await
                .map(|s| s.clone())
        })
        .await;
        match waited {
            Ok(Ok(s)) if s.leader_ready => Ok(()),
            Ok(Ok(s)) => Err(ProposeError::NotLeader { leader: s.leader }),
            Ok(Err(_)) => Err(ProposeError::Stopped),
            Err(_) => Err(ProposeError::NotLeader { leader: None }),
        }
    }

    pub(crate) fn shutdown(&self) {
        let _ = self.inbox.send(Input::Shutdown);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Replica 2 in term 5, applied up to 12.
    fn status(leader: Option<u64>, voters: &[u64], learners: &[u64], current: bool) -> RaftStatus {
        RaftStatus {
            stopped: None,
            id: 2,
            role: Role::Follower,
            leader,
            term: 5,
            commit: 12,
            applied: 12,
            last_index: 12,
            snapshot_index: 1,
            leader_ready: false,
            applied_current_term: current,
            voters: voters.to_vec(),
            learners: learners.to_vec(),
            progress: Vec::new(),
        }
    }

    #[test]
    fn readiness_needs_a_leader_membership_and_an_entry_of_the_current_term() {
        let older = Err(NotReady::OlderTerm {
            applied: 12,
            term: 5,
        });
        let cases = [
            (
                "no leader, nothing of this term",
                status(None, &[1, 2, 3], &[], false),
                Err(NotReady::NoLeader),
            ),
            (
                "no leader, yet current",
                status(None, &[1, 2, 3], &[], true),
                Err(NotReady::NoLeader),
            ),
            (
                "joining, before add-replica",
                status(None, &[], &[], false),
                Err(NotReady::NoLeader),
            ),
            (
                "removed, still knowing the leader",
                status(Some(1), &[1, 3], &[], true),
                Err(NotReady::NotMember { id: 2 }),
            ),
            (
                "a leader whose first entry is not applied here yet",
                status(Some(1), &[1, 2, 3], &[], false),
                older,
            ),
            (
                "a voter with the leader's entry applied",
                status(Some(1), &[1, 2, 3], &[], true),
                Ok(()),
            ),
            (
                "a learner with the leader's entry applied",
                status(Some(1), &[1, 3], &[2], true),
                Ok(()),
            ),
        ];
        for (scenario, status, expected) in cases {
            assert_eq!(status.readiness(), expected, "{scenario}");
        }
    }

    #[test]
    fn not_ready_reasons_read_as_one_line() {
        let cases = [
            (NotReady::NoLeader, "no leader known"),
            (
                NotReady::OlderTerm {
                    applied: 12,
                    term: 5,
                },
                "applied index 12 is from an older term than 5",
            ),
            (
                NotReady::NotMember { id: 4 },
                "replica 4 is not a member (removed, or not added yet)",
            ),
            (NotReady::NotStarted, "the raft replica has not started"),
        ];
        for (reason, text) in cases {
            assert_eq!(reason.to_string(), text);
        }
    }
}
