//! The `raft_lying_peer` target: raft messages from a peer that proved who
//! it is but lies, stepped into a live replica. The replica is a real
//! [`Replica`] with a raft-engine log in a scratch directory, member 1 of a
//! cluster of 1, 2 and 3; the liars are 2 and 3. Each input is a short plan
//! (ticks, proposals, messages) run on the replica's own thread, each step
//! followed by the ready handling the driver does, so entries are really
//! written, committed and applied.
//!
//! A third of the plans are what honest peers would send: votes that make
//! the replica leader and acknowledgements of what it proposes (commands,
//! now and then a membership change), in one phase; appends that extend
//! its log, heartbeats and snapshots from a peer that leads it, in the
//! next. The rest are honest messages mutated field by field or byte by
//! byte; messages the replica itself sent, sent back as a liar's own, as
//! they were or mutated; and lies (commits past the log, stale and
//! far-future terms, entries out of order, rewriting the log or carrying
//! garbage, forged snapshots, acks past the log, votes and read indexes
//! with any fields, type numbers no type has), now and then with what the
//! replica's own transport may report (a peer unreachable, a snapshot
//! lost). Before any of that, each campaign tells the known lies
//! (`known_lies::KNOWN_LIES`), each to a new replica in the role it needs.
//!
//! After each plan the replica must not have halted or hung (a forged
//! message never stops it); commit <= last index and snapshot <= applied
//! <= commit; the state applied what raft applied and keeps its
//! invariants; neither term nor commit went back. Every [`RESTART_EVERY`]
//! inputs the replica restarts from its files; every [`FRESH_EVERY`] it
//! starts over.
//!
//! The peers speak raft-rs's own `eraftpb` types, put on the wire and read
//! back with the transport's `parse_peer_message`, as the service does. The
//! replica's transport keeps what it sends (appends with its real entries,
//! snapshots of its real state, votes, responses): the liars send those
//! back as their own, as they were or mutated.

use std::collections::{BTreeMap, VecDeque};

use genfleet_proto as pb;
use genfleet_scheduler::raft::{RaftStatus, Role};
use genfleet_scheduler::state::State;
use protobuf::ProtobufEnum;
use raft::eraftpb::{Entry, EntryType, Message, MessageType};
use rand::rngs::StdRng;
use rand::Rng;

mod known_lies;
mod lies;
mod live;

use known_lies::KNOWN_LIES;
use lies::{learner_change, log_entry, message, network_news, snapshot, voters};
use live::{describe, step, Action, After, Live, ScratchDir};

/// The replica under attack, and the members that lie to it.
const ME: u64 = 1;
const PEERS: [u64; 2] = [2, 3];
/// A replica the honest leader now and then adds as a learner, then removes.
const LEARNER: u64 = 4;
/// Ticks of an election timeout (one fixed value, so that runs repeat).
const ELECTION_TICKS: u32 = 10;
/// Entries applied between the replica's snapshots: often, so that
/// compaction and restarts from a snapshot get inputs too.
const SNAPSHOT_EVERY: u64 = 16;
/// Inputs between restarts from the replica's files, and between fresh starts.
const RESTART_EVERY: u64 = 100;
const FRESH_EVERY: u64 = 500;
/// Inputs in which honest peers elect the replica, then as many in which
/// one of them leads it.
const PHASE: u64 = 40;
/// Messages the replica sent kept for echoes, per message type (the latest).
const SENT_KEPT_PER_TYPE: usize = 8;

/// What the campaign counts of one input: the replica's role before it,
/// entries it applied during it (none when it moved the snapshot), what
/// kind of input it was, and the type of the replica's own message it
/// echoed, if it echoed one.
pub(super) struct Depth {
    pub role: &'static str,
    pub applied: u64,
    pub kind: &'static str,
    pub echoed: Option<&'static str>,
}

impl Depth {
    pub(super) fn count(self, report: &mut super::Report) {
        *report.lying_peer_roles.entry(self.role).or_default() += 1;
        *report.lying_peer_kinds.entry(self.kind).or_default() += 1;
        if let Some(echoed) = self.echoed {
            *report.lying_peer_echoed.entry(echoed).or_default() += 1;
        }
        report.lying_peer_entries_applied += self.applied;
    }
}

/// The target's replica and what the peers know of its log.
#[derive(Default)]
pub(super) struct LyingPeer {
    /// The replica, and the directory it lives in (removed after it).
    live: Option<(Live, ScratchDir)>,
    view: View,
    /// The latest messages the replica sent, by type: what the liars echo.
    /// Kept across fresh starts: another replica's messages are lies too.
    sent: BTreeMap<i32, VecDeque<Message>>,
    /// Inputs since the directory was new.
    inputs: u64,
    /// Known lies replayed so far.
    replayed: usize,
    last_input: String,
}

/// What the peers know of the replica.
#[derive(Default)]
struct View {
    /// The term of each entry of its log that the peers know.
    terms: BTreeMap<u64, u64>,
    /// The highest term and commit index seen: neither may go back.
    term: u64,
    commit: u64,
    /// Honest appends in a row that did not land (the view is wrong).
    missed: u32,
}

impl LyingPeer {
    /// Runs one input; Err describes a halted or inconsistent replica.
    pub(super) fn input(&mut self, rng: &mut StdRng) -> Result<Depth, String> {
        if let Some(lie) = KNOWN_LIES.get(self.replayed) {
            self.replayed += 1;
            let depth = self.replay(lie);
            self.live = None;
            return depth;
        }
        if self.live.is_none() || self.inputs >= FRESH_EVERY {
            self.start_fresh()?;
        } else if self.inputs.is_multiple_of(RESTART_EVERY) {
            self.restart()?;
        }
        self.inputs += 1;
        let before = self.status()?;
        let plan = self.plan(rng, &before);
        self.last_input = describe(&plan.actions);
        self.execute(&before, plan)
    }

    /// A known lie, told to a new replica in the role it needs.
    fn replay(&mut self, lie: &known_lies::KnownLie) -> Result<Depth, String> {
        self.start_fresh()?;
        self.last_input = format!("setting up for the known lie \"{}\"", lie.name);
        // A new replica campaigns at once: once it has handled that, it is
        // a candidate.
        let s = self.status()?;
        self.execute(&s, Plan::new(Vec::new(), Expect::Nothing))?;
        let mut s = self.status()?;
        if lie.role == Role::Leader {
            let plan = elect(&s, PEERS[0]);
            self.execute(&s, plan)?;
            s = self.status()?;
            // Its first entry acknowledged: it has committed in its term.
            let mut ack = message(MessageType::MsgAppendResponse, PEERS[0], s.term);
            ack.index = s.last_index;
            self.execute(&s, Plan::new(vec![step(PEERS[0], ack)], Expect::Nothing))?;
        } else if lie.role == Role::Follower {
            let mut beat = message(
                MessageType::MsgHeartbeat,
                PEERS[1],
                s.term.saturating_add(1),
            );
            beat.commit = s.commit;
            self.execute(&s, Plan::new(vec![step(PEERS[1], beat)], Expect::Nothing))?;
        }
        s = self.status()?;
        if s.role != lie.role {
            return Err(format!(
                "the replica could not be made {} for \"{}\": it is {}",
                lie.role.label(),
                lie.name,
                s.role.label()
            ));
        }
        let actions = (lie.actions)(&s, &self.view, &|index| self.state_bytes(index));
        self.last_input = format!("the known lie \"{}\": {}", lie.name, describe(&actions));
        let mut plan = Plan::new(actions, Expect::Nothing);
        plan.kind = "known lie";
        self.execute(&s, plan)
    }

    fn status(&self) -> Result<RaftStatus, String> {
        match &self.live {
            Some((live, _)) => live.with(|h| h.replica.status()),
            None => Err("no replica is running".into()),
        }
    }

    /// Runs `plan` on the replica, checks it and learns from it.
    fn execute(&mut self, before: &RaftStatus, plan: Plan) -> Result<Depth, String> {
        let Some((live, _)) = &self.live else {
            return Err("no replica is running".into());
        };
        let actions = plan.actions;
        let after = live.with(move |h| h.run(actions))??;
        self.check(&after)?;
        self.learn(before, &after.status, plan.expect);
        self.keep_sent(after.sent);
        // A snapshot restored (or a compaction) moves the snapshot index:
        // such an input's progress is not counted as entries applied.
        let through_entries = after.status.snapshot_index == before.snapshot_index;
        Ok(Depth {
            role: before.role.label(),
            applied: match through_entries {
                true => after.status.applied.saturating_sub(before.applied),
                false => 0,
            },
            kind: plan.kind,
            echoed: plan.echoed,
        })
    }

    /// Keeps the latest of what the replica sent, for the liars to echo.
    fn keep_sent(&mut self, sent: Vec<Message>) {
        for message in sent {
            let kept = self.sent.entry(message.get_msg_type().value()).or_default();
            if kept.len() == SENT_KEPT_PER_TYPE {
                kept.pop_front();
            }
            kept.push_back(message);
        }
    }

    /// What the last input was, for a failure's report.
    pub(super) fn last_input(&self) -> &str {
        &self.last_input
    }

    /// Drops the replica (after a failure): the next input starts over.
    pub(super) fn reset(&mut self) {
        self.live = None;
    }

    fn start_fresh(&mut self) -> Result<(), String> {
        self.live = None;
        self.inputs = 0;
        // A new cluster's log starts after a snapshot at index 1, term 1.
        self.view = View {
            terms: [(1, 1)].into(),
            ..View::default()
        };
        self.last_input = "opening a new replica".into();
        let dir = ScratchDir::new();
        let live = Live::open(&dir.0).map_err(|e| format!("a new replica does not open: {e}"))?;
        self.live = Some((live, dir));
        Ok(())
    }

    /// Restarts the replica from its files, as after a crash.
    fn restart(&mut self) -> Result<(), String> {
        let Some((live, dir)) = self.live.take() else {
            return Ok(());
        };
        drop(live);
        self.last_input = format!("restarting from the files after: {}", self.last_input);
        let live = Live::open(&dir.0)
            .map_err(|e| format!("the replica does not reopen from its files: {e}"))?;
        self.live = Some((live, dir));
        Ok(())
    }

    /// Whether the replica is still consistent after an input.
    fn check(&mut self, after: &After) -> Result<(), String> {
        let s = &after.status;
        let broken = if s.commit > s.last_index {
            Some(format!(
                "commit {} is past the log's end {}",
                s.commit, s.last_index
            ))
        } else if s.applied > s.commit {
            Some(format!("applied {} is past commit {}", s.applied, s.commit))
        } else if s.snapshot_index > s.applied {
            Some(format!(
                "snapshot {} is past applied {}",
                s.snapshot_index, s.applied
            ))
        } else if after.state_applied != s.applied {
            Some(format!(
                "the state applied up to {} but raft up to {}",
                after.state_applied, s.applied
            ))
        } else if let Err(e) = &after.invariants {
            Some(format!("the state breaks an invariant: {e}"))
        } else if s.term < self.view.term {
            Some(format!(
                "the term went back from {} to {}",
                self.view.term, s.term
            ))
        } else if s.commit < self.view.commit {
            Some(format!(
                "commit went back from {} to {}",
                self.view.commit, s.commit
            ))
        } else if s.role == Role::Leader && s.leader != Some(ME) {
            Some(format!("a leader that names {:?} as leader", s.leader))
        } else {
            None
        };
        self.view.term = s.term;
        self.view.commit = s.commit;
        broken.map_or(Ok(()), Err)
    }

    /// Updates what the peers know of the replica's log.
    fn learn(&mut self, before: &RaftStatus, after: &RaftStatus, expect: Expect) {
        let view = &mut self.view;
        match expect {
            Expect::Append {
                from,
                term,
                entries,
            } => {
                let landed = after.leader == Some(from)
                    && after.term == term
                    && entries.last().is_none_or(|(i, _)| after.last_index >= *i);
                if landed {
                    for (index, term) in entries {
                        if view.terms.get(&index) != Some(&term) {
                            view.terms.split_off(&index);
                            view.terms.insert(index, term);
                        }
                    }
                    view.missed = 0;
                } else {
                    view.missed += 1;
                }
            }
            Expect::Snapshot { index, term } if after.snapshot_index == index => {
                view.terms = [(index, term)].into();
                view.missed = 0;
            }
            Expect::Snapshot { .. } => view.missed += 1,
            Expect::Nothing => {}
        }
        // A leader appends entries of its own term only.
        if after.role == Role::Leader {
            let new = before.last_index.saturating_add(1)..=after.last_index;
            for index in new.take(64) {
                view.terms.entry(index).or_insert(after.term);
            }
        }
        view.terms.split_off(&after.last_index.saturating_add(1));
        view.terms = view.terms.split_off(&after.snapshot_index);
    }

    fn plan(&self, rng: &mut StdRng, s: &RaftStatus) -> Plan {
        let from = PEERS[rng.random_range(0..PEERS.len())];
        let roll = rng.random_range(0..100);
        if roll < 35 {
            return self.honest(rng, s, from);
        }
        if roll < 50 {
            let mut plan = self.honest(rng, s, from);
            plan.kind = "honest mutated";
            plan.expect = Expect::Nothing;
            let last = plan
                .actions
                .iter()
                .rposition(|a| matches!(a, Action::Step { .. }));
            if let Some(at) = last {
                if let Action::Step { sender, message } = &plan.actions[at] {
                    plan.actions[at] = self.mutate_step(rng, s, *sender, message);
                }
            }
            return plan;
        }
        let mut actions = Vec::new();
        if rng.random_bool(0.2) {
            actions.push(Action::Tick(rng.random_range(1..4)));
        }
        if rng.random_bool(0.05) {
            actions.push(network_news(rng));
        }
        let echo = match roll < 65 {
            true => self.echo(rng, s, from),
            false => None,
        };
        let mut plan = Plan::new(actions, Expect::Nothing);
        match echo {
            Some((action, echoed)) => {
                plan.actions.push(action);
                plan.kind = "echo";
                plan.echoed = Some(echoed);
            }
            None => {
                plan.actions.push(self.lie(rng, s, from));
                plan.kind = "lie";
            }
        }
        plan
    }

    /// What honest peers send: in one phase they elect the replica and
    /// answer it, in the next one of them leads it.
    fn honest(&self, rng: &mut StdRng, s: &RaftStatus, from: u64) -> Plan {
        let electing = (self.inputs / PHASE).is_multiple_of(2);
        if !electing {
            return self.lead(rng, s, from);
        }
        if s.role != Role::Leader {
            return elect(s, from);
        }
        let mut actions = Vec::new();
        let mut proposals = rng.random_range(0..4);
        for _ in 0..proposals {
            actions.push(Action::Propose(pb::Command {
                kind: Some(super::command(rng)),
            }));
        }
        // An operator's membership change now and then (raft-rs logs an
        // empty entry instead while another is pending: one entry either way).
        if rng.random_bool(0.02) {
            actions.push(Action::ProposeMembership(learner_change(rng.random())));
            proposals += 1;
        }
        if rng.random_bool(0.1) {
            actions.push(Action::ReadIndex);
        }
        if rng.random_bool(0.3) {
            actions.push(Action::Tick(rng.random_range(1..4)));
        }
        // A peer that lost its disk rejects the leader's latest append to
        // it, hinting at the one entry a new log has: once the log is
        // compacted past that, the leader sends it a snapshot.
        let lost_log = rng.random_bool(0.1);
        let answer = if let Some(append) = self.latest_append(lost_log, from, s.term) {
            let mut no = message(MessageType::MsgAppendResponse, from, s.term);
            no.reject = true;
            no.index = append.index;
            no.reject_hint = 1;
            no.log_term = 1;
            no
        } else if rng.random_bool(0.7) {
            let mut ack = message(MessageType::MsgAppendResponse, from, s.term);
            ack.index = s.last_index.saturating_add(proposals);
            ack
        } else {
            let mut beat = message(MessageType::MsgHeartbeatResponse, from, s.term);
            beat.commit = s.commit;
            beat
        };
        actions.push(step(from, answer));
        Plan::new(actions, Expect::Nothing)
    }

    /// The replica's latest append to `to` in `term`, if `wanted`.
    fn latest_append(&self, wanted: bool, to: u64, term: u64) -> Option<&Message> {
        let appends = self.sent.get(&MessageType::MsgAppend.value())?;
        let mut to_peer = appends.iter().rev().filter(|m| m.to == to);
        to_peer.next().filter(|m| wanted && m.term == term)
    }

    /// A peer that leads the replica: appends after the newest entry it
    /// knows, heartbeats, or a snapshot when it knows too little.
    fn lead(&self, rng: &mut StdRng, s: &RaftStatus, from: u64) -> Plan {
        let term = if s.leader == Some(from) {
            s.term
        } else {
            s.term.saturating_add(1)
        };
        let known = self.view.terms.range(..=s.last_index).next_back();
        let Some((&prev, &log_term)) =
            known.filter(|(i, _)| **i >= s.commit && self.view.missed < 3)
        else {
            let index = s.last_index.max(s.commit).saturating_add(1);
            let mut m = message(MessageType::MsgSnapshot, from, term);
            m.set_snapshot(snapshot(
                self.state_bytes(index),
                voters(&[1, 2, 3]),
                index,
                term,
            ));
            return Plan::new(vec![step(from, m)], Expect::Snapshot { index, term });
        };
        if rng.random_bool(0.2) {
            let mut beat = message(MessageType::MsgHeartbeat, from, term);
            beat.commit = prev;
            return Plan::new(vec![step(from, beat)], Expect::Nothing);
        }
        let n = rng.random_range(0..4);
        let entries: Vec<Entry> = (1..=n)
            .map(|i| Entry {
                entry_type: EntryType::EntryNormal,
                term,
                index: prev.saturating_add(i),
                data: match rng.random_bool(0.9) {
                    true => log_entry(rng).into(),
                    false => Default::default(),
                },
                ..Default::default()
            })
            .collect();
        let mut append = message(MessageType::MsgAppend, from, term);
        append.index = prev;
        append.log_term = log_term;
        append.commit = if rng.random_bool(0.7) {
            prev.saturating_add(n)
        } else {
            s.commit
        };
        let expect = Expect::Append {
            from,
            term,
            entries: entries.iter().map(|e| (e.index, e.term)).collect(),
        };
        append.set_entries(entries.into());
        Plan::new(vec![step(from, append)], expect)
    }

    /// The replica's state as it is now, applied up to `index`, encoded.
    fn state_bytes(&self, index: u64) -> Vec<u8> {
        let copy = self.live.as_ref().and_then(|(live, _)| {
            let state = live.state.read().unwrap_or_else(|e| e.into_inner());
            State::from_snapshot_bytes(&state.encode_snapshot()).ok()
        });
        let mut state = copy.unwrap_or_default();
        state.skip(index);
        state.encode_snapshot()
    }
}

/// An input: what to do, what it does to the log if all is honest, and
/// what kind of input it is (for the campaign's counts).
struct Plan {
    actions: Vec<Action>,
    expect: Expect,
    kind: &'static str,
    /// The type of the replica's own message an echo sends back.
    echoed: Option<&'static str>,
}

impl Plan {
    fn new(actions: Vec<Action>, expect: Expect) -> Self {
        Self {
            actions,
            expect,
            kind: "honest",
            echoed: None,
        }
    }
}

enum Expect {
    /// Nothing the peers can count on.
    Nothing,
    /// Entries (index, term) appended by leader `from` in `term`.
    Append {
        from: u64,
        term: u64,
        entries: Vec<(u64, u64)>,
    },
    /// A snapshot at `index` of `term` restored.
    Snapshot { index: u64, term: u64 },
}

/// An election timeout, then the pre-vote and the vote granted by `from`.
fn elect(s: &RaftStatus, from: u64) -> Plan {
    let term = s.term.saturating_add(1);
    Plan::new(
        vec![
            Action::Tick(ELECTION_TICKS + 1),
            step(
                from,
                message(MessageType::MsgRequestPreVoteResponse, from, term),
            ),
            step(
                from,
                message(MessageType::MsgRequestVoteResponse, from, term),
            ),
        ],
        Expect::Nothing,
    )
}
