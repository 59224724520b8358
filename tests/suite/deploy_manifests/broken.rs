//! The checks themselves, against manifests known to be wrong: each case
//! breaks one thing in a rendered kustomization and the check must refuse
//! it, for that reason (a check that passes anything would pass here too).

use std::panic::{catch_unwind, AssertUnwindSafe};

use serde_json::{json, Value};

use super::cert_manager::assert_cert_manager;
use super::objects::{assert_scheduler, assert_worker, NVIDIA};
use super::secrets::assert_secret_holders;
use super::tools::{documents, kubectl};
use super::{overlay_objects, render_own};

/// The object of `kind` named `name`, to change.
fn find_mut<'a>(objects: &'a mut [Value], kind: &str, name: &str) -> &'a mut Value {
    objects
        .iter_mut()
        .find(|o| o["kind"] == kind && o["metadata"]["name"] == name)
        .unwrap_or_else(|| panic!("no {kind} named {name} to break"))
}

fn worker_pod(objects: &mut [Value]) -> &mut Value {
    &mut find_mut(objects, "DaemonSet", "genfleet-worker-nvidia-8gpus")["spec"]["template"]["spec"]
}

fn scheduler_pod(objects: &mut [Value]) -> &mut Value {
    &mut find_mut(objects, "StatefulSet", "genfleet-scheduler")["spec"]["template"]["spec"]
}

/// The first element of `list` whose `key` is `value`.
fn item<'a>(list: &'a mut Value, key: &str, value: &str) -> &'a mut Value {
    list.as_array_mut()
        .and_then(|items| items.iter_mut().find(|i| i[key] == value))
        .unwrap_or_else(|| panic!("no item with {key} {value} to break"))
}

fn push(list: &mut Value, value: Value) {
    match list.as_array_mut() {
        Some(items) => items.push(value),
        None => panic!("not a list to push to"),
    }
}

fn certificate<'a>(objects: &'a mut [Value], name: &str) -> &'a mut Value {
    &mut find_mut(objects, "Certificate", name)["spec"]
}

/// What is broken, how, and the words the check must refuse it with.
type Case = (&'static str, fn(&mut [Value]), &'static str);

const POD_CASES: &[Case] = &[
    (
        "a worker that mounts the cluster secret",
        |o| {
            let volume = json!({"name": "x", "secret": {"secretName": "genfleet-cluster-secret"}});
            push(&mut worker_pod(o)["volumes"], volume);
        },
        "can read genfleet-cluster-secret",
    ),
    (
        "a worker that reads the admin key into its environment",
        |o| {
            let from = json!({"name": "K", "valueFrom": {"secretKeyRef":
                {"name": "genfleet-admin-key", "key": "admin-key"}}});
            push(&mut worker_pod(o)["containers"][0]["env"], from);
        },
        "can read genfleet-admin-key",
    ),
    (
        "a worker without the worker key",
        |o| {
            let pod = worker_pod(o);
            if let Some(volumes) = pod["volumes"].as_array_mut() {
                volumes.retain(|v| v["secret"]["secretName"] != "genfleet-worker-key");
            }
        },
        "runs a worker without genfleet-worker-key",
    ),
    (
        "the worker key's path beside its file",
        |o| {
            let env = &mut worker_pod(o)["containers"][0]["env"];
            item(env, "name", "GENFLEET_WORKER_KEY_FILE")["value"] =
                json!("/etc/genfleet/worker/key");
        },
        "is not the file of genfleet-worker-key's key worker-key",
    ),
    (
        "the cluster secret readable by every user",
        |o| {
            let volume = item(&mut scheduler_pod(o)["volumes"], "name", "cluster-secret");
            volume["secret"]["defaultMode"] = json!(0o444);
        },
        "genfleet-cluster-secret readable by others",
    ),
    (
        "the cluster secret optional",
        |o| {
            let volume = item(&mut scheduler_pod(o)["volumes"], "name", "cluster-secret");
            volume["secret"]["optional"] = json!(true);
        },
        "genfleet-cluster-secret optional",
    ),
    (
        "a scheduler without GENFLEET_CLUSTER_SECRET_FILE",
        |o| {
            let env = &mut scheduler_pod(o)["containers"][0]["env"];
            if let Some(env) = env.as_array_mut() {
                env.retain(|e| e["name"] != "GENFLEET_CLUSTER_SECRET_FILE");
            }
        },
        "no env GENFLEET_CLUSTER_SECRET_FILE",
    ),
];

const CERT_CASES: &[Case] = &[
    (
        "a worker certificate that names a replica",
        |o| certificate(o, "genfleet-worker-tls")["uris"] = json!(["spiffe://genfleet/replica/*"]),
        "the URI SAN names the role",
    ),
    (
        "`uri` for `uris`",
        |o| {
            let spec = certificate(o, "genfleet-scheduler-tls");
            let uris = spec["uris"].take();
            spec["uri"] = uris;
            if let Some(spec) = spec.as_object_mut() {
                spec.remove("uris");
            }
        },
        "fields cert-manager.io/v1 does not have: [\"uri\"]",
    ),
    (
        "a worker certificate that can serve",
        |o| {
            push(
                &mut certificate(o, "genfleet-worker-tls")["usages"],
                json!("server auth"),
            )
        },
        "\"server auth\" in",
    ),
    (
        "a scheduler certificate without the replicas' names",
        |o| {
            let names = &mut certificate(o, "genfleet-scheduler-tls")["dnsNames"];
            if let Some(names) = names.as_array_mut() {
                names.retain(|n| !n.as_str().unwrap_or("").starts_with('*'));
            }
        },
        "the pods dial *.genfleet-scheduler-peers.genfleet.svc.cluster.local",
    ),
    (
        "the roles' certificates from two issuers",
        |o| {
            certificate(o, "genfleet-worker-tls")["issuerRef"]["name"] =
                json!("genfleet-selfsigned")
        },
        "from one Issuer",
    ),
];

/// Runs `check` on a copy of `objects` broken by each case; each must fail
/// naming its reason.
fn refuses(objects: &[Value], cases: &[Case], check: impl Fn(&[Value])) {
    // Unbroken, the check passes: a failure below is the case's doing.
    check(objects);
    for (name, breakage, reason) in cases {
        let mut broken = objects.to_vec();
        breakage(&mut broken);
        let outcome = catch_unwind(AssertUnwindSafe(|| check(&broken)));
        let message = match outcome {
            Ok(()) => panic!("{name}: passed the checks"),
            Err(payload) => payload
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| payload.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_default(),
        };
        assert!(
            message.contains(reason),
            "{name}: refused, but not for {reason:?}: {message}"
        );
    }
}

#[test]
fn the_checks_refuse_manifests_known_to_be_wrong() {
    let Some(kubectl) = kubectl() else { return };
    let pods = overlay_objects(&kubectl, "nvidia");
    refuses(pods, POD_CASES, |o| {
        assert_secret_holders(o, "broken");
        assert_scheduler(o, "broken");
        assert_worker(o, &NVIDIA);
    });
    let resources = [
        "deploy/overlays/nvidia",
        "deploy/components/tls/cert-manager",
    ];
    let tls = documents(&render_own(
        &kubectl,
        &resources,
        &["deploy/components/tls"],
    ));
    refuses(&tls, CERT_CASES, assert_cert_manager);
}
