//! NVIDIA GPUs through NVML (nvml-wrapper loads libnvidia-ml at run time):
//! product, memory, utilization, power, temperature, its UUID and PCI bus
//! id (the labels DCGM's exporter joins on), and the PCI bus ids of NVLink
//! peers where the driver reports them. No library, no driver,
//! or no GPU is a node without NVIDIA devices, not an error.

use nvml_wrapper::enum_wrappers::device::TemperatureSensor;
use nvml_wrapper::{Device, Nvml};

use super::{GpuInfo, Telemetry, Vendor};

/// NVLink links a device may have (NVML_NVLINK_MAX_LINKS).
const MAX_NVLINKS: u32 = 18;

/// NVML, if it loads here.
pub fn open() -> Option<Nvml> {
    match Nvml::init() {
        Ok(nvml) => Some(nvml),
        Err(e) => {
            tracing::debug!(error = %e, "NVML not available: no NVIDIA devices");
            None
        }
    }
}

pub fn discover(nvml: &Nvml) -> Vec<GpuInfo> {
    let count = nvml.device_count().unwrap_or(0);
    (0..count)
        .filter_map(|index| {
            let device = nvml.device_by_index(index).ok()?;
            let product = device.name().unwrap_or_default();
            Some(GpuInfo {
                vendor: Vendor::Nvidia,
                index,
                flavor: genfleet_proto::flavors::flavor("nvidia", &product),
                product,
                memory_bytes: device.memory_info().map_or(0, |m| m.total),
                pci_bus_id: device
                    .pci_info()
                    .ok()
                    .and_then(|p| super::pci_bus_id(&p.bus_id)),
                uuid: device.uuid().ok().filter(|u| !u.is_empty()),
                peers: nvlink_peers(&device),
                telemetry: telemetry(&device),
            })
        })
        .collect()
}

/// What device `index` reports now.
pub fn telemetry_of(nvml: &Nvml, index: u32) -> Telemetry {
    nvml.device_by_index(index)
        .map_or_else(|_| Telemetry::default(), |d| telemetry(&d))
}

fn telemetry(device: &Device) -> Telemetry {
    Telemetry {
        memory_used_bytes: device.memory_info().ok().map(|m| m.used),
        busy_percent: device.utilization_rates().ok().map(|u| u.gpu),
        power_watts: device.power_usage().ok().map(|mw| f64::from(mw) / 1e3),
        temperature_c: device
            .temperature(TemperatureSensor::Gpu)
            .ok()
            .map(f64::from),
    }
}

/// PCI bus ids at the far end of the device's active NVLinks.
fn nvlink_peers(device: &Device) -> Vec<String> {
    let mut peers: Vec<String> = (0..MAX_NVLINKS)
        .filter_map(|link| {
            let link = device.link_wrapper_for(link);
            if !link.is_active().ok()? {
                return None;
            }
            super::pci_bus_id(&link.remote_pci_info().ok()?.bus_id)
        })
        .collect();
    peers.sort();
    peers.dedup();
    peers
}
