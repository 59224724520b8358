//! amdgpu discovery over a recorded sysfs tree (two MI300X cards: one whose
//! kernel names the product and gives a unique_id, copied as a plain
//! directory; one known only by its PCI id, whose `device` links to its PCI
//! device as on a node; a display connector, a render node and an NVIDIA
//! card that must be ignored).

use std::path::PathBuf;

use genfleet_worker::device::{amdgpu, gpu_groups, gpu_notices, Telemetry, Vendor};
use genfleet_worker::metrics::WorkerMetrics;

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/sysfs")
        .join(name)
}

#[test]
fn mi300x_cards_are_found_with_their_telemetry() {
    let gpus = amdgpu::discover(&fixture("mi300x-node"));
    assert_eq!(gpus.len(), 2, "{gpus:#?}");
    for (i, gpu) in gpus.iter().enumerate() {
        assert_eq!(gpu.vendor, Vendor::Amd);
        assert_eq!(gpu.index, i as u32);
        assert_eq!(gpu.product, "AMD Instinct MI300X", "by name or by PCI id");
        assert_eq!(gpu.flavor, "amd-mi300x");
        assert_eq!(gpu.memory_bytes, 192 << 30);
    }
    assert_eq!(
        gpus[0].telemetry,
        Telemetry {
            memory_used_bytes: Some(1 << 30),
            busy_percent: Some(37),
            power_watts: Some(750.0),
            temperature_c: Some(45.0),
        }
    );
    // The second card has no power1_average: the instantaneous reading.
    assert_eq!(gpus[1].telemetry.power_watts, Some(142.0));
    let groups = gpu_groups(&gpus);
    assert_eq!(groups.len(), 1);
    assert_eq!(
        (groups[0].flavor.as_str(), groups[0].count),
        ("amd-mi300x", 2)
    );
    assert_eq!(
        groups[0].free_memory_bytes,
        Some(191 << 30),
        "the least free of the group: card0 uses 1 GiB"
    );
}

/// The ids that join genfleet's GPU series to other exporters': the PCI
/// address in NVML's (and DCGM's) form, and amdgpu's unique_id where the
/// card has one; an empty label where it has none.
#[test]
fn mi300x_cards_are_known_by_pci_address_and_unique_id() {
    let gpus = amdgpu::discover(&fixture("mi300x-node"));
    let ids: Vec<(Option<&str>, Option<&str>)> = gpus
        .iter()
        .map(|g| (g.pci_bus_id.as_deref(), g.uuid.as_deref()))
        .collect();
    assert_eq!(
        ids,
        [
            // card0: a plain directory; the uevent's PCI_SLOT_NAME.
            (Some("00000000:05:00.0"), Some("5a3cd9e10b6f7c42")),
            // card1: the name of the PCI device its `device` links to.
            (Some("00000000:26:00.0"), None),
        ]
    );

    let metrics = WorkerMetrics::new("mi300x-node").expect("metrics");
    metrics.set_gpus(&gpus);
    let mut text = String::new();
    let encoder = prometheus::TextEncoder::new();
    encoder
        .encode_utf8(&metrics.registry.gather(), &mut text)
        .expect("encode");
    for (index, uuid, bus) in [
        ("0", "5a3cd9e10b6f7c42", "00000000:05:00.0"),
        ("1", "", "00000000:26:00.0"),
    ] {
        let labels =
            format!("index=\"{index}\",pci_bus_id=\"{bus}\",uuid=\"{uuid}\",vendor=\"amd\"");
        for name in [
            "genfleet_worker_gpu_busy_percent",
            "genfleet_worker_gpu_power_watts",
            "genfleet_worker_gpu_temperature_celsius",
        ] {
            let series = format!("{name}{{{labels},node=\"mi300x-node\"}}");
            assert!(
                text.lines().any(|l| l.starts_with(&series)),
                "no {series} in\n{text}"
            );
        }
    }
}

#[test]
fn amd_gpus_are_reported_not_offered_and_the_worker_says_why() {
    let gpus = amdgpu::discover(&fixture("mi300x-node"));
    // The same with or without CUDA: there is no ROCm backend to offer them.
    for cuda in [false, true] {
        let notices = gpu_notices(&gpus, cuda, 2);
        assert_eq!(notices.len(), 1, "{notices:?}");
        let notice = &notices[0];
        for expected in [
            "2 amd GPU(s) (amd-mi300x)",
            "no ROCm backend",
            "2 CPU device(s)",
        ] {
            assert!(notice.contains(expected), "{notice}");
        }
    }
    // NVIDIA GPUs in a build without CUDA: said once, with the way out.
    let mut nvidia = gpus.clone();
    for gpu in &mut nvidia {
        gpu.vendor = Vendor::Nvidia;
        gpu.flavor = "nvidia-h100-80gb".into();
    }
    let notices = gpu_notices(&nvidia, false, 1);
    assert_eq!(notices.len(), 1, "{notices:?}");
    assert!(
        notices[0].contains("no CUDA") && notices[0].contains("--features cuda"),
        "{}",
        notices[0]
    );
    assert!(
        gpu_notices(&nvidia, true, 1).is_empty(),
        "a CUDA build offers them"
    );
    assert!(gpu_notices(&[], false, 1).is_empty());
}

#[test]
fn a_node_without_amdgpu_has_no_amd_devices() {
    let empty = tempfile::tempdir().expect("tempdir");
    assert!(amdgpu::discover(empty.path()).is_empty());
    assert!(amdgpu::discover(&empty.path().join("missing")).is_empty());
}
