//! What a plan reports: wait and end-to-end quantiles per class and queue,
//! utilization and cost per flavor, preemptions, borrowing, jobs not done,
//! the service-level targets met or missed, and the conservation checks
//! every run must pass.

use std::collections::BTreeMap;

use genfleet_scheduler::policy::Qos;
use serde::Serialize;

use super::engine::{JobOutcome, SimOutcome};
use super::fleet::Fleet;

#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct Quantiles {
    pub p50: f64,
    pub p95: f64,
    pub p99: f64,
    pub mean: f64,
}

impl Quantiles {
    /// Nearest-rank quantiles; zeros for no values.
    pub fn of(mut values: Vec<f64>) -> Self {
        if values.is_empty() {
            return Self::default();
        }
        values.sort_by(f64::total_cmp);
        let at = |q: f64| {
            let rank = (q * values.len() as f64).ceil() as usize;
            values[rank.clamp(1, values.len()) - 1]
        };
        Self {
            p50: at(0.50),
            p95: at(0.95),
            p99: at(0.99),
            mean: values.iter().sum::<f64>() / values.len() as f64,
        }
    }

    pub fn get(&self, quantile: Quantile) -> f64 {
        match quantile {
            Quantile::P50 => self.p50,
            Quantile::P95 => self.p95,
            Quantile::P99 => self.p99,
        }
    }
}

/// Jobs of one class or one queue.
#[derive(Debug, Clone, Serialize)]
pub struct GroupStats {
    pub name: String,
    pub jobs: u64,
    pub started: u64,
    pub completed: u64,
    /// Seconds from arrival to first start; a job that never started
    /// counts the time it waited until the end of the run (a lower bound).
    pub wait_s: Quantiles,
    /// Seconds from arrival to completion, of completed jobs.
    pub end_to_end_s: Quantiles,
    /// P(wait > 0): the share of the jobs that waited more than
    /// [`WAITED_S`] (a job that never started waited).
    pub waited: f64,
    pub preemptions: u64,
}

/// A wait longer than this counts as waiting for P(wait > 0): above the
/// scheduling delay of a job that finds a device free (its arrival
/// rounded up to the ms, then at most the leader's 5 ms gap between
/// cycles), below any wait for a device to free up that matters.
pub const WAITED_S: f64 = 0.010;

#[derive(Debug, Clone, Serialize)]
pub struct FlavorStats {
    pub flavor: String,
    pub devices: u64,
    /// Share of the devices' time that jobs held them.
    pub utilization: f64,
    /// What the devices cost over the run, busy or not.
    pub cost: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct QueueUse {
    pub queue: String,
    pub device_hours: f64,
    /// Share of its device-hours beyond its nominal quota (borrowed).
    pub borrowed_share: f64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Quantile {
    P50,
    P95,
    P99,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Metric {
    Wait,
    EndToEnd,
}

/// A service-level target: `interactive.p95_wait<=30s`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Target {
    /// A class (`interactive`) or a queue name.
    pub scope: String,
    pub quantile: Quantile,
    pub metric: Metric,
    pub max_s: f64,
}

impl Target {
    /// Parses `SCOPE.pNN_wait<=SECONDS` or `SCOPE.pNN_e2e<=SECONDS`
    /// (seconds, or with a unit: 30s, 5m, 1h).
    pub fn parse(text: &str) -> Result<Self, String> {
        let usage = || {
            format!("target {text:?}: write it as CLASS_OR_QUEUE.p95_wait<=30s (p50, p95 or p99; wait or e2e)")
        };
        let (left, limit) = text.split_once("<=").ok_or_else(usage)?;
        let (scope, measure) = left.trim().split_once('.').ok_or_else(usage)?;
        let (quantile, metric) = measure.split_once('_').ok_or_else(usage)?;
        let quantile = match quantile {
            "p50" => Quantile::P50,
            "p95" => Quantile::P95,
            "p99" => Quantile::P99,
            _ => return Err(usage()),
        };
        let metric = match metric {
            "wait" => Metric::Wait,
            "e2e" => Metric::EndToEnd,
            _ => return Err(usage()),
        };
        let limit = limit.trim();
        let max_s = match humantime::parse_duration(limit) {
            Ok(d) => d.as_secs_f64(),
            Err(_) => limit.parse::<f64>().map_err(|_| usage())?,
        };
        if !max_s.is_finite() || max_s < 0.0 || scope.is_empty() {
            return Err(usage());
        }
        Ok(Self {
            scope: scope.to_string(),
            quantile,
            metric,
            max_s,
        })
    }
}

/// Refuses, before anything is simulated, a target whose scope names no
/// class or queue of the workload's jobs: it could only fail at the end.
pub fn check_target_scopes(
    targets: &[Target],
    jobs: &[super::workload::JobRequest],
) -> Result<(), String> {
    for t in targets {
        let known = jobs
            .iter()
            .any(|j| j.qos.label() == t.scope || j.queue == t.scope);
        if !known {
            return Err(format!(
                "target {:?}: no jobs of a class or queue named {:?} in the workload",
                render_target(t),
                t.scope
            ));
        }
    }
    Ok(())
}

#[derive(Debug, Clone, Serialize)]
pub struct TargetResult {
    pub target: String,
    pub actual_s: f64,
    pub limit_s: f64,
    pub met: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// Jobs that arrived before the run ended.
    pub jobs: u64,
    /// Jobs of the workload that would have arrived after it ended.
    pub arrived_after_end: u64,
    pub completed: u64,
    pub running_at_end: u64,
    pub pending_at_end: u64,
    pub duration_s: f64,
    pub cycles: u64,
    pub preemptions: u64,
    pub cost: f64,
    pub classes: Vec<GroupStats>,
    pub queues: Vec<GroupStats>,
    pub flavors: Vec<FlavorStats>,
    pub queue_use: Vec<QueueUse>,
    pub targets: Vec<TargetResult>,
}

impl Report {
    pub fn all_targets_met(&self) -> bool {
        self.targets.iter().all(|t| t.met)
    }
}

fn group(name: &str, jobs: &[&JobOutcome], end_s: f64) -> GroupStats {
    let wait: Vec<f64> = jobs
        .iter()
        .map(|j| j.first_start_s.unwrap_or(end_s) - j.arrival_s)
        .collect();
    let waited = wait.iter().filter(|w| **w > WAITED_S).count();
    let e2e = jobs
        .iter()
        .filter_map(|j| Some(j.end_s? - j.arrival_s))
        .collect();
    GroupStats {
        name: name.to_string(),
        jobs: jobs.len() as u64,
        started: jobs.iter().filter(|j| j.first_start_s.is_some()).count() as u64,
        completed: jobs.iter().filter(|j| j.end_s.is_some()).count() as u64,
        waited: waited as f64 / jobs.len().max(1) as f64,
        wait_s: Quantiles::of(wait),
        end_to_end_s: Quantiles::of(e2e),
        preemptions: jobs.iter().map(|j| u64::from(j.preemptions)).sum(),
    }
}

/// The report of a run; fails if the run broke a conservation law (a bug
/// in the simulation, never an input's fault).
pub fn report(outcome: &SimOutcome, fleet: &Fleet, targets: &[Target]) -> Result<Report, String> {
    check_conservation(outcome, fleet)?;
    let end = outcome.duration_s;
    // Jobs that would arrive after the run ended are not part of it.
    let arrived: Vec<&JobOutcome> = outcome.jobs.iter().filter(|j| j.arrival_s <= end).collect();
    let classes: Vec<GroupStats> = Qos::ALL
        .iter()
        .rev()
        .filter_map(|qos| {
            let jobs: Vec<&JobOutcome> =
                arrived.iter().copied().filter(|j| j.qos == *qos).collect();
            (!jobs.is_empty()).then(|| group(qos.label(), &jobs, end))
        })
        .collect();
    let mut by_queue: BTreeMap<&str, Vec<&JobOutcome>> = BTreeMap::new();
    for job in &arrived {
        by_queue.entry(&job.queue).or_default().push(job);
    }
    let queues: Vec<GroupStats> = by_queue
        .iter()
        .map(|(name, jobs)| group(name, jobs, end))
        .collect();
    let hours = end / 3600.0;
    let flavors = fleet
        .pools
        .iter()
        .zip(&outcome.busy_device_s)
        .map(|(pool, busy)| {
            let devices = u64::from(pool.nodes) * u64::from(pool.devices_per_node);
            FlavorStats {
                flavor: pool.flavor.clone(),
                devices,
                utilization: if devices > 0 && end > 0.0 {
                    busy / (devices as f64 * end)
                } else {
                    0.0
                },
                cost: devices as f64 * hours * pool.price_per_device_hour,
            }
        })
        .collect::<Vec<_>>();
    let queue_use = outcome
        .queue_device_s
        .iter()
        .map(|(queue, (used, borrowed))| QueueUse {
            queue: queue.clone(),
            device_hours: used / 3600.0,
            borrowed_share: if *used > 0.0 { borrowed / used } else { 0.0 },
        })
        .collect();
    let mut results = Vec::new();
    for t in targets {
        let stats = classes
            .iter()
            .chain(&queues)
            .find(|g| g.name == t.scope)
            .ok_or_else(|| {
                format!(
                    "target {:?}: no jobs of a class or queue named {:?} in the workload",
                    render_target(t),
                    t.scope
                )
            })?;
        let actual = match t.metric {
            Metric::Wait => stats.wait_s.get(t.quantile),
            Metric::EndToEnd => stats.end_to_end_s.get(t.quantile),
        };
        // A class whose jobs did not all complete cannot meet an
        // end-to-end target, whatever the completed ones took.
        let unfinished = match t.metric {
            Metric::EndToEnd => stats.completed < stats.jobs,
            // A job that never started has no wait to meet a target with.
            Metric::Wait => stats.started < stats.jobs,
        };
        results.push(TargetResult {
            target: render_target(t),
            actual_s: actual,
            limit_s: t.max_s,
            met: actual <= t.max_s && !unfinished,
        });
    }
    let completed = arrived.iter().filter(|j| j.end_s.is_some()).count() as u64;
    let started = arrived
        .iter()
        .filter(|j| j.first_start_s.is_some() && j.end_s.is_none())
        .count() as u64;
    let never = arrived.len() as u64 - completed - started;
    Ok(Report {
        jobs: arrived.len() as u64,
        arrived_after_end: (outcome.jobs.len() - arrived.len()) as u64,
        completed,
        // Started and not ended: running, or pending again after a preemption.
        running_at_end: started,
        pending_at_end: never,
        duration_s: end,
        cycles: outcome.cycles,
        preemptions: outcome.jobs.iter().map(|j| u64::from(j.preemptions)).sum(),
        cost: flavors.iter().map(|f| f.cost).sum(),
        classes,
        queues,
        flavors,
        queue_use,
        targets: results,
    })
}

pub fn render_target(t: &Target) -> String {
    let quantile = match t.quantile {
        Quantile::P50 => "p50",
        Quantile::P95 => "p95",
        Quantile::P99 => "p99",
    };
    let metric = match t.metric {
        Metric::Wait => "wait",
        Metric::EndToEnd => "e2e",
    };
    format!("{}.{quantile}_{metric}<={}s", t.scope, t.max_s)
}

/// Each job starts after it arrives and ends after it starts, at most
/// once; no pool's devices are held longer than they exist.
pub fn check_conservation(outcome: &SimOutcome, fleet: &Fleet) -> Result<(), String> {
    for (i, job) in outcome.jobs.iter().enumerate() {
        if let Some(start) = job.first_start_s {
            if start + 1e-9 < job.arrival_s {
                return Err(format!(
                    "job {i} started at {start} s before it arrived at {} s",
                    job.arrival_s
                ));
            }
        }
        if let Some(end) = job.end_s {
            let Some(start) = job.first_start_s else {
                return Err(format!("job {i} ended without starting"));
            };
            if end + 1e-9 < start {
                return Err(format!(
                    "job {i} ended at {end} s before it started at {start} s"
                ));
            }
        }
    }
    for (pool, busy) in fleet.pools.iter().zip(&outcome.busy_device_s) {
        let available =
            (f64::from(pool.nodes) * f64::from(pool.devices_per_node)) * outcome.duration_s;
        if *busy > available * (1.0 + 1e-9) + 1e-6 {
            return Err(format!(
                "{} devices were held {busy:.1} device-seconds of the {available:.1} there were",
                pool.flavor
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_are_nearest_rank() {
        let q = Quantiles::of((1..=100).map(f64::from).collect());
        assert_eq!((q.p50, q.p95, q.p99), (50.0, 95.0, 99.0));
        assert!((q.mean - 50.5).abs() < 1e-9);
        assert_eq!(Quantiles::of(vec![]), Quantiles::default());
    }

    /// A target naming no class or queue of the workload is refused
    /// before the simulation; one naming either is let through.
    #[test]
    fn a_target_scope_must_name_a_class_or_queue_of_the_workload() {
        let job = crate::workload::JobRequest {
            arrival_s: 0.0,
            queue: "research".into(),
            qos: Qos::Interactive,
            priority: 0,
            model: "tiny".into(),
            frames: 17,
            width: 256,
            height: 256,
            steps: 4,
            tp: 1,
            guidance: 5.0,
            line: 0,
        };
        let target = |text: &str| Target::parse(text).expect("valid");
        for ok in ["interactive.p95_wait<=30s", "research.p50_e2e<=1h"] {
            assert_eq!(
                check_target_scopes(&[target(ok)], std::slice::from_ref(&job)),
                Ok(()),
                "{ok}"
            );
        }
        let err = check_target_scopes(&[target("reserch.p95_wait<=30s")], &[job])
            .expect_err("an unknown scope");
        assert!(err.contains("\"reserch\""), "{err}");
    }

    #[test]
    fn targets_parse_or_say_how_to_write_them() {
        let t = Target::parse("interactive.p95_wait<=30s").expect("valid");
        assert_eq!(
            (t.scope.as_str(), t.quantile, t.metric, t.max_s),
            ("interactive", Quantile::P95, Metric::Wait, 30.0)
        );
        assert_eq!(
            Target::parse("research.p50_e2e<=1h").map(|t| t.max_s),
            Ok(3600.0)
        );
        assert_eq!(
            Target::parse("batch.p99_wait <= 90").map(|t| t.max_s),
            Ok(90.0)
        );
        for bad in [
            "interactive.p95_wait",
            "p95_wait<=3",
            "x.p90_wait<=3",
            "x.p95_lag<=3",
            "x.p95_wait<=-1",
            "x.p95_wait<=soon",
        ] {
            assert!(
                Target::parse(bad).is_err_and(|e| e.contains("p95_wait<=30s")),
                "{bad}"
            );
        }
    }
}
