//! `genfleet devices`: what a worker on this machine would find, so an
//! operator can check a node (driver, NVML, sysfs mount) before deploying.

use genfleet_worker::device::{self, GpuWatch};

use crate::cli::DevicesArgs;
use crate::output;
use crate::render;

pub fn run(args: DevicesArgs) -> anyhow::Result<()> {
    let watch = GpuWatch::open(&args.sysfs_root);
    let gpus = watch.gpus();
    if args.output.output.structured() {
        return output::list(args.output.output, gpus, |_| String::new());
    }
    if gpus.is_empty() {
        say!(
            "no GPUs: NVML did not load or saw none, and no amdgpu card is under {}",
            args.sysfs_root.join("sys/class/drm").display()
        );
    } else {
        say!("{}", render::gpu_table(gpus));
    }
    print_cuda_view(gpus);
    let cpu = device::discover(1);
    let memory = cpu.first().map_or(0, |g| g.memory_bytes);
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    say!(
        "cpu: {threads} threads, {:.1} GiB memory ({})",
        memory as f64 / (1u64 << 30) as f64,
        if cfg!(feature = "cuda") {
            "jobs run here in --cpu-slots, the NVIDIA GPUs above take theirs"
        } else {
            "jobs run here in this build: it has no CUDA"
        }
    );
    Ok(())
}

/// Which CUDA ordinal each NVIDIA GPU has (the worker's jobs name them so).
#[cfg(feature = "cuda")]
fn print_cuda_view(gpus: &[device::GpuInfo]) {
    let nvidia = gpus.iter().filter(|g| g.vendor == device::Vendor::Nvidia);
    match device::cuda::pci_addresses() {
        Ok(addresses) => {
            for gpu in nvidia {
                match device::cuda::ordinal_of(gpu, &addresses) {
                    Some(ordinal) => {
                        say!("nvidia:{} is cuda:{ordinal}: offered for jobs", gpu.index)
                    }
                    None => say!("nvidia:{} is not visible to CUDA: not offered", gpu.index),
                }
            }
        }
        Err(why) => say!("CUDA cannot be used ({why}): no GPU is offered"),
    }
}

#[cfg(not(feature = "cuda"))]
fn print_cuda_view(_gpus: &[device::GpuInfo]) {}
