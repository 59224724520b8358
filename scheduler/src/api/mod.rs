//! The scheduler's gRPC services and how their failures map to gRPC codes.

mod cluster;
mod jobs;
mod nodes;
pub mod paging;
mod queues;
mod raft_transport;
pub mod route;
mod tenants;
mod trace;
mod workers;

pub use crate::leader::worker_session::{check_worker_message, SessionConfig};
pub use cluster::ClusterApi;
pub use jobs::JobApi;
pub use nodes::NodeApi;
pub use queues::QueueApi;
pub use raft_transport::{parse_peer_message, RaftTransportApi};
pub use tenants::TenantApi;
pub use workers::WorkerSessionApi;

use route::Router;

use std::sync::Arc;

use tokio::sync::watch;
use tonic::Status;

use crate::leader::Sessions;
use crate::metrics::Metrics;
use crate::raft::{ProposeError, RaftHandle};
use crate::scheduling::LastVerdicts;
use crate::state::Rejection;

/// What a replica's gRPC services and its leader's loops share.
#[derive(Clone)]
pub struct ReplicaParts {
    pub raft: RaftHandle,
    /// Forwards calls a follower cannot answer to the leader.
    pub router: Arc<Router>,
    /// The leader's open worker sessions (live progress).
    pub sessions: Arc<Sessions>,
    /// Why each pending job waits, from the leader's last cycle.
    pub verdicts: Arc<LastVerdicts>,
    pub metrics: Metrics,
    /// Turns true when the replica stops.
    pub stop: watch::Receiver<bool>,
}

/// The gRPC status for a command refused at apply.
pub(crate) fn rejection_status(r: &Rejection) -> Status {
    let message = r.to_string();
    match r {
        Rejection::UnknownJob(_)
        | Rejection::UnknownNode(_)
        | Rejection::UnknownQueue(_)
        | Rejection::UnknownTenant(_)
        | Rejection::UnknownKey(_) => Status::not_found(message),
        Rejection::TenantLimit { .. } => Status::permission_denied(message),
        Rejection::TenantBusy { .. } => Status::resource_exhausted(message),
        Rejection::DuplicateJob(_) => Status::already_exists(message),
        Rejection::Spec(_)
        | Rejection::Registration(_)
        | Rejection::Malformed(_)
        | Rejection::InvalidQueue(_)
        | Rejection::InvalidTenant(_)
        | Rejection::InvalidKey(_)
        | Rejection::BadCheckpoint { .. } => Status::invalid_argument(message),
        Rejection::UnsupportedVersion(_) => Status::internal(message),
        Rejection::AlreadyEnded { .. }
        | Rejection::NotPending { .. }
        | Rejection::NotEnded { .. }
        | Rejection::NodeDown(_)
        | Rejection::StaleLease { .. }
        | Rejection::Placement { .. }
        | Rejection::QueueInUse { .. }
        | Rejection::TenantInUse { .. }
        | Rejection::NotPreempting(_)
        | Rejection::NotFresh(_) => Status::failed_precondition(message),
        Rejection::BadBackup(_) => Status::invalid_argument(message),
    }
}

/// Proposes a command on this replica: a refusal names the leader, a
/// command refused at apply maps to its gRPC code.
pub(crate) async fn propose(
    raft: &crate::raft::RaftHandle,
    router: &route::Router,
    kind: genfleet_proto::command::Kind,
) -> Result<crate::state::Outcome, Status> {
    let command = genfleet_proto::Command { kind: Some(kind) };
    let applied = raft
        .propose(command)
        .await
        .map_err(|e| router.refusal(&e))?;
    applied.result.map_err(|r| rejection_status(&r))
}

/// Confirms this replica still leads before it reads (raft's ReadIndex):
/// a leader cut off from the others cannot answer stale.
pub(crate) async fn readable(
    raft: &crate::raft::RaftHandle,
    router: &route::Router,
) -> Result<(), Status> {
    raft.linearizable_read()
        .await
        .map_err(|e| router.refusal(&e))
}

/// The gRPC status for a command that could not go through raft.
pub(crate) fn propose_status(e: &ProposeError) -> Status {
    Status::unavailable(e.to_string())
}
