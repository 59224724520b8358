//! The worker's Prometheus metrics.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use genfleet_proto::metrics::Registrar;
use prometheus::{
    exponential_buckets, GaugeVec, HistogramVec, IntCounterVec, IntGauge, IntGaugeVec, Registry,
};

use crate::device::{GpuIdentity, GpuInfo};

/// Labels of every per-GPU series: the worker's own numbering, and the
/// ids DCGM's exporter labels its series with (`UUID`, `pci_bus_id`), so
/// that the two join (docs/runbook.md, "Joining DCGM's GPU series").
const GPU_LABELS: [&str; 4] = ["vendor", "index", "uuid", "pci_bus_id"];

#[derive(Clone)]
pub struct WorkerMetrics {
    pub registry: Registry,
    pub step_seconds: HistogramVec,
    pub jobs: IntCounterVec,
    pub jobs_running: IntGauge,
    pub session_connected: IntGauge,
    pub devices: IntGaugeVec,
    /// Checkpoints read to resume a preempted job, by result.
    pub checkpoint_loads: IntCounterVec,
    /// 1 per discovered GPU, with what it is.
    pub gpu_info: IntGaugeVec,
    /// GPU memory by kind: total, used.
    pub gpu_memory_bytes: GaugeVec,
    pub gpu_busy_percent: GaugeVec,
    pub gpu_power_watts: GaugeVec,
    pub gpu_temperature_celsius: GaugeVec,
    /// Which job holds which GPU.
    pub gpu_assignments: GpuAssignments,
}

impl WorkerMetrics {
    /// Metrics of worker `node`; every series carries a `node` label.
    pub fn new(node: &str) -> Result<Self, prometheus::Error> {
        let labels = [("node".to_string(), node.to_string())].into();
        let registry = Registry::new_custom(None, Some(labels))?;
        genfleet_proto::metrics::register_process_metrics(&registry)?;
        let r = Registrar(&registry);
        let gpu = |name: &str, help: &str| r.gauge_vec(name, help, &GPU_LABELS);
        let m = Self {
            step_seconds: r.histogram_vec(
                "genfleet_worker_step_seconds",
                "Time of one denoising step",
                exponential_buckets(0.01, 2.0, 14)?,
                &["model", "tp"],
            )?,
            jobs: r.int_counter_vec(
                "genfleet_worker_jobs_total",
                "Jobs this worker ended, by result",
                &["result"],
            )?,
            jobs_running: r.int_gauge(
                "genfleet_worker_jobs_running",
                "Jobs running on this worker",
            )?,
            session_connected: r.int_gauge(
                "genfleet_worker_session_connected",
                "1 while the worker has a session with the scheduler leader",
            )?,
            devices: r.int_gauge_vec(
                "genfleet_worker_devices",
                "Devices offered, by flavor and whether they are simulated",
                &["flavor", "simulated"],
            )?,
            gpu_info: r.int_gauge_vec(
                "genfleet_worker_gpu_info",
                "1 per GPU the worker found (NVML or amdgpu sysfs)",
                &and(&GPU_LABELS, &["flavor", "product"]),
            )?,
            gpu_memory_bytes: r.gauge_vec(
                "genfleet_worker_gpu_memory_bytes",
                "GPU memory, total and used",
                &and(&GPU_LABELS, &["kind"]),
            )?,
            gpu_busy_percent: gpu(
                "genfleet_worker_gpu_busy_percent",
                "Percent of time the GPU was busy",
            )?,
            gpu_power_watts: gpu("genfleet_worker_gpu_power_watts", "GPU power draw")?,
            gpu_temperature_celsius: gpu(
                "genfleet_worker_gpu_temperature_celsius",
                "GPU temperature",
            )?,
            checkpoint_loads: r.int_counter_vec(
                "genfleet_worker_checkpoint_loads_total",
                "Checkpoints read to resume a preempted job: resumed, or unreadable (started over)",
                &["result"],
            )?,
            gpu_assignments: GpuAssignments::new(r.int_gauge_vec(
                "genfleet_gpu_assignment",
                "1 while job `job_id` of queue `queue` (tenant `tenant`, empty for an admin) holds this GPU",
                &GpuAssignments::LABELS,
            )?),
            registry: registry.clone(),
        };
        // Known label values start at 0, so rates and panels see a series
        // before the first job ends or resumes.
        for result in ["completed", "failed", "checkpointed", "stopped"] {
            m.jobs.with_label_values(&[result]);
        }
        for result in ["resumed", "unreadable"] {
            m.checkpoint_loads.with_label_values(&[result]);
        }
        Ok(m)
    }
}

impl WorkerMetrics {
    /// Exports what the GPUs report now (figures a GPU does not give are
    /// left out; an id it does not give is an empty label).
    pub fn set_gpus(&self, gpus: &[GpuInfo]) {
        for gpu in gpus {
            let who = gpu.identity();
            let index = who.index.to_string();
            let id = [
                who.vendor.as_str(),
                index.as_str(),
                who.uuid.as_str(),
                who.pci_bus_id.as_str(),
            ];
            let info = and(&id, &[gpu.flavor.as_str(), gpu.product.as_str()]);
            self.gpu_info.with_label_values(&info).set(1);
            self.gpu_memory_bytes
                .with_label_values(&and(&id, &["total"]))
                .set(gpu.memory_bytes as f64);
            let t = &gpu.telemetry;
            if let Some(used) = t.memory_used_bytes {
                self.gpu_memory_bytes
                    .with_label_values(&and(&id, &["used"]))
                    .set(used as f64);
            }
            let figures = [
                (&self.gpu_busy_percent, t.busy_percent.map(f64::from)),
                (&self.gpu_power_watts, t.power_watts),
                (&self.gpu_temperature_celsius, t.temperature_c),
            ];
            for (gauge, value) in figures {
                if let Some(value) = value {
                    gauge.with_label_values(&id).set(value);
                }
            }
        }
    }
}

/// A GPU's labels followed by those of one metric.
fn and<'a>(gpu: &[&'a str], extra: &[&'a str]) -> Vec<&'a str> {
    gpu.iter().chain(extra).copied().collect()
}

/// `genfleet_gpu_assignment{uuid, pci_bus_id, index, vendor, job_id, queue,
/// tenant}`: 1 while a job holds the GPU, gone when it lets go. Counted: a
/// job stopped and started again under one lease may hold its GPUs twice
/// for a moment, and the first run's end must not remove the second's
/// series.
#[derive(Clone)]
pub struct GpuAssignments {
    gauge: IntGaugeVec,
    held: Arc<Mutex<HashMap<[String; 7], usize>>>,
}

impl GpuAssignments {
    const LABELS: [&'static str; 7] = [
        "uuid",
        "pci_bus_id",
        "index",
        "vendor",
        // Not `job`: Prometheus's target label would rename it `exported_job`.
        "job_id",
        "queue",
        "tenant",
    ];

    fn new(gauge: IntGaugeVec) -> Self {
        Self {
            gauge,
            held: Arc::default(),
        }
    }

    /// Exports that job `job` of `queue` and `tenant` holds `gpus` until
    /// the returned hold is dropped.
    #[must_use = "the series is removed when the hold is dropped"]
    pub fn hold(&self, job: &str, queue: &str, tenant: &str, gpus: &[GpuIdentity]) -> GpuHold {
        let series: Vec<[String; 7]> = gpus
            .iter()
            .map(|gpu| {
                [
                    gpu.uuid.clone(),
                    gpu.pci_bus_id.clone(),
                    gpu.index.to_string(),
                    gpu.vendor.clone(),
                    job.to_string(),
                    queue.to_string(),
                    tenant.to_string(),
                ]
            })
            .collect();
        let mut held = self.held.lock().unwrap_or_else(|e| e.into_inner());
        for labels in &series {
            *held.entry(labels.clone()).or_default() += 1;
            self.gauge
                .with_label_values(&labels.each_ref().map(String::as_str))
                .set(1);
        }
        GpuHold {
            assignments: self.clone(),
            series,
        }
    }
}

/// A job's hold on its GPUs in `genfleet_gpu_assignment`; dropping it
/// removes the series (however the run ends, a panic included).
pub struct GpuHold {
    assignments: GpuAssignments,
    series: Vec<[String; 7]>,
}

impl Drop for GpuHold {
    fn drop(&mut self) {
        let mut held = self
            .assignments
            .held
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        for labels in &self.series {
            let Some(count) = held.get_mut(labels) else {
                continue;
            };
            *count -= 1;
            if *count == 0 {
                held.remove(labels);
                let values = labels.each_ref().map(String::as_str);
                // Only absent if someone reset the gauge: nothing to remove.
                let _ = self.assignments.gauge.remove_label_values(&values);
            }
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// The label sets of `name`'s series, as `name=value` strings (the
    /// registry's own `node` label left out).
    pub(crate) fn series(metrics: &WorkerMetrics, name: &str) -> Vec<Vec<String>> {
        let families = metrics.registry.gather();
        let family = families.iter().find(|f| f.name() == name);
        family
            .map(|f| {
                f.get_metric()
                    .iter()
                    .map(|m| {
                        m.get_label()
                            .iter()
                            .filter(|l| l.name() != "node")
                            .map(|l| format!("{}={}", l.name(), l.value()))
                            .collect()
                    })
                    .collect()
            })
            .unwrap_or_default()
    }

    fn gpu(index: u32, uuid: &str) -> GpuIdentity {
        GpuIdentity {
            vendor: "nvidia".into(),
            index,
            uuid: uuid.into(),
            pci_bus_id: format!("00000000:{:02X}:00.0", 0x10 + index),
        }
    }

    #[test]
    fn a_hold_exports_each_gpu_of_the_job_until_it_is_dropped() {
        let metrics = WorkerMetrics::new("n").expect("metrics");
        let assignments = &metrics.gpu_assignments;
        let hold = assignments.hold("j-1", "render", "acme", &[gpu(0, "GPU-a"), gpu(1, "GPU-b")]);
        let cpu_job = assignments.hold("j-2", "default", "", &[]);
        let expected = |index: u32, uuid: &str| {
            let bus = format!("00000000:{:02X}:00.0", 0x10 + index);
            [
                format!("index={index}"),
                "job_id=j-1".into(),
                format!("pci_bus_id={bus}"),
                "queue=render".into(),
                "tenant=acme".into(),
                format!("uuid={uuid}"),
                "vendor=nvidia".into(),
            ]
            .to_vec()
        };
        assert_eq!(
            series(&metrics, "genfleet_gpu_assignment"),
            [expected(0, "GPU-a"), expected(1, "GPU-b")],
            "a job on CPU slots holds no GPU"
        );
        drop(hold);
        drop(cpu_job);
        assert!(series(&metrics, "genfleet_gpu_assignment").is_empty());
    }

    /// A job stopped and started again under one lease: the first run's
    /// end leaves the second run's series.
    #[test]
    fn two_runs_of_a_job_on_one_gpu_keep_its_series_until_both_end() {
        let metrics = WorkerMetrics::new("n").expect("metrics");
        let first = metrics
            .gpu_assignments
            .hold("j-1", "q", "t", &[gpu(0, "GPU-a")]);
        let second = metrics
            .gpu_assignments
            .hold("j-1", "q", "t", &[gpu(0, "GPU-a")]);
        drop(first);
        assert_eq!(series(&metrics, "genfleet_gpu_assignment").len(), 1);
        drop(second);
        assert!(series(&metrics, "genfleet_gpu_assignment").is_empty());
    }

    /// A GPU that gives no uuid or PCI address gets empty labels, on every
    /// per-GPU series, never a panic.
    #[test]
    fn gpu_series_carry_the_ids_dcgm_joins_on_even_when_unknown() {
        use crate::device::{Telemetry, Vendor};
        let metrics = WorkerMetrics::new("n").expect("metrics");
        let known = GpuInfo {
            vendor: Vendor::Nvidia,
            index: 0,
            product: "NVIDIA H100 80GB HBM3".into(),
            flavor: "nvidia-h100-80gb".into(),
            memory_bytes: 80 << 30,
            pci_bus_id: Some("00000000:3B:00.0".into()),
            uuid: Some("GPU-5f1c".into()),
            peers: Vec::new(),
            telemetry: Telemetry {
                memory_used_bytes: Some(1 << 30),
                busy_percent: Some(50),
                power_watts: Some(300.0),
                temperature_c: Some(40.0),
            },
        };
        let unknown = GpuInfo {
            index: 1,
            pci_bus_id: None,
            uuid: None,
            ..known.clone()
        };
        metrics.set_gpus(&[known, unknown]);
        for name in [
            "genfleet_worker_gpu_info",
            "genfleet_worker_gpu_memory_bytes",
            "genfleet_worker_gpu_busy_percent",
            "genfleet_worker_gpu_power_watts",
            "genfleet_worker_gpu_temperature_celsius",
        ] {
            let series = series(&metrics, name);
            let gpu0 = series.iter().filter(|s| s.contains(&"index=0".to_string()));
            for s in gpu0 {
                for label in ["uuid=GPU-5f1c", "pci_bus_id=00000000:3B:00.0"] {
                    assert!(s.contains(&label.to_string()), "{name}: {s:?}");
                }
            }
            let gpu1: Vec<&Vec<String>> = series
                .iter()
                .filter(|s| s.contains(&"index=1".to_string()))
                .collect();
            assert!(!gpu1.is_empty(), "{name}: {series:?}");
            for s in gpu1 {
                for label in ["uuid=", "pci_bus_id="] {
                    assert!(s.contains(&label.to_string()), "{name}: {s:?}");
                }
            }
        }
    }
}
