//! A worker on a node with AMD GPUs (a recorded amdgpu sysfs tree as its
//! --sysfs-root): it finds them, exports their telemetry, and offers only
//! the CPU for jobs, since this build runs every job on the CPU.

mod common;

use common::{http_get, init_model, metric, start_scheduler, start_worker_with};

#[test]
fn a_worker_reports_its_amd_gpus_and_their_telemetry() {
    let dir = tempfile::tempdir().expect("tempdir");
    let models = dir.path().join("models");
    init_model(&models);
    let scheduler = start_scheduler(&dir.path().join("scheduler"), "127.0.0.1:0", &[]);
    let sysfs = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/worker/tests/fixtures/sysfs/mi300x-node"
    );
    let (_worker, metrics) = start_worker_with(
        &scheduler.endpoint,
        "mi300x-node",
        &models,
        &dir.path().join("artifacts"),
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
