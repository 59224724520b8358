//! How often a running job saves a checkpoint while it runs, so that a
//! node lost without warning (`kill -9`, a spot reclaim, a GPU fault) costs
//! at most that much of its work.
//!
//! The interval is Young's first-order optimum, which Daly refined:
//! sqrt(2 x C x M), where C is what one checkpoint costs (measured: the
//! latent copied to the host, serialised and stored) and M the mean time
//! between failures of a node. Checkpointing more often spends more time
//! saving than it saves; less often loses more work per failure. The
//! interval is held within [`MIN_INTERVAL`, `MAX_INTERVAL`]: a very cheap
//! checkpoint is not worth taking every few seconds, and an hour is the most
//! work a job may lose whatever the estimates say.

use std::sync::Mutex;
use std::time::Duration;

/// The shortest interval the rule may give.
pub const MIN_INTERVAL: Duration = Duration::from_secs(60);
/// The longest interval the rule may give.
pub const MAX_INTERVAL: Duration = Duration::from_secs(3600);
/// A checkpoint's cost before one has been measured.
const FIRST_COST: Duration = Duration::from_secs(1);
/// Weight of the newest measurement in the running average of the cost.
const NEW_COST_WEIGHT: f64 = 0.3;

/// Young/Daly's interval for checkpoints costing `cost` on nodes failing
/// every `mtbf` on average, within the bounds.
pub fn young_daly(cost: Duration, mtbf: Duration) -> Duration {
    let seconds = (2.0 * cost.as_secs_f64() * mtbf.as_secs_f64()).sqrt();
    Duration::from_secs_f64(seconds).clamp(MIN_INTERVAL, MAX_INTERVAL)
}

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
    fn the_interval_is_young_dalys_within_its_bounds() {
        let day = Duration::from_secs(86_400);
        // sqrt(2 x 1 s x 86400 s) = 415.7 s.
        let one_second = young_daly(Duration::from_secs(1), day);
        assert!(
            (one_second.as_secs_f64() - 415.69).abs() < 0.01,
            "{one_second:?}"
        );
        // Four times the cost: twice the interval.
        let four = young_daly(Duration::from_secs(4), day);
        assert!((four.as_secs_f64() - 2.0 * one_second.as_secs_f64()).abs() < 0.01);
        assert_eq!(young_daly(Duration::from_millis(1), day), MIN_INTERVAL);
        assert_eq!(young_daly(Duration::from_secs(60), day * 30), MAX_INTERVAL);
    }

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
