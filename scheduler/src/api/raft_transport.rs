//! Receives raft messages from peer replicas and hands them to the raft thread.

use genfleet_proto as pb;
use pb::raft_transport_server::RaftTransport;
use protobuf::Message as _;
use tokio::sync::watch;
use tonic::{Request, Response, Status, Streaming};

use crate::raft::RaftHandle;

pub struct RaftTransportApi {
    raft: RaftHandle,
    /// Turns true when the replica stops: a peer's stream is long-lived,
    /// and the server's graceful stop waits for every open stream.
    stop: watch::Receiver<bool>,
}

impl RaftTransportApi {
    pub fn new(raft: RaftHandle, stop: watch::Receiver<bool>) -> Self {
        Self { raft, stop }
    }
}

#[tonic::async_trait]
impl RaftTransport for RaftTransportApi {
    async fn send(
        &self,
        request: Request<Streaming<pb::RaftBatch>>,
    ) -> Result<Response<pb::RaftAck>, Status> {
        let mut batches = request.into_inner();
        let mut stop = self.stop.clone();
        loop {
            let next = tokio::select! {
                next = batches.message() => next,
                _ = stop.wait_for(|stopping| *stopping) => {
                    return Err(Status::unavailable("the replica is stopping"));
                }
            };
            let batch = match next {
                Ok(Some(batch)) => batch,
                Ok(None) => break,
                Err(status) => {
                    tracing::debug!(error = %status, "raft stream from a peer ended");
                    return Err(status);
                }
            };
            for bytes in batch.messages {
                let message = parse_peer_message(batch.from, &bytes)?;
                self.raft
                    .step(message)
                    .map_err(|e| Status::unavailable(e.to_string()))?;
            }
        }
        Ok(Response::new(pb::RaftAck {}))
    }
}

/// A raft message from the bytes replica `from` sent; refused when they
/// are not one.
pub fn parse_peer_message(from: u64, bytes: &[u8]) -> Result<raft::eraftpb::Message, Status> {
    raft::eraftpb::Message::parse_from_bytes(bytes).map_err(|e| {
        Status::invalid_argument(format!(
            "replica {from} sent bytes that are not a raft message: {e}"
        ))
    })
}
