//! The plan's report as text tables for the terminal.

use super::report::Report;
use super::sweep::SweepPoint;

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
        "{:<14} {:>7} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9}\n",
        "CLASS/QUEUE", "JOBS", "WAIT p50", "p95", "p99", "E2E p50", "p95", "p99"
    ));
    for g in r.classes.iter().chain(&r.queues) {
        out.push_str(&format!(
            "{:<14} {:>7} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9}\n",
            g.name,
            g.jobs,
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

/// The sweep's fleets, cheapest first, and which meet every target.
pub fn sweep_table(points: &[SweepPoint]) -> String {
    let mut sorted: Vec<&SweepPoint> = points.iter().collect();
    sorted.sort_by(|a, b| a.cost_per_hour.total_cmp(&b.cost_per_hour));
    let mut out = format!(
        "{:<40} {:>10} {:>8} {:>12}\n",
        "FLEET", "COST/H", "TARGETS", "WORST/LIMIT"
    );
    for p in sorted {
        let fleet: Vec<String> = p.nodes.iter().map(|(f, n)| format!("{f} x{n}")).collect();
        out.push_str(&format!(
            "{:<40} {:>10.2} {:>8} {:>12.2}\n",
            fleet.join(", "),
            p.cost_per_hour,
            format!("{}/{}", p.targets_met, p.targets),
            p.worst_ratio
        ));
    }
    out
}
