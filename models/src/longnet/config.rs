//! LongNet's configuration: a JSON object of torchscale's `DecoderConfig` fields (the keyword
//! arguments `LongNetDecoder` is built from), checked into the shapes the graphs need.
//!
//! Fields that only matter for training (dropouts, drop_path_rate, checkpoint_activations, fsdp,
//! bert_init, ddp_rank, flash_attention, seq_parallel on one device) and unknown fields are
//! ignored. Every field that would change the math and that tessel does not implement is refused
//! by name — never computed differently in silence: `decoder_normalize_before = false` (post-norm),
//! `deepnorm`, `multiway`, `moe_freq`/`moe_expert_count` > 0, `rel_pos_buckets`/`max_rel_pos` > 0,
//! `xpos_rel_pos`, `layernorm_embedding`, `no_output_layer`, `activation_fn` other than `gelu`.
//! Positional embeddings are not part of `DecoderConfig` (torchscale passes `embed_positions` to
//! the constructor); a checkpoint carrying `embed_positions.*` is refused as an unexpected tensor.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use serde_json::Value;
use tessel_runtime::dilated::{HeadOffsets, Pattern};

/// The `DecoderConfig` fields that shape the model, at torchscale's defaults when absent
/// (`segment_length` and `dilated_ratio` have none: they must be given).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DecoderConfig {
    /// tessel's marker for `tessel generate` and friends to pick the model (`longnet`).
    #[serde(default = "d::model_type")]
    pub model_type: String,
    #[serde(default = "d::embed")]
    pub decoder_embed_dim: usize,
    #[serde(default = "d::heads")]
    pub decoder_attention_heads: usize,
    #[serde(default = "d::ffn")]
    pub decoder_ffn_embed_dim: usize,
    #[serde(default = "d::heads")]
    pub decoder_layers: usize,
    #[serde(default = "d::yes")]
    pub decoder_normalize_before: bool,
    #[serde(default = "d::gelu")]
    pub activation_fn: String,
    #[serde(default = "d::yes")]
    pub no_scale_embedding: bool,
    #[serde(default)]
    pub layernorm_embedding: bool,
    #[serde(default)]
    pub moe_freq: usize,
    #[serde(default)]
    pub moe_expert_count: usize,
    #[serde(default)]
    pub rel_pos_buckets: usize,
    #[serde(default)]
    pub max_rel_pos: usize,
    #[serde(default)]
    pub deepnorm: bool,
    #[serde(default = "d::yes")]
    pub subln: bool,
    #[serde(default)]
    pub multiway: bool,
    #[serde(default)]
    pub share_decoder_input_output_embed: bool,
    #[serde(default)]
    pub no_output_layer: bool,
    #[serde(default = "d::eps")]
    pub layernorm_eps: f64,
    #[serde(default = "d::vocab")]
    pub vocab_size: i64,
    #[serde(default)]
    pub xpos_rel_pos: bool,
    /// A list, or the string torchscale `eval`s into one (`"[2048,4096]"`).
    #[serde(default)]
    pub segment_length: Value,
    #[serde(default)]
    pub dilated_ratio: Value,
    /// tessel's: `torchscale` (⌈H/r⌉ consecutive heads share an offset, what torchscale
    /// computes; the default) or `paper` (o_h = h mod r).
    #[serde(default = "d::offsets")]
    pub head_offsets: String,
}

mod d {
    pub fn model_type() -> String {
        "longnet".into()
    }
    pub fn embed() -> usize {
        768
    }
    pub fn heads() -> usize {
        12
    }
    pub fn ffn() -> usize {
        3072
    }
    pub fn yes() -> bool {
        true
    }
    pub fn gelu() -> String {
        "gelu".into()
    }
    pub fn eps() -> f64 {
        1e-5
    }
    pub fn vocab() -> i64 {
        -1
    }
    pub fn offsets() -> String {
        "torchscale".into()
    }
}

/// Why a LongNet configuration cannot be used; each names the file or field at fault.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: not a torchscale DecoderConfig: {source}")]
    Json {
        path: PathBuf,
        source: serde_json::Error,
    },
    #[error("config field `{field}` = {value}: {why}")]
    Unsupported {
        field: &'static str,
        value: String,
        why: String,
    },
}

/// A checked configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct LongNetConfig {
    pub dim: usize,
    pub layers: usize,
    pub heads: usize,
    pub head_dim: usize,
    pub ffn: usize,
    pub vocab: usize,
    /// (segment_length[i], dilated_ratio[i]) in the file's order.
    pub patterns: Vec<Pattern>,
    pub offsets: HeadOffsets,
    pub subln: bool,
    pub scale_embedding: bool,
    pub tied: bool,
    pub eps: f64,
    /// The file's fields, for writing back (`model init`).
    pub raw: DecoderConfig,
}

fn unsupported(field: &'static str, value: impl ToString, why: &str) -> ConfigError {
    ConfigError::Unsupported {
        field,
        value: value.to_string(),
        why: why.to_string(),
    }
}

/// A list of positive integers, as JSON or as the Python literal torchscale evaluates.
fn int_list(field: &'static str, v: &Value) -> Result<Vec<usize>, ConfigError> {
    let parsed;
    let v = match v {
        Value::String(s) => {
            parsed = serde_json::from_str::<Value>(s)
                .map_err(|_| unsupported(field, format!("{s:?}"), "not a list of integers"))?;
            &parsed
        }
        Value::Null => return Err(unsupported(field, "absent", "LongNet needs a list")),
        other => other,
    };
    let items = v
        .as_array()
        .ok_or_else(|| unsupported(field, v, "not a list of integers"))?;
    items
        .iter()
        .map(|x| {
            x.as_u64()
                .filter(|n| *n >= 1 && *n <= i32::MAX as u64)
                .map(|n| n as usize)
                .ok_or_else(|| unsupported(field, v, "entries must be integers in 1..=2^31-1"))
        })
        .collect()
}

impl LongNetConfig {
    pub fn read(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        let raw: DecoderConfig =
            serde_json::from_str(&text).map_err(|source| ConfigError::Json {
                path: path.to_path_buf(),
                source,
            })?;
        Self::check(raw)
    }

    /// Refuses every option tessel does not compute (see the module docs).
    fn refuse_unsupported(raw: &DecoderConfig) -> Result<(), ConfigError> {
        let flags = [
            (
                "decoder_normalize_before",
                !raw.decoder_normalize_before,
                "post-norm blocks are not implemented (LongNet is pre-norm)",
            ),
            (
                "deepnorm",
                raw.deepnorm,
                "DeepNorm's residual scaling is not implemented",
            ),
            (
                "multiway",
                raw.multiway,
                "multiway (BEiT-3) experts are not implemented",
            ),
            (
                "xpos_rel_pos",
                raw.xpos_rel_pos,
                "xPos rotation of q and k is not implemented",
            ),
            (
                "layernorm_embedding",
                raw.layernorm_embedding,
                "a LayerNorm after the embedding is not implemented",
            ),
            (
                "no_output_layer",
                raw.no_output_layer,
                "generation needs the output projection",
            ),
        ];
        for (field, on, why) in flags {
            if on {
                let value = if field == "decoder_normalize_before" {
                    "false"
                } else {
                    "true"
                };
                return Err(unsupported(field, value, why));
            }
        }
        for (field, v, why) in [
            (
                "moe_freq",
                raw.moe_freq,
                "mixture-of-experts layers are not implemented",
            ),
            (
                "moe_expert_count",
                raw.moe_expert_count,
                "mixture-of-experts layers are not implemented",
            ),
            (
                "rel_pos_buckets",
                raw.rel_pos_buckets,
                "relative position buckets are not implemented",
            ),
            (
                "max_rel_pos",
                raw.max_rel_pos,
                "relative position buckets are not implemented",
            ),
        ] {
            if v != 0 {
                return Err(unsupported(field, v, why));
            }
        }
        if raw.activation_fn != "gelu" {
            return Err(unsupported(
                "activation_fn",
                format!("{:?}", raw.activation_fn),
                "only gelu (torch's erf form) is implemented",
            ));
        }
        Ok(())
    }

    /// The checks every value goes through, whether read from a file or built in code.
    pub fn check(raw: DecoderConfig) -> Result<Self, ConfigError> {
        if raw.model_type != "longnet" {
            return Err(unsupported(
                "model_type",
                format!("{:?}", raw.model_type),
                "a LongNet configuration says \"longnet\" (or nothing)",
            ));
        }
        Self::refuse_unsupported(&raw)?;
        for (field, v) in [
            ("decoder_embed_dim", raw.decoder_embed_dim),
            ("decoder_attention_heads", raw.decoder_attention_heads),
            ("decoder_ffn_embed_dim", raw.decoder_ffn_embed_dim),
            ("decoder_layers", raw.decoder_layers),
        ] {
            if v == 0 {
                return Err(unsupported(field, 0, "must be positive"));
            }
        }
        if raw.vocab_size <= 0 || raw.vocab_size > i32::MAX as i64 {
            return Err(unsupported(
                "vocab_size",
                raw.vocab_size,
                "must be in 1..=2^31-1 (torchscale's default, -1, builds no output layer)",
            ));
        }
        let heads = raw.decoder_attention_heads;
        let dim = raw.decoder_embed_dim;
        if !dim.is_multiple_of(heads) {
            return Err(unsupported(
                "decoder_embed_dim",
                dim,
                &format!("not a multiple of decoder_attention_heads = {heads}"),
            ));
        }
        let head_dim = dim / heads;
        if !matches!(head_dim, 16 | 32 | 64 | 128) {
            return Err(unsupported(
                "decoder_embed_dim",
                dim,
                &format!("head dim {head_dim}: the attention kernels take 16, 32, 64 or 128"),
            ));
        }
        if !(raw.layernorm_eps > 0.0 && raw.layernorm_eps.is_finite()) {
            return Err(unsupported(
                "layernorm_eps",
                raw.layernorm_eps,
                "must be positive",
            ));
        }
        let ws = int_list("segment_length", &raw.segment_length)?;
        let rs = int_list("dilated_ratio", &raw.dilated_ratio)?;
        if ws.is_empty() || ws.len() != rs.len() {
            return Err(unsupported(
                "dilated_ratio",
                format!("{rs:?}"),
                &format!("needs one entry per segment_length {ws:?} (at least one)"),
            ));
        }
        let offsets = match raw.head_offsets.as_str() {
            "torchscale" => HeadOffsets::Torchscale,
            "paper" => HeadOffsets::Paper,
            o => {
                return Err(unsupported(
                    "head_offsets",
                    format!("{o:?}"),
                    "expected \"torchscale\" or \"paper\"",
                ))
            }
        };
        Ok(Self {
            dim,
            layers: raw.decoder_layers,
            heads,
            head_dim,
            ffn: raw.decoder_ffn_embed_dim,
            vocab: raw.vocab_size as usize,
            patterns: ws
                .iter()
                .zip(&rs)
                .map(|(&w, &r)| Pattern { w, r })
                .collect(),
            offsets,
            subln: raw.subln,
            scale_embedding: !raw.no_scale_embedding,
            tied: raw.share_decoder_input_output_embed,
            eps: raw.layernorm_eps,
            raw,
        })
    }

    /// A configuration of these shapes with torchscale's defaults otherwise.
    pub fn with_shape(
        layers: usize,
        dim: usize,
        heads: usize,
        ffn: usize,
        vocab: usize,
        patterns: &[(usize, usize)],
    ) -> Result<Self, ConfigError> {
        let mut raw: DecoderConfig = serde_json::from_str("{}").expect("every field has a default");
        raw.decoder_layers = layers;
        raw.decoder_embed_dim = dim;
        raw.decoder_attention_heads = heads;
        raw.decoder_ffn_embed_dim = ffn;
        raw.vocab_size = vocab as i64;
        raw.segment_length = patterns.iter().map(|p| p.0).collect::<Vec<_>>().into();
        raw.dilated_ratio = patterns.iter().map(|p| p.1).collect::<Vec<_>>().into();
        Self::check(raw)
    }

    /// Named shapes for `model init --config`: `longnet-tiny` (CI) and `longnet-small` (GPU).
    pub fn named(name: &str) -> Option<Self> {
        let c = match name {
            "longnet-tiny" => Self::with_shape(2, 64, 2, 128, 96, &[(16, 1), (32, 2)]),
            "longnet-small" => {
                Self::with_shape(4, 512, 8, 2048, 8192, &[(256, 1), (512, 2), (1024, 4)])
            }
            "longnet-base" => Self::with_shape(
                12,
                768,
                12,
                3072,
                32000,
                &[(2048, 1), (4096, 2), (8192, 4), (16384, 8)],
            ),
            _ => return None,
        };
        Some(c.expect("named shapes are valid"))
    }
}

/// Whether `what` names a LongNet configuration: a named shape, or a config.json (or a
/// directory holding one) that says `"model_type": "longnet"` or has torchscale's
/// `segment_length` (TransNormerLLM configurations have neither).
pub fn is_longnet(what: &str) -> bool {
    if LongNetConfig::named(what).is_some() {
        return true;
    }
    let p = Path::new(what);
    let file = if p.is_dir() {
        p.join("config.json")
    } else {
        p.to_path_buf()
    };
    let Ok(text) = std::fs::read_to_string(file) else {
        return false;
    };
    let Ok(v) = serde_json::from_str::<Value>(&text) else {
        return false;
    };
    v.get("model_type").and_then(Value::as_str) == Some("longnet")
        || v.get("segment_length").is_some()
}

/// The configuration `what` names: a named shape, a config.json, or a directory holding one.
pub fn resolve(what: &str) -> Result<LongNetConfig, ConfigError> {
    if let Some(c) = LongNetConfig::named(what) {
        return Ok(c);
    }
    let p = Path::new(what);
    LongNetConfig::read(&if p.is_dir() {
        p.join("config.json")
    } else {
        p.to_path_buf()
    })
}
