//! A rolling restart of three scheduler replicas under steady submissions,
//! as an operator (or `kubectl rollout restart`) does it: each replica in
//! turn gets SIGTERM, starts again and catches up, the followers first and
//! the leader last. Two submitters keep submitting through every replica
//! in turn. Measured per restarted replica: the longest time without an
//! accepted submission while it was down or catching up; and whether every
//! acknowledged submission is still there at the end. Repeated
//! GENFLEET_ROLLING_ROUNDS times (default 3).
//!
//! `cargo bench --bench rolling_restart`

#[path = "../tests/suite/common/mod.rs"]
#[allow(dead_code)] // A bench uses a few of the integration tests' helpers.
mod common;

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::replicas::Replicas;
use common::small_spec;
use genfleet_proto as pb;

/// Acknowledged submissions: when, and the job id.
type Acks = Arc<Mutex<Vec<(Instant, String)>>>;

/// Submits through `endpoints` in turn (the next one after any failure)
/// until `stop`, recording every acknowledged submission.
async fn submitter(name: usize, endpoints: Vec<String>, acks: Acks, stop: Arc<AtomicBool>) {
    let mut n = 0u64;
    let mut at = name;
    while !stop.load(Ordering::Relaxed) {
        let endpoint = &endpoints[at % endpoints.len()];
        at += 1;
        let Some(mut client) = common::quick_client(endpoint).await else {
            continue;
        };
        // A few submissions per connection, as a real client keeps one.
        for _ in 0..5 {
            n += 1;
            let request = pb::SubmitRequest {
                spec: Some(small_spec(&format!("submitter {name} job {n}"), n)),
                request_id: format!("rolling-{name}-{n}"),
            };
            match tokio::time::timeout(Duration::from_secs(1), client.submit(request)).await {
                Ok(Ok(reply)) => {
                    let id = reply.into_inner().job.map(|j| j.id).unwrap_or_default();
                    acks.lock().expect("acks").push((Instant::now(), id));
                }
                _ => break,
            }
            if stop.load(Ordering::Relaxed) {
                break;
            }
        }
    }
}

/// Waits until replica `id` is back: it answers, knows a leader, and has
/// applied everything the leader had committed when it came back (the
/// replicas never all agree on one applied index while submissions go on).
async fn caught_up(replicas: &Replicas, id: u64) {
    let mut target = None;
    common::within(120, "the restarted replica catches up", async {
        loop {
            if let Some(me) = replicas.status(id).await {
                if me.leader != 0 {
                    if target.is_none() {
                        target = replicas.status(me.leader).await.map(|l| l.commit);
                    }
                    if target.is_some_and(|commit| me.applied >= commit) {
                        return;
                    }
                }
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
}

/// The longest time without an acknowledged submission between `from` and
/// `to` (counting from `from` to the first ack and from the last ack to `to`).
fn longest_gap(acks: &[(Instant, String)], from: Instant, to: Instant) -> Duration {
    let mut times: Vec<Instant> = acks
        .iter()
        .map(|(t, _)| *t)
        .filter(|t| *t >= from && *t <= to)
        .collect();
    times.sort();
    let mut last = from;
    let mut gap = Duration::ZERO;
    for t in times.into_iter().chain(std::iter::once(to)) {
        gap = gap.max(t - last);
        last = t;
    }
    gap
}

#[tokio::main]
async fn main() {
    let rounds: usize = std::env::var("GENFLEET_ROLLING_ROUNDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(3);
    // The default timings: 100 ms ticks, elections after 10 to 20 ticks.
    let mut replicas = Replicas::new(3, &[]);
    replicas.converged(&[1, 2, 3]).await;
    let endpoints: Vec<String> = (1..=3).map(|id| replicas.endpoint(id)).collect();
    let acks: Acks = Arc::new(Mutex::new(Vec::new()));
    let stop = Arc::new(AtomicBool::new(false));
    let submitters: Vec<_> = (0..2)
        .map(|name| {
            tokio::spawn(submitter(
                name,
                endpoints.clone(),
                acks.clone(),
                stop.clone(),
            ))
        })
        .collect();
    // Steady state first: its longest gap is the floor the restarts'
    // windows are read against.
    let steady_from = Instant::now() + Duration::from_millis(500);
    tokio::time::sleep(Duration::from_secs(3)).await;
    let steady = longest_gap(&acks.lock().expect("acks"), steady_from, Instant::now());
    println!(
        "steady state: longest time without an accepted submission {:.0} ms",
        steady.as_secs_f64() * 1e3
    );

    let (mut follower_gaps, mut leader_gaps) = (Vec::new(), Vec::new());
    for round in 1..=rounds {
        let leader = replicas
            .leader()
            .await
            .expect("a leader before the restart");
        let mut order: Vec<u64> = (1..=3).filter(|id| *id != leader).collect();
        order.push(leader);
        for id in order {
            let role = if id == leader { "leader" } else { "follower" };
            let down = Instant::now();
            let exit = replicas.terminate(id, 60).expect("the replica ran");
            assert!(exit.success(), "replica {id} exited with {exit} on SIGTERM");
            replicas.start(id, false);
            caught_up(&replicas, id).await;
            let back = Instant::now();
            let gap = longest_gap(&acks.lock().expect("acks"), down, back);
            println!(
                "round {round}: restarted the {role} (replica {id}) in {:.2} s; longest time without an accepted submission {:.0} ms",
                (back - down).as_secs_f64(),
                gap.as_secs_f64() * 1e3
            );
            if id == leader {
                leader_gaps.push(gap);
            } else {
                follower_gaps.push(gap);
            }
        }
    }
    stop.store(true, Ordering::Relaxed);
    for s in submitters {
        let _ = s.await;
    }

    // Every acknowledged submission is in the replicated state.
    let mut client = replicas.leader_client().await;
    let jobs = common::list(&mut client).await;
    let have: BTreeSet<String> = jobs.into_iter().map(|j| j.id).collect();
    let acked = acks.lock().expect("acks").clone();
    let lost: Vec<&String> = acked
        .iter()
        .map(|(_, id)| id)
        .filter(|id| !have.contains(*id))
        .collect();
    println!(
        "{} submissions acknowledged over {rounds} rolling restarts; {} lost",
        acked.len(),
        lost.len()
    );
    let max_ms = |gaps: &[Duration]| gaps.iter().max().map_or(0.0, |g| g.as_secs_f64() * 1e3);
    println!(
        "RESULT rolling_restart_steady_gap_max {:.0} ms",
        steady.as_secs_f64() * 1e3
    );
    println!(
        "RESULT rolling_restart_follower_gap_max {:.0} ms",
        max_ms(&follower_gaps)
    );
    println!(
        "RESULT rolling_restart_leader_gap_max {:.0} ms",
        max_ms(&leader_gaps)
    );
    println!(
        "RESULT rolling_restart_lost_submissions {} count",
        lost.len()
    );
    assert!(lost.is_empty(), "acknowledged submissions lost: {lost:?}");
}
