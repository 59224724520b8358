//! AMD GPUs through the amdgpu driver's sysfs files: every
//! `/sys/class/drm/cardN/device` whose uevent says `DRIVER=amdgpu`. Reads
//! the product, VRAM total and used, busy percent, and from hwmon the
//! power (µW) and temperature (m°C). A file the kernel or card does not
//! offer leaves that figure unknown; nothing here is an error.

use std::path::{Path, PathBuf};

use super::{GpuInfo, Telemetry, Vendor};

/// PCI device ids of AMD data-center GPUs, for kernels without
/// `product_name` (amdgpu's pci id table).
const KNOWN_IDS: &[(u32, &str)] = &[
    (0x738c, "AMD Instinct MI100"),
    (0x7408, "AMD Instinct MI250X"),
    (0x740c, "AMD Instinct MI250X / MI250"),
    (0x740f, "AMD Instinct MI210"),
    (0x74a0, "AMD Instinct MI300A"),
    (0x74a1, "AMD Instinct MI300X"),
    (0x74a5, "AMD Instinct MI325X"),
];

/// The amdgpu devices under `root` (`/` on a real node), by card number.
pub fn discover(root: &Path) -> Vec<GpuInfo> {
    let drm = root.join("sys/class/drm");
    let Ok(entries) = std::fs::read_dir(&drm) else {
        return Vec::new();
    };
    let mut cards: Vec<(u32, PathBuf)> = entries
        .filter_map(Result::ok)
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().to_string();
            // `card0`, not `card0-DP-1` (a connector) or `renderD128`.
            let number: u32 = name.strip_prefix("card")?.parse().ok()?;
            Some((number, e.path().join("device")))
        })
        .filter(|(_, device)| is_amdgpu(device))
        .collect();
    cards.sort();
    cards
        .into_iter()
        .enumerate()
        .map(|(index, (_, device))| read_card(index as u32, &device))
        .collect()
}

fn is_amdgpu(device: &Path) -> bool {
    read(device, "uevent").is_some_and(|u| u.lines().any(|l| l.trim() == "DRIVER=amdgpu"))
}

fn read_card(index: u32, device: &Path) -> GpuInfo {
    let product = read(device, "product_name")
        .filter(|p| !p.is_empty())
        .or_else(|| {
            let id = read_hex(device, "device")?;
            let known = KNOWN_IDS.iter().find(|(known, _)| *known == id);
            Some(known.map_or_else(
                || format!("AMD GPU {id:#06x}"),
                |(_, name)| name.to_string(),
            ))
        })
        .unwrap_or_default();
    GpuInfo {
        vendor: Vendor::Amd,
        index,
        flavor: genfleet_proto::flavors::flavor("amd", &product),
        product,
        memory_bytes: read_number(device, "mem_info_vram_total").unwrap_or(0),
        pci_bus_id: None,
        peers: Vec::new(),
        telemetry: telemetry(device),
    }
}

/// What the card reports now.
pub fn telemetry(device: &Path) -> Telemetry {
    let hwmon = first_hwmon(device);
    let hwmon_number = |file: &str| hwmon.as_deref().and_then(|h| read_number(h, file));
    Telemetry {
        memory_used_bytes: read_number(device, "mem_info_vram_used"),
        busy_percent: read_number(device, "gpu_busy_percent").map(|p| p.min(100) as u32),
        // Average power where the card has it, else the instantaneous reading.
        power_watts: hwmon_number("power1_average")
            .or_else(|| hwmon_number("power1_input"))
            .map(|micro| micro as f64 / 1e6),
        temperature_c: hwmon_number("temp1_input").map(|milli| milli as f64 / 1e3),
    }
}

fn first_hwmon(device: &Path) -> Option<PathBuf> {
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(device.join("hwmon"))
        .ok()?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .collect();
    dirs.sort();
    dirs.into_iter().next()
}

fn read(dir: &Path, file: &str) -> Option<String> {
    std::fs::read_to_string(dir.join(file))
        .ok()
        .map(|s| s.trim().to_string())
}

fn read_number(dir: &Path, file: &str) -> Option<u64> {
    read(dir, file)?.parse().ok()
}

fn read_hex(dir: &Path, file: &str) -> Option<u32> {
    let text = read(dir, file)?;
    u32::from_str_radix(text.trim_start_matches("0x"), 16).ok()
}
