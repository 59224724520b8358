//! The node API: List (what the scheduler knows of each worker node) and
//! Cordon (take no new work; what runs there finishes).

use std::sync::Arc;

use genfleet_proto as pb;
use pb::node_service_client::NodeServiceClient;
use pb::node_service_server::NodeService;
use tonic::{Request, Response, Status};

use super::route::{forward_to_leader, Router};
use crate::raft::RaftHandle;
use crate::state::{Node, State};

pub struct NodeApi {
    raft: RaftHandle,
    router: Arc<Router>,
}

impl NodeApi {
    pub fn new(raft: RaftHandle, router: Arc<Router>) -> Self {
        Self { raft, router }
    }
}

fn node_info(state: &State, node: &Node) -> pb::NodeInfo {
    pb::NodeInfo {
        name: node.name.clone(),
        up: node.up,
        cordoned: node.cordoned,
        draining: node.draining,
        cordon_source: node.cordon_source.clone(),
        devices: node.devices.clone(),
        busy_devices: node.busy.len() as u32,
        models: node.models.clone(),
        jobs: state.jobs_on(&node.name),
    }
}

#[tonic::async_trait]
impl NodeService for NodeApi {
    async fn list(
        &self,
        request: Request<pb::ListNodesRequest>,
    ) -> Result<Response<pb::ListNodesResponse>, Status> {
        forward_to_leader!(self.router, request, NodeServiceClient::list);
        super::readable(&self.raft, &self.router).await?;
        let nodes = self
            .raft
            .read(|state| state.nodes().map(|n| node_info(state, n)).collect());
        Ok(Response::new(pb::ListNodesResponse { nodes }))
    }

    async fn cordon(
        &self,
        request: Request<pb::CordonNodeRequest>,
    ) -> Result<Response<pb::NodeInfo>, Status> {
        forward_to_leader!(self.router, request, NodeServiceClient::cordon);
        let request = request.into_inner();
        let cordon = pb::CordonNode {
            node: request.node.clone(),
            cordoned: request.cordoned,
            // The CLI's requests are an operator's.
            source: String::new(),
        };
        super::propose(
            &self.raft,
            &self.router,
            pb::command::Kind::CordonNode(cordon),
        )
        .await?;
        self.raft
            .read(|state| state.node(&request.node).map(|n| node_info(state, n)))
            .map(Response::new)
            .ok_or_else(|| Status::not_found(format!("no node named {:?}", request.node)))
    }
}
