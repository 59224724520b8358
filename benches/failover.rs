//! Failover time: three scheduler replicas on loopback; the leader is
//! killed with SIGKILL, and the time until a submission is accepted again
//! (through any surviving replica) is measured. Repeated 20 times (set
//! GENFLEET_FAILOVER_ROUNDS), each after the killed replica has rejoined.
//!
//! `cargo bench --bench failover`

#[path = "../tests/suite/common/mod.rs"]
#[allow(dead_code)] // A bench uses a few of the integration tests' helpers.
mod common;

use std::time::{Duration, Instant};

use common::replicas::Replicas;
use common::small_spec;
use genfleet_proto as pb;

/// Submits through `endpoints` in turn until one accepts; returns when.
async fn first_accepted_submit(endpoints: &[String], round: usize) -> Instant {
    let mut attempt = 0usize;
    loop {
        let endpoint = &endpoints[attempt % endpoints.len()];
        attempt += 1;
        let Some(mut client) = common::quick_client(endpoint).await else {
            continue;
        };
        let request = pb::SubmitRequest {
            spec: Some(small_spec("after failover", round as u64)),
            request_id: format!("failover-{round}"),
        };
        let call = client.submit(request);
        if let Ok(Ok(_)) = tokio::time::timeout(Duration::from_millis(500), call).await {
            return Instant::now();
        }
    }
}

#[tokio::main]
async fn main() {
    let rounds: usize = std::env::var("GENFLEET_FAILOVER_ROUNDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(20);
    // The default timings: 100 ms ticks, elections after 10 to 20 ticks.
    let mut replicas = Replicas::new(3, &[]);
    replicas.converged(&[1, 2, 3]).await;
    let mut times = Vec::with_capacity(rounds);
    for round in 0..rounds {
        let leader = replicas.leader().await.expect("a leader before the kill");
        let survivors: Vec<String> = replicas
            .running()
            .into_iter()
            .filter(|id| *id != leader)
            .map(|id| replicas.endpoint(id))
            .collect();
        let killed_at = Instant::now();
        replicas.kill(leader);
        let accepted = first_accepted_submit(&survivors, round).await;
        let took = accepted - killed_at;
        println!(
            "round {:2}: killed leader {leader}, a submit was accepted {:.3} s later",
            round + 1,
            took.as_secs_f64()
        );
        times.push(took.as_secs_f64());
        replicas.start(leader, false);
        replicas.converged(&[1, 2, 3]).await;
    }
    times.sort_by(f64::total_cmp);
    let pick = |q: f64| times[((times.len() as f64 - 1.0) * q).round() as usize];
    println!(
        "failover over {} kills: min {:.3} s, p50 {:.3} s, p99 {:.3} s, max {:.3} s",
        times.len(),
        times[0],
        pick(0.5),
        pick(0.99),
        times[times.len() - 1]
    );
    println!("RESULT failover_p50 {:.3} s", pick(0.5));
    println!("RESULT failover_p99 {:.3} s", pick(0.99));
}
