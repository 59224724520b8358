//! Tensor parallelism's one collective: an all-reduce (sum) across the
//! ranks that share a model, after Megatron-LM (Shoeybi et al., 2019): each
//! rank holds a slice of every attention and feed-forward layer, and the
//! partial outputs of the row-parallel layers are summed.
//!
//! [`ThreadGroup`] is the CPU backend (one thread per rank, a shared slot
//! per rank); it carries every test. A GPU backend (NCCL) would implement
//! the same trait behind the `cuda` feature.

use std::sync::{Arc, Barrier, Mutex};

use candle_core::{Result, Tensor};

/// The ranks of one tensor-parallel group.
pub trait Communicator: Send + Sync {
    fn rank(&self) -> usize;
    fn size(&self) -> usize;
    /// The element-wise sum of `t` over all ranks, on every rank. Every rank
    /// must call it, in the same order, with tensors of one shape.
    fn all_reduce_sum(&self, t: &Tensor) -> Result<Tensor>;
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
}

struct Shared {
    size: usize,
    slots: Mutex<Vec<Vec<f32>>>,
    barrier: Barrier,
}

impl ThreadGroup {
    /// `size` communicators, one per rank (hand one to each thread).
    pub fn new(size: usize) -> Vec<ThreadGroup> {
        let shared = Arc::new(Shared {
            size,
            slots: Mutex::new(vec![Vec::new(); size]),
            barrier: Barrier::new(size),
        });
        (0..size)
            .map(|rank| ThreadGroup {
                rank,
                shared: shared.clone(),
            })
            .collect()
    }
}

impl Communicator for ThreadGroup {
    fn rank(&self) -> usize {
        self.rank
    }

    fn size(&self) -> usize {
        self.shared.size
    }

    fn all_reduce_sum(&self, t: &Tensor) -> Result<Tensor> {
        let lock = || self.shared.slots.lock().unwrap_or_else(|e| e.into_inner());
        lock()[self.rank] = t.flatten_all()?.to_vec1::<f32>()?;
        self.shared.barrier.wait();
        // Summed in rank order on every rank: all get the same bits.
        let sum = {
            let slots = lock();
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
        self.shared.barrier.wait();
        Tensor::from_vec(sum, t.shape(), t.device())
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
}
