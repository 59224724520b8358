//! Pod Security: an install without AMD workers runs in a namespace that
//! enforces the `restricted` level, and every pod it makes meets that level
//! (checked here as the admission controller checks it, for the rules the
//! manifests could break); the AMD workers' host /sys mount comes with a
//! namespace lowered to `privileged`, and only with them. Every genfleet pod
//! runs under a PriorityClass of the install.

use serde_json::Value;

use super::objects::find;
use super::tools::kubectl;
use super::{both_vendors_objects, overlay_objects};

/// Volume types the `restricted` level admits.
const RESTRICTED_VOLUMES: [&str; 8] = [
    "configMap",
    "csi",
    "downwardAPI",
    "emptyDir",
    "ephemeral",
    "persistentVolumeClaim",
    "projected",
    "secret",
];

/// The pod templates of the workload objects.
fn pod_templates(objects: &[Value]) -> Vec<(String, &Value)> {
    objects
        .iter()
        .filter(|o| {
            ["StatefulSet", "DaemonSet", "Deployment", "Job"]
                .contains(&o["kind"].as_str().unwrap_or(""))
        })
        .map(|o| {
            let what = format!("{} {}", o["kind"], o["metadata"]["name"]);
            (what, &o["spec"]["template"]["spec"])
        })
        .collect()
}

/// What in `pod` the `restricted` level refuses (empty: admitted).
fn restricted_violations(pod: &Value) -> Vec<String> {
    let mut found = Vec::new();
    for host in ["hostNetwork", "hostPID", "hostIPC"] {
        if pod[host] == true {
            found.push(format!("{host}: true"));
        }
    }
    for v in pod["volumes"].as_array().into_iter().flatten() {
        let kind = v
            .as_object()
            .and_then(|m| m.keys().find(|k| *k != "name").cloned())
            .unwrap_or_default();
        if !RESTRICTED_VOLUMES.contains(&kind.as_str()) {
            found.push(format!("volume {} of type {kind}", v["name"]));
        }
    }
    let pod_sc = &pod["securityContext"];
    let containers = pod["containers"].as_array().into_iter().flatten();
    let inits = pod["initContainers"].as_array().into_iter().flatten();
    for c in containers.chain(inits) {
        let name = &c["name"];
        let sc = &c["securityContext"];
        if sc["privileged"] == true {
            found.push(format!("{name}: privileged"));
        }
        if sc["allowPrivilegeEscalation"] != false {
            found.push(format!("{name}: allowPrivilegeEscalation is not false"));
        }
        if sc["runAsNonRoot"] != true && pod_sc["runAsNonRoot"] != true {
            found.push(format!("{name}: runAsNonRoot is not true"));
        }
        if sc["runAsUser"] == 0 || (sc["runAsUser"].is_null() && pod_sc["runAsUser"] == 0) {
            found.push(format!("{name}: runs as uid 0"));
        }
        let seccomp = if sc["seccompProfile"].is_null() {
            &pod_sc["seccompProfile"]["type"]
        } else {
            &sc["seccompProfile"]["type"]
        };
        if seccomp != "RuntimeDefault" && seccomp != "Localhost" {
            found.push(format!("{name}: seccompProfile {seccomp}"));
        }
        let drop = sc["capabilities"]["drop"].as_array();
        if !drop.is_some_and(|d| d.iter().any(|c| c == "ALL")) {
            found.push(format!("{name}: capabilities do not drop ALL"));
        }
        let added = sc["capabilities"]["add"].as_array().into_iter().flatten();
        for cap in added.filter(|c| *c != "NET_BIND_SERVICE") {
            found.push(format!("{name}: adds capability {cap}"));
        }
        for port in c["ports"].as_array().into_iter().flatten() {
            if port["hostPort"].as_u64().is_some_and(|p| p > 0) {
                found.push(format!("{name}: hostPort {}", port["hostPort"]));
            }
        }
    }
    found
}

fn enforced_level(objects: &[Value]) -> String {
    let ns = find(objects, "Namespace", "genfleet");
    ns["metadata"]["labels"]["pod-security.kubernetes.io/enforce"]
        .as_str()
        .unwrap_or("privileged")
        .to_string()
}

#[test]
fn an_nvidia_install_enforces_restricted_and_its_pods_meet_it() {
    let Some(kubectl) = kubectl() else { return };
    let objects = overlay_objects(&kubectl, "nvidia");
    assert_eq!(enforced_level(objects), "restricted", "overlays/nvidia");
    let pods = pod_templates(objects);
    assert!(pods.len() >= 2, "overlays/nvidia: too few pod templates");
    for (what, pod) in pods {
        let violations = restricted_violations(pod);
        assert!(
            violations.is_empty(),
            "overlays/nvidia: {what} breaks Pod Security `restricted`: {violations:?}"
        );
    }
}

#[test]
fn only_amd_workers_lower_the_namespace_to_privileged() {
    let Some(kubectl) = kubectl() else { return };
    let objects = overlay_objects(&kubectl, "amd");
    assert_eq!(enforced_level(objects), "privileged", "overlays/amd");
    // What makes it necessary: the AMD workers' host /sys, and nothing else.
    for (what, pod) in pod_templates(objects) {
        let violations = restricted_violations(pod);
        if what.contains("genfleet-worker-amd") {
            assert_eq!(
                violations,
                ["volume \"host-sys\" of type hostPath"],
                "overlays/amd: {what}"
            );
        } else {
            assert!(
                violations.is_empty(),
                "overlays/amd: {what}: {violations:?}"
            );
        }
    }
    let objects = both_vendors_objects(&kubectl);
    assert_eq!(enforced_level(objects), "privileged", "base + both workers");
}

/// The checker itself refuses what `restricted` refuses.
#[test]
fn the_restricted_check_refuses_what_the_level_refuses() {
    let good = serde_json::json!({
        "hostNetwork": false,
        "securityContext": {"runAsNonRoot": true, "seccompProfile": {"type": "RuntimeDefault"}},
        "containers": [{"name": "c", "securityContext": {
            "privileged": false, "allowPrivilegeEscalation": false,
            "capabilities": {"drop": ["ALL"]}}}],
        "volumes": [{"name": "t", "emptyDir": {}}]
    });
    assert_eq!(restricted_violations(&good), Vec::<String>::new());
    let bad_cases: [(&str, Value); 5] = [
        ("/hostNetwork", Value::Bool(true)),
        (
            "/volumes/0",
            serde_json::json!({"name": "h", "hostPath": {"path": "/sys"}}),
        ),
        (
            "/containers/0/securityContext/privileged",
            Value::Bool(true),
        ),
        (
            "/containers/0/securityContext/allowPrivilegeEscalation",
            Value::Bool(true),
        ),
        (
            "/securityContext/seccompProfile/type",
            Value::from("Unconfined"),
        ),
    ];
    for (pointer, value) in bad_cases {
        let mut pod = good.clone();
        *pod.pointer_mut(pointer)
            .unwrap_or_else(|| panic!("{pointer} is not in the example pod")) = value;
        assert!(
            !restricted_violations(&pod).is_empty(),
            "a pod with {pointer} changed is admitted"
        );
    }
}

#[test]
fn every_pod_runs_under_a_priority_class_of_the_install() {
    let Some(kubectl) = kubectl() else { return };
    for overlay in ["nvidia", "amd"] {
        let objects = overlay_objects(&kubectl, overlay);
        for (what, pod) in pod_templates(objects) {
            let class = pod["priorityClassName"]
                .as_str()
                .unwrap_or_else(|| panic!("overlays/{overlay}: {what} has no priorityClassName"));
            let pc = find(objects, "PriorityClass", class);
            let value = pc["value"].as_i64().unwrap_or(0);
            // Above ordinary pods (0), below Kubernetes' own critical classes.
            assert!(
                value > 0 && value < 1_000_000_000,
                "PriorityClass {class}: value {value}"
            );
            assert_ne!(
                pc["globalDefault"], true,
                "PriorityClass {class} is the cluster's default"
            );
        }
    }
}

/// The backup CronJob example passes strict validation and runs under
/// `restricted` like every other genfleet pod.
#[test]
fn the_backup_cronjob_example_is_valid_and_restricted() {
    let Some(validator) = super::tools::required(
        "kubernetes-validate",
        super::tools::find_tool("kubernetes-validate"),
    ) else {
        return;
    };
    let yaml = super::tools::read_repo_file("deploy/examples/backup/cronjob.yaml");
    super::tools::validate_strict(&validator, "examples/backup/cronjob.yaml", &yaml);
    let objects = super::tools::documents(&yaml);
    let cron = find(&objects, "CronJob", "genfleet-backup");
    let pod = &cron["spec"]["jobTemplate"]["spec"]["template"]["spec"];
    let violations = restricted_violations(pod);
    assert!(violations.is_empty(), "the backup job: {violations:?}");
    let c = &pod["containers"][0];
    assert!(
        c["args"][0]
            .as_str()
            .is_some_and(|a| a.contains("cluster snapshot save")),
        "the job saves a snapshot: {c}"
    );
}
