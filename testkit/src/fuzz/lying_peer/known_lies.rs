//! The lies that panicked raft-rs, halted or hung the replica, or confused
//! it (the first sixteen are refused by `peer_checks` now): every campaign
//! tells each first, to a new replica in the role it needs, so that none
//! comes back unseen.

use genfleet_scheduler::raft::{RaftStatus, Role};
use raft::eraftpb::{Entry, EntryType, Message, MessageType};

use super::lies::{learner_change, message, snapshot, voters};
use super::live::{step, Action};
use super::{View, ELECTION_TICKS};

/// A lie told to a new replica in `role`.
pub(super) struct KnownLie {
    pub name: &'static str,
    pub role: Role,
    /// What is told, given the replica's status, what the peers know of
    /// its log, and a way to encode its real state at an index.
    pub actions: fn(&RaftStatus, &View, &StateAt) -> Vec<Action>,
}

/// The replica's real state as if applied up to an index, encoded.
pub(super) type StateAt<'a> = dyn Fn(u64) -> Vec<u8> + 'a;

/// Each is the smallest message found to do it. A follower's leader is
/// peer 3 (`LyingPeer::replay` makes it so); the other liar is peer 2.
pub(super) const KNOWN_LIES: [KnownLie; 17] = [
    KnownLie {
        name: "a proposal without entries, to the leader",
        role: Role::Leader,
        actions: |_, _, _| vec![step(2, message(MessageType::MsgPropose, 2, 0))],
    },
    KnownLie {
        name: "a read index without entries, to the leader",
        role: Role::Leader,
        actions: |_, _, _| vec![step(2, message(MessageType::MsgReadIndex, 2, 0))],
    },
    KnownLie {
        name: "a rejection hinting at the last index there is, to the leader",
        role: Role::Leader,
        actions: |s, _, _| {
            // From the peer that has not answered yet: the leader probes it
            // at the index before its first entry in this term.
            let mut m = message(MessageType::MsgAppendResponse, 3, s.term);
            m.reject = true;
            m.index = s.last_index - 1;
            m.reject_hint = u64::MAX;
            vec![step(3, m)]
        },
    },
    KnownLie {
        name: "a proposal with a term, to a follower that forwards it",
        role: Role::Follower,
        actions: |s, _, _| {
            let mut m = message(MessageType::MsgPropose, 2, s.term);
            m.entries.push(Entry::default());
            vec![step(2, m)]
        },
    },
    KnownLie {
        name: "a read index with a term, to a follower that forwards it",
        role: Role::Follower,
        actions: |s, _, _| {
            let mut m = message(MessageType::MsgReadIndex, 2, s.term);
            m.entries.push(Entry {
                data: b"read".to_vec().into(),
                ..Default::default()
            });
            vec![step(2, m)]
        },
    },
    KnownLie {
        name: "a leadership transfer with a term, to a follower that forwards it",
        role: Role::Follower,
        actions: |s, _, _| vec![step(2, message(MessageType::MsgTransferLeader, 2, s.term))],
    },
    KnownLie {
        name: "a vote request of term 0, to a candidate",
        role: Role::Candidate,
        actions: |s, _, _| {
            let mut m = message(MessageType::MsgRequestVote, 2, 0);
            m.index = s.last_index;
            m.log_term = s.term;
            vec![step(2, m)]
        },
    },
    KnownLie {
        name: "a heartbeat of term 0, to a candidate",
        role: Role::Candidate,
        actions: |_, _, _| vec![step(2, message(MessageType::MsgHeartbeat, 2, 0))],
    },
    KnownLie {
        name: "an append after an index past the log's end, of log term 0",
        role: Role::Follower,
        actions: |s, _, _| {
            let mut m = message(MessageType::MsgAppend, 3, s.term);
            m.index = s.last_index + 5;
            m.commit = s.last_index + 5;
            vec![step(3, m)]
        },
    },
    KnownLie {
        name: "a snapshot past the log's end, of term 0",
        role: Role::Follower,
        actions: |s, _, state| {
            let index = s.last_index + 3;
            vec![step(3, snapshot_message(s.term, index, 0, state(index)))]
        },
    },
    KnownLie {
        name: "an unreadable snapshot at the commit index, of another term",
        role: Role::Follower,
        actions: |s, view, _| {
            let term = view.terms.get(&s.commit).copied().unwrap_or(0) + 1;
            vec![step(
                3,
                snapshot_message(s.term, s.commit, term, Vec::new()),
            )]
        },
    },
    KnownLie {
        name: "a snapshot whose state is at another index than it claims",
        role: Role::Follower,
        actions: |s, _, state| {
            let index = s.last_index + 1;
            let data = state(index + 100);
            vec![step(3, snapshot_message(s.term, index, s.term, data))]
        },
    },
    KnownLie {
        name: "a membership change that does not decode, committed",
        role: Role::Follower,
        actions: |s, view, _| {
            vec![step(
                3,
                committed_garbage(s, view, EntryType::EntryConfChangeV2),
            )]
        },
    },
    KnownLie {
        name: "a command that does not decode, committed",
        role: Role::Follower,
        actions: |s, view, _| vec![step(3, committed_garbage(s, view, EntryType::EntryNormal))],
    },
    KnownLie {
        name: "the last term there is, then an election timeout",
        role: Role::Follower,
        actions: |s, _, _| {
            let mut m = message(MessageType::MsgHeartbeat, 3, u64::MAX);
            m.commit = s.commit;
            vec![step(3, m), Action::Tick(ELECTION_TICKS + 1)]
        },
    },
    KnownLie {
        name: "a snapshot at the last index there is",
        role: Role::Follower,
        actions: |s, _, state| {
            let m = snapshot_message(s.term, u64::MAX, s.term, state(u64::MAX));
            vec![step(3, m)]
        },
    },
    KnownLie {
        name: "a snapshot request, then a membership change applied by the leader",
        role: Role::Leader,
        actions: |s, _, _| {
            // Peer 3 asks for a snapshot at an index not yet applied: the
            // leader cannot make one yet and keeps the request.
            let mut request = message(MessageType::MsgAppendResponse, 3, s.term);
            request.reject = true;
            request.index = s.last_index;
            request.request_snapshot = s.last_index + 1;
            let mut ack = message(MessageType::MsgAppendResponse, 2, s.term);
            ack.index = s.last_index + 1;
            vec![
                step(3, request),
                // An operator's change; peer 2 commits it. Applying it,
                // raft sends peer 3 what it asked for, from the storage.
                Action::ProposeMembership(learner_change(true)),
                step(2, ack),
            ]
        },
    },
];

/// A snapshot message from peer 3 (the follower's leader) of the whole
/// membership.
fn snapshot_message(term: u64, index: u64, snapshot_term: u64, data: Vec<u8>) -> Message {
    let mut m = message(MessageType::MsgSnapshot, 3, term);
    m.set_snapshot(snapshot(data, voters(&[1, 2, 3]), index, snapshot_term));
    m
}

/// An append from peer 3 of one entry of `kind` whose data is not one,
/// after the follower's last entry, committing it.
fn committed_garbage(s: &RaftStatus, view: &View, kind: EntryType) -> Message {
    let mut m = message(MessageType::MsgAppend, 3, s.term);
    m.index = s.last_index;
    m.log_term = view.terms.get(&s.last_index).copied().unwrap_or(0);
    m.entries.push(Entry {
        entry_type: kind,
        term: s.term,
        index: s.last_index + 1,
        data: vec![0xff].into(),
        ..Default::default()
    });
    m.commit = s.last_index + 1;
    m
}
