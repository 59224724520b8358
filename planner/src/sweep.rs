//! Sizing: the same workload on fleets of different sizes, to find the
//! cheapest one that meets every target and to show what each step of
//! cost buys.

use super::fleet::Fleet;
use super::report::Report;

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
    /// The worst target's actual over its limit (below 1: met).
    pub worst_ratio: f64,
}

impl SweepPoint {
    pub fn meets_all(&self) -> bool {
        self.targets_met == self.targets
    }
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

/// The cheapest point that meets every target.
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
