//! Adam (Kingma and Ba, 2015) with its moments in the open: a checkpoint
//! holds them, so a run that resumes continues exactly as an uninterrupted
//! one would. candle-nn's AdamW computes the same update but keeps its
//! moments private, and a resumed run restarted them.

use std::collections::HashMap;

use candle_core::{Result, Tensor, Var};

const BETA1: f64 = 0.9;
const BETA2: f64 = 0.999;
const EPS: f64 = 1e-8;

/// One variable and its first and second moments.
struct Slot {
    name: String,
    var: Var,
    m: Tensor,
    v: Tensor,
}

pub struct Adam {
    slots: Vec<Slot>,
    /// Steps taken: the bias correction's t.
    steps: u64,
    lr: f64,
}

impl Adam {
    pub fn new(vars: Vec<(String, Var)>, lr: f64) -> Result<Self> {
        let slots = vars
            .into_iter()
            .map(|(name, var)| {
                let zeros = var.as_tensor().zeros_like()?;
                Ok(Slot {
                    name,
                    m: zeros.clone(),
                    v: zeros,
                    var,
                })
            })
            .collect::<Result<_>>()?;
        Ok(Self {
            slots,
            steps: 0,
            lr,
        })
    }

    /// Takes the gradient of `loss` and moves every variable one step.
    pub fn backward_step(&mut self, loss: &Tensor) -> Result<()> {
        let grads = loss.backward()?;
        self.steps += 1;
        let t = i32::try_from(self.steps).unwrap_or(i32::MAX);
        let (c1, c2) = (1.0 - BETA1.powi(t), 1.0 - BETA2.powi(t));
        for slot in &mut self.slots {
            let Some(g) = grads.get(&slot.var) else {
                continue;
            };
            // A gradient remembers the graph it was computed through; a
            // moment built on it would keep every step's graph, and with
            // it every step's activations, alive (gigabytes a minute).
            // Detached, it makes moments that hold no graph either.
            let g = g.detach();
            slot.m = ((&slot.m * BETA1)? + (&g * (1.0 - BETA1))?)?;
            slot.v = ((&slot.v * BETA2)? + (g.sqr()? * (1.0 - BETA2))?)?;
            let step = ((&slot.m / c1)? / ((&slot.v / c2)?.sqrt()? + EPS)?)?;
            slot.var
                .set(&slot.var.as_tensor().sub(&(step * self.lr)?)?)?;
        }
        Ok(())
    }

    /// Steps taken so far.
    pub fn steps(&self) -> u64 {
        self.steps
    }

    /// The moments, as `<prefix><variable>.m` and `.v`.
    pub fn moments(&self, prefix: &str) -> HashMap<String, Tensor> {
        self.slots
            .iter()
            .flat_map(|s| {
                [
                    (format!("{prefix}{}.m", s.name), s.m.clone()),
                    (format!("{prefix}{}.v", s.name), s.v.clone()),
                ]
            })
            .collect()
    }

    /// Takes up moments saved by [`Self::moments`] after `steps` steps;
    /// the name of the first one missing or of another shape otherwise.
    pub fn restore(
        &mut self,
        saved: &HashMap<String, Tensor>,
        prefix: &str,
        steps: u64,
    ) -> std::result::Result<(), String> {
        for slot in &mut self.slots {
            for (suffix, moment) in [("m", &mut slot.m), ("v", &mut slot.v)] {
                let name = format!("{prefix}{}.{suffix}", slot.name);
                match saved.get(&name) {
                    Some(t) if t.shape() == moment.shape() => *moment = t.clone(),
                    Some(t) => return Err(format!("{name} has shape {:?}", t.shape())),
                    None => return Err(format!("no tensor {name}")),
                }
            }
        }
        self.steps = steps;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    /// The same update as candle-nn's AdamW without weight decay.
    #[test]
    fn steps_as_candles_adamw_does() {
        use candle_nn::Optimizer;
        let start = Tensor::new(&[1.0f32, -2.0, 0.5], &Device::Cpu).expect("start");
        let ours = Var::from_tensor(&start).expect("var");
        let theirs = Var::from_tensor(&start).expect("var");
        let mut adam = Adam::new(vec![("x".into(), ours.clone())], 0.1).expect("adam");
        let params = candle_nn::ParamsAdamW {
            lr: 0.1,
            weight_decay: 0.0,
            ..Default::default()
        };
        let mut reference = candle_nn::AdamW::new(vec![theirs.clone()], params).expect("adamw");
        for _ in 0..5 {
            let loss = |x: &Var| x.as_tensor().sqr().and_then(|s| s.sum_all()).expect("loss");
            adam.backward_step(&loss(&ours)).expect("step");
            reference.backward_step(&loss(&theirs)).expect("step");
        }
        let a: Vec<f32> = ours.as_tensor().to_vec1().expect("ours");
        let b: Vec<f32> = theirs.as_tensor().to_vec1().expect("theirs");
        for (x, y) in a.iter().zip(&b) {
            assert!((x - y).abs() < 1e-6, "{a:?} vs {b:?}");
        }
        assert_eq!(adam.steps(), 5);
    }

    /// A moment that kept its gradient's graph would hold every step's
    /// activations alive: a training run grew by gigabytes a minute until
    /// the kernel killed it.
    #[test]
    fn moments_hold_no_graph_from_step_to_step() {
        let x =
            Var::from_tensor(&Tensor::new(&[1.0f32, -2.0], &Device::Cpu).expect("x")).expect("var");
        let mut adam = Adam::new(vec![("x".into(), x.clone())], 0.1).expect("adam");
        for _ in 0..2 {
            let loss = (x.as_tensor().exp().expect("exp") * 3.0)
                .and_then(|t| t.sum_all())
                .expect("loss");
            adam.backward_step(&loss).expect("step");
        }
        for (name, moment) in adam.moments("") {
            assert!(!moment.track_op(), "moment {name} keeps a graph");
        }
    }
}
