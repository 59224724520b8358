//! `genfleet plan`: read the inputs, simulate (one fleet, a what-if pair,
//! or a sweep), print the tables, write the JSON, charts and HTML.

use std::path::Path;

use anyhow::{bail, Context};
use genfleet_proto as pb;
use genfleet_scheduler::policy::PolicyConfig;

use crate::cli::PlanArgs;
use genfleet_planner::charts;
use genfleet_planner::engine::{SimConfig, SimOutcome, Simulation};
use genfleet_planner::fleet::Fleet;
use genfleet_planner::report::{self, Report, Target};
use genfleet_planner::sweep::{self, SweepAxis};
use genfleet_planner::table::{render, sweep_table};
use genfleet_planner::workload::JobRequest;
use genfleet_planner::{fleet, generator, profile_file, workload};

/// Everything but the fleet, read and checked.
struct Inputs {
    queues: Vec<pb::Queue>,
    jobs: Vec<JobRequest>,
    targets: Vec<Target>,
    config: SimConfig,
}

/// `fleets`: the plan's fleet and the what-if one, whose flavors and
/// models the inputs may name.
fn read_inputs(args: &PlanArgs, fleets: &[&Fleet]) -> anyhow::Result<Inputs> {
    let queues = match &args.queues {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("reading {}", path.display()))?;
            let file = path.display().to_string();
            let mut queues: Vec<pb::Queue> = Vec::new();
            for queue in genfleet_scheduler::queue_file::parse(&file, &text)? {
                // What `genfleet queue apply` would refuse, refused here.
                let name = queue.name.clone();
                let queue = genfleet_scheduler::state::validate_queue(queue)
                    .map_err(|why| anyhow::anyhow!("{file}: queue {name}: {why}"))?;
                if queues.iter().any(|q| q.name == queue.name) {
                    bail!("{file}: queue {name} is given twice");
                }
                queues.push(queue);
            }
            queues
        }
        None => Vec::new(),
    };
    let jobs = match (&args.trace, &args.generate) {
        (Some(path), _) => workload::read_trace(path)?,
        (None, Some(path)) => generator::read_generator(path)?,
        (None, None) => bail!("give the workload: --trace FILE or --generate FILE"),
    };
    let queues_file = args
        .queues
        .as_ref()
        .map_or(String::new(), |p| p.display().to_string());
    let jobs_file = args
        .trace
        .as_ref()
        .or(args.generate.as_ref())
        .map_or(String::new(), |p| p.display().to_string());
    genfleet_planner::check_references(fleets, &queues_file, &queues, &jobs_file, &jobs)?;
    let targets = args
        .targets
        .iter()
        .map(|t| Target::parse(t))
        .collect::<Result<Vec<_>, _>>()
        .map_err(anyhow::Error::msg)?;
    genfleet_planner::report::check_target_scopes(&targets, &jobs).map_err(anyhow::Error::msg)?;
    let config = SimConfig {
        policy: PolicyConfig {
            min_runtime_ms: args.min_runtime.as_millis() as i64,
            ..PolicyConfig::default()
        },
        checkpoint_s: args.checkpoint_time.as_secs_f64(),
        reload_s: args.reload_time.as_secs_f64(),
        cycle_s: args.cycle.as_secs_f64().max(0.001),
        horizon_s: args.horizon.map(|h| h.as_secs_f64()),
        node_mtbf_s: args.node_mtbf.map(|m| m.as_secs_f64()),
        ..SimConfig::default()
    };
    Ok(Inputs {
        queues,
        jobs,
        targets,
        config,
    })
}

/// One fleet's run and its report.
fn simulate(
    args: &PlanArgs,
    inputs: &Inputs,
    fleet: &Fleet,
) -> anyhow::Result<(SimOutcome, Report)> {
    let profile = profile_file::plan_profile(fleet, args.profile.as_deref())?;
    for (model, flavor) in profile_file::missing_rates(&profile, fleet, &inputs.jobs) {
        say_err!(
            "warning: no step rate for {model} on {flavor}: assuming 1 step/s (give one with --profile; `genfleet profile export` writes a live cluster's)"
        );
    }
    let bar = simulated_time_bar(inputs);
    let outcome = Simulation::new(
        fleet,
        &inputs.queues,
        &inputs.jobs,
        &profile,
        &inputs.config,
    )
    .run(&mut |now_s| {
        bar.set_position(now_s as u64);
        bar.set_message(format!("{:.1} h simulated", now_s / 3600.0));
    });
    bar.finish_and_clear();
    let report = report::report(&outcome, fleet, &inputs.targets).map_err(anyhow::Error::msg)?;
    Ok((outcome, report))
}

/// A bar over simulated time, up to the last arrival (or the horizon);
/// drawn only on a terminal, and only once a run lasts.
fn simulated_time_bar(inputs: &Inputs) -> indicatif::ProgressBar {
    let last_arrival = inputs.jobs.last().map_or(0.0, |j| j.arrival_s);
    let end_s = inputs.config.horizon_s.unwrap_or(last_arrival).max(1.0);
    let bar = indicatif::ProgressBar::new(end_s as u64);
    bar.set_style(
        indicatif::ProgressStyle::with_template("{bar:40} {msg}, {eta} left")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    bar
}

pub fn run(args: PlanArgs) -> anyhow::Result<()> {
    let fleet = fleet::read_fleet(&args.fleet)?;
    let other = args.compare.as_deref().map(fleet::read_fleet).transpose()?;
    let fleets: Vec<&Fleet> = std::iter::once(&fleet).chain(other.as_ref()).collect();
    let inputs = read_inputs(&args, &fleets)?;
    if !args.sweeps.is_empty() {
        return run_sweep(&args, &inputs, &fleet);
    }
    let started = std::time::Instant::now();
    let (outcome, report) = simulate(&args, &inputs, &fleet)?;
    let table = render(&report);
    crate::output::print(&table)?;
    say!(
        "simulated {:.1} h in {:.2} s ({} cycles)",
        report.duration_s / 3600.0,
        started.elapsed().as_secs_f64(),
        report.cycles
    );
    if let Some((interval, waste)) = inputs.config.failure_cost() {
        say!(
            "node failures: running jobs checkpoint every {} and lose {:.2}% of their time to saving, redoing and reloading",
            humantime::format_duration(std::time::Duration::from_secs(interval.as_secs())),
            waste * 100.0
        );
    }
    if let Some(path) = &args.json {
        write(path, &serde_json::to_vec_pretty(&report)?)?;
        say!("report written to {}", path.display());
    }
    if let Some(dir) = &args.out {
        write_outputs(dir, &report, &table, &outcome, &fleet)?;
        say!("report, charts and HTML written to {}", dir.display());
    }
    if let (Some(path), Some(other)) = (&args.compare, &other) {
        let (_, theirs) = simulate(&args, &inputs, other)?;
        say!("\nwhat-if: the same workload on {}\n", path.display());
        crate::output::print(&render(&theirs))?;
        crate::output::print(&compare(&args.fleet, &report, path, &theirs))?;
    }
    if !report.all_targets_met() {
        bail!("not every target was met");
    }
    Ok(())
}

/// The two fleets' headline figures side by side.
fn compare(a_path: &Path, a: &Report, b_path: &Path, b: &Report) -> String {
    let name = |p: &Path| {
        p.file_name().map_or_else(
            || p.display().to_string(),
            |n| n.to_string_lossy().into_owned(),
        )
    };
    let mut out = format!("\n{:<28} {:>16} {:>16}\n", "", name(a_path), name(b_path));
    out.push_str(&format!(
        "{:<28} {:>16.2} {:>16.2}\n",
        "cost", a.cost, b.cost
    ));
    for (ca, cb) in a.classes.iter().zip(&b.classes) {
        out.push_str(&format!(
            "{:<28} {:>16} {:>16}\n",
            format!("{} wait p95", ca.name),
            genfleet_planner::table::seconds(ca.wait_s.p95),
            genfleet_planner::table::seconds(cb.wait_s.p95)
        ));
    }
    let met = |r: &Report| {
        format!(
            "{}/{}",
            r.targets.iter().filter(|t| t.met).count(),
            r.targets.len()
        )
    };
    out.push_str(&format!(
        "{:<28} {:>16} {:>16}\n",
        "targets met",
        met(a),
        met(b)
    ));
    out
}

fn run_sweep(args: &PlanArgs, inputs: &Inputs, base: &Fleet) -> anyhow::Result<()> {
    if inputs.targets.is_empty() {
        bail!("a sweep looks for the cheapest fleet that meets the targets: give at least one --target");
    }
    let axes = args
        .sweeps
        .iter()
        .map(|s| SweepAxis::parse(s))
        .collect::<Result<Vec<_>, _>>()
        .map_err(anyhow::Error::msg)?;
    let fleets = sweep::fleets(base, &axes).map_err(anyhow::Error::msg)?;
    let bar = indicatif::ProgressBar::new(fleets.len() as u64);
    bar.set_style(
        indicatif::ProgressStyle::with_template("{bar:40} {pos}/{len} fleets, {eta} left")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    let mut points = Vec::with_capacity(fleets.len());
    for (label, fleet) in &fleets {
        let (_, report) = simulate(args, inputs, fleet)?;
        points.push(sweep::point(label.clone(), fleet, &report));
        bar.inc(1);
    }
    bar.finish_and_clear();
    crate::output::print(&sweep_table(&points))?;
    if let Some(dir) = &args.out {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        write(
            &dir.join("sweep.json"),
            &serde_json::to_vec_pretty(&points)?,
        )?;
        let svg =
            charts::cost_curve(&points).map_err(|e| anyhow::anyhow!("drawing sweep.svg: {e}"))?;
        write(&dir.join("sweep.svg"), svg.as_bytes())?;
        say!("sweep written to {}", dir.display());
    }
    match sweep::cheapest(&points) {
        Some(best) => {
            let fleet: Vec<String> = best
                .nodes
                .iter()
                .map(|(f, n)| format!("{n} {f} node(s)"))
                .collect();
            say!(
                "cheapest fleet that meets every target: {} at {:.2} per hour",
                fleet.join(" + "),
                best.cost_per_hour
            );
            Ok(())
        }
        None => bail!("no fleet of the sweep met every target: widen the ranges"),
    }
}

/// The JSON, the SVG charts and the HTML report in `dir`.
fn write_outputs(
    dir: &Path,
    report: &Report,
    table: &str,
    outcome: &SimOutcome,
    fleet: &Fleet,
) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let charts = [
        (
            "Jobs waiting",
            "queue-depth.svg",
            charts::queue_depth(outcome),
        ),
        (
            "Devices busy",
            "utilization.svg",
            charts::utilization(outcome, fleet),
        ),
        (
            "Wait before the first step",
            "wait-cdf.svg",
            charts::wait_cdf(outcome),
        ),
    ];
    let mut inline = Vec::new();
    for (title, file, svg) in charts {
        let svg = svg.map_err(|e| anyhow::anyhow!("drawing {file}: {e}"))?;
        write(&dir.join(file), svg.as_bytes())?;
        inline.push((title, svg));
    }
    write(
        &dir.join("report.json"),
        &serde_json::to_vec_pretty(report)?,
    )?;
    write(
        &dir.join("report.html"),
        charts::html(report, table, &inline).as_bytes(),
    )?;
    Ok(())
}

fn write(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    std::fs::write(path, bytes).with_context(|| format!("writing {}", path.display()))
}
