//! The fuzzing campaign (testkit/src/fuzz.rs) at full length: a million inputs by
//! default, or FUZZ_INPUTS; FUZZ_SEED picks the sequence. Prints what each
//! target took and, last, the RESULT lines. Exits 1 on any panic or broken
//! invariant.
//!
//!     cargo bench --bench fuzz
//!     FUZZ_INPUTS=10000000 FUZZ_SEED=7 cargo bench --bench fuzz
//!     cargo test --bench fuzz      # the same in the debug profile

use std::time::Instant;

use genfleet_testkit::fuzz::{self, Report};

fn main() {
    let env = |name: &str, default: u64| {
        std::env::var(name)
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(default)
    };
    let inputs = env("FUZZ_INPUTS", 1_000_000);
    let seed = env("FUZZ_SEED", 1);
    let started = Instant::now();
    let report = fuzz::run(inputs, seed);
    let seconds = started.elapsed().as_secs_f64();
    for (target, n) in &report.inputs {
        println!(
            "{target:<16} {n:>9} inputs  {:>3} panics  {:>3} invariant violations",
            report.panics.get(target).copied().unwrap_or(0),
            report.violations.get(target).copied().unwrap_or(0)
        );
    }
    println!(
        "state: {} commands accepted, {} entries applied with a job running",
        report.commands_accepted, report.entries_with_running_jobs
    );
    println!(
        "raft_lying_peer: inputs by the replica's role {:?}, {} entries applied",
        report.lying_peer_roles, report.lying_peer_entries_applied
    );
    println!(
        "raft_lying_peer: inputs by kind {:?}; the replica's own messages echoed, by type {:?}",
        report.lying_peer_kinds, report.lying_peer_echoed
    );
    for failure in &report.failures {
        println!("failure: {failure}");
    }
    let total = Report::total(&report.inputs);
    let panics = Report::total(&report.panics);
    let violations = Report::total(&report.violations);
    println!(
        "seed {seed}, {seconds:.1} s, {:.0} inputs/s",
        total as f64 / seconds
    );
    println!("RESULT fuzz_inputs {total} inputs");
    println!("RESULT fuzz_panics {panics} panics");
    println!("RESULT fuzz_invariant_violations {violations} violations");
    if panics + violations > 0 {
        std::process::exit(1);
    }
}
