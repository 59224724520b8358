//! amdgpu discovery over a recorded sysfs tree (two MI300X cards: one whose
//! kernel names the product, one known only by its PCI id; a display
//! connector, a render node and an NVIDIA card that must be ignored).

use std::path::PathBuf;

use genfleet_worker::device::{amdgpu, gpu_groups, gpu_notices, Telemetry, Vendor};

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
