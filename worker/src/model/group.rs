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
        let mut results = vec![result];
        for rank in others {
            results.push(rank.join().unwrap_or_else(|_| {
                Err(ModelError::InvalidConfig(
                    "a tensor-parallel rank panicked".into(),
                ))
            }));
        }
        first_cause(results)
    })
}

/// Rank 0's result, unless a rank failed: then the error that started it
/// rather than the others' reports that a rank left them.
fn first_cause(results: Vec<Result<Denoised, ModelError>>) -> Result<Denoised, ModelError> {
    let is_echo = |e: &ModelError| e.to_string().contains(crate::parallel::RANK_LEFT);
    let mut rank0 = None;
    let mut echo = None;
    for (rank, result) in results.into_iter().enumerate() {
        match result {
            Ok(done) if rank == 0 => rank0 = Some(done),
            Ok(_) => {}
            Err(e) if is_echo(&e) => {
                echo.get_or_insert(e);
            }
            Err(e) => return Err(e),
        }
    }
    match (echo, rank0) {
        (Some(e), _) => Err(e),
        (None, Some(done)) => Ok(done),
        (None, None) => Err(ModelError::InvalidConfig("a group of no ranks".into())),
    }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parallel::RANK_LEFT;

    fn left(rank: usize) -> Result<Denoised, ModelError> {
        Err(ModelError::Candle(candle_core::Error::Msg(format!(
            "rank {rank} {RANK_LEFT}"
        ))))
    }

    fn failed(why: &str) -> Result<Denoised, ModelError> {
        Err(ModelError::InvalidConfig(why.into()))
    }

    #[test]
    fn a_failed_rank_reports_its_own_error_not_the_others_echo() {
        let latent = Tensor::zeros(1, candle_core::DType::F32, &Device::Cpu).expect("t");
        let finished = || Ok(Denoised::Finished(latent.clone()));
        // Rank 2 failed; ranks 0 and 1 only saw it leave.
        let cause = first_cause(vec![left(2), left(2), failed("rank 2's error")]);
        assert!(cause.is_err_and(|e| e.to_string().contains("rank 2's error")));
        // Rank 0's own failure comes first.
        let cause = first_cause(vec![failed("rank 0's error"), failed("rank 1's error")]);
        assert!(cause.is_err_and(|e| e.to_string().contains("rank 0's error")));
        // Only echoes (the cause lost with a panic): still an error.
        assert!(first_cause(vec![left(1), finished()]).is_err());
        assert!(first_cause(vec![finished(), finished()]).is_ok());
    }
}
