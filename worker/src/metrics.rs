//! The worker's Prometheus metrics.

use genfleet_proto::metrics::Registrar;
use prometheus::{
    exponential_buckets, GaugeVec, HistogramVec, IntCounterVec, IntGauge, IntGaugeVec, Registry,
};

use crate::device::GpuInfo;

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
}

impl WorkerMetrics {
    /// Metrics of worker `node`; every series carries a `node` label.
    pub fn new(node: &str) -> Result<Self, prometheus::Error> {
        let labels = [("node".to_string(), node.to_string())].into();
        let registry = Registry::new_custom(None, Some(labels))?;
        genfleet_proto::metrics::register_process_metrics(&registry)?;
        let r = Registrar(&registry);
        // Per GPU (vendor, index), and for memory also total or used.
        let gpu = |name: &str, help: &str| r.gauge_vec(name, help, &["vendor", "index"]);
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
                &["vendor", "index", "flavor", "product"],
            )?,
            gpu_memory_bytes: r.gauge_vec(
                "genfleet_worker_gpu_memory_bytes",
                "GPU memory, total and used",
                &["vendor", "index", "kind"],
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
    /// Exports what the GPUs report now (figures a GPU does not give are left out).
    pub fn set_gpus(&self, gpus: &[GpuInfo]) {
        for gpu in gpus {
            let (vendor, index) = (gpu.vendor.label(), gpu.index.to_string());
            let id = [vendor, index.as_str()];
            self.gpu_info
                .with_label_values(&[
                    vendor,
                    index.as_str(),
                    gpu.flavor.as_str(),
                    gpu.product.as_str(),
                ])
                .set(1);
            let total = [vendor, index.as_str(), "total"];
            self.gpu_memory_bytes
                .with_label_values(&total)
                .set(gpu.memory_bytes as f64);
            let t = &gpu.telemetry;
            if let Some(used) = t.memory_used_bytes {
                let used_labels = [vendor, index.as_str(), "used"];
                self.gpu_memory_bytes
                    .with_label_values(&used_labels)
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
