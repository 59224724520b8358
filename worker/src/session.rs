//! The worker's side of the session with the scheduler leader: register,
//! run what is assigned, report progress and results, reconnect when the
//! stream breaks. Running jobs outlive sessions; a finished job's result is
//! kept until the scheduler says it has recorded it (`done`) or that the
//! lease is dead (`stop`), and is sent again after every reconnect.
//!
//! On shutdown the worker drains: it tells the scheduler (no new work for
//! its node), has every running job checkpoint at its next step and waits
//! until the scheduler has recorded those checkpoints, up to a deadline,
//! across reconnects (a leader failover) too.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use genfleet_proto as pb;
use pb::scheduler_message::Msg as Down;
use pb::worker_message::Msg as Up;
use pb::worker_session_client::WorkerSessionClient;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::ClientTlsConfig;
use tonic::Streaming;

use crate::executor::{Executor, JobUpdate, Reporter, RunUpdate, StopSignal};
use crate::metrics::WorkerMetrics;

const OUTBOUND: usize = 64;
const FIRST_RETRY: Duration = Duration::from_millis(100);
const DEFAULT_HEARTBEAT: Duration = Duration::from_secs(2);
/// Metadata in which a replica that is not the leader names the leader.
const LEADER_ADDRESS: &str = "genfleet-leader";

/// Who this worker is, as it tells the scheduler.
#[derive(Debug, Clone)]
pub struct Identity {
    pub node: String,
    pub instance: String,
    pub devices: Vec<pb::DeviceGroup>,
    pub models: Vec<String>,
}

struct RunningJob {
    epoch: u64,
    /// This run's number: updates from an earlier run of the same lease
    /// (stopped, then assigned again) are not this run's.
    run: u64,
    stop: Arc<StopSignal>,
}

/// How a session ended.
enum SessionEnd {
    Shutdown,
    Lost(String),
}

pub struct SessionLoop {
    /// Scheduler replicas to try, in turn.
    schedulers: Vec<String>,
    current: usize,
    /// The leader's address, when a replica named it in a refusal.
    leader_hint: Option<String>,
    /// The replica of the last session attempt.
    scheduler: String,
    identity: Identity,
    executor: Arc<Executor>,
    metrics: WorkerMetrics,
    reconnect_max: Duration,
    /// Longest a drain waits for running jobs to checkpoint and be recorded.
    drain_timeout: Duration,
    /// Set once shutdown was asked for: when the drain gives up.
    drain_deadline: Option<tokio::time::Instant>,
    running: HashMap<String, RunningJob>,
    /// Final reports (Finished, Failed, Checkpointed) not yet acknowledged, by job.
    outbox: HashMap<String, (u64, pb::WorkerMessage)>,
    updates: mpsc::UnboundedSender<RunUpdate>,
    /// The number the next run gets.
    next_run: u64,
    credentials: Credentials,
}

/// How this worker proves itself to the schedulers.
#[derive(Clone, Default)]
pub struct Credentials {
    /// Mutual TLS with the schedulers, when the cluster uses TLS.
    pub tls: Option<ClientTlsConfig>,
    /// `authorization: Bearer <worker key>` on every session.
    pub worker_key: Option<tonic::metadata::MetadataValue<tonic::metadata::Ascii>>,
}

impl Credentials {
    /// A worker key's text as a header value; refused when it is not
    /// printable ASCII (a key file with stray bytes).
    pub fn with_worker_key(mut self, key: &str) -> Result<Self, String> {
        let value = format!("Bearer {}", key.trim())
            .parse()
            .map_err(|_| "the worker key is not printable ASCII text".to_string())?;
        self.worker_key = Some(value);
        Ok(self)
    }
}

type Shutdown<'a> = Pin<&'a mut (dyn Future<Output = ()> + Send)>;

impl SessionLoop {
    /// `schedulers`: every replica's address (at least one).
    pub fn new(
        schedulers: Vec<String>,
        identity: Identity,
        executor: Arc<Executor>,
        metrics: WorkerMetrics,
        reconnect_max: Duration,
        drain_timeout: Duration,
        credentials: Credentials,
    ) -> (Self, mpsc::UnboundedReceiver<RunUpdate>) {
        let (updates, updates_rx) = mpsc::unbounded_channel();
        let this = Self {
            scheduler: schedulers.first().cloned().unwrap_or_default(),
            schedulers,
            current: 0,
            leader_hint: None,
            identity,
            executor,
            metrics,
            reconnect_max,
            drain_timeout,
            drain_deadline: None,
            running: HashMap::new(),
            outbox: HashMap::new(),
            updates,
            next_run: 0,
            credentials,
        };
        (this, updates_rx)
    }

    /// Keeps a session with the scheduler until `shutdown` and the drain
    /// that follows it, then stops the jobs still running.
    pub async fn run(
        mut self,
        mut updates: mpsc::UnboundedReceiver<RunUpdate>,
        mut shutdown: Shutdown<'_>,
    ) {
        let mut retry = FIRST_RETRY;
        let mut failures = 0u32;
        loop {
            match self.connect().await {
                Ok((tx, inbound)) => {
                    retry = FIRST_RETRY;
                    failures = 0;
                    self.metrics.session_connected.set(1);
                    tracing::info!(scheduler = %self.scheduler, node = %self.identity.node, "session with the scheduler open");
                    let end = self
                        .serve(tx, inbound, &mut updates, shutdown.as_mut())
                        .await;
                    self.metrics.session_connected.set(0);
                    match end {
                        SessionEnd::Shutdown => break,
                        SessionEnd::Lost(reason) => {
                            tracing::warn!(scheduler = %self.scheduler, %reason, "session lost; reconnecting")
                        }
                    }
                }
                // A scheduler that is starting or electing a leader refuses
                // for a moment: only repeated failures are worth a warning.
                Err(why) if failures < 3 => {
                    failures += 1;
                    tracing::debug!(scheduler = %self.scheduler, error = %why, "no session yet; retrying in {retry:?}");
                }
                Err(why) => tracing::warn!(
                    scheduler = %self.scheduler,
                    error = %why,
                    "cannot open a session with the scheduler; retrying in {retry:?}"
                ),
            }
            let wait = tokio::time::sleep(retry);
            tokio::pin!(wait);
            let deadline = self.drain_deadline;
            loop {
                tokio::select! {
                    _ = &mut wait => break,
                    // Shut down while disconnected: nobody to report a
                    // checkpoint to, so stop (the scheduler requeues).
                    _ = shutdown.as_mut(), if deadline.is_none() => {
                        self.stop_all();
                        return;
                    }
                    _ = sleep_until_deadline(deadline) => {
                        tracing::warn!("drain deadline passed while disconnected");
                        self.stop_all();
                        return;
                    }
                    Some(update) = updates.recv() => {
                        // Disconnected: results are kept, progress is dropped.
                        self.record(update);
                    }
                }
            }
            retry = if self.leader_hint.is_some() {
                FIRST_RETRY
            } else {
                (retry * 2).min(self.reconnect_max)
            };
        }
        self.stop_all();
    }

    async fn connect(
        &mut self,
    ) -> Result<
        (
            mpsc::Sender<pb::WorkerMessage>,
            Streaming<pb::SchedulerMessage>,
        ),
        String,
    > {
        self.scheduler = match self.leader_hint.take() {
            Some(leader) => leader,
            None => {
                // Try the replicas in turn until one leads.
                let address = self.schedulers[self.current % self.schedulers.len()].clone();
                self.current = (self.current + 1) % self.schedulers.len();
                address
            }
        };
        let endpoint =
            genfleet_proto::tls::endpoint(&self.scheduler, self.credentials.tls.as_ref())
                .map_err(|e| format!("bad scheduler address: {e}"))?
                .connect_timeout(Duration::from_secs(3))
                .http2_keep_alive_interval(Duration::from_secs(10))
                .keep_alive_timeout(Duration::from_secs(10));
        let channel = endpoint
            .connect()
            .await
            .map_err(|e| format!("{e}: {}", source_chain(&e)))?;
        let mut client = WorkerSessionClient::new(channel);
        let (tx, rx) = mpsc::channel(OUTBOUND);
        let running: Vec<pb::JobLease> = self
            .running
            .iter()
            .map(|(id, r)| (id, r.epoch))
            .chain(self.outbox.iter().map(|(id, (epoch, _))| (id, *epoch)))
            .map(|(id, epoch)| pb::JobLease {
                job_id: id.clone(),
                lease_epoch: epoch,
            })
            .collect();
        let register = pb::Register {
            node: self.identity.node.clone(),
            instance: self.identity.instance.clone(),
            devices: self.identity.devices.clone(),
            models: self.identity.models.clone(),
            running,
        };
        let first = pb::WorkerMessage {
            msg: Some(Up::Register(register)),
        };
        tx.send(first)
            .await
            .map_err(|_| "session closed before Register".to_string())?;
        let mut request = tonic::Request::new(ReceiverStream::new(rx));
        if let Some(key) = &self.credentials.worker_key {
            request.metadata_mut().insert("authorization", key.clone());
        }
        let inbound = client
            .session(request)
            .await
            .map_err(|s| self.refused(&s))?
            .into_inner();
        // A drain in progress is told first: the checkpoints below are only
        // accepted from a draining node.
        if self.drain_deadline.is_some() {
            let draining = pb::WorkerMessage {
                msg: Some(Up::Draining(pb::Draining {})),
            };
            tx.send(draining)
                .await
                .map_err(|_| "session closed".to_string())?;
        }
        // Results the scheduler may not have recorded yet go first.
        for (_, report) in self.outbox.values() {
            tx.send(report.clone())
                .await
                .map_err(|_| "session closed".to_string())?;
        }
        Ok((tx, inbound))
    }

    async fn serve(
        &mut self,
        tx: mpsc::Sender<pb::WorkerMessage>,
        mut inbound: Streaming<pb::SchedulerMessage>,
        updates: &mut mpsc::UnboundedReceiver<RunUpdate>,
        mut shutdown: Shutdown<'_>,
    ) -> SessionEnd {
        let mut heartbeat = tokio::time::interval(DEFAULT_HEARTBEAT);
        loop {
            if self.drain_deadline.is_some() && self.running.is_empty() && self.outbox.is_empty() {
                tracing::info!("drained: every job checkpointed or finished, and recorded");
                return SessionEnd::Shutdown;
            }
            let deadline = self.drain_deadline;
            let outgoing = tokio::select! {
                _ = shutdown.as_mut(), if deadline.is_none() => Some(self.start_drain()),
                _ = sleep_until_deadline(deadline) => {
                    tracing::warn!(running = self.running.len(), unacknowledged = self.outbox.len(), "drain deadline passed; stopping what is left");
                    return SessionEnd::Shutdown;
                }
                message = inbound.message() => match message {
                    Ok(Some(m)) => {
                        if let Some(interval) = self.on_message(m) {
                            heartbeat = tokio::time::interval(interval);
                        }
                        None
                    }
                    Ok(None) => return SessionEnd::Lost("the scheduler closed the session".into()),
                    Err(s) => return SessionEnd::Lost(self.refused(&s)),
                },
                Some(update) = updates.recv() => self.record(update),
                _ = heartbeat.tick() => Some(Up::Heartbeat(pb::Heartbeat {})),
            };
            if let Some(msg) = outgoing {
                if tx.send(pb::WorkerMessage { msg: Some(msg) }).await.is_err() {
                    return SessionEnd::Lost("the outgoing stream closed".into());
                }
            }
        }
    }

    /// Describes a refusal, remembering the leader's address if it names one.
    fn refused(&mut self, status: &tonic::Status) -> String {
        if let Some(leader) = status
            .metadata()
            .get(LEADER_ADDRESS)
            .and_then(|v| v.to_str().ok())
        {
            self.leader_hint = Some(leader.to_string());
        }
        format!("{}: {}", code_name(status.code()), status.message())
    }

    /// Acts on a message from the scheduler; returns a new heartbeat interval
    /// when the scheduler sets one.
    fn on_message(&mut self, message: pb::SchedulerMessage) -> Option<Duration> {
        match message.msg? {
            Down::Registered(r) => {
                return Some(Duration::from_millis(r.heartbeat_interval_ms))
                    .filter(|d| !d.is_zero());
            }
            Down::Assignment(a) => self.start(a),
            Down::Stop(stop) => {
                let lease = stop.lease.unwrap_or_default();
                tracing::info!(job = %lease.job_id, epoch = lease.lease_epoch, reason = %stop.reason, "scheduler stopped a job");
                self.forget(&lease, true);
            }
            Down::Done(lease) => self.forget(&lease, false),
            Down::Preempt(preempt) => {
                let lease = preempt.lease.unwrap_or_default();
                match self.running.get(&lease.job_id) {
                    Some(job) if job.epoch == lease.lease_epoch => {
                        tracing::info!(job = %lease.job_id, reason = %preempt.reason, "preempted: checkpointing at the next step");
                        job.stop.checkpoint();
                    }
                    // Ended already: its result settles the lease.
                    _ => {}
                }
            }
        }
        None
    }

    fn start(&mut self, assignment: pb::Assignment) {
        let job = assignment.job_id.clone();
        // The id names the job's artifact folder: never a path.
        if !genfleet_proto::is_valid_name(&job) {
            tracing::error!(job = ?job, "refusing an assignment whose job id is not a valid name");
            return;
        }
        let epoch = assignment.lease_epoch;
        let known = self.running.get(&job).map(|r| r.epoch) == Some(epoch)
            || self.outbox.get(&job).map(|(e, _)| *e) == Some(epoch);
        if known {
            return;
        }
        if let Some(old) = self.running.remove(&job) {
            old.stop.cancel();
        }
        let from_step = assignment.checkpoint.as_ref().map_or(0, |c| c.step);
        tracing::info!(%job, epoch, from_step, "starting job");
        let stop = Arc::new(StopSignal::default());
        if self.drain_deadline.is_some() {
            // Sent before the scheduler heard of the drain: hand it back.
            stop.checkpoint();
        }
        let run = self.next_run;
        self.next_run += 1;
        let reporter = Reporter::new(
            pb::JobLease {
                job_id: job.clone(),
                lease_epoch: epoch,
            },
            run,
            self.updates.clone(),
        );
        self.running.insert(
            job,
            RunningJob {
                epoch,
                run,
                stop: stop.clone(),
            },
        );
        tokio::spawn(self.executor.clone().run(assignment, stop, reporter));
    }

    /// Drops what is held for `lease`; cancels the job if `cancel`.
    fn forget(&mut self, lease: &pb::JobLease, cancel: bool) {
        if self.outbox.get(&lease.job_id).map(|(e, _)| *e) == Some(lease.lease_epoch) {
            self.outbox.remove(&lease.job_id);
        }
        if self.running.get(&lease.job_id).map(|r| r.epoch) == Some(lease.lease_epoch) {
            if let Some(job) = self.running.remove(&lease.job_id) {
                if cancel {
                    job.stop.cancel();
                }
            }
        }
    }

    /// Records a job's update; returns the message to send, if connected.
    fn record(&mut self, RunUpdate { lease, run, update }: RunUpdate) -> Option<Up> {
        let current = self
            .running
            .get(&lease.job_id)
            .is_some_and(|r| r.epoch == lease.lease_epoch && r.run == run);
        match update {
            JobUpdate::Progress { step, total } if current => Some(Up::Progress(pb::Progress {
                lease: Some(lease),
                step,
                total_steps: total,
            })),
            JobUpdate::Preview { artifacts } if current => Some(Up::Preview(pb::Preview {
                lease: Some(lease),
                artifacts,
            })),
            // A preview of a run that ended: nobody needs it.
            JobUpdate::Preview { .. } => None,
            JobUpdate::CheckpointSaved { checkpoint } if current => {
                Some(Up::CheckpointSaved(pb::CheckpointSaved {
                    lease: Some(lease),
                    checkpoint: Some(checkpoint),
                }))
            }
            // A run that ended has no use for where it could have resumed.
            JobUpdate::CheckpointSaved { .. } => None,
            JobUpdate::Progress { .. } | JobUpdate::Stopped => {
                if current {
                    self.running.remove(&lease.job_id);
                }
                None
            }
            JobUpdate::Finished { .. }
            | JobUpdate::Failed { .. }
            | JobUpdate::Checkpointed { .. }
                if !current =>
            {
                None
            }
            JobUpdate::Checkpointed { checkpoint } => {
                let msg = Up::Checkpointed(pb::Checkpointed {
                    lease: Some(lease.clone()),
                    checkpoint: Some(checkpoint),
                });
                Some(self.hold(lease, msg))
            }
            JobUpdate::Finished { artifacts } => {
                let msg = Up::Finished(pb::Finished {
                    lease: Some(lease.clone()),
                    artifacts,
                });
                Some(self.hold(lease, msg))
            }
            JobUpdate::Failed { message } => {
                let msg = Up::Failed(pb::Failed {
                    lease: Some(lease.clone()),
                    message,
                });
                Some(self.hold(lease, msg))
            }
        }
    }

    /// Keeps a final report until the scheduler acknowledges it.
    fn hold(&mut self, lease: pb::JobLease, msg: Up) -> Up {
        self.running.remove(&lease.job_id);
        let report = pb::WorkerMessage {
            msg: Some(msg.clone()),
        };
        self.outbox
            .insert(lease.job_id, (lease.lease_epoch, report));
        msg
    }

    /// Shutdown was asked for: every running job checkpoints at its next
    /// step; returns the message that tells the scheduler.
    fn start_drain(&mut self) -> Up {
        tracing::info!(jobs = self.running.len(), timeout = ?self.drain_timeout, "draining: checkpointing running jobs");
        self.drain_deadline = Some(tokio::time::Instant::now() + self.drain_timeout);
        for job in self.running.values() {
            job.stop.checkpoint();
        }
        Up::Draining(pb::Draining {})
    }

    fn stop_all(&mut self) {
        for (job, running) in self.running.drain() {
            tracing::info!(%job, "stopping job: the worker is shutting down");
            running.stop.cancel();
        }
    }
}

/// Completes at `deadline`; never without one.
async fn sleep_until_deadline(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

fn code_name(code: tonic::Code) -> String {
    format!("{code:?}").to_lowercase()
}

/// The causes of an error, joined: transport errors hide the useful part.
fn source_chain(e: &dyn std::error::Error) -> String {
    let mut parts = Vec::new();
    let mut source = e.source();
    while let Some(s) = source {
        parts.push(s.to_string());
        source = s.source();
    }
    parts.join(": ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::device::compute::DeviceTable;

    fn session(dir: &std::path::Path) -> (SessionLoop, mpsc::UnboundedReceiver<RunUpdate>) {
        let (executor, metrics) =
            crate::executor::tests::test_executor(dir, DeviceTable::default(), true);
        let identity = Identity {
            node: "node-a".into(),
            instance: "i".into(),
            devices: Vec::new(),
            models: Vec::new(),
        };
        SessionLoop::new(
            vec!["http://127.0.0.1:9".into()],
            identity,
            executor,
            metrics,
            Duration::from_secs(1),
            Duration::from_secs(1),
            Credentials::default(),
        )
    }

    fn assignment(job: &str, epoch: u64) -> pb::Assignment {
        pb::Assignment {
            job_id: job.into(),
            lease_epoch: epoch,
            ..Default::default()
        }
    }

    fn update(job: &str, epoch: u64, run: u64, update: JobUpdate) -> RunUpdate {
        RunUpdate {
            lease: pb::JobLease {
                job_id: job.into(),
                lease_epoch: epoch,
            },
            run,
            update,
        }
    }

    /// A job stopped and assigned again under the same lease (the
    /// scheduler acting on a stale view, then on the fresh one) runs twice;
    /// the first run ending must not make the session forget the second,
    /// or the job's progress and result are dropped and it never ends.
    #[tokio::test]
    async fn the_end_of_a_stopped_run_does_not_end_its_successor() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (mut session, _updates) = session(dir.path());
        session.start(assignment("j-1", 1));
        let first = session.running["j-1"].run;
        let lease = pb::JobLease {
            job_id: "j-1".into(),
            lease_epoch: 1,
        };
        session.forget(&lease, true);
        session.start(assignment("j-1", 1));
        let second = session.running["j-1"].run;
        assert_ne!(first, second);

        assert!(session
            .record(update("j-1", 1, first, JobUpdate::Stopped))
            .is_none());
        assert!(
            session.running.contains_key("j-1"),
            "the second run is still tracked"
        );
        let progress = JobUpdate::Progress { step: 1, total: 4 };
        assert!(matches!(
            session.record(update("j-1", 1, second, progress)),
            Some(Up::Progress(p)) if p.step == 1
        ));
        let finished = JobUpdate::Finished {
            artifacts: Vec::new(),
        };
        assert!(matches!(
            session.record(update("j-1", 1, second, finished)),
            Some(Up::Finished(_))
        ));
        assert!(session.outbox.contains_key("j-1"));
        // A late report of the first run changes nothing.
        let late = JobUpdate::Failed {
            message: "stopped".into(),
        };
        assert!(session.record(update("j-1", 1, first, late)).is_none());
        assert!(session.outbox.contains_key("j-1"));
    }
}
