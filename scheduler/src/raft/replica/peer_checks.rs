//! What a replica refuses of a peer's raft message before raft-rs sees it.
//! A peer has proved who it is, but a buggy or compromised one may still
//! send messages that raft-rs takes on trust and answers with a panic (a
//! heartbeat committing past the end of the log, entries out of order) or
//! that would stop this replica (a snapshot whose state cannot be read).
//! Each is refused here, logged, and the replica goes on.

use protobuf::Message as _;
use raft::eraftpb::{ConfChange, ConfChangeV2, EntryType, Message, MessageType};

use crate::state::State;

/// Terms and indexes beyond this are lies: raft-rs adds to them unchecked
/// (a term of u64::MAX overflows at the next election).
const MAX_NUMBER: u64 = u64::MAX / 2;

/// Why `message` cannot be stepped into a log whose last index is
/// `last_index` and commit index `committed`, if it cannot. What a true
/// replica sends always passes (the fuzzing campaign's honest peers).
pub fn refusal(message: &Message, last_index: u64, committed: u64) -> Option<String> {
    let kind = message.get_msg_type();
    if let Some(why) = number_refusal(message) {
        return Some(why);
    }
    match kind {
        // genfleet's followers never forward proposals (a proposal on a
        // follower fails fast), and raft-rs panics on some forged ones.
        MessageType::MsgPropose => return Some("replicas forward no proposals".into()),
        // raft-rs sends these without a term (a follower forwards them to
        // its leader); with one, a follower forwarding it again panics.
        MessageType::MsgReadIndex | MessageType::MsgTransferLeader if message.term != 0 => {
            return Some(format!("a {kind:?} carries no term"));
        }
        MessageType::MsgReadIndex if message.get_entries().len() != 1 => {
            return Some("a read request carries exactly one entry (its context)".into());
        }
        MessageType::MsgReadIndex | MessageType::MsgTransferLeader => {}
        // raft-rs treats every other term-0 message as local and skips its
        // term checks.
        _ if message.term == 0 => return Some(format!("a {kind:?} without a term")),
        _ => {}
    }
    // genfleet's replicas never ask for a snapshot (RawNode::request_snapshot).
    if message.request_snapshot != 0 {
        return Some("replicas ask for no snapshots".into());
    }
    match kind {
        // raft-rs commits to a heartbeat's index as it stands: past the log's
        // end it panics. A true leader never sends one (it caps the commit at
        // what the follower has matched).
        MessageType::MsgHeartbeat if message.commit > last_index => Some(format!(
            "a heartbeat commits to {} but this log ends at {last_index}",
            message.commit
        )),
        MessageType::MsgAppend => append_refusal(message),
        // A follower cannot have matched, or hint at, entries the leader
        // does not have.
        MessageType::MsgAppendResponse if !message.reject && message.index > last_index => {
            Some(format!(
                "a follower acknowledged entry {} but this log ends at {last_index}",
                message.index
            ))
        }
        MessageType::MsgAppendResponse if message.reject && message.reject_hint > last_index => {
            Some(format!(
                "a rejection hints at entry {} but this log ends at {last_index}",
                message.reject_hint
            ))
        }
        MessageType::MsgSnapshot => snapshot_refusal(message, committed),
        _ => None,
    }
}

/// Terms and indexes a replica could really have reached.
fn number_refusal(message: &Message) -> Option<String> {
    let meta = message.get_snapshot().get_metadata();
    let numbers = [
        ("term", message.term),
        ("index", message.index),
        ("log term", message.log_term),
        ("commit", message.commit),
        ("reject hint", message.reject_hint),
        ("snapshot index", meta.index),
        ("snapshot term", meta.term),
    ];
    let entries = message.get_entries().iter();
    let entry_numbers = entries.flat_map(|e| [("entry index", e.index), ("entry term", e.term)]);
    numbers
        .into_iter()
        .chain(entry_numbers)
        .find(|(_, n)| *n > MAX_NUMBER)
        .map(|(what, n)| format!("a {what} of {n}"))
}

/// Entries must follow the message's index one by one, in terms that never
/// go down and are never 0, and a membership change must be one; raft-rs
/// indexes its log by them and takes the rest on trust.
fn append_refusal(message: &Message) -> Option<String> {
    // raft-rs takes log term 0 as matching any index past its log's end.
    if message.index > 0 && message.log_term == 0 {
        return Some(format!("an append after entry {} of term 0", message.index));
    }
    let mut term = message.log_term;
    for (expected, entry) in (message.index + 1..).zip(message.get_entries()) {
        if entry.index != expected {
            return Some(format!(
                "entries out of order: {} where {expected} was due",
                entry.index
            ));
        }
        if entry.term == 0 || entry.term < term {
            return Some(format!(
                "entry {} of term {} after term {term}",
                entry.index, entry.term
            ));
        }
        let change_readable = match entry.get_entry_type() {
            EntryType::EntryConfChange => ConfChange::parse_from_bytes(&entry.data).is_ok(),
            EntryType::EntryConfChangeV2 => ConfChangeV2::parse_from_bytes(&entry.data).is_ok(),
            EntryType::EntryNormal => true,
        };
        if !change_readable {
            return Some(format!(
                "entry {} is a membership change that cannot be read",
                entry.index
            ));
        }
        term = entry.term;
    }
    // In order, entries after the commit index cannot rewrite a committed
    // one (raft-rs answers an append below the commit index as stale).
    None
}

/// A snapshot raft-rs would restore must hold a state this replica can
/// read, applied exactly to the snapshot's index: restoring anything else
/// stops the replica, or leaves it a log it cannot reopen.
fn snapshot_refusal(message: &Message, committed: u64) -> Option<String> {
    let snapshot = message.get_snapshot();
    let meta = snapshot.get_metadata();
    if meta.index == 0 || meta.term == 0 {
        return Some(format!(
            "a snapshot at index {} of term {}",
            meta.index, meta.term
        ));
    }
    if meta.index < committed {
        return None; // raft-rs ignores it: this replica is further along
    }
    match State::from_snapshot_bytes(&snapshot.data) {
        Err(e) => Some(format!(
            "a snapshot at {} whose state cannot be read: {e}",
            meta.index
        )),
        Ok(state) if state.applied_index() != meta.index => Some(format!(
            "a snapshot at {} of a state applied to {}",
            meta.index,
            state.applied_index()
        )),
        Ok(_) => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use raft::eraftpb::Entry;

    fn message(kind: MessageType) -> Message {
        let mut m = Message::default();
        m.set_msg_type(kind);
        m.term = 3;
        m
    }

    #[test]
    fn a_heartbeat_past_the_log_is_refused() {
        let mut m = message(MessageType::MsgHeartbeat);
        m.commit = 11;
        assert!(refusal(&m, 10, 5).is_some());
        m.commit = 10;
        assert!(refusal(&m, 10, 5).is_none());
    }

    #[test]
    fn appended_entries_must_follow_in_order() {
        let entry = |index, term| Entry {
            index,
            term,
            ..Default::default()
        };
        let mut m = message(MessageType::MsgAppend);
        m.index = 5;
        m.log_term = 2;
        m.set_entries(vec![entry(6, 2), entry(7, 3)].into());
        assert!(refusal(&m, 10, 5).is_none());
        m.set_entries(vec![entry(1, 2)].into());
        assert!(refusal(&m, 10, 5).is_some(), "an entry below the index");
        m.set_entries(vec![entry(6, 2), entry(8, 2)].into());
        assert!(refusal(&m, 10, 5).is_some(), "a gap");
        m.set_entries(vec![entry(6, 1)].into());
        assert!(refusal(&m, 10, 5).is_some(), "a term going down");
        let mut change = entry(6, 2);
        change.set_entry_type(EntryType::EntryConfChangeV2);
        change.data = vec![0xff].into();
        m.set_entries(vec![change].into());
        assert!(
            refusal(&m, 10, 5).is_some(),
            "an unreadable membership change"
        );
        m.set_entries(Vec::new().into());
        m.log_term = 0;
        assert!(refusal(&m, 10, 5).is_some(), "log term 0 matches anything");
    }

    #[test]
    fn terms_belong_where_raft_puts_them() {
        let mut vote = message(MessageType::MsgRequestVote);
        vote.term = 0;
        assert!(refusal(&vote, 10, 5).is_some(), "a vote without a term");
        vote.term = u64::MAX;
        assert!(refusal(&vote, 10, 5).is_some(), "a term that overflows");
        let read = |term, entries: usize| {
            let mut m = message(MessageType::MsgReadIndex);
            m.term = term;
            m.set_entries(vec![Entry::default(); entries].into());
            refusal(&m, 10, 5)
        };
        assert!(read(0, 1).is_none(), "a forwarded read");
        assert!(read(3, 1).is_some(), "a read with a term");
        assert!(read(0, 0).is_some(), "a read without its context");
        assert!(refusal(&message(MessageType::MsgPropose), 10, 5).is_some());
    }

    #[test]
    fn an_unreadable_snapshot_is_refused() {
        let mut m = message(MessageType::MsgSnapshot);
        m.mut_snapshot().mut_metadata().index = 50;
        m.mut_snapshot().mut_metadata().term = 3;
        m.mut_snapshot().data = b"not a state".to_vec().into();
        assert!(refusal(&m, 10, 5).is_some());
        // A readable state, but applied to another index than the snapshot's.
        m.mut_snapshot().data = State::default().encode_snapshot().into();
        assert!(refusal(&m, 10, 5).is_some());
        let mut ack = message(MessageType::MsgAppendResponse);
        ack.index = 11;
        assert!(refusal(&ack, 10, 5).is_some());
        ack.reject = true;
        assert!(
            refusal(&ack, 10, 5).is_none(),
            "a rejection hints, it claims nothing"
        );
    }
}
