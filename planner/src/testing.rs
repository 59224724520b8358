//! Jobs and fleets for the planner's unit tests.

use genfleet_scheduler::policy::Qos;

use super::fleet::{Fleet, Pool};
use super::workload::JobRequest;

/// A job of the tiny preset at tp 1.
pub fn job(arrival_s: f64, queue: &str, qos: Qos, steps: u32) -> JobRequest {
    JobRequest {
        arrival_s,
        queue: queue.into(),
        qos,
        priority: 0,
        model: "tiny".into(),
        frames: 17,
        width: 256,
        height: 256,
        steps,
        tp: 1,
        guidance: 5.0,
        line: 0,
    }
}

/// A pool of `nodes` nodes of `devices_per_node` devices serving tiny,
/// at 1 per device-hour.
pub fn pool(flavor: &str, nodes: u32, devices_per_node: u32) -> Pool {
    Pool {
        flavor: flavor.into(),
        nodes,
        devices_per_node,
        price_per_device_hour: 1.0,
        memory_bytes: 0,
        models: vec!["tiny".into()],
    }
}

/// A fleet of one such pool.
pub fn fleet(flavor: &str, nodes: u32, devices_per_node: u32) -> Fleet {
    Fleet {
        pools: vec![pool(flavor, nodes, devices_per_node)],
    }
}
