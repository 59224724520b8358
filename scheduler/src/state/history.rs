//! The cluster's own workload, kept past retention: a compact record of
//! every job retention (or a client's delete) removes from the state, in
//! a ring of the newest [`HISTORY_CAP`]. With the jobs the state still
//! holds, it is what `genfleet trace export` writes for the planner.
//!
//! Fed only by applied entries (the removal), so every replica holds the
//! same ring; it travels in the state's snapshot and counts in its hash.
//! A job enters the ring when it leaves `jobs`, not when it ends, so no
//! job is held twice, and a log an older release wrote (no ring) replays
//! to the state that release had until its first removal. (After a rolling
//! upgrade from such a release, replicas' rings differ by the removals
//! between their restarts, until newer records push those out.)

use std::collections::VecDeque;

use genfleet_proto as pb;
use pb::JobState;

use super::{Job, State};
use crate::qos::Qos;

/// Records kept, the newest removals. In memory a record is about 160
/// bytes (96 inline, the queue's and model's names on the heap): 32 MB at
/// the bound; in a snapshot about 60 bytes (measured in the tests), 12 MB.
/// With the default retention of 100,000 ended jobs, an export covers the
/// last 300,000 jobs.
pub const HISTORY_CAP: usize = 200_000;

/// One job as the planner replays it, and what happened to it.
#[derive(Debug, Clone, PartialEq)]
pub struct HistoryRecord {
    /// Submission, ms since the Unix epoch (the leader's stamp).
    pub arrival_ms: i64,
    /// First start; 0: never started.
    pub started_ms: i64,
    /// End; 0: not ended.
    pub ended_ms: i64,
    pub queue: Box<str>,
    pub model: Box<str>,
    pub width: u32,
    pub height: u32,
    pub frames: u32,
    pub steps: u32,
    pub tp: u32,
    pub priority: i32,
    pub guidance: f32,
    pub qos: Qos,
    pub outcome: JobState,
}

impl HistoryRecord {
    pub fn of(job: &Job) -> Self {
        let spec = &job.spec;
        HistoryRecord {
            arrival_ms: job.created_at_ms,
            started_ms: job.started_at_ms,
            ended_ms: if job.state.is_terminal() {
                job.finished_at_ms
            } else {
                0
            },
            queue: spec.queue.as_str().into(),
            model: spec.model.as_str().into(),
            width: spec.width,
            height: spec.height,
            frames: spec.frames,
            steps: spec.steps,
            tp: spec.tp,
            priority: spec.priority,
            guidance: spec.guidance,
            qos: crate::spec::qos(spec).unwrap_or(Qos::Standard),
            outcome: job.state,
        }
    }

    pub fn to_proto(&self) -> pb::TraceRecord {
        pb::TraceRecord {
            arrival_ms: self.arrival_ms,
            queue: self.queue.to_string(),
            qos: self.qos.label().to_string(),
            model: self.model.to_string(),
            width: self.width,
            height: self.height,
            frames: self.frames,
            steps: self.steps,
            tp: self.tp,
            priority: self.priority,
            guidance: self.guidance,
            started_ms: self.started_ms,
            ended_ms: self.ended_ms,
            outcome: self.outcome as i32,
        }
    }

    /// A stored record, or why it cannot be one (a hand-made backup).
    pub fn from_proto(r: pb::TraceRecord) -> Result<Self, String> {
        let qos =
            Qos::parse(&r.qos).ok_or_else(|| format!("a history record of class {:?}", r.qos))?;
        let outcome = JobState::try_from(r.outcome)
            .map_err(|_| format!("a history record with outcome {}", r.outcome))?;
        Ok(HistoryRecord {
            arrival_ms: r.arrival_ms,
            started_ms: r.started_ms,
            ended_ms: r.ended_ms,
            queue: r.queue.into(),
            model: r.model.into(),
            width: r.width,
            height: r.height,
            frames: r.frames,
            steps: r.steps,
            tp: r.tp,
            priority: r.priority,
            guidance: r.guidance,
            qos,
            outcome,
        })
    }

    /// What must hold of a record in the ring: the job had ended, and its
    /// names are names (the export writes them into CSV unquoted).
    pub fn check(&self) -> Result<(), String> {
        if !self.outcome.is_terminal() {
            return Err(format!(
                "a history record of a job that had not ended ({})",
                self.outcome.label()
            ));
        }
        for (what, name) in [("queue", &self.queue), ("model", &self.model)] {
            if !pb::is_valid_name(name) {
                return Err(format!("a history record's {what} {name:?} is not a name"));
            }
        }
        Ok(())
    }
}

/// The ring: oldest removal at the front.
#[derive(Debug, Clone)]
pub struct History {
    records: VecDeque<HistoryRecord>,
    cap: usize,
}

impl Default for History {
    fn default() -> Self {
        History::with_cap(HISTORY_CAP)
    }
}

impl History {
    pub(super) fn with_cap(cap: usize) -> Self {
        History {
            records: VecDeque::new(),
            cap,
        }
    }

    /// Adds the newest record; the oldest leaves once the ring is full.
    pub(super) fn push(&mut self, record: HistoryRecord) {
        if self.cap == 0 {
            return;
        }
        while self.records.len() >= self.cap {
            self.records.pop_front();
        }
        self.records.push_back(record);
    }

    /// Oldest removal first.
    pub fn records(&self) -> impl Iterator<Item = &HistoryRecord> {
        self.records.iter()
    }

    pub fn len(&self) -> usize {
        self.records.len()
    }

    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
    }

    pub fn cap(&self) -> usize {
        self.cap
    }

    /// `self`'s records then `later`'s, the newest `cap` kept.
    pub(super) fn append(&mut self, later: History) {
        for record in later.records {
            self.push(record);
        }
    }
}

impl State {
    pub fn history(&self) -> &History {
        &self.history
    }

    /// The workload for `genfleet trace export`: the ring and every job
    /// the state holds, those that arrived in `since_ms..until_ms`; the
    /// ring's in removal order, then the jobs' in submission order. A
    /// stable sort by arrival gives the trace's order (done by the caller,
    /// outside the state's lock).
    pub fn trace(&self, since_ms: Option<i64>, until_ms: Option<i64>) -> Vec<HistoryRecord> {
        let wanted = |arrival: i64| {
            since_ms.is_none_or(|s| arrival >= s) && until_ms.is_none_or(|u| arrival < u)
        };
        let mut jobs: Vec<&Job> = self
            .jobs
            .values()
            .filter(|j| wanted(j.created_at_ms))
            .collect();
        jobs.sort_by_key(|j| j.position);
        self.history
            .records()
            .filter(|r| wanted(r.arrival_ms))
            .cloned()
            .chain(jobs.into_iter().map(HistoryRecord::of))
            .collect()
    }

    /// For tests that fill the ring: a state whose ring keeps `cap`.
    #[cfg(test)]
    pub(super) fn with_history_cap(cap: usize) -> Self {
        State {
            history: History::with_cap(cap),
            ..State::default()
        }
    }
}
