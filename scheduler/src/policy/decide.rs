//! The decision for one pending job, in its turn: place it, preempt for
//! it, or say why it waits and until about when.

use std::borrow::Cow;

use super::board::{RunData, Running};
use super::capacity::Slot;
use super::cycle::{Cycle, Want};
use super::quota::QuotaCheck;
use super::types::{PendingReason, PendingStatus, Placement, Qos};

impl Cycle<'_, '_> {
    pub(super) fn consider(&mut self, want: &Want) {
        let Some(model) = want.model() else {
            return self.wait(want, PendingReason::NoFlavor, None);
        };
        let candidates = self.candidates(want, model);
        if candidates.is_empty() {
            return self.wait(want, PendingReason::NoFlavor, None);
        }
        let (q, tp) = (want.queue(), want.tp);
        if let Some(budget) = self.budgets[q].filter(|b| b.device_s <= 0.0) {
            // Spoken for: the job waits for the next period.
            return self.decision.pending.push(PendingStatus {
                job: want.index(),
                reason: PendingReason::OverBudget,
                eta_s: Some(budget.resets_in_s),
            });
        }
        let mut first: Option<(PendingReason, usize)> = None;
        // Some flavor has room in the queue's nominal but not in the cohort's
        // pool: others borrow it.
        let mut needs_reclaim = false;
        // The candidate flavor with the most memory per device, while none
        // has enough for one rank.
        let mut too_small: Option<usize> = None;
        for &(f, open) in candidates.iter() {
            if want.need > self.board.largest_memory[f] {
                if too_small
                    .is_none_or(|t| self.board.largest_memory[f] > self.board.largest_memory[t])
                {
                    too_small = Some(f);
                }
                continue;
            }
            let reason = match self.quota.check(q, f, tp) {
                QuotaCheck::Fits => {
                    let usable = |s: &Slot| self.usable(s, want, model);
                    if let Some(slot) = self.board.slots.best_fit(f, tp, usable) {
                        return self.place(want, f, slot);
                    }
                    if let Some(slot) = self.releasing_slot(want, f, model) {
                        // Preempted work is on its way out for this job.
                        self.hold(slot);
                        self.quota.add(q, f, tp);
                        let flavor = self.board.flavors.names[f].clone();
                        let reason = PendingReason::WaitingForPreemption { flavor };
                        return self.wait(want, reason, Some(f));
                    }
                    self.capacity_reason(f, tp, open)
                }
                QuotaCheck::NeedsReclaim { .. } => {
                    needs_reclaim = true;
                    PendingReason::OverQuota {
                        flavor: self.board.flavors.names[f].clone(),
                    }
                }
                QuotaCheck::Over => PendingReason::OverQuota {
                    flavor: self.board.flavors.names[f].clone(),
                },
            };
            first.get_or_insert((reason, f));
        }
        // Batch preempts only to reclaim its queue's own nominal quota from
        // borrowers: it searches only when that is why it waits, so it
        // spends none of the cycle's preemption attempts otherwise.
        if (want.qos >= Qos::Standard || needs_reclaim)
            && self.preemptors < self.config.max_preemptors_per_cycle
            && self.preempt_attempts < 4 * self.config.max_preemptors_per_cycle.max(1)
        {
            for &(f, _) in candidates.iter() {
                if want.need <= self.board.largest_memory[f] && self.try_preempt(want, f, model) {
                    return;
                }
            }
        }
        let Some((reason, f)) = first else {
            if let Some(f) = too_small {
                let reason = self.memory_reason(want, f);
                self.wait(want, reason, None);
            }
            return;
        };
        self.hold_for_starving(want, f, model, &reason);
        self.wait(want, reason, Some(f));
    }

    fn place(&mut self, want: &Want, f: usize, slot: usize) {
        let device_ids = self.board.slots.take(slot, want.tp);
        self.quota.add(want.queue(), f, want.tp);
        if self.budgets[want.queue()].is_some() {
            let cost = f64::from(want.tp) * f64::from(want.steps_left) / self.rate(want, f);
            if let Some(budget) = &mut self.budgets[want.queue()] {
                budget.device_s -= cost;
            }
        }
        let node = self.board.slots.slots[slot].node;
        if self.keep {
            // Expected to run its steps at the profile's rate (the
            // planner then sets the exact end).
            let run_ms = (f64::from(want.steps_left) / self.rate(want, f).max(1e-9) * 1000.0)
                .min(1e15) as i64;
            let job = &self.pending[want.index()];
            let run = Running {
                queue: 0,
                qos: job.qos,
                flavor: f,
                slot: Some(slot),
                devices: want.tp,
                started_at_ms: self.now_ms,
                ends_at_ms: self.now_ms.saturating_add(run_ms),
                preempting: false,
            };
            let data = RunData {
                id: Cow::Owned(job.id.clone()),
                devices: Cow::Owned(device_ids.clone()),
            };
            self.starts
                .push((self.decision.placements.len(), run, data));
        }
        self.decision.placements.push(Placement {
            job: want.index(),
            node,
            flavor: self.board.flavors.names[f].clone(),
            device_ids,
            run: None,
        });
    }

    /// An open slot where free plus releasing devices hold the gang.
    fn releasing_slot(&self, want: &Want, f: usize, model: usize) -> Option<usize> {
        self.board.releasing_slots[f].iter().copied().find(|&slot| {
            let s = &self.board.slots.slots[slot];
            s.releasing > 0
                && !s.held
                && !s.cordoned
                && s.free.len() as u32 + s.releasing >= want.tp
                && self.usable(s, want, model)
        })
    }

    /// Why a job fits no device of `f`, the candidate with the most memory,
    /// and the smallest larger power-of-two gang a node of it holds at
    /// which one rank would fit.
    fn memory_reason(&self, want: &Want, f: usize) -> PendingReason {
        let largest = self.board.largest_memory[f];
        let memory = self.pending[want.index()].memory;
        let fits_at_tp = (1..=4)
            .map(|doublings| want.tp << doublings)
            .take_while(|&t| t <= self.board.largest_slot[f])
            .find(|&t| memory.per_rank(t) <= largest);
        PendingReason::Memory {
            flavor: self.board.flavors.names[f].clone(),
            tp: want.tp,
            need_bytes: want.need,
            largest_bytes: largest,
            fits_at_tp,
        }
    }

    fn capacity_reason(&self, f: usize, tp: u32, open: bool) -> PendingReason {
        let flavor = self.board.flavors.names[f].clone();
        if !open {
            return PendingReason::Cordoned { flavor };
        }
        if self.held_free[f] >= tp {
            PendingReason::Reserved { flavor }
        } else if self.board.slots.free_total(f) >= u64::from(tp) {
            PendingReason::WaitingForGang { flavor }
        } else {
            PendingReason::NoCapacity { flavor }
        }
    }

    /// A job that has waited past `starvation_ms` for quota or capacity
    /// gets them held: work drains instead of being backfilled.
    fn hold_for_starving(&mut self, want: &Want, f: usize, model: usize, reason: &PendingReason) {
        let waited = self.now_ms.saturating_sub(want.waiting_since_ms);
        // Waits that drain: its queue's own work finishing frees the quota,
        // running work finishing frees the devices.
        let drains = matches!(
            reason,
            PendingReason::NoCapacity { .. }
                | PendingReason::WaitingForGang { .. }
                | PendingReason::OverQuota { .. }
        );
        if waited < self.config.starvation_ms
            || !drains
            || self.starvation_holds >= self.config.max_preemptors_per_cycle
        {
            return;
        }
        // Its quota is booked, so later jobs of the queue do not take what
        // frees up; and the emptiest usable slot is held for it.
        self.quota.add(want.queue(), f, want.tp);
        self.starvation_holds += 1;
        let usable = |s: &Slot| s.size >= want.tp && self.usable(s, want, model);
        if let Some(slot) = self.board.slots.emptiest(f, usable) {
            self.hold(slot);
        }
    }

    /// Records why the job waits, with an ETA: the work ahead of it on the
    /// flavor (running work's remainder, then the jobs before it in this
    /// cycle's order) spread over the flavor's devices.
    pub(super) fn wait(&mut self, want: &Want, reason: PendingReason, flavor: Option<usize>) {
        let eta_s = flavor.map(|f| {
            let rate = self.rate(want, f);
            if matches!(reason, PendingReason::WaitingForPreemption { .. }) {
                return 1.0 / rate; // the victims' next step boundary, about
            }
            let eta = self.work_ahead_s[f] / f64::from(self.board.capacity[f].max(1));
            self.work_ahead_s[f] += f64::from(want.tp) * f64::from(want.steps_left) / rate;
            eta
        });
        self.decision.pending.push(PendingStatus {
            job: want.index(),
            reason,
            eta_s,
        });
    }
}
