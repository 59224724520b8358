//! The throughput profile: denoising steps per second for a model on a
//! flavor at a tensor-parallel degree, and what a device of each flavor
//! costs. Seeded with figures, refined from the step times workers report.
//!
//! A step's time grows with the video: a 1280x720x81 job's step does
//! thousands of times the work of a 64x64x17 one. Rates are therefore
//! also kept per size class (the job's pixels x frames, by powers of two),
//! and a job's rate comes from the classes measured for its model, flavor
//! and tp: the seconds per step are interpolated linearly in pixels x
//! frames between the two nearest measured sizes (extrapolated along the
//! nearest segment beyond them; one measured size holds for every size).
//! Without a measured size the size-less rate holds, as before.

use std::collections::BTreeMap;

/// Speed-up kept per doubling of `tp` when only tp = 1 was measured
/// (all-reduce and idle ranks eat the rest).
const TP_EFFICIENCY: f64 = 0.85;
/// Weight of a new observation in the running average.
const OBSERVATION_WEIGHT: f64 = 0.2;

/// Per size class (log2 of pixels x frames): the size last measured in
/// it and its steps per second.
type SizeClasses = BTreeMap<u32, (u64, f64)>;

#[derive(Debug, Clone, Default, PartialEq)]
pub struct Profile {
    /// (model, flavor, tp) -> steps per second.
    steps_per_s: BTreeMap<(String, String, u32), f64>,
    /// (model, flavor, tp) -> per size class (log2 of pixels x frames):
    /// the size last measured in it and its steps per second.
    sized: BTreeMap<(String, String, u32), SizeClasses>,
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

    /// Every rate measured at a size: (model, flavor, tp, pixels x
    /// frames, steps/s).
    pub fn sized_rates(&self) -> impl Iterator<Item = (&str, &str, u32, u64, f64)> + '_ {
        self.sized
            .iter()
            .flat_map(|((model, flavor, tp), classes)| {
                classes
                    .values()
                    .map(move |(work, rate)| (model.as_str(), flavor.as_str(), *tp, *work, *rate))
            })
    }

    /// Sets the rate of jobs of `work` pixels x frames.
    pub fn set_sized(&mut self, model: &str, flavor: &str, tp: u32, work: u64, steps_per_s: f64) {
        if work == 0 || !(steps_per_s.is_finite() && steps_per_s > 0.0) {
            return;
        }
        self.sized
            .entry((model.into(), flavor.into(), tp))
            .or_default()
            .insert(size_class(work), (work, steps_per_s));
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

    /// Steps per second of a job of `work` pixels x frames (0: unknown
    /// size: the size-less rate).
    pub fn steps_per_s_at(&self, model: &str, flavor: &str, tp: u32, work: u64) -> f64 {
        let sizeless = || self.steps_per_s(model, flavor, tp);
        if work == 0 || self.sized.is_empty() {
            return sizeless();
        }
        let key = (model.to_string(), flavor.to_string(), tp);
        if let Some(classes) = self.sized.get(&key) {
            return interpolate(classes, work).unwrap_or_else(sizeless);
        }
        // Measured at tp 1 only: derived as the size-less rate is.
        let single = (model.to_string(), flavor.to_string(), 1);
        match self.sized.get(&single).and_then(|c| interpolate(c, work)) {
            Some(rate) => rate * f64::from(tp.max(1)).powf(TP_EFFICIENCY.log2() + 1.0),
            None => sizeless(),
        }
    }

    /// Cost of one step: devices x hourly cost / steps per hour.
    pub fn cost_per_step(&self, model: &str, flavor: &str, tp: u32) -> f64 {
        let cost = self.device_hour_cost.get(flavor).copied().unwrap_or(1.0);
        f64::from(tp.max(1)) * cost / (self.steps_per_s(model, flavor, tp) * 3600.0)
    }

    /// Folds in a step time observed on a job of `work` pixels x frames:
    /// into its size class, and into the size-less rate.
    pub fn observe_sized(
        &mut self,
        model: &str,
        flavor: &str,
        tp: u32,
        work: u64,
        seconds_per_step: f64,
    ) {
        if !(seconds_per_step.is_finite() && seconds_per_step > 0.0) {
            return;
        }
        self.observe(model, flavor, tp, seconds_per_step);
        if work == 0 {
            return;
        }
        let observed = 1.0 / seconds_per_step;
        let class = self
            .sized
            .entry((model.into(), flavor.into(), tp))
            .or_default()
            .entry(size_class(work))
            .or_insert((work, observed));
        class.0 = work;
        class.1 += OBSERVATION_WEIGHT * (observed - class.1);
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

/// A job's size class: jobs within a factor of two share one.
fn size_class(work: u64) -> u32 {
    63 - work.max(1).leading_zeros()
}

/// Steps per second at `work` from the measured sizes: seconds per step
/// linear in work between the nearest two, along the nearest segment
/// beyond them, never below a tenth of the fastest measured step.
fn interpolate(classes: &SizeClasses, work: u64) -> Option<f64> {
    let points: Vec<(f64, f64)> = classes
        .values()
        .map(|(w, rate)| (*w as f64, 1.0 / rate))
        .collect();
    let first = *points.first()?;
    if points.len() == 1 {
        return Some(1.0 / first.1);
    }
    let x = work as f64;
    let at = points
        .partition_point(|(w, _)| *w < x)
        .clamp(1, points.len() - 1);
    let ((x0, y0), (x1, y1)) = (points[at - 1], points[at]);
    // A larger video never steps faster (two noisy measurements may say
    // so; extrapolating that would make the largest jobs the fastest).
    let slope = if x1 > x0 {
        ((y1 - y0) / (x1 - x0)).max(0.0)
    } else {
        0.0
    };
    let floor = points.iter().map(|p| p.1).fold(f64::INFINITY, f64::min) / 10.0;
    let seconds = (y0 + slope * (x - x0)).max(floor);
    Some(1.0 / seconds)
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
    fn step_time_follows_the_size_between_measured_sizes() {
        let mut profile = Profile::seeded();
        let small = 64 * 64 * 17;
        let large = 1280 * 720 * 81;
        // Unmeasured sizes: the size-less rate.
        assert_eq!(
            profile.steps_per_s_at("tiny", "cpu", 1, large),
            profile.steps_per_s("tiny", "cpu", 1)
        );
        profile.set_sized("tiny", "cpu", 1, small, 10.0); // 0.1 s a step
                                                          // One measured size holds for all.
        assert_eq!(profile.steps_per_s_at("tiny", "cpu", 1, large), 10.0);
        profile.set_sized("tiny", "cpu", 1, large, 0.1); // 10 s a step
        assert_eq!(profile.steps_per_s_at("tiny", "cpu", 1, small), 10.0);
        assert!((profile.steps_per_s_at("tiny", "cpu", 1, large) - 0.1).abs() < 1e-12);
        // Halfway in work, halfway in seconds per step.
        let mid = (small + large) / 2;
        let seconds = 1.0 / profile.steps_per_s_at("tiny", "cpu", 1, mid);
        assert!((seconds - 5.05).abs() < 1e-3, "{seconds}");
        // Beyond the largest: along the last segment.
        let seconds = 1.0 / profile.steps_per_s_at("tiny", "cpu", 1, 2 * large - small);
        assert!((seconds - 19.9).abs() < 1e-3, "{seconds}");
        // tp 2 unmeasured: derived from tp 1 at the same size.
        let two = profile.steps_per_s_at("tiny", "cpu", 2, large);
        assert!((two / 0.1 - 2.0 * TP_EFFICIENCY).abs() < 1e-9);
    }

    #[test]
    fn observed_step_times_land_in_their_size_class() {
        let mut profile = Profile::default();
        for _ in 0..60 {
            profile.observe_sized("m", "gpu", 1, 100_000, 0.5);
            profile.observe_sized("m", "gpu", 1, 1_600_000, 4.0);
        }
        let rate = |work| profile.steps_per_s_at("m", "gpu", 1, work);
        assert!((rate(100_000) - 2.0).abs() < 0.01, "{}", rate(100_000));
        assert!((rate(1_600_000) - 0.25).abs() < 0.01);
        // Another job of the small class (within a factor of two) moves
        // that class, not the large one.
        assert_eq!(profile.sized_rates().count(), 2);
        profile.observe_sized("m", "gpu", 1, 150_000, f64::NAN);
        assert_eq!(profile.sized_rates().count(), 2);
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
