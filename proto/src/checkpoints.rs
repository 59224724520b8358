//! The periodic checkpoint interval, one rule for the workers that take
//! checkpoints and the capacity planner that models node failures.
//!
//! Young's first-order optimum, which Daly refined: sqrt(2 x C x M), for a
//! checkpoint that costs C on nodes that fail every M on average. More
//! often spends more time saving than it saves; less often loses more work
//! per failure. Held within [`MIN_INTERVAL`, `MAX_INTERVAL`]: a very cheap
//! checkpoint is not worth taking every few seconds, and an hour is the most
//! work a job may lose whatever the estimates say.

use std::time::Duration;

/// The shortest interval the rule may give.
pub const MIN_INTERVAL: Duration = Duration::from_secs(60);
/// The longest interval the rule may give.
pub const MAX_INTERVAL: Duration = Duration::from_secs(3600);

/// Young/Daly's interval for checkpoints costing `cost` on nodes failing
/// every `mtbf` on average, within the bounds.
pub fn young_daly(cost: Duration, mtbf: Duration) -> Duration {
    let seconds = (2.0 * cost.as_secs_f64() * mtbf.as_secs_f64()).sqrt();
    Duration::from_secs_f64(seconds).clamp(MIN_INTERVAL, MAX_INTERVAL)
}

/// The expected fraction of a job's time lost to failures and to the
/// checkpoints that bound them, at checkpoint interval `interval`:
/// saving (cost / interval), plus per failure (1 / mtbf) half an interval of
/// work redone and a reload. First order: good while failures are rare
/// within an interval (interval << mtbf).
pub fn expected_waste(cost: Duration, interval: Duration, reload: Duration, mtbf: Duration) -> f64 {
    let (c, t, r, m) = (
        cost.as_secs_f64(),
        interval.as_secs_f64(),
        reload.as_secs_f64(),
        mtbf.as_secs_f64(),
    );
    if t <= 0.0 || m <= 0.0 {
        return 0.0;
    }
    c / t + (t / 2.0 + r) / m
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
    fn the_waste_is_least_at_young_dalys_interval() {
        let (cost, reload, mtbf) = (
            Duration::from_secs(5),
            Duration::from_secs(10),
            Duration::from_secs(86_400),
        );
        let best = young_daly(cost, mtbf);
        let at = |t: Duration| expected_waste(cost, t, reload, mtbf);
        assert!(at(best) < at(best / 2) && at(best) < at(best * 2));
        // 5 s every 929.5 s and 474.7 s of rework a day: about 1.1%.
        assert!((at(best) - 0.01087).abs() < 0.0002, "{}", at(best));
    }
}
