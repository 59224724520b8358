//! The client job API: Submit, Get, List, Cancel, Watch.

use genfleet_proto as pb;
use pb::job_service_client::JobServiceClient;
use pb::job_service_server::JobService;
use pb::JobState;
use tokio::sync::{broadcast, mpsc};
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status};

use super::paging;
use super::route::{forward_to_leader, forwarded, Route};
use super::ReplicaParts;
use crate::leader::Sessions;
use crate::pending_reason;
use crate::scheduling::{self, LastVerdicts};
use crate::spec;
use crate::state::{Outcome, State};

const WATCH_BUFFER: usize = 64;
const MAX_REQUEST_ID_LEN: usize = 128;

pub struct JobApi {
    /// `parts.stop` turns true when the scheduler shuts down: open watches end.
    parts: ReplicaParts,
}

impl JobApi {
    pub fn new(parts: ReplicaParts) -> Self {
        Self { parts }
    }

    async fn readable(&self) -> Result<(), Status> {
        super::readable(&self.parts.raft, &self.parts.router).await
    }

    fn leader_view(&self) -> LeaderView<'_> {
        LeaderView::of(&self.parts)
    }

    async fn propose(&self, kind: pb::command::Kind) -> Result<Outcome, Status> {
        super::propose(&self.parts.raft, &self.parts.router, kind).await
    }

    /// After a linearizable read: whether `caller` may see job `id`
    /// ("not found" if it does not exist or is another tenant's).
    async fn check_visible(&self, caller: &crate::auth::Caller, id: &str) -> Result<(), Status> {
        self.readable().await?;
        if self
            .parts
            .raft
            .read(|state| visible(state, id, caller).is_none())
        {
            return Err(not_found(id));
        }
        Ok(())
    }

    /// A tenant's job without a queue or class gets the tenant's defaults
    /// (apply checks that it may use what it asked for).
    fn tenant_defaults(&self, tenant: &str, mut spec: pb::JobSpec) -> pb::JobSpec {
        if tenant.is_empty() {
            return spec;
        }
        let defaults = self.parts.raft.read(|state| {
            state
                .tenant(tenant)
                .map(|t| (t.default_queue.clone(), t.default_qos.clone()))
        });
        if let Some((queue, qos)) = defaults {
            if spec.queue.is_empty() {
                spec.queue = queue;
            }
            if spec.qos.is_empty() {
                spec.qos = qos;
            }
        }
        spec
    }
}

/// What the leader knows beyond the replicated state: live progress from
/// worker sessions, and the last scheduling cycle's verdicts.
struct LeaderView<'a> {
    sessions: &'a Sessions,
    verdicts: &'a LastVerdicts,
}

impl<'a> LeaderView<'a> {
    fn of(parts: &'a ReplicaParts) -> Self {
        LeaderView {
            sessions: &parts.sessions,
            verdicts: &parts.verdicts,
        }
    }

    /// A job as clients see it: with live progress and, if pending, why
    /// and until about when.
    fn job(&self, state: &State, job: &crate::state::Job) -> pb::Job {
        let mut view = job.to_proto();
        view.simulated = scheduling::on_simulated_devices(state, job);
        if job.state == JobState::Pending {
            match self.verdicts.get(&job.id) {
                Some((reason, eta)) => {
                    view.pending_reason = reason;
                    view.eta_seconds = eta;
                }
                // Not seen by a cycle yet (or no worker connected).
                None => {
                    let connected = self.sessions.connected();
                    view.pending_reason = pending_reason::pending_reason(state, &connected, job);
                }
            }
        }
        self.sessions.overlay(&mut view);
        view
    }
}

/// The job, if `caller` may see it: a tenant sees its own jobs only, and
/// another's is "not found" (never "forbidden", which would confirm it).
fn visible<'s>(
    state: &'s State,
    id: &str,
    caller: &crate::auth::Caller,
) -> Option<&'s crate::state::Job> {
    state
        .job(id)
        .filter(|job| caller.tenant().is_none_or(|t| job.tenant == t))
}

fn not_found(id: &str) -> Status {
    Status::not_found(format!(
        "no job with id {id:?}; `genfleet jobs` lists the jobs"
    ))
}

#[tonic::async_trait]
impl JobService for JobApi {
    async fn submit(
        &self,
        request: Request<pb::SubmitRequest>,
    ) -> Result<Response<pb::SubmitResponse>, Status> {
        forward_to_leader!(self.parts.router, request, JobServiceClient::submit);
        let caller = crate::auth::caller(&request)?;
        let request = request.into_inner();
        if request.request_id.len() > MAX_REQUEST_ID_LEN {
            return Err(Status::invalid_argument(format!(
                "request_id has {} bytes; at most {MAX_REQUEST_ID_LEN} are allowed",
                request.request_id.len()
            )));
        }
        let spec = request
            .spec
            .ok_or_else(|| Status::invalid_argument("the request has no job spec"))?;
        let tenant = caller.tenant().unwrap_or_default().to_string();
        let spec = spec::with_defaults(self.tenant_defaults(&tenant, spec));
        spec::validate(&spec).map_err(|e| Status::invalid_argument(e.to_string()))?;
        if let Some(why) = self
            .parts
            .raft
            .read(|s| s.impossible_gang(&spec.queue, spec.tp))
        {
            return Err(Status::invalid_argument(why));
        }
        let job_id = format!("j-{:012x}", rand::random::<u64>() >> 16);
        // Found here, once, and logged with the job: every replica keeps
        // what this release's vocabulary said, whatever release applies it.
        let unknown_words =
            pb::vocabulary::unknown_words(&spec.model, &spec.prompt).unwrap_or_default();
        let outcome = self
            .propose(pb::command::Kind::SubmitJob(pb::SubmitJob {
                job_id,
                spec: Some(spec),
                request_id: request.request_id,
                tenant,
                unknown_words,
            }))
            .await?;
        let Outcome::Job(job) = outcome else {
            return Err(Status::internal(format!(
                "submit applied with outcome {outcome:?}"
            )));
        };
        self.parts.metrics.jobs_submitted.inc();
        // The job as applied; its pending reason is for Get and List (the
        // state lock stays with the raft thread on this hot path).
        Ok(Response::new(pb::SubmitResponse {
            job: Some(job.to_proto()),
        }))
    }

    async fn get(&self, request: Request<pb::GetJobRequest>) -> Result<Response<pb::Job>, Status> {
        forward_to_leader!(self.parts.router, request, JobServiceClient::get);
        let caller = crate::auth::caller(&request)?;
        let id = request.into_inner().id;
        self.readable().await?;
        self.parts
            .raft
            .read(|state| {
                visible(state, &id, &caller).map(|job| self.leader_view().job(state, job))
            })
            .map(Response::new)
            .ok_or_else(|| not_found(&id))
    }

    async fn list(
        &self,
        request: Request<pb::ListJobsRequest>,
    ) -> Result<Response<pb::ListJobsResponse>, Status> {
        forward_to_leader!(self.parts.router, request, JobServiceClient::list);
        let caller = crate::auth::caller(&request)?;
        let asked = request.into_inner();
        let after = paging::parse_token(&asked.page_token)?;
        let size = paging::page_size(asked.page_size);
        self.readable().await?;
        let (jobs, next_page_token) = self.parts.raft.read(|state| {
            let matching = state
                .jobs()
                .filter(|j| caller.tenant().is_none_or(|t| j.tenant == t))
                .filter(|j| asked.states.is_empty() || asked.states.contains(&(j.state as i32)))
                .filter(|j| asked.queue.is_empty() || j.spec.queue == asked.queue)
                .map(|j| ((j.created_at_ms, j.position), j))
                .collect();
            let (page, next) = paging::page(matching, after.as_ref(), size, asked.oldest_first);
            let view = self.leader_view();
            let jobs = page
                .into_iter()
                .map(|j| view.job(state, j))
                .collect::<Vec<_>>();
            (jobs, next)
        });
        Ok(Response::new(pb::ListJobsResponse {
            jobs,
            next_page_token,
        }))
    }

    async fn cancel(
        &self,
        request: Request<pb::CancelJobRequest>,
    ) -> Result<Response<pb::Job>, Status> {
        forward_to_leader!(self.parts.router, request, JobServiceClient::cancel);
        let caller = crate::auth::caller(&request)?;
        let id = request.into_inner().id;
        self.check_visible(&caller, &id).await?;
        let outcome = self
            .propose(pb::command::Kind::CancelJob(pb::CancelJob { job_id: id }))
            .await?;
        let Outcome::Job(job) = outcome else {
            return Err(Status::internal(format!(
                "cancel applied with outcome {outcome:?}"
            )));
        };
        Ok(Response::new(job.to_proto()))
    }

    async fn delete(
        &self,
        request: Request<pb::DeleteJobRequest>,
    ) -> Result<Response<pb::DeleteJobResponse>, Status> {
        forward_to_leader!(self.parts.router, request, JobServiceClient::delete);
        let caller = crate::auth::caller(&request)?;
        let id = request.into_inner().id;
        self.check_visible(&caller, &id).await?;
        self.propose(pb::command::Kind::DeleteJob(pb::DeleteJob { job_id: id }))
            .await?;
        Ok(Response::new(pb::DeleteJobResponse {}))
    }

    type WatchStream = ReceiverStream<Result<pb::JobEvent, Status>>;

    async fn watch(
        &self,
        request: Request<pb::WatchJobRequest>,
    ) -> Result<Response<Self::WatchStream>, Status> {
        if let Route::Leader(channel) = self.parts.router.route(request.metadata()).await? {
            let upstream = JobServiceClient::new(channel)
                .watch(forwarded(request))
                .await?
                .into_inner();
            return Ok(Response::new(relay(upstream)));
        }
        let caller = crate::auth::caller(&request)?;
        let id = request.into_inner().id;
        self.readable().await?;
        // Subscribe before reading, so no change falls between the two.
        let events = self.parts.raft.subscribe();
        let first = self.parts.raft.read(|state| {
            visible(state, &id, &caller)
                .map(|job| (state.applied_index(), self.leader_view().job(state, job)))
        });
        let (index, job) = first.ok_or_else(|| not_found(&id))?;
        let (tx, rx) = mpsc::channel(WATCH_BUFFER);
        let watcher = Watcher {
            parts: self.parts.clone(),
            id,
            tx,
        };
        tokio::spawn(watcher.run(events, index, job));
        Ok(Response::new(ReceiverStream::new(rx)))
    }
}

/// Passes the leader's watch stream through to this replica's client.
fn relay(
    mut upstream: tonic::Streaming<pb::JobEvent>,
) -> ReceiverStream<Result<pb::JobEvent, Status>> {
    let (tx, rx) = mpsc::channel(WATCH_BUFFER);
    tokio::spawn(async move {
        loop {
            let item = tokio::select! {
                _ = tx.closed() => return,
                item = upstream.message() => item,
            };
            let (item, last) = match item {
                Ok(Some(event)) => (Ok(event), false),
                Ok(None) => return,
                Err(status) => (Err(status), true),
            };
            if tx.send(item).await.is_err() || last {
                return;
            }
        }
    });
    ReceiverStream::new(rx)
}

/// Forwards one job's changes to one client until the job ends or the
/// client goes away.
struct Watcher {
    parts: ReplicaParts,
    id: String,
    tx: mpsc::Sender<Result<pb::JobEvent, Status>>,
}

impl Watcher {
    fn leader_view(&self) -> LeaderView<'_> {
        LeaderView::of(&self.parts)
    }

    /// Adds to a job from the log what only the leader knows (live
    /// progress, why it waits, whether its devices are simulated).
    fn enrich(&self, job: &mut pb::Job) {
        let view = self.leader_view();
        self.parts.raft.read(|state| {
            if let Some(current) = state.job(&job.id) {
                job.simulated = scheduling::on_simulated_devices(state, current);
                if job.state() == JobState::Pending {
                    if let Some((reason, eta)) = view.verdicts.get(&job.id) {
                        job.pending_reason = reason;
                        job.eta_seconds = eta;
                    }
                }
            }
        });
        view.sessions.overlay(job);
    }

    async fn run(
        self,
        mut events: broadcast::Receiver<crate::raft::JobEvent>,
        index: u64,
        job: pb::Job,
    ) {
        let mut seen_index = index;
        let mut stop = self.parts.stop.clone();
        if !self.send(index, job).await {
            return;
        }
        loop {
            let event = tokio::select! {
                _ = self.tx.closed() => return,
                _ = stop.changed() => Err(broadcast::error::RecvError::Closed),
                event = events.recv() => event,
            };
            match event {
                Ok(event) if event.job.id != self.id => {}
                // Already reflected in what was sent.
                Ok(event) if event.index != 0 && event.index <= seen_index => {}
                Ok(mut event) => {
                    seen_index = seen_index.max(event.index);
                    self.enrich(&mut event.job);
                    if !self.send(event.index, event.job).await {
                        return;
                    }
                }
                Err(broadcast::error::RecvError::Lagged(_)) => {
                    // Too slow to see every change: send the job as it is now.
                    let now = self.parts.raft.read(|state| {
                        state
                            .job(&self.id)
                            .map(|job| (state.applied_index(), self.leader_view().job(state, job)))
                    });
                    let Some((index, job)) = now else { return };
                    seen_index = index;
                    if !self.send(index, job).await {
                        return;
                    }
                }
                Err(broadcast::error::RecvError::Closed) => {
                    let _ = self
                        .tx
                        .send(Err(Status::unavailable("the scheduler is shutting down")))
                        .await;
                    return;
                }
            }
        }
    }

    /// Sends one event; false when the watch is over (job ended or client gone).
    async fn send(&self, index: u64, job: pb::Job) -> bool {
        let terminal = job.state().is_terminal();
        let delivered = self
            .tx
            .send(Ok(pb::JobEvent {
                job: Some(job),
                index,
            }))
            .await
            .is_ok();
        delivered && !terminal
    }
}
