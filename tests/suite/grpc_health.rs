//! The standard gRPC health service and server reflection on a replica's
//! gRPC port: they answer anyone, also where every other service wants a
//! key; health follows the replica's readiness per service; reflection
//! names the public services.

use std::path::Path;

use tokio_stream::StreamExt;
use tonic::transport::Channel;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;
use tonic_health::pb::HealthCheckRequest;
use tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient;
use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;
use tonic_reflection::pb::v1::server_reflection_response::MessageResponse;
use tonic_reflection::pb::v1::ServerReflectionRequest;

use crate::common::replicas::free_port;
use crate::common::{self, start_scheduler, within};

const SERVICES: [&str; 6] = [
    "genfleet.v1.JobService",
    "genfleet.v1.TenantService",
    "genfleet.v1.WorkerSession",
    "genfleet.v1.ClusterService",
    "genfleet.v1.NodeService",
    "genfleet.v1.QueueService",
];

async fn status(health: &mut HealthClient<Channel>, service: &str) -> ServingStatus {
    let request = HealthCheckRequest {
        service: service.into(),
    };
    let reply = health.check(request).await.expect("health check");
    reply.into_inner().status()
}

/// Follows `service`'s status (Health.Watch) until it is `wanted`.
async fn watch_until(health: &mut HealthClient<Channel>, service: &str, wanted: ServingStatus) {
    let request = HealthCheckRequest {
        service: service.into(),
    };
    let mut updates = health.watch(request).await.expect("watch").into_inner();
    let seen = within(30, "the health status to change", async {
        while let Some(update) = updates.next().await {
            if update.expect("a status").status() == wanted {
                return true;
            }
        }
        false
    })
    .await;
    assert!(seen, "{service:?} never became {wanted:?}");
}

async fn listed_services(channel: Channel) -> Vec<String> {
    let mut reflection = ServerReflectionClient::new(channel);
    let request = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::ListServices(String::new())),
    };
    let mut replies = reflection
        .server_reflection_info(tokio_stream::iter([request]))
        .await
        .expect("reflection")
        .into_inner();
    let reply = within(30, "the reflection reply", replies.next())
        .await
        .expect("a reply")
        .expect("no error");
    match reply.message_response {
        Some(MessageResponse::ListServicesResponse(list)) => {
            list.service.into_iter().map(|s| s.name).collect()
        }
        other => panic!("not a service list: {other:?}"),
    }
}

fn keyed_scheduler(dir: &Path) -> common::SchedulerProc {
    let admin_file = dir.join("admin-key");
    std::fs::write(&admin_file, "an-admin-key-of-enough-length-000000").expect("admin key");
    start_scheduler(
        &dir.join("scheduler"),
        "127.0.0.1:0",
        &["--admin-key-file", &admin_file.to_string_lossy()],
    )
}

#[tokio::test]
async fn health_and_reflection_answer_anyone_where_the_api_wants_a_key() {
    let dir = tempfile::tempdir().expect("tempdir");
    let scheduler = keyed_scheduler(dir.path());
    let channel = common::channel(&scheduler.endpoint).await;
    let mut health = HealthClient::new(channel.clone());
    watch_until(&mut health, "", ServingStatus::Serving).await;
    for service in SERVICES.into_iter().chain(["genfleet.v1.RaftTransport"]) {
        assert_eq!(
            status(&mut health, service).await,
            ServingStatus::Serving,
            "{service}"
        );
    }
    let unknown = HealthCheckRequest {
        service: "genfleet.v1.NoSuchService".into(),
    };
    let refused = health.check(unknown).await.expect_err("unknown service");
    assert_eq!(refused.code(), tonic::Code::NotFound);
    // The API itself still refuses a caller without a key.
    let mut jobs = genfleet_proto::job_service_client::JobServiceClient::new(channel.clone());
    let anonymous = jobs
        .list(genfleet_proto::ListJobsRequest::default())
        .await
        .expect_err("no key");
    assert_eq!(anonymous.code(), tonic::Code::Unauthenticated);

    let listed = listed_services(channel).await;
    for service in SERVICES.into_iter().chain([
        "genfleet.v1.RaftTransport",
        "grpc.health.v1.Health",
        "grpc.reflection.v1.ServerReflection",
    ]) {
        assert!(
            listed.iter().any(|s| s == service),
            "{service} not in {listed:?}"
        );
    }
}

/// A replica of a two-replica cluster whose peer never starts has no
/// quorum: its client services say NOT_SERVING, while its raft transport
/// serves (it must hear the peer when it comes).
#[tokio::test]
async fn a_replica_without_quorum_says_its_services_do_not_serve() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (mine, peer) = (free_port(), free_port());
    let peers = format!("1=http://127.0.0.1:{mine},2=http://127.0.0.1:{peer}");
    let listen = format!("127.0.0.1:{mine}");
    let scheduler = start_scheduler(
        &dir.path().join("one"),
        &listen,
        &["--id", "1", "--peers", &peers],
    );
    let channel = common::channel(&scheduler.endpoint).await;
    let mut health = HealthClient::new(channel);
    watch_until(&mut health, "", ServingStatus::NotServing).await;
    for service in SERVICES {
        assert_eq!(
            status(&mut health, service).await,
            ServingStatus::NotServing,
            "{service}"
        );
    }
    assert_eq!(
        status(&mut health, "genfleet.v1.RaftTransport").await,
        ServingStatus::Serving
    );
}
