//! The raft thread: runs a [`Replica`] on real time. It takes requests and
//! peer messages from a channel, ticks, handles readies, and publishes the
//! replica's status.

use std::sync::{mpsc, Arc};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use tokio::sync::{broadcast, watch, Semaphore};

use super::replica::{DriverError, Replica, ReplicaConfig, Transport};
use super::{Input, RaftHandle};
use crate::metrics::Metrics;

/// Inputs taken from the inbox before one `Ready` is handled: proposals that
/// arrive together share one fsync.
const MAX_INPUTS_PER_READY: usize = 4096;
const EVENT_BUFFER: usize = 4096;

/// The running raft thread; joins it on [`RaftThread::stop`].
pub struct RaftThread {
    handle: RaftHandle,
    thread: Option<JoinHandle<Result<(), DriverError>>>,
}

impl RaftThread {
    /// Asks the thread to stop and waits for it (pending requests fail).
    pub async fn stop(mut self) -> Result<(), DriverError> {
        self.handle.shutdown();
        let Some(thread) = self.thread.take() else {
            return Ok(());
        };
        match tokio::task::spawn_blocking(move || thread.join()).await {
            Ok(Ok(result)) => result,
            Ok(Err(_)) | Err(_) => Err(DriverError::Thread(std::io::Error::other(
                "the raft thread panicked",
            ))),
        }
    }
}

impl Drop for RaftThread {
    fn drop(&mut self) {
        self.handle.shutdown();
    }
}

/// Opens the replica (its log and snapshot) and starts the raft thread.
/// `transport` is made once the handle exists, so it can reach the state.
pub fn spawn(
    config: ReplicaConfig,
    tick: Duration,
    metrics: Metrics,
    transport: impl FnOnce(&RaftHandle) -> Box<dyn Transport>,
) -> Result<(RaftHandle, RaftThread), DriverError> {
    let (events, _) = broadcast::channel(EVENT_BUFFER);
    let replica = Replica::open(&config, metrics.clone(), events.clone())?;
    let (inbox, inputs) = mpsc::channel();
    let (status_tx, status) = watch::channel(replica.status());
    let handle = RaftHandle {
        inbox,
        peer_budget: Arc::new(Semaphore::new(super::PEER_INBOX_BYTES / 1024)),
        state: replica.state(),
        status,
        events,
        metrics,
    };
    let mut driver = Driver {
        replica,
        tick,
        inputs,
        transport: transport(&handle),
        status: status_tx,
    };
    let thread = std::thread::Builder::new()
        .name(format!("raft-{}", config.id))
        .spawn(move || driver.run())?;
    Ok((
        handle.clone(),
        RaftThread {
            handle,
            thread: Some(thread),
        },
    ))
}

struct Driver {
    replica: Replica,
    tick: Duration,
    inputs: mpsc::Receiver<Input>,
    transport: Box<dyn Transport>,
    status: watch::Sender<super::RaftStatus>,
}

impl Driver {
    fn run(&mut self) -> Result<(), DriverError> {
        let result = self.run_loop();
        if let Err(e) = &result {
            tracing::error!(error = %e, id = self.replica.id(), "raft replica stopped");
            // Callers are told why from now on, and readiness fails.
            let why = e.to_string();
            self.status.send_modify(|s| s.stopped = Some(why));
        }
        self.replica.fail_all();
        result
    }

    fn run_loop(&mut self) -> Result<(), DriverError> {
        let mut next_tick = Instant::now() + self.tick;
        loop {
            let wait = next_tick.saturating_duration_since(Instant::now());
            match self.inputs.recv_timeout(wait) {
                Ok(input) => {
                    if !self.handle_input(input) {
                        return Ok(());
                    }
                    for _ in 0..MAX_INPUTS_PER_READY {
                        let Ok(input) = self.inputs.try_recv() else {
                            break;
                        };
                        if !self.handle_input(input) {
                            return Ok(());
                        }
                    }
                }
                Err(mpsc::RecvTimeoutError::Timeout) => {}
                Err(mpsc::RecvTimeoutError::Disconnected) => return Ok(()),
            }
            for feedback in self.transport.feedback() {
                self.replica.feedback(feedback);
            }
            let now = Instant::now();
            if now >= next_tick {
                self.replica.tick();
                // After a long stall, tick once rather than catch up in a burst.
                next_tick = (next_tick + self.tick).max(now);
            }
            self.replica.handle_ready(self.transport.as_mut())?;
            let status = self.replica.status();
            self.status.send_if_modified(|current| {
                let changed = *current != status;
                *current = status;
                changed
            });
        }
    }

    /// Returns false when asked to stop.
    fn handle_input(&mut self, input: Input) -> bool {
        match input {
            Input::Propose { command, reply } => {
                self.replica
                    .propose(command, crate::clock::unix_ms(), reply)
            }
            Input::ProposeConfChange { change, reply } => {
                self.replica.propose_conf_change(change, reply)
            }
            Input::ReadIndex { reply } => self.replica.read_index(reply),
            // The permit goes when the message has been stepped.
            Input::Step(message, _permit) => self.replica.step(*message),
            Input::TransferLeader(to) => self.replica.transfer_leader(to),
            Input::Shutdown => return false,
        }
        true
    }
}
