//! The NVIDIA backend: an NCCL all-reduce (through cudarc) across the GPUs
//! of this node, one rank per GPU, the ranks being threads of this process
//! as with [`super::ThreadGroup`].
//!
//! With the `cuda` feature the model's tensors live on the ranks' GPUs and
//! the sum runs on their buffers, on each device's own stream, in order
//! with its kernels ([`NcclGroup::on_candle_devices`]). A host tensor (the
//! `nccl` feature alone keeps every tensor on the CPU) is staged through
//! the GPU: copy in, all-reduce in place, copy out. cudarc looks for
//! `libnccl.so` (or `libnccl.so.<CUDA major>`) when it loads NCCL at run
//! time (`nccl` feature): where only NCCL's soname `libnccl.so.2` is
//! installed, link `libnccl.so` to it on LD_LIBRARY_PATH.
//!
//! A rank that fails calls [`Communicator::abandon`]: every communicator of
//! the group is aborted (`ncclCommAbort`, which NCCL allows from another
//! thread to end operations that will never complete), so ranks waiting on
//! the failed one get an error instead of hanging, and later calls fail at
//! once naming the rank that left.

use std::sync::{Arc, Mutex, MutexGuard};

use candle_core::{Result, Tensor};
use cudarc::driver::{CudaContext, CudaStream};
use cudarc::nccl::{Comm, ReduceOp};

use super::{Communicator, RANK_LEFT};

/// One rank of a group of GPUs of this node.
pub struct NcclGroup {
    rank: usize,
    shared: Arc<Shared>,
    /// An all-reduce of this rank failed because another rank left.
    saw_leave: std::sync::atomic::AtomicBool,
}

/// Every rank's communicator (`None` once the group was abandoned) and
/// which rank left.
struct Shared {
    comms: Vec<Mutex<Option<SendComm>>>,
    left: Mutex<Option<usize>>,
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

    /// One communicator per GPU in `ordinals`, each on a stream of its own,
    /// rank i on `ordinals[i]` (hand one to each rank's thread).
    pub fn on_devices(ordinals: &[usize]) -> Result<Vec<NcclGroup>> {
        let streams = ordinals
            .iter()
            .map(|&ordinal| {
                CudaContext::new(ordinal)
                    .and_then(|ctx| ctx.new_stream())
                    .map_err(|e| gpu_error(&format!("GPU {ordinal}"), e))
            })
            .collect::<Result<Vec<_>>>()?;
        Self::on_streams(streams)
    }

    /// One communicator per candle CUDA device, on that device's stream,
    /// rank i on `devices[i]` (made with [`candle_core::Device::new_cuda_with_stream`],
    /// so the stream is the same whichever thread runs the rank).
    #[cfg(feature = "cuda")]
    pub fn on_candle_devices(devices: &[candle_core::Device]) -> Result<Vec<NcclGroup>> {
        let streams = devices
            .iter()
            .map(|d| Ok(d.as_cuda_device()?.cuda_stream()))
            .collect::<Result<Vec<_>>>()?;
        Self::on_streams(streams)
    }

    fn on_streams(streams: Vec<Arc<CudaStream>>) -> Result<Vec<NcclGroup>> {
        let comms = Comm::from_devices(streams).map_err(|e| gpu_error("ncclCommInitAll", e))?;
        let shared = Arc::new(Shared {
            comms: comms
                .into_iter()
                .map(|c| Mutex::new(Some(SendComm(c))))
                .collect(),
            left: Mutex::new(None),
        });
        Ok((0..shared.comms.len())
            .map(|rank| NcclGroup {
                rank,
                shared: shared.clone(),
                saw_leave: std::sync::atomic::AtomicBool::new(false),
            })
            .collect())
    }

    /// `f` with this rank's communicator, or the error of a group some
    /// rank left.
    fn with_comm<R>(&self, f: impl FnOnce(&Comm) -> Result<R>) -> Result<R> {
        match lock(&self.shared.comms[self.rank]).as_ref() {
            Some(SendComm(comm)) => f(comm),
            None => {
                self.saw_leave
                    .store(true, std::sync::atomic::Ordering::Relaxed);
                let left = lock(&self.shared.left).unwrap_or(self.rank);
                Err(candle_core::Error::Msg(format!(
                    "tensor-parallel rank {left} {RANK_LEFT}"
                )))
            }
        }
    }

    /// The staged sum of a host tensor. The lock is not held while waiting
    /// for the result, so a failed rank can abort this one meanwhile.
    fn all_reduce_host(&self, t: &Tensor) -> Result<Tensor> {
        let host = t
            .flatten_all()?
            .to_dtype(candle_core::DType::F32)?
            .to_vec1::<f32>()?;
        let (stream, buffer) = self.with_comm(|comm| {
            let stream = comm.stream();
            let mut buffer = stream
                .clone_htod(&host)
                .map_err(|e| gpu_error("copy to the GPU", e))?;
            comm.all_reduce_in_place(&mut buffer, &ReduceOp::Sum)
                .map_err(|e| gpu_error("ncclAllReduce", e))?;
            Ok((stream, buffer))
        })?;
        // Copying back waits for the all-reduce on the same stream.
        let sum = stream
            .clone_dtoh(&buffer)
            .map_err(|e| gpu_error("copy from the GPU", e))?;
        // Aborted meanwhile: the sum is garbage; say which rank left.
        self.with_comm(|_| Ok(()))?;
        Tensor::from_vec(sum, t.shape(), t.device())?.to_dtype(t.dtype())
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Communicator for NcclGroup {
    fn saw_rank_leave(&self) -> bool {
        self.saw_leave.load(std::sync::atomic::Ordering::Relaxed)
    }

    fn rank(&self) -> usize {
        self.rank
    }

    fn size(&self) -> usize {
        self.shared.comms.len()
    }

    fn all_reduce_sum(&self, t: &Tensor) -> Result<Tensor> {
        #[cfg(feature = "cuda")]
        if t.device().is_cuda() {
            let t = t.contiguous()?;
            return self.with_comm(|comm| t.apply_op1_no_bwd(&device::DeviceAllReduce(comm)));
        }
        self.all_reduce_host(t)
    }

    fn abandon(&self) {
        lock(&self.shared.left).get_or_insert(self.rank);
        for comm in &self.shared.comms {
            // Dropping a cudarc communicator aborts it.
            drop(lock(comm).take());
        }
    }
}

/// The sum of device buffers: a candle op so that it runs on the tensor's
/// own storage and stream, with no copy through the host.
#[cfg(feature = "cuda")]
mod device {
    use candle_core::backend::BackendStorage;
    use candle_core::{CpuStorage, CudaStorage, DType, Layout, Result, Shape};
    use cudarc::nccl::{Comm, NcclType, ReduceOp};

    use super::gpu_error;

    pub(super) struct DeviceAllReduce<'a>(pub(super) &'a Comm);

    impl DeviceAllReduce<'_> {
        fn sum<T>(&self, storage: &CudaStorage, start: usize, end: usize) -> Result<CudaStorage>
        where
            T: candle_core::cuda_backend::CudaDType
                + NcclType
                + cudarc::driver::DeviceRepr
                + cudarc::driver::ValidAsZeroBits,
        {
            let device = storage.device.clone();
            let source = storage.as_cuda_slice::<T>()?.slice(start..end);
            let mut sum = device.alloc_zeros::<T>(end - start)?;
            self.0
                .all_reduce(&source, &mut sum, &ReduceOp::Sum)
                .map_err(|e| gpu_error("ncclAllReduce", e))?;
            Ok(CudaStorage::wrap_cuda_slice(sum, device))
        }
    }

    impl candle_core::CustomOp1 for DeviceAllReduce<'_> {
        fn name(&self) -> &'static str {
            "nccl-all-reduce-sum"
        }

        fn cpu_fwd(&self, _: &CpuStorage, _: &Layout) -> Result<(CpuStorage, Shape)> {
            candle_core::bail!("the device all-reduce takes CUDA tensors")
        }

        fn cuda_fwd(&self, storage: &CudaStorage, layout: &Layout) -> Result<(CudaStorage, Shape)> {
            let Some((start, end)) = layout.contiguous_offsets() else {
                candle_core::bail!("the device all-reduce takes a contiguous tensor");
            };
            let sum = match storage.dtype() {
                DType::F32 => self.sum::<f32>(storage, start, end)?,
                DType::BF16 => self.sum::<half::bf16>(storage, start, end)?,
                other => candle_core::bail!("no NCCL all-reduce for {other:?} tensors"),
            };
            Ok((sum, layout.shape().clone()))
        }
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
