//! The plan's report as text tables for the terminal.

use super::replications::{Interval, Summary};
use super::report::Report;
use super::sweep::Swept;

pub fn render(r: &Report) -> String {
    let mut out = String::new();
    out.push_str(&format!(
        "{} jobs: {} completed, {} started and not done, {} never started; {} preemptions\n",
        r.jobs, r.completed, r.running_at_end, r.pending_at_end, r.preemptions
    ));
    if r.arrived_after_end > 0 {
        out.push_str(&format!(
            "({} more would have arrived after the end of the run)\n",
            r.arrived_after_end
        ));
    }
    out.push('\n');
    out.push_str(&format!(
        "{:<14} {:>7} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9}\n",
        "CLASS/QUEUE", "JOBS", "P(WAIT>0)", "WAIT p50", "p95", "p99", "E2E p50", "p95", "p99"
    ));
    for g in r.classes.iter().chain(&r.queues) {
        out.push_str(&format!(
            "{:<14} {:>7} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9}\n",
            g.name,
            g.jobs,
            percent(g.waited),
            seconds(g.wait_s.p50),
            seconds(g.wait_s.p95),
            seconds(g.wait_s.p99),
            seconds(g.end_to_end_s.p50),
            seconds(g.end_to_end_s.p95),
            seconds(g.end_to_end_s.p99),
        ));
    }
    out.push('\n');
    out.push_str(&format!(
        "{:<20} {:>8} {:>12} {:>12}\n",
        "FLAVOR", "DEVICES", "UTILIZATION", "COST"
    ));
    for f in &r.flavors {
        out.push_str(&format!(
            "{:<20} {:>8} {:>11.1}% {:>12.2}\n",
            f.flavor,
            f.devices,
            f.utilization * 100.0,
            f.cost
        ));
    }
    out.push_str(&format!(
        "{:<20} {:>8} {:>12} {:>12.2}\n",
        "total", "", "", r.cost
    ));
    if !r.queue_use.is_empty() {
        out.push('\n');
        out.push_str(&format!(
            "{:<14} {:>12} {:>9}\n",
            "QUEUE", "DEVICE-H", "BORROWED"
        ));
        for q in &r.queue_use {
            out.push_str(&format!(
                "{:<14} {:>12.1} {:>8.1}%\n",
                q.queue,
                q.device_hours,
                q.borrowed_share * 100.0
            ));
        }
    }
    if !r.targets.is_empty() {
        out.push('\n');
        for t in &r.targets {
            out.push_str(&format!(
                "{} {}: {}\n",
                if t.met { "met   " } else { "MISSED" },
                t.target,
                seconds(t.actual_s)
            ));
        }
    }
    out
}

/// Seconds as a short human figure: 850ms, 12.3s, 4.2m, 1.5h.
pub fn seconds(s: f64) -> String {
    if s < 1.0 {
        format!("{:.0}ms", s * 1000.0)
    } else if s < 120.0 {
        format!("{s:.1}s")
    } else if s < 7200.0 {
        format!("{:.1}m", s / 60.0)
    } else {
        format!("{:.1}h", s / 3600.0)
    }
}

/// A share as a percentage: 3.1%.
pub fn percent(share: f64) -> String {
    format!("{:.1}%", share * 100.0)
}

/// The sweep's fleets, cheapest first, and which meet every target. An
/// abandoned fleet meets at most the targets not proven missed, and its
/// worst ratio is a lower bound (`>=`).
pub fn sweep_table(swept: &[Swept]) -> String {
    let mut sorted: Vec<&Swept> = swept.iter().collect();
    sorted.sort_by(|a, b| a.point.cost_per_hour.total_cmp(&b.point.cost_per_hour));
    let mut out = format!(
        "{:<40} {:>10} {:>8} {:>12}\n",
        "FLEET", "COST/H", "TARGETS", "WORST/LIMIT"
    );
    let mut abandoned = 0;
    for s in sorted {
        let p = &s.point;
        let fleet: Vec<String> = p.nodes.iter().map(|(f, n)| format!("{f} x{n}")).collect();
        let (targets, ratio) = match &s.abandoned {
            Some(a) => {
                abandoned += 1;
                (
                    format!("<={}/{}", p.targets - a.missed.len(), p.targets),
                    format!(">={:.2}", p.worst_ratio),
                )
            }
            None => (
                format!("{}/{}", p.targets_met, p.targets),
                format!("{:.2}", p.worst_ratio),
            ),
        };
        out.push_str(&format!(
            "{:<40} {:>10.2} {:>8} {:>12}\n",
            fleet.join(", "),
            p.cost_per_hour,
            targets,
            ratio
        ));
    }
    if abandoned > 0 {
        out.push_str(&format!(
            "({abandoned} fleet(s) stopped early: a target was proven missed, its ratio is at least the one shown)\n"
        ));
    }
    out
}

/// A time's estimate and interval: `4.7s (4.1s..5.3s)`.
fn seconds_interval(i: &Interval) -> String {
    format!(
        "{} ({}..{})",
        seconds(i.estimate),
        seconds(i.low),
        seconds(i.high)
    )
}

fn percent_interval(i: &Interval) -> String {
    format!(
        "{} ({}..{})",
        percent(i.estimate),
        percent(i.low),
        percent(i.high)
    )
}

/// The report over replications: each figure with its 95% interval, one
/// line per class or queue and figure, and each target's verdict count.
pub fn replicated(s: &Summary) -> String {
    let mut out = format!("{}\n", s.how);
    out.push_str(&format!(
        "{:.0} jobs per replication ({:.0}..{:.0})\n\n",
        s.jobs.estimate, s.jobs.low, s.jobs.high
    ));
    out.push_str(&format!(
        "{:<14} {:<10} {:>28}\n",
        "CLASS/QUEUE", "FIGURE", "ESTIMATE (95% INTERVAL)"
    ));
    for g in s.classes.iter().chain(&s.queues) {
        let rows = [
            (
                "jobs",
                format!(
                    "{:.0} ({:.0}..{:.0})",
                    g.jobs.estimate, g.jobs.low, g.jobs.high
                ),
            ),
            ("P(wait>0)", percent_interval(&g.waited)),
            ("wait p50", seconds_interval(&g.wait_s.p50)),
            ("wait p95", seconds_interval(&g.wait_s.p95)),
            ("wait p99", seconds_interval(&g.wait_s.p99)),
            ("e2e p50", seconds_interval(&g.end_to_end_s.p50)),
            ("e2e p95", seconds_interval(&g.end_to_end_s.p95)),
            ("e2e p99", seconds_interval(&g.end_to_end_s.p99)),
        ];
        for (figure, value) in rows {
            out.push_str(&format!("{:<14} {figure:<10} {value:>28}\n", g.name));
        }
        if g.replications < s.replications {
            out.push_str(&format!(
                "{:<14} (jobs in {} of {} replications)\n",
                g.name, g.replications, s.replications
            ));
        }
    }
    out.push('\n');
    out.push_str(&format!(
        "{:<20} {:>8} {:>24} {:>28}\n",
        "FLAVOR", "DEVICES", "UTILIZATION", "COST"
    ));
    for f in &s.flavors {
        out.push_str(&format!(
            "{:<20} {:>8} {:>24} {:>28}\n",
            f.flavor,
            f.devices,
            percent_interval(&f.utilization),
            format!(
                "{:.2} ({:.2}..{:.2})",
                f.cost.estimate, f.cost.low, f.cost.high
            )
        ));
    }
    if !s.targets.is_empty() {
        out.push('\n');
        for t in &s.targets {
            let verdict = if t.met_in == t.of { "met   " } else { "MISSED" };
            out.push_str(&format!(
                "{verdict} {}: met in {} of {}; {}\n",
                t.target,
                t.met_in,
                t.of,
                seconds_interval(&t.actual_s)
            ));
        }
    }
    out
}
