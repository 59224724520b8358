//! Flow-matching sampling (Lipman et al., 2023; Esser et al., 2024 for the
//! timestep shift) with classifier-free guidance (Ho and Salimans, 2022).
//!
//! The latent moves from noise at sigma = 1 to data at sigma = 0 along the
//! predicted velocity v = noise - data: x <- x + (sigma_next - sigma) * v.

/// Sigmas of a run: `steps + 1` values from 1 down to 0, shifted towards
/// high noise by `shift` as in Wan2.1 and SD3: s' = shift*s / (1 + (shift-1)*s).
#[derive(Debug, Clone, PartialEq)]
pub struct FlowSchedule {
    sigmas: Vec<f64>,
}

/// Training timesteps the model's time embedding is scaled to.
pub const TRAIN_TIMESTEPS: f64 = 1000.0;

/// Moves a noise level `s` in [0, 1] towards high noise by `shift`.
pub fn shifted(s: f64, shift: f64) -> f64 {
    shift * s / (1.0 + (shift - 1.0) * s)
}

impl FlowSchedule {
    pub fn new(steps: usize, shift: f64) -> Self {
        let sigmas = (0..=steps)
            .map(|i| shifted(1.0 - i as f64 / steps as f64, shift))
            .collect();
        Self { sigmas }
    }

    pub fn steps(&self) -> usize {
        self.sigmas.len() - 1
    }

    /// Model timestep of step `i`.
    pub fn timestep(&self, i: usize) -> f64 {
        self.sigmas[i] * TRAIN_TIMESTEPS
    }

    /// The noise level after `i` steps: 1 at the start, 0 at the end.
    pub fn sigma(&self, i: usize) -> f64 {
        self.sigmas[i]
    }

    /// sigma_{i+1} - sigma_i: the (negative) Euler step size of step `i`.
    pub fn delta(&self, i: usize) -> f64 {
        self.sigmas[i + 1] - self.sigmas[i]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schedule_runs_from_noise_to_data_monotonically() {
        let s = FlowSchedule::new(10, 5.0);
        assert_eq!(s.steps(), 10);
        assert_eq!(s.timestep(0), 1000.0);
        assert_eq!(s.sigmas[10], 0.0);
        assert!(s.sigmas.windows(2).all(|w| w[1] < w[0]));
        let total: f64 = (0..10).map(|i| s.delta(i)).sum();
        assert!((total + 1.0).abs() < 1e-12, "deltas sum to -1: {total}");
        // A shift above 1 spends more of the run at high noise.
        assert!(s.sigmas[5] > 0.5);
    }
}
