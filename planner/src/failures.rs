//! Node failures in the simulation: each node of a flavor with a mean
//! time between failures fails at exponentially distributed times (a
//! Poisson process, the usual model of independent hardware faults),
//! is down for the repair time, and comes back empty.
//!
//! What a failure costs the work on the node is what it costs in the real
//! cluster: the jobs there lose the steps since their last periodic
//! checkpoint (the workers checkpoint at Young/Daly's interval for the
//! checkpoint cost and the flavor's MTBF, `genfleet_proto::checkpoints`),
//! wait until the leader notices the worker is gone, and are requeued to
//! resume from that checkpoint after a reload. Saving the checkpoints
//! slows every run on the flavor by cost / interval.

use std::time::Duration;

use genfleet_proto::checkpoints::young_daly;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// How often a flavor's nodes fail and how long one takes to come back.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct NodeFailures {
    pub mtbf_s: f64,
    pub repair_s: f64,
}

/// The periodic checkpoints of runs on a flavor whose nodes fail.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Checkpointing {
    /// Seconds of running between two checkpoints.
    pub interval_s: f64,
    /// How much slower a run goes for the time spent saving (1 + C / τ).
    pub slowdown: f64,
}

impl NodeFailures {
    /// The workers' checkpoints on such nodes, each costing `cost_s`.
    pub fn checkpointing(&self, cost_s: f64) -> Checkpointing {
        let secs = |s: f64| Duration::from_secs_f64(s.max(0.0));
        let interval_s = young_daly(secs(cost_s), secs(self.mtbf_s)).as_secs_f64();
        Checkpointing {
            interval_s,
            slowdown: 1.0 + cost_s.max(0.0) / interval_s,
        }
    }
}

/// Draws failure times; seeded, so a plan is reproducible.
pub struct FailureClock {
    rng: StdRng,
}

impl FailureClock {
    pub fn new(seed: u64) -> Self {
        Self {
            rng: StdRng::seed_from_u64(seed),
        }
    }

    /// Ms from now until the next failure of a node failing every
    /// `mtbf_s` on average.
    pub fn next_failure_ms(&mut self, mtbf_s: f64) -> i64 {
        let u: f64 = self.rng.random();
        let seconds = -(1.0 - u).ln() * mtbf_s.max(1e-3);
        (seconds * 1000.0).round().clamp(1.0, 1e15) as i64
    }
}

/// Steps a run kept at its last checkpoint, `ran_ms` after its steps
/// began, checkpointing every `interval_ms` at `steps_per_s`.
pub fn steps_at_last_checkpoint(ran_ms: i64, interval_ms: i64, steps_per_s: f64) -> u32 {
    if ran_ms <= 0 || interval_ms <= 0 {
        return 0;
    }
    let checkpoints = ran_ms / interval_ms;
    let seconds = (checkpoints * interval_ms) as f64 / 1000.0;
    (seconds * steps_per_s + 1e-9).floor() as u32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failures_come_at_the_mean_rate() {
        let mut clock = FailureClock::new(7);
        let n = 20_000;
        let mean_s = (0..n)
            .map(|_| clock.next_failure_ms(3_600.0) as f64 / 1000.0)
            .sum::<f64>()
            / f64::from(n);
        // The standard error of the mean of 20,000 exponentials is 0.7%.
        assert!((mean_s / 3_600.0 - 1.0).abs() < 0.03, "{mean_s}");
    }

    #[test]
    fn work_since_the_last_checkpoint_is_lost() {
        // Checkpoints every 60 s at 2 steps/s: 150 s in, the last was at
        // 120 s, 240 steps.
        assert_eq!(steps_at_last_checkpoint(150_000, 60_000, 2.0), 240);
        assert_eq!(steps_at_last_checkpoint(59_999, 60_000, 2.0), 0);
        assert_eq!(steps_at_last_checkpoint(0, 60_000, 2.0), 0);
    }

    #[test]
    fn saving_slows_runs_by_cost_over_interval() {
        let day = NodeFailures {
            mtbf_s: 86_400.0,
            repair_s: 3_600.0,
        };
        let c = day.checkpointing(5.0);
        // sqrt(2 x 5 x 86400) = 929.5 s.
        assert!((c.interval_s - 929.5).abs() < 0.1, "{c:?}");
        assert!((c.slowdown - (1.0 + 5.0 / c.interval_s)).abs() < 1e-12);
    }
}
