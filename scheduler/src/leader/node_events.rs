//! Job changes routed to the worker sessions they concern.
//!
//! Every session used to receive every event of the log: at a thousand
//! nodes each change woke a thousand tasks, their shared buffer overflowed,
//! and each session that fell behind re-read the whole state. One router
//! now reads the events once and hands each job to the sessions of the
//! node it runs on and of the node it last ran on (which must stop it).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use genfleet_proto as pb;
use pb::JobState;
use tokio::sync::broadcast;

use crate::raft::{JobEvent, RaftHandle};
use crate::state::State;

/// Changes one session may fall behind by before it re-reads its node.
const SESSION_BUFFER: usize = 256;

/// What a worker session is told.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NodeEvent {
    /// This job changed: bring the worker in line with it.
    Job(String),
    /// Changes were missed: bring the worker in line with every job.
    Resync,
}

#[derive(Default)]
pub struct NodeEvents {
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    /// Node -> its open sessions (a reconnect may overlap the old one's end).
    sessions: HashMap<String, Vec<(u64, broadcast::Sender<NodeEvent>)>>,
    /// Running job -> the node it runs on.
    running_on: HashMap<String, String>,
    next_session: u64,
}

/// A session's feed; leaves the router when dropped.
pub struct Subscription {
    pub events: broadcast::Receiver<NodeEvent>,
    router: Arc<NodeEvents>,
    node: String,
    id: u64,
}

impl Drop for Subscription {
    fn drop(&mut self) {
        let mut inner = self.router.lock();
        if let Some(feeds) = inner.sessions.get_mut(&self.node) {
            feeds.retain(|(id, _)| *id != self.id);
            if feeds.is_empty() {
                inner.sessions.remove(&self.node);
            }
        }
    }
}

impl NodeEvents {
    /// Starts routing `raft`'s job events; runs while the replica does.
    pub fn start(raft: &RaftHandle) -> Arc<Self> {
        let router = Arc::new(Self::default());
        // Subscribe before reading the state, so no change falls between.
        let mut events = raft.subscribe();
        raft.read(|state| router.lock().running_on = running_jobs(state));
        let task_router = router.clone();
        let raft = raft.clone();
        tokio::spawn(async move {
            loop {
                match events.recv().await {
                    Ok(event) => task_router.route(&event),
                    Err(broadcast::error::RecvError::Lagged(missed)) => {
                        tracing::debug!(missed, "the node event router fell behind; resyncing");
                        let running = raft.read(running_jobs);
                        task_router.resync(running);
                    }
                    Err(broadcast::error::RecvError::Closed) => return,
                }
            }
        });
        router
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The changes that concern `node`, from now on.
    pub fn subscribe(self: &Arc<Self>, node: &str) -> Subscription {
        let (tx, events) = broadcast::channel(SESSION_BUFFER);
        let mut inner = self.lock();
        inner.next_session += 1;
        let id = inner.next_session;
        inner
            .sessions
            .entry(node.to_string())
            .or_default()
            .push((id, tx));
        Subscription {
            events,
            router: self.clone(),
            node: node.to_string(),
            id,
        }
    }

    /// Hands one change to the node the job runs on and the node it ran
    /// on before. Changes outside the log (progress, verdicts) concern
    /// only watchers.
    fn route(&self, event: &JobEvent) {
        if event.index == 0 {
            return;
        }
        let job = &event.job;
        let mut inner = self.lock();
        let before = if job.state() == JobState::Running && !job.node.is_empty() {
            inner.running_on.insert(job.id.clone(), job.node.clone())
        } else {
            inner.running_on.remove(&job.id)
        };
        let nodes = [Some(job.node.as_str()), before.as_deref()];
        for (i, node) in nodes.iter().enumerate() {
            let Some(node) = node.filter(|n| !n.is_empty()) else {
                continue;
            };
            if i == 1 && nodes[0] == Some(node) {
                continue;
            }
            for (_, feed) in inner.sessions.get(node).into_iter().flatten() {
                // An error only means that session just ended.
                let _ = feed.send(NodeEvent::Job(job.id.clone()));
            }
        }
    }

    /// After missed changes: every session re-reads its node.
    fn resync(&self, running_on: HashMap<String, String>) {
        let mut inner = self.lock();
        inner.running_on = running_on;
        for (_, feed) in inner.sessions.values().flatten() {
            let _ = feed.send(NodeEvent::Resync);
        }
    }
}

/// Running job -> its node.
fn running_jobs(state: &State) -> HashMap<String, String> {
    state
        .nodes()
        .flat_map(|n| n.busy.values().map(|job| (job.clone(), n.name.clone())))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(id: &str, state: JobState, node: &str) -> JobEvent {
        let mut job = pb::Job {
            id: id.into(),
            node: node.into(),
            ..Default::default()
        };
        job.set_state(state);
        JobEvent { index: 1, job }
    }

    fn drain(s: &mut Subscription) -> Vec<NodeEvent> {
        std::iter::from_fn(|| s.events.try_recv().ok()).collect()
    }

    #[test]
    fn a_change_reaches_the_node_it_runs_on_and_the_one_it_left() {
        let router = Arc::new(NodeEvents::default());
        let mut a = router.subscribe("a");
        let mut b = router.subscribe("b");
        let mut c = router.subscribe("c");
        router.route(&event("j1", JobState::Running, "a"));
        assert_eq!(drain(&mut a), [NodeEvent::Job("j1".into())]);
        assert!(drain(&mut b).is_empty());

        // Requeued: the node is cleared, and the node that ran it hears.
        router.route(&event("j1", JobState::Pending, ""));
        assert_eq!(drain(&mut a), [NodeEvent::Job("j1".into())]);

        router.route(&event("j1", JobState::Running, "b"));
        router.route(&event("j1", JobState::Cancelled, "b"));
        assert!(drain(&mut a).is_empty());
        assert_eq!(drain(&mut b).len(), 2);
        assert!(drain(&mut c).is_empty(), "an unconcerned node is not woken");

        // Progress and verdicts (index 0) are not for sessions.
        let mut progress = event("j2", JobState::Running, "c");
        progress.index = 0;
        router.route(&progress);
        assert!(drain(&mut c).is_empty());
    }

    #[test]
    fn a_moved_job_reaches_its_old_node_and_a_closed_session_leaves() {
        let router = Arc::new(NodeEvents::default());
        let mut a = router.subscribe("a");
        let mut b = router.subscribe("b");
        router.route(&event("j1", JobState::Running, "a"));
        // Reassigned under a new lease on another node in one change.
        router.route(&event("j1", JobState::Running, "b"));
        assert_eq!(drain(&mut a).len(), 2);
        assert_eq!(drain(&mut b).len(), 1);

        drop(b);
        assert!(!router.lock().sessions.contains_key("b"));
        router.resync(HashMap::new());
        assert_eq!(drain(&mut a), [NodeEvent::Resync]);
    }
}
