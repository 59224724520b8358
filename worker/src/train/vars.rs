//! A model's tensors as trainable variables, each first made from the seed
//! exactly as `genfleet model init` makes it, so that a training run is
//! reproducible from its seed.

use candle_core::{DType, Device, Shape, Tensor, Var};
use candle_nn::var_builder::SimpleBackend;
use candle_nn::{Init, VarBuilder, VarMap};

use crate::model::weights::SeededInit;

#[derive(Clone)]
pub struct SeededVars {
    init: SeededInit,
    vars: VarMap,
}

impl SeededVars {
    pub fn new(seed: u64) -> Self {
        Self {
            init: SeededInit::new(seed),
            vars: VarMap::new(),
        }
    }

    /// A builder whose every tensor is one of these variables (f32, CPU).
    pub fn builder(&self) -> VarBuilder<'static> {
        VarBuilder::from_backend(Box::new(self.clone()), DType::F32, Device::Cpu)
    }

    /// The variables, by name.
    pub fn map(&self) -> &VarMap {
        &self.vars
    }

    /// The variables whose names start with one of `prefixes`, by name in
    /// name order.
    pub fn with_prefix(&self, prefixes: &[&str]) -> Vec<(String, Var)> {
        self.filtered(|name| prefixes.iter().any(|p| name.starts_with(p)))
    }

    /// The variables whose names start with none of `prefixes`, by name in
    /// name order.
    pub fn without_prefix(&self, prefixes: &[&str]) -> Vec<(String, Var)> {
        self.filtered(|name| !prefixes.iter().any(|p| name.starts_with(p)))
    }

    fn filtered(&self, keep: impl Fn(&str) -> bool) -> Vec<(String, Var)> {
        let data = self.vars.data().lock().unwrap_or_else(|e| e.into_inner());
        let mut named: Vec<(String, Var)> = data
            .iter()
            .filter(|(name, _)| keep(name))
            .map(|(name, var)| (name.clone(), var.clone()))
            .collect();
        named.sort_by(|a, b| a.0.cmp(&b.0));
        named
    }
}

impl SeededVars {
    /// Multiplies variable `name` by `factor` in place (the model holds
    /// its storage, so the change is seen there).
    pub fn scale(&self, name: &str, factor: f64) -> candle_core::Result<()> {
        let data = self.vars.data().lock().unwrap_or_else(|e| e.into_inner());
        let Some(var) = data.get(name) else {
            candle_core::bail!("no variable {name} to scale");
        };
        var.set(&(var.as_tensor() * factor)?)
    }
}

impl SimpleBackend for SeededVars {
    fn get(
        &self,
        shape: Shape,
        name: &str,
        hint: Init,
        dtype: DType,
        device: &Device,
    ) -> candle_core::Result<Tensor> {
        let mut data = self.vars.data().lock().unwrap_or_else(|e| e.into_inner());
        if let Some(var) = data.get(name) {
            if var.shape() != &shape {
                candle_core::bail!("{name} asked as {shape:?}, made as {:?}", var.shape());
            }
            return Ok(var.as_tensor().clone());
        }
        let tensor = self.init.get(shape, name, hint, dtype, device)?;
        let var = Var::from_tensor(&tensor)?;
        data.insert(name.to_string(), var.clone());
        Ok(var.as_tensor().clone())
    }

    fn get_unchecked(
        &self,
        name: &str,
        _dtype: DType,
        _dev: &Device,
    ) -> candle_core::Result<Tensor> {
        candle_core::bail!("tensor {name} has no shape to initialize from")
    }

    fn contains_tensor(&self, name: &str) -> bool {
        let data = self.vars.data().lock().unwrap_or_else(|e| e.into_inner());
        data.contains_key(name)
    }
}
