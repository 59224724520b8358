//! When a scheduling cycle runs. The leader's loop keeps this clock in real
//! milliseconds, the planner's simulation in simulated ones, so a planned
//! fleet gets its cycles when a real leader would.
//!
//! - Changes gather for a gap after each cycle, at least as long as the
//!   cycle took (and at least [`MIN_CYCLE_GAP_MS`]): under a stream of
//!   writes cycles then take at most half a core.
//! - After that a change runs a cycle at once when a device is free;
//!   otherwise cycles run once per interval, to keep reasons and ETAs fresh.

/// The least time between two cycles, ms.
pub const MIN_CYCLE_GAP_MS: i64 = 5;

#[derive(Debug, Clone)]
pub struct CycleClock {
    interval_ms: i64,
    gap_ms: i64,
    last_ms: i64,
}

impl CycleClock {
    /// A clock whose last cycle was one interval before `now_ms`: the first
    /// cycle is due at once.
    pub fn new(interval_ms: i64, now_ms: i64) -> Self {
        let interval_ms = interval_ms.max(1);
        CycleClock {
            interval_ms,
            gap_ms: MIN_CYCLE_GAP_MS,
            last_ms: now_ms.saturating_sub(interval_ms),
        }
    }

    /// The earliest a cycle may start: the gap after the last one.
    pub fn earliest_ms(&self) -> i64 {
        self.last_ms.saturating_add(self.gap_ms)
    }

    /// Whether a cycle runs at `now_ms`: after the gap, at once if a device
    /// is free, else once an interval has passed since the last.
    pub fn due(&self, now_ms: i64, free_device: bool) -> bool {
        now_ms >= self.earliest_ms() && (free_device || self.interval_passed(now_ms))
    }

    /// Whether an interval has passed since the last cycle at `now_ms`.
    fn interval_passed(&self, now_ms: i64) -> bool {
        now_ms - self.last_ms >= self.interval_ms
    }

    /// When the next cycle is due after a change, given whether a device is
    /// free.
    pub fn next_due_ms(&self, free_device: bool) -> i64 {
        if free_device {
            self.earliest_ms()
        } else {
            self.interval_due_ms()
        }
    }

    /// When an interval will have passed since the last cycle (and its gap).
    pub fn interval_due_ms(&self) -> i64 {
        self.last_ms
            .saturating_add(self.interval_ms)
            .max(self.earliest_ms())
    }

    /// Records a cycle that started at `at_ms` and took `took_ms`: the next
    /// one waits at least as long as this one took.
    pub fn ran(&mut self, at_ms: i64, took_ms: i64) {
        self.last_ms = at_ms;
        self.gap_ms = took_ms.max(MIN_CYCLE_GAP_MS);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_cycle_is_due_at_once_even_without_a_free_device() {
        let clock = CycleClock::new(1_000, 50_000);
        assert!(clock.due(50_000, false));
    }

    #[test]
    fn a_change_runs_a_cycle_after_the_gap_when_a_device_is_free() {
        let mut clock = CycleClock::new(1_000, 0);
        clock.ran(0, 1);
        assert!(!clock.due(MIN_CYCLE_GAP_MS - 1, true));
        assert!(clock.due(MIN_CYCLE_GAP_MS, true));
        assert!(
            !clock.due(MIN_CYCLE_GAP_MS, false),
            "no device free: wait the interval"
        );
        assert!(clock.due(1_000, false));
        assert_eq!(clock.next_due_ms(true), MIN_CYCLE_GAP_MS);
        assert_eq!(clock.next_due_ms(false), 1_000);
    }

    #[test]
    fn a_slow_cycle_widens_the_gap_to_its_own_length() {
        let mut clock = CycleClock::new(100, 0);
        clock.ran(1_000, 300);
        assert!(!clock.due(1_299, true));
        assert!(clock.due(1_300, true));
        assert_eq!(
            clock.interval_due_ms(),
            1_300,
            "the gap outlasts the interval"
        );
    }
}
