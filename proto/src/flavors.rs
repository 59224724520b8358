//! Flavor names from what a device reports: `<vendor>-<model words>`, lower
//! case, packaging words dropped, e.g. "NVIDIA H100 80GB HBM3" ->
//! `nvidia-h100-80gb`, "AMD Instinct MI300X" -> `amd-mi300x`. Queues name
//! flavors, so the same card must give the same name on every node.
//! The memory size stays only where the product name states it (A100 40GB
//! and 80GB are different flavors; an L4 has one size).
//!
//! Here, below the worker (which names its devices) and the planner and
//! scheduler (which size fleets and jobs by them), so all agree.

/// Words that say who made it or how it is packaged, not what it is.
const NOISE: &[&str] = &[
    "nvidia",
    "tesla",
    "geforce",
    "quadro",
    "amd",
    "radeon",
    "instinct",
    "sxm",
    "sxm2",
    "sxm4",
    "sxm5",
    "hbm",
    "hbm2",
    "hbm2e",
    "hbm3",
    "hbm3e",
    "oam",
    "gpu",
    "graphics",
    "accelerator",
];

/// The flavor of a device of `vendor` ("nvidia", "amd") called `product`.
pub fn flavor(vendor: &str, product: &str) -> String {
    let lower = product.to_lowercase();
    let mut parts = vec![vendor.to_string()];
    parts.extend(
        lower
            .split(|c: char| !c.is_ascii_alphanumeric())
            .filter(|w| !w.is_empty() && !NOISE.contains(w))
            .map(str::to_string),
    );
    if parts.len() == 1 {
        parts.push("unknown".into());
    }
    // Flavor names are at most 63 characters (see `is_valid_name`).
    let mut name = parts.join("-");
    name.truncate(63);
    name.trim_end_matches('-').to_string()
}

/// Memory of one device of the flavors whose size is public, bytes (for
/// simulated devices; real ones report theirs). The sizes are the ones the
/// product names state, in GiB.
const KNOWN_MEMORY_GIB: &[(&str, u64)] = &[
    ("nvidia-h100-80gb", 80),
    ("nvidia-h100-pcie", 80),
    ("nvidia-h200", 141),
    ("nvidia-a100-80gb", 80),
    ("nvidia-a100-40gb", 40),
    ("nvidia-l4", 24),
    ("amd-mi300x", 192),
];

/// The memory of one device of `flavor`, if this table knows it.
pub fn known_memory_bytes(flavor: &str) -> Option<u64> {
    KNOWN_MEMORY_GIB
        .iter()
        .find(|(name, _)| *name == flavor)
        .map(|(_, gib)| gib << 30)
}

/// `24GiB`, `512MiB`, `1.5TiB` as bytes.
pub fn parse_memory(text: &str) -> Result<u64, String> {
    let bad = || format!("memory {text:?}: give it like 24GiB, 80GiB or 512MiB");
    let units = [("TiB", 1u64 << 40), ("GiB", 1 << 30), ("MiB", 1 << 20)];
    let (number, unit) = units
        .iter()
        .find_map(|(suffix, unit)| text.strip_suffix(suffix).map(|n| (n.trim(), *unit)))
        .ok_or_else(bad)?;
    let value: f64 = number.parse().map_err(|_| bad())?;
    let bytes = value * unit as f64;
    if !bytes.is_finite() || bytes < f64::from(1u32 << 20) || bytes > (1u64 << 50) as f64 {
        return Err(format!("memory {text:?}: give between 1MiB and 1024TiB"));
    }
    Ok(bytes as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_reported_by_drivers_become_stable_flavors() {
        let cases = [
            ("nvidia", "NVIDIA H100 80GB HBM3", "nvidia-h100-80gb"),
            ("nvidia", "NVIDIA A100-SXM4-80GB", "nvidia-a100-80gb"),
            ("nvidia", "NVIDIA A100-SXM4-40GB", "nvidia-a100-40gb"),
            ("nvidia", "NVIDIA H100 PCIe", "nvidia-h100-pcie"),
            ("nvidia", "NVIDIA H200", "nvidia-h200"),
            ("nvidia", "NVIDIA L4", "nvidia-l4"),
            ("nvidia", "Tesla V100-SXM2-16GB", "nvidia-v100-16gb"),
            ("amd", "AMD Instinct MI300X", "amd-mi300x"),
            ("amd", "AMD Instinct MI250X / MI250", "amd-mi250x-mi250"),
            ("amd", "", "amd-unknown"),
        ];
        for (vendor, product, expected) in cases {
            assert_eq!(flavor(vendor, product), expected, "{product}");
            assert!(crate::is_valid_name(expected), "{expected}");
        }
        let long = flavor("nvidia", &"x ".repeat(100));
        assert!(crate::is_valid_name(&long), "{long}");
    }
}
