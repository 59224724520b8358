//! Which worker DaemonSet lands on which GPU node: the node label sets of
//! the ways clusters get their GPUs (NVIDIA's GPU Operator, the device
//! plugin with GPU feature discovery, node feature discovery alone, GKE,
//! EKS with Karpenter or Auto Mode, AKS; AMD's node labeller and GPU
//! Operator), matched against the rendered DaemonSets' required node
//! affinity as the Kubernetes scheduler matches it. Each GPU node gets
//! exactly one worker, asking for exactly the node's GPUs; other nodes none.

use serde_json::Value;

use super::objects::{container, gpu_requests, requirement_holds, worker_daemonsets, AMD, NVIDIA};
use super::tools::kubectl;
use super::{both_vendors_objects, overlay_objects};

/// A node as its labels describe it, and the worker it should get.
struct Node {
    what: &'static str,
    labels: &'static [(&'static str, &'static str)],
    /// (vendor overlay, GPUs the worker asks for); None: no worker.
    worker: Option<(&'static str, u64)>,
}

const NODES: &[Node] = &[
    Node {
        what: "NVIDIA GPU Operator (GFD and NFD)",
        labels: &[
            ("nvidia.com/gpu.present", "true"),
            ("nvidia.com/gpu.count", "8"),
            ("nvidia.com/gpu.product", "NVIDIA-H100-80GB-HBM3"),
            ("feature.node.kubernetes.io/pci-10de.present", "true"),
        ],
        worker: Some(("nvidia", 8)),
    },
    Node {
        what: "device plugin with GPU feature discovery",
        labels: &[
            ("nvidia.com/gpu.count", "4"),
            ("nvidia.com/gpu.product", "NVIDIA-L4"),
            ("feature.node.kubernetes.io/pci-10de.present", "true"),
        ],
        worker: Some(("nvidia", 4)),
    },
    Node {
        what: "node feature discovery alone, counted by hand",
        labels: &[
            ("feature.node.kubernetes.io/pci-10de.present", "true"),
            ("genfleet.dev/gpu-count", "2"),
        ],
        worker: Some(("nvidia", 2)),
    },
    Node {
        what: "GKE GPU node pool",
        labels: &[
            ("cloud.google.com/gke-accelerator", "nvidia-h100-80gb"),
            ("cloud.google.com/gke-accelerator-count", "8"),
            ("cloud.google.com/gke-nodepool", "h100"),
        ],
        worker: Some(("nvidia", 8)),
    },
    Node {
        what: "EKS node from Karpenter",
        labels: &[
            ("karpenter.k8s.aws/instance-gpu-manufacturer", "nvidia"),
            ("karpenter.k8s.aws/instance-gpu-count", "1"),
            ("karpenter.k8s.aws/instance-gpu-name", "l4"),
        ],
        worker: Some(("nvidia", 1)),
    },
    Node {
        what: "EKS Auto Mode node",
        labels: &[
            ("eks.amazonaws.com/instance-gpu-manufacturer", "nvidia"),
            ("eks.amazonaws.com/instance-gpu-count", "4"),
        ],
        worker: Some(("nvidia", 4)),
    },
    Node {
        what: "AKS GPU node pool, counted by hand",
        labels: &[
            ("kubernetes.azure.com/accelerator", "nvidia"),
            ("genfleet.dev/gpu-count", "1"),
        ],
        worker: Some(("nvidia", 1)),
    },
    Node {
        what: "AMD node labeller",
        labels: &[
            ("amd.com/gpu.family", "AI"),
            ("amd.com/gpu.device-id", "74a1"),
        ],
        worker: Some(("amd", 0)),
    },
    Node {
        what: "AMD GPU Operator's discovery rule",
        labels: &[("feature.node.kubernetes.io/amd-gpu", "true")],
        worker: Some(("amd", 0)),
    },
    Node {
        what: "EKS node from Karpenter with AMD GPUs",
        labels: &[
            ("karpenter.k8s.aws/instance-gpu-manufacturer", "amd"),
            ("karpenter.k8s.aws/instance-gpu-count", "1"),
        ],
        worker: Some(("amd", 0)),
    },
    Node {
        what: "CPU node",
        labels: &[
            ("kubernetes.io/os", "linux"),
            ("node.kubernetes.io/instance-type", "m7i.4xlarge"),
        ],
        worker: None,
    },
    Node {
        what: "GKE TPU node pool (its count label counts TPU chips)",
        labels: &[
            (
                "cloud.google.com/gke-tpu-accelerator",
                "tpu-v5-lite-podslice",
            ),
            ("cloud.google.com/gke-accelerator-count", "4"),
        ],
        worker: None,
    },
    Node {
        what: "NFD names NVIDIA but nothing counts its GPUs",
        labels: &[("feature.node.kubernetes.io/pci-10de.present", "true")],
        worker: None,
    },
    Node {
        what: "a GPU count with no DaemonSet of its size",
        labels: &[("nvidia.com/gpu.count", "3")],
        worker: None,
    },
];

/// Whether a node selector requirement holds for a node's `labels`, as the
/// Kubernetes scheduler decides it.
fn holds(expression: &Value, labels: &[(&str, &str)]) -> bool {
    requirement_holds(expression, |key| {
        labels.iter().find(|(k, _)| *k == key).map(|(_, v)| *v)
    })
}

/// Whether a DaemonSet's pods may run on a node with `labels`: its
/// required node affinity (terms ORed, expressions ANDed) and nodeSelector.
fn lands_on(ds: &Value, labels: &[(&str, &str)]) -> bool {
    let pod = &ds["spec"]["template"]["spec"];
    let selector_ok = pod["nodeSelector"]
        .as_object()
        .into_iter()
        .flatten()
        .all(|(k, v)| labels.iter().any(|(lk, lv)| lk == k && v == lv));
    let terms = &pod["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]
        ["nodeSelectorTerms"];
    let affinity_ok = match terms.as_array() {
        None => true,
        Some(terms) => terms.iter().any(|t| {
            t["matchExpressions"]
                .as_array()
                .is_some_and(|es| !es.is_empty() && es.iter().all(|e| holds(e, labels)))
        }),
    };
    selector_ok && affinity_ok
}

fn assert_nodes_get_their_workers(objects: &[Value], vendors: &[&str], what: &str) {
    let workers: Vec<&Value> = [&NVIDIA, &AMD]
        .into_iter()
        .flat_map(|v| worker_daemonsets(objects, v))
        .collect();
    for node in NODES {
        let landing: Vec<&Value> = workers
            .iter()
            .copied()
            .filter(|ds| lands_on(ds, node.labels))
            .collect();
        let names: Vec<&str> = landing
            .iter()
            .map(|ds| ds["metadata"]["name"].as_str().unwrap_or(""))
            .collect();
        match node.worker.filter(|(vendor, _)| vendors.contains(vendor)) {
            None => assert!(
                names.is_empty(),
                "{what}: a {} gets workers {names:?}",
                node.what
            ),
            Some((vendor, gpus)) => {
                assert_eq!(
                    names.len(),
                    1,
                    "{what}: a {} must get exactly one worker, gets {names:?}",
                    node.what
                );
                let ds = landing[0];
                assert_eq!(
                    ds["metadata"]["labels"]["genfleet.dev/gpu-vendor"], vendor,
                    "{what}: a {} gets {names:?}",
                    node.what
                );
                let worker = container(&ds["spec"]["template"]["spec"], "worker", names[0]);
                let asked: u64 = gpu_requests(worker).iter().map(|(_, n)| n).sum();
                assert_eq!(
                    asked, gpus,
                    "{what}: the worker on a {} ({}) must ask for the node's {gpus} GPUs",
                    node.what, names[0]
                );
            }
        }
    }
}

#[test]
fn every_gpu_node_label_set_gets_one_worker_sized_to_the_node() {
    let Some(kubectl) = kubectl() else { return };
    for vendor in ["nvidia", "amd"] {
        let objects = overlay_objects(&kubectl, vendor);
        assert_nodes_get_their_workers(objects, &[vendor], &format!("overlays/{vendor}"));
    }
    let objects = both_vendors_objects(&kubectl);
    assert_nodes_get_their_workers(objects, &["nvidia", "amd"], "base + both workers");
}

/// The matcher itself, on the operators the label sets above do not use.
#[test]
fn node_selector_requirements_hold_as_kubernetes_decides() {
    let labels = [("gpus", "8"), ("zone", "a")];
    let e = |op: &str, key: &str, values: &[&str]| serde_json::json!({"key": key, "operator": op, "values": values});
    assert!(holds(&e("In", "gpus", &["4", "8"]), &labels));
    assert!(!holds(&e("In", "gpus", &["4"]), &labels));
    assert!(holds(&e("NotIn", "zone", &["b"]), &labels));
    assert!(holds(&e("NotIn", "missing", &["b"]), &labels));
    assert!(!holds(&e("DoesNotExist", "zone", &[]), &labels));
    assert!(holds(&e("Gt", "gpus", &["7"]), &labels));
    assert!(!holds(&e("Gt", "gpus", &["8"]), &labels));
    assert!(holds(&e("Lt", "gpus", &["9"]), &labels));
    assert!(!holds(&e("Lt", "missing", &["9"]), &labels));
}
