//! The fleet a plan runs on: pools of identical nodes.
//!
//! ```yaml
//! pools:
//!   - flavor: nvidia-h100-80gb
//!     nodes: 4
//!     devices_per_node: 8
//!     price_per_device_hour: 2.49
//!   - flavor: amd-mi300x
//!     nodes: 2
//!     devices_per_node: 8
//!     price_per_device_hour: 1.99
//!     memory: 192GiB            # optional: the flavor's known size
//!     models: [wan2.1-1.3b]     # optional: every built-in preset
//!     node_mtbf: 30d            # optional: each node fails this often
//!     repair_time: 4h           # optional (with node_mtbf; default 4h)
//! ```

use std::collections::BTreeMap;
use std::path::Path;

use genfleet_proto::flavors::{known_memory_bytes, parse_memory};
use genfleet_proto::models::PRESETS;
use serde::Deserialize;

use super::failures::NodeFailures;
use super::InputError;

/// A failed node's repair time when the fleet gives an MTBF without one.
pub const DEFAULT_REPAIR_S: f64 = 4.0 * 3600.0;

/// Most devices one node may have (as the scheduler accepts).
const MAX_DEVICES_PER_NODE: u32 = 64;
/// Most nodes of one pool (a typo should not exhaust the memory).
const MAX_NODES_PER_POOL: u32 = 100_000;

#[derive(Debug, Clone, PartialEq)]
pub struct Pool {
    pub flavor: String,
    pub nodes: u32,
    pub devices_per_node: u32,
    pub price_per_device_hour: f64,
    /// Memory of one device; 0: unknown (no limit in placement).
    pub memory_bytes: u64,
    pub models: Vec<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Fleet {
    pub pools: Vec<Pool>,
}

impl Fleet {
    pub fn devices(&self) -> u64 {
        self.pools
            .iter()
            .map(|p| u64::from(p.nodes) * u64::from(p.devices_per_node))
            .sum()
    }

    /// What the fleet costs per hour, busy or not.
    pub fn cost_per_hour(&self) -> f64 {
        self.pools
            .iter()
            .map(|p| (f64::from(p.nodes) * f64::from(p.devices_per_node)) * p.price_per_device_hour)
            .sum()
    }

    /// The same fleet with `nodes` nodes in pool `index`.
    pub fn with_nodes(&self, index: usize, nodes: u32) -> Fleet {
        let mut fleet = self.clone();
        fleet.pools[index].nodes = nodes;
        fleet
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FleetDoc {
    pools: Vec<PoolDoc>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PoolDoc {
    flavor: String,
    nodes: u32,
    devices_per_node: u32,
    price_per_device_hour: f64,
    #[serde(default)]
    memory: Option<String>,
    #[serde(default)]
    models: Option<Vec<String>>,
    #[serde(default)]
    node_mtbf: Option<String>,
    #[serde(default)]
    repair_time: Option<String>,
}

pub fn read_fleet(path: &Path) -> Result<Fleet, InputError> {
    let file = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|e| InputError::io(&file, e))?;
    parse_fleet(&file, &text)
}

pub fn parse_fleet(file: &str, text: &str) -> Result<Fleet, InputError> {
    parse(file, text).map(|(fleet, _)| fleet)
}

/// Per flavor, how its nodes fail, as the fleet file says (flavors
/// without `node_mtbf` are not listed).
pub fn read_fleet_failures(path: &Path) -> Result<BTreeMap<String, NodeFailures>, InputError> {
    let file = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|e| InputError::io(&file, e))?;
    parse(&file, &text).map(|(_, failures)| failures)
}

/// A duration of the fleet file, in seconds, more than zero.
fn positive_seconds(text: &str) -> Result<f64, String> {
    let seconds = humantime::parse_duration(text.trim())
        .map_err(|e| format!("{text:?}: {e} (write it as 30d, 4h or 90m)"))?
        .as_secs_f64();
    if seconds <= 0.0 {
        return Err(format!("{text:?}: give a time of more than zero"));
    }
    Ok(seconds)
}

fn parse(file: &str, text: &str) -> Result<(Fleet, BTreeMap<String, NodeFailures>), InputError> {
    let mut failures = BTreeMap::new();
    let doc: FleetDoc = serde_yaml_ng::from_str(text).map_err(|e| {
        let line = e.location().map_or(0, |l| l.line() as u64);
        InputError::at(file, line, "fleet", &e.to_string())
    })?;
    let mut pools = Vec::with_capacity(doc.pools.len());
    for (index, p) in doc.pools.into_iter().enumerate() {
        let at = |field: &str, why: String| {
            InputError::at(file, 0, &format!("pools[{index}].{field}"), &why)
        };
        if !genfleet_proto::is_valid_name(&p.flavor) {
            return Err(at(
                "flavor",
                format!("{:?} is not a valid flavor name", p.flavor),
            ));
        }
        if let Some(first) = pools.iter().position(|q: &Pool| q.flavor == p.flavor) {
            return Err(at(
                "flavor",
                format!(
                    "{} is pool {first}'s flavor already: give one pool per flavor",
                    p.flavor
                ),
            ));
        }
        if p.nodes > MAX_NODES_PER_POOL {
            return Err(at(
                "nodes",
                format!("{}: give at most {MAX_NODES_PER_POOL}", p.nodes),
            ));
        }
        if p.devices_per_node == 0 || p.devices_per_node > MAX_DEVICES_PER_NODE {
            return Err(at(
                "devices_per_node",
                format!(
                    "{}: give between 1 and {MAX_DEVICES_PER_NODE}",
                    p.devices_per_node
                ),
            ));
        }
        if !p.price_per_device_hour.is_finite() || p.price_per_device_hour < 0.0 {
            return Err(at(
                "price_per_device_hour",
                format!("{}: give a price of at least 0", p.price_per_device_hour),
            ));
        }
        let memory_bytes = match &p.memory {
            Some(text) => parse_memory(text.trim()).map_err(|e| at("memory", e))?,
            None => known_memory_bytes(&p.flavor).unwrap_or(0),
        };
        let models = p
            .models
            .unwrap_or_else(|| PRESETS.iter().map(|name| name.to_string()).collect());
        if models.is_empty() {
            return Err(at("models", "a pool must serve at least one model".into()));
        }
        let repair_s = match &p.repair_time {
            Some(text) if p.node_mtbf.is_none() => {
                return Err(at(
                    "repair_time",
                    format!("{text:?} without node_mtbf: give how often the nodes fail too"),
                ))
            }
            Some(text) => positive_seconds(text).map_err(|e| at("repair_time", e))?,
            None => DEFAULT_REPAIR_S,
        };
        if let Some(text) = &p.node_mtbf {
            let mtbf_s = positive_seconds(text).map_err(|e| at("node_mtbf", e))?;
            failures.insert(p.flavor.clone(), NodeFailures { mtbf_s, repair_s });
        }
        pools.push(Pool {
            flavor: p.flavor,
            nodes: p.nodes,
            devices_per_node: p.devices_per_node,
            price_per_device_hour: p.price_per_device_hour,
            memory_bytes,
            models,
        });
    }
    let fleet = Fleet { pools };
    if fleet.devices() == 0 {
        return Err(InputError::at(file, 0, "pools", "the fleet has no devices"));
    }
    Ok((fleet, failures))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pools_read_with_their_flavors_memory() {
        let fleet = parse_fleet(
            "fleet.yaml",
            "pools:\n  - {flavor: nvidia-h100-80gb, nodes: 2, devices_per_node: 8, price_per_device_hour: 2.5}\n  - {flavor: nvidia-l4, nodes: 1, devices_per_node: 4, price_per_device_hour: 0.8, memory: 20GiB, models: [tiny]}\n",
        )
        .expect("valid");
        assert_eq!(fleet.devices(), 20);
        assert_eq!(fleet.pools[0].memory_bytes, 80 << 30);
        assert_eq!(fleet.pools[1].memory_bytes, 20 << 30);
        assert_eq!(fleet.pools[1].models, ["tiny"]);
        assert!((fleet.cost_per_hour() - (16.0 * 2.5 + 4.0 * 0.8)).abs() < 1e-9);
    }

    #[test]
    fn pools_may_say_how_their_nodes_fail() {
        let text = "pools:\n  - {flavor: nvidia-h100-80gb, nodes: 2, devices_per_node: 8, price_per_device_hour: 2.5, node_mtbf: 30d, repair_time: 2h}\n  - {flavor: nvidia-l4, nodes: 1, devices_per_node: 4, price_per_device_hour: 0.8, node_mtbf: 10d}\n  - {flavor: cpu, nodes: 1, devices_per_node: 4, price_per_device_hour: 0.1}\n";
        let (_, failures) = parse("fleet.yaml", text).expect("valid");
        assert_eq!(failures.len(), 2, "the cpu pool does not fail");
        let h100 = failures["nvidia-h100-80gb"];
        assert_eq!((h100.mtbf_s, h100.repair_s), (30.0 * 86_400.0, 7_200.0));
        assert_eq!(failures["nvidia-l4"].repair_s, DEFAULT_REPAIR_S);
    }

    #[test]
    fn bad_fleets_say_which_field() {
        for (text, expected) in [
            ("pools: []\n", "the fleet has no devices"),
            ("pools:\n  - {flavor: cpu, nodes: 0, devices_per_node: 1, price_per_device_hour: 1}\n", "no devices"),
            ("pools:\n  - {flavor: H100, nodes: 1, devices_per_node: 1, price_per_device_hour: 1}\n", "pools[0].flavor"),
            ("pools:\n  - {flavor: cpu, nodes: 1, devices_per_node: 0, price_per_device_hour: 1}\n", "pools[0].devices_per_node"),
            ("pools:\n  - {flavor: cpu, nodes: 1, devices_per_node: 1, price_per_device_hour: -1}\n", "pools[0].price_per_device_hour"),
            ("pools:\n  - {flavor: cpu, nodes: 1, devices_per_node: 1, price_per_device_hour: 1, memory: 8G}\n", "pools[0].memory"),
            ("pools:\n  - {flavor: cpu, nodes: 1, devices: 1}\n", "fleet.yaml:2: fleet: pools[0]: unknown field `devices`"),
            ("pools:\n  - {flavor: cpu, nodes: 1, devices_per_node: 1, price_per_device_hour: 1, node_mtbf: often}\n", "pools[0].node_mtbf"),
            ("pools:\n  - {flavor: cpu, nodes: 1, devices_per_node: 1, price_per_device_hour: 1, node_mtbf: 0s}\n", "more than zero"),
            ("pools:\n  - {flavor: cpu, nodes: 1, devices_per_node: 1, price_per_device_hour: 1, repair_time: 4h}\n", "pools[0].repair_time"),
            ("pools:\n  - {flavor: cpu, nodes: 1, devices_per_node: 1, price_per_device_hour: 1}\n  - {flavor: cpu, nodes: 2, devices_per_node: 1, price_per_device_hour: 1}\n", "pools[1].flavor: cpu is pool 0's flavor already"),
        ] {
            let err = parse_fleet("fleet.yaml", text).expect_err(text).to_string();
            assert!(err.starts_with("fleet.yaml") && err.contains(expected), "{text}: {err}");
        }
    }
}
