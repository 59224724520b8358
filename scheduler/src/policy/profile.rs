//! The throughput profile: denoising steps per second for a model on a
//! flavor at a tensor-parallel degree, and what a device of each flavor
//! costs. Seeded with figures, refined from the step times workers report.

use std::collections::BTreeMap;

/// Speed-up kept per doubling of `tp` when only tp = 1 was measured
/// (all-reduce and idle ranks eat the rest).
const TP_EFFICIENCY: f64 = 0.85;
/// Weight of a new observation in the running average.
const OBSERVATION_WEIGHT: f64 = 0.2;

#[derive(Debug, Clone, Default, PartialEq)]
pub struct Profile {
    /// (model, flavor, tp) -> steps per second.
    steps_per_s: BTreeMap<(String, String, u32), f64>,
    /// flavor -> relative cost of one device for one hour.
    device_hour_cost: BTreeMap<String, f64>,
}

impl Profile {
    /// Relative figures for the flavors genfleet knows out of the box: the
    /// tiny preset's step rate on this project's CPU benchmark, the GPUs
    /// scaled by their dense bf16 throughput relative to an H100. They are
    /// a start; observed step times replace them.
    pub fn seeded() -> Self {
        let mut profile = Profile::default();
        let flavors: [(&str, f64, f64); 5] = [
            // (flavor, tiny steps/s at tp 1, cost per device-hour)
            ("cpu", 2.0, 0.1),
            ("nvidia-h100-80gb", 120.0, 4.0),
            ("nvidia-a100-80gb", 60.0, 1.8),
            ("nvidia-l4", 15.0, 0.8),
            ("amd-mi300x", 150.0, 3.5),
        ];
        for (flavor, tiny, cost) in flavors {
            profile.set("tiny", flavor, 1, tiny);
            profile.device_hour_cost.insert(flavor.to_string(), cost);
        }
        profile
    }

    /// Every rate it holds (seeded or learned): (model, flavor, tp, steps/s).
    pub fn rates(&self) -> impl Iterator<Item = (&str, &str, u32, f64)> + '_ {
        self.steps_per_s
            .iter()
            .map(|((model, flavor, tp), rate)| (model.as_str(), flavor.as_str(), *tp, *rate))
    }

    pub fn set(&mut self, model: &str, flavor: &str, tp: u32, steps_per_s: f64) {
        self.steps_per_s
            .insert((model.into(), flavor.into(), tp), steps_per_s);
    }

    pub fn set_cost(&mut self, flavor: &str, device_hour_cost: f64) {
        self.device_hour_cost
            .insert(flavor.to_string(), device_hour_cost);
    }

    /// Steps per second, measured or derived from tp = 1; for a flavor or
    /// model never seen, a conservative 1 step/s.
    pub fn steps_per_s(&self, model: &str, flavor: &str, tp: u32) -> f64 {
        let key = (model.to_string(), flavor.to_string(), tp);
        if let Some(rate) = self.steps_per_s.get(&key) {
            return *rate;
        }
        let single = (model.to_string(), flavor.to_string(), 1);
        match self.steps_per_s.get(&single) {
            Some(rate) => rate * f64::from(tp.max(1)).powf(TP_EFFICIENCY.log2() + 1.0),
            None => 1.0,
        }
    }

    /// Cost of one step: devices x hourly cost / steps per hour.
    pub fn cost_per_step(&self, model: &str, flavor: &str, tp: u32) -> f64 {
        let cost = self.device_hour_cost.get(flavor).copied().unwrap_or(1.0);
        f64::from(tp.max(1)) * cost / (self.steps_per_s(model, flavor, tp) * 3600.0)
    }

    /// Folds in an observed step time (seconds per step).
    pub fn observe(&mut self, model: &str, flavor: &str, tp: u32, seconds_per_step: f64) {
        if !(seconds_per_step.is_finite() && seconds_per_step > 0.0) {
            return;
        }
        let observed = 1.0 / seconds_per_step;
        let current = self.steps_per_s(model, flavor, tp);
        let key = (model.to_string(), flavor.to_string(), tp);
        let known = self.steps_per_s.contains_key(&key);
        let next = if known {
            current + OBSERVATION_WEIGHT * (observed - current)
        } else {
            observed
        };
        self.steps_per_s.insert(key, next);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unmeasured_tp_is_derived_with_less_than_linear_speedup() {
        let profile = Profile::seeded();
        let one = profile.steps_per_s("tiny", "nvidia-h100-80gb", 1);
        let two = profile.steps_per_s("tiny", "nvidia-h100-80gb", 2);
        let four = profile.steps_per_s("tiny", "nvidia-h100-80gb", 4);
        assert!(one < two && two < 2.0 * one, "{one} {two}");
        assert!((four / two - two / one).abs() < 1e-9);
        assert!((two / one - 2.0 * TP_EFFICIENCY).abs() < 1e-9);
    }

    #[test]
    fn observations_move_the_rate_towards_what_workers_see() {
        let mut profile = Profile::seeded();
        let before = profile.steps_per_s("tiny", "cpu", 1);
        for _ in 0..50 {
            profile.observe("tiny", "cpu", 1, 1.0); // 1 step/s
        }
        let after = profile.steps_per_s("tiny", "cpu", 1);
        assert!(
            before > 1.5 && (after - 1.0).abs() < 0.01,
            "{before} -> {after}"
        );
        profile.observe("tiny", "cpu", 1, f64::NAN);
        profile.observe("tiny", "cpu", 1, 0.0);
        assert_eq!(profile.steps_per_s("tiny", "cpu", 1), after);
    }

    #[test]
    fn cheapest_per_step_and_fastest_can_differ() {
        let profile = Profile::seeded();
        let fastest = ["nvidia-h100-80gb", "nvidia-l4"]
            .into_iter()
            .max_by(|a, b| {
                profile
                    .steps_per_s("tiny", a, 1)
                    .total_cmp(&profile.steps_per_s("tiny", b, 1))
            });
        assert_eq!(fastest, Some("nvidia-h100-80gb"));
        assert!(
            profile.cost_per_step("tiny", "nvidia-a100-80gb", 1)
                < profile.cost_per_step("tiny", "nvidia-l4", 1)
        );
    }
}
