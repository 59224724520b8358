//! A worker on a node with AMD GPUs (a recorded amdgpu sysfs tree as its
//! --sysfs-root): it finds them, exports their telemetry, and offers only
//! the CPU for jobs, since this build runs every job on the CPU.

use crate::common;

use common::{http_get, metric, start_worker_with, Local};

#[test]
fn a_worker_reports_its_amd_gpus_and_their_telemetry() {
    let local = Local::start(&[]);
    let sysfs = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/worker/tests/fixtures/sysfs/mi300x-node"
    );
    let (_worker, metrics) = start_worker_with(
        &local.endpoint,
        "mi300x-node",
        &local.models,
        &local.artifacts,
        &["--sysfs-root", sysfs, "--metrics-listen", "127.0.0.1:0"],
    );
    let text = http_get(metrics.as_deref().expect("metrics url"));
    for index in ["0", "1"] {
        let info = [
            ("vendor", "amd"),
            ("index", index),
            ("flavor", "amd-mi300x"),
            ("product", "AMD Instinct MI300X"),
        ];
        assert_eq!(
            metric(&text, "genfleet_worker_gpu_info", &info),
            Some(1.0),
            "{text}"
        );
    }
    let gpu0 = [("vendor", "amd"), ("index", "0")];
    assert_eq!(
        metric(&text, "genfleet_worker_gpu_power_watts", &gpu0),
        Some(750.0)
    );
    assert_eq!(
        metric(&text, "genfleet_worker_gpu_temperature_celsius", &gpu0),
        Some(45.0)
    );
    assert_eq!(
        metric(&text, "genfleet_worker_gpu_busy_percent", &gpu0),
        Some(37.0)
    );
    let total = [("vendor", "amd"), ("index", "1"), ("kind", "total")];
    let expected = (192u64 << 30) as f64;
    assert_eq!(
        metric(&text, "genfleet_worker_gpu_memory_bytes", &total),
        Some(expected)
    );
    // Offered for jobs: the CPU only.
    let cpu = [("flavor", "cpu"), ("simulated", "false")];
    assert_eq!(metric(&text, "genfleet_worker_devices", &cpu), Some(1.0));
    let gpu = [("flavor", "amd-mi300x")];
    assert_eq!(
        metric(&text, "genfleet_worker_devices", &gpu),
        None,
        "{text}"
    );
}

#[test]
fn genfleet_devices_lists_the_gpus_an_operator_would_check() {
    let sysfs = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/worker/tests/fixtures/sysfs/mi300x-node"
    );
    let out = std::process::Command::new(common::BIN)
        .args(["devices", "--sysfs-root", sysfs])
        .output()
        .expect("run genfleet devices");
    assert!(out.status.success(), "{out:?}");
    let text = String::from_utf8_lossy(&out.stdout);
    let gpu_rows: Vec<&str> = text.lines().filter(|l| l.starts_with("amd:")).collect();
    assert_eq!(gpu_rows.len(), 2, "{text}");
    // Card 0 is busy (the fixture's telemetry), card 1 idle.
    assert!(gpu_rows[0].contains("amd-mi300x") && gpu_rows[0].contains("192.0 GiB"));
    assert!(
        gpu_rows[0].contains("37%") && gpu_rows[0].contains("750 W"),
        "{text}"
    );
    assert!(gpu_rows[1].contains("0%"), "{text}");
    assert!(text.contains("cpu: "), "{text}");

    // No AMD cards under an empty root: said plainly, not an error (an
    // NVIDIA node running this test lists its own GPUs through NVML).
    let empty = tempfile::tempdir().expect("tempdir");
    let out = std::process::Command::new(common::BIN)
        .arg("devices")
        .arg("--sysfs-root")
        .arg(empty.path())
        .output()
        .expect("run genfleet devices");
    assert!(out.status.success(), "{out:?}");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(!text.contains("amd:"), "{text}");
    assert!(
        text.contains("no GPUs") || text.contains("nvidia:"),
        "{text}"
    );
}
