//! A short run of the fuzzing campaign (the full one is `cargo bench
//! --bench fuzz`): every target gets inputs, none panics, no state breaks
//! an invariant. A fresh seed each run widens the search over time; a
//! failure prints it so the run can be repeated.

#[test]
fn a_short_fuzzing_campaign_finds_no_panic_and_no_broken_invariant() {
    let seed = std::env::var("FUZZ_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(rand::random::<u64>);
    let report = genfleet::fuzz::run(20_000, seed);
    eprintln!(
        "FUZZ_SEED={seed}: inputs {:?}; {} commands accepted, {} entries with a job running",
        report.inputs, report.commands_accepted, report.entries_with_running_jobs
    );
    // The command fuzzing reaches states with running jobs, not only refusals.
    assert!(report.commands_accepted > 1000 && report.entries_with_running_jobs > 100);
    for target in [
        "client_requests",
        "worker_messages",
        "state_commands",
        "raft_messages",
        "queue_yaml",
        "assignments",
    ] {
        assert!(
            report.inputs.get(target).copied().unwrap_or(0) > 0,
            "{target} got no inputs: {:?}",
            report.inputs
        );
    }
    assert!(
        report.panics.is_empty() && report.violations.is_empty(),
        "FUZZ_SEED={seed}: panics {:?}, violations {:?}:\n{}",
        report.panics,
        report.violations,
        report.failures.join("\n")
    );
}
