//! The node watcher: Kubernetes' view of the nodes, mirrored into genfleet
//! by the leader.
//!
//! - `kubectl cordon` (spec.unschedulable), and the taints the cluster
//!   autoscaler and Karpenter put on a node they are about to remove, cordon
//!   the genfleet node of the same name and checkpoint its running jobs back
//!   to the queue (preemption by checkpoint): `kubectl drain` evicts every
//!   pod but the DaemonSets', so the worker itself would run on until the
//!   VM goes. `kubectl uncordon` lifts that cordon, never an operator's
//!   `genfleet node cordon`.
//! - A Node deleted has its jobs requeued at once. A NotReady Node whose
//!   worker has no session has them requeued at once instead of after the
//!   worker grace period (Kubernetes confirms what the silence suggests);
//!   while its worker is still connected, genfleet trusts the session (a
//!   kubelet restart must not throw away running work). Once per spell.
//! - The GPU labels of NVIDIA's GPU feature discovery and AMD's node
//!   labeller are checked against what the node's worker registered; a
//!   disagreement is logged and exported, and nothing is changed for it.
//!
//! Nodes are matched by name: workers run with GENFLEET_NODE set to the
//! pod's spec.nodeName. Kubernetes nodes without a genfleet worker are
//! ignored.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use genfleet_proto as pb;
use k8s_openapi::api::core::v1::Node as KubeNode;
use kube::runtime::{watcher, WatchStreamExt};
use kube::{Api, Client, ResourceExt};

use crate::leader::Sessions;
use crate::metrics::Metrics;
use crate::raft::RaftHandle;
use crate::state::{Node, State, CORDONED_BY_KUBERNETES};

/// The state changes between Node events (a worker registers): compare
/// again this often even when Kubernetes says nothing. A pass reads the
/// state and proposes only what is out of line, so it is cheap.
const RESYNC: Duration = Duration::from_secs(2);

/// What genfleet needs to know of a Kubernetes Node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeFacts {
    pub name: String,
    pub unschedulable: bool,
    /// A taint that says the node is about to be removed, if it has one.
    pub disruption: Option<String>,
    /// The Ready condition: None when the node reports none (just created).
    pub ready: Option<bool>,
    /// GPUs as the vendors' labellers describe them.
    pub gpus: Option<LabeledGpus>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LabeledGpus {
    /// `nvidia` or `amd`.
    pub vendor: &'static str,
    /// e.g. `NVIDIA-H100-80GB-HBM3` or `AMD_Instinct_MI300X_OAM`.
    pub product: String,
    pub count: Option<u32>,
}

/// NVIDIA GPU feature discovery's labels.
const NVIDIA_PRODUCT: &str = "nvidia.com/gpu.product";
const NVIDIA_COUNT: &str = "nvidia.com/gpu.count";
/// AMD's node labeller (older releases used the beta.amd.com prefix).
const AMD_PRODUCT: [&str; 2] = ["amd.com/gpu.product-name", "beta.amd.com/gpu.product-name"];
const AMD_COUNT: [&str; 2] = ["amd.com/gpu.count", "beta.amd.com/gpu.count"];

/// Taints that announce a node's removal: the cluster autoscaler's
/// scale-down, Karpenter's disruption (consolidation, drift, expiry), and
/// the out-of-service taint of a node shut down for good.
const DISRUPTION_TAINTS: [&str; 3] = [
    "ToBeDeletedByClusterAutoscaler",
    "karpenter.sh/disrupted",
    "node.kubernetes.io/out-of-service",
];

/// Why running jobs leave a node Kubernetes is taking away: the
/// preemption's reason, shown on the jobs.
pub const NODE_LEAVING: &str = "node_leaving";
impl NodeFacts {
    /// Kubernetes is taking the node away: cordoned, or tainted for removal.
    pub fn leaving(&self) -> bool {
        self.unschedulable || self.disruption.is_some()
    }

    pub fn of(node: &KubeNode) -> Self {
        let spec = node.spec.as_ref();
        let ready = node
            .status
            .as_ref()
            .and_then(|s| s.conditions.as_ref())
            .and_then(|cs| cs.iter().find(|c| c.type_ == "Ready"))
            .map(|c| c.status == "True");
        let disruption = spec
            .and_then(|s| s.taints.as_ref())
            .and_then(|taints| {
                taints
                    .iter()
                    .find(|t| DISRUPTION_TAINTS.contains(&t.key.as_str()))
            })
            .map(|t| t.key.clone());
        Self {
            name: node.name_any(),
            unschedulable: spec.and_then(|s| s.unschedulable).unwrap_or(false),
            disruption,
            ready,
            gpus: labeled_gpus(node.labels()),
        }
    }
}

fn labeled_gpus(labels: &BTreeMap<String, String>) -> Option<LabeledGpus> {
    let first = |keys: &[&str]| keys.iter().find_map(|k| labels.get(*k)).cloned();
    let count = |keys: &[&str]| first(keys).and_then(|c| c.parse().ok());
    if let Some(product) = labels.get(NVIDIA_PRODUCT) {
        return Some(LabeledGpus {
            vendor: "nvidia",
            product: product.clone(),
            count: count(&[NVIDIA_COUNT]),
        });
    }
    first(&AMD_PRODUCT).map(|product| LabeledGpus {
        vendor: "amd",
        product,
        count: count(&AMD_COUNT),
    })
}

/// Remembers, for one leader's term of office, which NotReady spells it
/// already acted on.
#[derive(Debug, Default)]
pub struct Tracker {
    downed_not_ready: BTreeSet<String>,
}

/// The commands that bring genfleet's node in line with Kubernetes';
/// `connected`: its worker has a session with this leader; `running`: the
/// leases of the node's running jobs not yet asked to checkpoint.
pub fn decide(
    facts: &NodeFacts,
    node: &Node,
    connected: bool,
    running: &[pb::JobLease],
    tracker: &mut Tracker,
) -> Vec<pb::command::Kind> {
    let mut commands = Vec::new();
    let cordon = |cordoned| {
        pb::command::Kind::CordonNode(pb::CordonNode {
            node: node.name.clone(),
            cordoned,
            source: CORDONED_BY_KUBERNETES.into(),
        })
    };
    let leaving = facts.leaving();
    if leaving && !node.cordoned {
        commands.push(cordon(true));
    }
    if !leaving && node.cordoned && node.cordon_source == CORDONED_BY_KUBERNETES {
        commands.push(cordon(false));
    }
    // Every pass, not only at the cordon: a job the cordon raced, or one a
    // new leader finds there, is asked too. Jobs already asked are not.
    if leaving && !running.is_empty() {
        let preemptions = running
            .iter()
            .map(|lease| pb::Preemption {
                lease: Some(lease.clone()),
                reason: NODE_LEAVING.into(),
                for_job: String::new(),
            })
            .collect();
        commands.push(pb::command::Kind::PreemptJobs(pb::PreemptJobs {
            preemptions,
        }));
    }
    match facts.ready {
        Some(false) => {
            if node.up && !connected && tracker.downed_not_ready.insert(node.name.clone()) {
                commands.push(pb::command::Kind::NodeDown(pb::NodeDown {
                    node: node.name.clone(),
                    reason: "Kubernetes reports the node NotReady".into(),
                }));
            }
        }
        _ => {
            tracker.downed_not_ready.remove(&node.name);
        }
    }
    commands
}

/// Why the node's labels disagree with what its worker registered, if they do.
pub fn label_mismatch(facts: &NodeFacts, node: &Node) -> Option<String> {
    let labeled = facts.gpus.as_ref()?;
    let registered: Vec<&pb::DeviceGroup> = node
        .devices
        .iter()
        .filter(|g| g.flavor.starts_with(labeled.vendor))
        .collect();
    let flavors = || {
        node.devices
            .iter()
            .map(|g| format!("{}x{}", g.count, g.flavor))
            .collect::<Vec<_>>()
            .join(", ")
    };
    if registered.is_empty() {
        return Some(format!(
            "Kubernetes labels say {} GPUs ({}), the worker registered {}",
            labeled.vendor,
            labeled.product,
            flavors()
        ));
    }
    let product = tokens(&labeled.product);
    if let Some(group) = registered.iter().find(|g| {
        !tokens(&g.flavor)
            .iter()
            .filter(|t| t.as_str() != labeled.vendor)
            .all(|t| product.contains(t))
    }) {
        return Some(format!(
            "Kubernetes labels say {}, the worker registered {}",
            labeled.product, group.flavor
        ));
    }
    let count: u32 = registered.iter().map(|g| g.count).sum();
    match labeled.count {
        Some(labeled_count) if labeled_count != count => Some(format!(
            "Kubernetes labels say {labeled_count} GPUs, the worker registered {count}"
        )),
        _ => None,
    }
}

/// Lower-case alphanumeric words: `NVIDIA-H100-80GB-HBM3` -> nvidia, h100, 80gb, hbm3.
fn tokens(s: &str) -> BTreeSet<String> {
    s.split(|c: char| !c.is_ascii_alphanumeric())
        .filter(|t| !t.is_empty())
        .map(str::to_ascii_lowercase)
        .collect()
}

/// Brings every genfleet node in line with `nodes`; `deleted` are Nodes
/// that left Kubernetes since the last call.
pub async fn sync(
    raft: &RaftHandle,
    metrics: &Metrics,
    connected: &BTreeSet<String>,
    nodes: &BTreeMap<String, NodeFacts>,
    deleted: &[String],
    tracker: &mut Tracker,
) {
    for name in deleted {
        let _ = metrics
            .kube_node_label_mismatch
            .remove_label_values(&[name]);
    }
    let commands: Vec<pb::command::Kind> = raft.read(|state| {
        let mut commands = Vec::new();
        for facts in nodes.values() {
            let Some(node) = state.node(&facts.name) else {
                continue;
            };
            // Only a node that is leaving needs its jobs, and it names them
            // itself (the devices they hold): no scan of every job.
            let held: BTreeSet<&String> = if facts.leaving() {
                node.busy.values().collect()
            } else {
                BTreeSet::new()
            };
            let running: Vec<pb::JobLease> = held
                .into_iter()
                .filter_map(|id| state.job(id))
                .filter(|j| j.state == pb::JobState::Running && j.preempting.is_empty())
                .map(|j| pb::JobLease {
                    job_id: j.id.clone(),
                    lease_epoch: j.lease_epoch,
                })
                .collect();
            commands.extend(decide(
                facts,
                node,
                connected.contains(&node.name),
                &running,
                tracker,
            ));
            report_mismatch(metrics, facts, node);
        }
        commands.extend(deleted_nodes(state, deleted));
        commands
    });
    for command in commands {
        let what = format!("{command:?}");
        match raft
            .propose(pb::Command {
                kind: Some(command),
            })
            .await
        {
            Ok(applied) => match applied.result {
                Ok(_) => tracing::info!(command = %what, "node change mirrored from Kubernetes"),
                Err(why) => tracing::debug!(command = %what, %why, "node change refused at apply"),
            },
            Err(e) => tracing::warn!(command = %what, error = %e, "node change not proposed"),
        }
    }
}

fn deleted_nodes(state: &State, deleted: &[String]) -> Vec<pb::command::Kind> {
    deleted
        .iter()
        .filter(|name| state.node(name).is_some_and(|n| n.up))
        .map(|name| {
            pb::command::Kind::NodeDown(pb::NodeDown {
                node: name.clone(),
                reason: "the Kubernetes Node was deleted".into(),
            })
        })
        .collect()
}

fn report_mismatch(metrics: &Metrics, facts: &NodeFacts, node: &Node) {
    let gauge = metrics
        .kube_node_label_mismatch
        .with_label_values(&[&node.name]);
    match label_mismatch(facts, node) {
        Some(why) => {
            if gauge.get() == 0 {
                tracing::warn!(node = %node.name, %why, "node labels disagree with its worker");
            }
            gauge.set(1);
        }
        None => gauge.set(0),
    }
}

/// Watches Nodes and mirrors them until the stream ends or `stop` completes.
pub async fn run(
    client: Client,
    raft: RaftHandle,
    sessions: Arc<Sessions>,
    metrics: Metrics,
    stop: impl std::future::Future<Output = ()>,
) {
    let api: Api<KubeNode> = Api::all(client);
    let events = watcher(api, watcher::Config::default()).default_backoff();
    tokio::pin!(events);
    tokio::pin!(stop);
    let mut mirror = Mirror::default();
    let mut tracker = Tracker::default();
    let mut resync = tokio::time::interval(RESYNC);
    loop {
        let deleted = tokio::select! {
            _ = &mut stop => return,
            _ = resync.tick() => Vec::new(),
            event = events.next() => match event {
                None => return,
                Some(Ok(event)) => mirror.apply(event),
                Some(Err(e)) => {
                    metrics.kube_reconcile_errors.with_label_values(&["nodes"]).inc();
                    tracing::warn!(error = %e, "watching Kubernetes nodes; retrying");
                    continue;
                }
            },
        };
        if mirror.listed {
            let connected = sessions.connected();
            sync(
                &raft,
                &metrics,
                &connected,
                &mirror.nodes,
                &deleted,
                &mut tracker,
            )
            .await;
        }
    }
}

/// The Nodes as the watch stream tells them, relists included.
#[derive(Default)]
pub struct Mirror {
    pub nodes: BTreeMap<String, NodeFacts>,
    /// A relist in progress.
    relisting: Option<BTreeMap<String, NodeFacts>>,
    /// A first list has completed (before it, absence means nothing).
    pub listed: bool,
}

impl Mirror {
    /// Takes one watch event; returns the Nodes it shows were deleted.
    pub fn apply(&mut self, event: watcher::Event<KubeNode>) -> Vec<String> {
        match event {
            watcher::Event::Apply(node) => {
                let facts = NodeFacts::of(&node);
                self.nodes.insert(facts.name.clone(), facts);
                Vec::new()
            }
            watcher::Event::Delete(node) => {
                let name = node.name_any();
                self.nodes.remove(&name);
                vec![name]
            }
            watcher::Event::Init => {
                self.relisting = Some(BTreeMap::new());
                Vec::new()
            }
            watcher::Event::InitApply(node) => {
                let facts = NodeFacts::of(&node);
                self.relisting
                    .get_or_insert_with(BTreeMap::new)
                    .insert(facts.name.clone(), facts);
                Vec::new()
            }
            watcher::Event::InitDone => {
                let fresh = self.relisting.take().unwrap_or_default();
                // Deleted while the watch was down: only nodes seen before count.
                let gone = self
                    .nodes
                    .keys()
                    .filter(|name| !fresh.contains_key(*name))
                    .cloned()
                    .collect();
                self.nodes = fresh;
                self.listed = true;
                gone
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn genfleet_node(flavor: &str, count: u32, cordoned: Option<&str>) -> Node {
        Node {
            name: "n1".into(),
            instance: "i1".into(),
            devices: vec![pb::DeviceGroup {
                flavor: flavor.into(),
                count,
                memory_bytes: 0,
                free_memory_bytes: None,
                simulated: false,
            }],
            models: vec!["tiny".into()],
            up: true,
            busy: BTreeMap::new(),
            registered_at_ms: 0,
            cordoned: cordoned.is_some(),
            draining: false,
            cordon_source: cordoned.unwrap_or_default().into(),
        }
    }

    fn facts(
        unschedulable: bool,
        ready: Option<bool>,
        gpus: Option<(&'static str, &str, u32)>,
    ) -> NodeFacts {
        NodeFacts {
            name: "n1".into(),
            unschedulable,
            disruption: None,
            ready,
            gpus: gpus.map(|(vendor, product, count)| LabeledGpus {
                vendor,
                product: product.into(),
                count: Some(count),
            }),
        }
    }

    fn summary(commands: &[pb::command::Kind]) -> Vec<String> {
        commands
            .iter()
            .map(|c| match c {
                pb::command::Kind::CordonNode(c) => {
                    format!("cordon={} by {}", c.cordoned, c.source)
                }
                pb::command::Kind::NodeDown(_) => "down".into(),
                other => format!("{other:?}"),
            })
            .collect()
    }

    #[test]
    fn kubernetes_state_becomes_genfleet_commands() {
        let k8s = Some(CORDONED_BY_KUBERNETES);
        let operator = Some("");
        let cases: [(&str, NodeFacts, Node, &[&str]); 6] = [
            (
                "in line: nothing",
                facts(false, Some(true), None),
                genfleet_node("cpu", 1, None),
                &[],
            ),
            (
                "kubectl cordon",
                facts(true, Some(true), None),
                genfleet_node("cpu", 1, None),
                &["cordon=true by kubernetes"],
            ),
            (
                "kubectl uncordon of its own cordon",
                facts(false, Some(true), None),
                genfleet_node("cpu", 1, k8s),
                &["cordon=false by kubernetes"],
            ),
            (
                "an operator's cordon stays",
                facts(false, Some(true), None),
                genfleet_node("cpu", 1, operator),
                &[],
            ),
            (
                "NotReady",
                facts(false, Some(false), None),
                genfleet_node("cpu", 1, None),
                &["down"],
            ),
            (
                "no Ready condition yet",
                facts(false, None, None),
                genfleet_node("cpu", 1, None),
                &[],
            ),
        ];
        for (name, facts, node, expected) in cases {
            let got = summary(&decide(&facts, &node, false, &[], &mut Tracker::default()));
            assert_eq!(got, expected, "{name}");
        }
    }

    #[test]
    fn a_not_ready_spell_requeues_once() {
        let node = genfleet_node("cpu", 1, None);
        let mut tracker = Tracker::default();
        let not_ready = facts(false, Some(false), None);
        // A worker still connected is trusted over the kubelet.
        assert!(decide(&not_ready, &node, true, &[], &mut tracker).is_empty());
        assert_eq!(
            summary(&decide(&not_ready, &node, false, &[], &mut tracker)),
            ["down"]
        );
        // The same spell is not acted on twice.
        assert!(decide(&not_ready, &node, false, &[], &mut tracker).is_empty());
        decide(
            &facts(false, Some(true), None),
            &node,
            false,
            &[],
            &mut tracker,
        );
        assert_eq!(
            summary(&decide(&not_ready, &node, false, &[], &mut tracker)),
            ["down"],
            "a new spell"
        );
    }

    /// A Node Kubernetes is taking away (cordoned, or tainted for removal
    /// by the autoscaler or Karpenter) has its running jobs checkpointed
    /// back to the queue, each pass until they are asked; a schedulable one
    /// keeps them.
    #[test]
    fn a_node_kubernetes_takes_away_checkpoints_its_running_jobs() {
        let leases = [("j-1", 3), ("j-2", 1)].map(|(job, epoch)| pb::JobLease {
            job_id: job.into(),
            lease_epoch: epoch,
        });
        let preempted = |commands: &[pb::command::Kind]| -> Vec<(String, u64, String)> {
            commands
                .iter()
                .filter_map(|c| match c {
                    pb::command::Kind::PreemptJobs(p) => Some(p),
                    _ => None,
                })
                .flat_map(|p| &p.preemptions)
                .map(|p| {
                    let lease = p.lease.clone().unwrap_or_default();
                    (lease.job_id, lease.lease_epoch, p.reason.clone())
                })
                .collect()
        };
        let asked = vec![
            ("j-1".to_string(), 3, NODE_LEAVING.to_string()),
            ("j-2".to_string(), 1, NODE_LEAVING.to_string()),
        ];
        let cordoned = facts(true, Some(true), None);
        let mut tainted = facts(false, Some(true), None);
        tainted.disruption = Some("karpenter.sh/disrupted".into());
        for (what, facts) in [("kubectl cordon", &cordoned), ("a removal taint", &tainted)] {
            let fresh = genfleet_node("cpu", 2, None);
            let commands = decide(facts, &fresh, true, &leases, &mut Tracker::default());
            assert_eq!(
                summary(&commands)[0],
                "cordon=true by kubernetes",
                "{what}: cordons first"
            );
            assert_eq!(preempted(&commands), asked, "{what}");
            // Already cordoned: the jobs not yet asked are asked again.
            let cordoned_node = genfleet_node("cpu", 2, Some(CORDONED_BY_KUBERNETES));
            let commands = decide(
                facts,
                &cordoned_node,
                true,
                &leases[1..],
                &mut Tracker::default(),
            );
            assert_eq!(preempted(&commands), asked[1..], "{what}: a later pass");
            assert!(
                decide(facts, &cordoned_node, true, &[], &mut Tracker::default()).is_empty(),
                "{what}: nothing left to ask"
            );
        }
        let schedulable = facts(false, Some(true), None);
        let node = genfleet_node("cpu", 2, None);
        assert!(decide(&schedulable, &node, true, &leases, &mut Tracker::default()).is_empty());
    }

    /// The removal taints are read from the Node; other taints are not one.
    #[test]
    fn removal_taints_are_read_from_the_node() {
        let node_with = |key: &str| -> KubeNode {
            serde_json::from_value(serde_json::json!({
                "metadata": {"name": "n1"},
                "spec": {"taints": [{"key": key, "effect": "NoSchedule"}]}
            }))
            .expect("a Node")
        };
        for key in DISRUPTION_TAINTS {
            assert_eq!(
                NodeFacts::of(&node_with(key)).disruption.as_deref(),
                Some(key)
            );
        }
        assert_eq!(NodeFacts::of(&node_with("nvidia.com/gpu")).disruption, None);
    }

    #[test]
    fn gpu_labels_are_checked_against_the_registration() {
        let h100 = ("nvidia", "NVIDIA-H100-80GB-HBM3", 8);
        let mi300 = ("amd", "AMD_Instinct_MI300X_OAM", 8);
        let cases = [
            (
                "H100 labels, H100 worker",
                facts(false, None, Some(h100)),
                genfleet_node("nvidia-h100-80gb", 8, None),
                None,
            ),
            (
                "MI300X labels, MI300X worker",
                facts(false, None, Some(mi300)),
                genfleet_node("amd-mi300x", 8, None),
                None,
            ),
            (
                "no labels: nothing to check",
                facts(false, None, None),
                genfleet_node("cpu", 1, None),
                None,
            ),
            (
                "H100 labels, CPU worker",
                facts(false, None, Some(h100)),
                genfleet_node("cpu", 1, None),
                Some("the worker registered 1xcpu"),
            ),
            (
                "H100 labels, L4 worker",
                facts(false, None, Some(h100)),
                genfleet_node("nvidia-l4", 8, None),
                Some("the worker registered nvidia-l4"),
            ),
            (
                "8 labelled, 4 registered",
                facts(false, None, Some(h100)),
                genfleet_node("nvidia-h100-80gb", 4, None),
                Some("say 8 GPUs, the worker registered 4"),
            ),
        ];
        for (name, facts, node, expected) in cases {
            let got = label_mismatch(&facts, &node);
            match expected {
                None => assert_eq!(got, None, "{name}"),
                Some(part) => assert!(
                    got.as_deref().is_some_and(|g| g.contains(part)),
                    "{name}: {got:?}"
                ),
            }
        }
    }

    #[test]
    fn labels_of_both_vendors_are_read() {
        let labels = |pairs: &[(&str, &str)]| -> BTreeMap<String, String> {
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect()
        };
        let nvidia = labeled_gpus(&labels(&[
            (NVIDIA_PRODUCT, "NVIDIA-L4"),
            (NVIDIA_COUNT, "4"),
        ]));
        assert_eq!(
            nvidia,
            Some(LabeledGpus {
                vendor: "nvidia",
                product: "NVIDIA-L4".into(),
                count: Some(4)
            })
        );
        let amd = labeled_gpus(&labels(&[
            ("beta.amd.com/gpu.product-name", "AMD_Instinct_MI250X"),
            ("beta.amd.com/gpu.count", "x"),
        ]));
        assert_eq!(
            amd,
            Some(LabeledGpus {
                vendor: "amd",
                product: "AMD_Instinct_MI250X".into(),
                count: None
            })
        );
        assert_eq!(
            labeled_gpus(&labels(&[("kubernetes.io/os", "linux")])),
            None
        );
    }
}
