//! TransNormerLLM's `config.json`, as the released checkpoints write it (Hugging Face's
//! `TransnormerConfig`), checked into the shapes the model needs.
//!
//! Fields the model does not read (`architectures`, `auto_map`, `torch_dtype`, `use_cache`, ...)
//! are ignored, as Hugging Face does; a field that changes the math and that tessel does not
//! implement is refused by name rather than silently computed differently.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// The fields of `TransnormerConfig` that shape the model, with its defaults (those of the
/// 385M checkpoint) for the ones a `config.json` leaves out.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TransnormerConfig {
    #[serde(default = "d::embed")]
    pub decoder_embed_dim: usize,
    #[serde(default = "d::layers")]
    pub decoder_layers: usize,
    #[serde(default = "d::heads")]
    pub decoder_attention_heads: usize,
    #[serde(default = "d::embed")]
    pub hidden_dim: usize,
    #[serde(default = "d::glu")]
    pub glu_dim: usize,
    #[serde(default = "d::vocab")]
    pub vocab_size: usize,
    /// One 0/1 flag per layer (an empty list: no LRPE anywhere).
    #[serde(default)]
    pub linear_use_lrpe_list: Vec<u8>,
    #[serde(default)]
    pub no_scale_embedding: bool,
    #[serde(default = "d::norm")]
    pub norm_type: String,
    #[serde(default = "d::act")]
    pub linear_act_fun: String,
    #[serde(default)]
    pub bias: bool,
    #[serde(default)]
    pub pad_token_id: u32,
    #[serde(default = "d::bos")]
    pub bos_token_id: u32,
    #[serde(default = "d::eos")]
    pub eos_token_id: u32,
    #[serde(default = "d::init_std")]
    pub init_std: f64,
    /// What `model init` records; not read by the model.
    #[serde(default = "d::model_type")]
    pub model_type: String,
}

mod d {
    pub fn embed() -> usize {
        1024
    }
    pub fn layers() -> usize {
        24
    }
    pub fn heads() -> usize {
        8
    }
    pub fn glu() -> usize {
        2816
    }
    pub fn vocab() -> usize {
        64000
    }
    pub fn norm() -> String {
        "simplermsnorm".into()
    }
    pub fn act() -> String {
        "silu".into()
    }
    pub fn bos() -> u32 {
        1
    }
    pub fn eos() -> u32 {
        2
    }
    pub fn init_std() -> f64 {
        0.02
    }
    pub fn model_type() -> String {
        "transnormer".into()
    }
}

/// Why a configuration cannot be used; each names the file or field at fault.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: not a TransnormerConfig: {source}")]
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

/// A checked configuration: every dimension the kernels and the weight names need.
#[derive(Debug, Clone, PartialEq)]
pub struct ModelConfig {
    /// D: the residual width.
    pub dim: usize,
    pub layers: usize,
    pub heads: usize,
    /// The token mixer's inner width (q, k, v, u are each this wide).
    pub hidden: usize,
    pub head_dim: usize,
    /// F: the channel mixer's inner width.
    pub glu: usize,
    pub vocab: usize,
    /// Per layer: whether LRPE rotates q and k (the key width is then 2·head_dim).
    pub lrpe: Vec<bool>,
    pub scale_embedding: bool,
    pub bos: u32,
    pub eos: u32,
    /// The file's fields, for writing back (`model init`).
    pub raw: TransnormerConfig,
}

impl ModelConfig {
    /// Reads and checks `path` (a `config.json`).
    pub fn read(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        let raw: TransnormerConfig =
            serde_json::from_str(&text).map_err(|source| ConfigError::Json {
                path: path.to_path_buf(),
                source,
            })?;
        Self::check(raw)
    }

    /// The checks every value goes through, whether read from a file or built in code.
    pub fn check(raw: TransnormerConfig) -> Result<Self, ConfigError> {
        let unsupported =
            |field: &'static str, value: String, why: &str| ConfigError::Unsupported {
                field,
                value,
                why: why.to_string(),
            };
        if raw.norm_type != "simplermsnorm" {
            return Err(unsupported(
                "norm_type",
                format!("{:?}", raw.norm_type),
                "only simplermsnorm (what every released checkpoint uses) is implemented",
            ));
        }
        if !matches!(raw.linear_act_fun.as_str(), "silu" | "swish") {
            return Err(unsupported(
                "linear_act_fun",
                format!("{:?}", raw.linear_act_fun),
                "only silu (also spelled swish) is implemented",
            ));
        }
        if raw.bias {
            return Err(unsupported(
                "bias",
                "true".into(),
                "the released checkpoints have no biases and the kernels add none",
            ));
        }
        for (field, v) in [
            ("decoder_embed_dim", raw.decoder_embed_dim),
            ("decoder_layers", raw.decoder_layers),
            ("decoder_attention_heads", raw.decoder_attention_heads),
            ("hidden_dim", raw.hidden_dim),
            ("glu_dim", raw.glu_dim),
            ("vocab_size", raw.vocab_size),
        ] {
            if v == 0 {
                return Err(unsupported(field, "0".into(), "must be positive"));
            }
        }
        let heads = raw.decoder_attention_heads;
        if !raw.hidden_dim.is_multiple_of(heads) {
            return Err(unsupported(
                "hidden_dim",
                raw.hidden_dim.to_string(),
                &format!("not a multiple of decoder_attention_heads = {heads}"),
            ));
        }
        let head_dim = raw.hidden_dim / heads;
        if !matches!(head_dim, 16 | 32 | 64 | 128) {
            return Err(unsupported(
                "hidden_dim",
                raw.hidden_dim.to_string(),
                &format!(
                    "head dim {head_dim}: the Lightning kernels are built for 16, 32, 64 or 128"
                ),
            ));
        }
        let lrpe = match raw.linear_use_lrpe_list.len() {
            0 => vec![false; raw.decoder_layers],
            n if n == raw.decoder_layers => {
                if let Some(bad) = raw.linear_use_lrpe_list.iter().find(|f| **f > 1) {
                    return Err(unsupported(
                        "linear_use_lrpe_list",
                        bad.to_string(),
                        "entries are 0 or 1",
                    ));
                }
                raw.linear_use_lrpe_list.iter().map(|f| *f == 1).collect()
            }
            n => {
                return Err(unsupported(
                    "linear_use_lrpe_list",
                    format!("{n} entries"),
                    &format!("one per layer: decoder_layers = {}", raw.decoder_layers),
                ))
            }
        };
        if raw.vocab_size > i32::MAX as usize {
            return Err(unsupported(
                "vocab_size",
                raw.vocab_size.to_string(),
                "token ids are i32 on the device",
            ));
        }
        Ok(Self {
            dim: raw.decoder_embed_dim,
            layers: raw.decoder_layers,
            heads,
            hidden: raw.hidden_dim,
            head_dim,
            glu: raw.glu_dim,
            vocab: raw.vocab_size,
            lrpe,
            scale_embedding: !raw.no_scale_embedding,
            bos: raw.bos_token_id,
            eos: raw.eos_token_id,
            raw,
        })
    }

    /// The key (and query) width the Lightning kernels see in `layer`: LRPE doubles it.
    pub fn key_dim(&self, layer: usize) -> usize {
        if self.lrpe[layer] {
            2 * self.head_dim
        } else {
            self.head_dim
        }
    }

    /// A configuration of the given shape with every other field at its released value.
    pub fn with_shape(
        layers: usize,
        dim: usize,
        heads: usize,
        glu: usize,
        vocab: usize,
        lrpe_layers: &[usize],
    ) -> Result<Self, ConfigError> {
        let mut raw: TransnormerConfig = serde_json::from_str("{}").expect("all fields default");
        raw.decoder_layers = layers;
        raw.decoder_embed_dim = dim;
        raw.hidden_dim = dim;
        raw.decoder_attention_heads = heads;
        raw.glu_dim = glu;
        raw.vocab_size = vocab;
        raw.linear_use_lrpe_list = (0..layers)
            .map(|l| u8::from(lrpe_layers.contains(&l)))
            .collect();
        Self::check(raw)
    }

    /// The released shapes by name (ALGORITHMS.md §2): `385m`, `1b`, `7b`, `tnl2-3b`, `tnl3-15b`,
    /// LRPE in layer 0.
    pub fn released(name: &str) -> Option<Self> {
        let (l, d, h, f, v) = match name {
            "385m" => (24, 1024, 8, 2816, 64000),
            "1b" => (16, 2048, 16, 5632, 64000),
            "7b" => (30, 4096, 32, 11008, 64000),
            "tnl2-3b" => (32, 2560, 20, 6912, 64000),
            "tnl3-15b" => (42, 5120, 40, 15360, 100280),
            _ => return None,
        };
        let mut c = Self::with_shape(l, d, h, f, v, &[0]).ok()?;
        if name == "7b" {
            c.raw.no_scale_embedding = true;
            c.scale_embedding = false;
        }
        Some(c)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(json: &str) -> Result<ModelConfig, ConfigError> {
        ModelConfig::check(serde_json::from_str(json).expect("valid json"))
    }

    #[test]
    fn a_released_style_config_parses_with_unknown_fields_ignored() {
        let c = parse(
            r#"{"architectures": ["TransnormerForCausalLM"], "auto_map": {"AutoConfig": "x"},
                "decoder_embed_dim": 2048, "decoder_layers": 16, "decoder_attention_heads": 16,
                "hidden_dim": 2048, "glu_dim": 5632, "vocab_size": 64000, "linear_act_fun": "swish",
                "linear_use_lrpe_list": [1,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0], "torch_dtype": "bfloat16"}"#,
        )
        .unwrap();
        assert_eq!((c.dim, c.layers, c.heads, c.head_dim), (2048, 16, 16, 128));
        assert_eq!(c.key_dim(0), 256);
        assert_eq!(c.key_dim(1), 128);
        assert!(c.scale_embedding);
        assert_eq!(c.lrpe.iter().filter(|x| **x).count(), 1);
    }

    #[test]
    fn defaults_are_the_385m_shape() {
        let c = parse("{}").unwrap();
        assert_eq!(
            c,
            ModelConfig::released("385m")
                .map(|mut c| {
                    c.lrpe = vec![false; 24];
                    c.raw.linear_use_lrpe_list.clear();
                    c
                })
                .unwrap()
        );
    }

    fn refused(json: &str, field: &str) {
        match parse(json) {
            Err(ConfigError::Unsupported { field: f, .. }) => assert_eq!(f, field, "{json}"),
            other => panic!("{json}: expected a refusal of {field}, got {other:?}"),
        }
    }

    #[test]
    fn unsupported_values_are_refused_by_field() {
        refused(r#"{"norm_type": "layernorm"}"#, "norm_type");
        refused(r#"{"linear_act_fun": "relu"}"#, "linear_act_fun");
        refused(r#"{"bias": true}"#, "bias");
        refused(r#"{"hidden_dim": 1000}"#, "hidden_dim");
        refused(
            r#"{"hidden_dim": 2048, "decoder_attention_heads": 4}"#,
            "hidden_dim",
        );
        refused(
            r#"{"decoder_layers": 2, "linear_use_lrpe_list": [1]}"#,
            "linear_use_lrpe_list",
        );
        refused(
            r#"{"decoder_layers": 1, "linear_use_lrpe_list": [2]}"#,
            "linear_use_lrpe_list",
        );
        refused(r#"{"vocab_size": 0}"#, "vocab_size");
    }

    #[test]
    fn a_file_that_is_not_a_config_names_itself() {
        let dir = std::env::temp_dir().join(format!("tnl-config-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("config.json");
        std::fs::write(&path, r#"{"decoder_layers": "many"}"#).unwrap();
        let err = ModelConfig::read(&path).unwrap_err();
        assert!(matches!(err, ConfigError::Json { .. }), "{err}");
        assert!(err.to_string().contains("config.json"), "{err}");
        let err = ModelConfig::read(&dir.join("absent.json")).unwrap_err();
        assert!(matches!(err, ConfigError::Io { .. }), "{err}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn released_shapes_include_non_power_of_two_heads() {
        let c = ModelConfig::released("tnl2-3b").unwrap();
        assert_eq!((c.heads, c.head_dim), (20, 128));
        assert!(!ModelConfig::released("7b").unwrap().scale_embedding);
        assert!(ModelConfig::released("nope").is_none());
    }
}
