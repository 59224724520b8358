//! The devices a worker has and offers: NVIDIA GPUs (NVML), AMD GPUs
//! (amdgpu sysfs), the CPU always, and simulated devices of any flavor.
//! Discovery also gives telemetry (memory, busy, power, temperature) for
//! the worker's metrics. GPUs are offered for jobs only by a build that
//! can run on them (the `cuda` feature); otherwise they are reported and
//! watched, and the CPU takes the work.

pub mod amdgpu;
pub mod flavor;
pub mod nvidia;

use std::path::{Path, PathBuf};

use genfleet_proto as pb;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Vendor {
    Nvidia,
    Amd,
}

impl Vendor {
    pub fn label(self) -> &'static str {
        match self {
            Vendor::Nvidia => "nvidia",
            Vendor::Amd => "amd",
        }
    }
}

/// What a GPU reports now; `None` where it does not say.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Telemetry {
    pub memory_used_bytes: Option<u64>,
    pub busy_percent: Option<u32>,
    pub power_watts: Option<f64>,
    pub temperature_c: Option<f64>,
}

/// One discovered GPU.
#[derive(Debug, Clone, PartialEq)]
pub struct GpuInfo {
    pub vendor: Vendor,
    /// Its index among the node's GPUs of its vendor.
    pub index: u32,
    /// As the driver names it, e.g. "NVIDIA H100 80GB HBM3".
    pub product: String,
    pub flavor: String,
    pub memory_bytes: u64,
    /// PCI bus ids of NVLink peers (NVIDIA, where reported).
    pub peers: Vec<String>,
    pub telemetry: Telemetry,
}

/// The node's GPUs, kept to read their telemetry again: NVIDIA through
/// NVML when it loads, AMD through the sysfs under `sysfs_root` (`/` on a
/// node; a container may see the host's at another path).
pub struct GpuWatch {
    nvml: Option<nvml_wrapper::Nvml>,
    sysfs_root: PathBuf,
    gpus: Vec<GpuInfo>,
}

impl GpuWatch {
    pub fn open(sysfs_root: &Path) -> Self {
        let nvml = nvidia::open();
        let mut gpus = nvml.as_ref().map(nvidia::discover).unwrap_or_default();
        gpus.extend(amdgpu::discover(sysfs_root));
        Self {
            nvml,
            sysfs_root: sysfs_root.to_path_buf(),
            gpus,
        }
    }

    pub fn gpus(&self) -> &[GpuInfo] {
        &self.gpus
    }

    /// Reads every GPU's telemetry again.
    pub fn refresh(&mut self) {
        let amd = amdgpu::discover(&self.sysfs_root);
        for gpu in &mut self.gpus {
            gpu.telemetry = match gpu.vendor {
                Vendor::Nvidia => self
                    .nvml
                    .as_ref()
                    .map(|nvml| nvidia::telemetry_of(nvml, gpu.index))
                    .unwrap_or_default(),
                Vendor::Amd => amd
                    .iter()
                    .find(|a| a.index == gpu.index)
                    .map(|a| a.telemetry.clone())
                    .unwrap_or_default(),
            };
        }
    }
}

/// GPUs grouped by flavor as the scheduler sees them: identical devices,
/// with the memory of one.
pub fn gpu_groups(gpus: &[GpuInfo]) -> Vec<pb::DeviceGroup> {
    let mut groups: Vec<pb::DeviceGroup> = Vec::new();
    for gpu in gpus {
        match groups.iter_mut().find(|g| g.flavor == gpu.flavor) {
            Some(group) => group.count += 1,
            None => groups.push(pb::DeviceGroup {
                flavor: gpu.flavor.clone(),
                count: 1,
                memory_bytes: gpu.memory_bytes,
                simulated: false,
            }),
        }
    }
    groups
}

/// Where amdgpu's sysfs is on a real node.
pub fn default_sysfs_root() -> PathBuf {
    PathBuf::from("/")
}

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
