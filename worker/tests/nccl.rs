//! The NCCL backend on real GPUs: `cargo test -p genfleet-worker --features
//! nccl --test nccl` on a node with NVIDIA GPUs (never in CI, which has
//! none). Fails, rather than passing vacuously, where no GPU is visible.

#![cfg(feature = "nccl")]

mod common;

use std::sync::Arc;

use candle_core::{Device, Tensor};
use common::{final_latent, flat};
use genfleet_worker::model::Pipeline;
use genfleet_worker::parallel::nccl::{node_group, NcclGroup};
use genfleet_worker::parallel::{Communicator, Solo};

fn gpus() -> usize {
    let n = NcclGroup::device_count();
    assert!(n > 0, "these tests need an NVIDIA GPU and its driver");
    n
}

#[test]
fn every_rank_gets_the_sum_over_the_gpus() {
    let n = gpus();
    let group = node_group(n).expect("NCCL group");
    let sums: Vec<Vec<f32>> = std::thread::scope(|scope| {
        let ranks: Vec<_> = group
            .into_iter()
            .map(|comm| {
                scope.spawn(move || {
                    let r = comm.rank() as f32;
                    let t = Tensor::new(&[r, 10.0 * r, 1.0], &Device::Cpu).expect("t");
                    comm.all_reduce_sum(&t).expect("first all-reduce");
                    flat(&comm.all_reduce_sum(&t).expect("second all-reduce"))
                })
            })
            .collect();
        ranks.into_iter().map(|h| h.join().expect("rank")).collect()
    });
    let ranks: f32 = (0..n).map(|r| r as f32).sum();
    for sum in sums {
        assert_eq!(sum, vec![ranks, 10.0 * ranks, n as f32]);
    }
}

fn sample(comm: Arc<dyn Communicator>) -> Vec<f32> {
    final_latent(&Pipeline::seeded_parallel("tiny", 5, &Device::Cpu, comm).expect("model"))
}

#[test]
fn the_dit_split_over_the_gpus_samples_the_latent_of_one_rank() {
    let n = gpus();
    let one = sample(Arc::new(Solo));
    let group = node_group(n).expect("NCCL group");
    let latents: Vec<Vec<f32>> = std::thread::scope(|scope| {
        let ranks: Vec<_> = group
            .into_iter()
            .map(|comm| scope.spawn(move || sample(comm)))
            .collect();
        ranks.into_iter().map(|h| h.join().expect("rank")).collect()
    });
    let norm = one.iter().map(|x| x * x).sum::<f32>().sqrt();
    for latent in &latents {
        let diff = one
            .iter()
            .zip(latent)
            .map(|(a, b)| (a - b) * (a - b))
            .sum::<f32>()
            .sqrt();
        eprintln!("{n} GPU rank(s): relative difference {:e}", diff / norm);
        assert!(diff / norm <= 1e-4, "relative difference {}", diff / norm);
        if n == 1 {
            // A sum over one rank is that rank's values: the same bits.
            assert_eq!(latent, &one);
        }
    }
}
