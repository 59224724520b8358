//! The scheduling policy on named scenarios: each row sets up a cluster,
//! runs one cycle (or a few) and states what must have happened.

mod policy;

use std::sync::Arc;

use genfleet_scheduler::policy::{
    schedule, BudgetLeft, Decision, FlavorQuota, MemoryNeed, NodeView, PendingJob, PendingReason,
    PolicyConfig, PreemptReason, Profile, Qos,
};
use policy::{node, nominal, pending, queue, World, MINUTE};

fn cycle(world: &World) -> Decision {
    schedule(
        &world.view,
        &Profile::seeded(),
        &PolicyConfig::default(),
        world.now_ms,
    )
}

fn reason_of<'a>(world: &World, decision: &'a Decision, job: &str) -> &'a PendingReason {
    &decision
        .pending
        .iter()
        .find(|p| world.view.pending[p.job].id == job)
        .unwrap_or_else(|| panic!("{job} is not pending in {decision:#?}"))
        .reason
}

/// Asserts `job` waits for the reason `reason` makes of the H100 flavor.
fn assert_waits(
    world: &World,
    decision: &Decision,
    job: &str,
    reason: fn(Arc<str>) -> PendingReason,
) {
    let expected = reason(H100.into());
    assert_eq!(
        reason_of(world, decision, job),
        &expected,
        "why {job} waits"
    );
}

/// Team `a` alone (no cohort) with `quota` of H100s, and one node of them.
fn one_team(quota: FlavorQuota, node_name: &str, size: u32) -> World {
    World::new(
        vec![queue("a", None, &[(H100, quota)])],
        vec![node(node_name, H100, size)],
    )
}

/// Teams `a` and `b` in cohort `c`, 4 H100s of nominal quota each, and
/// two nodes of 4 H100s.
fn two_teams_two_nodes() -> World {
    World::new(
        vec![
            queue("a", Some("c"), &[(H100, nominal(4))]),
            queue("b", Some("c"), &[(H100, nominal(4))]),
        ],
        vec![node("n1", H100, 4), node("n2", H100, 4)],
    )
}

fn placed_on(world: &World, decision: &Decision, job: &str) -> Option<(String, Vec<u32>)> {
    let view = &world.view;
    decision
        .placements
        .iter()
        .find(|p| view.pending[p.job].id == job)
        .map(|p| (view.nodes[p.node].name.clone(), p.device_ids.clone()))
}

const H100: &str = "nvidia-h100-80gb";
const A100: &str = "nvidia-a100-80gb";

type Scenario = (&'static str, fn());

const SCENARIOS: &[Scenario] = &[
    ("a gang goes to the smallest node that holds it", || {
        let mut w = World::new(
            vec![queue("a", None, &[(H100, nominal(16))])],
            vec![node("big", H100, 8), node("small", H100, 4)],
        );
        let filler = pending("filler", "a", Qos::Standard, 2);
        w.run(&filler, "small", &[0, 1], 0);
        w.submit(pending("j", "a", Qos::Standard, 2));
        let d = cycle(&w);
        assert_eq!(placed_on(&w, &d, "j"), Some(("small".into(), vec![2, 3])));
    }),
    ("a gang never splits across nodes", || {
        let mut w = World::new(
            vec![queue("a", None, &[(H100, nominal(16))])],
            vec![node("n1", H100, 4), node("n2", H100, 4)],
        );
        for (n, id) in [("n1", "x"), ("n2", "y")] {
            w.run(&pending(id, "a", Qos::Standard, 2), n, &[0, 1], 0);
        }
        w.submit(pending("j", "a", Qos::Standard, 4));
        let d = cycle(&w);
        assert!(d.placements.is_empty());
        assert_waits(&w, &d, "j", |flavor| PendingReason::WaitingForGang {
            flavor,
        });
    }),
    ("a queue alone waits at its nominal quota", || {
        let mut w = one_team(nominal(2), "n", 8);
        w.run(&pending("x", "a", Qos::Standard, 2), "n", &[0, 1], 0);
        w.submit(pending("j", "a", Qos::Interactive, 1));
        let d = cycle(&w);
        assert!(d.placements.is_empty() && d.preemptions.is_empty());
        assert_waits(&w, &d, "j", |flavor| PendingReason::OverQuota { flavor });
    }),
    ("a queue borrows the idle quota of its cohort", || {
        let mut w = two_teams_two_nodes();
        w.run(&pending("b1", "b", Qos::Batch, 4), "n1", &[0, 1, 2, 3], 0);
        w.submit(pending("b2", "b", Qos::Batch, 4));
        let d = cycle(&w);
        assert_eq!(
            placed_on(&w, &d, "b2"),
            Some(("n2".into(), vec![0, 1, 2, 3]))
        );
    }),
    ("the lender reclaims its quota with a standard job", || {
        let mut w = two_teams_two_nodes();
        w.run(&pending("b1", "b", Qos::Batch, 4), "n1", &[0, 1, 2, 3], 0);
        w.run(
            &pending("b2", "b", Qos::Batch, 4),
            "n2",
            &[0, 1, 2, 3],
            MINUTE,
        );
        w.now_ms = 10 * MINUTE;
        w.submit(pending("a1", "a", Qos::Standard, 4));
        let d = cycle(&w);
        assert_eq!(d.preemptions.len(), 1, "{d:#?}");
        let p = &d.preemptions[0];
        assert_eq!(
            (p.job_id.as_str(), p.reason, p.for_job.as_str()),
            ("b2", PreemptReason::ReclaimQuota, "a1"),
            "the borrowed (youngest) job goes"
        );
        w.apply(&d);
        w.checkpoint();
        let d = cycle(&w);
        assert_eq!(
            placed_on(&w, &d, "a1"),
            Some(("n2".into(), vec![0, 1, 2, 3]))
        );
        assert!(placed_on(&w, &d, "b2").is_none(), "b2 waits");
    }),
    ("batch never preempts, even to reclaim", || {
        let mut w = World::new(
            vec![
                queue("a", Some("c"), &[(H100, nominal(4))]),
                queue("b", Some("c"), &[(H100, nominal(4))]),
            ],
            vec![node("n1", H100, 8)],
        );
        let all: Vec<u32> = (0..8).collect();
        w.run(&pending("b1", "b", Qos::Batch, 8), "n1", &all, 0);
        w.now_ms = 10 * MINUTE;
        w.submit(pending("a1", "a", Qos::Batch, 4));
        let d = cycle(&w);
        assert!(d.preemptions.is_empty());
        assert_waits(&w, &d, "a1", |flavor| PendingReason::OverQuota { flavor });
    }),
    (
        "interactive preempts the youngest batch job of its queue",
        || {
            let mut w = one_team(nominal(8), "n", 8);
            w.run(&pending("old", "a", Qos::Batch, 4), "n", &[0, 1, 2, 3], 0);
            w.run(
                &pending("young", "a", Qos::Batch, 4),
                "n",
                &[4, 5, 6, 7],
                2 * MINUTE,
            );
            w.now_ms = 10 * MINUTE;
            w.submit(pending("chat", "a", Qos::Interactive, 4));
            let d = cycle(&w);
            let victims: Vec<&str> = d.preemptions.iter().map(|p| p.job_id.as_str()).collect();
            assert_eq!(victims, vec!["young"]);
            assert_eq!(d.preemptions[0].reason, PreemptReason::InteractiveOverBatch);
            assert_waits(&w, &d, "chat", |flavor| {
                PendingReason::WaitingForPreemption { flavor }
            });
        },
    ),
    (
        "just-started work is protected by the minimum runtime",
        || {
            let mut w = one_team(nominal(16), "n", 8);
            let all: Vec<u32> = (0..8).collect();
            w.run(&pending("batch", "a", Qos::Batch, 8), "n", &all, 0);
            w.now_ms = 10_000;
            w.submit(pending("chat", "a", Qos::Interactive, 4));
            let d = cycle(&w);
            assert!(d.preemptions.is_empty());
            assert_waits(&w, &d, "chat", |flavor| PendingReason::NoCapacity {
                flavor,
            });
        },
    ),
    (
        "interactive picks the fastest flavor, batch the cheapest per step",
        || {
            let quotas = [(H100, nominal(8)), (A100, nominal(8))];
            let mut w = World::new(
                vec![queue("a", None, &quotas)],
                vec![node("h", H100, 8), node("a", A100, 8)],
            );
            w.submit(pending("chat", "a", Qos::Interactive, 1));
            w.submit(pending("bulk", "a", Qos::Batch, 1));
            let d = cycle(&w);
            assert_eq!(placed_on(&w, &d, "chat").map(|p| p.0), Some("h".into()));
            assert_eq!(placed_on(&w, &d, "bulk").map(|p| p.0), Some("a".into()));
        },
    ),
    ("cordoned nodes take no work, and say so", || {
        let mut n = node("n", H100, 8);
        n.cordoned = true;
        let mut w = World::new(vec![queue("a", None, &[(H100, nominal(8))])], vec![n]);
        w.submit(pending("j", "a", Qos::Standard, 1));
        let d = cycle(&w);
        assert!(d.placements.is_empty());
        assert_waits(&w, &d, "j", |flavor| PendingReason::Cordoned { flavor });
    }),
    (
        "unknown queues and unservable requests are explained",
        || {
            let mut w = one_team(nominal(8), "n", 8);
            w.submit(pending("lost", "nope", Qos::Standard, 1));
            w.submit(pending("huge", "a", Qos::Standard, 16));
            let mut other_model = pending("video-xl", "a", Qos::Standard, 1);
            other_model.model = "xl".into();
            w.submit(other_model);
            let d = cycle(&w);
            assert_eq!(reason_of(&w, &d, "lost"), &PendingReason::UnknownQueue);
            assert_eq!(reason_of(&w, &d, "huge"), &PendingReason::NoFlavor);
            assert_eq!(reason_of(&w, &d, "video-xl"), &PendingReason::NoFlavor);
            assert!(d.pending.iter().all(|p| p.eta_s.is_none()));
        },
    ),
    ("the queue holding less of the cluster goes first", || {
        let mut w = World::new(
            vec![
                queue("rich", None, &[(H100, nominal(8))]),
                queue("poor", None, &[(H100, nominal(8))]),
            ],
            vec![node("n", H100, 4)],
        );
        w.run(&pending("r0", "rich", Qos::Standard, 3), "n", &[0, 1, 2], 0);
        w.submit(pending("r1", "rich", Qos::Standard, 1));
        w.submit(pending("p1", "poor", Qos::Standard, 1));
        let d = cycle(&w);
        assert!(placed_on(&w, &d, "p1").is_some(), "{d:#?}");
        assert!(placed_on(&w, &d, "r1").is_none());
    }),
    (
        "ageing lifts a long-waiting batch job over fresh standard work",
        || {
            let mut w = one_team(nominal(8), "n", 1);
            w.submit(pending("patient", "a", Qos::Batch, 1));
            w.now_ms = PolicyConfig::default().ageing_ms + 1;
            w.submit(pending("fresh", "a", Qos::Standard, 1));
            let d = cycle(&w);
            assert!(placed_on(&w, &d, "patient").is_some(), "{d:#?}");
        },
    ),
    ("a starving gang has a node held from backfill", || {
        let mut w = World::new(
            vec![queue("a", None, &[(H100, nominal(16))])],
            vec![node("n1", H100, 8), node("n2", H100, 8)],
        );
        w.run(&pending("x", "a", Qos::Standard, 2), "n1", &[0, 1], 0);
        w.run(&pending("y", "a", Qos::Standard, 4), "n2", &[0, 1, 2, 3], 0);
        w.submit(pending("gang", "a", Qos::Standard, 8));
        w.now_ms = PolicyConfig::default().starvation_ms + 1;
        w.submit(pending("small", "a", Qos::Standard, 2));
        let d = cycle(&w);
        // n1 (6 free) is held for the gang; small goes to n2.
        assert_eq!(placed_on(&w, &d, "small").map(|p| p.0), Some("n2".into()));
        assert_waits(&w, &d, "gang", |flavor| PendingReason::WaitingForGang {
            flavor,
        });
    }),
    (
        "devices being freed wait for the job they were freed for",
        || {
            let mut w = one_team(nominal(8), "n", 8);
            w.run(
                &pending("b", "a", Qos::Batch, 6),
                "n",
                &[0, 1, 2, 3, 4, 5],
                0,
            );
            w.view.running[0].preempting = true;
            w.submit(pending("chat", "a", Qos::Interactive, 8));
            w.submit(pending("small", "a", Qos::Batch, 2));
            let d = cycle(&w);
            assert!(d.preemptions.is_empty(), "nothing new to preempt");
            assert_waits(&w, &d, "chat", |flavor| {
                PendingReason::WaitingForPreemption { flavor }
            });
            assert!(
                placed_on(&w, &d, "small").is_none(),
                "the 2 free devices are held"
            );
        },
    ),
    ("estimates grow along the line", || {
        let mut w = one_team(nominal(8), "n", 2);
        w.run(&pending("r", "a", Qos::Standard, 2), "n", &[0, 1], 0);
        for i in 0..5 {
            w.submit(pending(&format!("j{i}"), "a", Qos::Standard, 2));
        }
        let d = cycle(&w);
        let etas: Vec<f64> = d.pending.iter().filter_map(|p| p.eta_s).collect();
        assert_eq!(etas.len(), 5);
        assert!(etas[0] > 0.0, "the running job has to finish first");
        assert!(etas.windows(2).all(|w| w[0] < w[1]), "{etas:?}");
    }),
    ("a lending limit keeps part of the quota home", || {
        let keep_two = FlavorQuota {
            nominal: 4,
            borrowing_limit: None,
            lending_limit: Some(2),
        };
        let mut w = World::new(
            vec![
                queue("a", Some("c"), &[(H100, keep_two)]),
                queue("b", Some("c"), &[(H100, nominal(4))]),
            ],
            vec![node("n1", H100, 4), node("n2", H100, 4)],
        );
        w.run(&pending("b1", "b", Qos::Batch, 4), "n1", &[0, 1, 2, 3], 0);
        w.submit(pending("b2", "b", Qos::Batch, 4));
        w.submit(pending("b3", "b", Qos::Batch, 2));
        let d = cycle(&w);
        assert!(
            placed_on(&w, &d, "b2").is_none(),
            "only 2 of a's 4 may be lent"
        );
        assert!(placed_on(&w, &d, "b3").is_some(), "{d:#?}");
    }),
    (
        "a queue whose budget is spent waits for the next period",
        || {
            let mut w = one_team(nominal(8), "n", 8);
            w.view.queues[0].budget = Some(BudgetLeft {
                device_s: 0.0,
                resets_in_s: 3_600.0,
            });
            w.submit(pending("j", "a", Qos::Interactive, 1));
            let d = cycle(&w);
            assert!(d.placements.is_empty() && d.preemptions.is_empty());
            assert_eq!(reason_of(&w, &d, "j"), &PendingReason::OverBudget);
            assert_eq!(d.pending[0].eta_s, Some(3_600.0), "until the reset");
        },
    ),
    (
        "what running and just-placed work will use is booked against the budget",
        || {
            let mut w = one_team(nominal(8), "n", 8);
            let budget = |device_s| {
                Some(BudgetLeft {
                    device_s,
                    resets_in_s: 60.0,
                })
            };
            // A little left (a job here costs 2 devices x 20 steps at about
            // 200 steps/s): the first job starts, the second would overspend.
            w.view.queues[0].budget = budget(0.1);
            w.submit(pending("first", "a", Qos::Standard, 2));
            w.submit(pending("second", "a", Qos::Standard, 2));
            let d = cycle(&w);
            assert!(placed_on(&w, &d, "first").is_some(), "{d:#?}");
            assert_eq!(reason_of(&w, &d, "second"), &PendingReason::OverBudget);
            // Running work (2 devices x 60 s to go) has 120 of 100 spoken for.
            let mut w = one_team(nominal(8), "n", 8);
            w.view.queues[0].budget = budget(100.0);
            w.run(&pending("x", "a", Qos::Standard, 2), "n", &[0, 1], 0);
            w.submit(pending("j", "a", Qos::Standard, 1));
            let d = cycle(&w);
            assert_eq!(reason_of(&w, &d, "j"), &PendingReason::OverBudget);
        },
    ),
];

#[test]
fn scheduling_scenarios() {
    for (name, scenario) in SCENARIOS {
        let outcome = std::panic::catch_unwind(scenario);
        assert!(outcome.is_ok(), "scenario failed: {name}");
    }
}

const L4: &str = "nvidia-l4";
const GIB: u64 = 1 << 30;

/// `node` whose devices each offer `gib` GiB.
fn with_memory(mut node: NodeView, gib: u64) -> NodeView {
    node.groups[0].memory_bytes = gib * GIB;
    node
}

/// `job` needing `replicated` GiB on every rank plus `sharded` GiB split
/// over its ranks.
fn needing(mut job: PendingJob, replicated: u64, sharded: u64) -> PendingJob {
    job.memory = MemoryNeed {
        replicated_bytes: replicated * GIB,
        sharded_bytes: sharded * GIB,
    };
    job
}

const MEMORY_SCENARIOS: &[Scenario] = &[
    ("a job that fits its devices' memory is placed", || {
        let mut w = one_team(nominal(8), "n", 8);
        w.view.nodes[0].groups[0].memory_bytes = 80 * GIB;
        w.submit(needing(pending("j", "a", Qos::Standard, 1), 10, 60));
        let d = cycle(&w);
        assert_eq!(placed_on(&w, &d, "j"), Some(("n".into(), vec![0])));
    }),
    (
        "too big for one device at tp 1, it fits as a gang of 2",
        || {
            let l4s = || {
                World::new(
                    vec![queue("a", None, &[(L4, nominal(4))])],
                    vec![with_memory(node("l4", L4, 4), 24)],
                )
            };
            let mut w = l4s();
            w.submit(needing(pending("j", "a", Qos::Standard, 1), 8, 30));
            let d = cycle(&w);
            assert!(d.placements.is_empty(), "{d:#?}");
            let reason = reason_of(&w, &d, "j");
            assert_eq!(
                reason,
                &PendingReason::Memory {
                    flavor: L4.into(),
                    tp: 1,
                    need_bytes: 38 * GIB,
                    largest_bytes: 24 * GIB,
                    fits_at_tp: Some(2),
                }
            );
            assert_eq!(reason.label(), "memory");
            assert_eq!(
                reason.to_string(),
                "needs 38.0 GiB per device at tp 1; the largest nvidia-l4 has 24.0 GiB: \
                 ask for --tp 2 or a smaller size"
            );
            assert_eq!(d.pending[0].eta_s, None, "nothing that ends makes room");
            let mut w = l4s();
            w.submit(needing(pending("j", "a", Qos::Standard, 2), 8, 30));
            let d = cycle(&w);
            assert_eq!(placed_on(&w, &d, "j"), Some(("l4".into(), vec![0, 1])));
        },
    ),
    (
        "a job no gang of any node could hold waits for memory",
        || {
            let mut w = World::new(
                vec![queue("a", None, &[(L4, nominal(2))])],
                vec![with_memory(node("l4", L4, 2), 24)],
            );
            w.submit(needing(pending("j", "a", Qos::Interactive, 1), 30, 10));
            let d = cycle(&w);
            assert!(d.placements.is_empty() && d.preemptions.is_empty());
            let reason = reason_of(&w, &d, "j");
            assert!(
                matches!(
                    reason,
                    PendingReason::Memory {
                        fits_at_tp: None,
                        ..
                    }
                ),
                "{reason:?}"
            );
            assert!(reason
                .to_string()
                .ends_with("a smaller size (fewer frames or pixels)"));
        },
    ),
    ("of two flavors, the job goes to the one it fits", || {
        let mut w = World::new(
            vec![queue("a", None, &[(L4, nominal(4)), (H100, nominal(4))])],
            vec![
                with_memory(node("l4", L4, 4), 24),
                with_memory(node("h100", H100, 4), 80),
            ],
        );
        for qos in [Qos::Batch, Qos::Interactive] {
            w.submit(needing(pending(qos.label(), "a", qos, 1), 10, 30));
        }
        let d = cycle(&w);
        for qos in [Qos::Batch, Qos::Interactive] {
            let (node, _) = placed_on(&w, &d, qos.label()).expect("placed");
            assert_eq!(node, "h100", "{} fits only there", qos.label());
        }
    }),
    (
        "best fit skips a node whose devices have too little free",
        || {
            // n1 would be the best fit (fewer free devices), but others'
            // processes hold most of its memory.
            let mut w = World::new(
                vec![queue("a", None, &[(H100, nominal(16))])],
                vec![
                    with_memory(node("n1", H100, 8), 20),
                    with_memory(node("n2", H100, 8), 80),
                ],
            );
            w.run(&pending("x", "a", Qos::Standard, 4), "n1", &[0, 1, 2, 3], 0);
            w.submit(needing(pending("j", "a", Qos::Standard, 2), 10, 40));
            let d = cycle(&w);
            assert_eq!(placed_on(&w, &d, "j"), Some(("n2".into(), vec![0, 1])));
            // Memory not reported (0) is no limit.
            let mut w = one_team(nominal(8), "n", 8);
            w.submit(needing(pending("j", "a", Qos::Standard, 1), 500, 500));
            assert!(placed_on(&w, &cycle(&w), "j").is_some());
        },
    ),
];

#[test]
fn memory_scenarios() {
    for (name, scenario) in MEMORY_SCENARIOS {
        let outcome = std::panic::catch_unwind(scenario);
        assert!(outcome.is_ok(), "scenario failed: {name}");
    }
}
