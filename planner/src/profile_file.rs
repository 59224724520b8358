//! Throughput profiles for plans: the steps per second of a model on a
//! flavor at a tensor-parallel degree, the figures the leader's policy
//! ranks flavors by and the simulation runs jobs at. A plan starts from
//! the leader's seeded profile and takes the fleet's prices as the
//! device costs; a profile file overrides rates (measured ones, ideally).
//!
//! ```yaml
//! rates:
//!   - { model: wan2.1-1.3b, flavor: nvidia-h100-80gb, tp: 1, steps_per_s: 0.45 }
//!   - { model: wan2.1-1.3b, flavor: nvidia-h100-80gb, tp: 2, steps_per_s: 0.8 }
//!   # optional: the rate of jobs of one size (steps take longer on larger
//!   # videos; between two sizes given, the step time is interpolated)
//!   - { model: wan2.1-1.3b, flavor: nvidia-h100-80gb, tp: 1, size: 1280x720, frames: 81, steps_per_s: 0.12 }
//!   # or the same as width x height x frames (`genfleet profile export`)
//!   - { model: wan2.1-1.3b, flavor: nvidia-h100-80gb, tp: 1, pixel_frames: 74649600, steps_per_s: 0.12 }
//! ```
//!
//! A rate not given for tp > 1 is derived from tp 1 as the leader does
//! (85% of linear per doubling); a model or flavor never given runs at
//! 1 step/s.

use std::collections::BTreeSet;
use std::path::Path;

use genfleet_scheduler::policy::Profile;
use serde::Deserialize;

use super::fleet::Fleet;
use super::workload::JobRequest;
use super::InputError;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ProfileDoc {
    rates: Vec<RateDoc>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RateDoc {
    model: String,
    flavor: String,
    tp: u32,
    steps_per_s: f64,
    #[serde(default)]
    size: Option<String>,
    #[serde(default)]
    frames: Option<u32>,
    /// width x height x frames, as `genfleet profile export` writes it.
    #[serde(default)]
    pixel_frames: Option<u64>,
}

/// The leader's seeded profile with the fleet's prices as device costs,
/// and the rates of `file` if given.
pub fn plan_profile(fleet: &Fleet, file: Option<&Path>) -> Result<Profile, InputError> {
    let mut profile = Profile::seeded();
    for pool in &fleet.pools {
        profile.set_cost(&pool.flavor, pool.price_per_device_hour);
    }
    if let Some(path) = file {
        let name = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|e| InputError::io(&name, e))?;
        apply_rates(&mut profile, &name, &text)?;
    }
    Ok(profile)
}

/// (model, flavor) pairs the workload will run that the profile has no
/// rate for at tp 1 (it would assume a conservative 1 step/s there).
pub fn missing_rates(
    profile: &Profile,
    fleet: &Fleet,
    jobs: &[JobRequest],
) -> Vec<(String, String)> {
    let known: BTreeSet<(&str, &str)> = profile
        .rates()
        .filter(|(.., tp, _)| *tp == 1)
        .map(|(model, flavor, ..)| (model, flavor))
        .collect();
    let models: BTreeSet<&str> = jobs.iter().map(|j| j.model.as_str()).collect();
    let mut missing = Vec::new();
    for pool in &fleet.pools {
        for &model in &models {
            let served = pool.models.iter().any(|m| m == model);
            if served && !known.contains(&(model, pool.flavor.as_str())) {
                missing.push((model.to_string(), pool.flavor.clone()));
            }
        }
    }
    missing
}

pub fn apply_rates(profile: &mut Profile, file: &str, text: &str) -> Result<(), InputError> {
    let doc: ProfileDoc = serde_yaml_ng::from_str(text).map_err(|e| {
        let line = e.location().map_or(0, |l| l.line() as u64);
        InputError::at(file, line, "profile", &e.to_string())
    })?;
    for (i, rate) in doc.rates.into_iter().enumerate() {
        let at = |field: &str, why: String| {
            InputError::at(file, 0, &format!("rates[{i}].{field}"), &why)
        };
        if rate.tp == 0 || rate.tp > 16 {
            return Err(at("tp", format!("{}: give between 1 and 16", rate.tp)));
        }
        if !rate.steps_per_s.is_finite() || !(1e-6..=1e6).contains(&rate.steps_per_s) {
            return Err(at(
                "steps_per_s",
                format!("{}: give a rate between 1e-6 and 1e6", rate.steps_per_s),
            ));
        }
        if let Some(pixel_frames) = rate.pixel_frames {
            if rate.size.is_some() || rate.frames.is_some() {
                return Err(at(
                    "pixel_frames",
                    "give pixel_frames, or size and frames, not both".into(),
                ));
            }
            if pixel_frames == 0 {
                return Err(at(
                    "pixel_frames",
                    "0: give the size's width x height x frames".into(),
                ));
            }
            profile.set_sized(
                &rate.model,
                &rate.flavor,
                rate.tp,
                pixel_frames,
                rate.steps_per_s,
            );
            continue;
        }
        match (&rate.size, rate.frames) {
            (None, None) => profile.set(&rate.model, &rate.flavor, rate.tp, rate.steps_per_s),
            (Some(size), Some(frames)) => {
                let (width, height) = parse_size(size).map_err(|e| at("size", e))?;
                if frames == 0 || frames > 10_000 {
                    return Err(at("frames", format!("{frames}: give between 1 and 10000")));
                }
                let pixel_frames = u64::from(width) * u64::from(height) * u64::from(frames);
                profile.set_sized(
                    &rate.model,
                    &rate.flavor,
                    rate.tp,
                    pixel_frames,
                    rate.steps_per_s,
                );
            }
            (Some(_), None) => {
                return Err(at(
                    "frames",
                    "a rate with a size needs its frames too".into(),
                ))
            }
            (None, Some(_)) => {
                return Err(at(
                    "size",
                    "a rate with frames needs its size (WIDTHxHEIGHT) too".into(),
                ))
            }
        }
    }
    Ok(())
}

/// `WIDTHxHEIGHT` as every size is written (`spec::parse_size`), each
/// side at least a pixel.
fn parse_size(text: &str) -> Result<(u32, u32), String> {
    let (width, height) = genfleet_scheduler::spec::parse_size(text.trim())?;
    if width == 0 || height == 0 {
        return Err(format!("{text:?}: a size of no pixels"));
    }
    Ok((width, height))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_override_the_seeded_ones_and_bad_ones_are_named() {
        let mut profile = Profile::seeded();
        apply_rates(
            &mut profile,
            "p.yaml",
            "rates:\n  - { model: wan2.1-1.3b, flavor: nvidia-l4, tp: 1, steps_per_s: 0.1 }\n",
        )
        .expect("valid");
        assert_eq!(profile.steps_per_s("wan2.1-1.3b", "nvidia-l4", 1), 0.1);
        assert!(profile.steps_per_s("wan2.1-1.3b", "nvidia-l4", 2) > 0.1);
        let err = apply_rates(
            &mut profile,
            "p.yaml",
            "rates:\n  - { model: a, flavor: b, tp: 1, steps_per_s: 0 }\n",
        )
        .expect_err("zero");
        assert!(err.to_string().contains("rates[0].steps_per_s"), "{err}");
    }

    #[test]
    fn rates_may_be_given_per_size() {
        let mut profile = Profile::seeded();
        apply_rates(
            &mut profile,
            "p.yaml",
            "rates:\n  - { model: m, flavor: gpu, tp: 1, size: 64x64, frames: 17, steps_per_s: 20 }\n  - { model: m, flavor: gpu, tp: 1, size: 1280x720, frames: 81, steps_per_s: 0.1 }\n",
        )
        .expect("valid");
        assert_eq!(profile.steps_per_s_at("m", "gpu", 1, 64 * 64 * 17), 20.0);
        assert!((profile.steps_per_s_at("m", "gpu", 1, 1280 * 720 * 81) - 0.1).abs() < 1e-12);
        apply_rates(
            &mut profile,
            "p.yaml",
            "rates:\n  - { model: m, flavor: gpu, tp: 1, pixel_frames: 69632, steps_per_s: 30 }\n",
        )
        .expect("valid");
        assert_eq!(profile.steps_per_s_at("m", "gpu", 1, 64 * 64 * 17), 30.0);
        for (row, field) in [
            (
                "{ model: m, flavor: gpu, tp: 1, size: 64x64, steps_per_s: 1 }",
                "rates[0].frames",
            ),
            (
                "{ model: m, flavor: gpu, tp: 1, frames: 17, steps_per_s: 1 }",
                "rates[0].size",
            ),
            (
                "{ model: m, flavor: gpu, tp: 1, size: 64by64, frames: 17, steps_per_s: 1 }",
                "rates[0].size",
            ),
            (
                "{ model: m, flavor: gpu, tp: 1, size: 64x64, frames: 0, steps_per_s: 1 }",
                "rates[0].frames",
            ),
            (
                "{ model: m, flavor: gpu, tp: 1, size: 64x64, frames: 17, pixel_frames: 69632, steps_per_s: 1 }",
                "rates[0].pixel_frames",
            ),
            (
                "{ model: m, flavor: gpu, tp: 1, pixel_frames: 0, steps_per_s: 1 }",
                "rates[0].pixel_frames",
            ),
        ] {
            let err = apply_rates(&mut profile, "p.yaml", &format!("rates:\n  - {row}\n"))
                .expect_err(row);
            assert!(err.to_string().contains(field), "{row}: {err}");
        }
    }
}
