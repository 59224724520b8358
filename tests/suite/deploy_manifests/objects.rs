//! What the rendered objects must hold for the scheduler and the workers
//! to run as the code expects.

use std::collections::BTreeSet;

use genfleet_proto as pb;
use serde_json::Value;
use tonic::server::NamedService;

use super::secrets::{
    assert_reads_none, assert_secret_file, ADMIN_KEY, CLUSTER_SECRET, WORKER_KEY,
};

/// What the scheduler's ClusterRole must grant, and nothing more
/// (group, resource, verb); the contract in deploy/base/rbac.yaml.
const SCHEDULER_RIGHTS: &[(&str, &str, &[&str])] = &[
    ("", "nodes", &["list", "watch"]),
    ("genfleet.dev", "genqueues", &["list", "watch", "patch"]),
    ("genfleet.dev", "genqueues/status", &["patch"]),
    ("events.k8s.io", "events", &["create", "patch"]),
];
/// A GPU vendor's overlay and what its worker DaemonSets must ask for.
pub struct Vendor {
    pub overlay: &'static str,
    /// The device plugin's resource (and the taint key of GPU node pools).
    pub gpu_resource: &'static str,
    /// The image its workers run: the CUDA build asks for the node's GPUs,
    /// the CPU build never does.
    pub image: &'static str,
    /// Whether the worker reads the host's amdgpu sysfs (a hostPath).
    pub host_sysfs: bool,
}

pub const NVIDIA: Vendor = Vendor {
    overlay: "nvidia",
    gpu_resource: "nvidia.com/gpu",
    image: "genfleet/genfleet-cuda",
    host_sysfs: false,
};

pub const AMD: Vendor = Vendor {
    overlay: "amd",
    gpu_resource: "amd.com/gpu",
    image: CPU_IMAGE,
    host_sysfs: true,
};

/// The CPU build's image, which never asks for GPUs (the CUDA build's is
/// [`NVIDIA`]'s).
pub const CPU_IMAGE: &str = "genfleet/genfleet";

/// The image's name without its tag.
pub fn image_name(c: &Value) -> &str {
    let image = c["image"].as_str().unwrap_or("");
    image.rsplit_once(':').map_or(image, |(name, _)| name)
}

/// The GPUs a container asks for, by resource (limits; requests equal them).
pub fn gpu_requests(c: &Value) -> Vec<(String, u64)> {
    c["resources"]["limits"]
        .as_object()
        .into_iter()
        .flatten()
        .filter(|(k, _)| k.ends_with("/gpu"))
        .map(|(k, v)| {
            let n = v
                .as_u64()
                .or_else(|| v.as_str().and_then(|s| s.parse().ok()));
            (k.clone(), n.unwrap_or(0))
        })
        .collect()
}

/// The worker DaemonSets of `vendor`'s overlay (one per node size for
/// NVIDIA, one for AMD).
pub fn worker_daemonsets<'a>(objects: &'a [Value], vendor: &Vendor) -> Vec<&'a Value> {
    objects
        .iter()
        .filter(|o| {
            o["kind"] == "DaemonSet"
                && o["metadata"]["labels"]["genfleet.dev/gpu-vendor"] == vendor.overlay
        })
        .collect()
}

/// The object of `kind` named `name`, or a failure listing what there is.
pub fn find<'a>(objects: &'a [Value], kind: &str, name: &str) -> &'a Value {
    objects
        .iter()
        .find(|o| o["kind"] == kind && o["metadata"]["name"] == name)
        .unwrap_or_else(|| {
            let there: Vec<String> = objects
                .iter()
                .map(|o| format!("{}/{}", o["kind"], o["metadata"]["name"]))
                .collect();
            panic!("no {kind} named {name} among the rendered objects: {there:?}")
        })
}

pub fn container<'a>(pod: &'a Value, name: &str, what: &str) -> &'a Value {
    pod["containers"]
        .as_array()
        .and_then(|cs| cs.iter().find(|c| c["name"] == name))
        .unwrap_or_else(|| panic!("{what} has no container named {name}"))
}

pub fn strings(v: &Value) -> Vec<&str> {
    v.as_array()
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default()
}

/// The value of `--flag=value` in a container's args.
pub fn flag<'a>(c: &'a Value, flag: &str, what: &str) -> &'a str {
    let prefix = format!("{flag}=");
    strings(&c["args"])
        .into_iter()
        .find_map(|a| a.strip_prefix(prefix.as_str()))
        .unwrap_or_else(|| panic!("{what}: no {flag}=... in args {}", c["args"]))
}

pub fn env<'a>(c: &'a Value, name: &str, what: &str) -> &'a Value {
    c["env"]
        .as_array()
        .and_then(|e| e.iter().find(|e| e["name"] == name))
        .unwrap_or_else(|| panic!("{what}: no env {name}"))
}

fn port_number(address: &str, what: &str) -> u64 {
    address
        .rsplit_once(':')
        .and_then(|(_, p)| p.trim_end_matches('/').parse().ok())
        .unwrap_or_else(|| panic!("{what}: no port in {address:?}"))
}

fn container_port(c: &Value, name: &str, what: &str) -> u64 {
    c["ports"]
        .as_array()
        .and_then(|ps| ps.iter().find(|p| p["name"] == name))
        .and_then(|p| p["containerPort"].as_u64())
        .unwrap_or_else(|| panic!("{what}: no container port named {name}"))
}

pub fn mount_path<'a>(c: &'a Value, volume: &str, what: &str) -> &'a Value {
    c["volumeMounts"]
        .as_array()
        .and_then(|ms| ms.iter().find(|m| m["name"] == volume))
        .unwrap_or_else(|| panic!("{what}: volume {volume} is not mounted"))
}

/// Non-root uid 65532, seccomp RuntimeDefault, and per container a read-only
/// root filesystem, no privilege escalation, all capabilities dropped.
fn assert_hardened(pod: &Value, what: &str) {
    let sc = &pod["securityContext"];
    assert_eq!(sc["runAsNonRoot"], true, "{what}: runAsNonRoot");
    assert_eq!(sc["runAsUser"], 65532, "{what}: runAsUser 65532");
    assert_eq!(
        sc["seccompProfile"]["type"], "RuntimeDefault",
        "{what}: seccompProfile"
    );
    let containers = pod["containers"].as_array().into_iter().flatten();
    let inits = pod["initContainers"].as_array().into_iter().flatten();
    for c in containers.chain(inits) {
        let name = &c["name"];
        let csc = &c["securityContext"];
        assert_eq!(
            csc["readOnlyRootFilesystem"], true,
            "{what}/{name}: readOnlyRootFilesystem"
        );
        assert_eq!(
            csc["allowPrivilegeEscalation"], false,
            "{what}/{name}: allowPrivilegeEscalation"
        );
        assert_eq!(
            strings(&csc["capabilities"]["drop"]),
            ["ALL"],
            "{what}/{name}: capabilities must drop ALL"
        );
        for kind in ["requests", "limits"] {
            assert!(
                c["resources"][kind]["memory"].is_string(),
                "{what}/{name}: no memory {kind}"
            );
        }
    }
}

/// The host's sysfs, read-only, where GENFLEET_SYSFS_ROOT points the worker,
/// where it is wanted (AMD); no host path at all elsewhere.
fn assert_host_sysfs(pod: &Value, c: &Value, wanted: bool, what: &str) {
    let host_paths: Vec<&Value> = pod["volumes"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|v| v["hostPath"].is_object())
        .collect();
    if !wanted {
        assert!(host_paths.is_empty(), "{what}: host paths {host_paths:?}");
        return;
    }
    let host_sys = host_paths
        .iter()
        .find(|v| v["hostPath"]["path"] == "/sys")
        .unwrap_or_else(|| panic!("{what}: no hostPath volume of /sys"));
    let sysfs_root = env(c, "GENFLEET_SYSFS_ROOT", what)["value"]
        .as_str()
        .unwrap_or("/");
    let volume = host_sys["name"].as_str().unwrap_or("");
    let mount = mount_path(c, volume, what);
    assert_eq!(mount["readOnly"], true, "{what}: /sys must be read-only");
    assert_eq!(
        mount["mountPath"],
        format!("{}/sys", sysfs_root.trim_end_matches('/')),
        "{what}: /sys not mounted where GENFLEET_SYSFS_ROOT={sysfs_root} looks"
    );
}

/// Whether a selector's matchLabels (or a Service's selector) pick `labels`.
pub fn selects(selector: &Value, labels: &Value) -> bool {
    let map = selector.get("matchLabels").unwrap_or(selector);
    // An empty selector picks every pod: no workload here means that.
    map.as_object()
        .is_some_and(|m| !m.is_empty() && m.iter().all(|(k, v)| &labels[k] == v))
}

/// Whether one requirement of a label or node selector (`key`, `operator`,
/// `values`) holds for the labels `label` looks up, as Kubernetes decides
/// it. Only node selectors have Gt and Lt.
pub fn requirement_holds<'a>(
    expression: &Value,
    label: impl FnOnce(&str) -> Option<&'a str>,
) -> bool {
    let value = label(expression["key"].as_str().unwrap_or(""));
    let values: Vec<&str> = expression["values"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .collect();
    let number = |v: &str| v.parse::<i64>().ok();
    match expression["operator"].as_str().unwrap_or("") {
        "In" => value.is_some_and(|v| values.contains(&v)),
        "NotIn" => value.is_none_or(|v| !values.contains(&v)),
        "Exists" => value.is_some(),
        "DoesNotExist" => value.is_none(),
        "Gt" => value.and_then(number) > values.first().copied().and_then(number),
        "Lt" => match (
            value.and_then(number),
            values.first().copied().and_then(number),
        ) {
            (Some(v), Some(limit)) => v < limit,
            _ => false,
        },
        other => panic!("unknown selector operator {other:?}"),
    }
}

fn probe_path<'a>(c: &'a Value, probe: &str, what: &str) -> (&'a Value, &'a Value) {
    let get = &c[probe]["httpGet"];
    assert!(get.is_object(), "{what}: no httpGet {probe}");
    (&get["path"], &get["port"])
}

/// Liveness on /healthz and readiness on /readyz, both on the metrics port
/// (by name or number): the scheduler and the workers serve them there.
fn assert_health_probes(c: &Value, metrics: u64, what: &str) {
    for (probe, path) in [("livenessProbe", "/healthz"), ("readinessProbe", "/readyz")] {
        let (p, port) = probe_path(c, probe, what);
        assert_eq!(p, path, "{what}: {probe} path");
        assert!(
            port == "metrics" || port == metrics,
            "{what}: {probe} on {port}, not the metrics port"
        );
    }
}

/// The scheduler's probes: Kubernetes' gRPC probes against the standard
/// health service on the grpc port (liveness on the raft transport, which
/// serves with or without a quorum; readiness on the server as a whole,
/// which serves while the replica is ready); with TLS, whose grpc port a
/// kubelet gRPC probe cannot speak, the same checks over HTTP.
fn assert_scheduler_probes(c: &Value, grpc: u64, metrics: u64, what: &str) {
    let tls = c["env"]
        .as_array()
        .is_some_and(|es| es.iter().any(|e| e["name"] == "GENFLEET_TLS_DIR"));
    if tls {
        assert_health_probes(c, metrics, what);
        for probe in ["startupProbe", "livenessProbe", "readinessProbe"] {
            assert!(
                c[probe]["grpc"].is_null(),
                "{what}: {probe} is a gRPC probe on a TLS port"
            );
        }
        return;
    }
    let raft = <pb::raft_transport_server::RaftTransportServer<()> as NamedService>::NAME;
    for (probe, service) in [
        ("startupProbe", raft),
        ("livenessProbe", raft),
        ("readinessProbe", ""),
    ] {
        let p = &c[probe]["grpc"];
        assert_eq!(
            p["port"], grpc,
            "{what}: {probe} must be a gRPC probe on the grpc port"
        );
        assert_eq!(
            p["service"].as_str().unwrap_or(""),
            service,
            "{what}: {probe}'s health service"
        );
    }
}

/// The base: scheduler StatefulSet, its Services, PDB, RBAC and settings.
pub fn assert_scheduler(objects: &[Value], what: &str) {
    find(objects, "Namespace", "genfleet");
    find(
        objects,
        "CustomResourceDefinition",
        "genqueues.genfleet.dev",
    );
    find(objects, "ConfigMap", "genfleet-config")["data"]["GENFLEET_ARTIFACTS"]
        .as_str()
        .unwrap_or_else(|| panic!("{what}: genfleet-config has no GENFLEET_ARTIFACTS"));

    let sts = find(objects, "StatefulSet", "genfleet-scheduler");
    let what = &format!("{what}: StatefulSet genfleet-scheduler");
    assert_eq!(
        sts["metadata"]["namespace"], "genfleet",
        "{what}: namespace"
    );
    let spec = &sts["spec"];
    let replicas = spec["replicas"].as_u64().expect("replicas is a number");
    assert_eq!(replicas, 3, "{what}: 3 replicas");
    assert_eq!(
        spec["podManagementPolicy"], "Parallel",
        "{what}: replicas must start together (no leader, so none Ready, until a quorum runs)"
    );
    let labels = &spec["template"]["metadata"]["labels"];
    assert!(
        selects(&spec["selector"], labels),
        "{what}: selector does not pick its pods"
    );
    let pod = &spec["template"]["spec"];
    assert_hardened(pod, what);
    assert_eq!(
        pod["serviceAccountName"], "genfleet-scheduler",
        "{what}: service account"
    );
    let anti =
        &pod["affinity"]["podAntiAffinity"]["preferredDuringSchedulingIgnoredDuringExecution"];
    assert!(
        anti.as_array().is_some_and(|terms| terms.iter().any(|t| {
            t["podAffinityTerm"]["topologyKey"] == "kubernetes.io/hostname"
                && selects(&t["podAffinityTerm"]["labelSelector"], labels)
        })),
        "{what}: no preferred anti-affinity between replicas across nodes"
    );

    let c = container(pod, "scheduler", what);
    assert_eq!(
        strings(&c["args"]).first(),
        Some(&"scheduler"),
        "{what}: role"
    );
    // The leader needs up to 1.6 cores at 10,000 nodes: requested, and
    // never throttled by a CPU limit (a throttled leader misses heartbeats).
    let cpu = c["resources"]["requests"]["cpu"].as_str().unwrap_or("");
    assert!(
        cpu.parse::<f64>().is_ok_and(|n| n >= 2.0),
        "{what}: requests {cpu:?} CPUs, not at least 2"
    );
    assert!(
        c["resources"]["limits"]["cpu"].is_null(),
        "{what}: a CPU limit throttles a busy leader"
    );
    assert!(
        spec["minReadySeconds"].as_u64().is_some_and(|s| s > 0),
        "{what}: a rolling update must wait for a restarted replica to stay Ready"
    );
    let grpc = port_number(flag(c, "--listen", what), what);
    let metrics = port_number(flag(c, "--metrics-listen", what), what);
    assert_eq!(container_port(c, "grpc", what), grpc, "{what}: grpc port");
    assert_eq!(
        container_port(c, "metrics", what),
        metrics,
        "{what}: metrics port"
    );
    assert_scheduler_probes(c, grpc, metrics, what);
    let api = port_number(flag(c, "--api-listen", what), what);
    assert_eq!(container_port(c, "api", what), api, "{what}: api port");
    let client_service = find(objects, "Service", "genfleet-scheduler");
    assert!(
        client_service["spec"]["ports"]
            .as_array()
            .is_some_and(|ps| ps.iter().any(|p| p["targetPort"] == "api")),
        "{what}: the client Service does not expose the REST API"
    );
    // The API's downloads read the store the workers write.
    assert_eq!(
        flag(c, "--artifacts", what),
        "$(GENFLEET_ARTIFACTS)",
        "{what}"
    );
    assert_eq!(
        env(c, "GENFLEET_ARTIFACTS", what)["valueFrom"]["configMapKeyRef"]["name"],
        "genfleet-config",
        "{what}: GENFLEET_ARTIFACTS"
    );
    assert_secret_file(pod, c, &ADMIN_KEY, what);
    // Replicas prove their raft id with a credential derived from it.
    assert_secret_file(pod, c, &CLUSTER_SECRET, what);
    assert_eq!(
        env(c, "POD_NAME", what)["valueFrom"]["fieldRef"]["fieldPath"],
        "metadata.name",
        "{what}: POD_NAME from the downward API (raft id = ordinal + 1)"
    );
    let peers = env(c, "GENFLEET_PEER_SERVICE", what)["value"].clone();
    assert_eq!(
        peers, spec["serviceName"],
        "{what}: GENFLEET_PEER_SERVICE must be the StatefulSet's serviceName"
    );
    assert_eq!(
        env(c, "GENFLEET_INITIAL_REPLICAS", what)["value"],
        replicas.to_string(),
        "{what}: GENFLEET_INITIAL_REPLICAS"
    );

    // The raft log on a volume per replica, where --data-dir points.
    let claims = spec["volumeClaimTemplates"].as_array();
    let claim = claims
        .and_then(|cs| cs.iter().find(|t| t["metadata"]["name"] == "data"))
        .unwrap_or_else(|| panic!("{what}: no volumeClaimTemplate named data"));
    assert!(
        claim["spec"]["resources"]["requests"]["storage"].is_string(),
        "{what}: the data claim requests no storage"
    );
    let data_mount = mount_path(c, "data", what)["mountPath"]
        .as_str()
        .unwrap_or("");
    let data_dir = flag(c, "--data-dir", what);
    assert!(
        !data_mount.is_empty() && data_dir.starts_with(data_mount),
        "{what}: --data-dir {data_dir} is not on the data volume ({data_mount})"
    );

    let peers_name = peers.as_str().unwrap_or("");
    let headless = find(objects, "Service", peers_name);
    assert_eq!(
        headless["spec"]["clusterIP"], "None",
        "{peers_name}: headless"
    );
    assert_eq!(
        headless["spec"]["publishNotReadyAddresses"], true,
        "{peers_name}: replicas must reach each other before any is Ready"
    );
    let client = find(objects, "Service", "genfleet-scheduler");
    for svc in [headless, client] {
        assert!(
            selects(&svc["spec"]["selector"], labels),
            "Service {}: selector does not pick the scheduler pods",
            svc["metadata"]["name"]
        );
    }
    let client_ports: BTreeSet<(String, u64)> = client["spec"]["ports"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|p| {
            let name = p["name"].as_str().unwrap_or("").to_string();
            (name, p["port"].as_u64().unwrap_or(0))
        })
        .collect();
    for port in [("grpc".to_string(), grpc), ("metrics".to_string(), metrics)] {
        assert!(
            client_ports.contains(&port),
            "Service genfleet-scheduler: no port {port:?} in {client_ports:?}"
        );
    }

    let pdb = find(objects, "PodDisruptionBudget", "genfleet-scheduler");
    assert_eq!(
        pdb["spec"]["minAvailable"],
        replicas / 2 + 1,
        "PodDisruptionBudget: minAvailable must keep a raft quorum"
    );
    assert!(
        selects(&pdb["spec"]["selector"], labels),
        "PodDisruptionBudget: selector does not pick the scheduler pods"
    );

    assert_rbac(objects);
}

fn assert_rbac(objects: &[Value]) {
    let role = find(objects, "ClusterRole", "genfleet-scheduler");
    let mut granted = BTreeSet::new();
    for rule in role["rules"].as_array().into_iter().flatten() {
        for group in strings(&rule["apiGroups"]) {
            for resource in strings(&rule["resources"]) {
                for verb in strings(&rule["verbs"]) {
                    granted.insert((group.to_string(), resource.to_string(), verb.to_string()));
                }
            }
        }
    }
    let wanted: BTreeSet<_> = SCHEDULER_RIGHTS
        .iter()
        .flat_map(|(group, resource, verbs)| {
            verbs
                .iter()
                .map(move |v| (group.to_string(), resource.to_string(), v.to_string()))
        })
        .collect();
    let extra: Vec<_> = granted.difference(&wanted).collect();
    let missing: Vec<_> = wanted.difference(&granted).collect();
    assert!(
        extra.is_empty() && missing.is_empty(),
        "ClusterRole genfleet-scheduler: rights beyond what the code uses {extra:?}, \
         rights it needs but lacks {missing:?}"
    );
    let binding = find(objects, "ClusterRoleBinding", "genfleet-scheduler");
    assert_eq!(
        binding["roleRef"]["name"], "genfleet-scheduler",
        "binding's role"
    );
    let subjects = binding["subjects"].as_array();
    assert!(
        subjects.is_some_and(|s| s.iter().any(|s| s["kind"] == "ServiceAccount"
            && s["name"] == "genfleet-scheduler"
            && s["namespace"] == "genfleet")),
        "ClusterRoleBinding genfleet-scheduler does not bind the scheduler's ServiceAccount"
    );
    find(objects, "ServiceAccount", "genfleet-scheduler");
    assert_eq!(
        find(objects, "ServiceAccount", "genfleet-worker")["automountServiceAccountToken"],
        false,
        "ServiceAccount genfleet-worker: workers need no API token"
    );
}

/// A vendor's worker DaemonSet.
pub fn assert_worker(objects: &[Value], vendor: &Vendor) {
    let daemonsets = worker_daemonsets(objects, vendor);
    assert!(
        !daemonsets.is_empty(),
        "overlays/{}: no worker DaemonSet",
        vendor.overlay
    );
    for ds in daemonsets {
        assert_worker_daemonset(objects, ds, vendor);
    }
}

fn assert_worker_daemonset(objects: &[Value], ds: &Value, vendor: &Vendor) {
    let name = ds["metadata"]["name"].as_str().unwrap_or("");
    let what = &format!("DaemonSet {name}");
    let labels = &ds["spec"]["template"]["metadata"]["labels"];
    assert!(
        selects(&ds["spec"]["selector"], labels),
        "{what}: selector does not pick its pods"
    );
    assert_eq!(
        labels["app.kubernetes.io/component"], "worker",
        "{what}: labels"
    );
    // Rolling updates scale with the fleet: a share of the nodes at a time.
    let unavailable = &ds["spec"]["updateStrategy"]["rollingUpdate"]["maxUnavailable"];
    assert!(
        unavailable.as_str().is_some_and(|s| s.ends_with('%')),
        "{what}: maxUnavailable {unavailable} is not a percentage"
    );
    assert!(
        ds["spec"]["minReadySeconds"]
            .as_u64()
            .is_some_and(|s| s > 0),
        "{what}: no minReadySeconds"
    );
    let pod = &ds["spec"]["template"]["spec"];
    assert_hardened(pod, what);
    assert_eq!(
        pod["serviceAccountName"], "genfleet-worker",
        "{what}: account"
    );
    assert_eq!(
        pod["automountServiceAccountToken"], false,
        "{what}: no API token"
    );
    let tolerations = pod["tolerations"].as_array();
    assert!(
        tolerations.is_some_and(|ts| ts.iter().any(|t| t["key"] == vendor.gpu_resource)),
        "{what}: no toleration for the {} taint",
        vendor.gpu_resource
    );

    let c = container(pod, "worker", what);
    assert_eq!(strings(&c["args"]).first(), Some(&"worker"), "{what}: role");
    assert_eq!(image_name(c), vendor.image, "{what}: image");
    // The CUDA build takes all of its node's GPUs (as many as the
    // DaemonSet's size label says; the node tests check the size is the
    // node's); the CPU build takes none.
    let gpus = gpu_requests(c);
    if vendor.image == CPU_IMAGE {
        assert!(
            gpus.is_empty(),
            "{what}: the CPU image asks for GPUs {gpus:?}"
        );
    } else {
        let size = labels["genfleet.dev/gpus"]
            .as_str()
            .and_then(|s| s.parse::<u64>().ok())
            .unwrap_or_else(|| panic!("{what}: no genfleet.dev/gpus size label"));
        assert_eq!(
            gpus,
            [(vendor.gpu_resource.to_string(), size)],
            "{what}: must ask for its size's {size} GPUs"
        );
    }
    assert_eq!(
        env(c, "GENFLEET_NODE", what)["valueFrom"]["fieldRef"]["fieldPath"],
        "spec.nodeName",
        "{what}: the genfleet node name must be the Kubernetes Node name"
    );
    // A key for the nodes its pattern matches; never what could mint keys
    // or administer the cluster.
    assert_secret_file(pod, c, &WORKER_KEY, what);
    assert_reads_none(pod, &[CLUSTER_SECRET.secret, ADMIN_KEY.secret], what);

    // The scheduler it dials is the client Service, on its grpc port, by
    // its short name: it resolves in whatever namespace the pods run in.
    let scheduler = flag(c, "--scheduler", what);
    let client = find(objects, "Service", "genfleet-scheduler");
    let grpc = client["spec"]["ports"]
        .as_array()
        .and_then(|ps| ps.iter().find(|p| p["name"] == "grpc"))
        .and_then(|p| p["port"].as_u64());
    assert_eq!(
        scheduler,
        format!("http://genfleet-scheduler:{}", grpc.unwrap_or(0)),
        "{what}: --scheduler must be the client Service's grpc port"
    );
    let metrics = port_number(flag(c, "--metrics-listen", what), what);
    assert_eq!(metrics, 9091, "{what}: metrics on 9091");
    assert_eq!(container_port(c, "metrics", what), metrics, "{what}: port");
    assert_health_probes(c, metrics, what);

    // SIGTERM drains (checkpoints) within --drain-timeout; the pod must be
    // given longer than that before SIGKILL.
    let drain = flag(c, "--drain-timeout", what);
    let drain = humantime::parse_duration(drain)
        .unwrap_or_else(|e| panic!("{what}: --drain-timeout {drain}: {e}"));
    let grace = pod["terminationGracePeriodSeconds"].as_u64().unwrap_or(30);
    assert!(
        grace > drain.as_secs(),
        "{what}: terminationGracePeriodSeconds {grace} is not above --drain-timeout {drain:?}"
    );

    assert_host_sysfs(pod, c, vendor.host_sysfs, what);

    // The initContainer creates the model where the worker reads it.
    let models = flag(c, "--models", what);
    let init = pod["initContainers"]
        .as_array()
        .and_then(|cs| cs.first())
        .unwrap_or_else(|| panic!("{what}: no initContainer for the model"));
    assert_eq!(
        strings(&init["args"]).get(..2),
        Some(&["model", "init"][..]),
        "{what}: the initContainer must run `genfleet model init`"
    );
    assert_eq!(flag(init, "--dir", what), models, "{what}: model directory");
    let volume_at = |c: &Value, path: &str| {
        c["volumeMounts"]
            .as_array()
            .and_then(|ms| ms.iter().find(|m| m["mountPath"] == path))
            .map(|m| m["name"].clone())
    };
    let shared = volume_at(init, models);
    assert!(
        shared.is_some() && shared == volume_at(c, models),
        "{what}: the initContainer and the worker do not share the volume at {models}"
    );

    // The artifact store comes from the settings (and optional credentials).
    assert_eq!(
        flag(c, "--artifacts", what),
        "$(GENFLEET_ARTIFACTS)",
        "{what}: --artifacts from genfleet-config"
    );
    let from = c["envFrom"].as_array();
    assert!(
        from.is_some_and(|f| f
            .iter()
            .any(|e| e["configMapRef"]["name"] == "genfleet-config")),
        "{what}: the store's settings (genfleet-config) are not in the environment"
    );
    assert!(
        from.is_some_and(|f| f
            .iter()
            .any(|e| e["secretRef"].is_object() && e["secretRef"]["optional"] == true)),
        "{what}: no optional Secret for the store's credentials"
    );
}
