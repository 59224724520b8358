//! The plan's charts as SVG. They are drawn here rather than by a plotting
//! crate so that the report decides what a reader needs: log axes labelled
//! in the table's time units, legends above the data, reference lines with
//! their meaning written on them, points labelled without overlapping.
//! Text stays text (no fonts are needed to draw it); no ids, so several
//! charts can sit inline in one page.
//!
//! [`Figure`] is the drawing kit; the functions below it are the charts
//! `genfleet plan --out` writes as files (the page adds its own).

mod axis;
mod figure;

pub use axis::{clock, number, tick_time, Axis, Scale};
pub use figure::{
    escape, steps, Color, Figure, Placed, Rect, Stroke, Swatch, BLUE, GREEN, GREY, INK, RED,
};

use super::engine::SimOutcome;
use super::fleet::Fleet;
use super::sweep::{self, SweepPoint};
use genfleet_scheduler::policy::Qos;

/// One per pool, in the fleet's order.
pub const POOL_COLORS: [Color; 5] = [
    Color(31, 110, 180),
    Color(230, 120, 20),
    Color(120, 80, 170),
    Color(20, 150, 150),
    Color(140, 86, 75),
];

pub fn class_color(qos: Qos) -> Color {
    match qos {
        Qos::Interactive => RED,
        Qos::Standard => BLUE,
        Qos::Batch => GREEN,
    }
}

pub fn pool_color(pool: usize) -> Color {
    POOL_COLORS[pool % POOL_COLORS.len()]
}

/// Waiting jobs per class over the run: the mean of each bucket, and its
/// peak dotted.
pub fn queue_depth(outcome: &SimOutcome) -> Result<String, String> {
    let peak = outcome
        .buckets
        .iter()
        .flat_map(|b| b.pending_max)
        .max()
        .unwrap_or(0);
    let mut figure = Figure::new(
        "Jobs waiting",
        Axis::clock(outcome.duration_s, "time into the run"),
        Axis::linear(0.0, f64::from(peak).max(1.0), "jobs waiting", number),
    );
    for (i, qos) in Qos::ALL.iter().enumerate().rev() {
        if !outcome.jobs.iter().any(|j| j.qos == *qos) {
            continue;
        }
        let color = class_color(*qos);
        let bucket = |b: &crate::engine::Bucket, v: f64| (b.start_s, b.width_s, v);
        let mean = steps(outcome.buckets.iter().map(|b| bucket(b, b.pending_mean[i])));
        let most = steps(
            outcome
                .buckets
                .iter()
                .map(|b| bucket(b, f64::from(b.pending_max[i]))),
        );
        figure.line(most, color, Stroke::Dotted, 1.2);
        figure.line(mean, color, Stroke::Solid, 2.0);
        figure.legend(qos.label(), Swatch::Line(color, Stroke::Solid));
    }
    figure.legend("peak in the bucket", Swatch::Line(GREY, Stroke::Dotted));
    Ok(figure.svg())
}

/// Share of each flavor's devices held by jobs: the mean of each bucket,
/// and its peak dotted.
pub fn utilization(outcome: &SimOutcome, fleet: &Fleet) -> Result<String, String> {
    let mut figure = Figure::new(
        "Devices busy",
        Axis::clock(outcome.duration_s, "time into the run"),
        Axis::share("share of the flavor's devices"),
    );
    for (p, pool) in fleet.pools.iter().enumerate() {
        let devices = (f64::from(pool.nodes) * f64::from(pool.devices_per_node)).max(1.0);
        let color = pool_color(p);
        let share = |b: &crate::engine::Bucket, v: f64| (b.start_s, b.width_s, v / devices);
        let mean = steps(outcome.buckets.iter().map(|b| share(b, b.busy_mean[p])));
        let most = steps(
            outcome
                .buckets
                .iter()
                .map(|b| share(b, f64::from(b.busy_max[p]))),
        );
        figure.line(most, color, Stroke::Dotted, 1.2);
        figure.line(mean, color, Stroke::Solid, 2.0);
        figure.legend(&pool.flavor, Swatch::Line(color, Stroke::Solid));
    }
    figure.legend("peak in the bucket", Swatch::Line(GREY, Stroke::Dotted));
    Ok(figure.svg())
}

/// Waits under this are drawn at it: the simulation counts in ms, and a
/// log axis has no 0.
pub const WAIT_FLOOR_S: f64 = 0.001;

/// Each class's waits (arrival to first start; a job never started
/// waits until the end), of the jobs that arrived before the end, sorted.
pub fn class_waits(outcome: &SimOutcome) -> Vec<(Qos, Vec<f64>)> {
    let end = outcome.duration_s;
    Qos::ALL
        .iter()
        .rev()
        .filter_map(|qos| {
            let mut waits: Vec<f64> = outcome
                .jobs
                .iter()
                .filter(|j| j.qos == *qos && j.arrival_s <= end)
                .map(|j| j.first_start_s.unwrap_or(end) - j.arrival_s)
                .collect();
            waits.sort_by(f64::total_cmp);
            (!waits.is_empty()).then_some((*qos, waits))
        })
        .collect()
}

/// A wait target on the distribution: its class, limit and quantile.
#[derive(Debug, Clone, PartialEq)]
pub struct WaitMark {
    pub qos: Qos,
    pub limit_s: f64,
    /// The quantile as a share: 0.95 for p95.
    pub share: f64,
    pub label: String,
}

/// The share of jobs of each class that waited at most x: x on a log
/// axis, the share by its nines (so the tail, where waits are, is not a
/// sliver at the top). A target is a dashed line at its limit and a ring
/// at its quantile: met when its class's curve passes above the ring.
pub fn wait_cdf_figure(outcome: &SimOutcome, marks: &[WaitMark]) -> Figure {
    let classes = class_waits(outcome);
    let longest = classes
        .iter()
        .filter_map(|(_, w)| w.last().copied())
        .chain(marks.iter().map(|m| m.limit_s))
        .fold(0.0, f64::max);
    let most = classes.iter().map(|(_, w)| w.len()).max().unwrap_or(1);
    // Enough nines to resolve one job of the largest class, 2 to 4.
    let nines = (most as f64).log10().ceil().clamp(2.0, 4.0) as u32;
    let mut figure = Figure::new(
        "Wait before the first step",
        Axis::log_time(WAIT_FLOOR_S, longest, "wait (log scale)"),
        Axis::nines(nines, "share that waited at most this"),
    )
    .plot_height(260.0);
    // Evaluated exactly at 240 points evenly spread on the log axis.
    let (lo, hi) = (figure.x.lo.ln(), figure.x.hi.ln());
    for (qos, waits) in &classes {
        let n = waits.len() as f64;
        let points = (0..=240)
            .map(|i| (lo + (hi - lo) * f64::from(i) / 240.0).exp())
            .map(|x| {
                let at_most = waits.partition_point(|w| *w <= x * (1.0 + 1e-9));
                (x, at_most as f64 / n)
            })
            .collect();
        let color = class_color(*qos);
        figure.line(points, color, Stroke::Solid, 2.2);
        figure.legend(qos.label(), Swatch::Line(color, Stroke::Solid));
    }
    for m in marks {
        let color = class_color(m.qos);
        figure.vline(m.limit_s, color, &m.label);
        figure.marker((m.limit_s, m.share), color, false, false, "");
    }
    figure.note("Waits under 1ms (the simulation's resolution, and 0) count as 1ms.");
    figure
}

/// [`wait_cdf_figure`] without targets, as SVG.
pub fn wait_cdf(outcome: &SimOutcome) -> Result<String, String> {
    Ok(wait_cdf_figure(outcome, &[]).svg())
}

/// A sweep's fleet as its node counts, in the order of the axes: `(1, 2)`.
pub fn fleet_label(point: &SweepPoint) -> String {
    let counts: Vec<String> = point.nodes.iter().map(|(_, n)| n.to_string()).collect();
    format!("({})", counts.join(", "))
}

/// Ratios of 0 (a target met with no wait at all) are drawn here.
const RATIO_FLOOR: f64 = 1e-3;

/// Cost per hour against the worst target's actual over its limit, one
/// labelled point per fleet, the line at 1 and the cheapest fleet that
/// meets every target ringed.
pub fn sweep_figure(points: &[SweepPoint]) -> Figure {
    let ratios = points.iter().map(|p| p.worst_ratio.max(RATIO_FLOOR));
    let (lo, hi) = ratios.fold((1.0f64, 1.0f64), |(lo, hi), r| (lo.min(r), hi.max(r)));
    let cost = points.iter().map(|p| p.cost_per_hour).fold(0.0, f64::max);
    let mut figure = Figure::new(
        "Cost against the worst target",
        Axis::linear(0.0, cost * 1.08, "cost per hour", number),
        Axis::log(lo, hi, "worst target: actual / allowed (log scale)"),
    )
    .plot_height(300.0);
    figure.legend(
        "meets every target",
        Swatch::Dot {
            color: GREEN,
            filled: true,
        },
    );
    figure.legend(
        "misses a target",
        Swatch::Dot {
            color: RED,
            filled: false,
        },
    );
    figure.legend(
        "recommended: the cheapest that meets every target",
        Swatch::Ring,
    );
    figure.hline(1.0, INK, "every target met below this line");
    let best = sweep::cheapest(points);
    for p in points {
        let ring = best.is_some_and(|b| std::ptr::eq(b, p));
        let (color, filled) = if p.meets_all() {
            (GREEN, true)
        } else {
            (RED, false)
        };
        let label = fleet_label(p);
        let label = if ring {
            format!("{label} recommended")
        } else {
            label
        };
        figure.marker(
            (p.cost_per_hour, p.worst_ratio.max(RATIO_FLOOR)),
            color,
            filled,
            ring,
            &label,
        );
    }
    if let Some(first) = points.first() {
        let flavors: Vec<&str> = first.nodes.iter().map(|(f, _)| f.as_str()).collect();
        figure.note(&format!(
            "Each fleet is labelled with its nodes of {}.",
            flavors.join(", ")
        ));
    }
    figure
}

/// [`sweep_figure`] as SVG (the file `sweep.svg`).
pub fn cost_curve(points: &[SweepPoint]) -> Result<String, String> {
    Ok(sweep_figure(points).svg())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::JobOutcome;
    use crate::table::seconds;

    fn outcome(waits: &[(Qos, f64)]) -> SimOutcome {
        let jobs = waits
            .iter()
            .enumerate()
            .map(|(i, (qos, wait))| JobOutcome {
                queue: "default".into(),
                qos: *qos,
                arrival_s: i as f64,
                first_start_s: Some(i as f64 + wait),
                end_s: Some(i as f64 + wait + 1.0),
                preemptions: 0,
                tp: 1,
                device_s: 1.0,
                pool: Some(0),
            })
            .collect();
        SimOutcome {
            jobs,
            duration_s: 1000.0,
            busy_device_s: vec![0.0],
            queue_device_s: Default::default(),
            buckets: Vec::new(),
            cycles: 0,
            stopped_at_s: None,
            node_failures: 0,
        }
    }

    /// The x of each tick label of an SVG, by its text.
    fn tick_xs(svg: &str) -> Vec<(String, f64)> {
        svg.split("<text class=\"tick-x\" x=\"")
            .skip(1)
            .filter_map(|rest| {
                let (x, rest) = rest.split_once('"')?;
                let label = rest.split_once('>')?.1.split_once('<')?.0;
                Some((label.to_string(), x.parse().ok()?))
            })
            .collect()
    }

    #[test]
    fn the_wait_distribution_has_a_log_time_axis_and_counts_zero_waits_at_1ms() {
        let i = Qos::Interactive;
        let waits = [(i, 0.0), (i, 0.0004), (i, 0.05), (i, 2.0), (i, 90.0)];
        let figure = wait_cdf_figure(&outcome(&waits), &[]);
        assert_eq!(figure.x.scale, Scale::Log);
        assert_eq!(figure.y.scale, Scale::Nines);
        let svg = figure.svg();
        let ticks = tick_xs(&svg);
        let labels: Vec<&str> = ticks.iter().map(|(l, _)| l.as_str()).collect();
        assert_eq!(labels, ["1ms", "10ms", "100ms", "1s", "10s", "60s", "10m"]);
        // Decades are equally apart.
        let decade = ticks[1].1 - ticks[0].1;
        for pair in ticks[..5].windows(2) {
            assert!((pair[1].1 - pair[0].1 - decade).abs() < 0.2, "{ticks:?}");
        }
        assert!(svg.contains("count as 1ms"), "the clamp is said");
        // At 1 ms, the two waits under it have been counted: 2 of 5.
        let (x, y) = figure.to_px((0.001, 0.4));
        assert!(
            svg.contains(&format!("<polyline points=\"{x:.1},{y:.1} ")),
            "{svg}"
        );
    }

    #[test]
    fn nines_put_90_99_and_99_9_percent_equally_apart() {
        let axis = Axis::nines(3, "share");
        assert_eq!(axis.unit(0.0), 0.0);
        for (share, at) in [
            (0.9, 1.0 / 3.0),
            (0.99, 2.0 / 3.0),
            (0.999, 1.0),
            (1.0, 1.0),
        ] {
            assert!((axis.unit(share) - at).abs() < 1e-9, "{share}");
        }
        let labels: Vec<&str> = axis.ticks.iter().map(|(_, l)| l.as_str()).collect();
        assert_eq!(labels, ["0%", "50%", "90%", "99%", "99.9%"]);
    }

    fn point(nodes: &[u32], cost: f64, met: usize, worst: f64) -> SweepPoint {
        SweepPoint {
            nodes: nodes
                .iter()
                .zip(["nvidia-h100-80gb", "nvidia-l4"])
                .map(|(n, f)| (f.to_string(), *n))
                .collect(),
            cost_per_hour: cost,
            targets_met: met,
            targets: 3,
            worst_ratio: worst,
        }
    }

    /// The docs' sweep: two fleets thousands of times over their limit do
    /// not flatten the rest, the line at 1 is drawn at 1, and each fleet
    /// has its label.
    #[test]
    fn the_sweep_chart_has_the_line_at_1_and_one_label_per_fleet() {
        let points = [
            point(&[0, 1], 3.2, 0, 8979.1),
            point(&[0, 2], 6.4, 0, 7901.9),
            point(&[1, 0], 19.92, 3, 0.76),
            point(&[1, 1], 23.12, 2, 1.27),
            point(&[1, 2], 26.32, 2, 2.22),
            point(&[2, 0], 39.84, 3, 0.33),
        ];
        let figure = sweep_figure(&points);
        assert_eq!(figure.y.scale, Scale::Log);
        let plot = figure.plot();
        let (_, at_1) = figure.to_px((0.0, 1.0));
        let svg = figure.svg();
        assert!(
            svg.contains(&format!(
                "<line class=\"ref\" x1=\"{:.1}\" y1=\"{at_1:.1}\"",
                plot.x
            )),
            "the line at 1"
        );
        assert!(svg.contains(">every target met below this line</text>"));
        let labels: Vec<String> = figure
            .labels()
            .into_iter()
            .filter(|l| l.class == "label")
            .map(|l| l.text)
            .collect();
        assert_eq!(
            labels,
            [
                "(0, 1)",
                "(0, 2)",
                "(1, 0) recommended",
                "(1, 1)",
                "(1, 2)",
                "(2, 0)"
            ]
        );
        assert_eq!(svg.matches("<text class=\"label\"").count(), points.len());
        // Each ratio is on its own place on the log axis: 8979 is not the
        // top of a linear scale that puts 0.33 and 2.22 on the floor.
        let y = |r: f64| figure.to_px((0.0, r)).1;
        assert!(y(0.33) - y(2.22) > 0.1 * plot.h, "a linear axis: 0.0002");
    }

    /// Crowded fleets: every label is placed, inside the plot, and none
    /// overlaps another label or a point.
    #[test]
    fn sweep_labels_do_not_overlap() {
        let points: Vec<SweepPoint> = (0..4)
            .flat_map(|a| (0..4).map(move |b| (a, b)))
            .map(|(a, b)| {
                let cost = 20.0 * f64::from(a) + 6.0 * f64::from(b) + 5.0;
                let ratio = 4.0 / (1.0 + f64::from(a) + 0.3 * f64::from(b));
                point(&[a, b], cost, if ratio < 1.0 { 3 } else { 1 }, ratio)
            })
            .collect();
        let figure = sweep_figure(&points);
        let plot = figure.plot();
        let placed = figure.labels();
        assert_eq!(placed.iter().filter(|l| l.class == "label").count(), 16);
        for (i, a) in placed.iter().enumerate() {
            let inside = a.bounds.x >= plot.x && a.bounds.x + a.bounds.w <= plot.x + plot.w;
            assert!(inside, "{} leaves the plot", a.text);
            for b in &placed[i + 1..] {
                assert!(!a.bounds.overlaps(&b.bounds), "{} over {}", a.text, b.text);
            }
            for p in &points {
                let (x, y) = figure.to_px((p.cost_per_hour, p.worst_ratio));
                let dot = Rect {
                    x: x - 4.0,
                    y: y - 4.0,
                    w: 8.0,
                    h: 8.0,
                };
                assert!(!a.bounds.overlaps(&dot), "{} over a point", a.text);
            }
        }
    }

    #[test]
    fn ticks_are_written_as_the_table_writes_times() {
        let round = [0.001, 0.1, 1.0, 60.0, 600.0, 3600.0, 36000.0];
        let labels: Vec<String> = round.iter().map(|s| tick_time(*s)).collect();
        assert_eq!(labels, ["1ms", "100ms", "1s", "60s", "10m", "60m", "10h"]);
        assert_eq!(tick_time(12.3), seconds(12.3), "not round: as the table");
        let clocks: Vec<String> = [0.0, 10800.0, 5400.0, 86400.0, 129600.0, 259200.0, 302400.0]
            .iter()
            .map(|s| clock(*s))
            .collect();
        assert_eq!(clocks, ["0h", "3h", "1h30", "24h", "36h", "3d", "3d12h"]);
    }
}
