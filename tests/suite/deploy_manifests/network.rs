//! The NetworkPolicies of the base, evaluated as a network plugin applies
//! them: who may open a connection to each port of the scheduler and the
//! workers. Genfleet's own pods reach the grpc port (raft, worker sessions);
//! client namespaces (labelled genfleet.dev/client=true) reach the client
//! APIs; the monitoring namespace reaches the metrics ports; nobody else
//! reaches anything.

use serde_json::{json, Value};

use super::objects::{container, find, requirement_holds};
use super::overlay_objects;
use super::tools::kubectl;

/// A pod that opens a connection: its labels and its namespace's labels.
struct Caller {
    what: &'static str,
    pod: Value,
    namespace: Value,
}

fn callers() -> Vec<Caller> {
    let genfleet_ns =
        json!({"kubernetes.io/metadata.name": "genfleet", "genfleet.dev/client": "true"});
    vec![
        Caller {
            what: "a scheduler replica",
            pod: json!({"app.kubernetes.io/name": "genfleet", "app.kubernetes.io/component": "scheduler"}),
            namespace: genfleet_ns.clone(),
        },
        Caller {
            what: "a worker",
            pod: json!({"app.kubernetes.io/name": "genfleet", "app.kubernetes.io/component": "worker"}),
            namespace: genfleet_ns,
        },
        Caller {
            what: "a pod in a client namespace",
            pod: json!({"app": "video-frontend"}),
            namespace: json!({"kubernetes.io/metadata.name": "frontend", "genfleet.dev/client": "true"}),
        },
        Caller {
            what: "Prometheus",
            pod: json!({"app.kubernetes.io/name": "prometheus"}),
            namespace: json!({"kubernetes.io/metadata.name": "monitoring"}),
        },
        Caller {
            what: "a pod in another namespace",
            pod: json!({"app": "anything"}),
            namespace: json!({"kubernetes.io/metadata.name": "tenant-a"}),
        },
        Caller {
            what: "a pod in another namespace that copies genfleet's pod labels",
            pod: json!({"app.kubernetes.io/name": "genfleet", "app.kubernetes.io/component": "scheduler"}),
            namespace: json!({"kubernetes.io/metadata.name": "tenant-b"}),
        },
    ]
}

/// Whether a label selector (matchLabels and matchExpressions) picks `labels`;
/// an empty selector picks everything.
fn picks(selector: &Value, labels: &Value) -> bool {
    let match_labels = selector["matchLabels"].as_object().into_iter().flatten();
    let labels_ok = match_labels.into_iter().all(|(k, v)| &labels[k] == v);
    let expressions = selector["matchExpressions"]
        .as_array()
        .into_iter()
        .flatten();
    let expressions_ok = expressions.into_iter().all(|e| {
        // Gt and Lt are node selectors' only.
        let operator = e["operator"].as_str().unwrap_or("");
        assert!(
            !matches!(operator, "Gt" | "Lt"),
            "unknown selector operator {operator:?}"
        );
        requirement_holds(e, |key| labels[key].as_str())
    });
    labels_ok && expressions_ok
}

/// Whether one `from` peer admits `caller`, for a policy in namespace `ns`.
fn peer_admits(peer: &Value, caller: &Caller, ns: &str) -> bool {
    assert!(
        peer["ipBlock"].is_null(),
        "ipBlock peers are not expected: {peer}"
    );
    match (peer.get("podSelector"), peer.get("namespaceSelector")) {
        // A podSelector alone: pods of the policy's own namespace.
        (Some(pods), None) => {
            caller.namespace["kubernetes.io/metadata.name"] == ns && picks(pods, &caller.pod)
        }
        (None, Some(namespaces)) => picks(namespaces, &caller.namespace),
        (Some(pods), Some(namespaces)) => {
            picks(namespaces, &caller.namespace) && picks(pods, &caller.pod)
        }
        (None, None) => panic!("a peer with no selector: {peer}"),
    }
}

/// Whether `caller` may connect to `port` (number) of a pod with `labels`
/// in namespace `ns`, whose container names its ports `named`.
fn admitted(
    policies: &[&Value],
    caller: &Caller,
    labels: &Value,
    ns: &str,
    port: u64,
    named: &Value,
) -> bool {
    let selecting: Vec<&&Value> = policies
        .iter()
        .filter(|p| picks(&p["spec"]["podSelector"], labels))
        .collect();
    if selecting.is_empty() {
        return true; // isolated by no policy
    }
    selecting.iter().any(|p| {
        p["spec"]["ingress"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|rule| {
                let port_ok = match rule["ports"].as_array() {
                    None => true,
                    Some(ports) => ports.iter().any(|pp| {
                        let want = &pp["port"];
                        want.as_u64() == Some(port)
                            || want.as_str().is_some_and(|name| {
                                named.as_array().into_iter().flatten().any(|cp| {
                                    cp["name"] == name && cp["containerPort"].as_u64() == Some(port)
                                })
                            })
                    }),
                };
                let from_ok = match rule["from"].as_array() {
                    None => true,
                    Some(peers) => peers.iter().any(|peer| peer_admits(peer, caller, ns)),
                };
                port_ok && from_ok
            })
    })
}

#[test]
fn network_policies_admit_only_the_callers_of_each_port() {
    let Some(kubectl) = kubectl() else { return };
    let objects = overlay_objects(&kubectl, "nvidia");
    let policies: Vec<&Value> = objects
        .iter()
        .filter(|o| o["kind"] == "NetworkPolicy")
        .collect();
    for p in &policies {
        let types = p["spec"]["policyTypes"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        assert!(
            types.contains(&json!("Ingress")),
            "{}: not an ingress policy",
            p["metadata"]["name"]
        );
    }
    let sts = find(objects, "StatefulSet", "genfleet-scheduler");
    let worker_ds = objects
        .iter()
        .find(|o| o["kind"] == "DaemonSet")
        .expect("a worker DaemonSet");
    let targets = [
        ("scheduler", sts, "scheduler"),
        ("worker", worker_ds, "worker"),
    ];
    // (target, port, the callers admitted, by `what`).
    let expected: [(&str, u64, &[&str]); 4] = [
        (
            "scheduler",
            7070,
            &[
                "a scheduler replica",
                "a worker",
                "a pod in a client namespace",
            ],
        ),
        // genfleet's own namespace is a client namespace too (the CLI run
        // there, a backup job).
        (
            "scheduler",
            8080,
            &[
                "a scheduler replica",
                "a worker",
                "a pod in a client namespace",
            ],
        ),
        ("scheduler", 9090, &["Prometheus"]),
        ("worker", 9091, &["Prometheus"]),
    ];
    for (target, port, allowed) in expected {
        let (_, object, container_name) = targets
            .iter()
            .find(|(t, _, _)| *t == target)
            .expect("a target");
        let labels = &object["spec"]["template"]["metadata"]["labels"];
        let ns = object["metadata"]["namespace"].as_str().unwrap_or("");
        let c = container(&object["spec"]["template"]["spec"], container_name, target);
        for caller in callers() {
            let got = admitted(&policies, &caller, labels, ns, port, &c["ports"]);
            assert_eq!(
                got,
                allowed.contains(&caller.what),
                "{target} port {port}: {} is {}",
                caller.what,
                if got { "admitted" } else { "refused" }
            );
        }
        // A port the pod does not serve is open to nobody.
        let others = callers();
        assert!(
            !others
                .iter()
                .any(|caller| admitted(&policies, caller, labels, ns, 22, &c["ports"])),
            "{target}: port 22 is admitted"
        );
    }
}
