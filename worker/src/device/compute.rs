//! Where a job's ranks compute. The scheduler numbers a node's devices
//! across the groups the worker registered, in order (the first group's
//! devices first), and an assignment names devices by those numbers; the
//! [`DeviceTable`] turns them back into the CPU or a GPU's CUDA ordinal.
//!
//! This is the seam for other backends: a ROCm build would add a variant
//! here and offer AMD GPUs in [`offered_gpus`]; the scheduler sees only
//! flavors and numbers and does not change.

use candle_core::Device;
use genfleet_proto as pb;

use super::{gpu_groups, GpuIdentity, GpuInfo, Vendor};

/// What one rank computes on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ComputeDevice {
    Cpu,
    /// An NVIDIA GPU by its CUDA ordinal (which need not be NVML's index).
    Cuda {
        ordinal: usize,
    },
}

/// A device that cannot be named, opened, or given to a job as assigned.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DeviceError {
    #[error("device {0:?}: give cpu, cuda or cuda:N")]
    Unknown(String),
    #[error("the assignment names no devices")]
    NoneAssigned,
    #[error("the assignment names device {id}; this worker has devices 0 to {last}")]
    NotHere { id: u32, last: usize },
    #[error("the assignment mixes CPU and GPU devices: {0:?}")]
    Mixed(Vec<u32>),
    #[error("the assignment names one GPU twice: {0:?}")]
    GpuTwice(Vec<u32>),
    #[error("the job asks for tp {tp}, the assignment names {devices} devices")]
    NotTp { tp: usize, devices: usize },
    #[error("opening GPU {ordinal}: {why}")]
    Open { ordinal: usize, why: String },
    #[error("GPU {0}: this build has no CUDA (built without the `cuda` feature)")]
    NoCuda(usize),
}

impl ComputeDevice {
    /// `cpu`, `cuda` (GPU 0) or `cuda:N` (CUDA's ordinal N).
    pub fn parse(text: &str) -> Result<Self, DeviceError> {
        let bad = || DeviceError::Unknown(text.to_string());
        match text.trim() {
            "cpu" => Ok(ComputeDevice::Cpu),
            "cuda" => Ok(ComputeDevice::Cuda { ordinal: 0 }),
            other => {
                let ordinal = other.strip_prefix("cuda:").ok_or_else(bad)?;
                let ordinal = ordinal.parse().map_err(|_| bad())?;
                Ok(ComputeDevice::Cuda { ordinal })
            }
        }
    }

    /// candle's device for one rank. A GPU gets a stream of its own, the
    /// same whichever thread uses it (candle's default is the calling
    /// thread's stream, and a job's ranks load on one thread and run on
    /// others).
    pub fn open(self) -> Result<Device, DeviceError> {
        match self {
            ComputeDevice::Cpu => Ok(Device::Cpu),
            ComputeDevice::Cuda { ordinal } => open_cuda(ordinal),
        }
    }
}

#[cfg(feature = "cuda")]
fn open_cuda(ordinal: usize) -> Result<Device, DeviceError> {
    Device::new_cuda_with_stream(ordinal).map_err(|e| DeviceError::Open {
        ordinal,
        why: e.to_string(),
    })
}

#[cfg(not(feature = "cuda"))]
fn open_cuda(ordinal: usize) -> Result<Device, DeviceError> {
    Err(DeviceError::NoCuda(ordinal))
}

/// The devices a worker offers, in the scheduler's numbering.
#[derive(Debug, Clone, Default)]
pub struct DeviceTable {
    groups: Vec<pb::DeviceGroup>,
    /// Per device in index order: what it computes on, and the GPU it is
    /// (`None`: a CPU slot), for the metrics.
    devices: Vec<(ComputeDevice, Option<GpuIdentity>)>,
}

impl DeviceTable {
    /// Adds a group of CPU slots; `devices` are its members in index order
    /// (as many as the group counts).
    pub fn push(&mut self, group: pb::DeviceGroup, devices: Vec<ComputeDevice>) {
        debug_assert_eq!(group.count as usize, devices.len(), "{}", group.flavor);
        self.groups.push(group);
        self.devices.extend(devices.into_iter().map(|d| (d, None)));
    }

    /// Adds a group of GPUs: each member with the GPU it is.
    pub fn push_gpus(
        &mut self,
        group: pb::DeviceGroup,
        members: Vec<(ComputeDevice, GpuIdentity)>,
    ) {
        debug_assert_eq!(group.count as usize, members.len(), "{}", group.flavor);
        self.groups.push(group);
        self.devices
            .extend(members.into_iter().map(|(device, gpu)| (device, Some(gpu))));
    }

    /// Adds a group of simulated devices (nothing runs on them). Those of
    /// a GPU vendor's flavor (`nvidia-...`, `amd-...`) count as its GPUs,
    /// numbered after the ones before, with no uuid or PCI address: a
    /// simulated node shows in the GPU metrics as a real one would.
    pub fn push_simulated(&mut self, group: pb::DeviceGroup) {
        let vendor = [Vendor::Nvidia, Vendor::Amd].into_iter().find(|v| {
            let prefix = format!("{}-", v.label());
            group.flavor.starts_with(&prefix)
        });
        let count = group.count as usize;
        match vendor {
            Some(vendor) => {
                let vendor = vendor.label();
                let before = self
                    .devices
                    .iter()
                    .filter_map(|(_, gpu)| gpu.as_ref())
                    .filter(|g| g.vendor == vendor)
                    .count();
                let members = (0..count)
                    .map(|i| {
                        let gpu = GpuIdentity {
                            vendor: vendor.to_string(),
                            index: u32::try_from(before + i).unwrap_or(u32::MAX),
                            ..GpuIdentity::default()
                        };
                        (ComputeDevice::Cpu, gpu)
                    })
                    .collect();
                self.push_gpus(group, members);
            }
            None => self.push(group, vec![ComputeDevice::Cpu; count]),
        }
    }

    /// The GPUs among devices `ids` (none for CPU slots and ids it does
    /// not have: [`resolve`](Self::resolve) says what is wrong with those).
    pub fn gpus_of(&self, ids: &[u32]) -> Vec<GpuIdentity> {
        ids.iter()
            .filter_map(|&id| self.devices.get(id as usize)?.1.clone())
            .collect()
    }

    /// The groups to register, in the order that numbers their devices.
    pub fn groups(&self) -> &[pb::DeviceGroup] {
        &self.groups
    }

    /// The devices an assignment names, one per rank. The scheduler only
    /// names devices of one group; a leader that names others (another
    /// view of this node, a bug) gets an error that says what it asked for.
    pub fn resolve(&self, ids: &[u32]) -> Result<Vec<ComputeDevice>, DeviceError> {
        if ids.is_empty() {
            return Err(DeviceError::NoneAssigned);
        }
        let devices = ids
            .iter()
            .map(|&id| {
                self.devices
                    .get(id as usize)
                    .map(|(d, _)| *d)
                    .ok_or(DeviceError::NotHere {
                        id,
                        last: self.devices.len().saturating_sub(1),
                    })
            })
            .collect::<Result<Vec<_>, _>>()?;
        let cpu = devices.iter().filter(|d| **d == ComputeDevice::Cpu).count();
        if cpu != 0 && cpu != devices.len() {
            return Err(DeviceError::Mixed(ids.to_vec()));
        }
        for (i, d) in devices.iter().enumerate() {
            if *d != ComputeDevice::Cpu && devices[..i].contains(d) {
                return Err(DeviceError::GpuTwice(ids.to_vec()));
            }
        }
        Ok(devices)
    }
}

/// A group of GPUs to offer, and its members: each the device it computes
/// on and the GPU it is.
pub type GpuGroup = (pb::DeviceGroup, Vec<(ComputeDevice, GpuIdentity)>);

/// The GPU groups this worker offers, by flavor, with their members: the
/// NVIDIA GPUs that CUDA can open (`cuda_ordinal` says which ordinal a GPU
/// has, `None` where CUDA does not see it). AMD GPUs are not offered:
/// candle has no ROCm backend.
pub fn offered_gpus(
    gpus: &[GpuInfo],
    cuda_ordinal: impl Fn(&GpuInfo) -> Option<usize>,
) -> Vec<GpuGroup> {
    let usable: Vec<(GpuInfo, usize)> = gpus
        .iter()
        .filter(|g| g.vendor == Vendor::Nvidia)
        .filter_map(|g| cuda_ordinal(g).map(|o| (g.clone(), o)))
        .collect();
    let infos: Vec<GpuInfo> = usable.iter().map(|(g, _)| g.clone()).collect();
    gpu_groups(&infos)
        .into_iter()
        .map(|group| {
            let members = usable
                .iter()
                .filter(|(g, _)| g.flavor == group.flavor)
                .map(|(g, ordinal)| (ComputeDevice::Cuda { ordinal: *ordinal }, g.identity()))
                .collect();
            (group, members)
        })
        .collect()
}

/// A PCI address as NVML writes it (`00000000:3B:00.0`, domain:bus:device.function,
/// hex) as (domain, bus, device), to match a GPU NVML found with CUDA's
/// ordinal for it (CUDA numbers GPUs fastest first unless told otherwise,
/// and CUDA_VISIBLE_DEVICES renumbers them; NVML does neither).
pub fn parse_pci_bus_id(text: &str) -> Option<(u32, u32, u32)> {
    let (domain, rest) = text.trim().split_once(':')?;
    let (bus, rest) = rest.split_once(':')?;
    let device = rest.split('.').next()?;
    let hex = |s: &str| u32::from_str_radix(s, 16).ok();
    Some((hex(domain)?, hex(bus)?, hex(device)?))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::device::Telemetry;

    fn gpu(vendor: Vendor, index: u32, flavor: &str, bus: &str) -> GpuInfo {
        GpuInfo {
            vendor,
            index,
            product: flavor.into(),
            flavor: flavor.into(),
            memory_bytes: 80 << 30,
            pci_bus_id: Some(bus.into()),
            uuid: Some(format!("GPU-{vendor:?}-{index}")),
            peers: Vec::new(),
            telemetry: Telemetry::default(),
        }
    }

    #[test]
    fn devices_parse_as_cli_flags() {
        assert_eq!(ComputeDevice::parse("cpu"), Ok(ComputeDevice::Cpu));
        assert_eq!(
            ComputeDevice::parse("cuda"),
            Ok(ComputeDevice::Cuda { ordinal: 0 })
        );
        assert_eq!(
            ComputeDevice::parse("cuda:3"),
            Ok(ComputeDevice::Cuda { ordinal: 3 })
        );
        for bad in ["gpu", "cuda:", "cuda:-1", "rocm:0"] {
            assert!(
                ComputeDevice::parse(bad).is_err_and(|e| e.to_string().contains("cuda:N")),
                "{bad}"
            );
        }
    }

    #[test]
    fn pci_addresses_parse_as_nvml_and_cuda_write_them() {
        assert_eq!(parse_pci_bus_id("00000000:3B:00.0"), Some((0, 0x3b, 0)));
        assert_eq!(parse_pci_bus_id("0001:c1:1f.0"), Some((1, 0xc1, 0x1f)));
        assert_eq!(parse_pci_bus_id("garbage"), None);
        assert_eq!(parse_pci_bus_id("0000:zz:00.0"), None);
    }

    #[test]
    fn only_gpus_cuda_opens_are_offered_numbered_by_their_cuda_ordinal() {
        let gpus = [
            gpu(Vendor::Nvidia, 0, "nvidia-h100-80gb", "00000000:1A:00.0"),
            gpu(Vendor::Nvidia, 1, "nvidia-l4", "00000000:2A:00.0"),
            gpu(Vendor::Nvidia, 2, "nvidia-h100-80gb", "00000000:3A:00.0"),
            gpu(Vendor::Amd, 0, "amd-mi300x", "0000:4a:00.0"),
            gpu(Vendor::Nvidia, 3, "nvidia-h100-80gb", "00000000:5A:00.0"),
        ];
        // CUDA sees GPUs 0, 1 and 2 in another order, not GPU 3 (hidden
        // by CUDA_VISIBLE_DEVICES); AMD is never offered.
        let ordinals = [(0x1a, 2), (0x2a, 0), (0x3a, 1)];
        let cuda_ordinal = |g: &GpuInfo| {
            let (_, bus, _) = parse_pci_bus_id(g.pci_bus_id.as_deref()?)?;
            ordinals.iter().find(|(b, _)| *b == bus).map(|(_, o)| *o)
        };
        let offered = offered_gpus(&gpus, cuda_ordinal);
        // (flavor, count, [(CUDA ordinal, uuid)]) per group.
        let summary: Vec<(String, u32, Vec<String>)> = offered
            .into_iter()
            .map(|(g, members)| {
                let members = members
                    .into_iter()
                    .map(|(d, id)| format!("{d:?} {}", id.uuid))
                    .collect();
                (g.flavor, g.count, members)
            })
            .collect();
        let cuda = |ordinal, uuid: &str| format!("{:?} {uuid}", ComputeDevice::Cuda { ordinal });
        assert_eq!(
            summary,
            [
                (
                    "nvidia-h100-80gb".to_string(),
                    2,
                    vec![cuda(2, "GPU-Nvidia-0"), cuda(1, "GPU-Nvidia-2")]
                ),
                ("nvidia-l4".to_string(), 1, vec![cuda(0, "GPU-Nvidia-1")]),
            ],
            "each offered device keeps the identity of the GPU it is"
        );
    }

    /// The metrics name the GPUs a job holds: real ones by what the driver
    /// said, simulated ones of a GPU flavor by vendor and a number; CPU
    /// slots are no GPU.
    #[test]
    fn the_gpus_an_assignment_holds_are_known_by_identity() {
        let group = |flavor: &str, count, simulated| pb::DeviceGroup {
            flavor: flavor.into(),
            count,
            memory_bytes: 0,
            simulated,
            free_memory_bytes: None,
        };
        let h100 = GpuIdentity {
            vendor: "nvidia".into(),
            index: 3,
            uuid: "GPU-8d0c6a3e-0000-4000-8000-000000000003".into(),
            pci_bus_id: "00000000:5A:00.0".into(),
        };
        let mut real = DeviceTable::default();
        real.push(group("cpu", 2, false), vec![ComputeDevice::Cpu; 2]);
        let cuda = ComputeDevice::Cuda { ordinal: 0 };
        real.push_gpus(
            group("nvidia-h100-80gb", 1, false),
            vec![(cuda, h100.clone())],
        );
        assert_eq!(real.gpus_of(&[2]), [h100]);
        assert!(real.gpus_of(&[0, 1]).is_empty(), "CPU slots are no GPU");
        assert!(real.gpus_of(&[7]).is_empty(), "a device it does not have");

        let mut simulated = DeviceTable::default();
        simulated.push_simulated(group("nvidia-l4", 2, true));
        simulated.push_simulated(group("cpu", 1, true));
        simulated.push_simulated(group("nvidia-h100-80gb", 1, true));
        simulated.push_simulated(group("amd-mi300x", 1, true));
        let named: Vec<(String, u32)> = simulated
            .gpus_of(&[0, 1, 2, 3, 4])
            .into_iter()
            .map(|g| {
                assert_eq!((g.uuid.as_str(), g.pci_bus_id.as_str()), ("", ""));
                (g.vendor, g.index)
            })
            .collect();
        let expected = [("nvidia", 0), ("nvidia", 1), ("nvidia", 2), ("amd", 0)];
        let expected: Vec<(String, u32)> =
            expected.iter().map(|(v, i)| (v.to_string(), *i)).collect();
        assert_eq!(named, expected, "the simulated cpu slot (device 2) is none");
        assert_eq!(simulated.resolve(&[4]), Ok(vec![ComputeDevice::Cpu]));
    }

    #[test]
    fn assignments_resolve_in_the_schedulers_numbering_or_say_why_not() {
        let group = |flavor: &str, count| pb::DeviceGroup {
            flavor: flavor.into(),
            count,
            memory_bytes: 0,
            simulated: false,
            free_memory_bytes: None,
        };
        let cuda = |ordinal| ComputeDevice::Cuda { ordinal };
        let mut table = DeviceTable::default();
        table.push(group("cpu", 2), vec![ComputeDevice::Cpu; 2]);
        table.push(
            group("nvidia-h100-80gb", 3),
            vec![cuda(2), cuda(0), cuda(1)],
        );
        assert_eq!(table.groups().len(), 2);
        assert_eq!(table.resolve(&[1]), Ok(vec![ComputeDevice::Cpu]));
        assert_eq!(table.resolve(&[3, 4]), Ok(vec![cuda(0), cuda(1)]));
        assert_eq!(table.resolve(&[2]), Ok(vec![cuda(2)]));
        for (ids, expected) in [
            (vec![], "names no devices"),
            (vec![5], "device 5; this worker has devices 0 to 4"),
            (vec![1, 2], "mixes CPU and GPU"),
            (vec![2, 2], "one GPU twice"),
        ] {
            let err = table.resolve(&ids).expect_err("refused").to_string();
            assert!(err.contains(expected), "{ids:?}: {err}");
        }
        assert!(ComputeDevice::Cpu.open().is_ok_and(|d| d.is_cpu()));
        #[cfg(not(feature = "cuda"))]
        assert!(cuda(0)
            .open()
            .is_err_and(|e| e.to_string().contains("without the `cuda` feature")));
    }
}
