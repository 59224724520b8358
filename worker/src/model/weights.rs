//! Model directories: `<root>/<model>/config.json` and `model.safetensors`.
//!
//! No weights are downloaded. `genfleet model init` makes them: the model is
//! built once over [`SeededInit`], a var-builder backend that creates every
//! tensor from the seed and the tensor's name, and the result is saved.
//! Loading builds the same model over the saved tensors, so a file that does
//! not match its config fails with the name of the first tensor that differs.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use candle_core::{DType, Device, Shape, Tensor};
use candle_nn::init::NormalOrUniform;
use candle_nn::var_builder::{ShardedSafeTensors, ShardedVarBuilder, SimpleBackend};
use candle_nn::{Init, VarBuilder};
use serde::{Deserialize, Serialize};

use super::config::{ModelConfig, PRESETS};
use super::ModelError;
use crate::rng::SeededRng;

pub const CONFIG_FILE: &str = "config.json";
pub const WEIGHTS_FILE: &str = "model.safetensors";
const FORMAT: u32 = 1;

/// What `config.json` holds.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ModelManifest {
    pub format: u32,
    /// The seed the weights were made from, or trained from.
    pub seed: u64,
    /// Trained (by `genfleet model train`), not made from the seed.
    #[serde(default)]
    pub trained: bool,
    pub parameters: usize,
    pub config: ModelConfig,
}

/// Creates each tensor deterministically from (seed, name) and remembers it.
#[derive(Clone)]
pub struct SeededInit {
    seed: u64,
    made: Arc<Mutex<HashMap<String, Tensor>>>,
}

impl SeededInit {
    pub fn new(seed: u64) -> Self {
        Self {
            seed,
            made: Arc::default(),
        }
    }

    /// Every tensor created so far, by name.
    pub fn tensors(&self) -> HashMap<String, Tensor> {
        self.made.lock().map(|m| m.clone()).unwrap_or_default()
    }

    fn values(&self, shape: &Shape, name: &str, init: Init) -> Vec<f32> {
        let n = shape.elem_count();
        let mut rng = SeededRng::for_name(self.seed, name);
        let mut normal = |mean: f64, std: f64| -> Vec<f32> {
            (0..n).map(|_| (mean + std * rng.normal()) as f32).collect()
        };
        match init {
            Init::Const(c) => vec![c as f32; n],
            Init::Randn { mean, stdev } => normal(mean, stdev),
            Init::Uniform { lo, up } => {
                let mut rng = SeededRng::for_name(self.seed, name);
                (0..n)
                    .map(|_| (lo + (up - lo) * rng.uniform()) as f32)
                    .collect()
            }
            Init::Kaiming {
                dist,
                fan,
                non_linearity,
            } => {
                let std = non_linearity.gain() / (fan.for_shape(shape) as f64).sqrt();
                match dist {
                    NormalOrUniform::Normal => normal(0.0, std),
                    NormalOrUniform::Uniform => {
                        let bound = 3f64.sqrt() * std;
                        let mut rng = SeededRng::for_name(self.seed, name);
                        (0..n)
                            .map(|_| (bound * (2.0 * rng.uniform() - 1.0)) as f32)
                            .collect()
                    }
                }
            }
        }
    }
}

impl SimpleBackend for SeededInit {
    fn get(
        &self,
        s: Shape,
        name: &str,
        h: Init,
        dtype: DType,
        dev: &Device,
    ) -> candle_core::Result<Tensor> {
        let tensor = Tensor::from_vec(self.values(&s, name, h), s, dev)?.to_dtype(dtype)?;
        if let Ok(mut made) = self.made.lock() {
            made.insert(name.to_string(), tensor.clone());
        }
        Ok(tensor)
    }

    fn get_unchecked(
        &self,
        name: &str,
        _dtype: DType,
        _dev: &Device,
    ) -> candle_core::Result<Tensor> {
        candle_core::bail!("tensor {name} has no shape to initialize from")
    }

    fn contains_tensor(&self, _name: &str) -> bool {
        false
    }
}

/// The directory of model `name` under `root`.
pub fn model_dir(root: &Path, name: &str) -> PathBuf {
    root.join(name)
}

/// Result of [`init_model`].
#[derive(Debug, Clone)]
pub struct InitReport {
    pub dir: PathBuf,
    pub parameters: usize,
    /// False if the model was already there and left alone.
    pub created: bool,
}

/// How a model's weights were made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// From this seed, by `genfleet model init`.
    Seeded(u64),
    /// By `genfleet model train`, from this seed.
    Trained(u64),
}

/// Creates the weights of preset `preset` under `root`, unless they exist
/// already (then nothing is written unless `overwrite`): the shipped
/// trained weights for a preset that has them, else weights made from
/// `seed`.
pub fn init_model(
    root: &Path,
    preset: &str,
    seed: u64,
    overwrite: bool,
) -> Result<InitReport, ModelError> {
    let config = ModelConfig::preset(preset).ok_or_else(|| ModelError::UnknownPreset {
        name: preset.to_string(),
        known: PRESETS.join(", "),
    })?;
    let dir = model_dir(root, preset);
    if !overwrite && dir.join(CONFIG_FILE).exists() {
        let manifest = read_manifest(&dir)?;
        return Ok(InitReport {
            dir,
            parameters: manifest.parameters,
            created: false,
        });
    }
    if let Some((bytes, seed)) = super::shipped::weights(preset) {
        let tensors = candle_core::safetensors::load_buffer(bytes, &Device::Cpu)?;
        return save_model(root, preset, Origin::Trained(seed), &config, &tensors);
    }
    let init = SeededInit::new(seed);
    let vb = VarBuilder::from_backend(Box::new(init.clone()), DType::F32, Device::Cpu);
    super::Pipeline::build(&config, vb)?;
    save_model(root, preset, Origin::Seeded(seed), &config, &init.tensors())
}

/// The error of an I/O step on `path`, naming it.
pub(crate) fn io_error(path: &Path) -> impl FnOnce(std::io::Error) -> ModelError + '_ {
    move |source| ModelError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Writes `path` by `write`-ing `<path>.partial` and renaming it over
/// `path`: a crash leaves the old file or the new one, never half of one.
pub(crate) fn replace_file(
    path: &Path,
    write: impl FnOnce(&Path) -> Result<(), ModelError>,
) -> Result<(), ModelError> {
    let mut partial = path.as_os_str().to_owned();
    partial.push(".partial");
    let partial = PathBuf::from(partial);
    write(&partial)?;
    std::fs::rename(&partial, path).map_err(io_error(path))
}

/// Writes model `name` under `root`: its tensors, then its config (a
/// model is complete once config.json exists). Replaces what was there.
pub fn save_model(
    root: &Path,
    name: &str,
    origin: Origin,
    config: &ModelConfig,
    tensors: &HashMap<String, Tensor>,
) -> Result<InitReport, ModelError> {
    let dir = model_dir(root, name);
    std::fs::create_dir_all(&dir).map_err(io_error(&dir))?;
    let parameters = tensors.values().map(|t| t.elem_count()).sum();
    replace_file(&dir.join(WEIGHTS_FILE), |partial| {
        Ok(candle_core::safetensors::save(tensors, partial)?)
    })?;
    let (seed, trained) = match origin {
        Origin::Seeded(seed) => (seed, false),
        Origin::Trained(seed) => (seed, true),
    };
    let manifest = ModelManifest {
        format: FORMAT,
        seed,
        trained,
        parameters,
        config: config.clone(),
    };
    let json = serde_json::to_vec_pretty(&manifest).map_err(|e| ModelError::BadFile {
        path: dir.join(CONFIG_FILE),
        why: e.to_string(),
    })?;
    let config_path = dir.join(CONFIG_FILE);
    std::fs::write(&config_path, json).map_err(io_error(&config_path))?;
    Ok(InitReport {
        dir,
        parameters,
        created: true,
    })
}

pub fn read_manifest(dir: &Path) -> Result<ModelManifest, ModelError> {
    let path = dir.join(CONFIG_FILE);
    let bytes = std::fs::read(&path).map_err(|source| ModelError::Io {
        path: path.clone(),
        source,
    })?;
    let manifest: ModelManifest =
        serde_json::from_slice(&bytes).map_err(|e| ModelError::BadFile {
            path: path.clone(),
            why: e.to_string(),
        })?;
    if manifest.format != FORMAT {
        return Err(ModelError::BadFile {
            path,
            why: format!("format {} is not {FORMAT}", manifest.format),
        });
    }
    manifest
        .config
        .validate()
        .map_err(|e| ModelError::BadFile {
            path,
            why: e.to_string(),
        })?;
    Ok(manifest)
}

/// Loads the weights of the model in `dir` onto `device`.
pub fn load_weights(
    dir: &Path,
    device: &Device,
) -> Result<(ModelManifest, VarBuilder<'static>), ModelError> {
    let manifest = read_manifest(dir)?;
    let path = dir.join(WEIGHTS_FILE);
    // Read to host memory: each tensor then moves to `device` already in
    // its dtype, one at a time, instead of the whole f32 file landing there.
    let tensors =
        candle_core::safetensors::load(&path, &Device::Cpu).map_err(|e| ModelError::BadFile {
            path: path.clone(),
            why: e.to_string(),
        })?;
    let dtype = manifest.config.dtype_on(device);
    Ok((manifest, VarBuilder::from_tensors(tensors, dtype, device)))
}

/// Opens the weights of the model in `dir` for a tensor-parallel rank:
/// memory-mapped, so each rank reads only the tensors (and, through the
/// sharded builder, the slices) it keeps.
pub fn open_sharded(
    dir: &Path,
    device: &Device,
) -> Result<
    (
        ModelManifest,
        VarBuilder<'static>,
        ShardedVarBuilder<'static>,
    ),
    ModelError,
> {
    let manifest = read_manifest(dir)?;
    let path = dir.join(WEIGHTS_FILE);
    let bad = |e: candle_core::Error| ModelError::BadFile {
        path: path.clone(),
        why: e.to_string(),
    };
    // SAFETY: a weights file is written whole beside its final name and
    // renamed into place, never changed in place, so the mapping does not
    // change under the reader (a replaced file keeps its old inode mapped).
    let dtype = manifest.config.dtype_on(device);
    let (vb, shards) = unsafe {
        (
            VarBuilder::from_mmaped_safetensors(&[&path], dtype, device).map_err(bad)?,
            ShardedSafeTensors::var_builder(&[&path], dtype, device).map_err(bad)?,
        )
    };
    Ok((manifest, vb, shards))
}

/// Names of the complete models under `root`, sorted.
pub fn available_models(root: &Path) -> Vec<String> {
    let Ok(entries) = std::fs::read_dir(root) else {
        return Vec::new();
    };
    let mut names: Vec<String> = entries
        .filter_map(|e| e.ok())
        .filter(|e| e.path().join(CONFIG_FILE).is_file() && e.path().join(WEIGHTS_FILE).is_file())
        .filter_map(|e| e.file_name().into_string().ok())
        .collect();
    names.sort();
    names
}
