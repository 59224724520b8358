//! `genfleet devices`: what a worker on this machine would find, so an
//! operator can check a node (driver, NVML, sysfs mount) before deploying.

use genfleet_worker::device::{self, GpuWatch};

use crate::cli::DevicesArgs;
use crate::render;

pub fn run(args: DevicesArgs) -> anyhow::Result<()> {
    let watch = GpuWatch::open(&args.sysfs_root);
    let gpus = watch.gpus();
    if gpus.is_empty() {
        println!(
            "no GPUs: NVML did not load or saw none, and no amdgpu card is under {}",
            args.sysfs_root.join("sys/class/drm").display()
        );
    } else {
        println!("{}", render::gpu_table(gpus));
    }
    let cpu = device::discover(1);
    let memory = cpu.first().map_or(0, |g| g.memory_bytes);
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    println!(
        "cpu: {threads} threads, {:.1} GiB memory (jobs run here in this build)",
        memory as f64 / (1u64 << 30) as f64
    );
    Ok(())
}
