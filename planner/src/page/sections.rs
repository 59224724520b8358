//! The page's sections after the recommendation: waits through the run,
//! demand against capacity, utilisation and cost per flavor, the wait
//! distribution.

use std::fmt::Write;

use genfleet_scheduler::policy::Qos;

use super::buckets::{self, bucket_waits, BucketWaits};
use super::{describe_target, money, plural, thousands, Page};
use crate::charts::{self, escape, tick_time, Axis, Figure, Stroke, Swatch};
use crate::report::{Metric, Quantile, Report};
use crate::table::seconds;

/// "hour", "day", or the width as the table writes it.
fn bucket_name(width_s: f64) -> String {
    match width_s.round() as i64 {
        3600 => "hour".into(),
        86400 => "day".into(),
        _ => format!("{} bucket", tick_time(width_s)),
    }
}

fn span(start_s: f64, width_s: f64) -> String {
    format!(
        "{}&ndash;{}",
        charts::clock(start_s),
        charts::clock(start_s + width_s)
    )
}

/// The wait targets of a class: (in words, limit, quantile as a share).
fn class_wait_targets(report: &Report, qos: Qos) -> Vec<(String, f64, f64)> {
    report
        .targets
        .iter()
        .filter_map(|t| {
            let (what, parsed) = describe_target(t);
            let parsed = parsed?;
            let share = match parsed.quantile {
                Quantile::P50 => 0.50,
                Quantile::P95 => 0.95,
                Quantile::P99 => 0.99,
            };
            (parsed.metric == Metric::Wait && parsed.scope == qos.label())
                .then_some((what, t.limit_s, share))
        })
        .collect()
}

pub(super) fn waits(p: &Page, width: f64) -> String {
    let name = bucket_name(width);
    let classes: Vec<(Qos, Vec<BucketWaits>)> = Qos::ALL
        .iter()
        .rev()
        .filter(|q| p.outcome.jobs.iter().any(|j| j.qos == **q))
        .map(|q| (*q, bucket_waits(p.outcome, *q, width)))
        .collect();
    let longest = classes
        .iter()
        .flat_map(|(_, b)| b.iter().map(|b| b.max_s))
        .fold(0.0, f64::max);
    let mut s = format!("<section id=\"waits\"><h2>Waits through the run</h2><p class=\"caption\">Jobs grouped by the {name} they arrived in: the p95, mean and longest wait (arrival to first step) of each {name}'s jobs, per class (a gap: no job of the class arrived then). A job that never started counts its wait until the end of the run.</p>\n");
    let mut worst = Vec::new();
    for (qos, buckets) in &classes {
        let color = charts::class_color(*qos);
        let mut figure = Figure::new(
            &format!("{}: wait of the jobs arriving in each {name}", qos.label()),
            Axis::clock(p.outcome.duration_s, "time into the run (by arrival)"),
            Axis::log_time(charts::WAIT_FLOOR_S, longest, "wait (log scale)"),
        )
        .plot_height(150.0);
        let series = |f: fn(&BucketWaits) -> f64| {
            charts::steps(buckets.iter().map(|b| {
                let v = if b.jobs > 0 { f(b) } else { f64::NAN };
                (b.start_s, b.width_s, v)
            }))
        };
        figure.line(series(|b| b.max_s), color, Stroke::Dotted, 1.3);
        figure.line(series(|b| b.mean_s), color, Stroke::Dashed, 1.3);
        figure.line(series(|b| b.p95_s), color, Stroke::Solid, 2.4);
        figure.legend("p95", Swatch::Line(color, Stroke::Solid));
        figure.legend("mean", Swatch::Line(color, Stroke::Dashed));
        figure.legend("longest", Swatch::Line(color, Stroke::Dotted));
        for (what, limit, _) in class_wait_targets(p.report, *qos) {
            figure.hline(
                limit,
                charts::INK,
                &format!("target: {what} over the run at most {}", seconds(limit)),
            );
        }
        s.push_str(&figure.svg());
        if let Some(b) = buckets
            .iter()
            .filter(|b| b.jobs > 0)
            .max_by(|a, b| a.p95_s.total_cmp(&b.p95_s))
        {
            worst.push(format!(
                "<li><b>{}</b>: {}, p95 {} (longest {}) over {}.</li>",
                qos.label(),
                span(b.start_s, b.width_s),
                seconds(b.p95_s),
                seconds(b.max_s),
                plural(b.jobs as u64, "job", "jobs")
            ));
        }
    }
    if !worst.is_empty() {
        let _ = writeln!(
            s,
            "<p class=\"caption\">Worst {name} per class:</p><ul class=\"caption\">{}</ul>",
            worst.join("")
        );
    }
    s.push_str("</section>\n");
    s
}

pub(super) fn load(p: &Page, width: f64) -> String {
    let name = bucket_name(width);
    let loads = buckets::load(p.outcome, p.fleet.pools.len(), width);
    let capacity = p.fleet.devices() as f64;
    let busy: Vec<f64> = loads.iter().map(|l| l.busy_mean.iter().sum()).collect();
    let top = loads
        .iter()
        .map(|l| l.demand)
        .chain(busy.iter().copied())
        .fold(capacity, f64::max);
    let mut figure = Figure::new(
        &format!("Work arriving each {name} against the fleet's devices"),
        Axis::clock(p.outcome.duration_s, "time into the run"),
        Axis::linear(0.0, top * 1.05, "devices", charts::number),
    )
    .plot_height(200.0);
    for l in &loads {
        figure.bar(l.start_s, l.start_s + l.width_s, l.demand, charts::BLUE);
    }
    let busy_line = charts::steps(
        loads
            .iter()
            .zip(&busy)
            .map(|(l, b)| (l.start_s, l.width_s, *b)),
    );
    figure.line(busy_line, charts::INK, Stroke::Solid, 2.0);
    figure.hline(
        capacity,
        charts::RED,
        &format!("capacity: {} devices", thousands(p.fleet.devices())),
    );
    figure.legend(
        &format!("work arriving (devices it keeps busy for the {name})"),
        Swatch::Area(charts::BLUE),
    );
    figure.legend(
        "devices busy (mean)",
        Swatch::Line(charts::INK, Stroke::Solid),
    );
    let mut s = format!("<section id=\"load\"><h2>Demand and capacity</h2><p class=\"caption\">Bars: the device time of the jobs that arrived in each {name} (on the flavor each ran on, loading and checkpoints included), divided by the {name}: how many devices that work keeps busy. Above the capacity line, work arrives faster than the fleet can serve it and jobs queue. The line: devices actually busy.</p>\n");
    s.push_str(&figure.svg());
    if let Some(peak) = loads.iter().max_by(|a, b| a.demand.total_cmp(&b.demand)) {
        let _ = write!(
            s,
            "<p class=\"caption\">Busiest {name}: {}, work for {:.1} devices of the {}.",
            span(peak.start_s, peak.width_s),
            peak.demand,
            thousands(p.fleet.devices())
        );
    }
    let unfinished = p.report.jobs - p.report.completed;
    if unfinished > 0 {
        let _ = write!(
            s,
            " {} did not finish: the work they had left is not counted.",
            plural(unfinished, "job", "jobs")
        );
    }
    s.push_str("</p></section>\n");
    s
}

pub(super) fn flavors(p: &Page, width: f64) -> String {
    let hours = p.report.duration_s / 3600.0;
    let mut s = String::from("<section id=\"flavors\"><h2>Utilisation and cost per flavor</h2><p class=\"caption\">Busy: the share of the flavor's device time that jobs held devices. Idle cost: what the devices cost while no job held them.</p>\n<table><tr><th>Flavor</th><th>Devices</th><th>Busy</th><th>Cost per hour</th><th>Idle per hour</th><th>Cost of the run</th><th>Of it idle</th></tr>\n");
    let (mut per_hour, mut idle_hour, mut idle_run) = (0.0, 0.0, 0.0);
    let pools = p.fleet.pools.iter().zip(&p.report.flavors);
    // A pool a sweep left empty costs nothing and shows nothing.
    for (pool, stats) in pools.filter(|(pool, _)| pool.nodes > 0) {
        let hourly = stats.devices as f64 * pool.price_per_device_hour;
        let idle = 1.0 - stats.utilization;
        per_hour += hourly;
        idle_hour += hourly * idle;
        idle_run += stats.cost * idle;
        let _ = writeln!(
            s,
            "<tr><td>{}</td><td>{} &times; {}</td><td><span class=\"bar\" style=\"width:{:.0}px\"></span>{:.1}%</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            escape(&pool.flavor),
            pool.nodes,
            pool.devices_per_node,
            stats.utilization * 60.0,
            stats.utilization * 100.0,
            money(hourly),
            money(hourly * idle),
            money(stats.cost),
            money(stats.cost * idle)
        );
    }
    let _ = writeln!(
        s,
        "<tr><th>total</th><th>{}</th><th></th><th>{}</th><th>{}</th><th>{}</th><th>{}</th></tr></table>",
        thousands(p.fleet.devices()),
        money(per_hour),
        money(idle_hour),
        money(p.report.cost),
        money(idle_run)
    );
    let _ = writeln!(s, "<p class=\"caption\">The run lasted {hours:.1} h. Busy devices of each flavor over the run: the mean of each {0}, and the most at once in the {0} (dotted; the band between shows how much the load swung).</p>", bucket_name(width));
    let loads = buckets::load(p.outcome, p.fleet.pools.len(), width);
    for (i, pool) in p.fleet.pools.iter().enumerate() {
        if pool.nodes == 0 {
            continue;
        }
        let devices = u64::from(pool.nodes) * u64::from(pool.devices_per_node);
        let color = charts::pool_color(i);
        let mut figure = Figure::new(
            &format!("{}: devices busy", pool.flavor),
            Axis::clock(p.outcome.duration_s, "time into the run"),
            // Above the capacity, so its line and the peaks stay apart from the frame.
            Axis::linear(
                0.0,
                (devices as f64 * 1.15).max(1.0),
                "devices",
                charts::number,
            ),
        )
        .plot_height(110.0);
        let mean = charts::steps(loads.iter().map(|l| (l.start_s, l.width_s, l.busy_mean[i])));
        let most = charts::steps(
            loads
                .iter()
                .map(|l| (l.start_s, l.width_s, f64::from(l.busy_max[i]))),
        );
        figure.area(mean.clone(), most.clone(), color);
        figure.line(most, color, Stroke::Dotted, 1.2);
        figure.line(mean, color, Stroke::Solid, 2.0);
        figure.legend("mean", Swatch::Line(color, Stroke::Solid));
        figure.legend("the most at once", Swatch::Line(color, Stroke::Dotted));
        figure.hline(
            devices as f64,
            charts::RED,
            &format!("capacity: {} devices", thousands(devices)),
        );
        s.push_str(&figure.svg());
    }
    s.push_str("</section>\n");
    s
}

pub(super) fn cdf(p: &Page) -> String {
    let marks: Vec<charts::WaitMark> = Qos::ALL
        .iter()
        .flat_map(|q| {
            class_wait_targets(p.report, *q)
                .into_iter()
                .map(|(what, limit_s, share)| charts::WaitMark {
                    qos: *q,
                    limit_s,
                    share,
                    label: format!("{what} target: {}", seconds(limit_s)),
                })
        })
        .collect();
    let mut s = String::from("<section id=\"cdf\"><h2>How long jobs waited</h2><p class=\"caption\">The share of each class's jobs that waited at most a given time before their first step. Both axes stretch the tail: time on a log scale, the share by its nines (where a curve crosses 99%, 1% of its jobs waited longer: its p99). A wait target is a dashed line at its limit with a ring at its share: met when the class's curve passes above the ring.</p>\n");
    s.push_str(&charts::wait_cdf_figure(p.outcome, &marks).svg());
    s.push_str("</section>\n");
    s
}
