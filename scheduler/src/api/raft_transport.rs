//! Receives raft messages from peer replicas and hands them to the raft
//! thread. The stream's caller was proved a replica (a credential derived
//! from the cluster secret, or a replica certificate) before its first
//! message was read; here each message must come from that replica, which
//! must be a member, and be addressed to this one.

use std::collections::BTreeSet;

use genfleet_proto as pb;
use pb::raft_transport_server::RaftTransport;
use protobuf::Message as _;
use tokio::sync::watch;
use tonic::{Request, Response, Status, Streaming};

use crate::auth::ReplicaCaller;
use crate::raft::RaftHandle;

pub struct RaftTransportApi {
    raft: RaftHandle,
    /// The replica's status, read in place for every batch (a clone would
    /// copy every peer's progress on the raft hot path).
    status: watch::Receiver<crate::raft::RaftStatus>,
    /// The replicas this one was started with: a joining replica hears
    /// from them before it has learned the membership.
    configured: BTreeSet<u64>,
    /// Turns true when the replica stops: a peer's stream is long-lived,
    /// and the server's graceful stop waits for every open stream.
    stop: watch::Receiver<bool>,
}

impl RaftTransportApi {
    pub fn new(raft: RaftHandle, configured: BTreeSet<u64>, stop: watch::Receiver<bool>) -> Self {
        Self {
            status: raft.watch_status(),
            raft,
            configured,
            stop,
        }
    }

    /// Whether `id` may speak raft to this replica now: a voter or learner
    /// of the membership it has applied, or, before it has one (joining),
    /// a replica it was configured with.
    fn is_member(&self, id: u64) -> bool {
        let status = self.status.borrow();
        if status.voters.is_empty() && status.learners.is_empty() {
            return self.configured.contains(&id);
        }
        status.voters.contains(&id) || status.learners.contains(&id)
    }
}

#[tonic::async_trait]
impl RaftTransport for RaftTransportApi {
    async fn send(
        &self,
        request: Request<Streaming<pb::RaftBatch>>,
    ) -> Result<Response<pb::RaftAck>, Status> {
        let ReplicaCaller(proved) = request
            .extensions()
            .get::<ReplicaCaller>()
            .copied()
            .ok_or_else(|| Status::internal("the raft stream was not authenticated"))?;
        let me = self.raft.id();
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
            let sender = check_sender(proved, batch.from, |id| self.is_member(id))?;
            for bytes in batch.messages {
                let message = parse_peer_message(sender, &bytes)?;
                if message.from != sender || message.to != me {
                    return Err(Status::permission_denied(format!(
                        "replica {sender} sent a message from {} to {}; this is replica {me}",
                        message.from, message.to
                    )));
                }
                self.raft
                    .step(message, bytes.len())
                    .await
                    .map_err(|e| Status::unavailable(e.to_string()))?;
            }
        }
        Ok(Response::new(pb::RaftAck {}))
    }
}

/// The replica a batch claiming to be `from` is from, if the caller's
/// proved identity allows it and it is a member.
pub fn check_sender(
    proved: Option<u64>,
    from: u64,
    is_member: impl Fn(u64) -> bool,
) -> Result<u64, Status> {
    if let Some(id) = proved {
        if id != from {
            return Err(Status::permission_denied(format!(
                "this stream proved replica {id} but its batch says replica {from}"
            )));
        }
    }
    if !is_member(from) {
        return Err(Status::permission_denied(format!(
            "replica {from} is not a member of this cluster"
        )));
    }
    Ok(from)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_batch_comes_from_the_proved_member_only() {
        let members = |id| id == 1 || id == 2;
        assert_eq!(check_sender(Some(2), 2, members).ok(), Some(2));
        let as_other = check_sender(Some(2), 1, members).expect_err("2 cannot send as 1");
        assert_eq!(as_other.code(), tonic::Code::PermissionDenied);
        let stranger = check_sender(None, 9, members).expect_err("9 is no member");
        assert!(stranger.message().contains("not a member"), "{stranger:?}");
        // A credential good for any replica still needs a member's id.
        assert_eq!(check_sender(None, 1, members).ok(), Some(1));
    }
}
