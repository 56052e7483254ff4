//! TransNormerLLM weights in the released layout: safetensors, one file (`model.safetensors`) or
//! sharded (`model.safetensors.index.json` naming each tensor's file), bf16, f16 or f32 stored.
//!
//! Files are memory-mapped and only their headers are parsed when opening: a tensor's bytes are
//! read when it is converted, one tensor at a time, so a 15B checkpoint never sits in host memory
//! whole. Opening checks the whole set against the configuration first — every expected tensor
//! present once, with its shape and a supported dtype, nothing unexpected — so a wrong directory
//! fails before anything is uploaded.

use std::path::{Path, PathBuf};

use half::{bf16, f16};
use safetensors::Dtype;

use super::config::ModelConfig;
use crate::checkpoint::{Checkpoint, Expected};

pub const SINGLE_FILE: &str = "model.safetensors";
pub const INDEX_FILE: &str = "model.safetensors.index.json";

/// Why a weight directory cannot be used; each names the file or tensor at fault.
#[derive(Debug, thiserror::Error)]
pub enum WeightError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{dir}: neither {SINGLE_FILE} nor {INDEX_FILE}")]
    NoWeights { dir: PathBuf },
    #[error("{path}: not a safetensors index: {message}")]
    Index { path: PathBuf, message: String },
    #[error("{path}: not a complete safetensors file ({message})")]
    Format { path: PathBuf, message: String },
    #[error("tensor `{name}` is missing{}", in_file(.file))]
    Missing { name: String, file: Option<PathBuf> },
    #[error("tensor `{name}` in {file} is not part of this configuration")]
    Unexpected { name: String, file: PathBuf },
    #[error("tensor `{name}` is stored twice: in {first} and {second}")]
    Duplicate {
        name: String,
        first: PathBuf,
        second: PathBuf,
    },
    #[error("tensor `{name}` has shape {got:?}, the configuration needs {want:?}")]
    Shape {
        name: String,
        want: Vec<usize>,
        got: Vec<usize>,
    },
    #[error("tensor `{name}` is stored as {dtype}; only BF16, F16 and F32 are read")]
    DType { name: String, dtype: String },
}

fn in_file(file: &Option<PathBuf>) -> String {
    file.as_ref()
        .map(|f| format!(" from {} (the index names it)", f.display()))
        .unwrap_or_default()
}

/// The element types weights may be stored in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stored {
    Bf16,
    F16,
    F32,
}

impl Stored {
    pub fn size(self) -> usize {
        match self {
            Stored::F32 => 4,
            _ => 2,
        }
    }

    pub fn safetensors(self) -> Dtype {
        match self {
            Stored::Bf16 => Dtype::BF16,
            Stored::F16 => Dtype::F16,
            Stored::F32 => Dtype::F32,
        }
    }
}

/// Every tensor the configuration needs, in file order, with its shape.
pub fn expected(cfg: &ModelConfig) -> Vec<(String, Vec<usize>)> {
    let (d, hid, f) = (cfg.dim, cfg.hidden, cfg.glu);
    let mut out = vec![("model.embed_tokens.weight".to_string(), vec![cfg.vocab, d])];
    for l in 0..cfg.layers {
        let p = format!("model.layers.{l}");
        out.push((
            format!("{p}.token_mixer.qkvu_proj.weight"),
            vec![4 * hid, d],
        ));
        out.push((format!("{p}.token_mixer.out_proj.weight"), vec![d, hid]));
        if cfg.lrpe[l] {
            out.push((
                format!("{p}.token_mixer.lrpe.theta"),
                vec![cfg.heads, 1, cfg.head_dim],
            ));
        }
        out.push((format!("{p}.channel_mixer.l1.weight"), vec![f, d]));
        out.push((format!("{p}.channel_mixer.l2.weight"), vec![f, d]));
        out.push((format!("{p}.channel_mixer.l3.weight"), vec![d, f]));
    }
    out.push(("lm_head.weight".to_string(), vec![cfg.vocab, d]));
    out
}

/// The opened, checked weights of one model directory.
#[derive(Debug)]
pub struct Weights {
    checkpoint: Checkpoint,
}

/// One tensor's stored bytes.
#[derive(Debug, Clone, Copy)]
pub struct TensorRef<'a> {
    pub dtype: Stored,
    pub shape: &'a [usize],
    pub bytes: &'a [u8],
}

impl TensorRef<'_> {
    pub fn numel(&self) -> usize {
        self.shape.iter().product()
    }

    /// The elements as f64 (exact: every stored type widens without rounding).
    pub fn to_f64(&self) -> Vec<f64> {
        let b = self.bytes;
        match self.dtype {
            Stored::Bf16 => b
                .chunks_exact(2)
                .map(|c| bf16::from_le_bytes([c[0], c[1]]).to_f64())
                .collect(),
            Stored::F16 => b
                .chunks_exact(2)
                .map(|c| f16::from_le_bytes([c[0], c[1]]).to_f64())
                .collect(),
            Stored::F32 => b
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]) as f64)
                .collect(),
        }
    }
}

impl Weights {
    /// Opens the weights of `dir` and checks them against `cfg`: the released names and shapes
    /// ([`expected`]), through the one safetensors loader every model uses.
    pub fn open(dir: &Path, cfg: &ModelConfig) -> Result<Self, WeightError> {
        let want = Expected {
            required: expected(cfg),
            optional: Vec::new(),
        };
        Ok(Self {
            checkpoint: Checkpoint::open(dir, &want)?,
        })
    }

    /// A tensor the configuration names (opening checked that all of them exist).
    pub fn tensor(&self, name: &str) -> Option<TensorRef<'_>> {
        self.checkpoint.tensor(name)
    }

    /// The files mapped, in the order read.
    pub fn files(&self) -> impl Iterator<Item = &Path> {
        self.checkpoint.files()
    }

    /// Total stored bytes of all tensors.
    pub fn stored_bytes(&self) -> usize {
        self.checkpoint.stored_bytes()
    }
}
