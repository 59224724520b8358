//! A job denoised by a tensor-parallel group of ranks on this node: one
//! thread per rank, each with its slice of the DiT, in step with the others.
//! Rank 0 reports progress and decides when to stop; every rank learns the
//! decision from a one-number all-reduce after each step, so all of them
//! stop at the same step boundary (a rank that went on would wait forever
//! in the next step's all-reduce).

use std::ops::ControlFlow;
use std::path::Path;
use std::sync::Arc;

use candle_core::{Device, Tensor};

use super::checkpoint::Checkpoint;
use super::pipeline::{Denoised, GenerateRequest, Pipeline, StepProgress};
use super::ModelError;
use crate::parallel::{Communicator, ThreadGroup};

/// `resume` of the model saved in `dir`, split over `tp` ranks.
pub fn resume_parallel(
    dir: &Path,
    device: &Device,
    tp: usize,
    request: &GenerateRequest,
    checkpoint: Option<Checkpoint>,
    on_step: &mut dyn FnMut(StepProgress) -> ControlFlow<()>,
) -> Result<Denoised, ModelError> {
    let ranks = ThreadGroup::new(tp)
        .into_iter()
        .map(|comm| {
            let comm: Arc<dyn Communicator> = Arc::new(comm);
            let (_, pipeline) = Pipeline::load_rank(dir, device, comm.clone())?;
            Ok((pipeline, comm))
        })
        .collect::<Result<Vec<_>, ModelError>>()?;
    let mut ranks = ranks.into_iter();
    let Some((first, first_comm)) = ranks.next() else {
        return Err(ModelError::InvalidConfig("a group of no ranks".into()));
    };
    std::thread::scope(|scope| {
        let others: Vec<_> = ranks
            .map(|(pipeline, comm)| {
                let checkpoint = checkpoint.clone();
                scope.spawn(move || {
                    pipeline.resume(request, checkpoint, &mut |_| agree(comm.as_ref(), false))
                })
            })
            .collect();
        let result = first.resume(request, checkpoint, &mut |step| {
            let stop = on_step(step).is_break();
            agree(first_comm.as_ref(), stop)
        });
        // Rank 0 leaves the group before waiting for the others: if it
        // failed mid-step, ranks still in an all-reduce then fail too.
        drop((first, first_comm));
        for rank in others {
            rank.join().map_err(|_| {
                ModelError::InvalidConfig("a tensor-parallel rank panicked".into())
            })??;
        }
        result
    })
}

/// Whether any rank wants to stop after this step (rank 0 decides).
fn agree(comm: &dyn Communicator, stop: bool) -> ControlFlow<()> {
    let vote = Tensor::new(&[if stop { 1f32 } else { 0f32 }], &Device::Cpu)
        .and_then(|t| comm.all_reduce_sum(&t))
        .and_then(|t| t.to_vec1::<f32>());
    match vote {
        Ok(v) if v.first().copied().unwrap_or(0.0) == 0.0 => ControlFlow::Continue(()),
        _ => ControlFlow::Break(()),
    }
}
