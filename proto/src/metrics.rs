//! Metrics made and registered in one step, for the scheduler's and the
//! worker's registries: a metric built through [`Registrar`] is on
//! `/metrics` by construction, where a separate `register` call per metric
//! could be forgotten.

use prometheus::core::Collector;
use prometheus::{
    GaugeVec, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge,
    IntGaugeVec, Opts, Registry,
};

/// Makes metrics already registered in its registry.
pub struct Registrar<'a>(pub &'a Registry);

type Made<T> = Result<T, prometheus::Error>;

impl Registrar<'_> {
    fn add<C: Collector + Clone + 'static>(&self, metric: C) -> Made<C> {
        self.0.register(Box::new(metric.clone()))?;
        Ok(metric)
    }

    pub fn int_gauge(&self, name: &str, help: &str) -> Made<IntGauge> {
        self.add(IntGauge::new(name, help)?)
    }

    pub fn int_counter(&self, name: &str, help: &str) -> Made<IntCounter> {
        self.add(IntCounter::new(name, help)?)
    }

    pub fn int_gauge_vec(&self, name: &str, help: &str, labels: &[&str]) -> Made<IntGaugeVec> {
        self.add(IntGaugeVec::new(Opts::new(name, help), labels)?)
    }

    pub fn int_counter_vec(&self, name: &str, help: &str, labels: &[&str]) -> Made<IntCounterVec> {
        self.add(IntCounterVec::new(Opts::new(name, help), labels)?)
    }

    pub fn gauge_vec(&self, name: &str, help: &str, labels: &[&str]) -> Made<GaugeVec> {
        self.add(GaugeVec::new(Opts::new(name, help), labels)?)
    }

    pub fn histogram(&self, name: &str, help: &str, buckets: Vec<f64>) -> Made<Histogram> {
        self.add(Histogram::with_opts(
            HistogramOpts::new(name, help).buckets(buckets),
        )?)
    }

    pub fn histogram_vec(
        &self,
        name: &str,
        help: &str,
        buckets: Vec<f64>,
        labels: &[&str],
    ) -> Made<HistogramVec> {
        self.add(HistogramVec::new(
            HistogramOpts::new(name, help).buckets(buckets),
            labels,
        )?)
    }
}

/// The build a process runs: its version and, where the build was given
/// one (GENFLEET_REVISION at build time, as the image build sets it), its
/// git revision.
pub const REVISION: &str = match option_env!("GENFLEET_REVISION") {
    Some(revision) => revision,
    None => "unknown",
};

/// Registers what every exporter has: `genfleet_build_info{version,
/// revision}` (always 1: join on it to label other series with the build)
/// and, on Linux, the standard `process_*` metrics (CPU seconds, resident
/// memory, open file descriptors, start time).
pub fn register_process_metrics(registry: &Registry) -> Made<()> {
    let r = Registrar(registry);
    let info = r.int_gauge_vec(
        "genfleet_build_info",
        "The genfleet build this process runs; always 1",
        &["version", "revision"],
    )?;
    info.with_label_values(&[env!("CARGO_PKG_VERSION"), REVISION])
        .set(1);
    #[cfg(target_os = "linux")]
    registry.register(Box::new(
        prometheus::process_collector::ProcessCollector::for_self(),
    ))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_metric_made_here_is_gathered_and_a_second_of_its_name_is_refused() {
        let registry = Registry::new();
        let r = Registrar(&registry);
        let jobs = r
            .int_counter_vec("genfleet_test_jobs_total", "Jobs", &["result"])
            .expect("made");
        jobs.with_label_values(&["completed"]).inc();
        let names: Vec<String> = registry
            .gather()
            .iter()
            .map(|f| f.name().to_string())
            .collect();
        assert_eq!(names, ["genfleet_test_jobs_total"]);
        assert!(r.int_gauge("genfleet_test_jobs_total", "again").is_err());
    }

    #[test]
    fn every_process_says_its_build_and_its_process_figures() {
        let registry = Registry::new();
        register_process_metrics(&registry).expect("registered");
        let families = registry.gather();
        let build = families
            .iter()
            .find(|f| f.name() == "genfleet_build_info")
            .expect("build info");
        let labels: Vec<(&str, &str)> = build.get_metric()[0]
            .get_label()
            .iter()
            .map(|l| (l.name(), l.value()))
            .collect();
        assert_eq!(
            labels,
            [
                ("revision", REVISION),
                ("version", env!("CARGO_PKG_VERSION"))
            ]
        );
        #[cfg(target_os = "linux")]
        for name in [
            "process_cpu_seconds_total",
            "process_resident_memory_bytes",
            "process_open_fds",
        ] {
            assert!(families.iter().any(|f| f.name() == name), "{name}");
        }
    }
}
