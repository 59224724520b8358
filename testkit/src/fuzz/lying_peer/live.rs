//! The replica under attack, on a thread of its own, and what runs there:
//! each input's actions, each followed by the ready handling the driver
//! does, with a transport that keeps what the replica sends.

use std::any::Any;
use std::cell::Cell;
use std::panic::{catch_unwind, resume_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use genfleet_proto as pb;
use genfleet_scheduler::api::parse_peer_message;
use genfleet_scheduler::metrics::Metrics;
use genfleet_scheduler::raft::{
    Bootstrap, Feedback, RaftStatus, Replica, ReplicaConfig, Transport,
};
use genfleet_scheduler::state::State;
use protobuf::Message as _;
use raft::eraftpb::{ConfChangeV2, Message, MessageType};
use tokio::sync::{broadcast, oneshot};

use super::{ELECTION_TICKS, ME, PEERS, SNAPSHOT_EVERY};

/// Longest description of an input kept for a failure.
const DESCRIBED_CHARS: usize = 600;
/// Longest an input may take on the replica's thread (one takes
/// milliseconds): past it the replica hangs, which is a failure.
const ANSWER_WITHIN: Duration = Duration::from_secs(30);
/// Most messages kept of what the replica sends during one input.
const KEPT_PER_INPUT: usize = 256;

/// One step of an input, run on the replica's thread.
#[derive(Debug)]
pub(super) enum Action {
    Tick(u32),
    /// A message from `sender`, the peer the transport authenticated.
    Step {
        sender: u64,
        message: Message,
    },
    /// Bytes from `sender` that may or may not be a message.
    Bytes {
        sender: u64,
        bytes: Vec<u8>,
    },
    Propose(pb::Command),
    /// A membership change, as an operator asks the leader for one.
    ProposeMembership(ConfChangeV2),
    ReadIndex,
    /// What the replica's own transport may report at any time: a peer
    /// unreachable, a snapshot delivered or lost.
    Feedback(Feedback),
}

pub(super) fn step(sender: u64, message: Message) -> Action {
    Action::Step { sender, message }
}

pub(super) fn describe(actions: &[Action]) -> String {
    let mut text = format!("{actions:?}");
    if let Some((cut, _)) = text.char_indices().nth(DESCRIBED_CHARS) {
        text.truncate(cut);
        text.push('…');
    }
    text
}

/// The replica after an input, as its thread saw it.
pub(super) struct After {
    pub status: RaftStatus,
    pub state_applied: u64,
    pub invariants: Result<(), String>,
    /// What the replica sent during the input (at most [`KEPT_PER_INPUT`]).
    pub sent: Vec<Message>,
}

/// The replica's transport: it keeps what the replica sends, for the lying
/// peers to send back changed, and reports each snapshot delivered, as a
/// link does once the batch holding it went out (raft waits for that news).
#[derive(Default)]
struct Recorder {
    sent: Vec<Message>,
    feedback: Vec<Feedback>,
}

impl Transport for Recorder {
    fn send(&mut self, messages: Vec<Message>) {
        for message in messages {
            if message.get_msg_type() == MessageType::MsgSnapshot {
                self.feedback.push(Feedback::Snapshot {
                    to: message.to,
                    delivered: true,
                });
            }
            if self.sent.len() < KEPT_PER_INPUT {
                self.sent.push(message);
            }
        }
    }

    fn feedback(&mut self) -> Vec<Feedback> {
        std::mem::take(&mut self.feedback)
    }
}

/// The replica, its transport, and the clock its proposals are stamped with.
pub(super) struct Hosted {
    pub replica: Replica,
    transport: Recorder,
    clock_ms: i64,
}

impl Hosted {
    fn open(dir: &Path) -> Result<Self, String> {
        let members = [ME, PEERS[0], PEERS[1]]
            .into_iter()
            .map(|id| (id, format!("peer-{id}")))
            .collect();
        let config = ReplicaConfig {
            id: ME,
            dir: dir.to_path_buf(),
            bootstrap: Bootstrap::NewCluster(members),
            election_ticks: ELECTION_TICKS as usize,
            heartbeat_ticks: 2,
            election_range: Some((ELECTION_TICKS as usize, ELECTION_TICKS as usize + 1)),
            snapshot_every: SNAPSHOT_EVERY,
            incarnation: 0,
        };
        let metrics = Metrics::new(ME).map_err(|e| e.to_string())?;
        let (events, _) = broadcast::channel(16);
        let replica = Replica::open(&config, metrics, events).map_err(|e| e.to_string())?;
        Ok(Self {
            replica,
            transport: Recorder::default(),
            clock_ms: 0,
        })
    }

    /// Runs an input's actions; Err if the replica halted.
    pub(super) fn run(&mut self, actions: Vec<Action>) -> Result<After, String> {
        self.transport.sent.clear();
        self.settle()?;
        for action in actions {
            match action {
                Action::Tick(n) => {
                    for _ in 0..n {
                        self.replica.tick();
                        self.settle()?;
                    }
                }
                // Through the wire format, as the transport's service gets it.
                Action::Step { sender, message } => match message.write_to_bytes() {
                    Ok(bytes) => self.deliver(sender, &bytes),
                    Err(e) => return Err(format!("the harness cannot encode a message: {e}")),
                },
                Action::Bytes { sender, bytes } => self.deliver(sender, &bytes),
                Action::Propose(command) => {
                    self.clock_ms += 1000;
                    let (reply, _) = oneshot::channel();
                    self.replica.propose(command, self.clock_ms, reply);
                }
                Action::ProposeMembership(change) => {
                    let (reply, _) = oneshot::channel();
                    self.replica.propose_conf_change(change, reply);
                }
                Action::ReadIndex => {
                    let (reply, _) = oneshot::channel();
                    self.replica.read_index(reply);
                }
                Action::Feedback(feedback) => self.replica.feedback(feedback),
            }
            self.settle()?;
        }
        let state = self.replica.state();
        let state = state.read().unwrap_or_else(|e| e.into_inner());
        Ok(After {
            status: self.replica.status(),
            state_applied: state.applied_index(),
            invariants: state.check_invariants(),
            sent: std::mem::take(&mut self.transport.sent),
        })
    }

    /// What the transport's service does with a peer's bytes.
    fn deliver(&mut self, sender: u64, bytes: &[u8]) {
        let Ok(message) = parse_peer_message(sender, bytes) else {
            return;
        };
        if message.from == sender && message.to == ME {
            self.replica.step(message);
        }
    }

    /// Handles what is ready and what the transport reports, as the driver
    /// does, until nothing is left.
    fn settle(&mut self) -> Result<(), String> {
        for _ in 0..4 {
            self.replica
                .handle_ready(&mut self.transport)
                .map_err(|e| format!("the replica halted: {e}"))?;
            for feedback in self.transport.feedback() {
                self.replica.feedback(feedback);
            }
        }
        Ok(())
    }
}

type Call = Box<dyn FnOnce(&mut Hosted) + Send>;
type Panic = Box<dyn Any + Send>;

/// A replica on a thread of its own: raft-engine caches log blocks per
/// thread, keyed by file and offset, so two logs opened one after the
/// other on one thread would read each other's blocks. A panic on that
/// thread is caught there and raised again in the caller.
pub(super) struct Live {
    calls: Option<mpsc::Sender<Call>>,
    thread: Option<std::thread::JoinHandle<()>>,
    /// The replica's state, which real snapshots are made from.
    pub state: Arc<RwLock<State>>,
    /// The thread did not answer in time: it is left behind, not joined.
    hung: Cell<bool>,
}

/// How opening a replica on its thread went.
enum Opened {
    Ready(Arc<RwLock<State>>),
    Failed(String),
    Panicked(Panic),
}

impl Live {
    pub(super) fn open(dir: &Path) -> Result<Self, String> {
        let (calls, inbox) = mpsc::channel::<Call>();
        let (opened_tx, opened) = mpsc::channel();
        let dir = dir.to_path_buf();
        let thread = std::thread::Builder::new()
            .name("fuzz-replica".into())
            .spawn(move || {
                let mut hosted = match catch_unwind(|| Hosted::open(&dir)) {
                    Ok(Ok(hosted)) => hosted,
                    Ok(Err(e)) => return drop(opened_tx.send(Opened::Failed(e))),
                    Err(panic) => return drop(opened_tx.send(Opened::Panicked(panic))),
                };
                let _ = opened_tx.send(Opened::Ready(hosted.replica.state()));
                for call in inbox {
                    call(&mut hosted);
                }
                hosted.replica.fail_all();
            })
            .map_err(|e| format!("a thread for the replica: {e}"))?;
        let mut live = Live {
            calls: Some(calls),
            thread: Some(thread),
            state: Arc::default(),
            hung: Cell::new(false),
        };
        match opened.recv() {
            Ok(Opened::Ready(state)) => {
                live.state = state;
                Ok(live)
            }
            Ok(Opened::Failed(e)) => Err(e),
            Ok(Opened::Panicked(panic)) => resume_unwind(panic),
            Err(_) => Err("the replica's thread ended before opening it".into()),
        }
    }

    /// Runs `f` on the replica's thread and returns what it returned, or
    /// Err if the thread did not answer in time (the replica hangs).
    pub(super) fn with<R: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Hosted) -> R + Send + 'static,
    ) -> Result<R, String> {
        let (tx, rx) = mpsc::channel::<Result<R, Panic>>();
        let call: Call = Box::new(move |hosted| {
            let _ = tx.send(catch_unwind(AssertUnwindSafe(|| f(hosted))));
        });
        if let Some(calls) = &self.calls {
            let _ = calls.send(call);
        }
        match rx.recv_timeout(ANSWER_WITHIN) {
            Ok(Ok(result)) => Ok(result),
            Ok(Err(panic)) => resume_unwind(panic),
            Err(RecvTimeoutError::Timeout) => {
                self.hung.set(true);
                Err(format!(
                    "the replica hangs: no answer from its thread in {} s",
                    ANSWER_WITHIN.as_secs()
                ))
            }
            Err(RecvTimeoutError::Disconnected) => panic!("the replica's thread is gone"),
        }
    }
}

impl Drop for Live {
    /// Stops the thread; the replica closes its log as in a crash. A hung
    /// thread would never end: it is left to the process's exit.
    fn drop(&mut self) {
        self.calls.take();
        if let Some(thread) = self.thread.take().filter(|_| !self.hung.get()) {
            let _ = thread.join();
        }
    }
}

/// A directory for one replica's files, removed with it. On tmpfs where
/// there is one: a replica syncs its log on every write.
pub(super) struct ScratchDir(pub PathBuf);

impl ScratchDir {
    pub(super) fn new() -> Self {
        let shm = Path::new("/dev/shm");
        let base = if shm.is_dir() {
            shm.to_path_buf()
        } else {
            std::env::temp_dir()
        };
        let name = format!("genfleet-fuzz-replica-{:016x}", rand::random::<u64>());
        Self(base.join(name))
    }
}

impl Drop for ScratchDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
