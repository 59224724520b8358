//! The gRPC edge of a worker session: one bidirectional stream per worker
//! process. It checks the caller's credential against the node it
//! registers, proposes the registration, and hands the stream to the
//! leader's session actor (`leader/worker_session.rs`).

use std::sync::Arc;

use genfleet_proto as pb;
use pb::worker_message::Msg as Up;
use pb::worker_session_server::WorkerSession;
use tokio::sync::{mpsc, watch};
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};

use super::rejection_status;
use super::ReplicaParts;
use crate::auth::WorkerCaller;
use crate::leader::artifact_rules::ArtifactRules;
use crate::leader::node_events::NodeEvents;
use crate::leader::worker_session::{Session, SessionConfig, SessionContext};
use crate::state::Outcome;

const OUTBOX: usize = 64;

pub struct WorkerSessionApi {
    context: SessionContext,
    node_events: Arc<NodeEvents>,
    stop: watch::Receiver<bool>,
}

impl WorkerSessionApi {
    /// Worker sessions of the replica whose shared parts are `parts`;
    /// workers' files must lie in `artifact_store`.
    pub fn new(
        parts: &ReplicaParts,
        config: SessionConfig,
        artifact_store: Option<String>,
    ) -> Self {
        Self {
            node_events: NodeEvents::start(&parts.raft),
            context: SessionContext {
                raft: parts.raft.clone(),
                router: parts.router.clone(),
                sessions: parts.sessions.clone(),
                metrics: parts.metrics.clone(),
                config,
                artifacts: Arc::new(ArtifactRules::new(artifact_store)),
            },
            stop: parts.stop.clone(),
        }
    }
}

#[tonic::async_trait]
impl WorkerSession for WorkerSessionApi {
    type SessionStream = ReceiverStream<Result<pb::SchedulerMessage, Status>>;

    async fn session(
        &self,
        request: Request<Streaming<pb::WorkerMessage>>,
    ) -> Result<Response<Self::SessionStream>, Status> {
        let WorkerCaller(may_register) = request
            .extensions()
            .get::<WorkerCaller>()
            .cloned()
            .ok_or_else(|| Status::internal("the worker session was not authenticated"))?;
        self.context
            .raft
            .ready_leader()
            .await
            .map_err(|e| self.context.router.refusal(&e))?;
        let mut inbound = request.into_inner();
        let first = tokio::time::timeout(self.context.config.register_timeout, inbound.message())
            .await
            .map_err(|_| {
                Status::deadline_exceeded(format!(
                    "no Register message within {:?} of opening the session",
                    self.context.config.register_timeout
                ))
            })??;
        let register = match first.and_then(|m| m.msg) {
            Some(Up::Register(r)) => r,
            _ => {
                return Err(Status::invalid_argument(
                    "the first message of a worker session must be Register",
                ))
            }
        };
        if !may_register.matches(&register.node) {
            let node: String = register.node.chars().take(64).collect();
            return Err(Status::permission_denied(format!(
                "this worker's credential may register nodes matching '{may_register}', not {node:?}"
            )));
        }
        // Subscribe before registering, so no change after it is missed.
        let events = self.node_events.subscribe(&register.node);
        let command = pb::command::Kind::RegisterNode(pb::RegisterNode {
            node: register.node.clone(),
            instance: register.instance.clone(),
            devices: register.devices.clone(),
            models: register.models.clone(),
        });
        let applied = self
            .context
            .raft
            .propose(pb::Command {
                kind: Some(command),
            })
            .await
            .map_err(|e| self.context.router.refusal(&e))?;
        if let Err(rejection) = applied.result {
            return Err(rejection_status(&rejection));
        }
        if let Ok(Outcome::Node { requeued }) = &applied.result {
            if !requeued.is_empty() {
                tracing::info!(node = %register.node, ?requeued, "a new worker instance took over the node; its old jobs were requeued");
            }
        }
        tracing::info!(node = %register.node, instance = %register.instance, "worker session opened");

        let (tx, rx) = mpsc::channel(OUTBOX);
        let session = Session::new(&register, &self.context, tx);
        self.context.metrics.workers_connected.inc();
        let metrics = self.context.metrics.clone();
        let stop = self.stop.clone();
        tokio::spawn(async move {
            let node = session.node().to_string();
            let reason = session.run(inbound, events, stop).await;
            metrics.workers_connected.dec();
            tracing::info!(%node, %reason, "worker session closed");
        });
        Ok(Response::new(ReceiverStream::new(rx)))
    }
}
