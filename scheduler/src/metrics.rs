//! The scheduler's Prometheus metrics: one registry per scheduler process,
//! names `genfleet_<thing>_<unit>`, reasons and roles as labels.

use std::sync::{Arc, RwLock};

use prometheus::core::{Collector, Desc};

use crate::policy::{PreemptReason, Qos};
use crate::state::State;
use genfleet_proto::metrics::Registrar;
use prometheus::proto::MetricFamily;
use prometheus::{
    exponential_buckets, GaugeVec, Histogram, HistogramVec, IntCounter, IntCounterVec, IntGauge,
    IntGaugeVec, Opts, Registry,
};

#[derive(Clone)]
pub struct Metrics {
    pub registry: Registry,
    pub raft_term: IntGauge,
    pub raft_commit_index: IntGauge,
    pub raft_applied_index: IntGauge,
    pub raft_leader_changes: IntCounter,
    /// 1 for the role this replica has now, 0 for the others.
    pub replica_role: IntGaugeVec,
    pub proposals: IntCounterVec,
    pub proposal_seconds: Histogram,
    pub jobs_submitted: IntCounter,
    /// Ended jobs retention removed from the state.
    pub jobs_forgotten: IntCounter,
    pub schedule_cycle_seconds: Histogram,
    pub workers_connected: IntGauge,
    /// Pending jobs after the last cycle, by queue, class and reason.
    pub pending_jobs: IntGaugeVec,
    /// From submission to placement, by class.
    pub wait_seconds: HistogramVec,
    /// The leader's learned throughput, as steps per second.
    pub profile_steps_per_second: GaugeVec,
    /// Devices per queue x flavor: nominal, used, borrowed.
    pub queue_devices: IntGaugeVec,
    /// Running jobs told to checkpoint and stop, by reason.
    pub preemptions: IntCounterVec,
    /// Budgeted queues' device-seconds per period, and used this period.
    pub queue_budget: GaugeVec,
    /// 1 where a node's Kubernetes GPU labels disagree with its worker.
    pub kube_node_label_mismatch: IntGaugeVec,
    /// Failed Kubernetes reconciles and watch errors, by controller.
    pub kube_reconcile_errors: IntCounterVec,
}

impl Metrics {
    /// Metrics of replica `replica`; every series carries a `replica` label.
    pub fn new(replica: u64) -> Result<Self, prometheus::Error> {
        let labels = [("replica".to_string(), replica.to_string())].into();
        let registry = Registry::new_custom(None, Some(labels))?;
        genfleet_proto::metrics::register_process_metrics(&registry)?;
        let r = Registrar(&registry);
        let m = Self {
            raft_term: r.int_gauge("genfleet_raft_term", "Current raft term of this replica")?,
            raft_commit_index: r.int_gauge(
                "genfleet_raft_commit_index",
                "Highest log index known committed",
            )?,
            raft_applied_index: r.int_gauge(
                "genfleet_raft_applied_index",
                "Highest log index applied to the state",
            )?,
            raft_leader_changes: r.int_counter(
                "genfleet_raft_leader_changes_total",
                "Times this replica saw the leader change",
            )?,
            replica_role: r.int_gauge_vec(
                "genfleet_replica_role",
                "1 for the raft role this replica has now",
                &["role"],
            )?,
            proposals: r.int_counter_vec(
                "genfleet_raft_proposals_total",
                "Commands proposed by this replica, by result",
                &["result"],
            )?,
            proposal_seconds: r.histogram(
                "genfleet_raft_proposal_duration_seconds",
                "Time from proposing a command to applying it",
                exponential_buckets(0.0005, 2.0, 16)?,
            )?,
            jobs_submitted: r.int_counter("genfleet_jobs_submitted_total", "Jobs accepted")?,
            jobs_forgotten: r.int_counter(
                "genfleet_jobs_forgotten_total",
                "Ended jobs removed from the state by retention",
            )?,
            schedule_cycle_seconds: r.histogram(
                "genfleet_schedule_cycle_seconds",
                "Time to compute one scheduling cycle",
                exponential_buckets(0.00001, 2.0, 18)?,
            )?,
            workers_connected: r.int_gauge(
                "genfleet_workers_connected",
                "Worker sessions open on this replica",
            )?,
            wait_seconds: r.histogram_vec(
                "genfleet_job_wait_seconds",
                "Time from submission to placement, by qos class",
                exponential_buckets(0.01, 2.0, 20)?,
                &["qos"],
            )?,
            profile_steps_per_second: r.gauge_vec(
                "genfleet_profile_steps_per_second",
                "Denoising steps per second the scheduler expects, learned from workers",
                &["model", "flavor", "tp"],
            )?,
            queue_devices: r.int_gauge_vec(
                "genfleet_queue_devices",
                "Devices of a queue by flavor: its nominal quota, in use, borrowed",
                &["queue", "flavor", "kind"],
            )?,
            queue_budget: r.gauge_vec(
                // Seconds, the base unit (promtool check metrics); queues
                // state budgets in device-hours: 1 device-hour = 3600.
                "genfleet_queue_budget_device_seconds",
                "A budgeted queue's device-seconds per period (kind=budget) and used this period (kind=used)",
                &["queue", "kind"],
            )?,
            preemptions: r.int_counter_vec(
                "genfleet_preemptions_total",
                "Running jobs the leader told to checkpoint and stop, by reason",
                &["reason"],
            )?,
            pending_jobs: r.int_gauge_vec(
                "genfleet_pending_jobs",
                "Pending jobs after the leader's last scheduling cycle",
                &["queue", "qos", "reason"],
            )?,
            kube_node_label_mismatch: r.int_gauge_vec(
                "genfleet_kube_node_label_mismatch",
                "1 when a node's Kubernetes GPU labels disagree with what its worker registered",
                &["node"],
            )?,
            kube_reconcile_errors: r.int_counter_vec(
                "genfleet_kube_reconcile_errors_total",
                "Failed Kubernetes reconciles and watch errors, by controller",
                &["controller"],
            )?,
            registry: registry.clone(),
        };
        m.start_known_series();
        Ok(m)
    }

    /// Known label values start at 0, so rates and alerts see a series.
    fn start_known_series(&self) {
        for controller in ["nodes", "genqueues"] {
            self.kube_reconcile_errors.with_label_values(&[controller]);
        }
        let preempt_reasons = [
            PreemptReason::InteractiveOverBatch,
            PreemptReason::ReclaimQuota,
        ];
        for reason in preempt_reasons {
            self.preemptions.with_label_values(&[reason.label()]);
        }
        for qos in Qos::ALL {
            self.wait_seconds.with_label_values(&[qos.label()]);
        }
        // The results `RaftHandle::propose` counts.
        for result in ["applied", "rejected", "not_leader", "failed"] {
            self.proposals.with_label_values(&[result]);
        }
    }
}

/// `genfleet_jobs{state}`, counted from the state when Prometheus scrapes
/// (not on every apply: counting is a pass over every job).
pub struct JobStateCollector {
    state: Arc<RwLock<State>>,
    gauges: IntGaugeVec,
}

impl JobStateCollector {
    pub fn new(state: Arc<RwLock<State>>) -> Result<Self, prometheus::Error> {
        let opts = Opts::new("genfleet_jobs", "Jobs in the state, by state");
        Ok(Self {
            state,
            gauges: IntGaugeVec::new(opts, &["state"])?,
        })
    }
}

impl Collector for JobStateCollector {
    fn desc(&self) -> Vec<&Desc> {
        self.gauges.desc()
    }

    fn collect(&self) -> Vec<MetricFamily> {
        let counts = self
            .state
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .count_by_state();
        for (job_state, count) in counts {
            self.gauges
                .with_label_values(&[job_state.label()])
                .set(count as i64);
        }
        self.gauges.collect()
    }
}
