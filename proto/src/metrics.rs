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
}
