//! A linearizability checker for the job API (Wing and Gong's search, split
//! per job: operations on different jobs commute, so each job's history is
//! checked alone).
//!
//! The model of one job: absent, live (pending or running), cancelled or
//! ended (completed or failed). Workers may end a live job at any moment,
//! so the model allows live -> ended before any operation. An operation
//! whose answer was lost (a timeout, a failover) may take effect at any
//! point after it began, or never.
//!
//! With retention on, the cluster forgets ended jobs: `check_forgetting`
//! also lets a cancelled or ended job become forgotten (found no more) at
//! any moment, and never come back.

use std::collections::{BTreeMap, HashSet};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Model {
    Absent,
    Live,
    Cancelled,
    Ended,
    /// Ended, then removed by retention.
    Forgotten,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Op {
    Submit,
    Cancel,
    Get,
}

/// What the caller was told.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answer {
    /// Submit acknowledged.
    Submitted,
    /// Cancel acknowledged: the job is now cancelled.
    Cancelled,
    /// Cancel refused: the job had already ended or been cancelled.
    AlreadyEnded,
    NotFound,
    /// Get answered with the job in this model state.
    Saw(Model),
    /// No answer (timeout, failover): may or may not have taken effect.
    Unknown,
}

#[derive(Debug, Clone)]
pub struct Event {
    pub job: String,
    pub op: Op,
    pub answer: Answer,
    /// When the call began and (if answered) ended, on one clock.
    pub invoked: u64,
    pub returned: Option<u64>,
}

/// The states a job may have reached from `state` with no operation:
/// a worker may end a live job, retention may forget an ended one.
fn unprompted(state: Model, forgetting: bool) -> Vec<Model> {
    let mut reached = vec![state];
    if state == Model::Live {
        reached.push(Model::Ended);
    }
    if forgetting && matches!(state, Model::Live | Model::Cancelled | Model::Ended) {
        reached.push(Model::Forgotten);
    }
    reached
}

/// The states `op` with `answer` may lead to from `state`.
fn step(state: Model, op: &Op, answer: Answer, forgetting: bool) -> Vec<Model> {
    let starts = unprompted(state, forgetting);
    let mut next = Vec::new();
    for s in starts {
        match (op, answer) {
            (Op::Submit, Answer::Submitted) => {
                next.push(if s == Model::Absent { Model::Live } else { s })
            }
            (Op::Submit, Answer::Unknown) => {
                next.push(s);
                if s == Model::Absent {
                    next.push(Model::Live);
                }
            }
            (Op::Cancel, Answer::Cancelled) if s == Model::Live => next.push(Model::Cancelled),
            (Op::Cancel, Answer::AlreadyEnded) if matches!(s, Model::Cancelled | Model::Ended) => {
                next.push(s)
            }
            (Op::Cancel, Answer::NotFound) | (Op::Get, Answer::NotFound)
                if matches!(s, Model::Absent | Model::Forgotten) =>
            {
                next.push(s)
            }
            (Op::Cancel, Answer::Unknown) => {
                next.push(s);
                if s == Model::Live {
                    next.push(Model::Cancelled);
                }
            }
            (Op::Get, Answer::Saw(seen)) if seen == s => next.push(s),
            (Op::Get, Answer::Unknown) => next.push(s),
            _ => {}
        }
    }
    next
}

/// Checks every job's history; returns the first job that is not
/// linearizable, with its events.
pub fn check(events: &[Event]) -> Result<(), String> {
    check_with(events, false)
}

/// As [`check`], for a cluster whose retention forgets ended jobs.
pub fn check_forgetting(events: &[Event]) -> Result<(), String> {
    check_with(events, true)
}

fn check_with(events: &[Event], forgetting: bool) -> Result<(), String> {
    let mut by_job: BTreeMap<&str, Vec<&Event>> = BTreeMap::new();
    for e in events {
        by_job.entry(e.job.as_str()).or_default().push(e);
    }
    for (job, history) in by_job {
        if !linearizable(&history, forgetting) {
            let lines: Vec<String> = history.iter().map(|e| format!("  {e:?}")).collect();
            return Err(format!(
                "job {job} has no linearization:\n{}",
                lines.join("\n")
            ));
        }
    }
    Ok(())
}

fn linearizable(history: &[&Event], forgetting: bool) -> bool {
    assert!(
        history.len() <= 128,
        "a job's history of {} operations is too long to search",
        history.len()
    );
    let mut seen = HashSet::new();
    search(history, 0u128, Model::Absent, forgetting, &mut seen)
}

/// Depth-first search over linearization orders; `done` marks the events
/// placed so far.
fn search(
    history: &[&Event],
    done: u128,
    state: Model,
    forgetting: bool,
    seen: &mut HashSet<(u128, Model)>,
) -> bool {
    // Finished when every answered event is placed (unanswered ones may
    // never have happened).
    let pending_answered = history
        .iter()
        .enumerate()
        .any(|(i, e)| done & (1 << i) == 0 && e.returned.is_some());
    if !pending_answered {
        return true;
    }
    if !seen.insert((done, state)) {
        return false;
    }
    // An event may go next only if no unplaced event returned before it began.
    let horizon = history
        .iter()
        .enumerate()
        .filter(|(i, _)| done & (1 << i) == 0)
        .filter_map(|(_, e)| e.returned)
        .min()
        .unwrap_or(u64::MAX);
    for (i, event) in history.iter().enumerate() {
        if done & (1 << i) != 0 || event.invoked > horizon {
            continue;
        }
        for next in step(state, &event.op, event.answer, forgetting) {
            if search(history, done | (1 << i), next, forgetting, seen) {
                return true;
            }
        }
    }
    false
}
