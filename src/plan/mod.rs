//! `genfleet plan`: capacity planning by simulation. A workload (a trace)
//! replayed through the leader's own scheduling policy on a described
//! fleet, in simulated time, deterministic for its inputs; the report says
//! per class and queue how long jobs waited and took, what the fleet cost
//! and how busy it was, and whether the service-level targets were met.
//! docs/planning.md explains the model and its limits.
//!
//! - `fleet`: the fleet file (pools of nodes of a flavor, with prices);
//! - `workload`: the trace (CSV or JSON lines), checked row by row;
//! - `engine`: the simulation;
//! - `report`: quantiles, utilization, cost, targets, conservation checks.

pub mod engine;
pub mod fleet;
pub mod report;
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
    pub fn at(file: &str, line: u64, field: &str, why: &str) -> Self {
        Self {
            file: file.to_string(),
            line,
            field: field.to_string(),
            why: why.to_string(),
        }
    }

    pub fn io(file: &str, e: std::io::Error) -> Self {
        Self::at(file, 0, "file", &e.to_string())
    }
}

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
