//! The planner's simulation checked where there is an answer: queueing
//! theory (Erlang C on an M/M/c-shaped workload) and conservation laws on
//! generated workloads.

use genfleet_planner::abandon::Abandon;
use genfleet_planner::engine::{SimConfig, Simulation};
use genfleet_planner::fleet::{Fleet, Pool};
use genfleet_planner::report::{check_conservation, report, Target, WAITED_S};
use genfleet_planner::workload::JobRequest;
use genfleet_proto as pb;
use genfleet_scheduler::policy::{PolicyConfig, Profile, Qos};
use proptest::prelude::*;
use rand::{Rng, SeedableRng};

fn pool(flavor: &str, nodes: u32, devices_per_node: u32) -> Pool {
    Pool {
        flavor: flavor.into(),
        nodes,
        devices_per_node,
        price_per_device_hour: 1.0,
        memory_bytes: 0,
        models: vec!["tiny".into()],
    }
}

fn job(arrival_s: f64, queue: &str, qos: Qos, steps: u32, tp: u32) -> JobRequest {
    JobRequest {
        arrival_s,
        queue: queue.into(),
        qos,
        priority: 0,
        model: "tiny".into(),
        frames: 17,
        width: 256,
        height: 256,
        steps,
        tp,
        guidance: 5.0,
        line: 0,
    }
}

/// Erlang's C formula: the probability that an arrival waits, for `c`
/// servers at offered load `a` = lambda / mu.
fn erlang_c(c: u32, a: f64) -> f64 {
    let mut term = 1.0;
    let mut sum = 1.0;
    for k in 1..c {
        term *= a / f64::from(k);
        sum += term;
    }
    let last = term * a / f64::from(c) * f64::from(c) / (f64::from(c) - a);
    last / (sum + last)
}

#[test]
fn an_m_m_c_workload_waits_what_erlang_c_says() {
    // One queue, one class, 8 devices; Poisson arrivals, exponential
    // service (steps at 10 steps/s, mean 60 s), load 0.8.
    let (c, mean_service_s, load) = (8u32, 60.0, 0.8);
    let lambda = load * f64::from(c) / mean_service_s;
    let mut profile = Profile::default();
    profile.set("tiny", "gpu", 1, 10.0);
    let mut rng = rand::rngs::StdRng::seed_from_u64(42);
    let mut t = 0.0;
    let jobs: Vec<JobRequest> = (0..60_000)
        .map(|_| {
            t += -(1.0 - rng.random::<f64>()).ln() / lambda;
            let service = -(1.0 - rng.random::<f64>()).ln() * mean_service_s;
            let steps = ((service * 10.0).round() as u32).max(1);
            job(t, "default", Qos::Standard, steps, 1)
        })
        .collect();
    // The actual mean service time of the sample (steps are whole).
    let service: f64 =
        jobs.iter().map(|j| f64::from(j.steps) / 10.0).sum::<f64>() / jobs.len() as f64;
    let fleet = Fleet {
        pools: vec![pool("gpu", 1, c)],
    };
    // The leader's cadence: a cycle at once when a job ends or arrives
    // while a device is free, so no tick adds to the waits.
    let config = SimConfig {
        policy: PolicyConfig::default(),
        ..SimConfig::default()
    };
    let outcome = Simulation::new(&fleet, &[], &jobs, &profile, &config).run(&mut |_| {});
    check_conservation(&outcome, &fleet).expect("conservation");
    // Skip the first tenth: the queue starts empty.
    let waits: Vec<f64> = outcome.jobs[jobs.len() / 10..]
        .iter()
        .map(|j| j.first_start_s.expect("started") - j.arrival_s)
        .collect();
    let simulated = waits.iter().sum::<f64>() / waits.len() as f64;
    let a = lambda * service;
    let expected = erlang_c(c, a) * service / (f64::from(c) - a);
    let error = (simulated - expected).abs() / expected;
    println!("M/M/{c} at load {:.3}: mean wait {simulated:.2} s, Erlang C {expected:.2} s ({:.1}% apart); {} cycles over {:.0} s", a / f64::from(c), error * 100.0, outcome.cycles, outcome.duration_s);
    assert!(
        error < 0.05,
        "simulated {simulated:.2} s against Erlang C {expected:.2} s"
    );
    // P(wait > 0) as the report counts it is Erlang C's probability of
    // waiting.
    let waited = waits.iter().filter(|w| **w > WAITED_S).count() as f64 / waits.len() as f64;
    let p_wait = erlang_c(c, a);
    println!("P(wait > 0): {waited:.3} simulated, {p_wait:.3} Erlang C");
    assert!(
        (waited - p_wait).abs() / p_wait < 0.05,
        "P(wait > 0): simulated {waited:.3} against Erlang C {p_wait:.3}"
    );
}

fn queues() -> Vec<pb::Queue> {
    let quota = |flavor: &str, nominal| pb::FlavorQuota {
        flavor: flavor.into(),
        nominal,
        ..Default::default()
    };
    ["a", "b"]
        .iter()
        .map(|name| pb::Queue {
            name: name.to_string(),
            cohort: "lab".into(),
            weight: 1,
            quotas: vec![quota("gpu", 4), quota("big", 2)],
            ..Default::default()
        })
        .collect()
}

fn workload() -> impl Strategy<Value = Vec<JobRequest>> {
    let one = (
        0.0f64..600.0,
        0usize..2,
        0usize..3,
        1u32..200,
        prop_oneof![Just(1u32), Just(2), Just(4)],
    );
    prop::collection::vec(one, 1..120).prop_map(|jobs| {
        let mut jobs: Vec<JobRequest> = jobs
            .into_iter()
            .map(|(t, q, c, steps, tp)| job(t, ["a", "b"][q], Qos::ALL[c], steps, tp))
            .collect();
        jobs.sort_by(|x, y| x.arrival_s.total_cmp(&y.arrival_s));
        jobs
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    /// Whatever the workload: every job ends exactly once after it started
    /// and arrived, devices are never held beyond what exists, and with
    /// every class able to run everything ends.
    #[test]
    fn every_job_ends_once_and_devices_are_conserved(jobs in workload(), horizon in prop::option::of(60.0f64..900.0)) {
        let mut profile = Profile::default();
        profile.set("tiny", "gpu", 1, 4.0);
        profile.set("tiny", "big", 1, 9.0);
        let fleet = Fleet { pools: vec![pool("gpu", 2, 4), pool("big", 1, 4)] };
        let config = SimConfig { horizon_s: horizon, ..SimConfig::default() };
        let queues = queues();
        let outcome = Simulation::new(&fleet, &queues, &jobs, &profile, &config).run(&mut |_| {});
        prop_assert!(check_conservation(&outcome, &fleet).is_ok());
        prop_assert_eq!(outcome.jobs.len(), jobs.len());
        let report = report(&outcome, &fleet, &[]).expect("report");
        prop_assert_eq!(report.completed + report.running_at_end + report.pending_at_end, report.jobs);
        if horizon.is_none() {
            prop_assert_eq!(report.completed, report.jobs, "no horizon: everything ends");
        }
        // What the queues used is what the devices were held.
        let used: f64 = outcome.queue_device_s.values().map(|(u, _)| u).sum();
        let held: f64 = outcome.busy_device_s.iter().sum();
        prop_assert!((used - held).abs() <= 1e-6 * held.max(1.0) + 1e-3, "{} vs {}", used, held);
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    /// Whatever the workload, fleet and limits: a run stopped early has
    /// missed, in the full run, every target it proved missed (by at
    /// least its bound); a run not stopped is the full run; and a wait
    /// target the full run misses with every job started is always
    /// proven missed.
    #[test]
    fn an_abandoned_run_misses_what_the_full_run_misses(
        jobs in workload(),
        nodes in 1u32..3,
        wait_limit in 0.0f64..120.0,
        e2e_limit in 1.0f64..300.0,
    ) {
        let mut profile = Profile::default();
        profile.set("tiny", "gpu", 1, 4.0);
        let fleet = Fleet { pools: vec![pool("gpu", nodes, 4)] };
        let config = SimConfig::default();
        let queues = queues();
        let first = &jobs[0];
        let targets = [
            Target::parse(&format!("{}.p95_wait<={wait_limit}", first.qos.label())),
            Target::parse(&format!("{}.p50_e2e<={e2e_limit}", first.queue)),
        ]
        .map(|t| t.expect("target"));
        let sim = || Simulation::new(&fleet, &queues, &jobs, &profile, &config);
        let full = sim().run(&mut |_| {});
        let full_report = report(&full, &fleet, &targets).expect("report");
        let mut abandon = Abandon::new(&targets, &jobs);
        let observed = sim().run_observed(&mut abandon);
        match abandon.abandoned() {
            Some(a) => {
                prop_assert_eq!(observed.stopped_at_s, Some(observed.duration_s));
                for m in &a.missed {
                    let result = &full_report.targets[m.target];
                    prop_assert!(!result.met, "{} proven missed, met in full", result.target);
                    prop_assert!(m.at_least_s <= result.actual_s + 1e-9, "bound {} over {}", m.at_least_s, result.actual_s);
                }
            }
            None => {
                prop_assert_eq!(&observed.jobs, &full.jobs);
                let wait = &full_report.targets[0];
                let all_started = full.jobs.iter().all(|j| j.first_start_s.is_some());
                prop_assert!(wait.met || !all_started, "{} missed ({} s), never proven", wait.target, wait.actual_s);
            }
        }
    }
}

#[test]
fn the_same_inputs_give_the_same_plan() {
    let mut rng = rand::rngs::StdRng::seed_from_u64(3);
    let jobs: Vec<JobRequest> = (0..500)
        .map(|i| {
            job(
                f64::from(i) * 0.7,
                ["a", "b"][rng.random_range(0..2)],
                Qos::ALL[rng.random_range(0..3)],
                rng.random_range(1..300),
                1,
            )
        })
        .collect();
    let mut profile = Profile::default();
    profile.set("tiny", "gpu", 1, 3.0);
    let fleet = Fleet {
        pools: vec![pool("gpu", 2, 4)],
    };
    let config = SimConfig::default();
    let queues = queues();
    let run = || {
        let outcome = Simulation::new(&fleet, &queues, &jobs, &profile, &config).run(&mut |_| {});
        outcome.jobs
    };
    assert_eq!(run(), run());
}
