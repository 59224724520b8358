//! `genfleet plan`: capacity planning by simulation. A workload (a trace)
//! replayed through the leader's own scheduling policy on a described
//! fleet, in simulated time, deterministic for its inputs; the report says
//! per class and queue how long jobs waited and took, what the fleet cost
//! and how busy it was, and whether the service-level targets were met.
//! docs/planning.md explains the model and its limits.
//!
//! It links the scheduler for its rules (the policy, the budget ledger, the
//! cycle clock, queue usage) and proto for the preset and flavor tables;
//! never the worker or candle.
//!
//! - `fleet`: the fleet file (pools of nodes of a flavor, with prices);
//! - `workload`: the trace (CSV or JSON lines), checked row by row;
//! - `generator`: a workload from rates, a daily shape, bursts and a size mix;
//! - `profile_file`: the rates jobs run at (seeded, or measured);
//! - `engine`: the simulation;
//! - `report`: quantiles, utilization, cost, targets, conservation checks;
//! - `charts`: the SVG charts; `page`: the one-file HTML report;
//! - `sweep`: fleets of several sizes, the cheapest that meets the targets;
//! - `abandon`: stopping a fleet's run once it provably misses a target;
//! - `parallel`: independent runs on several threads, results in order;
//! - `replications`: other seeds or bootstrap resamples, confidence intervals;
//! - `jobs_out`: one CSV row per job;
//! - `failures`: nodes that fail and are repaired, and the checkpoints that bound the loss;
//! - `series`: queue depth and busy devices over time, in buckets;
//! - `table`: the text tables.

pub mod abandon;
pub mod charts;
pub mod engine;
pub mod failures;
pub mod fleet;
pub mod generator;
pub mod jobs_out;
pub mod page;
pub mod parallel;
pub mod profile_file;
pub mod replications;
pub mod report;
pub mod series;
pub mod sweep;
pub mod table;
#[cfg(test)]
mod testing;
mod view;
pub mod workload;

use std::fmt;

/// A problem with an input file: which file, line (0: the whole file) and
/// field, and why.
#[derive(Debug)]
pub struct InputError {
    pub file: String,
    pub line: u64,
    pub field: String,
    pub why: String,
}

impl InputError {
    /// `why` is cut to its first [`MAX_WHY_BYTES`]: a bad field may be
    /// megabytes long, and its error quotes it.
    pub fn at(file: &str, line: u64, field: &str, why: &str) -> Self {
        let why = if why.len() > MAX_WHY_BYTES {
            let cut = &why[..why.floor_char_boundary(MAX_WHY_BYTES)];
            format!("{cut}... ({} bytes in all)", why.len())
        } else {
            why.to_string()
        };
        Self {
            file: file.to_string(),
            line,
            field: field.to_string(),
            why,
        }
    }

    pub fn io(file: &str, e: std::io::Error) -> Self {
        Self::at(file, 0, "file", &e.to_string())
    }
}

/// The most of an input error's reason that is shown.
pub const MAX_WHY_BYTES: usize = 400;

impl fmt::Display for InputError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.line > 0 {
            write!(
                f,
                "{}:{}: {}: {}",
                self.file, self.line, self.field, self.why
            )
        } else {
            write!(f, "{}: {}: {}", self.file, self.field, self.why)
        }
    }
}

impl std::error::Error for InputError {}

/// What the inputs refer to exists: every queue's flavors are in one of
/// the fleets (the plan's, and the what-if one), every job's queue is a
/// queue (only `default` without a queues file, as on a cluster where none
/// was applied), and some pool serves every job's model.
pub fn check_references(
    fleets: &[&fleet::Fleet],
    queues_file: &str,
    queues: &[genfleet_proto::Queue],
    jobs_file: &str,
    jobs: &[workload::JobRequest],
) -> Result<(), InputError> {
    let pools: Vec<&fleet::Pool> = fleets.iter().flat_map(|f| &f.pools).collect();
    let mut flavors: Vec<&str> = pools.iter().map(|p| p.flavor.as_str()).collect();
    flavors.dedup();
    for q in queues {
        for quota in &q.quotas {
            if !flavors.contains(&quota.flavor.as_str()) {
                return Err(InputError::at(
                    queues_file,
                    0,
                    &format!("queue {}: quotas.{}", q.name, quota.flavor),
                    &format!(
                        "no pool of the fleet has this flavor (it has {})",
                        flavors.join(", ")
                    ),
                ));
            }
        }
    }
    for job in jobs {
        let known = queues.iter().any(|q| q.name == job.queue)
            || (job.queue == genfleet_scheduler::spec::DEFAULT_QUEUE
                && !queues.iter().any(|q| q.name == job.queue));
        if !known {
            let why = if queues.is_empty() {
                format!("{:?} is not a queue: give the queues with --queues (without them only `default` exists)", job.queue)
            } else {
                format!("{:?} is not a queue of {queues_file}", job.queue)
            };
            return Err(InputError::at(jobs_file, job.line, "queue", &why));
        }
        if !pools.iter().any(|p| p.models.contains(&job.model)) {
            return Err(InputError::at(
                jobs_file,
                job.line,
                "model",
                &format!("no pool of the fleet serves model {:?}", job.model),
            ));
        }
        // The scheduler refuses a gang no node could ever hold.
        let widest = pools
            .iter()
            .filter(|p| p.models.contains(&job.model))
            .map(|p| p.devices_per_node)
            .max()
            .unwrap_or(0);
        if job.tp > widest {
            return Err(InputError::at(
                jobs_file,
                job.line,
                "tp",
                &format!(
                    "{}: the widest node serving {} has {widest} devices",
                    job.tp, job.model
                ),
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A 10 MB bad field does not make a 10 MB error: the reason is cut,
    /// and says how long it was.
    #[test]
    fn a_huge_bad_field_is_not_echoed_whole() {
        let huge = format!("invalid value {:?}", "x".repeat(10 << 20));
        let error = InputError::at("jobs.csv", 7, "queue", &huge).to_string();
        assert!(error.len() < MAX_WHY_BYTES + 100, "{} bytes", error.len());
        assert!(
            error.starts_with("jobs.csv:7: queue: invalid value"),
            "{error}"
        );
        assert!(
            error.ends_with(&format!("({} bytes in all)", huge.len())),
            "{error}"
        );
        let short = InputError::at("jobs.csv", 7, "queue", "unknown class");
        assert_eq!(short.to_string(), "jobs.csv:7: queue: unknown class");
    }
}
