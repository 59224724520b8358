//! `genfleet plan`: read the inputs, simulate, print the table, write JSON.

use anyhow::{bail, Context};
use genfleet_scheduler::policy::{PolicyConfig, Profile};

use crate::cli::PlanArgs;
use crate::plan::engine::{SimConfig, Simulation};
use crate::plan::report::{self, Report, Target};
use crate::plan::{fleet, workload};

pub fn run(args: PlanArgs) -> anyhow::Result<()> {
    let fleet = fleet::read_fleet(&args.fleet)?;
    let queues = match &args.queues {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("reading {}", path.display()))?;
            crate::queue_file::parse(&path.display().to_string(), &text)?
        }
        None => Vec::new(),
    };
    let trace = workload::read_trace(&args.trace)?;
    let targets = args
        .targets
        .iter()
        .map(|t| Target::parse(t))
        .collect::<Result<Vec<_>, _>>()
        .map_err(anyhow::Error::msg)?;
    let config = SimConfig {
        policy: PolicyConfig {
            min_runtime_ms: args.min_runtime.as_millis() as i64,
            ..PolicyConfig::default()
        },
        checkpoint_s: args.checkpoint_time.as_secs_f64(),
        reload_s: args.reload_time.as_secs_f64(),
        cycle_s: args.cycle.as_secs_f64().max(0.001),
        horizon_s: args.horizon.map(|h| h.as_secs_f64()),
        ..SimConfig::default()
    };
    let profile = Profile::seeded();
    let started = std::time::Instant::now();
    let outcome = Simulation::new(&fleet, &queues, &trace, &profile, &config).run(&mut |_| {});
    let report = report::report(&outcome, &fleet, &targets).map_err(anyhow::Error::msg)?;
    print!("{}", render(&report));
    println!(
        "simulated {:.1} h in {:.2} s ({} cycles)",
        report.duration_s / 3600.0,
        started.elapsed().as_secs_f64(),
        report.cycles
    );
    if let Some(path) = &args.json {
        let json = serde_json::to_vec_pretty(&report)?;
        std::fs::write(path, json).with_context(|| format!("writing {}", path.display()))?;
        println!("report written to {}", path.display());
    }
    if !report.all_targets_met() {
        bail!("not every target was met");
    }
    Ok(())
}

fn render(r: &Report) -> String {
    let mut out = String::new();
    out.push_str(&format!(
        "{} jobs: {} completed, {} started and not done, {} never started; {} preemptions\n\n",
        r.jobs, r.completed, r.running_at_end, r.pending_at_end, r.preemptions
    ));
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
fn seconds(s: f64) -> String {
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
