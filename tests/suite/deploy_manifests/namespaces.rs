//! An install in a namespace other than `genfleet`: the example
//! kustomization (deploy/examples/another-namespace) renders a working
//! install: every object and reference in the new namespace, none left in
//! `genfleet`.

use std::path::Path;

use serde_json::Value;

use super::objects::{container, env, find, flag, worker_daemonsets, NVIDIA};
use super::tools::{documents, find_tool, kubectl, render, required, validate_strict};
use super::ROOT;

/// Kinds that live outside namespaces.
const CLUSTER_SCOPED: [&str; 5] = [
    "Namespace",
    "CustomResourceDefinition",
    "ClusterRole",
    "ClusterRoleBinding",
    "PriorityClass",
];

/// Every `namespace` field anywhere in `v`, with where it is.
fn namespace_fields<'a>(v: &'a Value, at: String, out: &mut Vec<(String, &'a Value)>) {
    match v {
        Value::Object(m) => {
            for (k, child) in m {
                let here = format!("{at}.{k}");
                if k == "namespace" {
                    out.push((here.clone(), child));
                }
                namespace_fields(child, here, out);
            }
        }
        Value::Array(items) => {
            for (i, child) in items.iter().enumerate() {
                namespace_fields(child, format!("{at}[{i}]"), out);
            }
        }
        _ => {}
    }
}

#[test]
fn another_namespace_renders_a_working_install() {
    let (Some(kubectl), Some(validator)) = (
        kubectl(),
        required("kubernetes-validate", find_tool("kubernetes-validate")),
    ) else {
        return;
    };
    let dir = Path::new(ROOT).join("deploy/examples/another-namespace");
    let yaml = render(&kubectl, &dir);
    validate_strict(&validator, "examples/another-namespace", &yaml);
    assert!(
        !yaml.contains("genfleet.svc"),
        "an address still names the namespace genfleet"
    );
    let objects = documents(&yaml);
    let ns = "video-gen";
    find(&objects, "Namespace", ns);
    assert!(
        !objects
            .iter()
            .any(|o| o["kind"] == "Namespace" && o["metadata"]["name"] == "genfleet"),
        "the Namespace genfleet is still made"
    );
    for o in &objects {
        let what = format!("{} {}", o["kind"], o["metadata"]["name"]);
        let kind = o["kind"].as_str().unwrap_or("");
        if !CLUSTER_SCOPED.contains(&kind) {
            assert_eq!(o["metadata"]["namespace"], ns, "{what}: namespace");
        }
        let mut fields = Vec::new();
        namespace_fields(o, String::new(), &mut fields);
        for (at, value) in fields {
            assert_eq!(value, ns, "{what}: {at}");
        }
    }
    // The scheduler's rights go to its ServiceAccount in the new namespace.
    let binding = find(&objects, "ClusterRoleBinding", "genfleet-scheduler");
    let subjects = binding["subjects"].as_array().cloned().unwrap_or_default();
    assert!(
        subjects.iter().any(|s| s["kind"] == "ServiceAccount"
            && s["name"] == "genfleet-scheduler"
            && s["namespace"] == ns),
        "ClusterRoleBinding subjects {subjects:?}"
    );
    find(&objects, "ServiceAccount", "genfleet-scheduler");
    // Workers dial a Service of their own namespace by its short name.
    for ds in worker_daemonsets(&objects, &NVIDIA) {
        let c = container(&ds["spec"]["template"]["spec"], "worker", "worker");
        let scheduler = flag(c, "--scheduler", "worker");
        let host = scheduler
            .trim_start_matches("http://")
            .split(':')
            .next()
            .unwrap_or("");
        let service = find(&objects, "Service", host);
        assert_eq!(service["metadata"]["namespace"], ns, "{scheduler}");
    }
    // The replicas find each other through the namespace they run in.
    let sts = find(&objects, "StatefulSet", "genfleet-scheduler");
    let c = container(&sts["spec"]["template"]["spec"], "scheduler", "scheduler");
    assert_eq!(
        env(c, "POD_NAMESPACE", "scheduler")["valueFrom"]["fieldRef"]["fieldPath"],
        "metadata.namespace",
        "the replicas' namespace must come from the downward API"
    );
}
