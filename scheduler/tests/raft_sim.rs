//! Scenarios over the deterministic simulation: each names what happens to
//! the cluster, runs it under several seeds, and checks that nothing
//! acknowledged is lost or doubled, that one term has one leader, and that
//! the replicas end with equal states.

mod sim;

use raft::eraftpb::ConfChangeType;
use sim::{Faults, Sim};

const SEEDS: [u64; 3] = [1, 7, 42];

/// Submits `n` jobs, one every `every_ms`, while the cluster runs.
fn submit_over_time(sim: &mut Sim, n: usize, every_ms: u64) {
    for _ in 0..n {
        sim.submit();
        sim.run_for(every_ms);
    }
}

/// Heals everything, restarts what is down, and lets the cluster settle.
fn settle(sim: &mut Sim) {
    sim.heal();
    sim.faults = Faults::NONE;
    for id in sim.ids() {
        if !sim.is_up(id) {
            sim.start(id);
        }
    }
    sim.wait_for_leader();
    // A fresh entry in the final term commits everything before it.
    sim.submit();
    sim.run_until(20_000, "the replicas converge", Sim::converged);
    sim.check_invariants();
}

type Scenario = fn(&mut Sim);

fn scenarios() -> Vec<(&'static str, Scenario)> {
    vec![
        ("no faults: every submit is acknowledged", |sim| {
            sim.wait_for_leader();
            submit_over_time(sim, 30, 5);
            sim.run_for(500);
            assert_eq!(sim.acked(), 30);
        }),
        (
            "a lossy, reordering network delays but loses nothing acknowledged",
            |sim| {
                sim.faults = Faults {
                    drop: 0.2,
                    min_delay_ms: 1,
                    max_delay_ms: 40,
                };
                sim.wait_for_leader();
                submit_over_time(sim, 30, 20);
                sim.run_for(2_000);
                assert!(
                    sim.acked() > 0,
                    "some submits get through a 20% lossy network"
                );
            },
        ),
        (
            "the leader is cut off; the majority elects another and goes on",
            |sim| {
                let old = sim.wait_for_leader();
                submit_over_time(sim, 10, 5);
                sim.isolate(old);
                sim.run_until(10_000, "a new leader on the majority side", |s| {
                    s.leader().is_some_and(|l| l != old)
                });
                let before = sim.acked();
                submit_over_time(sim, 10, 5);
                sim.run_for(500);
                assert!(
                    sim.acked() >= before + 10,
                    "the majority commits without the old leader"
                );
            },
        ),
        ("the leader crashes and restarts from its files", |sim| {
            let old = sim.wait_for_leader();
            submit_over_time(sim, 15, 5);
            sim.crash(old);
            sim.run_until(10_000, "a new leader", |s| {
                s.leader().is_some_and(|l| l != old)
            });
            submit_over_time(sim, 15, 5);
            sim.start(old);
        }),
        (
            "a follower misses the log and catches up from a snapshot",
            |sim| {
                let leader = sim.wait_for_leader();
                let lagging = sim
                    .ids()
                    .into_iter()
                    .find(|id| *id != leader)
                    .expect("a follower");
                sim.isolate(lagging);
                submit_over_time(sim, 60, 3);
                sim.run_for(300);
                sim.heal();
                sim.run_until(20_000, "the lagging follower catches up", |s| {
                    s.status(lagging).is_some_and(|st| st.applied >= 60)
                });
                let status = sim.status(lagging).expect("follower status");
                assert!(
                    status.snapshot_index >= 20,
                    "it caught up from a snapshot: {status:?}"
                );
            },
        ),
        (
            "every replica crashes; the cluster restarts with everything it acknowledged",
            |sim| {
                sim.wait_for_leader();
                submit_over_time(sim, 25, 4);
                sim.run_for(300);
                for id in sim.ids() {
                    sim.crash(id);
                }
                for id in sim.ids() {
                    sim.start(id);
                }
            },
        ),
        (
            "a replica joins as a learner, is promoted, and another leaves",
            |sim| {
                sim.wait_for_leader();
                submit_over_time(sim, 30, 3);
                sim.add_joiner(4);
                let mut added = sim.change_membership(4, ConfChangeType::AddLearnerNode);
                sim.run_until(10_000, "learner 4 is added", |_| true);
                sim.run_until(20_000, "learner 4 catches up", |s| {
                    let commit = s
                        .leader()
                        .and_then(|l| s.status(l))
                        .map(|st| st.commit)
                        .unwrap_or(u64::MAX);
                    s.status(4)
                        .is_some_and(|st| st.applied >= commit && st.learners.contains(&4))
                });
                assert!(
                    matches!(added.try_recv(), Ok(Ok(_))),
                    "the learner change applied"
                );
                let _promote = sim.change_membership(4, ConfChangeType::AddNode);
                sim.run_until(10_000, "4 votes", |s| {
                    s.status(4).is_some_and(|st| st.voters.contains(&4))
                });
                let leaving = sim
                    .ids()
                    .into_iter()
                    .find(|id| Some(*id) != sim.leader() && *id != 4)
                    .expect("a follower");
                let _remove = sim.change_membership(leaving, ConfChangeType::RemoveNode);
                sim.run_until(10_000, "the follower leaves", |s| {
                    s.leader()
                        .and_then(|l| s.status(l))
                        .is_some_and(|st| !st.voters.contains(&leaving))
                });
                sim.crash(leaving);
                submit_over_time(sim, 10, 5);
                let members = sim
                    .state(4)
                    .map(|s| s.read().expect("lock").members().clone())
                    .expect("state");
                assert_eq!(members.get(&4).map(String::as_str), Some("sim://4"));
                assert!(!members.contains_key(&leaving));
            },
        ),
        ("leadership moves on request", |sim| {
            let old = sim.wait_for_leader();
            submit_over_time(sim, 5, 5);
            let to = sim
                .ids()
                .into_iter()
                .find(|id| *id != old)
                .expect("another voter");
            sim.transfer_leader(to);
            sim.run_until(10_000, "the transfer completes", |s| s.leader() == Some(to));
            submit_over_time(sim, 5, 5);
            sim.run_for(200);
            assert_eq!(sim.acked(), 10);
        }),
    ]
}

#[test]
fn scenarios_hold_under_several_seeds() {
    for (name, scenario) in scenarios() {
        for seed in SEEDS {
            let mut sim = Sim::new(seed, 3, 20);
            scenario(&mut sim);
            settle_scenario(&mut sim, name);
            println!(
                "{name} (seed {seed}): {} of {} submits acknowledged at {} ms",
                sim.acked(),
                sim.submits.len(),
                sim.now_ms
            );
        }
    }
}

/// `settle`, except that the membership scenario's removed replica stays down.
fn settle_scenario(sim: &mut Sim, name: &str) {
    if name.starts_with("a replica joins") {
        sim.heal();
        sim.faults = Faults::NONE;
        sim.submit();
        sim.run_until(20_000, "the replicas converge", Sim::converged);
        sim.check_invariants();
    } else {
        settle(sim);
    }
}

#[test]
fn the_same_seed_replays_the_same_history() {
    let run = |seed| {
        let mut sim = Sim::new(seed, 3, 20);
        sim.faults = Faults {
            drop: 0.1,
            min_delay_ms: 1,
            max_delay_ms: 30,
        };
        let leader = sim.wait_for_leader();
        submit_over_time(&mut sim, 20, 7);
        sim.crash(leader);
        submit_over_time(&mut sim, 20, 7);
        settle(&mut sim);
        (sim.trace.clone(), sim.hash(sim.leader().expect("leader")))
    };
    let (trace_a, hash_a) = run(99);
    let (trace_b, hash_b) = run(99);
    assert_eq!(trace_a, trace_b, "same seed, same events");
    assert_eq!(hash_a, hash_b, "same seed, same final state");
    let (trace_c, _) = run(100);
    assert_ne!(trace_a, trace_c, "another seed, another history");
}
