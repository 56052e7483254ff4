//! `tessel model init --random-weights` for LongNet: `config.json` (the DecoderConfig fields)
//! and seeded random weights under torchscale's names, one file or sharded with an index, read
//! back by [`crate::checkpoint::Checkpoint::open`] exactly as a converted checkpoint is.

use std::path::Path;

use rand::{Rng, SeedableRng};

use super::config::LongNetConfig;
use super::weights::expected;
use crate::checkpoint::{encode, write, Stored, WeightError};

/// Writes `config.json` and random weights: matrices and biases uniform with standard
/// deviation `std` (`head_std` for the output projection when given), LayerNorm weights
/// 1 ± U and biases ± U (so that the tests see every norm parameter matter).
pub fn write_random(
    cfg: &LongNetConfig,
    dir: &Path,
    seed: u64,
    std: f64,
    head_std: Option<f64>,
    dtype: Stored,
    shards: usize,
) -> Result<(), WeightError> {
    std::fs::create_dir_all(dir).map_err(|source| WeightError::Io {
        path: dir.to_path_buf(),
        source,
    })?;
    let config_path = dir.join("config.json");
    let json = serde_json::to_string_pretty(&cfg.raw).expect("a config serialises");
    std::fs::write(&config_path, json).map_err(|source| WeightError::Io {
        path: config_path.clone(),
        source,
    })?;
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let tensors: Vec<(String, Vec<usize>, Vec<u8>)> = expected(cfg)
        .required
        .into_iter()
        .map(|(name, shape)| {
            let n: usize = shape.iter().product();
            let is_norm = name.contains("norm") || name.contains("inner_attn_ln");
            let sd = match (name.as_str(), head_std) {
                ("output_projection.weight", Some(s)) => s,
                _ if is_norm => 0.1,
                _ => std,
            };
            let a = sd * 3f64.sqrt();
            let base = if is_norm && name.ends_with(".weight") {
                1.0
            } else {
                0.0
            };
            let values: Vec<f64> = (0..n).map(|_| base + rng.random_range(-a..=a)).collect();
            let bytes = encode(dtype, &values);
            (name, shape, bytes)
        })
        .collect();
    write(dir, &tensors, dtype, shards)
}
