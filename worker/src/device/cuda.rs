//! CUDA's view of the node's NVIDIA GPUs (the `cuda` feature): which
//! ordinal CUDA gives each GPU that NVML found, matched by PCI address.

use cudarc::driver::sys::CUdevice_attribute;
use cudarc::driver::CudaContext;

use super::compute::parse_pci_bus_id;
use super::GpuInfo;

/// The PCI address (domain, bus, device) of every CUDA ordinal, in
/// ordinal order, or why CUDA could not be asked (no driver, no GPU
/// visible to this process).
pub fn pci_addresses() -> Result<Vec<(u32, u32, u32)>, String> {
    let count = CudaContext::device_count().map_err(|e| format!("CUDA: {e:?}"))?;
    (0..count.max(0) as usize)
        .map(|ordinal| {
            let context =
                CudaContext::new(ordinal).map_err(|e| format!("CUDA GPU {ordinal}: {e:?}"))?;
            let read = |attribute| {
                context
                    .attribute(attribute)
                    .map(|v| v.max(0) as u32)
                    .map_err(|e| format!("CUDA GPU {ordinal}: {e:?}"))
            };
            Ok((
                read(CUdevice_attribute::CU_DEVICE_ATTRIBUTE_PCI_DOMAIN_ID)?,
                read(CUdevice_attribute::CU_DEVICE_ATTRIBUTE_PCI_BUS_ID)?,
                read(CUdevice_attribute::CU_DEVICE_ATTRIBUTE_PCI_DEVICE_ID)?,
            ))
        })
        .collect()
}

/// The CUDA ordinal of `gpu` among `addresses` (from [`pci_addresses`]).
pub fn ordinal_of(gpu: &GpuInfo, addresses: &[(u32, u32, u32)]) -> Option<usize> {
    let address = parse_pci_bus_id(gpu.pci_bus_id.as_deref()?)?;
    addresses.iter().position(|a| *a == address)
}
