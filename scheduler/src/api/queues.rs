//! The queue API: Apply, List, Delete. Queues live in the replicated state.

use std::sync::Arc;

use genfleet_proto as pb;
use pb::queue_service_client::QueueServiceClient;
use pb::queue_service_server::QueueService;
use tonic::{Request, Response, Status};

use super::route::{forward_to_leader, Router};
use crate::raft::RaftHandle;
use crate::state::{validate_queue, Outcome};

pub struct QueueApi {
    raft: RaftHandle,
    router: Arc<Router>,
}

impl QueueApi {
    pub fn new(raft: RaftHandle, router: Arc<Router>) -> Self {
        Self { raft, router }
    }

    async fn propose(&self, kind: pb::command::Kind) -> Result<Outcome, Status> {
        super::propose(&self.raft, &self.router, kind).await
    }
}

#[tonic::async_trait]
impl QueueService for QueueApi {
    async fn apply(
        &self,
        request: Request<pb::ApplyQueueRequest>,
    ) -> Result<Response<pb::Queue>, Status> {
        forward_to_leader!(self.router, request, QueueServiceClient::apply);
        let queue = request
            .into_inner()
            .queue
            .ok_or_else(|| Status::invalid_argument("the request has no queue"))?;
        // Checked here for a prompt answer, and again at apply.
        let queue = validate_queue(queue).map_err(|e| Status::invalid_argument(e.to_string()))?;
        let upsert = pb::UpsertQueue { queue: Some(queue) };
        match self.propose(pb::command::Kind::UpsertQueue(upsert)).await? {
            Outcome::Queue(queue) => Ok(Response::new(queue)),
            other => Err(Status::internal(format!(
                "queue apply applied with outcome {other:?}"
            ))),
        }
    }

    async fn list(
        &self,
        request: Request<pb::ListQueuesRequest>,
    ) -> Result<Response<pb::ListQueuesResponse>, Status> {
        forward_to_leader!(self.router, request, QueueServiceClient::list);
        super::readable(&self.raft, &self.router).await?;
        let now_ms = crate::clock::unix_ms();
        let (queues, used) = self.raft.read(|state| {
            let mut queues: Vec<pb::Queue> = state.queues().cloned().collect();
            // `default` always exists: listed even where nobody applied it.
            if !queues.iter().any(|q| q.name == crate::spec::DEFAULT_QUEUE) {
                queues.insert(0, crate::scheduling::implicit_default_queue(state));
            }
            (queues, state.budget_used_s(now_ms))
        });
        let budget_used_hours = used
            .into_iter()
            .map(|(queue, seconds)| (queue, seconds / 3600.0))
            .collect();
        Ok(Response::new(pb::ListQueuesResponse {
            queues,
            budget_used_hours,
        }))
    }

    async fn delete(
        &self,
        request: Request<pb::DeleteQueueRequest>,
    ) -> Result<Response<pb::DeleteQueueResponse>, Status> {
        forward_to_leader!(self.router, request, QueueServiceClient::delete);
        let name = request.into_inner().name;
        let delete = pb::DeleteQueue { name };
        self.propose(pb::command::Kind::DeleteQueue(delete)).await?;
        Ok(Response::new(pb::DeleteQueueResponse {}))
    }
}
