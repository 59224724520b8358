//! Stopping a run as soon as it has provably missed a target, so that a
//! sweep spends no time finishing fleets that cannot be chosen.
//!
//! # Why it is a proof
//!
//! A target asks that the p-quantile of a measure over the `n` jobs of its
//! scope be at most `L`; the report takes the nearest-rank quantile, the
//! `r`-th smallest value with `r = ceil(p n)`. A job is *late* once its
//! final value must exceed `L` whatever happens after now:
//!
//! - it started after waiting more than `L`, or
//! - it arrived more than `L` before now and has not started: it will
//!   start later than now (its wait then exceeds `L`), or never (the
//!   report then counts its wait until the end of the run, later still).
//!
//! An end-to-end time is at least the wait, so the same jobs are late for
//! an `e2e` target. Once `n - r + 1` jobs are late, at most `r - 1` values
//! can be `L` or less, so the `r`-th smallest exceeds `L`: the target is
//! missed, and the rest of the run cannot change that. (A target whose
//! jobs do not all start, or for e2e all end, is missed by the report
//! anyway.) `n` is the scope's jobs in the whole workload; a run cut short
//! by a horizon has fewer, and `n - r` only shrinks with `n`, so the count
//! stays enough.
//!
//! The same late jobs bound the quantile from below: at least `n - r + 1`
//! values are at least the `(n - r + 1)`-th largest of their waits so far,
//! so the quantile is too.

use std::ops::ControlFlow;

use super::engine::Observer;
use super::report::{Quantile, Target};
use super::workload::JobRequest;

/// Slack on comparisons with a limit, far above the rounding of seconds
/// (ms on a clock of up to a year) and far below anything a target sets.
const SLACK_S: f64 = 1e-6;

/// A target proven missed.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Missed {
    /// Its index among the targets.
    pub target: usize,
    /// The quantile will be at least this (seconds).
    pub at_least_s: f64,
}

/// Why a run was stopped early.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Abandoned {
    /// Simulated seconds when the last proof was complete.
    pub at_s: f64,
    /// Every target proven missed by then (at least one).
    pub missed: Vec<Missed>,
}

/// One target's jobs and how many of them are late.
struct Watch {
    limit_s: f64,
    /// Late jobs that prove the target missed: `n - r + 1`.
    needed: usize,
    /// The scope's jobs, by arrival.
    jobs: Vec<u32>,
    /// Of `jobs`, how many arrived more than the limit before now.
    overdue: usize,
    /// Of those, how many started within the limit (not late).
    overdue_on_time: usize,
}

impl Watch {
    fn late(&self) -> usize {
        self.overdue - self.overdue_on_time
    }
}

/// An [`Observer`] that stops the run once some target is provably
/// missed (see the module's doc).
pub struct Abandon<'a> {
    requests: &'a [JobRequest],
    watches: Vec<Watch>,
    /// Per job: its first start, once it has one.
    start_s: Vec<Option<f64>>,
    now_s: f64,
    abandoned: Option<Abandoned>,
}

impl<'a> Abandon<'a> {
    /// `requests` as the simulation gets them; a scope names a class or,
    /// failing that, a queue (as the report resolves it).
    pub fn new(targets: &[Target], requests: &'a [JobRequest]) -> Self {
        let watches = targets
            .iter()
            .map(|t| {
                let is_class = requests.iter().any(|j| j.qos.label() == t.scope);
                let mut jobs: Vec<u32> = (0..requests.len() as u32)
                    .filter(|&i| {
                        let j = &requests[i as usize];
                        if is_class {
                            j.qos.label() == t.scope
                        } else {
                            j.queue == t.scope
                        }
                    })
                    .collect();
                jobs.sort_by(|a, b| {
                    requests[*a as usize]
                        .arrival_s
                        .total_cmp(&requests[*b as usize].arrival_s)
                });
                let n = jobs.len();
                Watch {
                    limit_s: t.max_s,
                    needed: if n == 0 {
                        usize::MAX
                    } else {
                        n - rank(t.quantile, n) + 1
                    },
                    jobs,
                    overdue: 0,
                    overdue_on_time: 0,
                }
            })
            .collect();
        Self {
            requests,
            watches,
            start_s: vec![None; requests.len()],
            now_s: 0.0,
            abandoned: None,
        }
    }

    /// Why the run was stopped, if it was.
    pub fn abandoned(&self) -> Option<&Abandoned> {
        self.abandoned.as_ref()
    }

    /// Moves the clock on: jobs whose limit has passed without a start
    /// become late.
    fn advance(&mut self, now_s: f64) -> ControlFlow<()> {
        self.now_s = self.now_s.max(now_s);
        let (requests, start_s, now) = (self.requests, &self.start_s, self.now_s);
        for w in &mut self.watches {
            while let Some(&job) = w.jobs.get(w.overdue) {
                let deadline = requests[job as usize].arrival_s + w.limit_s + SLACK_S;
                if deadline >= now {
                    break;
                }
                w.overdue += 1;
                if start_s[job as usize].is_some_and(|s| s <= deadline) {
                    w.overdue_on_time += 1;
                }
            }
        }
        self.check()
    }

    fn check(&mut self) -> ControlFlow<()> {
        let missed: Vec<Missed> = (0..self.watches.len())
            .filter(|&t| self.watches[t].late() >= self.watches[t].needed)
            .map(|t| Missed {
                target: t,
                at_least_s: self.lower_bound(t),
            })
            .collect();
        if missed.is_empty() {
            return ControlFlow::Continue(());
        }
        self.abandoned = Some(Abandoned {
            at_s: self.now_s,
            missed,
        });
        ControlFlow::Break(())
    }

    /// The `needed`-th largest lower bound of the late jobs' waits.
    fn lower_bound(&self, target: usize) -> f64 {
        let w = &self.watches[target];
        let mut waits: Vec<f64> = w.jobs[..w.overdue]
            .iter()
            .map(|&job| {
                let arrival = self.requests[job as usize].arrival_s;
                self.start_s[job as usize].unwrap_or(self.now_s) - arrival
            })
            .filter(|wait| *wait > w.limit_s)
            .collect();
        waits.sort_by(|a, b| b.total_cmp(a));
        waits.get(w.needed - 1).copied().unwrap_or(w.limit_s)
    }
}

impl Observer for Abandon<'_> {
    fn started(&mut self, job: usize, wait_s: f64) -> ControlFlow<()> {
        let Some(request) = self.requests.get(job) else {
            return ControlFlow::Continue(());
        };
        let start = request.arrival_s + wait_s;
        self.start_s[job] = Some(start);
        // A job already counted overdue (unstarted past its deadline)
        // stays late: it starts after that deadline.
        self.advance(start)
    }

    fn progress(&mut self, now_s: f64) -> ControlFlow<()> {
        self.advance(now_s)
    }
}

/// The report's nearest rank of a quantile among `n` values (1-based).
fn rank(quantile: Quantile, n: usize) -> usize {
    let p = match quantile {
        Quantile::P50 => 0.50,
        Quantile::P95 => 0.95,
        Quantile::P99 => 0.99,
    };
    ((p * n as f64).ceil() as usize).clamp(1, n)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::{SimConfig, Simulation};
    use crate::report::report;
    use crate::testing::{fleet, job};
    use genfleet_scheduler::policy::{Profile, Qos};
    use rand::{Rng, SeedableRng};

    /// 300 jobs, one every 5 s, of 10 to 70 steps at 2 steps/s: about 4
    /// devices' worth of work, in three classes.
    fn workload() -> Vec<JobRequest> {
        let mut rng = rand::rngs::StdRng::seed_from_u64(11);
        (0..300)
            .map(|i| {
                let qos = Qos::ALL[rng.random_range(0..3)];
                job(f64::from(i) * 5.0, "default", qos, rng.random_range(10..70))
            })
            .collect()
    }

    /// On fleets from hopeless to ample, an abandoned run's verdict is the
    /// full run's: every target it proves missed is missed, at least by
    /// the bound it gives; a run not abandoned is the full run; a wait
    /// target the full run misses is always proven missed; and a hopeless
    /// fleet is stopped long before its end.
    #[test]
    fn an_abandoned_fleet_misses_what_the_full_run_misses() {
        let jobs = workload();
        let mut profile = Profile::default();
        profile.set("tiny", "gpu", 1, 2.0);
        let config = SimConfig::default();
        let targets: Vec<Target> = [
            "interactive.p95_wait<=30s",
            "standard.p50_wait<=60s",
            "batch.p99_e2e<=10m",
        ]
        .iter()
        .map(|t| Target::parse(t).expect("target"))
        .collect();
        let (mut abandoned_fleets, mut finished_fleets) = (0, 0);
        for devices in 2..=8 {
            let fleet = fleet("gpu", devices, 1);
            let sim = || Simulation::new(&fleet, &[], &jobs, &profile, &config);
            let full = sim().run(&mut |_| {});
            let full_report = report(&full, &fleet, &targets).expect("report");
            let mut abandon = Abandon::new(&targets, &jobs);
            let observed = sim().run_observed(&mut abandon);
            match abandon.abandoned() {
                Some(a) => {
                    abandoned_fleets += 1;
                    assert!(!full_report.all_targets_met(), "{devices} devices");
                    assert_eq!(observed.stopped_at_s, Some(observed.duration_s));
                    assert!(observed.duration_s < full.duration_s, "{devices} devices");
                    assert!(!a.missed.is_empty());
                    for m in &a.missed {
                        let result = &full_report.targets[m.target];
                        assert!(!result.met, "{devices} devices: {}", result.target);
                        assert!(
                            m.at_least_s > result.limit_s && m.at_least_s <= result.actual_s,
                            "{devices} devices: {} is {} s, bound {} s",
                            result.target,
                            result.actual_s,
                            m.at_least_s
                        );
                    }
                    if devices == 2 {
                        assert!(
                            observed.duration_s < full.duration_s / 4.0,
                            "hopeless, yet run to {} s of {} s",
                            observed.duration_s,
                            full.duration_s
                        );
                    }
                }
                None => {
                    finished_fleets += 1;
                    assert_eq!(observed.stopped_at_s, None);
                    assert_eq!(observed.jobs, full.jobs, "{devices} devices");
                    // Every job started: a missed wait target is proven
                    // at the last start at the latest.
                    for (t, result) in targets.iter().zip(&full_report.targets) {
                        if t.metric == crate::report::Metric::Wait {
                            assert!(result.met, "{devices} devices: {}", result.target);
                        }
                    }
                }
            }
        }
        assert!(
            abandoned_fleets >= 2 && finished_fleets >= 2,
            "{abandoned_fleets} abandoned, {finished_fleets} finished: the fleets should span both"
        );
    }

    /// The rule at its edge, without a simulation: p50 of 4 jobs needs 3
    /// late ones (rank 2); a job that started within the limit is not
    /// late even once its deadline has passed.
    #[test]
    fn it_breaks_at_exactly_the_late_job_that_decides() {
        let jobs: Vec<JobRequest> = (0..4)
            .map(|i| job(f64::from(i), "q", Qos::Standard, 1))
            .collect();
        let target = Target::parse("q.p50_wait<=10s").expect("target");
        let mut abandon = Abandon::new(std::slice::from_ref(&target), &jobs);
        // Job 0 on time; jobs 1 and 2 late.
        assert!(abandon.started(0, 10.0).is_continue());
        assert!(abandon.started(1, 10.5).is_continue());
        assert!(abandon.started(2, 11.0).is_continue());
        // Job 3 arrived at 3 s: at 13 s it is not yet overdue; just after, it is.
        assert!(abandon.progress(13.0).is_continue());
        assert!(abandon.progress(13.01).is_break());
        let a = abandon.abandoned().expect("abandoned");
        assert_eq!(a.missed.len(), 1);
        // The 3 late waits are 10.5, 11 and 10.01: the quantile is at least
        // the third largest.
        assert!((a.missed[0].at_least_s - 10.01).abs() < 1e-9, "{a:?}");
    }
}
