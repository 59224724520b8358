//! Tensor parallelism's one collective: an all-reduce (sum) across the
//! ranks that share a model, after Megatron-LM (Shoeybi et al., 2019): each
//! rank holds a slice of every attention and feed-forward layer, and the
//! partial outputs of the row-parallel layers are summed.
//!
//! [`ThreadGroup`] is the CPU backend (one thread per rank, a shared slot
//! per rank); it carries every test. [`nccl::NcclGroup`] is the NVIDIA
//! backend (features `nccl` or `cuda`).
//!
//! A rank that leaves the group (its communicator dropped: it returned an
//! error or panicked) breaks the group: every rank waiting in an all-reduce,
//! now or later, gets an error naming it instead of waiting forever.

#[cfg(any(feature = "nccl", feature = "cuda"))]
pub mod nccl;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};

use candle_core::{Result, Tensor};

/// What a rank's all-reduce says when another rank has left the group: an
/// echo of that rank's failure, not a cause of its own.
pub const RANK_LEFT: &str = "left the tensor-parallel group mid-step";

/// The ranks of one tensor-parallel group.
pub trait Communicator: Send + Sync {
    fn rank(&self) -> usize;
    fn size(&self) -> usize;
    /// The element-wise sum of `t` over all ranks, on every rank. Every rank
    /// must call it, in the same order, with tensors of one shape.
    fn all_reduce_sum(&self, t: &Tensor) -> Result<Tensor>;
    /// This rank failed: make every rank's all-reduce, pending or later,
    /// fail instead of waiting for it. Dropping a rank's communicator does
    /// the same for the thread backend; NCCL needs its communicators
    /// aborted.
    fn abandon(&self) {}
    /// Whether an all-reduce of this rank failed because another rank left
    /// the group: its own failure is then an echo of that rank's, not a cause.
    fn saw_rank_leave(&self) -> bool {
        false
    }
}

/// A group of one: no parallelism.
pub struct Solo;

impl Communicator for Solo {
    fn rank(&self) -> usize {
        0
    }

    fn size(&self) -> usize {
        1
    }

    fn all_reduce_sum(&self, t: &Tensor) -> Result<Tensor> {
        Ok(t.clone())
    }
}

/// Ranks as threads of one process (the CPU backend).
pub struct ThreadGroup {
    rank: usize,
    shared: Arc<Shared>,
    /// An all-reduce of this rank failed because another rank left.
    saw_leave: AtomicBool,
}

struct Shared {
    size: usize,
    state: Mutex<Round>,
    arrived: Condvar,
}

/// The all-reduce in progress: each rank's contribution, how many ranks
/// reached the current barrier, which barrier it is, and who left.
struct Round {
    slots: Vec<Vec<f32>>,
    waiting: usize,
    generation: u64,
    left: Option<usize>,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Round> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Waits until every rank has arrived (holding `round`'s lock on return),
    /// or fails once a rank has left the group.
    fn barrier<'a>(&'a self, mut round: MutexGuard<'a, Round>) -> Result<MutexGuard<'a, Round>> {
        let generation = round.generation;
        round.waiting += 1;
        if round.waiting == self.size {
            round.waiting = 0;
            round.generation += 1;
            self.arrived.notify_all();
            return Ok(round);
        }
        loop {
            if round.generation != generation {
                return Ok(round);
            }
            if let Some(rank) = round.left {
                return Err(candle_core::Error::Msg(format!("rank {rank} {RANK_LEFT}")));
            }
            round = self.arrived.wait(round).unwrap_or_else(|e| e.into_inner());
        }
    }
}

impl ThreadGroup {
    /// `size` communicators, one per rank (hand one to each thread).
    pub fn new(size: usize) -> Vec<ThreadGroup> {
        let shared = Arc::new(Shared {
            size,
            state: Mutex::new(Round {
                slots: vec![Vec::new(); size],
                waiting: 0,
                generation: 0,
                left: None,
            }),
            arrived: Condvar::new(),
        });
        (0..size)
            .map(|rank| ThreadGroup {
                rank,
                shared: shared.clone(),
                saw_leave: AtomicBool::new(false),
            })
            .collect()
    }
}

impl ThreadGroup {
    /// [`Shared::barrier`], noting when it failed because a rank left.
    fn barrier<'a>(&'a self, round: MutexGuard<'a, Round>) -> Result<MutexGuard<'a, Round>> {
        let waited = self.shared.barrier(round);
        if waited.is_err() {
            self.saw_leave.store(true, Ordering::Relaxed);
        }
        waited
    }
}

impl Communicator for ThreadGroup {
    fn saw_rank_leave(&self) -> bool {
        self.saw_leave.load(Ordering::Relaxed)
    }

    fn rank(&self) -> usize {
        self.rank
    }

    fn size(&self) -> usize {
        self.shared.size
    }

    fn all_reduce_sum(&self, t: &Tensor) -> Result<Tensor> {
        // Summed in f32 on the host whatever the tensor's dtype and device
        // (a GPU's ranks can use this backend too, staged through the host).
        let mine = t
            .flatten_all()?
            .to_dtype(candle_core::DType::F32)?
            .to_vec1::<f32>()?;
        let mut round = self.shared.lock();
        round.slots[self.rank] = mine;
        let round = self.barrier(round)?;
        // Summed in rank order on every rank: all get the same bits.
        let sum = {
            let slots = &round.slots;
            let mut sum = slots[0].clone();
            for slot in slots.iter().skip(1) {
                if slot.len() != sum.len() {
                    return Err(candle_core::Error::Msg(format!(
                        "all-reduce of {} elements met one of {}",
                        sum.len(),
                        slot.len()
                    )));
                }
                for (s, x) in sum.iter_mut().zip(slot) {
                    *s += x;
                }
            }
            sum
        };
        // Nobody writes the next round's slot before all have read this one.
        drop(self.barrier(round)?);
        Tensor::from_vec(sum, t.shape(), t.device())?.to_dtype(t.dtype())
    }
}

impl Drop for ThreadGroup {
    fn drop(&mut self) {
        // After a group's last all-reduce nobody waits, so this only
        // matters to ranks still inside one: they fail instead of hanging.
        let mut round = self.shared.lock();
        round.left.get_or_insert(self.rank);
        self.shared.arrived.notify_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    #[test]
    fn every_rank_gets_the_sum() {
        for size in [1, 2, 4] {
            let sums: Vec<Vec<f32>> = std::thread::scope(|scope| {
                let handles: Vec<_> = ThreadGroup::new(size)
                    .into_iter()
                    .map(|comm| {
                        scope.spawn(move || {
                            let r = comm.rank() as f32;
                            let t = Tensor::new(&[r, 10.0 * r, 1.0], &Device::Cpu)?;
                            // Twice: the slots are reused safely.
                            comm.all_reduce_sum(&t)?;
                            comm.all_reduce_sum(&t)?.to_vec1::<f32>()
                        })
                    })
                    .collect();
                handles
                    .into_iter()
                    .map(|h| h.join().expect("rank thread").expect("all-reduce"))
                    .collect()
            });
            let n = size as f32;
            let ranks: f32 = (0..size).map(|r| r as f32).sum();
            for sum in sums {
                assert_eq!(sum, vec![ranks, 10.0 * ranks, n]);
            }
        }
    }

    #[test]
    fn a_rank_that_leaves_fails_the_others_instead_of_hanging() {
        let mut group = ThreadGroup::new(3);
        let leaver = group.remove(1);
        let results: Vec<String> = std::thread::scope(|scope| {
            let waiting: Vec<_> = group
                .into_iter()
                .map(|comm| {
                    scope.spawn(move || {
                        let t = Tensor::new(&[1f32], &Device::Cpu).expect("tensor");
                        match comm.all_reduce_sum(&t) {
                            Ok(_) => "summed without rank 1".to_string(),
                            Err(e) => e.to_string(),
                        }
                    })
                })
                .collect();
            // Rank 1 fails before its all-reduce (whether the others are
            // already waiting or not, they must get an error).
            drop(leaver);
            waiting
                .into_iter()
                .map(|h| h.join().expect("rank thread"))
                .collect()
        });
        for message in results {
            assert!(
                message.contains(&format!("rank 1 {RANK_LEFT}")),
                "{message}"
            );
        }
    }
}
