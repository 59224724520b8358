//! The report a capacity manager reads: one self-contained HTML page
//! (inline SVG, no script, nothing fetched; printable) that opens with the
//! recommendation (the fleet, its cost, each target with its margin), then
//! shows why: the sweep it was chosen from, waits hour by hour, demand
//! against capacity, what each flavor costs busy and idle, the wait
//! distribution, and the text tables last.
//!
//! Times are written as the text tables write them (`table::seconds`), so
//! the page and the terminal never disagree on a figure.

use std::fmt::Write;

use super::charts::{self, escape};
use super::engine::SimOutcome;
use super::fleet::Fleet;
use super::report::{Metric, Quantile, Report, Target, TargetResult};
use super::sweep::{self, SweepPoint};
use super::table::seconds;

mod buckets;
mod sections;

pub use buckets::{bucket_waits, bucket_width_s, load, BucketWaits, Load};

/// What the page is drawn from.
pub struct Page<'a> {
    pub report: &'a Report,
    pub outcome: &'a SimOutcome,
    /// The fleet simulated.
    pub fleet: &'a Fleet,
    /// The text tables, as the terminal showed them.
    pub table: &'a str,
    /// The sweep the fleet was chosen from, if there was one.
    pub sweep: Option<&'a [SweepPoint]>,
}

/// A month of a fleet that runs all year: 365 x 24 / 12 hours.
pub const HOURS_PER_MONTH: f64 = 730.0;

/// The whole page.
pub fn page(p: &Page) -> String {
    let width = bucket_width_s(p.outcome);
    let mut out = String::from(HEAD);
    out.push_str(&header(p));
    out.push_str(&recommendation(p));
    if let Some(points) = p.sweep.filter(|s| !s.is_empty()) {
        out.push_str(&sweep_section(p.fleet, points));
    }
    out.push_str(&sections::waits(p, width));
    out.push_str(&sections::load(p, width));
    out.push_str(&sections::flavors(p, width));
    out.push_str(&sections::cdf(p));
    let _ = write!(
        out,
        "<section id=\"details\"><h2>The tables</h2><p class=\"caption\">As <code>genfleet plan</code> printed them.</p><pre>{}</pre></section>\n</body></html>\n",
        escape(p.table)
    );
    out
}

const HEAD: &str = "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><meta name=\"viewport\" content=\"width=device-width, initial-scale=1\"><title>Capacity plan</title>\n<style>\
body{font:15px/1.45 \"DejaVu Sans\",Helvetica,Arial,sans-serif;color:#222;max-width:940px;margin:20px auto;padding:0 16px}\
h1{font-size:25px;margin:0}.sub{color:#555;margin:2px 0 14px}\
h2{font-size:19px;margin:26px 0 4px;border-bottom:1px solid #ddd;padding-bottom:3px}\
.verdict{border-left:6px solid #888;background:#f6f6f6;padding:10px 16px 12px}\
.verdict.met{border-color:#1f7a35;background:#eef7f0}.verdict.missed{border-color:#b3261e;background:#fbefee}\
.headline{font-size:18px;font-weight:bold;margin:0 0 4px}.verdict p{margin:4px 0}\
.cards{display:grid;grid-template-columns:repeat(4,1fr);gap:8px;margin:10px 0}\
.card{border:1px solid #d8d8d8;border-radius:4px;padding:5px 10px;background:#fff}.card b{display:block;font-size:20px}.card span{color:#555;font-size:12px}\
table{border-collapse:collapse;width:100%;margin:6px 0;font-size:14px;background:#fff}\
th,td{padding:4px 8px;border-bottom:1px solid #e2e2e2;text-align:right}th:first-child,td:first-child{text-align:left}th{background:#f0f0f0;white-space:nowrap}td.nodes{white-space:nowrap}small{color:#555}\
td.met{color:#1f7a35;font-weight:bold}td.missed{color:#b3261e;font-weight:bold}td.confidence{color:#666;font-size:13px}\
tr.recommended td{background:#eef7f0;font-weight:bold}\
.caption{color:#444;font-size:14px;margin:4px 0 6px}\
svg.chart{width:100%;height:auto;display:block;margin:2px 0 8px}\
.bar{display:inline-block;height:9px;background:#1f6eb4;vertical-align:middle;margin-right:6px}\
pre{background:#f6f6f6;padding:10px;font-size:12px;overflow-x:auto}\
@media print{body{max-width:none;margin:0;font-size:12px}section,svg.chart,table{break-inside:avoid}\
.verdict,.bar,tr.recommended td,th{-webkit-print-color-adjust:exact;print-color-adjust:exact}}\
</style></head><body>\n";

fn header(p: &Page) -> String {
    let r = p.report;
    let done = if r.completed == r.jobs {
        "all completed".to_string()
    } else {
        format!(
            "{} completed, {} not finished when the run ended",
            thousands(r.completed),
            thousands(r.jobs - r.completed)
        )
    };
    format!(
        "<header><h1>Capacity plan</h1><p class=\"sub\">{} jobs over {:.1} simulated hours ({done}); simulated by <code>genfleet plan</code> through the scheduler's own policy.</p></header>\n",
        thousands(r.jobs),
        r.duration_s / 3600.0
    )
}

/// 12345 as "12,345".
pub fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// Money in the fleet file's currency: cents below 1,000, whole above.
pub fn money(v: f64) -> String {
    if v.abs() < 1000.0 {
        format!("{v:.2}")
    } else {
        thousands(v.round().max(0.0) as u64)
    }
}

pub(crate) fn plural(n: u64, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

/// "1 node of nvidia-h100-80gb (8 devices) + 2 nodes of nvidia-l4 (4 devices each)".
fn describe_fleet(fleet: &Fleet) -> String {
    let pools: Vec<String> = fleet
        .pools
        .iter()
        .filter(|p| p.nodes > 0)
        .map(|p| {
            let each = if p.nodes == 1 { "" } else { " each" };
            format!(
                "{} of <b>{}</b> ({}{each})",
                plural(u64::from(p.nodes), "node", "nodes"),
                escape(&p.flavor),
                plural(u64::from(p.devices_per_node), "device", "devices")
            )
        })
        .collect();
    pools.join(" + ")
}

/// A sweep point's fleet in words: "1 nvidia-h100-80gb node and no nvidia-l4".
fn describe_point(point: &SweepPoint) -> String {
    let parts: Vec<String> = point
        .nodes
        .iter()
        .map(|(f, n)| match n {
            0 => format!("no {}", escape(f)),
            1 => format!("1 {} node", escape(f)),
            n => format!("{n} {} nodes", escape(f)),
        })
        .collect();
    match parts.split_last() {
        Some((last, rest)) if !rest.is_empty() => format!("{} and {last}", rest.join(", ")),
        _ => parts.join(""),
    }
}

fn is_fleet(point: &SweepPoint, fleet: &Fleet) -> bool {
    point
        .nodes
        .iter()
        .all(|(f, n)| fleet.pools.iter().any(|p| &p.flavor == f && p.nodes == *n))
}

/// A target in words, and what it measures: "p95 interactive wait".
fn describe_target(t: &TargetResult) -> (String, Option<Target>) {
    let Ok(parsed) = Target::parse(&t.target) else {
        return (escape(&t.target), None);
    };
    let quantile = match parsed.quantile {
        Quantile::P50 => "p50",
        Quantile::P95 => "p95",
        Quantile::P99 => "p99",
    };
    let metric = match parsed.metric {
        Metric::Wait => "wait",
        Metric::EndToEnd => "end-to-end time",
    };
    (
        format!("{quantile} {} {metric}", escape(&parsed.scope)),
        Some(parsed),
    )
}

/// How far a target is from its limit, in words.
fn margin(t: &TargetResult, parsed: Option<&Target>) -> String {
    if t.met {
        let headroom = if t.limit_s > 0.0 {
            1.0 - t.actual_s / t.limit_s
        } else {
            0.0
        };
        // Floored: 1ms of 2m is 99%, never a rounded-up 100%.
        format!("met: {}% headroom", (headroom * 100.0).floor().max(0.0))
    } else if t.actual_s <= t.limit_s {
        match parsed.map(|p| p.metric) {
            Some(Metric::EndToEnd) => "missed: some jobs never finished".into(),
            _ => "missed: some jobs never started".into(),
        }
    } else {
        let ratio = t.actual_s / t.limit_s.max(1e-9);
        let ratio = if ratio < 10.0 {
            format!("{ratio:.1}")
        } else {
            thousands(ratio.round() as u64)
        };
        format!("missed: {ratio}&times; the limit")
    }
}

/// What the run says of how sure a target's verdict is. One run says
/// nothing: replications put the interval of the actual and
/// "met in k of n" here.
fn confidence(_report: &Report, _target: &TargetResult) -> String {
    "single run".into()
}

fn recommendation(p: &Page) -> String {
    let r = p.report;
    let missed = r.targets.iter().filter(|t| !t.met).count();
    let class = match (r.targets.is_empty(), missed) {
        (true, _) => "",
        (false, 0) => " met",
        _ => " missed",
    };
    let cost = p.fleet.cost_per_hour();
    let mut s = format!("<section id=\"recommendation\" class=\"verdict{class}\"><h2 style=\"border:0;margin-top:0\">Recommendation</h2>\n");
    let swept = p.sweep.filter(|s| !s.is_empty());
    // The sweep's pick, when it is the fleet simulated, is the headline
    // and the fleet's own verdict would repeat it.
    let picked = swept
        .and_then(sweep::cheapest)
        .is_some_and(|best| is_fleet(best, p.fleet));
    if let Some(points) = swept {
        s.push_str(&sweep_verdict(points));
    }
    let (this, advice) = match swept {
        Some(_) => ("The fleet simulated below", ""),
        None => (
            "This fleet",
            " A sweep (<code>--sweep</code>) finds the cheapest fleet that meets every target.",
        ),
    };
    let headline = if r.targets.is_empty() {
        "No targets were given: this is what the fleet does with the workload (give <code>--target</code> to check one).".to_string()
    } else if missed == 0 {
        let all = match r.targets.len() {
            1 => "its target".to_string(),
            n => format!("all {n} targets"),
        };
        let verdict = if swept.is_some() { "" } else { "Recommended: " };
        format!("{verdict}{this} meets {all} at {} per hour.", money(cost))
    } else {
        let which: Vec<String> = r
            .targets
            .iter()
            .filter(|t| !t.met)
            .map(|t| {
                let (what, parsed) = describe_target(t);
                let (actual, limit) = (seconds(t.actual_s), seconds(t.limit_s));
                if t.actual_s > t.limit_s {
                    format!("{what}, {actual} of {limit} allowed")
                } else {
                    // Within its limit, missed for the jobs not done.
                    let why = margin(t, parsed.as_ref());
                    format!("{what}, {}", why.trim_start_matches("missed: "))
                }
            })
            .collect();
        let verdict = if swept.is_some() {
            ""
        } else {
            "Not recommended as it is. "
        };
        format!(
            "{verdict}{this} misses {missed} of {} targets.</p>\n<p>Missed: {}.{advice}",
            r.targets.len(),
            which.join("; ")
        )
    };
    if !picked {
        let class = if swept.is_some() {
            ""
        } else {
            " class=\"headline\""
        };
        let _ = writeln!(s, "<p{class}>{headline}</p>");
    }
    let _ = writeln!(
        s,
        "<p>Fleet: {} = {} devices.</p>",
        describe_fleet(p.fleet),
        thousands(p.fleet.devices())
    );
    let busy = if r.duration_s > 0.0 && p.fleet.devices() > 0 {
        p.outcome.busy_device_s.iter().sum::<f64>() / (r.duration_s * p.fleet.devices() as f64)
    } else {
        0.0
    };
    let _ = writeln!(
        s,
        "<div class=\"cards\"><div class=\"card\"><span>cost per hour</span><b>{}</b></div><div class=\"card\"><span>per month ({HOURS_PER_MONTH:.0} h)</span><b>{}</b></div><div class=\"card\"><span>devices</span><b>{}</b></div><div class=\"card\"><span>devices busy</span><b>{:.0}%</b></div></div>",
        money(cost),
        money(cost * HOURS_PER_MONTH),
        thousands(p.fleet.devices()),
        busy * 100.0
    );
    if !r.targets.is_empty() {
        s.push_str("<table class=\"targets\"><tr><th>Target</th><th>Actual</th><th>Allowed</th><th>Margin</th><th>Confidence</th></tr>\n");
        for t in &r.targets {
            let (what, parsed) = describe_target(t);
            let _ = writeln!(
                s,
                "<tr><td>{what}</td><td>{}</td><td>{}</td><td class=\"{}\">{}</td><td class=\"confidence\">{}</td></tr>",
                seconds(t.actual_s),
                seconds(t.limit_s),
                if t.met { "met" } else { "missed" },
                margin(t, parsed.as_ref()),
                confidence(r, t)
            );
        }
        s.push_str("</table>\n<p class=\"caption\">From one simulated run of the workload: no interval yet. A run near full load can be well off its long-run figures.</p>\n");
    }
    s.push_str("</section>\n");
    s
}

/// What the sweep recommends, said before the simulated fleet's figures.
fn sweep_verdict(points: &[SweepPoint]) -> String {
    match sweep::cheapest(points) {
        Some(best) => format!(
            "<p class=\"headline\">Buy {} at {} per hour ({} per month): the cheapest of the {} fleets tried that meets every target.</p>\n",
            describe_point(best),
            money(best.cost_per_hour),
            money(best.cost_per_hour * HOURS_PER_MONTH),
            points.len()
        ),
        None => {
            let closest = points
                .iter()
                .min_by(|a, b| a.worst_ratio.total_cmp(&b.worst_ratio));
            let closest = closest.map_or(String::new(), |c| {
                format!(
                    " The closest, {} at {} per hour, is at {:.2}&times; its worst target's limit: widen the sweep.",
                    describe_point(c),
                    money(c.cost_per_hour),
                    c.worst_ratio
                )
            });
            format!(
                "<p class=\"headline\">None of the {} fleets tried meets every target.{closest}</p>\n",
                points.len()
            )
        }
    }
}

fn sweep_section(fleet: &Fleet, points: &[SweepPoint]) -> String {
    let mut s = String::from("<section id=\"sweep\"><h2>What each fleet buys</h2><p class=\"caption\">Every fleet of the sweep: what it costs against how far its worst target is from its limit (below 1: every target met). Cheaper to the left, better lower down.</p>\n");
    s.push_str(&charts::sweep_figure(points).svg());
    let mut sorted: Vec<&SweepPoint> = points.iter().collect();
    sorted.sort_by(|a, b| a.cost_per_hour.total_cmp(&b.cost_per_hour));
    let best = sweep::cheapest(points);
    s.push_str("<table><tr><th>Fleet</th><th>Nodes</th><th>Cost per hour</th><th>Targets met</th><th>Worst actual / allowed</th></tr>\n");
    for point in sorted {
        let recommended = best.is_some_and(|b| std::ptr::eq(b, point));
        let mut notes = Vec::new();
        if recommended {
            notes.push("recommended");
        }
        if is_fleet(point, fleet) {
            notes.push("simulated below");
        }
        let note = if notes.is_empty() {
            String::new()
        } else {
            format!("<br><small>{}</small>", notes.join(", "))
        };
        let _ = writeln!(
            s,
            "<tr{}><td>{}{note}</td><td class=\"nodes\">{}</td><td>{}</td><td>{} of {}</td><td>{:.2}</td></tr>",
            if recommended {
                " class=\"recommended\""
            } else {
                ""
            },
            charts::fleet_label(point),
            describe_point(point),
            money(point.cost_per_hour),
            point.targets_met,
            point.targets,
            point.worst_ratio
        );
    }
    s.push_str("</table></section>\n");
    s
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::engine::{JobOutcome, SimOutcome};
    use crate::fleet::Pool;
    use crate::report::{self, Target};
    use crate::series::Series;
    use genfleet_scheduler::policy::Qos;

    fn fleet() -> Fleet {
        Fleet {
            pools: vec![Pool {
                flavor: "nvidia-l4".into(),
                nodes: 1,
                devices_per_node: 4,
                price_per_device_hour: 1.5,
                memory_bytes: 0,
                models: vec!["tiny".into()],
            }],
        }
    }

    pub(crate) fn job(qos: Qos, arrival_s: f64, wait_s: Option<f64>, device_s: f64) -> JobOutcome {
        let first_start_s = wait_s.map(|w| arrival_s + w);
        JobOutcome {
            queue: "default".into(),
            qos,
            arrival_s,
            first_start_s,
            end_s: first_start_s.map(|s| s + device_s),
            preemptions: 0,
            tp: 1,
            device_s,
            pool: first_start_s.map(|_| 0),
        }
    }

    /// Two hours and a bit: interactive jobs in both hours, a batch job
    /// that never started (it waits until the end, 7,300 s).
    pub(crate) fn outcome() -> SimOutcome {
        let jobs = vec![
            job(Qos::Interactive, 10.0, Some(0.0004), 10.0),
            job(Qos::Batch, 50.0, Some(0.0), 900.0),
            job(Qos::Interactive, 100.0, Some(60.0), 40.0),
            job(Qos::Interactive, 3700.0, Some(0.5), 99.0),
            job(Qos::Interactive, 3800.0, Some(30.0), 20.0),
            job(Qos::Batch, 7000.0, None, 0.0),
        ];
        let mut series = Series::new(900_000, 1);
        series.add(0, 1_800_000, &[0, 0, 1], &[2]);
        series.add(1_800_000, 7_300_000, &[1, 0, 0], &[1]);
        SimOutcome {
            jobs,
            duration_s: 7300.0,
            busy_device_s: vec![1069.0],
            queue_device_s: Default::default(),
            buckets: series.finish(7_300_000),
            cycles: 10,
            stopped_at_s: None,
            node_failures: 0,
        }
    }

    fn targets() -> Vec<Target> {
        [
            "interactive.p95_wait<=2m",
            "interactive.p50_wait<=1s",
            "batch.p50_wait<=1s",
        ]
        .iter()
        .map(|t| Target::parse(t).expect("valid"))
        .collect()
    }

    fn render(sweep: Option<&[SweepPoint]>) -> (String, Report, String) {
        let (outcome, fleet) = (outcome(), fleet());
        let report = report::report(&outcome, &fleet, &targets()).expect("conserved");
        let table = crate::table::render(&report);
        let html = page(&Page {
            report: &report,
            outcome: &outcome,
            fleet: &fleet,
            table: &table,
            sweep,
        });
        (html, report, table)
    }

    #[test]
    fn the_recommendation_comes_first_with_the_fleet_its_cost_and_margins() {
        let (html, _, _) = render(None);
        let at = |needle: &str| html.find(needle).unwrap_or_else(|| panic!("{needle}"));
        let recommendation = at("id=\"recommendation\"");
        assert!(recommendation < at("<svg"), "before any chart");
        assert!(recommendation < at("<pre>"), "before the tables");
        let section = &html[recommendation..at("</section>")];
        for expected in [
            "Not recommended as it is. This fleet misses 1 of 3 targets.",
            "Missed: p50 batch wait, some jobs never started.",
            "1 node of <b>nvidia-l4</b> (4 devices)",
            "<b>6.00</b>",       // 4 devices at 1.50 per hour
            "<b>4,380</b>",      // x 730 h
            "met: 50% headroom", // p95 interactive 60 s of 2 m
            "missed: some jobs never started",
            "class=\"confidence\"",
        ] {
            assert!(section.contains(expected), "{expected}: {section}");
        }
    }

    /// Every time on the page is the text table's: the target that waited
    /// 0 s says 0ms as the table does, never "0.0 s".
    #[test]
    fn times_are_written_as_the_table_writes_them() {
        let (html, report, table) = render(None);
        for t in &report.targets {
            let written = seconds(t.actual_s);
            assert!(
                table.contains(&format!("{}: {written}", t.target)),
                "{table}"
            );
            assert!(html.contains(&format!("<td>{written}</td>")), "{written}");
        }
        assert!(html.contains("<td>0ms</td>") && html.contains("<td>500ms</td>"));
        for zero in [">0.0s", " 0.0s", "0.0 s"] {
            assert!(!html.contains(zero), "{zero}");
        }
    }

    #[test]
    fn a_sweep_names_its_cheapest_fleet_that_meets_every_target() {
        let point = |h100: u32, cost: f64, met: usize, worst: f64| SweepPoint {
            nodes: vec![("nvidia-l4".into(), h100)],
            cost_per_hour: cost,
            targets_met: met,
            targets: 3,
            worst_ratio: worst,
        };
        let points = [
            point(1, 6.0, 2, 1.4),
            point(2, 12.0, 3, 0.5),
            point(3, 18.0, 3, 0.2),
        ];
        let (html, _, _) = render(Some(&points));
        let recommendation = &html[..html.find("id=\"sweep\"").expect("a sweep section")];
        assert!(
            recommendation.contains("Buy 2 nvidia-l4 nodes at 12.00 per hour (8,760 per month)"),
            "{recommendation}"
        );
        assert!(
            recommendation.contains("The fleet simulated below misses 1 of 3 targets."),
            "the page simulated 1 node: {recommendation}"
        );
        assert!(html.contains("<tr class=\"recommended\"><td>(2)<br><small>recommended</small>"));
        assert!(html.contains("<td>(1)<br><small>simulated below</small>"));
    }

    #[test]
    fn numbers_are_grouped() {
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(1_234_567), "1,234,567");
        assert_eq!(money(19.916), "19.92");
        assert_eq!(money(14_539.6), "14,540");
    }
}
