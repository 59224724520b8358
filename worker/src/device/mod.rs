//! The devices a worker has and offers: NVIDIA GPUs (NVML), AMD GPUs
//! (amdgpu sysfs), the CPU always, and simulated devices of any flavor.
//! Discovery also gives telemetry (memory, busy, power, temperature) for
//! the worker's metrics. GPUs are offered for jobs only by a build that
//! can run on them (NVIDIA with the `cuda` feature, see [`compute`]);
//! otherwise they are reported and watched, and the CPU takes the work.

pub mod amdgpu;
pub mod compute;
#[cfg(feature = "cuda")]
pub mod cuda;
pub mod nvidia;

use std::path::{Path, PathBuf};

use genfleet_proto as pb;
use pb::flavors;

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
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
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct Telemetry {
    pub memory_used_bytes: Option<u64>,
    pub busy_percent: Option<u32>,
    pub power_watts: Option<f64>,
    pub temperature_c: Option<f64>,
}

/// One discovered GPU.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct GpuInfo {
    pub vendor: Vendor,
    /// Its index among the node's GPUs of its vendor.
    pub index: u32,
    /// As the driver names it, e.g. "NVIDIA H100 80GB HBM3".
    pub product: String,
    pub flavor: String,
    pub memory_bytes: u64,
    /// Its PCI address in the form NVML and DCGM's exporter write it
    /// (`00000000:3B:00.0`, see [`pci_bus_id`]); `None` where the driver
    /// does not say.
    pub pci_bus_id: Option<String>,
    /// A stable unique id: NVML's UUID (`GPU-5f1c...`, DCGM's `UUID`
    /// label), amdgpu's `unique_id`; `None` where the driver has none.
    pub uuid: Option<String>,
    /// PCI bus ids of NVLink peers (NVIDIA, where reported).
    pub peers: Vec<String>,
    pub telemetry: Telemetry,
}

impl GpuInfo {
    /// What names this GPU in the metrics and joins it to other exporters.
    pub fn identity(&self) -> GpuIdentity {
        GpuIdentity {
            vendor: self.vendor.label().to_string(),
            index: self.index,
            uuid: self.uuid.clone().unwrap_or_default(),
            pci_bus_id: self.pci_bus_id.clone().unwrap_or_default(),
        }
    }
}

/// A GPU as the metrics name it: `vendor` and `index` (the worker's own
/// numbering), and the `uuid` and `pci_bus_id` that DCGM's exporter puts on
/// its series as `UUID` and `pci_bus_id`. Empty where unknown (a driver
/// that does not say, a simulated device).
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct GpuIdentity {
    pub vendor: String,
    pub index: u32,
    pub uuid: String,
    pub pci_bus_id: String,
}

/// A PCI address (`domain:bus:device.function`, hex, any case and domain
/// width, as sysfs writes `0000:3b:00.0`) in the form NVML writes it and
/// DCGM's exporter labels its series with: an 8-digit domain, upper-case
/// hex, `00000000:3B:00.0`. `None` for text that is not a PCI address.
pub fn pci_bus_id(text: &str) -> Option<String> {
    let (domain, rest) = text.trim().split_once(':')?;
    let (bus, rest) = rest.split_once(':')?;
    let (device, function) = rest.split_once('.')?;
    let hex = |s: &str, digits: usize| {
        let valid = !s.is_empty() && s.len() <= digits && s.bytes().all(|b| b.is_ascii_hexdigit());
        valid.then(|| u32::from_str_radix(s, 16).ok()).flatten()
    };
    let (domain, bus) = (hex(domain, 8)?, hex(bus, 2)?);
    let (device, function) = (hex(device, 2)?, hex(function, 1)?);
    Some(format!("{domain:08X}:{bus:02X}:{device:02X}.{function:X}"))
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
/// with the memory of one and the least any of them has free now (where
/// the driver reports what is used).
pub fn gpu_groups(gpus: &[GpuInfo]) -> Vec<pb::DeviceGroup> {
    let mut groups: Vec<pb::DeviceGroup> = Vec::new();
    for gpu in gpus {
        let free = gpu
            .telemetry
            .memory_used_bytes
            .map(|used| gpu.memory_bytes.saturating_sub(used));
        match groups.iter_mut().find(|g| g.flavor == gpu.flavor) {
            Some(group) => {
                group.count += 1;
                group.free_memory_bytes = match (group.free_memory_bytes, free) {
                    (Some(a), Some(b)) => Some(a.min(b)),
                    (a, b) => a.or(b),
                };
            }
            None => groups.push(pb::DeviceGroup {
                flavor: gpu.flavor.clone(),
                count: 1,
                memory_bytes: gpu.memory_bytes,
                simulated: false,
                free_memory_bytes: free,
            }),
        }
    }
    groups
}

/// What an operator should know about the GPUs this build found but does
/// not offer, one line per vendor (empty when there is nothing to say).
/// `cuda`: whether the build has the `cuda` feature; `cpu_slots`: what it
/// offers instead.
pub fn gpu_notices(gpus: &[GpuInfo], cuda: bool, cpu_slots: u32) -> Vec<String> {
    let mut notices = Vec::new();
    for vendor in [Vendor::Nvidia, Vendor::Amd] {
        let found: Vec<&GpuInfo> = gpus.iter().filter(|g| g.vendor == vendor).collect();
        let Some(first) = found.first() else {
            continue;
        };
        let what = format!(
            "{} {} GPU(s) ({})",
            found.len(),
            vendor.label(),
            first.flavor
        );
        match vendor {
            Vendor::Nvidia if cuda => {}
            Vendor::Nvidia => notices.push(format!(
                "found {what}, but this build has no CUDA (built without the `cuda` feature): \
                 they are reported and watched, not offered; jobs run on {cpu_slots} CPU \
                 device(s). Build with `--features cuda` to run jobs on them."
            )),
            Vendor::Amd => notices.push(format!(
                "found {what}: candle has no ROCm backend, so they are reported and watched, \
                 not offered; jobs run on {cpu_slots} CPU device(s)."
            )),
        }
    }
    notices
}

/// Where amdgpu's sysfs is on a real node.
pub fn default_sysfs_root() -> PathBuf {
    PathBuf::from("/")
}

/// Flavor name of CPU devices.
pub const CPU_FLAVOR: &str = "cpu";

/// The node's device groups: `cpu_slots` CPU devices (jobs that may run at once).
pub fn discover(cpu_slots: u32) -> Vec<pb::DeviceGroup> {
    // The host's memory bounds every job on it (the slots share it: a
    // job is kept off a node too small for it alone, not packed).
    vec![pb::DeviceGroup {
        flavor: CPU_FLAVOR.to_string(),
        count: cpu_slots,
        memory_bytes: total_memory_bytes().unwrap_or(0),
        simulated: false,
        free_memory_bytes: None,
    }]
}

/// A group of simulated devices: `--simulate FLAVOR:COUNT[:MEMORY]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SimulatedGroup {
    pub flavor: String,
    pub count: u32,
    /// Memory of one device; `None`: the flavor's known size
    /// ([`flavors::known_memory_bytes`]), or no limit for unknown flavors.
    pub memory_bytes: Option<u64>,
}

impl SimulatedGroup {
    /// Parses `FLAVOR:COUNT` or `FLAVOR:COUNT:MEMORY`, e.g.
    /// `nvidia-l4:2:24GiB` (memory in MiB, GiB or TiB; decimals allowed).
    pub fn parse(s: &str) -> Result<Self, String> {
        let usage =
            || format!("{s:?} is not FLAVOR:COUNT[:MEMORY], e.g. nvidia-l4:2 or nvidia-l4:2:24GiB");
        let mut parts = s.split(':').map(str::trim);
        let (Some(flavor), Some(count)) = (parts.next(), parts.next()) else {
            return Err(usage());
        };
        let memory = parts.next();
        if parts.next().is_some() {
            return Err(usage());
        }
        let count = count
            .parse::<u32>()
            .map_err(|_| format!("{count:?} in {s:?} is not a whole number of devices"))?;
        let memory_bytes = memory
            .map(|m| flavors::parse_memory(m).map_err(|e| format!("{e} (in {s:?})")))
            .transpose()?;
        Ok(Self {
            flavor: flavor.to_string(),
            count,
            memory_bytes,
        })
    }
}

/// Most device groups and devices per group a simulated node may claim
/// (the scheduler refuses bigger nodes anyway).
const MAX_SIMULATED_GROUPS: usize = 16;
const MAX_SIMULATED_DEVICES: u32 = 64;

/// Device groups for `genfleet worker --simulate FLAVOR:COUNT[:MEMORY]`,
/// checked; each device has the memory given, or its flavor's known size
/// (no limit for a flavor of unknown size: the scheduler then places any
/// job there).
pub fn simulated(groups: &[SimulatedGroup]) -> Result<Vec<pb::DeviceGroup>, String> {
    if groups.len() > MAX_SIMULATED_GROUPS {
        return Err(format!(
            "{} simulated device groups; at most {MAX_SIMULATED_GROUPS}",
            groups.len()
        ));
    }
    groups
        .iter()
        .map(|SimulatedGroup { flavor, count, memory_bytes }| {
            if !pb::is_valid_name(flavor) {
                return Err(format!("simulated flavor {flavor:?} is not a valid name"));
            }
            if *count == 0 || *count > MAX_SIMULATED_DEVICES {
                return Err(format!(
                    "{count} simulated {flavor} devices: give between 1 and {MAX_SIMULATED_DEVICES}"
                ));
            }
            let memory_bytes = memory_bytes.or_else(|| flavors::known_memory_bytes(flavor));
            if memory_bytes.is_none() {
                tracing::warn!(%flavor, "simulated flavor of unknown memory size: no memory limit in placement; give one as FLAVOR:COUNT:MEMORY");
            }
            Ok(pb::DeviceGroup {
                flavor: flavor.clone(),
                count: *count,
                memory_bytes: memory_bytes.unwrap_or(0),
                simulated: true,
                free_memory_bytes: None,
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn simulated_groups_parse_or_say_why_not() {
        let l4 = SimulatedGroup::parse("nvidia-l4:2:24GiB").expect("valid");
        assert_eq!(
            l4,
            SimulatedGroup {
                flavor: "nvidia-l4".into(),
                count: 2,
                memory_bytes: Some(24 << 30),
            }
        );
        assert_eq!(
            SimulatedGroup::parse("amd-mi300x:8").map(|g| g.memory_bytes),
            Ok(None)
        );
        assert_eq!(
            SimulatedGroup::parse("x:1:1.5GiB").map(|g| g.memory_bytes),
            Ok(Some(3 << 29))
        );
        for (bad, expected) in [
            ("amd-mi300x", "FLAVOR:COUNT[:MEMORY]"),
            ("a:1:2:3", "FLAVOR:COUNT[:MEMORY]"),
            ("gpu:eight", "whole number"),
            ("nvidia-l4:1:24G", "like 24GiB"),
            ("nvidia-l4:1:lotsGiB", "like 24GiB"),
            ("nvidia-l4:1:0GiB", "between 1MiB"),
        ] {
            let err = SimulatedGroup::parse(bad).expect_err(bad);
            assert!(err.contains(expected), "{bad}: {err}");
        }
    }

    /// DCGM's exporter labels series with NVML's form of the address
    /// (`pci_bus_id="00000000:3B:00.0"`); sysfs writes `0000:3b:00.0`.
    #[test]
    fn pci_addresses_take_the_form_dcgm_labels_series_with() {
        for (given, expected) in [
            ("00000000:3B:00.0", Some("00000000:3B:00.0")),
            ("0000:3b:00.0", Some("00000000:3B:00.0")),
            (" 0001:c1:1f.7\n", Some("00000001:C1:1F.7")),
            ("garbage", None),
            ("0000:zz:00.0", None),
            ("0000:3b:00", None),
            ("0000:3b:00.10", None),
            ("000000000:3b:00.0", None),
            ("", None),
        ] {
            assert_eq!(pci_bus_id(given).as_deref(), expected, "{given:?}");
        }
    }

    #[test]
    fn simulated_devices_have_their_flavors_memory() {
        let group = |flavor: &str, memory_bytes| SimulatedGroup {
            flavor: flavor.into(),
            count: 1,
            memory_bytes,
        };
        let groups = simulated(&[
            group("nvidia-h100-80gb", None),
            group("nvidia-l4", Some(16 << 30)),
            group("acme-x1", None),
        ])
        .expect("valid");
        let memory: Vec<u64> = groups.iter().map(|g| g.memory_bytes).collect();
        assert_eq!(memory, [80 << 30, 16 << 30, 0], "known, given, unknown");
    }
}
