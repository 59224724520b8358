//! Tensor parallelism on CPU: the tiny preset (seeded) and the world
//! preset (the trained weights shipped with genfleet, read from their
//! file) split over 2 and 4 ranks (threads sharing a CPU all-reduce)
//! sample the same latent as one rank, within 1e-4 relative (f32): the
//! sums only change order. Ranks that read their slices of a saved model
//! from its file sample what ranks that slice whole seeded weights do.

mod common;

use std::sync::Arc;

use candle_core::Device;
use common::final_latent;
use genfleet_worker::model::{init_model, Pipeline};
use genfleet_worker::parallel::{Communicator, ThreadGroup};

/// The tiny preset's weights from seed 5, built in memory for one rank.
fn seeded(comm: Arc<dyn Communicator>) -> Pipeline {
    Pipeline::seeded_parallel("tiny", 5, &Device::Cpu, comm).expect("model")
}

/// As [`sample`], each rank's pipeline made by `build`.
fn sample_with(
    size: usize,
    build: &(dyn Fn(Arc<dyn Communicator>) -> Pipeline + Sync),
) -> Vec<Vec<f32>> {
    std::thread::scope(|scope| {
        let ranks: Vec<_> = ThreadGroup::new(size)
            .into_iter()
            .map(|comm| {
                scope.spawn(move || {
                    let comm: Arc<dyn Communicator> = Arc::new(comm);
                    final_latent(&build(comm))
                })
            })
            .collect();
        ranks
            .into_iter()
            .map(|r| r.join().expect("rank thread"))
            .collect()
    })
}

#[test]
fn two_and_four_ranks_sample_the_latent_of_one() {
    agree_with_one_rank("tiny", &seeded);
}

#[test]
fn the_trained_model_on_two_and_four_ranks_samples_the_latent_of_one() {
    let dir = tempfile::tempdir().expect("tempdir");
    let report = init_model(dir.path(), "world", 0, false).expect("init");
    let loaded = |comm| {
        let (manifest, pipeline) =
            Pipeline::load_rank(&report.dir, &Device::Cpu, comm).expect("sharded load");
        assert!(manifest.trained, "world is the trained model");
        pipeline
    };
    agree_with_one_rank("world", &loaded);
}

/// Ranks of groups of 2 and 4 agree with each other, and with one rank
/// within 1e-4 relative.
fn agree_with_one_rank(model: &str, build: &(dyn Fn(Arc<dyn Communicator>) -> Pipeline + Sync)) {
    let one = sample_with(1, build).remove(0);
    let norm = one.iter().map(|x| x * x).sum::<f32>().sqrt();
    for size in [2, 4] {
        let ranks = sample_with(size, build);
        for (rank, latent) in ranks.iter().enumerate() {
            assert_eq!(
                latent, &ranks[0],
                "rank {rank} of {size} agrees with rank 0"
            );
        }
        let diff = one
            .iter()
            .zip(&ranks[0])
            .map(|(a, b)| (a - b) * (a - b))
            .sum::<f32>()
            .sqrt();
        let relative = diff / norm;
        eprintln!("{model} tp {size}: relative difference {relative:e}");
        assert!(
            relative <= 1e-4,
            "{model} tp {size}: relative difference {relative}"
        );
    }
}

#[test]
fn a_degree_that_does_not_divide_the_heads_is_refused() {
    let group = ThreadGroup::new(3);
    let comm: Arc<dyn Communicator> = Arc::new(group.into_iter().next().expect("rank 0"));
    let refused = Pipeline::seeded_parallel("tiny", 5, &Device::Cpu, comm);
    let message = refused.err().map(|e| e.to_string()).unwrap_or_default();
    assert!(message.contains("tensor parallel degree 3"), "{message}");
}

#[test]
fn ranks_that_read_their_slices_from_the_file_sample_what_sliced_ranks_do() {
    let dir = tempfile::tempdir().expect("tempdir");
    let report = init_model(dir.path(), "tiny", 5, false).expect("init");
    let loaded = |comm| {
        Pipeline::load_rank(&report.dir, &Device::Cpu, comm)
            .expect("sharded load")
            .1
    };
    for size in [2, 4] {
        // Same weights, same slices, same operations: the same bits.
        assert_eq!(
            sample_with(size, &loaded),
            sample_with(size, &seeded),
            "tp {size}"
        );
    }
}

#[test]
fn a_file_that_does_not_fit_its_config_is_named_when_read_sharded() {
    let dir = tempfile::tempdir().expect("tempdir");
    let report = init_model(dir.path(), "tiny", 5, false).expect("init");
    // Claim a wider model than the tensors hold.
    let config_path = report.dir.join("config.json");
    let mut manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&config_path).expect("read")).expect("json");
    manifest["config"]["ffn_dim"] = serde_json::json!(1024);
    std::fs::write(&config_path, manifest.to_string()).expect("write");
    let group = ThreadGroup::new(2);
    let comm: Arc<dyn Communicator> = Arc::new(group.into_iter().next().expect("rank 0"));
    let message = Pipeline::load_rank(&report.dir, &Device::Cpu, comm)
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(message.contains("model.safetensors"), "{message}");
    assert!(message.contains("ffn.0"), "{message}");
}
