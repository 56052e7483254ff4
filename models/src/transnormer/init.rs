//! `tessel model init --random-weights`: a model directory in the released layout (config.json,
//! safetensors with the released tensor names, optionally sharded with an index), filled with
//! seeded random weights. Tests, demos and benchmarks use it, since no checkpoint can be
//! downloaded here; [`super::weights::Weights::open`] reads it exactly as it reads a release.

use std::path::Path;

use rand::{Rng, SeedableRng};

use super::config::ModelConfig;
use super::weights::{expected, Stored, WeightError};
use crate::checkpoint::encode;

/// How `write_random` fills the directory.
#[derive(Debug, Clone)]
pub struct InitOptions {
    pub seed: u64,
    /// Standard deviation of every matrix (uniform, so every draw is bounded); the released
    /// init uses 0.02 (`init_std`).
    pub std: f64,
    /// The standard deviation of `lm_head` when it should differ (tests widen it so that greedy
    /// choices are far from ties); `None`: `std`.
    pub head_std: Option<f64>,
    pub dtype: Stored,
    /// 1: `model.safetensors`; more: that many shards and an index.
    pub shards: usize,
}

impl Default for InitOptions {
    fn default() -> Self {
        Self {
            seed: 0,
            std: 0.02,
            head_std: None,
            dtype: Stored::Bf16,
            shards: 1,
        }
    }
}

/// LRPE's θ as the released code initialises it: 10000^(−2j/(H·d)) for j = 0..H·d−1, flattened
/// over heads.
pub fn lrpe_theta_init(heads: usize, head_dim: usize) -> Vec<f64> {
    let n = (heads * head_dim) as f64;
    (0..heads * head_dim)
        .map(|j| 10000f64.powf(-2.0 * j as f64 / n))
        .collect()
}

/// Writes `config.json` and random weights for `cfg` into `dir` (created if absent).
pub fn write_random(cfg: &ModelConfig, dir: &Path, opts: &InitOptions) -> Result<(), WeightError> {
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| WeightError::Io { path, source }
    };
    std::fs::create_dir_all(dir).map_err(io(dir))?;
    let config_path = dir.join("config.json");
    let json = serde_json::to_string_pretty(&cfg.raw).expect("a config serialises");
    std::fs::write(&config_path, json).map_err(io(&config_path))?;

    let mut rng = rand::rngs::StdRng::seed_from_u64(opts.seed);
    let tensors: Vec<(String, Vec<usize>, Vec<u8>)> = expected(cfg)
        .into_iter()
        .map(|(name, shape)| {
            let n: usize = shape.iter().product();
            let values = if name.ends_with("lrpe.theta") {
                lrpe_theta_init(cfg.heads, cfg.head_dim)
            } else {
                let std = match (&*name, opts.head_std) {
                    ("lm_head.weight", Some(s)) => s,
                    _ => opts.std,
                };
                // Uniform on ±a has standard deviation a/√3.
                let a = std * 3f64.sqrt();
                (0..n).map(|_| rng.random_range(-a..=a)).collect()
            };
            let bytes = encode(opts.dtype, &values);
            (name, shape, bytes)
        })
        .collect();

    crate::checkpoint::write(dir, &tensors, opts.dtype, opts.shards)
}
