//! The devices a worker offers. This build knows the CPU; NVIDIA (NVML) and
//! AMD (amdgpu sysfs) discovery come with GPU support.

use genfleet_proto as pb;

/// Flavor name of CPU devices.
pub const CPU_FLAVOR: &str = "cpu";

/// The node's device groups: `cpu_slots` CPU devices (jobs that may run at once).
pub fn discover(cpu_slots: u32) -> Vec<pb::DeviceGroup> {
    vec![pb::DeviceGroup {
        flavor: CPU_FLAVOR.to_string(),
        count: cpu_slots,
        memory_bytes: total_memory_bytes().unwrap_or(0),
    }]
}

/// MemTotal from /proc/meminfo, if readable.
fn total_memory_bytes() -> Option<u64> {
    let meminfo = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = meminfo.lines().find(|l| l.starts_with("MemTotal:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}
