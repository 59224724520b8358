//! The Kubernetes controllers against a mocked API server (each request's
//! method, path and body checked; recorded objects as answers) and a real
//! raft replica: what they do must show in the replicated state.

#[path = "kube/mock.rs"]
mod mock;
#[path = "kube/replica.rs"]
mod replica;

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use genfleet_proto as pb;
use genfleet_scheduler::kube::queues::{self, QueueContext, FINALIZER};
use genfleet_scheduler::kube::{nodes, GenQueue, KubeError};
use genfleet_scheduler::policy::{PolicyConfig, Profile};
use genfleet_scheduler::state::CORDONED_BY_KUBERNETES;
use http::{Method, StatusCode};
use mock::{client, fixture, ApiServer};
use pb::JobState;
use replica::{assign, register, submit, Replica};
use serde_json::{json, Value};

const QUEUE_PATH: &str = "/apis/genfleet.dev/v1alpha1/genqueues/team-a";
const STATUS_PATH: &str = "/apis/genfleet.dev/v1alpha1/genqueues/team-a/status";
/// A GenQueue is cluster-scoped: its Events go to the namespace default.
const EVENTS_PATH: &str = "/apis/events.k8s.io/v1/namespaces/default/events";

fn genqueue(object: Value) -> Arc<GenQueue> {
    Arc::new(serde_json::from_value(object).expect("a GenQueue"))
}

/// The recorded team-a GenQueue with `section.key` left out.
fn team_a_without(section: &str, key: &str) -> Value {
    let mut object = fixture("genqueue-team-a.json");
    if let Some(fields) = object[section].as_object_mut() {
        fields.remove(key);
    }
    object
}

fn context(replica: &Replica, client: kube::Client) -> Arc<QueueContext> {
    Arc::new(QueueContext::new(
        client,
        replica.raft.clone(),
        replica.metrics.clone(),
    ))
}

/// The next request must create an Event on team-a with this reason and
/// type (`Normal`, `Warning`); returns the Event.
async fn expect_event(server: &mut ApiServer, reason: &str, type_: &str, what: &str) -> Value {
    let call = server.expect(Method::POST, EVENTS_PATH, what).await;
    let event = call.body.clone();
    let regarding = &event["regarding"];
    assert_eq!(
        (
            regarding["apiVersion"].as_str(),
            regarding["kind"].as_str(),
            regarding["name"].as_str()
        ),
        (
            Some("genfleet.dev/v1alpha1"),
            Some("GenQueue"),
            Some("team-a")
        ),
        "the Event names the GenQueue: {event}"
    );
    assert_eq!(
        (event["reason"].as_str(), event["type"].as_str()),
        (Some(reason), Some(type_)),
        "{what}: {event}"
    );
    assert_eq!(
        event["reportingController"], "genfleet-scheduler",
        "{event}"
    );
    call.respond(StatusCode::CREATED, &event);
    event
}

/// Runs one reconcile while `serve` plays the API server.
async fn reconcile_with(
    object: Arc<GenQueue>,
    ctx: Arc<QueueContext>,
    server: ApiServer,
    serve: impl AsyncFnOnce(ApiServer) -> ApiServer,
) -> (
    Result<kube::runtime::controller::Action, KubeError>,
    ApiServer,
) {
    let reconcile = tokio::spawn(queues::reconcile(object, ctx));
    let server = serve(server).await;
    let result = tokio::time::timeout(Duration::from_secs(20), reconcile)
        .await
        .expect("the reconcile ends once the API has answered")
        .expect("the reconcile does not panic");
    (result, server)
}

#[tokio::test]
async fn a_new_genqueue_gets_the_finalizer_before_anything_else() {
    let replica = Replica::start().await;
    let (client, server) = client();
    let object = team_a_without("metadata", "finalizers");
    let (result, _server) = reconcile_with(
        genqueue(object.clone()),
        context(&replica, client),
        server,
        async |mut server| {
            let call = server
                .expect(Method::PATCH, QUEUE_PATH, "added its finalizer")
                .await;
            assert_eq!(call.content_type, "application/json-patch+json");
            let adds_finalizer = call.body.as_array().into_iter().flatten().any(|op| {
                op["op"] == "add"
                    && op["path"] == "/metadata/finalizers"
                    && op["value"][0] == FINALIZER
            });
            assert!(adds_finalizer, "the patch adds {FINALIZER}: {}", call.body);
            let mut patched = object.clone();
            patched["metadata"]["finalizers"] = json!([FINALIZER]);
            call.ok(&patched);
            server
        },
    )
    .await;
    result.expect("reconciled");
    assert!(
        replica
            .raft
            .read(|s| s.queues().all(|q| q.name != "team-a")),
        "no queue before the finalizer holds the object"
    );
    replica.stop().await;
}

#[tokio::test]
async fn a_genqueue_becomes_a_queue_the_policy_enforces_and_its_status_shows_usage() {
    let replica = Replica::start().await;
    let (client, server) = client();
    let object = fixture("genqueue-team-a.json");
    let ctx = context(&replica, client);
    let mut written = Value::Null;
    let (result, server) = reconcile_with(
        genqueue(object.clone()),
        ctx.clone(),
        server,
        async |mut server| {
            let call = server
                .expect(Method::PATCH, STATUS_PATH, "wrote the queue's status")
                .await;
            // Server-side apply: fields left out are removed, not kept.
            assert_eq!(call.content_type, "application/apply-patch+yaml");
            assert!(
                call.query.contains("fieldManager=genfleet-scheduler")
                    && call.query.contains("force=true"),
                "{}",
                call.query
            );
            assert_eq!(
                call.body["kind"], "GenQueue",
                "an apply patch names its kind"
            );
            let status = &call.body["status"];
            assert_eq!(status["conditions"][0]["type"], "Ready", "{status}");
            assert_eq!(status["conditions"][0]["status"], "True", "{status}");
            assert_eq!(status["conditions"][0]["reason"], "Applied", "{status}");
            assert_eq!(status["observedGeneration"], 3, "{status}");
            assert_eq!(status["usage"], "cpu 0/2, nvidia-h100-80gb 0/8", "{status}");
            assert_eq!(status["budgetLeftDeviceHours"], 500.0, "{status}");
            written = status.clone();
            let mut patched = object.clone();
            patched["status"] = status.clone();
            call.ok(&patched);
            let event = expect_event(
                &mut server,
                "Applied",
                "Normal",
                "recorded that the queue was created",
            )
            .await;
            assert_eq!(event["action"], "Apply", "{event}");
            assert!(
                event["note"]
                    .as_str()
                    .is_some_and(|n| n.contains("created")),
                "{event}"
            );
            server
        },
    )
    .await;
    result.expect("reconciled");

    // A resync of the object as written: nothing changed, so nothing is
    // written and no Event repeated (an unanswered request would hang it).
    let mut as_written = object.clone();
    as_written["status"] = written.clone();
    let resync = tokio::spawn(queues::reconcile(genqueue(as_written.clone()), ctx.clone()));
    tokio::time::timeout(Duration::from_secs(20), resync)
        .await
        .expect(
            "a resync of an unchanged GenQueue calls no API (an Event repeated on every resync?)",
        )
        .expect("no panic")
        .expect("reconciled");
    let queue = replica
        .raft
        .read(|s| s.queues().find(|q| q.name == "team-a").cloned())
        .expect("the GenQueue became a replicated queue");
    assert_eq!((queue.cohort.as_str(), queue.weight), ("research", 2));

    // The policy enforces it: 2 CPUs of quota, 3 jobs, 4 free CPUs, no cohort
    // member to borrow from: two run, one waits for quota.
    replica.apply(register("cpu-node", "cpu", 4)).await;
    for job in ["j1", "j2", "j3"] {
        replica.apply(submit(job, "team-a")).await;
    }
    let connected: BTreeSet<String> = ["cpu-node".to_string()].into();
    let outcome = replica.raft.read(|s| {
        genfleet_scheduler::scheduling::cycle(
            s,
            &connected,
            &Profile::seeded(),
            &PolicyConfig::default(),
            0,
        )
    });
    assert_eq!(
        outcome.placements.len(),
        2,
        "the queue's nominal 2 CPUs: {:?}",
        outcome.placements
    );
    let waiting: Vec<_> = outcome
        .verdicts
        .values()
        .map(|(why, _)| why.clone())
        .collect();
    assert!(
        waiting.len() == 1 && waiting[0].contains("quota"),
        "the third job waits for quota: {waiting:?}"
    );
    replica
        .apply(pb::command::Kind::Assign(pb::Assign {
            placements: outcome.placements,
        }))
        .await;

    // The next pass reports the use (and patches only because it changed;
    // the outcome did not, so no Event follows).
    let (result, _server) =
        reconcile_with(genqueue(as_written), ctx, server, async |mut server| {
            let call = server
                .expect(Method::PATCH, STATUS_PATH, "refreshed the queue's status")
                .await;
            let status = &call.body["status"];
            assert_eq!(
                (
                    status["runningJobs"].as_u64(),
                    status["pendingJobs"].as_u64()
                ),
                (Some(2), Some(1)),
                "{status}"
            );
            assert_eq!(status["used"]["cpu"], 2, "{status}");
            assert_eq!(status["usage"], "cpu 2/2, nvidia-h100-80gb 0/8", "{status}");
            call.ok(&object);
            server
        })
        .await;
    result.expect("reconciled");
    replica.stop().await;
}

#[tokio::test]
async fn a_spec_the_state_machine_refuses_is_reported_not_applied() {
    let replica = Replica::start().await;
    let (client, server) = client();
    // Borrowing needs a cohort to borrow from.
    let object = team_a_without("spec", "cohort");
    let (result, _server) = reconcile_with(
        genqueue(object.clone()),
        context(&replica, client),
        server,
        async |mut server| {
            let call = server
                .expect(
                    Method::PATCH,
                    STATUS_PATH,
                    "reported the invalid spec in the status",
                )
                .await;
            let condition = &call.body["status"]["conditions"][0];
            assert_eq!(
                (condition["status"].as_str(), condition["reason"].as_str()),
                (Some("False"), Some("InvalidSpec")),
                "{condition}"
            );
            assert!(
                condition["message"]
                    .as_str()
                    .unwrap_or_default()
                    .contains("no cohort"),
                "{condition}"
            );
            call.ok(&object);
            let event = expect_event(
                &mut server,
                "InvalidSpec",
                "Warning",
                "recorded the invalid spec as a Warning Event",
            )
            .await;
            assert!(
                event["note"]
                    .as_str()
                    .is_some_and(|n| n.contains("no cohort")),
                "the Event says why: {event}"
            );
            server
        },
    )
    .await;
    result.expect("an invalid spec is reported, not retried");
    assert!(replica
        .raft
        .read(|s| s.queues().all(|q| q.name != "team-a")));
    replica.stop().await;
}

#[tokio::test]
async fn deleting_a_genqueue_waits_for_its_jobs_and_says_so() {
    let replica = Replica::start().await;
    let (client, server) = client();
    let ctx = context(&replica, client);
    let object = fixture("genqueue-team-a.json");
    let queue = genqueue(object.clone()).to_queue().expect("valid");
    replica
        .apply(pb::command::Kind::UpsertQueue(pb::UpsertQueue {
            queue: Some(queue),
        }))
        .await;
    replica.apply(submit("j1", "team-a")).await;
    let mut deleting = object.clone();
    deleting["metadata"]["deletionTimestamp"] = json!("2026-11-29T02:00:00Z");

    let (result, server) = reconcile_with(
        genqueue(deleting.clone()),
        ctx.clone(),
        server,
        async |mut server| {
            let call = server
                .expect(
                    Method::PATCH,
                    STATUS_PATH,
                    "said in the status why the delete waits",
                )
                .await;
            let condition = &call.body["status"]["conditions"][0];
            assert_eq!(condition["reason"], "DeleteRefused", "{condition}");
            assert!(
                condition["message"]
                    .as_str()
                    .unwrap_or_default()
                    .contains("1 unfinished jobs"),
                "{condition}"
            );
            call.ok(&deleting);
            let event = expect_event(
                &mut server,
                "DeleteRefused",
                "Warning",
                "recorded why the delete waits",
            )
            .await;
            assert_eq!(event["action"], "Delete", "{event}");
            server
        },
    )
    .await;
    assert!(
        matches!(result, Err(KubeError::DeleteRefused { .. })),
        "{result:?}"
    );
    assert!(
        replica
            .raft
            .read(|s| s.queues().any(|q| q.name == "team-a")),
        "the queue stays"
    );

    replica
        .apply(pb::command::Kind::CancelJob(pb::CancelJob {
            job_id: "j1".into(),
        }))
        .await;
    let (result, _server) = reconcile_with(
        genqueue(deleting.clone()),
        ctx,
        server,
        async |mut server| {
            expect_event(
                &mut server,
                "Deleted",
                "Normal",
                "recorded that the queue was deleted",
            )
            .await;
            let call = server
                .expect(
                    Method::PATCH,
                    QUEUE_PATH,
                    "removed its finalizer once the queue was deleted",
                )
                .await;
            let removes = call
                .body
                .as_array()
                .into_iter()
                .flatten()
                .any(|op| op["op"] == "remove" && op["path"] == "/metadata/finalizers/0");
            assert!(removes, "{}", call.body);
            call.ok(&deleting);
            server
        },
    )
    .await;
    result.expect("deleted");
    assert!(
        replica
            .raft
            .read(|s| s.queues().all(|q| q.name != "team-a")),
        "the queue is gone"
    );
    replica.stop().await;
}

fn node_with(mut node: Value, name: &str, unschedulable: bool, ready: &str) -> Value {
    node["metadata"]["name"] = json!(name);
    node["spec"]["unschedulable"] = json!(unschedulable);
    let conditions = node["status"]["conditions"]
        .as_array_mut()
        .expect("conditions");
    for c in conditions.iter_mut().filter(|c| c["type"] == "Ready") {
        c["status"] = json!(ready);
    }
    node
}

#[tokio::test]
async fn the_node_watcher_mirrors_cordons_and_requeues_lost_nodes_through_raft() {
    let replica = Replica::start().await;
    // Two GPU nodes with a running job each, and one that genfleet knows but
    // whose labels disagree with its worker.
    replica
        .apply(register("gpu-node-1", "nvidia-h100-80gb", 8))
        .await;
    replica
        .apply(register("gpu-node-2", "nvidia-h100-80gb", 8))
        .await;
    replica.apply(register("gpu-node-3", "cpu", 1)).await;
    for (job, node) in [
        ("j1", "gpu-node-1"),
        ("j2", "gpu-node-2"),
        ("j3", "gpu-node-3"),
    ] {
        replica.apply(submit(job, "default")).await;
        replica.apply(assign(job, node, 0)).await;
    }
    let (client, mut server) = client();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    // No worker has a session: NotReady is taken at its word.
    let sessions = Arc::new(genfleet_scheduler::Sessions::default());
    let watcher = tokio::spawn(nodes::run(
        client,
        replica.raft.clone(),
        sessions,
        replica.metrics.clone(),
        async move {
            let _ = stop_rx.await;
        },
    ));
    let recorded = fixture("node-h100.json");

    // The first list: node 1 cordoned with kubectl, node 3 labelled H100.
    let list = server
        .expect(Method::GET, "/api/v1/nodes", "listed the Nodes")
        .await;
    assert!(
        !list.query.contains("watch=true"),
        "a list first: {}",
        list.query
    );
    list.ok(&json!({
        "apiVersion": "v1",
        "kind": "NodeList",
        "metadata": { "resourceVersion": "190300" },
        "items": [
            node_with(recorded.clone(), "gpu-node-1", true, "True"),
            node_with(recorded.clone(), "gpu-node-2", false, "True"),
            node_with(recorded.clone(), "gpu-node-3", false, "True"),
        ],
    }));
    replica
        .wait_for("kubectl cordon of gpu-node-1 cordons it in genfleet", |s| {
            s.node("gpu-node-1")
                .is_some_and(|n| n.cordoned && n.cordon_source == CORDONED_BY_KUBERNETES)
        })
        .await;
    let mismatch = |node: &str| {
        replica
            .metrics
            .kube_node_label_mismatch
            .with_label_values(&[node])
            .get()
    };
    assert_eq!(
        (mismatch("gpu-node-1"), mismatch("gpu-node-3")),
        (0, 1),
        "gpu-node-3's labels say H100, its worker a CPU"
    );
    assert_eq!(
        replica.raft.read(|s| s.job("j1").map(|j| j.state)),
        Some(JobState::Running),
        "a cordon lets running work finish"
    );

    // Then: node 1 uncordoned, node 2 NotReady, node 3 deleted.
    let watch = server
        .expect(Method::GET, "/api/v1/nodes", "watched the Nodes")
        .await;
    assert!(watch.query.contains("watch=true"), "{}", watch.query);
    watch.watch_events(&[
        (
            "MODIFIED",
            node_with(recorded.clone(), "gpu-node-1", false, "True"),
        ),
        (
            "MODIFIED",
            node_with(recorded.clone(), "gpu-node-2", false, "Unknown"),
        ),
        (
            "DELETED",
            node_with(recorded.clone(), "gpu-node-3", false, "True"),
        ),
    ]);
    replica
        .wait_for("kubectl uncordon lifts the cordon Kubernetes set", |s| {
            s.node("gpu-node-1").is_some_and(|n| !n.cordoned)
        })
        .await;
    replica
        .wait_for("a NotReady node's job goes back to pending at once", |s| {
            s.job("j2").is_some_and(|j| j.state == JobState::Pending)
                && s.node("gpu-node-2").is_some_and(|n| !n.up)
        })
        .await;
    replica
        .wait_for("a deleted Node's running job goes back to pending", |s| {
            s.node("gpu-node-3").is_some_and(|n| !n.up)
                && s.job("j3").is_some_and(|j| j.state == JobState::Pending)
        })
        .await;
    let _ = stop_tx.send(());
    tokio::time::timeout(Duration::from_secs(20), watcher)
        .await
        .expect("the watcher stops when told")
        .expect("no panic");
    replica.stop().await;
}

#[tokio::test]
async fn an_operators_cordon_survives_kubernetes_uncordon() {
    let replica = Replica::start().await;
    replica
        .apply(register("gpu-node-1", "nvidia-h100-80gb", 8))
        .await;
    replica
        .apply(pb::command::Kind::CordonNode(pb::CordonNode {
            node: "gpu-node-1".into(),
            cordoned: true,
            source: String::new(),
        }))
        .await;
    let facts = nodes::NodeFacts::of(
        &serde_json::from_value(node_with(
            fixture("node-h100.json"),
            "gpu-node-1",
            false,
            "True",
        ))
        .expect("a Node"),
    );
    let mut tracker = nodes::Tracker::default();
    nodes::sync(
        &replica.raft,
        &replica.metrics,
        &BTreeSet::new(),
        &[(facts.name.clone(), facts)].into(),
        &[],
        &mut tracker,
    )
    .await;
    assert!(
        replica
            .raft
            .read(|s| s.node("gpu-node-1").is_some_and(|n| n.cordoned)),
        "Kubernetes never lifts `genfleet node cordon`"
    );
    replica.stop().await;
}
