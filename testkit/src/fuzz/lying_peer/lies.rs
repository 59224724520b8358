//! What the lying peers send: lies generated around the replica's marks
//! (its term, commit and last index), honest messages mutated, and
//! messages the replica itself sent, sent back to it as a peer's and
//! mutated.

use genfleet_proto as pb;
use genfleet_scheduler::raft::{Feedback, RaftStatus};
use genfleet_scheduler::state::LOG_ENTRY_VERSION;
use prost::Message as _;
use protobuf::{Message as _, ProtobufEnum};
use raft::eraftpb::{
    ConfChange, ConfChangeSingle, ConfChangeTransition, ConfChangeType, ConfChangeV2, ConfState,
    Entry, EntryType, Message, MessageType, Snapshot, SnapshotMetadata,
};
use rand::rngs::StdRng;
use rand::Rng;

use super::live::{step, Action};
use super::{LyingPeer, LEARNER, ME, PEERS};
use crate::fuzz;

impl LyingPeer {
    /// A message no honest peer sends.
    pub(super) fn lie(&self, rng: &mut StdRng, s: &RaftStatus, from: u64) -> Action {
        use MessageType as T;
        let mut m = message(T::MsgHeartbeat, from, term(rng, s));
        match rng.random_range(0..16) {
            0 | 1 => {
                m.commit = index(rng, s);
                m.context = bytes(rng).into();
            }
            2..=4 => {
                m.set_msg_type(T::MsgAppend);
                m.index = index(rng, s);
                m.log_term = match self.view.terms.get(&m.index) {
                    Some(known) if rng.random_bool(0.5) => *known,
                    _ => term(rng, s),
                };
                m.set_entries(entries(rng, s, m.index, m.log_term).into());
                m.commit = index(rng, s);
            }
            5 | 6 => {
                m.set_msg_type(T::MsgSnapshot);
                m.set_snapshot(self.forged_snapshot(rng, s));
            }
            7 => {
                m.set_msg_type(T::MsgAppendResponse);
                m.index = index(rng, s);
                m.reject = rng.random();
                m.reject_hint = index(rng, s);
                m.log_term = term(rng, s);
                m.commit = index(rng, s);
                if rng.random_bool(0.2) {
                    m.request_snapshot = index(rng, s);
                }
            }
            8 => {
                m.set_msg_type(T::MsgHeartbeatResponse);
                m.commit = index(rng, s);
                m.context = context(rng).into();
                if rng.random_bool(0.2) {
                    m.request_snapshot = index(rng, s);
                }
            }
            9 => {
                m.set_msg_type(pick(rng, &[T::MsgRequestVote, T::MsgRequestPreVote]));
                m.index = index(rng, s);
                m.log_term = term(rng, s);
                m.commit = index(rng, s);
                m.commit_term = term(rng, s);
                m.priority = rng.random();
            }
            10 => {
                let kinds = [T::MsgRequestVoteResponse, T::MsgRequestPreVoteResponse];
                m.set_msg_type(pick(rng, &kinds));
                m.reject = rng.random();
                m.reject_hint = index(rng, s);
            }
            11 => {
                m.set_msg_type(pick(rng, &[T::MsgReadIndex, T::MsgReadIndexResp]));
                m.index = index(rng, s);
                for _ in 0..rng.random_range(0..3) {
                    m.entries.push(Entry {
                        data: context(rng).into(),
                        ..Default::default()
                    });
                }
            }
            12 => m.set_msg_type(pick(rng, &[T::MsgTimeoutNow, T::MsgTransferLeader])),
            13 => {
                m.set_msg_type(T::MsgPropose);
                m.set_entries(entries(rng, s, 0, 0).into());
            }
            14 => {
                // Any type (local ones and numbers no type has too), any fields.
                m.index = index(rng, s);
                m.log_term = term(rng, s);
                m.commit = index(rng, s);
                m.reject = rng.random();
                m.reject_hint = index(rng, s);
                m.set_entries(entries(rng, s, m.index, m.log_term).into());
                return Action::Bytes {
                    sender: from,
                    bytes: with_type_number(&m, rng.random_range(-1..24)),
                };
            }
            _ => {
                return Action::Bytes {
                    sender: from,
                    bytes: fuzz::mutated(rng, encoded(&m)),
                }
            }
        }
        step(from, m)
    }

    /// A snapshot no leader sends: any index and term, state bytes that are
    /// garbage or a real state at another index, any membership.
    fn forged_snapshot(&self, rng: &mut StdRng, s: &RaftStatus) -> Snapshot {
        let index = match rng.random_range(0..4) {
            0 => s.commit.saturating_sub(rng.random_range(0..3)),
            1 | 2 => s.commit.saturating_add(rng.random_range(1..4)),
            _ => index(rng, s),
        };
        let data = match rng.random_range(0..6) {
            0 => bytes(rng),
            1 => fuzz::mutated(rng, self.state_bytes(index)),
            2 | 3 => self.state_bytes(index),
            4 => self.state_bytes(self::index(rng, s)),
            _ => Vec::new(),
        };
        let conf_state = match rng.random_range(0..7) {
            0..=2 => voters(&[1, 2, 3]),
            3 => voters(&[2, 3]),
            4 => ConfState::default(),
            5 => ConfState {
                voters: vec![2, 3],
                learners: vec![ME],
                ..Default::default()
            },
            _ => ConfState {
                voters: vec![1, 2, 3],
                voters_outgoing: vec![rng.random_range(1..6), rng.random_range(1..6)],
                auto_leave: rng.random(),
                ..Default::default()
            },
        };
        snapshot(data, conf_state, index, term(rng, s))
    }

    /// A message changed: a few of its fields, or its bytes.
    pub(super) fn mutate_step(
        &self,
        rng: &mut StdRng,
        s: &RaftStatus,
        sender: u64,
        message: &Message,
    ) -> Action {
        let mut m = message.clone();
        if rng.random_bool(0.3) {
            return Action::Bytes {
                sender,
                bytes: fuzz::mutated(rng, encoded(&m)),
            };
        }
        for _ in 0..rng.random_range(1..4) {
            match rng.random_range(0..11) {
                0 => m.term = term(rng, s),
                1 => m.log_term = term(rng, s),
                2 => m.index = index(rng, s),
                3 => m.commit = index(rng, s),
                4 => m.reject = !m.reject,
                5 => m.reject_hint = index(rng, s),
                6 => m.set_msg_type(pick(rng, MessageType::values())),
                7 => m.request_snapshot = index(rng, s),
                8 if !m.entries.is_empty() => {
                    let at = rng.random_range(0..m.entries.len());
                    match rng.random_range(0..5) {
                        0 => drop(m.entries.remove(at)),
                        1 => m.entries[at].index = index(rng, s),
                        2 => m.entries[at].term = term(rng, s),
                        3 => {
                            let copy = m.entries[at].clone();
                            m.entries.push(copy);
                        }
                        _ => {
                            let (index, term) = (m.entries[at].index, m.entries[at].term);
                            m.entries[at] = entry(rng, index, term);
                        }
                    }
                }
                9 => m.set_snapshot(self.forged_snapshot(rng, s)),
                _ => m.context = context(rng).into(),
            }
        }
        step(sender, m)
    }

    /// A message the replica sent, sent back to it by a liar as the liar's
    /// own: as it was (entries, snapshots and contexts the replica made),
    /// or mutated; with the type it had. None until the replica sent one.
    pub(super) fn echo(
        &self,
        rng: &mut StdRng,
        s: &RaftStatus,
        from: u64,
    ) -> Option<(Action, &'static str)> {
        // A type first, then one of that type: rare types (votes,
        // snapshots) come back as often as appends.
        let types: Vec<_> = self.sent.values().filter(|kept| !kept.is_empty()).collect();
        let kept = *types.get(rng.random_range(0..types.len().max(1)))?;
        let mut m = kept[rng.random_range(0..kept.len())].clone();
        let echoed = m.get_msg_type().descriptor().name();
        m.from = from;
        m.to = ME;
        if rng.random_bool(0.3) {
            return Some((step(from, m), echoed));
        }
        Some((self.mutate_step(rng, s, from, &m), echoed))
    }
}

/// What the replica's own transport may report at any time.
pub(super) fn network_news(rng: &mut StdRng) -> Action {
    let to = pick(rng, &PEERS);
    Action::Feedback(match rng.random_range(0..3) {
        0 => Feedback::Unreachable(to),
        1 => Feedback::Snapshot {
            to,
            delivered: false,
        },
        _ => Feedback::Snapshot {
            to,
            delivered: true,
        },
    })
}

pub(super) fn message(kind: MessageType, from: u64, term: u64) -> Message {
    Message {
        msg_type: kind,
        to: ME,
        from,
        term,
        ..Default::default()
    }
}

pub(super) fn snapshot(data: Vec<u8>, conf_state: ConfState, index: u64, term: u64) -> Snapshot {
    let mut metadata = SnapshotMetadata {
        index,
        term,
        ..Default::default()
    };
    metadata.set_conf_state(conf_state);
    let mut snapshot = Snapshot {
        data: data.into(),
        ..Default::default()
    };
    snapshot.set_metadata(metadata);
    snapshot
}

pub(super) fn voters(ids: &[u64]) -> ConfState {
    ConfState {
        voters: ids.to_vec(),
        ..Default::default()
    }
}

pub(super) fn pick<T: Copy>(rng: &mut StdRng, of: &[T]) -> T {
    of[rng.random_range(0..of.len())]
}

/// `m` on the wire; a message that does not encode (none does) as none.
fn encoded(m: &Message) -> Vec<u8> {
    m.write_to_bytes().unwrap_or_default()
}

/// `m` on the wire with its type field set again to `number`: protobuf
/// keeps the last value of a field, and this way a peer can send numbers
/// that `MessageType` has no name for.
fn with_type_number(m: &Message, number: i32) -> Vec<u8> {
    let mut bytes = encoded(m);
    bytes.push(0x08); // field 1, a varint
                      // An enum is an int32: a negative one goes as ten bytes.
    let mut value = i64::from(number) as u64;
    while value >= 0x80 {
        bytes.push(value as u8 | 0x80);
        value >>= 7;
    }
    bytes.push(value as u8);
    bytes
}

/// A term near the replica's, or far from it.
fn term(rng: &mut StdRng, s: &RaftStatus) -> u64 {
    match rng.random_range(0..20) {
        0 => 0,
        1..=3 => s.term.saturating_sub(rng.random_range(1..3)),
        4..=11 => s.term,
        12..=16 => s.term.saturating_add(1),
        17 => s.term.saturating_add(rng.random_range(2..100)),
        18 => u64::MAX - rng.random_range(0..2),
        _ => rng.random(),
    }
}

/// An index at one of the replica's marks, past its log, or anywhere.
fn index(rng: &mut StdRng, s: &RaftStatus) -> u64 {
    match rng.random_range(0..20) {
        0 => 0,
        1..=3 => s.commit,
        4 => s.applied,
        5 => s.snapshot_index,
        6..=9 => s.last_index,
        10..=12 => s.last_index.saturating_add(1),
        13 | 14 => s.last_index.saturating_sub(rng.random_range(1..8)),
        15 | 16 => s.last_index.saturating_add(rng.random_range(2..1000)),
        17 => u64::MAX - rng.random_range(0..3),
        _ => rng.random(),
    }
}

/// Entries after `index`: mostly in order (the only shape the replica takes
/// in), else reversed, with gaps, or anywhere; terms mostly rising.
fn entries(rng: &mut StdRng, s: &RaftStatus, index: u64, log_term: u64) -> Vec<Entry> {
    let n = if rng.random_bool(0.05) {
        rng.random_range(0..40)
    } else {
        rng.random_range(0..5)
    };
    let shape = rng.random_range(0..6);
    let mut term = log_term;
    (0..n)
        .map(|i| {
            let at = match shape {
                0..=2 => index.wrapping_add(i + 1),
                3 => index.wrapping_add(n - i),
                4 => index.wrapping_add(1 + 2 * i),
                _ => self::index(rng, s),
            };
            term = match rng.random_range(0..8) {
                0 => term.saturating_sub(1),
                1 => term.saturating_add(1),
                2 => self::term(rng, s),
                _ => term,
            };
            entry(rng, at, term)
        })
        .collect()
}

/// An entry carrying a command, garbage, or a membership change.
fn entry(rng: &mut StdRng, index: u64, term: u64) -> Entry {
    use EntryType as E;
    let (kind, data) = match rng.random_range(0..10) {
        0..=3 => (E::EntryNormal, log_entry(rng)),
        4 => (E::EntryNormal, Vec::new()),
        5 => {
            let valid = log_entry(rng);
            (E::EntryNormal, fuzz::mutated(rng, valid))
        }
        6 => (E::EntryConfChangeV2, conf_change_v2(rng)),
        7 => (E::EntryConfChange, conf_change(rng)),
        8 => {
            let kind = pick(rng, &[E::EntryConfChange, E::EntryConfChangeV2]);
            let valid = conf_change_v2(rng);
            (kind, fuzz::mutated(rng, valid))
        }
        _ => (pick(rng, E::values()), bytes(rng)),
    };
    Entry {
        entry_type: kind,
        term,
        index,
        data: data.into(),
        context: context(rng).into(),
        // Deprecated, and ignored by raft-rs; a peer may still set it.
        sync_log: rng.random_bool(0.05),
        ..Default::default()
    }
}

/// A valid log entry with a command from the state fuzzing.
pub(super) fn log_entry(rng: &mut StdRng) -> Vec<u8> {
    pb::LogEntry {
        version: LOG_ENTRY_VERSION,
        at_ms: rng.random_range(1..1_000_000),
        command: Some(pb::Command {
            kind: Some(fuzz::command(rng)),
        }),
    }
    .encode_to_vec()
}

fn conf_change_v2(rng: &mut StdRng) -> Vec<u8> {
    let changes = (0..rng.random_range(0..3))
        .map(|_| ConfChangeSingle {
            change_type: pick(rng, ConfChangeType::values()),
            node_id: rng.random_range(1..6),
            ..Default::default()
        })
        .collect::<Vec<_>>();
    let change = ConfChangeV2 {
        transition: pick(rng, ConfChangeTransition::values()),
        changes: changes.into(),
        context: membership(rng).into(),
        ..Default::default()
    };
    change.write_to_bytes().unwrap_or_default()
}

fn conf_change(rng: &mut StdRng) -> Vec<u8> {
    let change = ConfChange {
        id: rng.random(),
        change_type: pick(rng, ConfChangeType::values()),
        node_id: rng.random_range(1..6),
        context: membership(rng).into(),
        ..Default::default()
    };
    change.write_to_bytes().unwrap_or_default()
}

/// An operator's membership change: replica 4 added as a learner, with its
/// address, or removed.
pub(super) fn learner_change(add: bool) -> ConfChangeV2 {
    let mut single = ConfChangeSingle {
        node_id: LEARNER,
        ..Default::default()
    };
    let addresses = match add {
        true => {
            single.set_change_type(ConfChangeType::AddLearnerNode);
            vec![pb::Member {
                id: LEARNER,
                address: format!("peer-{LEARNER}"),
            }]
        }
        false => {
            single.set_change_type(ConfChangeType::RemoveNode);
            Vec::new()
        }
    };
    let context = pb::MembershipContext { members: addresses }.encode_to_vec();
    ConfChangeV2 {
        changes: vec![single].into(),
        context: context.into(),
        ..Default::default()
    }
}

/// The addresses a membership change carries, or garbage.
fn membership(rng: &mut StdRng) -> Vec<u8> {
    if rng.random_bool(0.3) {
        return bytes(rng);
    }
    let id = rng.random_range(1..6);
    pb::MembershipContext {
        members: vec![pb::Member {
            id,
            address: format!("peer-{id}"),
        }],
    }
    .encode_to_vec()
}

/// A request context: garbage, or one the replica made (its id, the
/// incarnation it runs with, a small request number), so that a forged
/// entry or read answers one of its waiting requests.
fn context(rng: &mut StdRng) -> Vec<u8> {
    if rng.random_bool(0.5) {
        return bytes(rng);
    }
    [ME, 0, rng.random_range(1..16)]
        .iter()
        .flat_map(|v| v.to_be_bytes())
        .collect()
}

fn bytes(rng: &mut StdRng) -> Vec<u8> {
    (0..rng.random_range(0..32)).map(|_| rng.random()).collect()
}
