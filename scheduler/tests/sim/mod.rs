//! A deterministic simulation of a scheduler cluster: real replicas (the
//! raft node, the log on disk, the state machine) exchanging messages over
//! a simulated network in simulated time, all driven by one seed. The
//! network drops, delays, reorders and partitions; replicas crash (their
//! process state is lost, their files stay) and restart from disk.

#![allow(dead_code)] // Each scenario uses a different part.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, RwLock};

use genfleet_proto as pb;
use genfleet_scheduler::metrics::Metrics;
use genfleet_scheduler::raft::{
    Applied, Bootstrap, Feedback, ProposeError, RaftStatus, Replica, ReplicaConfig, Role, Transport,
};
use genfleet_scheduler::state::{Outcome, State};
use prost::Message as _;
use raft::eraftpb::{ConfChangeSingle, ConfChangeType, ConfChangeV2, Message, MessageType};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tokio::sync::{broadcast, oneshot};

/// Simulated milliseconds per raft tick.
pub const TICK_MS: u64 = 10;

/// How the network misbehaves.
#[derive(Debug, Clone, Copy)]
pub struct Faults {
    /// Probability that a message is lost.
    pub drop: f64,
    /// Delivery delay range, ms (random within it: messages reorder).
    pub min_delay_ms: u64,
    pub max_delay_ms: u64,
}

impl Faults {
    pub const NONE: Faults = Faults {
        drop: 0.0,
        min_delay_ms: 1,
        max_delay_ms: 3,
    };
}

/// A replica on a thread of its own. raft-engine caches log blocks per
/// thread, keyed by file and offset, so two logs read from one thread would
/// see each other's blocks; each replica gets its own thread, and the
/// simulation waits for every call, so the run stays deterministic.
struct Threaded {
    calls: Option<std::sync::mpsc::Sender<Call>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

type Call = Box<dyn FnOnce(&mut Replica) + Send>;

impl Threaded {
    fn open(config: ReplicaConfig) -> Self {
        let (calls, inbox) = std::sync::mpsc::channel::<Call>();
        let (opened_tx, opened) = std::sync::mpsc::channel();
        let thread = std::thread::spawn(move || {
            let metrics = Metrics::new(config.id).expect("metrics");
            let (events, _) = broadcast::channel(1 << 16);
            let mut replica =
                Replica::open(&config, metrics, events).expect("replica opens from its files");
            let _ = opened_tx.send(());
            for call in inbox {
                call(&mut replica);
            }
            replica.fail_all();
        });
        opened.recv().expect("the replica thread opened its log");
        Threaded {
            calls: Some(calls),
            thread: Some(thread),
        }
    }

    /// Runs `f` on the replica's thread and waits for its result.
    fn with<R: Send + 'static>(&self, f: impl FnOnce(&mut Replica) -> R + Send + 'static) -> R {
        let (tx, rx) = std::sync::mpsc::channel();
        let call: Call = Box::new(move |r| {
            let _ = tx.send(f(r));
        });
        self.calls
            .as_ref()
            .expect("running")
            .send(call)
            .expect("replica thread alive");
        rx.recv().expect("replica thread answered")
    }
}

impl Drop for Threaded {
    /// A crash: the thread ends, dropping the replica and closing its log.
    fn drop(&mut self) {
        self.calls.take();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

struct Node {
    replica: Option<Threaded>,
    config: ReplicaConfig,
}

struct Flight {
    at: u64,
    seq: u64,
    message: Message,
}

/// Collects what a replica sends during one ready.
#[derive(Default)]
struct Outbox(Vec<Message>);

impl Transport for Outbox {
    fn send(&mut self, messages: Vec<Message>) {
        self.0.extend(messages);
    }
}

/// A submit the simulated client made, and what it learnt.
pub struct Submit {
    pub request_id: String,
    pub reply: Option<oneshot::Receiver<Result<Applied, ProposeError>>>,
    /// Some(job id) once acknowledged.
    pub acked: Option<String>,
}

pub struct Sim {
    pub rng: StdRng,
    pub now_ms: u64,
    root: tempfile::TempDir,
    nodes: BTreeMap<u64, Node>,
    in_flight: Vec<Flight>,
    next_seq: u64,
    /// Directed links that deliver nothing.
    cut: BTreeSet<(u64, u64)>,
    pub faults: Faults,
    /// What happened, in order: two runs of one seed must match.
    pub trace: Vec<String>,
    pub submits: Vec<Submit>,
    snapshot_every: u64,
    /// Snapshot deliveries to report to their senders: (sender, feedback).
    feedback: Vec<(u64, Feedback)>,
}

impl Sim {
    /// A new cluster of `voters` replicas with ids 1..=voters.
    pub fn new(seed: u64, voters: u64, snapshot_every: u64) -> Self {
        // tmpfs when there is one: the simulation fsyncs a lot.
        let root = tempfile::tempdir_in("/dev/shm")
            .or_else(|_| tempfile::tempdir())
            .expect("a temporary directory");
        let mut sim = Sim {
            rng: StdRng::seed_from_u64(seed),
            now_ms: 0,
            root,
            nodes: BTreeMap::new(),
            in_flight: Vec::new(),
            next_seq: 0,
            cut: BTreeSet::new(),
            faults: Faults::NONE,
            trace: Vec::new(),
            submits: Vec::new(),
            snapshot_every,
            feedback: Vec::new(),
        };
        let ids: Vec<u64> = (1..=voters).collect();
        for me in &ids {
            // Each replica is given its own route to each peer (as behind
            // proxies): the replicated state must not depend on them.
            let members = ids
                .iter()
                .map(|id| (*id, format!("sim://{id}/seen-from-{me}")))
                .collect();
            sim.add_node(*me, Bootstrap::NewCluster(members));
        }
        sim
    }

    fn add_node(&mut self, id: u64, bootstrap: Bootstrap) {
        // One election timeout per replica (not a random one) keeps runs
        // repeatable; different timeouts still break ties.
        let min = 10 + 3 * id as usize;
        let config = ReplicaConfig {
            id,
            dir: self.root.path().join(format!("replica-{id}")),
            bootstrap,
            election_ticks: 10,
            heartbeat_ticks: 2,
            election_range: Some((min, min + 1)),
            snapshot_every: self.snapshot_every,
            incarnation: 0,
        };
        self.nodes.insert(
            id,
            Node {
                replica: None,
                config,
            },
        );
        self.start(id);
    }

    /// Starts (or restarts) replica `id` from its files.
    pub fn start(&mut self, id: u64) {
        let incarnation = self.rng.random();
        let node = self.nodes.get_mut(&id).expect("known replica");
        node.config.incarnation = incarnation;
        node.replica = Some(Threaded::open(node.config.clone()));
        self.trace.push(format!("{} start {id}", self.now_ms));
    }

    /// Kills replica `id`: its memory is gone, its files stay.
    pub fn crash(&mut self, id: u64) {
        if let Some(node) = self.nodes.get_mut(&id) {
            node.replica.take();
        }
        self.trace.push(format!("{} crash {id}", self.now_ms));
    }

    /// A replica that joins the running cluster (it starts empty).
    pub fn add_joiner(&mut self, id: u64) {
        self.add_node(id, Bootstrap::Join);
    }

    /// Cuts `id` off from every other replica, both ways.
    pub fn isolate(&mut self, id: u64) {
        for other in self.ids() {
            if other != id {
                self.cut.insert((id, other));
                self.cut.insert((other, id));
            }
        }
        self.trace.push(format!("{} isolate {id}", self.now_ms));
    }

    pub fn heal(&mut self) {
        self.cut.clear();
        self.trace.push(format!("{} heal", self.now_ms));
    }

    pub fn ids(&self) -> Vec<u64> {
        self.nodes.keys().copied().collect()
    }

    pub fn is_up(&self, id: u64) -> bool {
        self.nodes.get(&id).is_some_and(|n| n.replica.is_some())
    }

    pub fn status(&self, id: u64) -> Option<RaftStatus> {
        Some(self.nodes.get(&id)?.replica.as_ref()?.with(|r| r.status()))
    }

    pub fn state(&self, id: u64) -> Option<Arc<RwLock<State>>> {
        Some(self.nodes.get(&id)?.replica.as_ref()?.with(|r| r.state()))
    }

    pub fn hash(&self, id: u64) -> Option<String> {
        let state = self.state(id)?;
        let state = state.read().expect("state lock");
        Some(state.hash())
    }

    /// The replica that leads with a current state, if one does.
    pub fn leader(&self) -> Option<u64> {
        self.ids()
            .into_iter()
            .find(|id| self.status(*id).is_some_and(|s| s.leader_ready))
    }

    /// Advances one simulated millisecond.
    pub fn step(&mut self) {
        self.now_ms += 1;
        // Like the real transport, tell a sender whether its snapshot got through.
        for (from, feedback) in std::mem::take(&mut self.feedback) {
            if let Some(replica) = self.nodes.get(&from).and_then(|n| n.replica.as_ref()) {
                replica.with(move |r| r.feedback(feedback));
            }
        }
        self.deliver();
        if self.now_ms.is_multiple_of(TICK_MS) {
            for node in self.nodes.values_mut() {
                if let Some(replica) = node.replica.as_ref() {
                    replica.with(|r| r.tick());
                }
            }
        }
        for id in self.ids() {
            let sent = match self.nodes.get(&id).and_then(|n| n.replica.as_ref()) {
                Some(replica) => replica.with(|r| {
                    let mut outbox = Outbox::default();
                    r.handle_ready(&mut outbox).expect("ready handled");
                    outbox.0
                }),
                None => Vec::new(),
            };
            for message in sent {
                self.enqueue(message);
            }
        }
        self.collect_replies();
    }

    fn enqueue(&mut self, message: Message) {
        if self.rng.random_bool(self.faults.drop) {
            self.report_snapshot(&message, false);
            return;
        }
        let delay = self
            .rng
            .random_range(self.faults.min_delay_ms..=self.faults.max_delay_ms);
        self.next_seq += 1;
        self.in_flight.push(Flight {
            at: self.now_ms + delay,
            seq: self.next_seq,
            message,
        });
    }

    fn deliver(&mut self) {
        let now = self.now_ms;
        let (mut due, later): (Vec<Flight>, Vec<Flight>) =
            self.in_flight.drain(..).partition(|f| f.at <= now);
        self.in_flight = later;
        due.sort_by_key(|f| (f.at, f.seq));
        for flight in due {
            let (from, to) = (flight.message.from, flight.message.to);
            let receiver = self.nodes.get(&to).and_then(|n| n.replica.as_ref());
            match receiver {
                Some(replica) if !self.cut.contains(&(from, to)) => {
                    let delivered = flight.message.clone();
                    replica.with(move |r| r.step(flight.message));
                    self.report_snapshot(&delivered, true);
                }
                _ => self.report_snapshot(&flight.message, false),
            }
        }
    }

    fn report_snapshot(&mut self, message: &Message, delivered: bool) {
        if message.get_msg_type() == MessageType::MsgSnapshot {
            self.feedback.push((
                message.from,
                Feedback::Snapshot {
                    to: message.to,
                    delivered,
                },
            ));
        }
    }

    /// Runs until `done` holds; panics after `max_ms` naming `what`.
    pub fn run_until(&mut self, max_ms: u64, what: &str, done: impl Fn(&Sim) -> bool) {
        let deadline = self.now_ms + max_ms;
        while !done(self) {
            assert!(
                self.now_ms < deadline,
                "{what}: not reached within {max_ms} simulated ms\n{}",
                self.describe()
            );
            self.step();
        }
    }

    /// Every replica's raft status and state hash, for failure messages.
    pub fn describe(&self) -> String {
        self.ids()
            .into_iter()
            .map(|id| match self.status(id) {
                Some(s) => format!(
                    "replica {id}: {:?} term {} leader {:?} commit {} applied {} last {} snapshot {} voters {:?} learners {:?} hash {:?} progress {:?}",
                    s.role, s.term, s.leader, s.commit, s.applied, s.last_index, s.snapshot_index, s.voters, s.learners,
                    self.hash(id).map(|h| h[..8].to_string()), s.progress
                ),
                None => format!("replica {id}: down"),
            })
            .collect::<Vec<_>>()
            .join("\n")
    }

    pub fn run_for(&mut self, ms: u64) {
        for _ in 0..ms {
            self.step();
        }
    }

    pub fn wait_for_leader(&mut self) -> u64 {
        self.run_until(10_000, "a leader is elected", |s| s.leader().is_some());
        self.leader().expect("leader")
    }

    /// Submits a job through the current leader (if any) with a fresh
    /// request id; the outcome is collected as the simulation runs.
    pub fn submit(&mut self) -> usize {
        let n = self.submits.len();
        let request_id = format!("req-{n}");
        let reply = self.leader().map(|leader| {
            let (tx, rx) = oneshot::channel();
            let command = submit_command(&format!("job-{n}"), &request_id);
            let at = self.now_ms as i64;
            self.replica(leader)
                .with(move |r| r.propose(command, at, tx));
            rx
        });
        self.trace.push(format!(
            "{} submit {request_id} via {:?}",
            self.now_ms,
            self.leader()
        ));
        self.submits.push(Submit {
            request_id,
            reply,
            acked: None,
        });
        n
    }

    /// Proposes a membership change through the leader; returns its reply.
    pub fn change_membership(
        &mut self,
        id: u64,
        kind: ConfChangeType,
    ) -> oneshot::Receiver<Result<Applied, ProposeError>> {
        let leader = self.leader().expect("a leader to change membership");
        let mut single = ConfChangeSingle {
            node_id: id,
            ..Default::default()
        };
        single.set_change_type(kind);
        let mut change = ConfChangeV2::default();
        change.set_changes(vec![single].into());
        let members = vec![pb::Member {
            id,
            address: format!("sim://{id}"),
        }];
        change.context = pb::MembershipContext { members }.encode_to_vec().into();
        let (tx, rx) = oneshot::channel();
        self.replica(leader)
            .with(move |r| r.propose_conf_change(change, tx));
        self.trace
            .push(format!("{} membership {kind:?} {id}", self.now_ms));
        rx
    }

    pub fn transfer_leader(&mut self, to: u64) {
        let leader = self.leader().expect("a leader to transfer from");
        self.replica(leader).with(move |r| r.transfer_leader(to));
        self.trace
            .push(format!("{} transfer {leader} -> {to}", self.now_ms));
    }

    fn replica(&self, id: u64) -> &Threaded {
        self.nodes
            .get(&id)
            .and_then(|n| n.replica.as_ref())
            .expect("a running replica")
    }

    fn collect_replies(&mut self) {
        for submit in &mut self.submits {
            let Some(rx) = submit.reply.as_mut() else {
                continue;
            };
            match rx.try_recv() {
                Ok(Ok(Applied {
                    result: Ok(Outcome::Job(job)),
                    ..
                })) => {
                    submit.acked = Some(job.id.clone());
                    submit.reply = None;
                    self.trace.push(format!(
                        "{} ack {} {}",
                        self.now_ms, submit.request_id, job.id
                    ));
                }
                Ok(_) | Err(oneshot::error::TryRecvError::Closed) => submit.reply = None,
                Err(oneshot::error::TryRecvError::Empty) => {}
            }
        }
    }

    /// Running replicas agree: same applied index and state hash.
    pub fn converged(&self) -> bool {
        let up: Vec<u64> = self
            .ids()
            .into_iter()
            .filter(|id| self.is_up(*id))
            .collect();
        let Some(leader) = self.leader() else {
            return false;
        };
        let Some(target) = self.status(leader).map(|s| s.commit) else {
            return false;
        };
        let hashes: BTreeSet<Option<String>> = up.iter().map(|id| self.hash(*id)).collect();
        up.iter()
            .all(|id| self.status(*id).is_some_and(|s| s.applied >= target))
            && hashes.len() == 1
    }

    /// Checks what must hold at the end of every scenario.
    pub fn check_invariants(&self) {
        let leader = self.leader().expect("a leader at the end");
        let state = self.state(leader).expect("leader state");
        let state = state.read().expect("lock");
        // Every acknowledged submit exists, exactly once, under its id.
        for submit in &self.submits {
            if let Some(job_id) = &submit.acked {
                let matching = state
                    .jobs()
                    .filter(|j| j.request_id == submit.request_id)
                    .count();
                assert_eq!(
                    matching, 1,
                    "acknowledged {} ({job_id}) is in the state {matching} times",
                    submit.request_id
                );
                assert!(
                    state.job(job_id).is_some(),
                    "acknowledged job {job_id} is missing"
                );
            }
        }
        // No job beyond what was submitted.
        assert!(state.jobs().count() <= self.submits.len());
        // One leader per term.
        let mut leaders_by_term: BTreeMap<u64, BTreeSet<u64>> = BTreeMap::new();
        for id in self.ids() {
            if let Some(s) = self.status(id) {
                if s.role == Role::Leader {
                    leaders_by_term.entry(s.term).or_default().insert(id);
                }
            }
        }
        for (term, leaders) in leaders_by_term {
            assert!(leaders.len() <= 1, "term {term} has leaders {leaders:?}");
        }
    }

    pub fn acked(&self) -> usize {
        self.submits.iter().filter(|s| s.acked.is_some()).count()
    }
}

fn submit_command(job_id: &str, request_id: &str) -> pb::Command {
    let spec = genfleet_scheduler::spec::with_defaults(pb::JobSpec {
        prompt: "simulated".into(),
        frames: 1,
        width: 16,
        height: 16,
        steps: 1,
        ..Default::default()
    });
    pb::Command {
        kind: Some(pb::command::Kind::SubmitJob(pb::SubmitJob {
            job_id: job_id.into(),
            spec: Some(spec),
            request_id: request_id.into(),
            tenant: String::new(),
            unknown_words: Vec::new(),
        })),
    }
}
