//! Sizing: the same workload on fleets of different sizes, to find the
//! cheapest one that meets every target and to show what each step of
//! cost buys. The fleets run on several threads (`parallel`), and a fleet
//! is abandoned as soon as it provably misses a target (`abandon`): its
//! figures are then lower bounds, and it is never the one chosen.

use genfleet_proto as pb;
use genfleet_scheduler::policy::Profile;

use super::abandon::{Abandon, Abandoned};
use super::engine::{SimConfig, Simulation};
use super::fleet::Fleet;
use super::parallel;
use super::report::{self, Report, Target};
use super::workload::JobRequest;

/// One pool's node counts to try: `FLAVOR=MIN..MAX` or `FLAVOR=A,B,C`.
#[derive(Debug, Clone, PartialEq)]
pub struct SweepAxis {
    pub flavor: String,
    pub nodes: Vec<u32>,
}

/// Most fleets one sweep may simulate.
pub const MAX_FLEETS: usize = 1000;

impl SweepAxis {
    pub fn parse(text: &str) -> Result<Self, String> {
        let usage =
            || format!("sweep {text:?}: write it as FLAVOR=MIN..MAX or FLAVOR=A,B,C (node counts)");
        let (flavor, counts) = text.split_once('=').ok_or_else(usage)?;
        let number = |s: &str| s.trim().parse::<u32>().map_err(|_| usage());
        let nodes = match counts.split_once("..") {
            Some((lo, hi)) => {
                let (lo, hi) = (number(lo)?, number(hi.trim_start_matches('='))?);
                if lo > hi || hi - lo >= MAX_FLEETS as u32 {
                    return Err(usage());
                }
                (lo..=hi).collect()
            }
            None => counts
                .split(',')
                .map(number)
                .collect::<Result<Vec<_>, _>>()?,
        };
        if nodes.is_empty() || flavor.trim().is_empty() {
            return Err(usage());
        }
        Ok(Self {
            flavor: flavor.trim().to_string(),
            nodes,
        })
    }
}

/// One fleet of the sweep and how it did.
#[derive(Debug, Clone, serde::Serialize)]
pub struct SweepPoint {
    /// Nodes of each swept flavor, in the order the axes were given.
    pub nodes: Vec<(String, u32)>,
    pub cost_per_hour: f64,
    pub targets_met: usize,
    pub targets: usize,
    /// The worst target's actual over its limit (below 1: met); for an
    /// abandoned fleet, a lower bound.
    pub worst_ratio: f64,
}

impl SweepPoint {
    pub fn meets_all(&self) -> bool {
        self.targets_met == self.targets
    }
}

/// A fleet of the sweep, and whether its run was stopped early.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Swept {
    #[serde(flatten)]
    pub point: SweepPoint,
    /// Set when the run stopped on a target proven missed: the point's
    /// `targets_met` is then 0 (the others were not decided, and a sweep
    /// has at least one target, so it never meets all) and its
    /// `worst_ratio` a lower bound.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub abandoned: Option<Abandoned>,
}

/// What every fleet of a sweep is run with.
pub struct SweepInputs<'a> {
    pub queues: &'a [pb::Queue],
    pub jobs: &'a [JobRequest],
    /// The same for every fleet: the sweep changes node counts, not prices.
    pub profile: &'a Profile,
    pub config: &'a SimConfig,
    pub targets: &'a [Target],
}

/// One fleet, run until it ends or provably misses a target.
pub fn evaluate(
    nodes: Vec<(String, u32)>,
    fleet: &Fleet,
    inputs: &SweepInputs,
) -> Result<Swept, String> {
    let mut abandon = Abandon::new(inputs.targets, inputs.jobs);
    let outcome = Simulation::new(
        fleet,
        inputs.queues,
        inputs.jobs,
        inputs.profile,
        inputs.config,
    )
    .run_observed(&mut abandon);
    match abandon.abandoned() {
        Some(abandoned) => {
            // What was simulated must still be sound.
            report::check_conservation(&outcome, fleet)?;
            let worst_ratio = abandoned
                .missed
                .iter()
                .map(|m| m.at_least_s / inputs.targets[m.target].max_s.max(1e-9))
                .fold(0.0, f64::max);
            Ok(Swept {
                point: SweepPoint {
                    nodes,
                    cost_per_hour: fleet.cost_per_hour(),
                    targets_met: 0,
                    targets: inputs.targets.len(),
                    worst_ratio,
                },
                abandoned: Some(abandoned.clone()),
            })
        }
        None => {
            let report = report::report(&outcome, fleet, inputs.targets)?;
            Ok(Swept {
                point: point(nodes, fleet, &report),
                abandoned: None,
            })
        }
    }
}

/// Every fleet on up to `threads` threads; the points in the fleets'
/// order whatever the threads. `done` is called as each fleet ends.
pub fn run(
    fleets: &[SweptFleet],
    inputs: &SweepInputs,
    threads: usize,
    done: impl Fn() + Sync,
) -> Result<Vec<Swept>, String> {
    let mut points = Vec::with_capacity(fleets.len());
    parallel::in_order(
        fleets,
        threads,
        |_, (nodes, fleet)| {
            let point = evaluate(nodes.clone(), fleet, inputs);
            done();
            point
        },
        |_, point| {
            points.push(point);
            Ok(())
        },
    )?;
    Ok(points)
}

/// A fleet of a sweep: its swept pools' node counts, and the fleet.
pub type SweptFleet = (Vec<(String, u32)>, Fleet);

/// Every fleet of the grid the axes span (the other pools as given).
pub fn fleets(base: &Fleet, axes: &[SweepAxis]) -> Result<Vec<SweptFleet>, String> {
    let mut indexes = Vec::new();
    for axis in axes {
        let index = base
            .pools
            .iter()
            .position(|p| p.flavor == axis.flavor)
            .ok_or_else(|| format!("sweep: the fleet has no pool of flavor {:?}", axis.flavor))?;
        indexes.push(index);
    }
    let total = axes
        .iter()
        .try_fold(1usize, |n, a| n.checked_mul(a.nodes.len()))
        .unwrap_or(usize::MAX);
    if total > MAX_FLEETS {
        return Err(format!("sweep: {total} fleets; at most {MAX_FLEETS}"));
    }
    let mut out = Vec::with_capacity(total);
    for n in 0..total {
        let mut rest = n;
        let mut fleet = base.clone();
        let mut label = Vec::with_capacity(axes.len());
        for (axis, &pool) in axes.iter().zip(&indexes) {
            let nodes = axis.nodes[rest % axis.nodes.len()];
            rest /= axis.nodes.len();
            fleet = fleet.with_nodes(pool, nodes);
            label.push((axis.flavor.clone(), nodes));
        }
        if fleet.devices() > 0 {
            out.push((label, fleet));
        }
    }
    Ok(out)
}

pub fn point(nodes: Vec<(String, u32)>, fleet: &Fleet, report: &Report) -> SweepPoint {
    let worst_ratio = report
        .targets
        .iter()
        .map(|t| t.actual_s / t.limit_s.max(1e-9))
        .fold(0.0, f64::max);
    SweepPoint {
        nodes,
        cost_per_hour: fleet.cost_per_hour(),
        targets_met: report.targets.iter().filter(|t| t.met).count(),
        targets: report.targets.len(),
        worst_ratio,
    }
}

/// The cheapest point that meets every target (never an abandoned one:
/// it meets none).
pub fn cheapest(points: &[SweepPoint]) -> Option<&SweepPoint> {
    points
        .iter()
        .filter(|p| p.meets_all())
        .min_by(|a, b| a.cost_per_hour.total_cmp(&b.cost_per_hour))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fleet::Pool;

    #[test]
    fn axes_parse_as_ranges_or_lists() {
        assert_eq!(
            SweepAxis::parse("nvidia-l4=1..3").map(|a| a.nodes),
            Ok(vec![1, 2, 3])
        );
        assert_eq!(
            SweepAxis::parse("cpu=2,4,8").map(|a| a.nodes),
            Ok(vec![2, 4, 8])
        );
        for bad in ["l4", "l4=3..1", "l4=a..b", "=1..2", "l4=0..5000"] {
            assert!(
                SweepAxis::parse(bad).is_err_and(|e| e.contains("FLAVOR=MIN..MAX")),
                "{bad}"
            );
        }
    }

    /// The cheapest fleet is hopeless and stopped early: it is never the
    /// one chosen, and the points come in the fleets' order on any number
    /// of threads.
    #[test]
    fn an_abandoned_fleet_is_never_the_cheapest_that_meets_the_targets() {
        use crate::testing::{fleet, job};
        use genfleet_scheduler::policy::Qos;
        // A job of 30 s every 5 s: 6 devices' worth.
        let jobs: Vec<JobRequest> = (0..200)
            .map(|i| job(f64::from(i) * 5.0, "default", Qos::Standard, 60))
            .collect();
        let mut profile = Profile::default();
        profile.set("tiny", "gpu", 1, 2.0);
        let base = fleet("gpu", 1, 1);
        let grid = fleets(&base, &[SweepAxis::parse("gpu=2,9,4,8").expect("axis")]).expect("grid");
        let targets = [Target::parse("standard.p95_wait<=1m").expect("target")];
        let config = SimConfig::default();
        let inputs = SweepInputs {
            queues: &[],
            jobs: &jobs,
            profile: &profile,
            config: &config,
            targets: &targets,
        };
        let one = run(&grid, &inputs, 1, || {}).expect("sweep");
        let four = run(&grid, &inputs, 4, || {}).expect("sweep");
        let nodes = |s: &[Swept]| -> Vec<u32> { s.iter().map(|p| p.point.nodes[0].1).collect() };
        assert_eq!(nodes(&one), vec![2, 9, 4, 8], "the fleets' order");
        assert_eq!(
            format!("{one:?}"),
            format!("{four:?}"),
            "the same on 4 threads"
        );
        let two = &one[0];
        assert!(two.abandoned.is_some() && !two.point.meets_all(), "{two:?}");
        assert!(two.point.worst_ratio > 1.0);
        let points: Vec<SweepPoint> = one.iter().map(|s| s.point.clone()).collect();
        let best = cheapest(&points).expect("some fleet meets the target");
        assert!(best.nodes[0].1 > 6, "{best:?}");
        let chosen = one
            .iter()
            .find(|s| s.point.nodes == best.nodes)
            .expect("chosen");
        assert!(chosen.abandoned.is_none());
    }

    #[test]
    fn the_grid_covers_every_combination_of_the_axes() {
        let pool = |flavor: &str| Pool {
            flavor: flavor.into(),
            nodes: 1,
            devices_per_node: 2,
            price_per_device_hour: 1.0,
            memory_bytes: 0,
            models: vec!["tiny".into()],
        };
        let base = Fleet {
            pools: vec![pool("a"), pool("b")],
        };
        let axes = [
            SweepAxis::parse("a=0..2").expect("axis"),
            SweepAxis::parse("b=1,3").expect("axis"),
        ];
        let grid = fleets(&base, &axes).expect("grid");
        assert_eq!(grid.len(), 6);
        let costs: Vec<f64> = grid.iter().map(|(_, f)| f.cost_per_hour()).collect();
        assert!(costs.contains(&2.0) && costs.contains(&10.0), "{costs:?}");
        assert!(fleets(&base, &[SweepAxis::parse("c=1..2").expect("axis")])
            .is_err_and(|e| e.contains("no pool")));
    }
}
