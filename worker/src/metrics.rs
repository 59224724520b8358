//! The worker's Prometheus metrics.

use prometheus::{
    exponential_buckets, HistogramOpts, HistogramVec, IntCounterVec, IntGauge, IntGaugeVec, Opts,
    Registry,
};

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
}

impl WorkerMetrics {
    /// Metrics of worker `node`; every series carries a `node` label.
    pub fn new(node: &str) -> Result<Self, prometheus::Error> {
        let labels = [("node".to_string(), node.to_string())].into();
        let m = Self {
            registry: Registry::new_custom(None, Some(labels))?,
            step_seconds: HistogramVec::new(
                HistogramOpts::new("genfleet_worker_step_seconds", "Time of one denoising step")
                    .buckets(exponential_buckets(0.01, 2.0, 14)?),
                &["model", "tp"],
            )?,
            jobs: IntCounterVec::new(
                Opts::new(
                    "genfleet_worker_jobs_total",
                    "Jobs this worker ended, by result",
                ),
                &["result"],
            )?,
            jobs_running: IntGauge::new(
                "genfleet_worker_jobs_running",
                "Jobs running on this worker",
            )?,
            session_connected: IntGauge::new(
                "genfleet_worker_session_connected",
                "1 while the worker has a session with the scheduler leader",
            )?,
            devices: IntGaugeVec::new(
                Opts::new(
                    "genfleet_worker_devices",
                    "Devices offered, by flavor and whether they are simulated",
                ),
                &["flavor", "simulated"],
            )?,
            checkpoint_loads: IntCounterVec::new(
                Opts::new(
                    "genfleet_worker_checkpoint_loads_total",
                    "Checkpoints read to resume a preempted job: resumed, or unreadable (started over)",
                ),
                &["result"],
            )?,
        };
        m.registry.register(Box::new(m.checkpoint_loads.clone()))?;
        m.registry.register(Box::new(m.step_seconds.clone()))?;
        m.registry.register(Box::new(m.jobs.clone()))?;
        m.registry.register(Box::new(m.jobs_running.clone()))?;
        m.registry.register(Box::new(m.session_connected.clone()))?;
        m.registry.register(Box::new(m.devices.clone()))?;
        Ok(m)
    }
}
