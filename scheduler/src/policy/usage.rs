//! What each queue holds of each flavor: its nominal quota, the devices
//! its running gangs use, and the part beyond nominal, borrowed from its
//! cohort. Written once for the leader's metrics, the GenQueue status and
//! the planner.

use std::collections::BTreeMap;

/// One queue's devices of one flavor.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct QueueDevices {
    pub nominal: u32,
    pub used: u32,
}

impl QueueDevices {
    /// Devices in use beyond the nominal quota: borrowed from the cohort.
    pub fn borrowed(&self) -> u32 {
        self.used.saturating_sub(self.nominal)
    }
}

/// (queue, flavor) -> [`QueueDevices`], tallied from quotas and running
/// gangs.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct DeviceUsage(BTreeMap<(String, String), QueueDevices>);

impl DeviceUsage {
    /// Records `queue`'s nominal quota of `flavor`.
    pub fn quota(&mut self, queue: &str, flavor: &str, nominal: u32) {
        self.entry(queue, flavor).nominal = nominal;
    }

    /// Records a gang of `devices` of `flavor` running for `queue`.
    pub fn add(&mut self, queue: &str, flavor: &str, devices: u32) {
        let entry = self.entry(queue, flavor);
        entry.used = entry.used.saturating_add(devices);
    }

    fn entry(&mut self, queue: &str, flavor: &str) -> &mut QueueDevices {
        self.0
            .entry((queue.to_string(), flavor.to_string()))
            .or_default()
    }

    /// `queue`'s devices of `flavor` (none where it has neither quota nor
    /// gangs of it).
    pub fn get(&self, queue: &str, flavor: &str) -> QueueDevices {
        self.0
            .get(&(queue.to_string(), flavor.to_string()))
            .copied()
            .unwrap_or_default()
    }

    /// Every (queue, flavor) with a quota or a running gang.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str, QueueDevices)> {
        self.0
            .iter()
            .map(|((queue, flavor), d)| (queue.as_str(), flavor.as_str(), *d))
    }

    /// `queue`'s flavors, by name.
    pub fn of_queue<'a>(&'a self, queue: &'a str) -> impl Iterator<Item = (&'a str, QueueDevices)> {
        self.iter()
            .filter(move |(q, _, _)| *q == queue)
            .map(|(_, flavor, d)| (flavor, d))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn use_beyond_nominal_is_borrowed_and_flavors_without_quota_borrow_all() {
        let mut usage = DeviceUsage::default();
        usage.quota("a", "h100", 2);
        usage.add("a", "h100", 1);
        usage.add("a", "h100", 2);
        usage.add("a", "mi300x", 1);
        usage.quota("b", "h100", 4);
        let a: Vec<_> = usage.of_queue("a").collect();
        assert_eq!(
            a,
            [
                (
                    "h100",
                    QueueDevices {
                        nominal: 2,
                        used: 3
                    }
                ),
                (
                    "mi300x",
                    QueueDevices {
                        nominal: 0,
                        used: 1
                    }
                ),
            ]
        );
        assert_eq!(a[0].1.borrowed(), 1);
        assert_eq!(a[1].1.borrowed(), 1);
        let b: Vec<_> = usage.of_queue("b").collect();
        assert_eq!(
            b,
            [(
                "h100",
                QueueDevices {
                    nominal: 4,
                    used: 0
                }
            )]
        );
        assert_eq!(b[0].1.borrowed(), 0);
    }
}
