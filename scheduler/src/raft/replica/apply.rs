//! Applying committed entries: commands to the state, membership changes
//! to raft and the address book; answering the proposers.

use genfleet_proto as pb;
use prost::Message as _;
use protobuf::Message as _;
use raft::eraftpb::{ConfChange, ConfChangeType, ConfChangeV2, Entry, EntryType};

use super::{DriverError, Replica};
use crate::raft::{Applied, JobEvent};
use crate::state::{Outcome, Rejection, State};

impl Replica {
    pub(super) fn apply_entries(&mut self, entries: Vec<Entry>) -> Result<(), DriverError> {
        if entries.is_empty() {
            return Ok(());
        }
        let shared = self.state.clone();
        let mut state = shared.write().unwrap_or_else(|e| e.into_inner());
        for entry in entries {
            let index = entry.index;
            if index <= state.applied_index() {
                continue; // already in the state (restored from a snapshot)
            }
            let result = match entry.get_entry_type() {
                EntryType::EntryNormal if entry.data.is_empty() => {
                    state.skip(index);
                    Ok(Outcome::Done)
                }
                EntryType::EntryNormal => {
                    let result = match pb::LogEntry::decode(&entry.data[..]) {
                        Ok(log_entry) => state.apply(index, &log_entry),
                        Err(_) => {
                            // Still applied, as nothing: the state's applied
                            // index must follow raft's (a restart replays
                            // from it).
                            state.skip(index);
                            Err(Rejection::Malformed("log entry is not a genfleet LogEntry"))
                        }
                    };
                    if let Err(rejection) = &result {
                        tracing::debug!(index, %rejection, "command rejected at apply");
                    }
                    // Nobody listening (a follower, an idle leader): skip the copies.
                    if self.events.receiver_count() > 0 {
                        for job in state.changed_jobs() {
                            let _ = self.events.send(JobEvent {
                                index,
                                job: job.to_proto(),
                            });
                        }
                    }
                    result
                }
                EntryType::EntryConfChange | EntryType::EntryConfChangeV2 => {
                    let change = decode_conf_change(&entry)?;
                    // raft-rs may read the state while it applies a change
                    // (a leader builds a snapshot for a peer that asked for
                    // one): never under this write lock, or the raft thread
                    // waits on itself. Between the two, the state is applied
                    // to the entry before the change, as the log says.
                    drop(state);
                    let conf = self.node.apply_conf_change(&change);
                    state = shared.write().unwrap_or_else(|e| e.into_inner());
                    self.record_membership(&entry, &change, conf, &mut state);
                    Ok(Outcome::Done)
                }
            };
            self.reply(&entry.context, Applied { index, result });
        }
        self.metrics
            .raft_applied_index
            .set(state.applied_index() as i64);
        Ok(())
    }

    /// Records in the state what raft made of membership change `change`
    /// (the entry at `entry.index`): the members' addresses.
    fn record_membership(
        &mut self,
        entry: &Entry,
        change: &ConfChangeV2,
        applied: Result<raft::eraftpb::ConfState, raft::Error>,
        state: &mut State,
    ) {
        let conf = match applied {
            Ok(conf) => conf,
            Err(e) => {
                // Refused the same way on every replica (e.g. removing a
                // replica that is not a member): nothing changes.
                tracing::warn!(index = entry.index, error = %e, "membership change refused");
                state.skip(entry.index);
                return;
            }
        };
        let addresses = pb::MembershipContext::decode(&change.context[..]).unwrap_or_default();
        for single in change.get_changes() {
            let id = single.node_id;
            match single.get_change_type() {
                ConfChangeType::AddNode | ConfChangeType::AddLearnerNode => {
                    let address = addresses
                        .members
                        .iter()
                        .find(|m| m.id == id)
                        .map(|m| m.address.as_str());
                    let known = state.members().get(&id).cloned();
                    match address.map(str::to_string).or(known) {
                        Some(address) => state.apply_membership(entry.index, id, Some(&address)),
                        None => state.skip(entry.index),
                    }
                }
                ConfChangeType::RemoveNode => state.apply_membership(entry.index, id, None),
            }
        }
        // Members the state has no address for yet (the founding ones)
        // get the proposer's: the same on every replica, as it is logged.
        for member in &addresses.members {
            let is_member = conf.voters.contains(&member.id) || conf.learners.contains(&member.id);
            if is_member && !state.members().contains_key(&member.id) {
                state.apply_membership(entry.index, member.id, Some(&member.address));
            }
        }
        if change.get_changes().is_empty() {
            state.skip(entry.index);
        }
        self.node.mut_store().set_conf_state(conf);
    }
}

/// The change entry `entry` holds, as a V2 change.
fn decode_conf_change(entry: &Entry) -> Result<ConfChangeV2, DriverError> {
    let wrap = |source| DriverError::ConfChange {
        index: entry.index,
        source,
    };
    if entry.get_entry_type() == EntryType::EntryConfChange {
        let mut cc = ConfChange::default();
        cc.merge_from_bytes(&entry.data).map_err(wrap)?;
        // genfleet proposes only V2 changes; a legacy one is its V2 twin.
        let mut single = raft::eraftpb::ConfChangeSingle {
            node_id: cc.node_id,
            ..Default::default()
        };
        single.set_change_type(cc.get_change_type());
        let mut v2 = ConfChangeV2::default();
        v2.set_changes(vec![single].into());
        v2.context = cc.context;
        Ok(v2)
    } else {
        let mut cc = ConfChangeV2::default();
        cc.merge_from_bytes(&entry.data).map_err(wrap)?;
        Ok(cc)
    }
}
