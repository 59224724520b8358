//! The NVIDIA backend: an NCCL all-reduce (through cudarc, which loads
//! libcuda and libnccl at run time) across the GPUs of this node, one rank
//! per GPU, the ranks being threads of this process as with [`super::ThreadGroup`].
//!
//! A build without candle's CUDA kernels keeps its tensors on the CPU, so
//! the sum is staged through each rank's GPU (copy in, all-reduce in
//! place, copy out); with the `cuda` feature the model's tensors would
//! already be on the GPU and the copies would go. cudarc looks for
//! `libnccl.so` (or `libnccl.so.<CUDA major>`): where only NCCL's soname
//! `libnccl.so.2` is installed, link `libnccl.so` to it on LD_LIBRARY_PATH.

use std::sync::{Arc, Mutex};

use candle_core::{Result, Tensor};
use cudarc::driver::CudaContext;
use cudarc::nccl::{Comm, ReduceOp};

use super::Communicator;

#[cfg(all(feature = "nccl", feature = "cuda"))]
compile_error!("`cuda` includes the NCCL backend; enable `cuda` or `nccl`, not both");

/// One rank of a group of GPUs of this node.
pub struct NcclGroup {
    rank: usize,
    size: usize,
    comm: Mutex<SendComm>,
}

/// An NCCL communicator may be used from any thread as long as its calls
/// do not overlap; the mutex around it sees to that.
struct SendComm(Comm);

// SAFETY: see above; cudarc leaves its raw communicator pointer !Send.
unsafe impl Send for SendComm {}

fn gpu_error(what: &str, e: impl std::fmt::Debug) -> candle_core::Error {
    candle_core::Error::Msg(format!("NCCL backend: {what}: {e:?}"))
}

impl NcclGroup {
    /// GPUs NVIDIA's driver shows this process (0 if it does not load).
    pub fn device_count() -> usize {
        CudaContext::device_count().map_or(0, |n| n.max(0) as usize)
    }

    /// One communicator per GPU in `ordinals`, rank i on `ordinals[i]`
    /// (hand one to each rank's thread).
    pub fn on_devices(ordinals: &[usize]) -> Result<Vec<NcclGroup>> {
        let streams = ordinals
            .iter()
            .map(|&ordinal| {
                CudaContext::new(ordinal)
                    .and_then(|ctx| ctx.new_stream())
                    .map_err(|e| gpu_error(&format!("GPU {ordinal}"), e))
            })
            .collect::<Result<Vec<_>>>()?;
        let comms = Comm::from_devices(streams).map_err(|e| gpu_error("ncclCommInitAll", e))?;
        let size = comms.len();
        Ok(comms
            .into_iter()
            .enumerate()
            .map(|(rank, comm)| NcclGroup {
                rank,
                size,
                comm: Mutex::new(SendComm(comm)),
            })
            .collect())
    }
}

impl Communicator for NcclGroup {
    fn rank(&self) -> usize {
        self.rank
    }

    fn size(&self) -> usize {
        self.size
    }

    fn all_reduce_sum(&self, t: &Tensor) -> Result<Tensor> {
        let host = t
            .flatten_all()?
            .to_dtype(candle_core::DType::F32)?
            .to_vec1::<f32>()?;
        let comm = self.comm.lock().unwrap_or_else(|e| e.into_inner());
        let stream = comm.0.stream();
        let mut buffer = stream
            .clone_htod(&host)
            .map_err(|e| gpu_error("copy to the GPU", e))?;
        comm.0
            .all_reduce_in_place(&mut buffer, &ReduceOp::Sum)
            .map_err(|e| gpu_error("ncclAllReduce", e))?;
        // Copying back waits for the all-reduce on the same stream.
        let sum = stream
            .clone_dtoh(&buffer)
            .map_err(|e| gpu_error("copy from the GPU", e))?;
        Tensor::from_vec(sum, t.shape(), t.device())?.to_dtype(t.dtype())
    }
}

/// Rank i of `n` on GPU i, the way a worker with n GPUs runs a tp = n job.
pub fn node_group(n: usize) -> Result<Vec<Arc<dyn Communicator>>> {
    let ordinals: Vec<usize> = (0..n).collect();
    Ok(NcclGroup::on_devices(&ordinals)?
        .into_iter()
        .map(|g| Arc::new(g) as Arc<dyn Communicator>)
        .collect())
}
