//! `genfleet plan`: read the inputs, simulate (one fleet, a what-if pair,
//! a sweep, or replications), print the tables, write the JSON, charts,
//! HTML and the per-job CSV.

use std::collections::BTreeMap;
use std::io::BufWriter;
use std::num::NonZeroUsize;
use std::path::Path;

use anyhow::{bail, Context};
use genfleet_proto as pb;
use genfleet_scheduler::policy::{PolicyConfig, Profile};

use crate::cli::PlanArgs;
use genfleet_planner::charts;
use genfleet_planner::engine::{SimConfig, SimOutcome, Simulation};
use genfleet_planner::failures::NodeFailures;
use genfleet_planner::fleet::Fleet;
use genfleet_planner::generator::Description;
use genfleet_planner::jobs_out::JobsOut;
use genfleet_planner::replications::{self, RunError, RunInputs, Source};
use genfleet_planner::report::{self, Report, Target};
use genfleet_planner::sweep::{self, SweepAxis, SweepInputs};
use genfleet_planner::table::{render, sweep_table};
use genfleet_planner::workload::JobRequest;
use genfleet_planner::{fleet, parallel, profile_file, workload};

/// Threads for a sweep's fleets or replications: `--jobs`, or one per core.
fn threads(args: &PlanArgs) -> usize {
    parallel::threads(args.jobs.and_then(|j| NonZeroUsize::new(j as usize)))
}

/// Per flavor, how the nodes fail, from the fleet files (the plan's
/// figures win over the what-if fleet's for a flavor both give).
fn fleet_failures(args: &PlanArgs) -> anyhow::Result<BTreeMap<String, NodeFailures>> {
    let mut failures = BTreeMap::new();
    if let Some(other) = &args.compare {
        failures.extend(fleet::read_fleet_failures(other)?);
    }
    failures.extend(fleet::read_fleet_failures(&args.fleet)?);
    Ok(failures)
}

/// Everything but the fleet, read and checked.
struct Inputs {
    queues: Vec<pb::Queue>,
    jobs: Vec<JobRequest>,
    /// The description the jobs were drawn from (`--generate`).
    description: Option<Description>,
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
    let (jobs, description) = match (&args.trace, &args.generate) {
        (Some(path), _) => (workload::read_trace(path)?, None),
        (None, Some(path)) => {
            let description = genfleet_planner::generator::read_description(path)?;
            (description.jobs(None)?, Some(description))
        }
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
        node_repair_s: args.node_repair.as_secs_f64(),
        flavor_failures: fleet_failures(args)?,
        failure_seed: args.failure_seed,
        ..SimConfig::default()
    };
    Ok(Inputs {
        queues,
        jobs,
        description,
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
    let profile = profile_with_warnings(args, inputs, fleet)?;
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

/// The fleet's profile; says which rates it has to assume.
fn profile_with_warnings(
    args: &PlanArgs,
    inputs: &Inputs,
    fleet: &Fleet,
) -> anyhow::Result<Profile> {
    let profile = profile_file::plan_profile(fleet, args.profile.as_deref())?;
    for (model, flavor) in profile_file::missing_rates(&profile, fleet, &inputs.jobs) {
        say_err!(
            "warning: no step rate for {model} on {flavor}: assuming 1 step/s (give one with --profile; `genfleet profile export` writes a live cluster's)"
        );
    }
    Ok(profile)
}

/// A bar over runs (a sweep's fleets, replications), moved by the
/// threads as each run ends; like the simulated-time bar, drawn only on
/// a terminal.
fn runs_bar(runs: usize, what: &str) -> indicatif::ProgressBar {
    let bar = indicatif::ProgressBar::new(runs as u64);
    bar.set_style(
        indicatif::ProgressStyle::with_template(&format!(
            "{{bar:40}} {{pos}}/{{len}} {what}, {{eta}} left"
        ))
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    bar
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
    let replicated = args.replications > 1;
    if replicated && (!args.sweeps.is_empty() || args.compare.is_some()) {
        bail!("--replications runs one fleet: size the fleet with --sweep (or --compare) first, then run the fleet you chose with --replications");
    }
    if !args.sweeps.is_empty() {
        if args.jobs_out.is_some() {
            bail!(
                "--jobs-out writes the jobs of one fleet: run the fleet you chose without --sweep"
            );
        }
        return run_sweep(&args, &inputs, &fleet);
    }
    if replicated {
        return run_replications(&args, inputs, &fleet);
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
    if outcome.node_failures > 0 {
        say!("node failures: {} during the run", outcome.node_failures);
    }
    if let Some((interval, waste)) = inputs.config.failure_cost() {
        say!(
            "with --node-mtbf, running jobs checkpoint every {} and can expect to lose {:.2}% of their time to saving, redoing and reloading",
            humantime::format_duration(std::time::Duration::from_secs(interval.as_secs())),
            waste * 100.0
        );
    }
    if let Some(path) = &args.json {
        write(path, &serde_json::to_vec_pretty(&report)?)?;
        say!("report written to {}", path.display());
    }
    if let Some(path) = &args.jobs_out {
        let mut out = JobsOut::new(create(path)?, false)
            .with_context(|| format!("writing {}", path.display()))?;
        out.write_run(0, &inputs.jobs, &outcome, &fleet)
            .and_then(|()| out.finish())
            .with_context(|| format!("writing {}", path.display()))?;
        say!("jobs written to {}", path.display());
    }
    if let Some(dir) = &args.out {
        let json = serde_json::to_vec_pretty(&report)?;
        write_outputs(dir, &report, &json, &table, &outcome, &fleet)?;
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
    // The sweep changes node counts, not prices: one profile serves all.
    let profile = profile_with_warnings(args, inputs, base)?;
    let threads = threads(args).min(fleets.len().max(1));
    let started = std::time::Instant::now();
    let bar = runs_bar(fleets.len(), "fleets");
    let sweep_inputs = SweepInputs {
        queues: &inputs.queues,
        jobs: &inputs.jobs,
        profile: &profile,
        config: &inputs.config,
        targets: &inputs.targets,
    };
    let swept =
        sweep::run(&fleets, &sweep_inputs, threads, || bar.inc(1)).map_err(anyhow::Error::msg)?;
    bar.finish_and_clear();
    crate::output::print(&sweep_table(&swept))?;
    say!(
        "{} fleets in {:.1} s on {threads} thread(s)",
        swept.len(),
        started.elapsed().as_secs_f64()
    );
    let points: Vec<sweep::SweepPoint> = swept.iter().map(|s| s.point.clone()).collect();
    if let Some(dir) = &args.out {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        write(&dir.join("sweep.json"), &serde_json::to_vec_pretty(&swept)?)?;
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

/// The plan run `--replications` times on up to `--jobs` threads: each
/// replication's report, the summary with its intervals, and with
/// `--jobs-out` every replication's jobs, written in order as they come.
fn run_replications(args: &PlanArgs, inputs: Inputs, fleet: &Fleet) -> anyhow::Result<()> {
    let n = args.replications as usize;
    let profile = profile_with_warnings(args, &inputs, fleet)?;
    let threads = threads(args).min(n);
    let Inputs {
        queues,
        jobs,
        description,
        targets,
        config,
    } = inputs;
    let source = match description {
        Some(description) => Source::Seeds(description),
        None => Source::Trace(jobs),
    };
    let mut jobs_out = match &args.jobs_out {
        Some(path) => Some((
            JobsOut::new(create(path)?, true)
                .with_context(|| format!("writing {}", path.display()))?,
            path,
        )),
        None => None,
    };
    let started = std::time::Instant::now();
    let bar = runs_bar(n, "replications");
    let run_inputs = RunInputs {
        fleet,
        queues: &queues,
        profile: &profile,
        config: &config,
        targets: &targets,
    };
    let (summary, first) = replications::run(
        &source,
        n,
        &run_inputs,
        threads,
        || bar.inc(1),
        |r| match &mut jobs_out {
            Some((out, _)) => out.write_run(r.index, &r.jobs, &r.outcome, fleet),
            None => Ok(()),
        },
    )
    .map_err(|e| match (e, &jobs_out) {
        (RunError::Output(e), Some((_, path))) => {
            anyhow::Error::new(e).context(format!("writing {}", path.display()))
        }
        (e, _) => anyhow::Error::new(e),
    })?;
    bar.finish_and_clear();
    let table = genfleet_planner::table::replicated(&summary);
    crate::output::print(&table)?;
    say!(
        "{n} replications in {:.1} s on {threads} thread(s)",
        started.elapsed().as_secs_f64()
    );
    if let Some((out, path)) = jobs_out {
        out.finish()
            .with_context(|| format!("writing {}", path.display()))?;
        say!("jobs written to {}", path.display());
    }
    let json = serde_json::to_vec_pretty(&summary)?;
    if let Some(path) = &args.json {
        write(path, &json)?;
        say!("report written to {}", path.display());
    }
    if let (Some(dir), Some(outcome), Some(report)) = (&args.out, &first, summary.runs.first()) {
        // The charts are of the first replication; the table and the
        // JSON are of them all.
        write_outputs(dir, report, &json, &table, outcome, fleet)?;
        say!(
            "report, charts (of replication 1) and HTML written to {}",
            dir.display()
        );
    }
    if !summary.all_met_everywhere() {
        bail!("not every target was met in every replication");
    }
    Ok(())
}

/// The JSON, the SVG charts and the HTML report in `dir`.
fn write_outputs(
    dir: &Path,
    report: &Report,
    json: &[u8],
    table: &str,
    outcome: &SimOutcome,
    fleet: &Fleet,
) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    // The page's charts, also as files of their own.
    let charts = [
        ("queue-depth.svg", charts::queue_depth(outcome)),
        ("utilization.svg", charts::utilization(outcome, fleet)),
        ("wait-cdf.svg", charts::wait_cdf(outcome)),
    ];
    for (file, svg) in charts {
        let svg = svg.map_err(|e| anyhow::anyhow!("drawing {file}: {e}"))?;
        write(&dir.join(file), svg.as_bytes())?;
    }
    write(&dir.join("report.json"), json)?;
    let html = genfleet_planner::page::page(&genfleet_planner::page::Page {
        report,
        outcome,
        fleet,
        table,
        sweep: None,
    });
    write(&dir.join("report.html"), html.as_bytes())?;
    Ok(())
}

/// A buffered file for a CSV written row by row.
fn create(path: &Path) -> anyhow::Result<BufWriter<std::fs::File>> {
    let file =
        std::fs::File::create(path).with_context(|| format!("creating {}", path.display()))?;
    Ok(BufWriter::new(file))
}

fn write(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    std::fs::write(path, bytes).with_context(|| format!("writing {}", path.display()))
}
