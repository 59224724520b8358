//! Replications: the same plan on several workloads of the same demand,
//! so that the report says how far sampling alone may move each figure.
//!
//! - A generated workload is drawn again with other seeds: the
//!   description's own seed `S`, then `S + 1`, `S + 2`, ... Each is an
//!   independent day of the same demand; a figure's estimate is the mean
//!   over the replications, and its 95% interval a t-interval on that mean
//!   (independent replications, as simulation output analysis does it:
//!   Law and Kelton, ch. 9). The t-interval and not a percentile bootstrap
//!   over the replications: with 10 or 20 replications the percentile
//!   interval is little more than the extremes, while a quantile of
//!   thousands of waits is close to normal across replications.
//! - A trace is resampled by a *local block bootstrap* (Paparoditis and
//!   Politis, 2002): its span is cut into blocks of an hour (shorter for
//!   a trace of less than a day, so that there are 24), and each block's
//!   place is filled with a block drawn from it or its two neighbours,
//!   its arrivals shifted into place. Whole blocks keep the bursts and
//!   the mix of a stretch of time together (resampling single jobs would
//!   spread a burst over the day and understate waits); drawing near the
//!   block's own place keeps the daily shape. Replication 1 is the trace
//!   as given: the estimate is its figure, and the interval that figure
//!   plus or minus t times the resamples' standard deviation (the
//!   bootstrap's standard error: a trace holds one day's information,
//!   more resamples do not narrow it).
//!
//! Every interval is clipped to what the figure can be (a wait is never
//! negative, a share at most 1).

use std::fmt;

use genfleet_proto as pb;
use genfleet_scheduler::policy::{Profile, Qos};
use rand::{Rng, SeedableRng};
use serde::Serialize;

use super::engine::{SimConfig, SimOutcome, Simulation};
use super::fleet::Fleet;
use super::generator::Description;
use super::parallel;
use super::report::{self, GroupStats, Quantiles, Report, Target};
use super::workload::JobRequest;
use super::InputError;

/// Most replications one plan may run.
pub const MAX_REPLICATIONS: usize = 1000;

/// Where the replications' workloads come from.
pub enum Source {
    /// A description, drawn with successive seeds.
    Seeds(Description),
    /// A trace, resampled by blocks.
    Trace(Vec<JobRequest>),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Method {
    Seeds,
    LocalBlockBootstrap,
}

impl Source {
    pub fn method(&self) -> Method {
        match self {
            Source::Seeds(_) => Method::Seeds,
            Source::Trace(_) => Method::LocalBlockBootstrap,
        }
    }

    /// Replication `r`'s workload (0: the description's own seed, or the
    /// trace as given), sorted by arrival.
    pub fn workload(&self, r: usize) -> Result<Vec<JobRequest>, InputError> {
        match self {
            Source::Seeds(d) => d.jobs(Some(d.seed().wrapping_add(r as u64))),
            Source::Trace(jobs) if r == 0 => Ok(jobs.clone()),
            Source::Trace(jobs) => Ok(block_bootstrap(jobs, r as u64)),
        }
    }

    /// Says how replication `r` was made, for the report.
    pub fn describe(&self, replications: usize) -> String {
        match self {
            Source::Seeds(d) => format!(
                "{replications} replications: seeds {}..={} of the workload; 95% intervals: t over the replications' means",
                d.seed(),
                d.seed().wrapping_add(replications as u64 - 1)
            ),
            Source::Trace(_) => format!(
                "{replications} replications: the trace, then {} local block bootstrap resamples; 95% intervals: the trace's figure +- t x the resamples' spread",
                replications - 1
            ),
        }
    }
}

/// What every replication is run with.
pub struct RunInputs<'a> {
    pub fleet: &'a Fleet,
    pub queues: &'a [pb::Queue],
    pub profile: &'a Profile,
    pub config: &'a SimConfig,
    pub targets: &'a [Target],
}

/// One replication: its workload, its run and its report.
pub struct Replication {
    /// From 0.
    pub index: usize,
    pub jobs: Vec<JobRequest>,
    pub outcome: SimOutcome,
    pub report: Report,
}

/// Why replications stopped.
#[derive(Debug)]
pub enum RunError {
    /// A replication's workload could not be made.
    Workload(InputError),
    /// A replication's run broke a conservation law, or a target's scope
    /// had no jobs in it.
    Report { replication: usize, why: String },
    /// What `each` wrote failed.
    Output(std::io::Error),
}

impl fmt::Display for RunError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RunError::Workload(e) => write!(f, "{e}"),
            RunError::Report { replication, why } => {
                write!(f, "replication {}: {why}", replication + 1)
            }
            RunError::Output(e) => write!(f, "{e}"),
        }
    }
}

impl std::error::Error for RunError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            RunError::Workload(e) => Some(e),
            RunError::Report { .. } => None,
            RunError::Output(e) => Some(e),
        }
    }
}

/// Runs `n` replications on up to `threads` threads. `each` sees every
/// replication in order (to write its jobs) as soon as those before it
/// are done; `done` is called as each run ends. Returns the summary and
/// replication 1's outcome (for charts).
pub fn run(
    source: &Source,
    n: usize,
    inputs: &RunInputs,
    threads: usize,
    done: impl Fn() + Sync,
    mut each: impl FnMut(&Replication) -> std::io::Result<()>,
) -> Result<(Summary, Option<SimOutcome>), RunError> {
    let mut reports = Vec::with_capacity(n);
    let mut first = None;
    let indexes: Vec<usize> = (0..n).collect();
    parallel::in_order(
        &indexes,
        threads,
        |_, &index| {
            let mut jobs = source.workload(index).map_err(RunError::Workload)?;
            // A resample (or a seed) without a job of some target's class
            // or queue cannot judge that target: it is drawn again, from
            // a seed no other replication uses, so the replications are
            // those in which every target's scope has jobs.
            let mut redraws = 0;
            while index > 0
                && redraws < MAX_REDRAWS
                && report::check_target_scopes(inputs.targets, &jobs).is_err()
            {
                redraws += 1;
                jobs = source
                    .workload(index + redraws * n)
                    .map_err(RunError::Workload)?;
            }
            // Nodes fail at other times in each replication too.
            let config = SimConfig {
                failure_seed: inputs.config.failure_seed.wrapping_add(index as u64),
                ..inputs.config.clone()
            };
            let outcome =
                Simulation::new(inputs.fleet, inputs.queues, &jobs, inputs.profile, &config)
                    .run(&mut |_| {});
            let report = report::report(&outcome, inputs.fleet, inputs.targets).map_err(|why| {
                RunError::Report {
                    replication: index,
                    why,
                }
            })?;
            done();
            Ok(Replication {
                index,
                jobs,
                outcome,
                report,
            })
        },
        |_, replication| {
            each(&replication).map_err(RunError::Output)?;
            if replication.index == 0 {
                first = Some(replication.outcome);
            }
            reports.push(replication.report);
            Ok(())
        },
    )?;
    Ok((summarize(reports, source), first))
}

/// Times a replication is drawn again for lack of a target's scope.
const MAX_REDRAWS: usize = 100;

/// Blocks of at most an hour, at least a minute, 24 over a shorter trace;
/// as many as cover the span (a job at its very end falls in the last
/// block, not in a block of its own).
fn blocks_of(span_s: f64) -> (usize, f64) {
    let width = (span_s / 24.0).clamp(60.0, 3600.0);
    let blocks = ((span_s / width).ceil() as usize).max(1);
    (blocks, width)
}

/// A local block bootstrap resample of `jobs` (sorted by arrival): each
/// block's place filled with its own block or a neighbour's, drawn with a
/// generator seeded by `seed`.
pub fn block_bootstrap(jobs: &[JobRequest], seed: u64) -> Vec<JobRequest> {
    let span = jobs.iter().map(|j| j.arrival_s).fold(0.0, f64::max);
    let (blocks, width) = blocks_of(span);
    let block = |j: &JobRequest| ((j.arrival_s / width).floor() as usize).min(blocks - 1);
    // Each block's jobs, in arrival order.
    let mut by_block: Vec<Vec<&JobRequest>> = vec![Vec::new(); blocks];
    for job in jobs {
        by_block[block(job)].push(job);
    }
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let mut out = Vec::with_capacity(jobs.len());
    for place in 0..blocks {
        let (lo, hi) = (place.saturating_sub(1), (place + 1).min(blocks - 1));
        let from = rng.random_range(lo..=hi);
        let shift = (place as f64 - from as f64) * width;
        out.extend(by_block[from].iter().map(|j| JobRequest {
            arrival_s: (j.arrival_s + shift).max(0.0),
            ..(*j).clone()
        }));
    }
    out.sort_by(|a, b| a.arrival_s.total_cmp(&b.arrival_s));
    out
}

/// A figure's estimate and its 95% interval.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Interval {
    pub estimate: f64,
    pub low: f64,
    pub high: f64,
}

impl Interval {
    /// The interval of `values` (one per replication, the first that of
    /// replication 1) by `method`, clipped to `[floor, ceiling]`.
    pub fn of(values: &[f64], method: Method, floor: f64, ceiling: f64) -> Self {
        let (estimate, half) = match method {
            Method::Seeds => {
                let (mean, sd) = mean_sd(values);
                let n = values.len();
                (
                    mean,
                    t975(n.saturating_sub(1)) * sd / (n.max(1) as f64).sqrt(),
                )
            }
            Method::LocalBlockBootstrap => {
                let first = values.first().copied().unwrap_or(0.0);
                let resamples = values.get(1..).unwrap_or(&[]);
                let (_, sd) = mean_sd(resamples);
                (first, t975(resamples.len().saturating_sub(1)) * sd)
            }
        };
        let half = if half.is_finite() { half } else { 0.0 };
        Self {
            estimate,
            low: (estimate - half).clamp(floor, ceiling),
            high: (estimate + half).clamp(floor, ceiling),
        }
    }
}

/// Mean and sample standard deviation (0 for fewer than two values).
fn mean_sd(values: &[f64]) -> (f64, f64) {
    if values.is_empty() {
        return (0.0, 0.0);
    }
    let n = values.len() as f64;
    let mean = values.iter().sum::<f64>() / n;
    if values.len() < 2 {
        return (mean, 0.0);
    }
    let var = values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (n - 1.0);
    (mean, var.sqrt())
}

/// Student's t 0.975 quantile for `df` degrees of freedom (0: none, no
/// interval): the table to 30, Cornish-Fisher's expansion beyond (within
/// 0.001 of it there).
fn t975(df: usize) -> f64 {
    const TABLE: [f64; 30] = [
        12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179, 2.160,
        2.145, 2.131, 2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064, 2.060, 2.056,
        2.052, 2.048, 2.045, 2.042,
    ];
    match df {
        0 => 0.0,
        1..=30 => TABLE[df - 1],
        _ => {
            let (z, v) = (1.959_964f64, df as f64);
            z + (z.powi(3) + z) / (4.0 * v)
                + (5.0 * z.powi(5) + 16.0 * z.powi(3) + 3.0 * z) / (96.0 * v * v)
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct QuantileIntervals {
    pub p50: Interval,
    pub p95: Interval,
    pub p99: Interval,
    pub mean: Interval,
}

/// A class or queue over the replications it had jobs in.
#[derive(Debug, Clone, Serialize)]
pub struct GroupSummary {
    pub name: String,
    /// Replications that had jobs of it.
    pub replications: usize,
    pub jobs: Interval,
    pub waited: Interval,
    pub wait_s: QuantileIntervals,
    pub end_to_end_s: QuantileIntervals,
}

#[derive(Debug, Clone, Serialize)]
pub struct FlavorSummary {
    pub flavor: String,
    pub devices: u64,
    pub utilization: Interval,
    pub cost: Interval,
}

#[derive(Debug, Clone, Serialize)]
pub struct TargetSummary {
    pub target: String,
    pub limit_s: f64,
    pub actual_s: Interval,
    /// Replications that met it.
    pub met_in: usize,
    pub of: usize,
}

/// The report over every replication.
#[derive(Debug, Clone, Serialize)]
pub struct Summary {
    pub replications: usize,
    pub method: Method,
    pub how: String,
    pub jobs: Interval,
    pub cost: Interval,
    pub classes: Vec<GroupSummary>,
    pub queues: Vec<GroupSummary>,
    pub flavors: Vec<FlavorSummary>,
    pub targets: Vec<TargetSummary>,
    /// Each replication's own report, in order.
    pub runs: Vec<Report>,
}

impl Summary {
    pub fn all_met_everywhere(&self) -> bool {
        self.targets.iter().all(|t| t.met_in == t.of)
    }
}

/// The summary of `runs` (replication 1 first), made by `source`.
pub fn summarize(runs: Vec<Report>, source: &Source) -> Summary {
    let method = source.method();
    let interval = |values: Vec<f64>, ceiling: f64| Interval::of(&values, method, 0.0, ceiling);
    let all = |f: &dyn Fn(&Report) -> f64| runs.iter().map(f).collect::<Vec<f64>>();
    let classes = Qos::ALL
        .iter()
        .rev()
        .filter_map(|q| groups(&runs, q.label(), |r| &r.classes, method))
        .collect();
    let mut queue_names: Vec<&str> = runs
        .iter()
        .flat_map(|r| r.queues.iter().map(|g| g.name.as_str()))
        .collect();
    queue_names.sort_unstable();
    queue_names.dedup();
    let queues = queue_names
        .iter()
        .filter_map(|name| groups(&runs, name, |r| &r.queues, method))
        .collect();
    let flavors = runs.first().map_or_else(Vec::new, |first| {
        first
            .flavors
            .iter()
            .enumerate()
            .map(|(i, f)| FlavorSummary {
                flavor: f.flavor.clone(),
                devices: f.devices,
                utilization: interval(all(&|r| r.flavors[i].utilization), 1.0),
                cost: interval(all(&|r| r.flavors[i].cost), f64::INFINITY),
            })
            .collect()
    });
    let targets = runs.first().map_or_else(Vec::new, |first| {
        first
            .targets
            .iter()
            .enumerate()
            .map(|(i, t)| TargetSummary {
                target: t.target.clone(),
                limit_s: t.limit_s,
                actual_s: interval(all(&|r| r.targets[i].actual_s), f64::INFINITY),
                met_in: runs.iter().filter(|r| r.targets[i].met).count(),
                of: runs.len(),
            })
            .collect()
    });
    Summary {
        replications: runs.len(),
        method,
        how: source.describe(runs.len()),
        jobs: interval(all(&|r| r.jobs as f64), f64::INFINITY),
        cost: interval(all(&|r| r.cost), f64::INFINITY),
        classes,
        queues,
        flavors,
        targets,
        runs,
    }
}

/// One class's or queue's figures over the runs that have it.
fn groups(
    runs: &[Report],
    name: &str,
    of: impl Fn(&Report) -> &Vec<GroupStats>,
    method: Method,
) -> Option<GroupSummary> {
    let found: Vec<&GroupStats> = runs
        .iter()
        .filter_map(|r| of(r).iter().find(|g| g.name == name))
        .collect();
    if found.is_empty() {
        return None;
    }
    let interval = |f: &dyn Fn(&GroupStats) -> f64, ceiling: f64| {
        let values: Vec<f64> = found.iter().map(|g| f(g)).collect();
        Interval::of(&values, method, 0.0, ceiling)
    };
    let quantiles = |q: &dyn Fn(&GroupStats) -> &Quantiles| QuantileIntervals {
        p50: interval(&|g| q(g).p50, f64::INFINITY),
        p95: interval(&|g| q(g).p95, f64::INFINITY),
        p99: interval(&|g| q(g).p99, f64::INFINITY),
        mean: interval(&|g| q(g).mean, f64::INFINITY),
    };
    Some(GroupSummary {
        name: name.to_string(),
        replications: found.len(),
        jobs: interval(&|g| g.jobs as f64, f64::INFINITY),
        waited: interval(&|g| g.waited, 1.0),
        wait_s: quantiles(&|g| &g.wait_s),
        end_to_end_s: quantiles(&|g| &g.end_to_end_s),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job(arrival_s: f64, queue: &str) -> JobRequest {
        crate::testing::job(arrival_s, queue, Qos::Standard, 20)
    }

    /// Replications on one thread or several: the same summary, and the
    /// jobs handed over in replication order; other seeds, other jobs.
    #[test]
    fn replications_give_the_same_summary_on_any_number_of_threads() {
        let description = Description::parse(
            "w.yaml",
            "seed: 3\nduration: 1h\nstreams:\n  - { queue: default, qos: standard, rate_per_hour: 400, mix: [{ weight: 1, model: tiny, frames: 17, size: 256x256, steps: 40, tp: 1 }] }\n",
        )
        .expect("description");
        let source = Source::Seeds(description);
        let fleet = crate::testing::fleet("gpu", 1, 4);
        let mut profile = Profile::default();
        profile.set("tiny", "gpu", 1, 2.0);
        let config = SimConfig::default();
        let targets = [Target::parse("standard.p95_wait<=30s").expect("target")];
        let inputs = RunInputs {
            fleet: &fleet,
            queues: &[],
            profile: &profile,
            config: &config,
            targets: &targets,
        };
        let summary = |threads: usize| {
            let mut seen = Vec::new();
            let (summary, first) = run(
                &source,
                6,
                &inputs,
                threads,
                || {},
                |r| {
                    seen.push((r.index, r.jobs.len()));
                    Ok(())
                },
            )
            .expect("replications");
            assert_eq!(
                first.map(|o| o.jobs.len()),
                Some(seen[0].1),
                "replication 1's outcome"
            );
            (serde_json::to_string(&summary).expect("json"), seen)
        };
        let (one, seen) = summary(1);
        assert_eq!(
            seen.iter().map(|s| s.0).collect::<Vec<_>>(),
            (0..6).collect::<Vec<_>>()
        );
        assert!(
            seen.iter().any(|s| s.1 != seen[0].1),
            "other seeds: {seen:?}"
        );
        assert_eq!(summary(3), (one, seen));
    }

    #[test]
    fn t_quantiles_match_the_table_and_the_normal_limit() {
        assert_eq!(t975(1), 12.706);
        assert_eq!(t975(19), 2.093);
        // Cornish-Fisher beyond the table: 2.021 at 40, 2.000 at 60.
        assert!((t975(40) - 2.021).abs() < 0.001, "{}", t975(40));
        assert!((t975(60) - 2.000).abs() < 0.001, "{}", t975(60));
        assert!((t975(100_000) - 1.960).abs() < 0.001);
        assert!(t975(31) < t975(30) && t975(31) > t975(32));
    }

    /// Independent replications: the mean, and t x s / sqrt(n) about it;
    /// a bootstrap: the first value, and t x s of the rest about it.
    #[test]
    fn intervals_follow_the_method() {
        let values = [10.0, 12.0, 14.0, 16.0];
        let seeds = Interval::of(&values, Method::Seeds, 0.0, f64::INFINITY);
        let sd = (20.0f64 / 3.0).sqrt();
        assert_eq!(seeds.estimate, 13.0);
        assert!((seeds.high - (13.0 + 3.182 * sd / 2.0)).abs() < 1e-9);
        let boot = Interval::of(&values, Method::LocalBlockBootstrap, 0.0, f64::INFINITY);
        assert_eq!(boot.estimate, 10.0);
        assert!((boot.high - (10.0 + 4.303 * 2.0)).abs() < 1e-9, "{boot:?}");
        assert_eq!(boot.low, 10.0 - 4.303 * 2.0);
        // Clipped: a share is never above 1 nor below 0.
        let share = Interval::of(&[0.9, 1.0, 0.2], Method::Seeds, 0.0, 1.0);
        assert_eq!((share.low, share.high), (0.0, 1.0));
        // One replication: no interval.
        let one = Interval::of(&[5.0], Method::Seeds, 0.0, f64::INFINITY);
        assert_eq!((one.low, one.estimate, one.high), (5.0, 5.0, 5.0));
    }

    /// A resample keeps every job's attributes and the trace's length in
    /// expectation, moves whole blocks by whole block widths, keeps a burst
    /// together, and differs from seed to seed.
    #[test]
    fn a_block_bootstrap_moves_whole_blocks_near_their_place() {
        // 48 hours: one job a minute, a burst of 30 jobs in the first
        // minute of hour 30, and the queue says the hour it came from.
        let mut jobs = Vec::new();
        for minute in 0..48 * 60 {
            let hour = minute / 60;
            jobs.push(job(f64::from(minute) * 60.0 + 1.0, &format!("h{hour}")));
        }
        for k in 0..30 {
            jobs.push(job(30.0 * 3600.0 + 2.0 + f64::from(k), "burst"));
        }
        jobs.sort_by(|a, b| a.arrival_s.total_cmp(&b.arrival_s));
        let a = block_bootstrap(&jobs, 1);
        assert_eq!(a, block_bootstrap(&jobs, 1), "deterministic");
        assert_ne!(
            a,
            block_bootstrap(&jobs, 2),
            "another seed, another resample"
        );
        assert!(a.windows(2).all(|w| w[0].arrival_s <= w[1].arrival_s));
        for j in &a {
            let place = (j.arrival_s / 3600.0).floor() as i64;
            if let Some(hour) = j.queue.strip_prefix('h') {
                let from: i64 = hour.parse().expect("hour");
                assert!((place - from).abs() <= 1, "hour {from} moved to {place}");
                // Shifted by whole hours: its minute is kept.
                assert!(((j.arrival_s - 1.0) / 60.0).fract().abs() < 1e-9);
            }
        }
        // A burst is drawn whole or not at all.
        let bursts = a.iter().filter(|j| j.queue == "burst").count();
        assert_eq!(bursts % 30, 0, "{bursts}");
        // The job count stays near the trace's over resamples.
        let mean = (1..=40)
            .map(|s| block_bootstrap(&jobs, s).len() as f64)
            .sum::<f64>()
            / 40.0;
        assert!((mean - jobs.len() as f64).abs() < 40.0, "{mean}");
    }
}
