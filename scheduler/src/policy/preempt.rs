//! Choosing work to preempt for a pending job that cannot start.
//!
//! - An interactive job may preempt batch work of its own queue, and
//!   batch work another queue runs beyond its nominal quota.
//! - A job of any class whose queue is within its nominal quota (with the
//!   job) may reclaim: preempt work of any class that another queue of its
//!   cohort runs beyond that queue's nominal quota. Nominal quota is a
//!   guarantee, as Kueue's `reclaimWithinCohort: Any` and KAI's and
//!   Volcano's reclaim make it; preemption by checkpoint loses no work, so
//!   reclaiming costs the checkpoint and the move. Batch preempts for
//!   nothing else.
//! - Work younger than the minimum runtime, or already stopping, is never
//!   chosen; a victim from another queue never takes that queue below its
//!   nominal quota (only borrowed capacity is taken back).

use rustc_hash::FxHashMap as HashMap;

use super::board::{RunKey, Running};
use super::cycle::{Cycle, Want};
use super::quota::QuotaCheck;
use super::types::{PendingReason, PreemptReason, Preemption, Qos};

/// A possible victim: running job key, why, and the queue whose
/// borrowed capacity it must come out of (None: the preemptor's own queue).
type Victim = (RunKey, PreemptReason, Option<usize>);

impl Cycle<'_, '_> {
    /// A running job and its queue's id in this cycle's quota book.
    fn running_job(&self, r: RunKey) -> Option<(&Running, Option<usize>)> {
        let info = self.board.running(r)?;
        Some((info, self.quota_of.get(info.queue).copied().flatten()))
    }

    fn victim(&self, job: &Want, r: RunKey, info: &Running) -> Option<Victim> {
        let q = job.queue();
        if info.preempting
            || self.now_ms.saturating_sub(info.started_at_ms) < self.config.min_runtime_ms
        {
            return None;
        }
        let over_batch = job.qos == Qos::Interactive && info.qos == Qos::Batch;
        let vq = self.quota_of.get(info.queue).copied().flatten()?;
        if vq == q {
            return over_batch.then_some((r, PreemptReason::InteractiveOverBatch, None));
        }
        let f = info.flavor;
        if self.quota.usage(vq, f) <= self.quota.nominal(vq, f) {
            return None; // within its guarantee
        }
        if over_batch {
            return Some((r, PreemptReason::InteractiveOverBatch, Some(vq)));
        }
        let within_nominal = self.quota.usage(q, f) + job.tp <= self.quota.nominal(q, f);
        let reclaim = within_nominal && self.quota.same_cohort(vq, q);
        reclaim.then_some((r, PreemptReason::ReclaimQuota, Some(vq)))
    }

    /// Chooses work to preempt so `job` fits on one slot of `f` and in its
    /// quota; commits the choice and returns true, or changes nothing.
    pub(super) fn try_preempt(&mut self, job: &Want, f: usize, model: usize) -> bool {
        let q = job.queue();
        self.preempt_attempts += 1;
        let mut by_slot: HashMap<usize, Vec<Victim>> = HashMap::default();
        for &r in &self.board.running_by_flavor[f] {
            let Some(info) = self.board.running(r) else {
                continue;
            };
            if let (Some(slot), Some(v)) = (info.slot, self.victim(job, r, info)) {
                by_slot.entry(slot).or_default().push(v);
            }
        }
        let board = &*self.board;
        // Every key below is of a job running now.
        let run = |r: RunKey| board.running(r);
        // Cheapest first: the worst class lost, then how many jobs, how many
        // devices, how long they had run (work since their last step is
        // lost); the slot breaks ties.
        type Cost = (Qos, usize, u32, i64, usize);
        let mut best: Option<(Cost, Vec<Victim>)> = None;
        for (slot, mut victims) in by_slot {
            let s = &self.board.slots.slots[slot];
            // A slot held for a starving job is its alone; one held for
            // preemptors takes more while its devices cover every promise.
            let starving_hold = s.held && s.promised == 0;
            if starving_hold || s.cordoned || !self.usable(s, job, model) {
                continue;
            }
            let unpromised = (s.free.len() as u32 + s.releasing).saturating_sub(s.promised);
            let need = job.tp.saturating_sub(unpromised);
            if need == 0 && s.promised == 0 {
                continue; // not for preemption: placement finds it
            }
            // Lowest class first, then the youngest (least to carry over).
            victims.sort_by(|a, b| match (run(a.0), run(b.0)) {
                (Some(va), Some(vb)) => va
                    .qos
                    .cmp(&vb.qos)
                    .then(vb.started_at_ms.cmp(&va.started_at_ms))
                    .then(board.run_id(a.0).cmp(&board.run_id(b.0))),
                _ => std::cmp::Ordering::Equal,
            });
            let mut freed = 0;
            let mut taken: HashMap<usize, u32> = HashMap::default();
            let mut chosen = Vec::new();
            for v in victims {
                if freed >= need {
                    break;
                }
                let devices = run(v.0).map_or(0, |info| info.devices);
                if let Some(vq) = v.2 {
                    let already = taken.get(&vq).copied().unwrap_or(0);
                    let left = self.quota.usage(vq, f).saturating_sub(already + devices);
                    if left < self.quota.nominal(vq, f) {
                        continue; // would cut into that queue's guarantee
                    }
                    taken.insert(vq, already + devices);
                }
                freed += devices;
                chosen.push(v);
            }
            if freed < need {
                continue;
            }
            let worst = chosen
                .iter()
                .filter_map(|v| run(v.0))
                .map(|info| info.qos)
                .max()
                .unwrap_or(Qos::Batch);
            let ran_ms: i64 = chosen
                .iter()
                .filter_map(|v| run(v.0))
                .map(|info| self.now_ms.saturating_sub(info.started_at_ms))
                .sum();
            let cost = (worst, chosen.len(), freed, ran_ms, slot);
            if best.as_ref().is_none_or(|(c, _)| cost < *c) {
                best = Some((cost, chosen));
            }
        }
        let Some(((.., slot), chosen)) = best else {
            return false;
        };
        for v in &chosen {
            self.move_quota(v.0, false);
        }
        if self.quota.check(q, f, job.tp) != QuotaCheck::Fits {
            for v in &chosen {
                self.move_quota(v.0, true);
            }
            return false;
        }
        for (r, reason, _) in chosen {
            // The victim's devices are on their way back to `slot`, its own.
            self.board.mark_preempting(r);
            let job_id = self
                .board
                .run_id(r)
                .map_or_else(String::new, str::to_string);
            self.decision.preemptions.push(Preemption {
                job_id,
                reason,
                for_job: self.pending[job.index()].id.clone(),
            });
        }
        self.board.slots.slots[slot].promised += job.tp;
        self.hold(slot);
        self.quota.add(q, f, job.tp);
        self.preemptors += 1;
        let reason = PendingReason::WaitingForPreemption {
            flavor: self.board.flavors.names[f].clone(),
        };
        self.wait(job, reason, Some(f));
        true
    }

    /// Takes a running job's devices out of its queue's usage, or puts
    /// them back.
    fn move_quota(&mut self, r: RunKey, back: bool) {
        let Some((info, queue)) = self.running_job(r) else {
            return;
        };
        if let Some(vq) = queue {
            let (f, devices) = (info.flavor, info.devices);
            if back {
                self.quota.add(vq, f, devices);
            } else {
                self.quota.remove(vq, f, devices);
            }
        }
    }
}
