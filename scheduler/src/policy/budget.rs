//! Budgets: a queue's device-time per period (device-hours per day, say).
//! The rule of what a run costs is written here once, in integer
//! device-milliseconds, and used by the replicated state (which charges
//! ended leases), the leader's cycles (which add running work) and the
//! planner's simulation alike, so the three cannot drift apart.

use genfleet_proto as pb;

/// Which period of `budget` holds `at_ms` (Unix ms): periods are counted
/// from the epoch, so every replica and the planner agree on them.
pub fn period_of(budget: &pb::Budget, at_ms: i64) -> u64 {
    at_ms.max(0) as u64 / period_ms(budget)
}

/// When period `period` of `budget` starts, Unix ms.
pub fn period_start_ms(budget: &pb::Budget, period: u64) -> i64 {
    period
        .saturating_mul(period_ms(budget))
        .min(i64::MAX as u64) as i64
}

fn period_ms(budget: &pb::Budget) -> u64 {
    budget.period_seconds.max(1).saturating_mul(1000)
}

/// Device-ms that a run holding `devices` since `since_ms` has used, up to
/// `at_ms`, of the period holding `at_ms`: time before the period started
/// was charged to the earlier one.
pub fn run_device_ms(budget: &pb::Budget, since_ms: i64, devices: u64, at_ms: i64) -> u64 {
    let start = period_start_ms(budget, period_of(budget, at_ms));
    ((at_ms - since_ms.max(start)).max(0) as u64).saturating_mul(devices)
}

/// The device-ms a queue's ended runs were charged in one period.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct PeriodCharge {
    pub period: u64,
    pub device_ms: u64,
}

impl From<&pb::BudgetUsage> for PeriodCharge {
    fn from(usage: &pb::BudgetUsage) -> Self {
        PeriodCharge {
            period: usage.period,
            device_ms: usage.device_ms,
        }
    }
}

impl PeriodCharge {
    /// Books a run that held `devices` from `since_ms` and ended at
    /// `at_ms`; a run ending in a later period starts that period's count.
    pub fn charge(&mut self, budget: &pb::Budget, since_ms: i64, devices: u64, at_ms: i64) {
        let period = period_of(budget, at_ms);
        if self.period != period {
            *self = PeriodCharge {
                period,
                device_ms: 0,
            };
        }
        let used = run_device_ms(budget, since_ms, devices, at_ms);
        self.device_ms = self.device_ms.saturating_add(used);
    }

    /// What was charged in `period` (nothing once a later period began).
    pub fn in_period(&self, period: u64) -> u64 {
        if self.period == period {
            self.device_ms
        } else {
            0
        }
    }
}

/// Device-seconds of `budget` used in the period holding `now_ms`: ended
/// runs' `charged`, plus each running `(since_ms, devices)` so far.
pub fn used_s(
    budget: &pb::Budget,
    charged: PeriodCharge,
    running: impl IntoIterator<Item = (i64, u64)>,
    now_ms: i64,
) -> f64 {
    let ended = charged.in_period(period_of(budget, now_ms));
    let running: u64 = running
        .into_iter()
        .map(|(since_ms, devices)| run_device_ms(budget, since_ms, devices, now_ms))
        .fold(0, u64::saturating_add);
    ended.saturating_add(running) as f64 / 1000.0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn minute() -> pb::Budget {
        pb::Budget {
            device_hours: 1.0,
            period_seconds: 60,
        }
    }

    #[test]
    fn a_run_across_a_period_boundary_is_charged_only_its_time_in_the_new_period() {
        let budget = minute();
        let mut charge = PeriodCharge::default();
        charge.charge(&budget, 50_000, 2, 70_000);
        assert_eq!(
            charge,
            PeriodCharge {
                period: 1,
                device_ms: 20_000
            }
        );
        assert_eq!(charge.in_period(0), 0);
        assert_eq!(charge.in_period(2), 0);
    }

    #[test]
    fn charges_add_up_within_a_period_and_restart_in_the_next() {
        let budget = minute();
        let mut charge = PeriodCharge::default();
        charge.charge(&budget, 0, 1, 10_000);
        charge.charge(&budget, 5_000, 3, 15_000);
        assert_eq!(charge.device_ms, 40_000);
        charge.charge(&budget, 61_000, 1, 62_000);
        assert_eq!(
            charge,
            PeriodCharge {
                period: 1,
                device_ms: 1_000
            }
        );
    }

    #[test]
    fn use_so_far_counts_ended_and_running_work_of_the_current_period() {
        let budget = minute();
        let charged = PeriodCharge {
            period: 1,
            device_ms: 4_000,
        };
        assert_eq!(
            used_s(&budget, charged, [(55_000, 2), (70_000, 1)], 75_000),
            4.0 + 30.0 + 5.0
        );
        assert_eq!(
            used_s(&budget, charged, [], 125_000),
            0.0,
            "period 1 is over"
        );
    }

    #[test]
    fn times_before_the_epoch_and_huge_periods_do_not_overflow() {
        let huge = pb::Budget {
            device_hours: 1.0,
            period_seconds: u64::MAX,
        };
        assert_eq!(period_of(&huge, i64::MAX), 0);
        assert_eq!(period_of(&minute(), -5), 0);
        assert_eq!(run_device_ms(&minute(), 10, u64::MAX, 20), u64::MAX);
    }
}
