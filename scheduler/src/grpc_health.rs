//! The standard gRPC health service (`grpc.health.v1.Health`) and server
//! reflection, on the replica's gRPC port. Both answer anyone, like
//! `/healthz`: health says only whether a service serves, and reflection
//! lists only the public schema (the .proto files in the repository), never
//! state (docs/security.md).
//!
//! Per service: the raft transport serves as soon as the replica runs (a
//! replica catching up must hear its peers); every other service, and the
//! server as a whole (""), serves while the replica is ready: it knows a
//! leader, is a member, and has applied an entry of the current term
//! (`RaftStatus::readiness`, the same rule as `/readyz`).

use tokio::sync::watch;
use tokio::task::JoinHandle;
use tonic::server::NamedService;
use tonic_health::server::HealthReporter;
use tonic_health::ServingStatus;

use genfleet_proto as pb;

use crate::raft::{RaftHandle, RaftStatus};

/// Serves as soon as the replica runs: a replica catching up must hear its peers.
const RAFT_SERVICE: &str =
    <pb::raft_transport_server::RaftTransportServer<()> as NamedService>::NAME;

/// The services that follow the replica's readiness.
const READY_SERVICES: [&str; 7] = [
    "",
    <pb::job_service_server::JobServiceServer<()> as NamedService>::NAME,
    <pb::tenant_service_server::TenantServiceServer<()> as NamedService>::NAME,
    <pb::worker_session_server::WorkerSessionServer<()> as NamedService>::NAME,
    <pb::cluster_service_server::ClusterServiceServer<()> as NamedService>::NAME,
    <pb::node_service_server::NodeServiceServer<()> as NamedService>::NAME,
    <pb::queue_service_server::QueueServiceServer<()> as NamedService>::NAME,
];

/// Sets every service's status from the replica's readiness now, then
/// keeps them in step until `stop`. The first statuses are set before this
/// returns, so the port never shows tonic's default SERVING for a replica
/// that is not ready.
pub async fn start(
    raft: RaftHandle,
    reporter: HealthReporter,
    stop: watch::Receiver<bool>,
) -> JoinHandle<()> {
    reporter
        .set_service_status(RAFT_SERVICE, ServingStatus::Serving)
        .await;
    let mut status = raft.watch_status();
    let now = serving(&status.borrow_and_update());
    set_ready_services(&reporter, now).await;
    tokio::spawn(follow(status, reporter, now, stop))
}

fn serving(status: &RaftStatus) -> ServingStatus {
    match status.readiness() {
        Ok(()) => ServingStatus::Serving,
        Err(_) => ServingStatus::NotServing,
    }
}

async fn set_ready_services(reporter: &HealthReporter, status: ServingStatus) {
    for service in READY_SERVICES {
        reporter.set_service_status(service, status).await;
    }
}

async fn follow(
    mut status: watch::Receiver<RaftStatus>,
    reporter: HealthReporter,
    mut last: ServingStatus,
    mut stop: watch::Receiver<bool>,
) {
    loop {
        tokio::select! {
            _ = stop.wait_for(|stopped| *stopped) => break,
            changed = status.changed() => if changed.is_err() { break },
        }
        let now = serving(&status.borrow_and_update());
        if now != last {
            set_ready_services(&reporter, now).await;
            last = now;
        }
    }
    // A stopping replica serves nothing.
    set_ready_services(&reporter, ServingStatus::NotServing).await;
    reporter
        .set_service_status(RAFT_SERVICE, ServingStatus::NotServing)
        .await;
}
