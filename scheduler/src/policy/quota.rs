//! Quota accounting for one cycle: what each queue uses of each flavor,
//! what it may use, and what its cohort has left to lend.
//!
//! For a queue q and flavor f with nominal N, lendable L (<= N) and
//! borrowing limit B: q may hold at most N + B devices of f (just N outside
//! a cohort). N - L is reserved to q. The rest of everyone's nominal quota in
//! the cohort forms a pool; q's use beyond its reserve, max(0, u - (N - L)),
//! comes out of that pool, and the pool's use may not exceed its size.

use rustc_hash::FxHashMap as HashMap;

use super::types::{FlavorQuota, QueueConfig};

/// The outcome of asking for devices.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QuotaCheck {
    Fits,
    /// Within the queue's nominal quota, but the cohort lent that quota out:
    /// `deficit` devices must come back from borrowers.
    NeedsReclaim {
        deficit: u32,
    },
    /// Beyond nominal plus what the queue may borrow, or beyond what the
    /// cohort has unused.
    Over,
}

struct QueueBook {
    cohort: Option<usize>,
    weight: f64,
    /// Per flavor id.
    quota: Vec<FlavorQuota>,
    /// Flavors the queue's definition names (even with a zero quota).
    listed: Vec<bool>,
    usage: Vec<u32>,
}

pub struct QuotaBook {
    queue_ids: HashMap<String, usize>,
    queues: Vec<QueueBook>,
    /// Per cohort, per flavor: (pool size, pool used).
    pools: Vec<Vec<(u32, u32)>>,
    /// Devices per flavor in the cluster (for dominant shares).
    capacity: Vec<u32>,
}

impl QuotaBook {
    /// `flavor_id` maps flavor names to the ids used by the other methods
    /// (ids below `capacity.len()`).
    pub fn new(
        queues: &[QueueConfig],
        flavor_id: impl Fn(&str) -> Option<usize>,
        capacity: Vec<u32>,
    ) -> Self {
        let flavors = capacity.len();
        let mut cohort_ids: HashMap<&str, usize> = HashMap::default();
        let mut book = QuotaBook {
            queue_ids: HashMap::default(),
            queues: Vec::new(),
            pools: Vec::new(),
            capacity,
        };
        for config in queues {
            let cohort = config.cohort.as_deref().map(|name| {
                let next = cohort_ids.len();
                *cohort_ids.entry(name).or_insert(next)
            });
            let mut quota = vec![FlavorQuota::default(); flavors];
            let mut listed = vec![false; flavors];
            for (flavor, q) in &config.quotas {
                if let Some(f) = flavor_id(flavor) {
                    quota[f] = *q;
                    listed[f] = true;
                }
            }
            book.queue_ids
                .insert(config.name.clone(), book.queues.len());
            book.queues.push(QueueBook {
                cohort,
                weight: f64::from(config.weight.max(1)),
                quota,
                listed,
                usage: vec![0; flavors],
            });
        }
        book.pools = vec![vec![(0, 0); flavors]; cohort_ids.len()];
        for q in &book.queues {
            if let Some(c) = q.cohort {
                for (f, quota) in q.quota.iter().enumerate() {
                    book.pools[c][f].0 += quota.lendable();
                }
            }
        }
        book
    }

    pub fn queue_id(&self, name: &str) -> Option<usize> {
        self.queue_ids.get(name).copied()
    }

    pub fn queue_count(&self) -> usize {
        self.queues.len()
    }

    /// Whether the queue's definition names the flavor: only those
    /// flavors are considered for its jobs (a zero quota then reads as
    /// "over quota", not as "no such flavor").
    pub fn has_quota(&self, q: usize, f: usize) -> bool {
        self.queues[q].listed[f]
    }

    pub fn same_cohort(&self, a: usize, b: usize) -> bool {
        self.queues[a].cohort.is_some() && self.queues[a].cohort == self.queues[b].cohort
    }

    pub fn usage(&self, q: usize, f: usize) -> u32 {
        self.queues[q].usage[f]
    }

    pub fn nominal(&self, q: usize, f: usize) -> u32 {
        self.queues[q].quota[f].nominal
    }

    /// Devices the queue may hold at most.
    pub fn limit(&self, q: usize, f: usize) -> u32 {
        let queue = &self.queues[q];
        let quota = &queue.quota[f];
        let borrow = match queue.cohort {
            None => 0,
            Some(_) => quota.borrowing_limit.unwrap_or(u32::MAX),
        };
        quota.nominal.saturating_add(borrow)
    }

    fn pool_use(&self, q: usize, f: usize, usage: u32) -> u32 {
        let quota = &self.queues[q].quota[f];
        usage.saturating_sub(quota.nominal - quota.lendable())
    }

    pub fn check(&self, q: usize, f: usize, devices: u32) -> QuotaCheck {
        let usage = self.queues[q].usage[f];
        let wanted = usage.saturating_add(devices);
        if wanted > self.limit(q, f) {
            return QuotaCheck::Over;
        }
        let Some(c) = self.queues[q].cohort else {
            return QuotaCheck::Fits;
        };
        let (size, used) = self.pools[c][f];
        let delta = self.pool_use(q, f, wanted) - self.pool_use(q, f, usage);
        let after = used + delta;
        if after <= size {
            QuotaCheck::Fits
        } else if wanted <= self.nominal(q, f) {
            QuotaCheck::NeedsReclaim {
                deficit: after - size,
            }
        } else {
            QuotaCheck::Over
        }
    }

    pub fn add(&mut self, q: usize, f: usize, devices: u32) {
        let before = self.queues[q].usage[f];
        let after = before.saturating_add(devices);
        self.set_usage(q, f, before, after);
    }

    pub fn remove(&mut self, q: usize, f: usize, devices: u32) {
        let before = self.queues[q].usage[f];
        let after = before.saturating_sub(devices);
        self.set_usage(q, f, before, after);
    }

    fn set_usage(&mut self, q: usize, f: usize, before: u32, after: u32) {
        if let Some(c) = self.queues[q].cohort {
            let (old, new) = (self.pool_use(q, f, before), self.pool_use(q, f, after));
            let used = &mut self.pools[c][f].1;
            *used = (*used + new).saturating_sub(old);
        }
        self.queues[q].usage[f] = after;
    }

    /// Devices of the cohort's pool a queue's release would give back.
    pub fn pool_freed(&self, q: usize, f: usize, devices: u32) -> u32 {
        let usage = self.queues[q].usage[f];
        self.pool_use(q, f, usage) - self.pool_use(q, f, usage.saturating_sub(devices))
    }

    /// Weighted dominant share: the largest fraction of any flavor's
    /// devices the queue holds, divided by its weight.
    pub fn dominant_share(&self, q: usize) -> f64 {
        let queue = &self.queues[q];
        let mut share: f64 = 0.0;
        for (f, &used) in queue.usage.iter().enumerate() {
            if used > 0 {
                share = share.max(f64::from(used) / f64::from(self.capacity[f].max(1)));
            }
        }
        share / queue.weight
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    fn queue(name: &str, cohort: Option<&str>, quota: FlavorQuota) -> QueueConfig {
        QueueConfig {
            name: name.into(),
            cohort: cohort.map(str::to_string),
            weight: 1,
            quotas: BTreeMap::from([("gpu".to_string(), quota)]),
            budget: None,
        }
    }

    fn book(queues: &[QueueConfig]) -> QuotaBook {
        QuotaBook::new(queues, |name| (name == "gpu").then_some(0), vec![16])
    }

    fn nominal(n: u32) -> FlavorQuota {
        FlavorQuota {
            nominal: n,
            ..FlavorQuota::default()
        }
    }

    #[test]
    fn a_queue_alone_gets_exactly_its_nominal_quota() {
        let mut b = book(&[queue("a", None, nominal(4))]);
        assert_eq!(b.check(0, 0, 4), QuotaCheck::Fits);
        b.add(0, 0, 4);
        assert_eq!(b.check(0, 0, 1), QuotaCheck::Over);
    }

    #[test]
    fn unused_quota_is_lent_within_the_cohort_and_reclaimed() {
        let mut b = book(&[
            queue("a", Some("c"), nominal(4)),
            queue("b", Some("c"), nominal(4)),
        ]);
        // b borrows all of a's quota.
        assert_eq!(b.check(1, 0, 8), QuotaCheck::Fits);
        b.add(1, 0, 8);
        assert_eq!(b.check(1, 0, 1), QuotaCheck::Over);
        // a wants its own back: within nominal, so it may reclaim.
        assert_eq!(b.check(0, 0, 3), QuotaCheck::NeedsReclaim { deficit: 3 });
        assert_eq!(b.pool_freed(1, 0, 2), 2);
        b.remove(1, 0, 3);
        assert_eq!(b.check(0, 0, 3), QuotaCheck::Fits);
    }

    #[test]
    fn borrowing_and_lending_limits_hold() {
        let mut b = book(&[
            queue(
                "a",
                Some("c"),
                FlavorQuota {
                    nominal: 4,
                    borrowing_limit: None,
                    lending_limit: Some(1),
                },
            ),
            queue(
                "b",
                Some("c"),
                FlavorQuota {
                    nominal: 4,
                    borrowing_limit: Some(2),
                    lending_limit: None,
                },
            ),
        ]);
        // b may borrow 2, and a lends at most 1 of its 4.
        assert_eq!(b.check(1, 0, 7), QuotaCheck::Over);
        assert_eq!(b.check(1, 0, 5), QuotaCheck::Fits);
        b.add(1, 0, 5);
        assert_eq!(
            b.check(1, 0, 1),
            QuotaCheck::Over,
            "a's reserve is not lent"
        );
        // a still has its 3 reserved devices.
        assert_eq!(b.check(0, 0, 3), QuotaCheck::Fits);
        // a's fourth device is its lendable one, which b has borrowed.
        b.add(0, 0, 3);
        assert_eq!(b.check(0, 0, 1), QuotaCheck::NeedsReclaim { deficit: 1 });
    }

    #[test]
    fn dominant_share_is_weighted() {
        let mut queues = vec![queue("a", None, nominal(8)), queue("b", None, nominal(8))];
        queues[1].weight = 2;
        let mut b = book(&queues);
        b.add(0, 0, 4);
        b.add(1, 0, 4);
        assert!((b.dominant_share(0) - 0.25).abs() < 1e-12);
        assert!((b.dominant_share(1) - 0.125).abs() < 1e-12);
    }
}
