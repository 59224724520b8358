//! Free devices for one cycle, indexed for best-fit gang placement: a slot
//! is one node's devices of one flavor, and each flavor keeps its open
//! slots ordered by free devices, so "the smallest slot that holds tp" is
//! one ordered lookup however many nodes there are.

use std::collections::BTreeSet;

pub struct Slot {
    pub node: usize,
    pub flavor: usize,
    /// Every device of the slot.
    pub size: u32,
    /// Memory a job may use on each of its devices (`u64::MAX`: unknown).
    pub memory: u64,
    /// Free device indexes, ascending.
    pub free: Vec<u32>,
    /// Devices held by work told to checkpoint and stop.
    pub releasing: u32,
    pub cordoned: bool,
    /// Held this cycle (for preemptors or a starving job): closed to placement.
    pub held: bool,
    /// Devices promised this cycle to jobs that preempt work here: more
    /// preemptors may share the slot while its free and releasing devices
    /// cover every promise.
    pub promised: u32,
}

pub struct SlotIndex {
    pub slots: Vec<Slot>,
    /// Per flavor: (free devices, slot) of slots open for placement.
    open: Vec<BTreeSet<(u32, usize)>>,
    /// Per flavor: free devices on open slots.
    free_total: Vec<u64>,
}

impl SlotIndex {
    pub fn new(slots: Vec<Slot>, flavors: usize) -> Self {
        let mut open = vec![Vec::new(); flavors];
        let mut free_total = vec![0; flavors];
        for (i, slot) in slots.iter().enumerate() {
            if !slot.cordoned {
                open[slot.flavor].push((slot.free.len() as u32, i));
                free_total[slot.flavor] += slot.free.len() as u64;
            }
        }
        SlotIndex {
            slots,
            // Built in bulk from a sorted list: far cheaper than one
            // insert per slot, and every cycle builds it.
            open: open.into_iter().map(BTreeSet::from_iter).collect(),
            free_total,
        }
    }

    /// The open slot of `flavor` with the fewest free devices that still
    /// holds `tp`, among those `usable` accepts.
    pub fn best_fit(
        &self,
        flavor: usize,
        tp: u32,
        usable: impl Fn(&Slot) -> bool,
    ) -> Option<usize> {
        // Most waiting jobs fit nowhere: the largest slot says so at once.
        if self.open[flavor].last().is_none_or(|&(free, _)| free < tp) {
            return None;
        }
        self.open[flavor]
            .range((tp, 0)..)
            .map(|&(_, slot)| slot)
            .find(|&slot| usable(&self.slots[slot]))
    }

    /// Takes `tp` free devices of an open slot (the lowest indexes).
    pub fn take(&mut self, slot: usize, tp: u32) -> Vec<u32> {
        self.close(slot);
        let s = &mut self.slots[slot];
        let taken: Vec<u32> = s.free.drain(..tp as usize).collect();
        s.held = false;
        self.reopen(slot);
        taken
    }

    /// Holds a slot for one job: nothing else is placed on it this cycle.
    pub fn hold(&mut self, slot: usize) {
        self.close(slot);
    }

    fn close(&mut self, slot: usize) {
        let s = &mut self.slots[slot];
        if !s.cordoned && !s.held {
            self.open[s.flavor].remove(&(s.free.len() as u32, slot));
            self.free_total[s.flavor] -= s.free.len() as u64;
        }
        s.held = true;
    }

    fn reopen(&mut self, slot: usize) {
        let s = &self.slots[slot];
        if !s.cordoned && !s.held {
            self.open[s.flavor].insert((s.free.len() as u32, slot));
            self.free_total[s.flavor] += s.free.len() as u64;
        }
    }

    /// Room for one more flavor (the board learns flavors as it goes).
    pub fn add_flavor(&mut self) {
        self.open.push(BTreeSet::new());
        self.free_total.push(0);
    }

    /// Devices a job held come back to their slot.
    pub fn give_back(&mut self, slot: usize, devices: &[u32]) {
        let was_held = self.slots[slot].held;
        self.close(slot);
        let s = &mut self.slots[slot];
        s.free.extend_from_slice(devices);
        s.free.sort_unstable();
        s.free.dedup();
        s.held = was_held;
        self.reopen(slot);
    }

    /// A slot's node is cordoned (or down) or back.
    pub fn set_cordoned(&mut self, slot: usize, cordoned: bool) {
        let s = &self.slots[slot];
        if s.cordoned == cordoned {
            return;
        }
        if !s.cordoned && !s.held {
            self.open[s.flavor].remove(&(s.free.len() as u32, slot));
            self.free_total[s.flavor] -= s.free.len() as u64;
        }
        self.slots[slot].cordoned = cordoned;
        self.reopen(slot);
    }

    /// Ends a hold of one cycle: the slot is open again, promising nothing.
    pub fn unhold(&mut self, slot: usize) {
        let s = &mut self.slots[slot];
        s.promised = 0;
        if s.held {
            s.held = false;
            self.reopen(slot);
        }
    }

    pub fn free_total(&self, flavor: usize) -> u64 {
        self.free_total[flavor]
    }

    /// The open slot with the most free devices among those `usable` accepts.
    pub fn emptiest(&self, flavor: usize, usable: impl Fn(&Slot) -> bool) -> Option<usize> {
        self.open[flavor]
            .iter()
            .rev()
            .map(|&(_, slot)| slot)
            .find(|&slot| usable(&self.slots[slot]))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn slot(node: usize, free: &[u32], size: u32) -> Slot {
        Slot {
            node,
            flavor: 0,
            size,
            memory: u64::MAX,
            free: free.to_vec(),
            releasing: 0,
            cordoned: false,
            held: false,
            promised: 0,
        }
    }

    #[test]
    fn best_fit_picks_the_smallest_slot_that_holds_the_gang() {
        let mut index = SlotIndex::new(
            vec![
                slot(0, &[0, 1, 2, 3], 8),
                slot(1, &[5, 6], 8),
                slot(2, &[0], 8),
            ],
            1,
        );
        assert_eq!(index.best_fit(0, 2, |_| true), Some(1));
        assert_eq!(index.best_fit(0, 3, |_| true), Some(0));
        assert_eq!(index.best_fit(0, 5, |_| true), None);
        assert_eq!(index.best_fit(0, 2, |s| s.node != 1), Some(0));
        assert_eq!(index.take(0, 3), vec![0, 1, 2]);
        assert_eq!(index.free_total(0), 4);
        assert_eq!(
            index.best_fit(0, 1, |_| true),
            Some(0),
            "node 0 has 1 free now"
        );
        index.hold(1);
        assert_eq!(index.best_fit(0, 2, |_| true), None);
        assert_eq!(index.free_total(0), 2);
        assert_eq!(
            index.emptiest(0, |_| true),
            Some(2),
            "1 free each: the later slot"
        );
    }

    #[test]
    fn cordoned_slots_take_nothing() {
        let mut cordoned = slot(0, &[0, 1], 2);
        cordoned.cordoned = true;
        let index = SlotIndex::new(vec![cordoned], 1);
        assert_eq!(index.best_fit(0, 1, |_| true), None);
        assert_eq!(index.free_total(0), 0);
    }
}
