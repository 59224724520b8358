//! Queue commands: apply (create or replace) and delete, with the checks
//! that keep a queue meaningful. `default` exists without being applied.

use std::collections::{BTreeMap, BTreeSet};

use genfleet_proto as pb;
use pb::JobState;

use super::{Outcome, Rejection, State};
use crate::policy::budget::{self, PeriodCharge};
use crate::spec::DEFAULT_QUEUE;

/// Bounds that keep a queue definition sane (and a peer from bloating
/// the state).
/// (The GenQueue CRD's schema states the same bounds.)
pub(crate) const MAX_WEIGHT: u32 = 1000;
pub(crate) const MAX_FLAVORS: usize = 32;
pub(crate) const MAX_DEVICES: u32 = 1_000_000;
pub(crate) const MAX_BUDGET_HOURS: f64 = 1e9;
const MIN_PERIOD_S: u64 = 60;
const MAX_PERIOD_S: u64 = 366 * 86_400;

/// Why a queue definition is refused; each names the field and the queue.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum QueueError {
    #[error("queue name {0:?} must be 1-63 characters of a-z, 0-9, '-', '_', '.'")]
    Name(String),
    #[error(
        "cohort {cohort:?} of queue {queue} must be 1-63 characters of a-z, 0-9, '-', '_', '.'"
    )]
    Cohort { queue: String, cohort: String },
    #[error("weight {weight} of queue {queue} is above {MAX_WEIGHT}")]
    Weight { queue: String, weight: u32 },
    #[error("queue {queue} has quotas for {flavors} flavors; at most {MAX_FLAVORS}")]
    TooManyFlavors { queue: String, flavors: usize },
    #[error("flavor {flavor:?} of queue {queue} is not a valid name")]
    FlavorName { queue: String, flavor: String },
    #[error("queue {queue} lists flavor {flavor} twice")]
    FlavorTwice { queue: String, flavor: String },
    #[error("queue {queue} asks for more than {MAX_DEVICES} devices of {flavor}")]
    TooManyDevices { queue: String, flavor: String },
    #[error("queue {queue} sets a borrowing limit for {flavor} but has no cohort to borrow from")]
    BorrowingWithoutCohort { queue: String, flavor: String },
    #[error("queue {queue} lends up to {lends} of {flavor} but its nominal quota is {nominal}")]
    LendsBeyondNominal {
        queue: String,
        flavor: String,
        lends: u32,
        nominal: u32,
    },
    #[error(
        "budget of queue {queue}: {hours} device-hours is not between 0 and {MAX_BUDGET_HOURS}"
    )]
    BudgetHours { queue: String, hours: f64 },
    #[error(
        "budget of queue {queue}: a period of {seconds} s is not between 1 minute and 366 days"
    )]
    BudgetPeriod { queue: String, seconds: u64 },
}

/// Checks a queue and fills its defaults (weight 0 -> 1, quotas sorted by
/// flavor); the error says which field is wrong and why.
pub fn validate_queue(mut queue: pb::Queue) -> Result<pb::Queue, QueueError> {
    let name = || queue.name.clone();
    if !pb::is_valid_name(&queue.name) {
        return Err(QueueError::Name(name()));
    }
    if !queue.cohort.is_empty() && !pb::is_valid_name(&queue.cohort) {
        return Err(QueueError::Cohort {
            queue: name(),
            cohort: queue.cohort.clone(),
        });
    }
    let weight = if queue.weight == 0 { 1 } else { queue.weight };
    if weight > MAX_WEIGHT {
        return Err(QueueError::Weight {
            queue: name(),
            weight,
        });
    }
    if queue.quotas.len() > MAX_FLAVORS {
        return Err(QueueError::TooManyFlavors {
            queue: name(),
            flavors: queue.quotas.len(),
        });
    }
    let mut seen = BTreeSet::new();
    for quota in &queue.quotas {
        let flavor = || quota.flavor.clone();
        if !pb::is_valid_name(&quota.flavor) {
            return Err(QueueError::FlavorName {
                queue: name(),
                flavor: flavor(),
            });
        }
        if !seen.insert(quota.flavor.as_str()) {
            return Err(QueueError::FlavorTwice {
                queue: name(),
                flavor: flavor(),
            });
        }
        let limits = [
            Some(quota.nominal),
            quota.borrowing_limit,
            quota.lending_limit,
        ];
        if limits.iter().flatten().any(|n| *n > MAX_DEVICES) {
            return Err(QueueError::TooManyDevices {
                queue: name(),
                flavor: flavor(),
            });
        }
        if quota.borrowing_limit.is_some() && queue.cohort.is_empty() {
            return Err(QueueError::BorrowingWithoutCohort {
                queue: name(),
                flavor: flavor(),
            });
        }
        if let Some(lends) = quota.lending_limit.filter(|l| *l > quota.nominal) {
            return Err(QueueError::LendsBeyondNominal {
                queue: name(),
                flavor: flavor(),
                lends,
                nominal: quota.nominal,
            });
        }
    }
    if let Some(budget) = &queue.budget {
        let hours = budget.device_hours;
        if !hours.is_finite() || hours <= 0.0 || hours > MAX_BUDGET_HOURS {
            return Err(QueueError::BudgetHours {
                queue: name(),
                hours,
            });
        }
        if !(MIN_PERIOD_S..=MAX_PERIOD_S).contains(&budget.period_seconds) {
            return Err(QueueError::BudgetPeriod {
                queue: name(),
                seconds: budget.period_seconds,
            });
        }
    }
    queue.weight = weight;
    queue.quotas.sort_by(|a, b| a.flavor.cmp(&b.flavor));
    Ok(queue)
}

impl State {
    pub(super) fn upsert_queue(&mut self, c: &pb::UpsertQueue) -> Result<Outcome, Rejection> {
        let queue = c
            .queue
            .clone()
            .ok_or(Rejection::Malformed("queue apply without a queue"))?;
        let queue = validate_queue(queue).map_err(Rejection::InvalidQueue)?;
        self.queues.insert(queue.name.clone(), queue.clone());
        Ok(Outcome::Queue(queue))
    }

    pub(super) fn delete_queue(&mut self, name: &str) -> Result<Outcome, Rejection> {
        if !self.queues.contains_key(name) {
            return Err(Rejection::UnknownQueue(name.to_string()));
        }
        let unfinished = self
            .jobs
            .values()
            .filter(|j| j.spec.queue == name && !j.state.is_terminal())
            .count();
        if unfinished > 0 {
            return Err(Rejection::QueueInUse {
                queue: name.to_string(),
                jobs: unfinished,
            });
        }
        self.queues.remove(name);
        self.budget_usage.remove(name);
        Ok(Outcome::Done)
    }

    /// Charges a lease that ends at `at_ms` to its queue's budget (the rule
    /// is `policy::budget`'s, shared with the leader and the planner).
    /// `lease`: when it began, and its devices.
    pub(super) fn charge_budget(&mut self, queue: &str, lease: (i64, u64), at_ms: i64) {
        let Some(budget) = self.queues.get(queue).and_then(|q| q.budget) else {
            return;
        };
        let (leased_at_ms, devices) = lease;
        let usage = self
            .budget_usage
            .entry(queue.to_string())
            .or_insert_with(|| pb::BudgetUsage {
                queue: queue.to_string(),
                ..Default::default()
            });
        let mut charge = PeriodCharge::from(&*usage);
        charge.charge(&budget, leased_at_ms, devices, at_ms);
        usage.period = charge.period;
        usage.device_ms = charge.device_ms;
    }

    /// Each budgeted queue's use of its current period at `now_ms`, in
    /// device-seconds: ended leases plus running work so far.
    pub fn budget_used_s(&self, now_ms: i64) -> BTreeMap<String, f64> {
        // Every scheduling cycle asks: without a budget there is nothing to
        // walk the jobs for, and only budgeted queues' jobs are collected.
        let budgeted: BTreeSet<&str> = self
            .queues
            .values()
            .filter(|q| q.budget.is_some())
            .map(|q| q.name.as_str())
            .collect();
        if budgeted.is_empty() {
            return BTreeMap::new();
        }
        let mut running: BTreeMap<&str, Vec<(i64, u64)>> = BTreeMap::new();
        for job in self
            .jobs
            .values()
            .filter(|j| j.state == JobState::Running && budgeted.contains(j.spec.queue.as_str()))
        {
            running
                .entry(job.spec.queue.as_str())
                .or_default()
                .push((job.leased_at_ms, job.device_ids.len() as u64));
        }
        let mut used = BTreeMap::new();
        for queue in self.queues.values() {
            let Some(budget) = &queue.budget else {
                continue;
            };
            let charged = self
                .budget_usage
                .get(&queue.name)
                .map(PeriodCharge::from)
                .unwrap_or_default();
            let runs = running
                .get(queue.name.as_str())
                .into_iter()
                .flatten()
                .copied();
            used.insert(
                queue.name.clone(),
                budget::used_s(budget, charged, runs, now_ms),
            );
        }
        used
    }

    /// Device-ms a queue's ended leases used in budget period `period`.
    pub fn budget_charged_ms(&self, queue: &str, period: u64) -> u64 {
        self.budget_usage
            .get(queue)
            .map_or(0, |u| PeriodCharge::from(u).in_period(period))
    }

    /// Whether jobs may name `queue`: applied, or the implicit default.
    pub fn queue_exists(&self, queue: &str) -> bool {
        queue == DEFAULT_QUEUE || self.queues.contains_key(queue)
    }

    /// Applied queues, by name.
    pub fn queues(&self) -> impl Iterator<Item = &pb::Queue> {
        self.queues.values()
    }

    /// Why no registered node could ever run `tp` devices for `queue`, if
    /// none could: a gang needs `tp` devices of one flavor the queue has
    /// quota for, on one node. Says nothing while no node of those flavors
    /// is registered (its workers may not have started yet).
    pub fn impossible_gang(&self, queue: &str, tp: u32) -> Option<String> {
        let allowed: Option<BTreeSet<&str>> = self
            .queues
            .get(queue)
            .filter(|q| !q.quotas.is_empty())
            .map(|q| q.quotas.iter().map(|f| f.flavor.as_str()).collect());
        let usable = |group: &&pb::DeviceGroup| {
            allowed
                .as_ref()
                .is_none_or(|flavors| flavors.contains(group.flavor.as_str()))
        };
        let largest = self
            .nodes()
            .filter(|n| n.up)
            .flat_map(|n| n.devices.iter().filter(usable).map(|g| g.count))
            .max()?;
        (largest < tp).then(|| {
            format!(
                "the job asks for {tp} devices on one node, but the largest registered node \
                 has {largest} of the flavors queue {queue} may use"
            )
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn quota(flavor: &str, nominal: u32) -> pb::FlavorQuota {
        pb::FlavorQuota {
            flavor: flavor.into(),
            nominal,
            borrowing_limit: None,
            lending_limit: None,
        }
    }

    fn queue(name: &str, cohort: &str, quotas: Vec<pb::FlavorQuota>) -> pb::Queue {
        pb::Queue {
            name: name.into(),
            cohort: cohort.into(),
            weight: 0,
            quotas,
            budget: None,
        }
    }

    #[test]
    fn defaults_are_filled_and_quotas_sorted() {
        let q = validate_queue(queue(
            "research",
            "",
            vec![quota("cpu", 2), quota("amd-mi300x", 8)],
        ))
        .expect("valid");
        assert_eq!(q.weight, 1);
        let flavors: Vec<&str> = q.quotas.iter().map(|q| q.flavor.as_str()).collect();
        assert_eq!(flavors, ["amd-mi300x", "cpu"]);
    }

    #[test]
    fn bad_queues_are_refused_with_the_reason() {
        let borrow_alone = pb::FlavorQuota {
            borrowing_limit: Some(2),
            ..quota("cpu", 1)
        };
        let lend_too_much = pb::FlavorQuota {
            lending_limit: Some(5),
            ..quota("cpu", 4)
        };
        let cases: Vec<(pb::Queue, &str)> = vec![
            (queue("Bad Name", "", vec![]), "queue name"),
            (queue("a", "Cohort!", vec![]), "cohort"),
            (
                queue("a", "", vec![quota("cpu", 1), quota("cpu", 2)]),
                "twice",
            ),
            (queue("a", "", vec![quota("NVIDIA", 1)]), "flavor"),
            (queue("a", "", vec![borrow_alone]), "no cohort"),
            (queue("a", "c", vec![lend_too_much]), "lends up to 5"),
            (
                queue("a", "", vec![quota("cpu", MAX_DEVICES + 1)]),
                "more than",
            ),
            (
                pb::Queue {
                    weight: MAX_WEIGHT + 1,
                    ..queue("a", "", vec![])
                },
                "weight",
            ),
            (
                pb::Queue {
                    budget: Some(pb::Budget {
                        device_hours: f64::NAN,
                        period_seconds: 3600,
                    }),
                    ..queue("a", "", vec![])
                },
                "device-hours",
            ),
            (
                pb::Queue {
                    budget: Some(pb::Budget {
                        device_hours: 10.0,
                        period_seconds: 1,
                    }),
                    ..queue("a", "", vec![])
                },
                "period of 1 s",
            ),
        ];
        for (q, expected) in cases {
            let err = validate_queue(q.clone()).expect_err("refused").to_string();
            assert!(err.contains(expected), "{q:?}: {err}");
        }
    }
}
