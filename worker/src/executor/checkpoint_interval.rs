//! How often a running job saves a checkpoint while it runs, so that a
//! node lost without warning (`kill -9`, a spot reclaim, a GPU fault) costs
//! at most that much of its work: Young/Daly's interval
//! ([`genfleet_proto::checkpoints::young_daly`], the rule the capacity
//! planner uses too) from the nodes' MTBF and what a checkpoint costs here,
//! measured (the latent copied to the host, serialised and stored).

use std::sync::Mutex;
use std::time::Duration;

use genfleet_proto::checkpoints::young_daly;

/// A checkpoint's cost before one has been measured.
const FIRST_COST: Duration = Duration::from_secs(1);
/// Weight of the newest measurement in the running average of the cost.
const NEW_COST_WEIGHT: f64 = 0.3;

/// The worker's checkpoint interval: fixed, off, or Young/Daly's from the
/// node's MTBF and the measured cost.
#[derive(Debug)]
pub struct CheckpointInterval {
    rule: Rule,
    /// Running average of what a checkpoint cost here.
    cost: Mutex<Duration>,
}

#[derive(Debug, Clone, Copy)]
enum Rule {
    Off,
    Every(Duration),
    YoungDaly { mtbf: Duration },
}

impl CheckpointInterval {
    /// `every`: a fixed interval (`Some(0)`: no periodic checkpoints);
    /// `None`: Young/Daly's for nodes failing every `mtbf`.
    pub fn new(every: Option<Duration>, mtbf: Duration) -> Self {
        let rule = match every {
            Some(d) if d.is_zero() => Rule::Off,
            Some(d) => Rule::Every(d),
            None => Rule::YoungDaly { mtbf },
        };
        Self {
            rule,
            cost: Mutex::new(FIRST_COST),
        }
    }

    /// No periodic checkpoints (simulated devices, tests).
    pub fn off() -> Self {
        Self::new(Some(Duration::ZERO), Duration::ZERO)
    }

    /// The time between a job's checkpoints now; None: none are taken.
    pub fn interval(&self) -> Option<Duration> {
        match self.rule {
            Rule::Off => None,
            Rule::Every(d) => Some(d),
            Rule::YoungDaly { mtbf } => Some(young_daly(self.cost(), mtbf)),
        }
    }

    /// Takes what one checkpoint cost into the running average.
    pub fn record_cost(&self, took: Duration) {
        let mut cost = self.cost.lock().unwrap_or_else(|e| e.into_inner());
        let blended =
            cost.as_secs_f64() * (1.0 - NEW_COST_WEIGHT) + took.as_secs_f64() * NEW_COST_WEIGHT;
        *cost = Duration::from_secs_f64(blended);
    }

    fn cost(&self) -> Duration {
        *self.cost.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_measured_cost_moves_the_interval_and_fixed_ones_stay() {
        let day = Duration::from_secs(86_400);
        let derived = CheckpointInterval::new(None, day);
        let first = derived.interval().expect("on");
        for _ in 0..20 {
            derived.record_cost(Duration::from_secs(4));
        }
        let later = derived.interval().expect("on");
        assert!(later > first, "{first:?} -> {later:?}");
        assert!((later.as_secs_f64() - 831.4).abs() < 5.0, "{later:?}");
        let fixed = CheckpointInterval::new(Some(Duration::from_secs(5)), day);
        fixed.record_cost(Duration::from_secs(100));
        assert_eq!(fixed.interval(), Some(Duration::from_secs(5)));
        assert_eq!(CheckpointInterval::off().interval(), None);
    }
}
