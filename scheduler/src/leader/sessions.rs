//! The worker sessions open on this replica, their latest per-step
//! progress, and the throughput profile learned from it.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use genfleet_proto as pb;
use tokio::sync::Notify;

use crate::policy::Profile;

/// Worker sessions open on this replica, shared by the session handlers and
/// the leader's loops.
pub struct Sessions {
    inner: Mutex<SessionsInner>,
    /// Woken when a session opens or closes.
    pub(super) changed: Notify,
    /// Steps per second per model x flavor x tp: seeded, then refined from
    /// the step times workers' progress shows.
    profile: Mutex<Profile>,
}

impl Default for Sessions {
    fn default() -> Self {
        Self {
            inner: Mutex::default(),
            changed: Notify::new(),
            profile: Mutex::new(Profile::seeded()),
        }
    }
}

#[derive(Default)]
struct SessionsInner {
    /// Node -> number of open sessions (a reconnect may overlap the old one's end).
    open: BTreeMap<String, u32>,
    /// Node -> when its last session closed.
    closed_at: BTreeMap<String, Instant>,
    /// Job -> (lease epoch, step) as last reported, finer than the log's copy.
    live_steps: HashMap<String, (u64, u32)>,
}

/// Keeps a node counted as connected while it lives.
pub struct SessionGuard {
    sessions: Arc<Sessions>,
    node: String,
}

impl Drop for SessionGuard {
    fn drop(&mut self) {
        let mut inner = self.sessions.lock();
        if let Some(count) = inner.open.get_mut(&self.node) {
            *count -= 1;
            if *count == 0 {
                inner.open.remove(&self.node);
                inner.closed_at.insert(self.node.clone(), Instant::now());
            }
        }
        drop(inner);
        self.sessions.changed.notify_waiters();
    }
}

impl Sessions {
    fn lock(&self) -> MutexGuard<'_, SessionsInner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn open(self: &Arc<Self>, node: &str) -> SessionGuard {
        {
            let mut inner = self.lock();
            *inner.open.entry(node.to_string()).or_insert(0) += 1;
            inner.closed_at.remove(node);
        }
        self.changed.notify_waiters();
        SessionGuard {
            sessions: self.clone(),
            node: node.to_string(),
        }
    }

    pub fn connected(&self) -> BTreeSet<String> {
        self.lock().open.keys().cloned().collect()
    }

    /// How long a node has had no session, if it has none; `None` if it is
    /// connected or never connected to this replica.
    pub(super) fn disconnected_for(&self, node: &str, now: Instant) -> Option<Duration> {
        self.lock()
            .closed_at
            .get(node)
            .map(|at| now.saturating_duration_since(*at))
    }

    pub(super) fn is_connected(&self, node: &str) -> bool {
        self.lock().open.contains_key(node)
    }

    pub fn set_live_step(&self, job: &str, epoch: u64, step: u32) {
        self.lock()
            .live_steps
            .insert(job.to_string(), (epoch, step));
    }

    /// Fills in the freshest progress known here for a running job.
    pub fn overlay(&self, job: &mut pb::Job) {
        if job.state != pb::JobState::Running as i32 {
            return;
        }
        if let Some((epoch, step)) = self.lock().live_steps.get(&job.id) {
            if *epoch == job.lease_epoch {
                job.step = job.step.max(*step);
            }
        }
    }

    pub fn forget_job(&self, job: &str) {
        self.lock().live_steps.remove(job);
    }

    /// The throughput profile as it stands.
    pub fn profile(&self) -> Profile {
        self.profile
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Folds a step time observed on a job of `pixel_frames` into the
    /// profile; returns the new size-less rate.
    pub fn observe_step(
        &self,
        model: &str,
        flavor: &str,
        tp: u32,
        pixel_frames: u64,
        seconds: f64,
    ) -> f64 {
        let mut profile = self.profile.lock().unwrap_or_else(|e| e.into_inner());
        profile.observe_sized(model, flavor, tp, pixel_frames, seconds);
        profile.steps_per_s(model, flavor, tp)
    }
}
