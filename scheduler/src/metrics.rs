//! The scheduler's Prometheus metrics: one registry per scheduler process,
//! names `genfleet_<thing>_<unit>`, reasons and roles as labels.

use std::sync::{Arc, RwLock};

use prometheus::core::{Collector, Desc};

use crate::policy::{PreemptReason, Qos};
use crate::state::State;
use prometheus::proto::MetricFamily;
use prometheus::{
    exponential_buckets, GaugeVec, Histogram, HistogramOpts, HistogramVec, IntCounter,
    IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry,
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
    /// Budgeted queues' device-hours per period, and used this period.
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
        let secs = |name: &str, help: &str, buckets: Vec<f64>| {
            Histogram::with_opts(HistogramOpts::new(name, help).buckets(buckets))
        };
        let m = Self {
            raft_term: IntGauge::new("genfleet_raft_term", "Current raft term of this replica")?,
            raft_commit_index: IntGauge::new(
                "genfleet_raft_commit_index",
                "Highest log index known committed",
            )?,
            raft_applied_index: IntGauge::new(
                "genfleet_raft_applied_index",
                "Highest log index applied to the state",
            )?,
            raft_leader_changes: IntCounter::new(
                "genfleet_raft_leader_changes_total",
                "Times this replica saw the leader change",
            )?,
            replica_role: IntGaugeVec::new(
                Opts::new(
                    "genfleet_replica_role",
                    "1 for the raft role this replica has now",
                ),
                &["role"],
            )?,
            proposals: IntCounterVec::new(
                Opts::new(
                    "genfleet_raft_proposals_total",
                    "Commands proposed by this replica, by result",
                ),
                &["result"],
            )?,
            proposal_seconds: secs(
                "genfleet_raft_proposal_duration_seconds",
                "Time from proposing a command to applying it",
                exponential_buckets(0.0005, 2.0, 16)?,
            )?,
            jobs_submitted: IntCounter::new("genfleet_jobs_submitted_total", "Jobs accepted")?,
            jobs_forgotten: IntCounter::new(
                "genfleet_jobs_forgotten_total",
                "Ended jobs removed from the state by retention",
            )?,
            schedule_cycle_seconds: secs(
                "genfleet_schedule_cycle_seconds",
                "Time to compute one scheduling cycle",
                exponential_buckets(0.00001, 2.0, 18)?,
            )?,
            workers_connected: IntGauge::new(
                "genfleet_workers_connected",
                "Worker sessions open on this replica",
            )?,
            wait_seconds: HistogramVec::new(
                HistogramOpts::new(
                    "genfleet_job_wait_seconds",
                    "Time from submission to placement, by qos class",
                )
                .buckets(exponential_buckets(0.01, 2.0, 20)?),
                &["qos"],
            )?,
            profile_steps_per_second: GaugeVec::new(
                Opts::new(
                    "genfleet_profile_steps_per_second",
                    "Denoising steps per second the scheduler expects, learned from workers",
                ),
                &["model", "flavor", "tp"],
            )?,
            queue_devices: IntGaugeVec::new(
                Opts::new(
                    "genfleet_queue_devices",
                    "Devices of a queue by flavor: its nominal quota, in use, borrowed",
                ),
                &["queue", "flavor", "kind"],
            )?,
            queue_budget: GaugeVec::new(
                Opts::new(
                    "genfleet_queue_budget_device_hours",
                    "A budgeted queue's device-hours per period (kind=budget) and used this period (kind=used)",
                ),
                &["queue", "kind"],
            )?,
            preemptions: IntCounterVec::new(
                Opts::new(
                    "genfleet_preemptions_total",
                    "Running jobs the leader told to checkpoint and stop, by reason",
                ),
                &["reason"],
            )?,
            pending_jobs: IntGaugeVec::new(
                Opts::new(
                    "genfleet_pending_jobs",
                    "Pending jobs after the leader's last scheduling cycle",
                ),
                &["queue", "qos", "reason"],
            )?,
            kube_node_label_mismatch: IntGaugeVec::new(
                Opts::new(
                    "genfleet_kube_node_label_mismatch",
                    "1 when a node's Kubernetes GPU labels disagree with what its worker registered",
                ),
                &["node"],
            )?,
            kube_reconcile_errors: IntCounterVec::new(
                Opts::new(
                    "genfleet_kube_reconcile_errors_total",
                    "Failed Kubernetes reconciles and watch errors, by controller",
                ),
                &["controller"],
            )?,
            registry,
        };
        // Known label values start at 0, so rates and alerts see a series.
        for controller in ["nodes", "genqueues"] {
            m.kube_reconcile_errors.with_label_values(&[controller]);
        }
        let preempt_reasons = [
            PreemptReason::InteractiveOverBatch,
            PreemptReason::ReclaimQuota,
        ];
        for reason in preempt_reasons {
            m.preemptions.with_label_values(&[reason.label()]);
        }
        for qos in Qos::ALL {
            m.wait_seconds.with_label_values(&[qos.label()]);
        }
        // The results `RaftHandle::propose` counts.
        for result in ["applied", "rejected", "not_leader", "failed"] {
            m.proposals.with_label_values(&[result]);
        }
        m.registry.register(Box::new(m.raft_term.clone()))?;
        m.registry.register(Box::new(m.raft_commit_index.clone()))?;
        m.registry
            .register(Box::new(m.raft_applied_index.clone()))?;
        m.registry
            .register(Box::new(m.raft_leader_changes.clone()))?;
        m.registry.register(Box::new(m.replica_role.clone()))?;
        m.registry.register(Box::new(m.proposals.clone()))?;
        m.registry.register(Box::new(m.proposal_seconds.clone()))?;
        m.registry.register(Box::new(m.jobs_submitted.clone()))?;
        m.registry.register(Box::new(m.jobs_forgotten.clone()))?;
        m.registry
            .register(Box::new(m.schedule_cycle_seconds.clone()))?;
        m.registry.register(Box::new(m.workers_connected.clone()))?;
        m.registry.register(Box::new(m.pending_jobs.clone()))?;
        m.registry.register(Box::new(m.wait_seconds.clone()))?;
        m.registry.register(Box::new(m.queue_devices.clone()))?;
        m.registry.register(Box::new(m.preemptions.clone()))?;
        m.registry.register(Box::new(m.queue_budget.clone()))?;
        m.registry
            .register(Box::new(m.profile_steps_per_second.clone()))?;
        m.registry
            .register(Box::new(m.kube_node_label_mismatch.clone()))?;
        m.registry
            .register(Box::new(m.kube_reconcile_errors.clone()))?;
        Ok(m)
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
