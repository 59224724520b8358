//! A short run of the fuzzing campaign (the full one is `cargo bench
//! --bench fuzz`): every target gets inputs, none panics, no state breaks
//! an invariant, and no lying peer halts or confuses a live replica. A
//! fresh seed each run widens the search over time; a failure prints it so
//! the run can be repeated.

use genfleet_testkit::fuzz::Report;

#[test]
fn a_short_fuzzing_campaign_finds_no_panic_and_no_broken_invariant() {
    let seed = std::env::var("FUZZ_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(rand::random::<u64>);
    let started = std::time::Instant::now();
    let report = genfleet_testkit::fuzz::run(20_000, seed);
    eprintln!(
        "FUZZ_SEED={seed}: {:.1} s; inputs {:?}; {} commands accepted, {} entries with a job running; \
         lying peers: {:?} inputs by role, {:?} by kind, echoes of {:?}, {} entries applied",
        started.elapsed().as_secs_f64(),
        report.inputs,
        report.commands_accepted,
        report.entries_with_running_jobs,
        report.lying_peer_roles,
        report.lying_peer_kinds,
        report.lying_peer_echoed,
        report.lying_peer_entries_applied,
    );
    // The command fuzzing reaches states with running jobs, not only refusals.
    assert!(report.commands_accepted > 1000 && report.entries_with_running_jobs > 100);
    for target in [
        "client_requests",
        "worker_messages",
        "state_commands",
        "raft_messages",
        "raft_lying_peer",
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
    // The lying peers met the replica as leader and as follower, and it
    // applied entries: they got past its first refusals.
    let roles = &report.lying_peer_roles;
    assert!(
        roles.get("leader").copied().unwrap_or(0) > 50
            && roles.get("follower").copied().unwrap_or(0) > 50
            && report.lying_peer_entries_applied > 100,
        "FUZZ_SEED={seed}: the lying peers stayed shallow: {roles:?} by role, {} entries applied",
        report.lying_peer_entries_applied
    );
    // The liars sent back what the replica itself sends, of several types
    // (appends and heartbeats as leader, votes as candidate, responses as
    // follower).
    let echoed = &report.lying_peer_echoed;
    assert!(
        Report::total(echoed) > 50 && echoed.len() >= 4,
        "FUZZ_SEED={seed}: few of the replica's own messages echoed: {echoed:?}"
    );
}
