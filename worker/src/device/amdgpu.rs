//! AMD GPUs through the amdgpu driver's sysfs files: every
//! `/sys/class/drm/cardN/device` whose uevent says `DRIVER=amdgpu`. Reads
//! the product, VRAM total and used, busy percent, from hwmon the power
//! (µW) and temperature (m°C), and what identifies the card: its PCI
//! address (the name of the PCI device `device` links to, else the
//! uevent's `PCI_SLOT_NAME`) and `unique_id`. A file the kernel or card
//! does not offer leaves that figure unknown; nothing here is an error.

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
        pci_bus_id: pci_address(device),
        // Cards and kernels without it (before the MI100 era) have none.
        uuid: read(device, "unique_id").filter(|id| !id.is_empty()),
        peers: Vec::new(),
        telemetry: telemetry(device),
    }
}

/// The card's PCI address in NVML's form: `device` is a link to the PCI
/// device's directory, named by its address (`0000:05:00.0`); a tree
/// where it is not one (a copy of sysfs) still has the uevent's slot name.
fn pci_address(device: &Path) -> Option<String> {
    let linked = std::fs::read_link(device)
        .ok()
        .and_then(|target| Some(target.file_name()?.to_string_lossy().into_owned()))
        .and_then(|name| super::pci_bus_id(&name));
    linked.or_else(|| {
        let uevent = read(device, "uevent")?;
        let slot = uevent
            .lines()
            .find_map(|l| l.trim().strip_prefix("PCI_SLOT_NAME="))?;
        super::pci_bus_id(slot)
    })
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

#[cfg(test)]
mod tests {
    use super::*;

    /// On a node `device` links to the PCI device's directory, whose name
    /// is the address (and wins over anything else); in a copy of sysfs
    /// it may be a plain directory with only the uevent's slot name.
    #[cfg(unix)]
    #[test]
    fn the_pci_address_is_the_linked_devices_name_else_the_uevents_slot() {
        let root = tempfile::tempdir().expect("tempdir");
        let pci = root.path().join("devices/pci0000:c0/0000:c1:00.0");
        std::fs::create_dir_all(&pci).expect("mkdir");
        std::fs::write(
            pci.join("uevent"),
            "DRIVER=amdgpu\nPCI_SLOT_NAME=0000:99:00.0\n",
        )
        .expect("write");
        let linked = root.path().join("card0-device");
        std::os::unix::fs::symlink(&pci, &linked).expect("symlink");
        assert_eq!(pci_address(&linked).as_deref(), Some("00000000:C1:00.0"));

        let copied = root.path().join("copy");
        std::fs::create_dir_all(&copied).expect("mkdir");
        assert_eq!(pci_address(&copied), None, "no uevent: unknown");
        std::fs::write(
            copied.join("uevent"),
            "DRIVER=amdgpu\nPCI_SLOT_NAME=0000:c1:00.0\n",
        )
        .expect("write");
        assert_eq!(pci_address(&copied).as_deref(), Some("00000000:C1:00.0"));
        std::fs::write(copied.join("uevent"), "DRIVER=amdgpu\nPCI_SLOT_NAME=junk\n")
            .expect("write");
        assert_eq!(pci_address(&copied), None, "not an address: unknown");
    }
}
