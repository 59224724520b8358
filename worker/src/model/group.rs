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
use super::pipeline::{Denoised, GenerateRequest, Pipeline, StepProgress, Video};
use super::ModelError;
use crate::parallel::{Communicator, ThreadGroup};

/// How a group's run ended.
#[derive(Debug)]
pub enum Generated {
    /// Every step ran: the final latent (on the host, f32) and the frames
    /// rank 0 decoded from it.
    Finished { latent: Tensor, video: Video },
    /// Stopped at a step boundary: where to resume from.
    Stopped(Checkpoint),
}

/// The communicators of a group with one rank on each of `devices`: threads
/// sharing host memory on the CPU, NCCL across distinct GPUs. Ranks that
/// share a GPU (a check of the sharded model on a one-GPU machine; NCCL
/// refuses two ranks on one device) sum through the host like the CPU's.
fn communicators(devices: &[Device]) -> Result<Vec<Arc<dyn Communicator>>, ModelError> {
    let shared = devices
        .iter()
        .enumerate()
        .any(|(i, d)| !d.is_cpu() && devices[..i].iter().any(|e| e.location() == d.location()));
    if devices.iter().all(Device::is_cpu) || shared {
        return Ok(ThreadGroup::new(devices.len())
            .into_iter()
            .map(|c| Arc::new(c) as Arc<dyn Communicator>)
            .collect());
    }
    #[cfg(feature = "cuda")]
    if devices.iter().all(Device::is_cuda) {
        return Ok(
            crate::parallel::nccl::NcclGroup::on_candle_devices(devices)?
                .into_iter()
                .map(|c| Arc::new(c) as Arc<dyn Communicator>)
                .collect(),
        );
    }
    Err(ModelError::InvalidConfig(format!(
        "no tensor-parallel backend for ranks on {devices:?} (CPU threads, or CUDA GPUs in a \
         build with the `cuda` feature)"
    )))
}

/// The model saved in `dir` split over one rank per device of `devices`
/// (a rank's weights loaded straight onto its device, its slices only),
/// denoising from `checkpoint` (or the seed's noise) in step; rank 0
/// decodes the finished latent on its device.
pub fn generate_parallel(
    dir: &Path,
    devices: &[Device],
    request: &GenerateRequest,
    checkpoint: Option<Checkpoint>,
    on_step: &mut dyn FnMut(StepProgress) -> ControlFlow<()>,
) -> Result<Generated, ModelError> {
    let ranks = communicators(devices)?
        .into_iter()
        .zip(devices)
        .map(|(comm, device)| {
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
                    let _guard = AbandonOnPanic(comm.as_ref());
                    let result = pipeline.resume(request, checkpoint, &mut |_| {
                        agree(comm.as_ref(), pipeline.device(), false)
                    });
                    if result.is_err() {
                        comm.abandon();
                    }
                    (result.map(drop), comm.saw_rank_leave())
                })
            })
            .collect();
        let result = {
            let _guard = AbandonOnPanic(first_comm.as_ref());
            first
                .resume(request, checkpoint, &mut |step| {
                    let stop = on_step(step).is_break();
                    agree(first_comm.as_ref(), first.device(), stop)
                })
                .and_then(|denoised| match denoised {
                    Denoised::Finished(latent) => {
                        let video = first.decode(&latent, request)?;
                        let latent = latent.to_device(&Device::Cpu)?;
                        Ok(Generated::Finished { latent, video })
                    }
                    Denoised::Stopped(c) => Ok(Generated::Stopped(c)),
                })
        };
        if result.is_err() {
            first_comm.abandon();
        }
        let first_saw_leave = first_comm.saw_rank_leave();
        // Rank 0 leaves the group before waiting for the others: if it
        // failed mid-step, ranks still in an all-reduce then fail too.
        drop((first, first_comm));
        let others = others
            .into_iter()
            .enumerate()
            .map(|(i, rank)| match rank.join() {
                Ok(outcome) => outcome,
                Err(_) => (
                    Err(ModelError::RankFailed {
                        rank: i + 1,
                        why: "it panicked".into(),
                    }),
                    false,
                ),
            })
            .collect();
        first_cause((result, first_saw_leave), others)
    })
}

/// Rank 0's result, unless a rank failed: then the error that started it
/// rather than the others' reports that a rank left them.
fn first_cause<T>(rank0: Outcome<T>, others: Vec<Outcome<()>>) -> Result<T, ModelError> {
    let (rank0, rank0_echo) = rank0;
    let (done, rank0_error) = match rank0 {
        Ok(done) => (Some(done), None),
        Err(e) => (None, Some((e, rank0_echo))),
    };
    let mut echo = None;
    let errors = rank0_error.into_iter().chain(
        others
            .into_iter()
            .filter_map(|(result, saw_leave)| result.err().map(|e| (e, saw_leave))),
    );
    for (e, saw_leave) in errors {
        if !saw_leave {
            return Err(e);
        }
        echo.get_or_insert(e);
    }
    match (echo, done) {
        (Some(e), _) => Err(e),
        (None, Some(done)) => Ok(done),
        (None, None) => Err(ModelError::InvalidConfig("a group of no ranks".into())),
    }
}

/// How a rank's run ended, and whether it saw another rank leave the group
/// (then its error is an echo of that rank's, not a cause).
type Outcome<T> = (Result<T, ModelError>, bool);

/// Whether any rank wants to stop after this step (rank 0 decides); the
/// vote is summed where the rank computes.
fn agree(comm: &dyn Communicator, device: &Device, stop: bool) -> ControlFlow<()> {
    let vote = Tensor::new(&[if stop { 1f32 } else { 0f32 }], device)
        .and_then(|t| comm.all_reduce_sum(&t))
        .and_then(|t| t.to_vec1::<f32>());
    match vote {
        Ok(v) if v.first().copied().unwrap_or(0.0) == 0.0 => ControlFlow::Continue(()),
        _ => ControlFlow::Break(()),
    }
}

/// Abandons the group if the rank's thread unwinds (a panic), so the
/// others fail instead of waiting for it.
struct AbandonOnPanic<'a>(&'a dyn Communicator);

impl Drop for AbandonOnPanic<'_> {
    fn drop(&mut self) {
        if std::thread::panicking() {
            self.0.abandon();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parallel::RANK_LEFT;

    /// A rank that failed because rank `rank` left: an echo.
    fn left(rank: usize) -> Outcome<()> {
        (
            Err(ModelError::Candle(candle_core::Error::Msg(format!(
                "rank {rank} {RANK_LEFT}"
            )))),
            true,
        )
    }

    fn failed(why: &str) -> Outcome<()> {
        (Err(ModelError::InvalidConfig(why.into())), false)
    }

    #[test]
    fn a_failed_rank_reports_its_own_error_not_the_others_echo() {
        // Rank 2 failed; ranks 0 and 1 only saw it leave.
        let cause = first_cause(left(2), vec![left(2), failed("rank 2's error")]);
        assert!(cause.is_err_and(|e| e.to_string().contains("rank 2's error")));
        // Rank 0's own failure comes first.
        let cause = first_cause(failed("rank 0's error"), vec![failed("rank 1's error")]);
        assert!(cause.is_err_and(|e| e.to_string().contains("rank 0's error")));
        // Only echoes (the cause lost with a panic): still an error.
        assert!(first_cause((Ok(()), false), vec![left(1)]).is_err());
        assert!(first_cause((Ok(()), false), vec![(Ok(()), false), (Ok(()), false)]).is_ok());
    }
}
