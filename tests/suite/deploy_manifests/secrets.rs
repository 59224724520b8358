//! Which pods hold which Secrets, and how: the credentials reach only the
//! processes that need them, as files the container's user can read and
//! nobody else.

use std::collections::BTreeSet;

use serde_json::Value;

use super::objects::{env, mount_path, strings};

/// A Secret's key mounted as a file whose path a container reads from env.
pub struct SecretFile {
    pub env: &'static str,
    pub secret: &'static str,
    pub key: &'static str,
}

pub const ADMIN_KEY: SecretFile = SecretFile {
    env: "GENFLEET_ADMIN_KEY_FILE",
    secret: "genfleet-admin-key",
    key: "admin-key",
};

/// Lets its holder mint replica and worker credentials: schedulers only.
pub const CLUSTER_SECRET: SecretFile = SecretFile {
    env: "GENFLEET_CLUSTER_SECRET_FILE",
    secret: "genfleet-cluster-secret",
    key: "cluster-secret",
};

pub const WORKER_KEY: SecretFile = SecretFile {
    env: "GENFLEET_WORKER_KEY_FILE",
    secret: "genfleet-worker-key",
    key: "worker-key",
};

/// The cert-manager example's CA (its key): no pod may mount it.
pub const CA_SECRET: &str = "genfleet-ca";

/// The Secret volume of `secret` in `pod`: not optional, and its files
/// (root's, group fsGroup) readable by the group and by nobody else.
/// Returns the volume and its file mode.
fn secret_volume<'a>(pod: &'a Value, secret: &str, what: &str) -> (&'a Value, u64) {
    let volume = pod["volumes"]
        .as_array()
        .and_then(|vs| vs.iter().find(|v| v["secret"]["secretName"] == secret))
        .unwrap_or_else(|| panic!("{what}: no volume of Secret {secret}"));
    assert_ne!(
        volume["secret"]["optional"], true,
        "{what}: {secret} optional"
    );
    // The kubelet's default for Secret volumes.
    let mode = volume["secret"]["defaultMode"].as_u64().unwrap_or(0o644);
    // Secret files belong to root: uid 65532 reads them only through the
    // pod's fsGroup, so the group needs read and the pod an fsGroup.
    assert!(
        pod["securityContext"]["fsGroup"].is_u64(),
        "{what}: no fsGroup, so {secret}'s files are root's alone"
    );
    assert!(
        mode & 0o040 != 0,
        "{what}: {secret} unreadable by fsGroup ({mode:o})"
    );
    assert_eq!(
        mode & 0o007,
        0,
        "{what}: {secret} readable by others ({mode:o})"
    );
    (volume, mode)
}

/// Where container `c` mounts `volume`: read-only, the whole volume (a
/// subPath mount would never see the Secret change).
fn secret_mount<'a>(c: &'a Value, volume: &Value, secret: &str, what: &str) -> &'a str {
    let mount = mount_path(c, volume["name"].as_str().unwrap_or(""), what);
    assert_eq!(mount["readOnly"], true, "{what}: {secret} mounted writable");
    assert!(
        mount["subPath"].is_null() && mount["subPathExpr"].is_null(),
        "{what}: {secret} mounted with a subPath"
    );
    let at = mount["mountPath"].as_str().unwrap_or("");
    assert!(!at.is_empty(), "{what}: {secret} mounted nowhere");
    at.trim_end_matches('/')
}

/// Env `name` of container `c` is the directory where Secret `secret` is
/// mounted (read-only, not optional, readable by the pod's group only).
pub fn assert_secret_dir(pod: &Value, c: &Value, name: &str, secret: &str, what: &str) {
    let path = env(c, name, what)["value"].as_str().unwrap_or("");
    let (volume, _) = secret_volume(pod, secret, what);
    let at = secret_mount(c, volume, secret, what);
    assert_eq!(
        path.trim_end_matches('/'),
        at,
        "{what}: {name}={path} is not the mount of {secret}"
    );
}

/// Env `file.env` of container `c` names the file that holds key
/// `file.key` of Secret `file.secret`, as the kubelet lays it out.
pub fn assert_secret_file(pod: &Value, c: &Value, file: &SecretFile, what: &str) {
    let SecretFile {
        env: name,
        secret,
        key,
    } = *file;
    let path = env(c, name, what)["value"].as_str().unwrap_or("");
    let (volume, mode) = secret_volume(pod, secret, what);
    // With `items`, only the listed keys are there, under their own paths
    // and perhaps modes; without, every key under its own name.
    let (file_name, file_mode) = match volume["secret"]["items"].as_array() {
        Some(items) => {
            let item = items
                .iter()
                .find(|i| i["key"] == key)
                .unwrap_or_else(|| panic!("{what}: {secret}'s items leave out {key}"));
            let mode = item["mode"].as_u64().unwrap_or(mode);
            (item["path"].as_str().unwrap_or(""), mode)
        }
        None => (key, mode),
    };
    assert!(
        file_mode & 0o040 != 0 && file_mode & 0o007 == 0,
        "{what}: {secret}/{key} has mode {file_mode:o}: the group reads, others nothing"
    );
    let at = secret_mount(c, volume, secret, what);
    assert_eq!(
        path,
        format!("{at}/{file_name}"),
        "{what}: {name} is not the file of {secret}'s key {key}"
    );
}

/// The pod specs of every workload among `objects`: (kind, name, spec).
fn pod_specs(objects: &[Value]) -> Vec<(&str, &str, &Value)> {
    objects
        .iter()
        .filter_map(|o| {
            let kind = o["kind"].as_str()?;
            let spec = match kind {
                "Pod" => &o["spec"],
                "CronJob" => &o["spec"]["jobTemplate"]["spec"]["template"]["spec"],
                _ => &o["spec"]["template"]["spec"],
            };
            let name = o["metadata"]["name"].as_str().unwrap_or("");
            spec.is_object().then_some((kind, name, spec))
        })
        .collect()
}

/// Every Secret a pod can read: volumes (plain and projected), and the
/// env and envFrom of every container.
fn secrets_read(pod: &Value) -> BTreeSet<&str> {
    let mut names = BTreeSet::new();
    for v in pod["volumes"].as_array().into_iter().flatten() {
        names.extend(v["secret"]["secretName"].as_str());
        for source in v["projected"]["sources"].as_array().into_iter().flatten() {
            names.extend(source["secret"]["name"].as_str());
        }
    }
    let containers = ["containers", "initContainers", "ephemeralContainers"]
        .into_iter()
        .flat_map(|k| pod[k].as_array().into_iter().flatten());
    for c in containers {
        for e in c["env"].as_array().into_iter().flatten() {
            names.extend(e["valueFrom"]["secretKeyRef"]["name"].as_str());
        }
        for e in c["envFrom"].as_array().into_iter().flatten() {
            names.extend(e["secretRef"]["name"].as_str());
        }
    }
    names
}

/// `pod` can read none of `secrets`.
pub fn assert_reads_none(pod: &Value, secrets: &[&str], what: &str) {
    let read = secrets_read(pod);
    for secret in secrets {
        assert!(!read.contains(secret), "{what}: can read {secret}");
    }
}

/// Across every workload rendered: the admin key and the cluster secret
/// reach the scheduler replicas only, the CA's key no pod at all, and every
/// pod that runs a worker holds the worker key.
pub fn assert_secret_holders(objects: &[Value], what: &str) {
    for (kind, name, pod) in pod_specs(objects) {
        let workload = format!("{what}: {kind} {name}");
        let read = secrets_read(pod);
        if (kind, name) != ("StatefulSet", "genfleet-scheduler") {
            assert_reads_none(pod, &[ADMIN_KEY.secret, CLUSTER_SECRET.secret], &workload);
        }
        assert_reads_none(pod, &[CA_SECRET], &workload);
        let runs_worker = pod["containers"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|c| strings(&c["args"]).first() == Some(&"worker"));
        assert!(
            !runs_worker || read.contains(WORKER_KEY.secret),
            "{workload}: runs a worker without {}",
            WORKER_KEY.secret
        );
    }
}
