//! The devices a worker offers. This build knows the CPU, and simulated
//! devices of any flavor; NVIDIA (NVML) and AMD (amdgpu sysfs) discovery
//! come with GPU support.

use genfleet_proto as pb;

/// Flavor name of CPU devices.
pub const CPU_FLAVOR: &str = "cpu";

/// The node's device groups: `cpu_slots` CPU devices (jobs that may run at once).
pub fn discover(cpu_slots: u32) -> Vec<pb::DeviceGroup> {
    vec![pb::DeviceGroup {
        flavor: CPU_FLAVOR.to_string(),
        count: cpu_slots,
        memory_bytes: total_memory_bytes().unwrap_or(0),
        simulated: false,
    }]
}

/// Most device groups and devices per group a simulated node may claim
/// (the scheduler refuses bigger nodes anyway).
const MAX_SIMULATED_GROUPS: usize = 16;
const MAX_SIMULATED_DEVICES: u32 = 64;

/// Device groups for `genfleet worker --simulate FLAVOR:COUNT`, checked.
pub fn simulated(groups: &[(String, u32)]) -> Result<Vec<pb::DeviceGroup>, String> {
    if groups.len() > MAX_SIMULATED_GROUPS {
        return Err(format!(
            "{} simulated device groups; at most {MAX_SIMULATED_GROUPS}",
            groups.len()
        ));
    }
    groups
        .iter()
        .map(|(flavor, count)| {
            if !pb::is_valid_name(flavor) {
                return Err(format!("simulated flavor {flavor:?} is not a valid name"));
            }
            if *count == 0 || *count > MAX_SIMULATED_DEVICES {
                return Err(format!(
                    "{count} simulated {flavor} devices: give between 1 and {MAX_SIMULATED_DEVICES}"
                ));
            }
            Ok(pb::DeviceGroup {
                flavor: flavor.clone(),
                count: *count,
                memory_bytes: 0,
                simulated: true,
            })
        })
        .collect()
}

/// MemTotal from /proc/meminfo, if readable.
fn total_memory_bytes() -> Option<u64> {
    let meminfo = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = meminfo.lines().find(|l| l.starts_with("MemTotal:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}
