//! Node commands: register (a worker's session starts) and down (it is gone).

use std::collections::BTreeMap;

use genfleet_proto as pb;
use pb::JobState;

use super::{Job, Outcome, Rejection, State};
use crate::spec;

/// Most device groups and devices a node may report; more is a lying peer.
const MAX_DEVICE_GROUPS: usize = 16;
const MAX_DEVICES: u32 = 64;

/// A worker node as the replicated state holds it.
#[derive(Debug, Clone, PartialEq)]
pub struct Node {
    pub name: String,
    /// The worker process last registered under this name.
    pub instance: String,
    pub devices: Vec<pb::DeviceGroup>,
    pub models: Vec<String>,
    /// Registered and not since declared down.
    pub up: bool,
    /// Device index -> job holding it.
    pub busy: BTreeMap<u32, String>,
    pub registered_at_ms: i64,
    /// Takes no new work; kept across re-registrations.
    pub cordoned: bool,
    /// Its worker instance is shutting down; cleared when another registers.
    pub draining: bool,
    /// Who cordoned it ([`CORDONED_BY_KUBERNETES`] or "" for an operator).
    pub cordon_source: String,
}

/// `CordonNode.source` of cordons the leader mirrors from Kubernetes.
pub const CORDONED_BY_KUBERNETES: &str = "kubernetes";

impl Node {
    /// Devices of the node, numbered across its groups in order: (index, group).
    pub fn device_indices(&self) -> impl Iterator<Item = (u32, usize)> + '_ {
        self.devices.iter().enumerate().flat_map({
            let mut next = 0u32;
            move |(group, g)| {
                let first = next;
                next += g.count;
                (first..first + g.count).map(move |i| (i, group))
            }
        })
    }

    /// Free devices of each group, in index order.
    pub fn free_by_group(&self) -> Vec<Vec<u32>> {
        let mut free = vec![Vec::new(); self.devices.len()];
        for (index, group) in self.device_indices() {
            if !self.busy.contains_key(&index) {
                free[group].push(index);
            }
        }
        free
    }

    pub fn serves_model(&self, model: &str) -> bool {
        self.models.iter().any(|m| m == model)
    }

    /// Why `job` cannot run on `device_ids` of this node, if it cannot.
    pub fn check_placement(&self, job: &Job, device_ids: &[u32]) -> Result<(), PlacementError> {
        if !self.up {
            return Err(PlacementError::Down);
        }
        if self.cordoned {
            return Err(PlacementError::Cordoned);
        }
        if self.draining {
            return Err(PlacementError::Draining);
        }
        if !self.serves_model(&job.spec.model) {
            return Err(PlacementError::Model(job.spec.model.clone()));
        }
        if device_ids.len() != job.spec.tp as usize {
            return Err(PlacementError::GangSize {
                needs: job.spec.tp,
                named: device_ids.len(),
            });
        }
        let groups: BTreeMap<u32, usize> = self.device_indices().collect();
        let mut group_of_gang = None;
        for (i, device) in device_ids.iter().enumerate() {
            let group = *groups
                .get(device)
                .ok_or(PlacementError::NoDevice(*device))?;
            if device_ids[..i].contains(device) {
                return Err(PlacementError::NamedTwice(*device));
            }
            if let Some(holder) = self.busy.get(device) {
                return Err(PlacementError::Held {
                    device: *device,
                    job: holder.clone(),
                });
            }
            if *group_of_gang.get_or_insert(group) != group {
                return Err(PlacementError::MixedFlavors);
            }
        }
        Ok(())
    }
}

/// Why a job cannot be placed on a node's devices.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum PlacementError {
    #[error("the node is down")]
    Down,
    #[error("the node is cordoned")]
    Cordoned,
    #[error("the node's worker is shutting down")]
    Draining,
    #[error("the node does not serve model {0}")]
    Model(String),
    #[error("the job needs {needs} devices, the placement names {named}")]
    GangSize { needs: u32, named: usize },
    #[error("the node has no device {0}")]
    NoDevice(u32),
    #[error("device {0} is named twice")]
    NamedTwice(u32),
    #[error("device {device} is held by job {job}")]
    Held { device: u32, job: String },
    #[error("a gang must be devices of one flavor")]
    MixedFlavors,
}

impl State {
    pub(super) fn register_node(
        &mut self,
        c: &pb::RegisterNode,
        at_ms: i64,
    ) -> Result<Outcome, Rejection> {
        validate_registration(c)?;
        // A new worker process under a known name means the old one is gone,
        // and so are the jobs it was running.
        let requeued = match self.nodes.get(&c.node) {
            Some(old) if old.instance != c.instance => self.jobs_on(&c.node),
            _ => Vec::new(),
        };
        for job in &requeued {
            self.requeue(job, at_ms);
        }
        let (busy, cordoned, draining, cordon_source) = self
            .nodes
            .get(&c.node)
            .map(|old| {
                // A reconnect of the draining instance stays draining.
                let draining = old.draining && old.instance == c.instance;
                (
                    old.busy.clone(),
                    old.cordoned,
                    draining,
                    old.cordon_source.clone(),
                )
            })
            .unwrap_or_default();
        self.nodes.insert(
            c.node.clone(),
            Node {
                name: c.node.clone(),
                instance: c.instance.clone(),
                devices: c.devices.clone(),
                models: c.models.clone(),
                up: true,
                busy,
                registered_at_ms: at_ms,
                cordoned,
                draining,
                cordon_source,
            },
        );
        Ok(Outcome::Node { requeued })
    }

    pub(super) fn node_down(&mut self, name: &str, at_ms: i64) -> Result<Outcome, Rejection> {
        if !self.nodes.contains_key(name) {
            return Err(Rejection::UnknownNode(name.to_string()));
        }
        let requeued = self.jobs_on(name);
        for job in &requeued {
            self.requeue(job, at_ms);
        }
        if let Some(node) = self.nodes.get_mut(name) {
            node.up = false;
        }
        Ok(Outcome::Node { requeued })
    }

    /// Cordons or uncordons a node, minding who asked (`CordonNode.source`).
    pub(super) fn cordon_node(&mut self, c: &pb::CordonNode) -> Result<Outcome, Rejection> {
        let node = self
            .nodes
            .get_mut(&c.node)
            .ok_or_else(|| Rejection::UnknownNode(c.node.clone()))?;
        // An operator's cordon is not taken over by Kubernetes', and a
        // Kubernetes uncordon (perhaps decided before the operator's cordon
        // was applied) cannot lift it.
        let operator_cordon = node.cordoned && node.cordon_source.is_empty();
        if operator_cordon && c.source == CORDONED_BY_KUBERNETES {
            return Ok(Outcome::Node {
                requeued: Vec::new(),
            });
        }
        if !c.cordoned {
            node.cordon_source.clear();
        } else {
            node.cordon_source = c.source.clone();
        }
        node.cordoned = c.cordoned;
        Ok(Outcome::Node {
            requeued: Vec::new(),
        })
    }

    pub(super) fn node_draining(&mut self, c: &pb::NodeDraining) -> Result<Outcome, Rejection> {
        let node = self
            .nodes
            .get_mut(&c.node)
            .ok_or_else(|| Rejection::UnknownNode(c.node.clone()))?;
        if node.instance != c.instance {
            return Err(Rejection::Registration(format!(
                "instance {} is not the one registered for node {}",
                c.instance, c.node
            )));
        }
        node.draining = true;
        Ok(Outcome::Node {
            requeued: Vec::new(),
        })
    }

    /// Running jobs on `node`, by id.
    pub fn jobs_on(&self, node: &str) -> Vec<String> {
        self.jobs
            .values()
            .filter(|j| j.state == JobState::Running && j.node == node)
            .map(|j| j.id.clone())
            .collect()
    }
}

fn validate_registration(c: &pb::RegisterNode) -> Result<(), Rejection> {
    let bad = |why: String| Err(Rejection::Registration(why));
    if let Err(e) = spec::validate_name("node", &c.node) {
        return bad(e.to_string());
    }
    if c.instance.is_empty() {
        return bad("the worker instance id is empty".into());
    }
    if c.devices.is_empty() || c.devices.len() > MAX_DEVICE_GROUPS {
        return bad(format!(
            "{} device groups; a node reports 1 to {MAX_DEVICE_GROUPS}",
            c.devices.len()
        ));
    }
    let total: u64 = c.devices.iter().map(|g| u64::from(g.count)).sum();
    if total == 0 || total > u64::from(MAX_DEVICES) {
        return bad(format!(
            "{total} devices; a node reports 1 to {MAX_DEVICES}"
        ));
    }
    for group in &c.devices {
        if let Err(e) = spec::validate_name("flavor", &group.flavor) {
            return bad(e.to_string());
        }
    }
    for model in &c.models {
        if let Err(e) = spec::validate_name("model", model) {
            return bad(e.to_string());
        }
    }
    Ok(())
}
