//! TransNormerLLM weights in the released layout: safetensors, one file (`model.safetensors`) or
//! sharded (`model.safetensors.index.json` naming each tensor's file), bf16, f16 or f32 stored.
//!
//! Files are memory-mapped and only their headers are parsed when opening: a tensor's bytes are
//! read when it is converted, one tensor at a time, so a 15B checkpoint never sits in host memory
//! whole. Opening checks the whole set against the configuration first — every expected tensor
//! present once, with its shape and a supported dtype, nothing unexpected — so a wrong directory
//! fails before anything is uploaded.

use std::collections::BTreeMap;
use std::fs::File;
use std::ops::Range;
use std::path::{Path, PathBuf};

use half::{bf16, f16};
use memmap2::Mmap;
use safetensors::{Dtype, SafeTensors};

use super::config::ModelConfig;

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

#[derive(Debug)]
struct Entry {
    file: usize,
    dtype: Stored,
    shape: Vec<usize>,
    bytes: Range<usize>,
}

/// The opened, checked weights of one model directory.
#[derive(Debug)]
pub struct Weights {
    files: Vec<(PathBuf, Mmap)>,
    tensors: BTreeMap<String, Entry>,
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

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> WeightError + '_ {
    move |source| WeightError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// A tensor as a file's header describes it: name, dtype, shape, bytes within the file.
type Header = (String, Dtype, Vec<usize>, Range<usize>);

/// Maps `path` and records its tensors (header only).
fn map_file(path: &Path) -> Result<(Mmap, Vec<Header>), WeightError> {
    let file = File::open(path).map_err(io(path))?;
    // SAFETY: the map is read-only; a checkpoint modified while it is mapped is outside what any
    // loader (Hugging Face's included) defends against.
    let map = unsafe { Mmap::map(&file) }.map_err(io(path))?;
    let (header, meta) = SafeTensors::read_metadata(&map).map_err(|e| WeightError::Format {
        path: path.to_path_buf(),
        message: format!("{e:?}"),
    })?;
    let base = 8 + header;
    let list = meta
        .tensors()
        .into_iter()
        .map(|(name, info)| {
            let (a, b) = info.data_offsets;
            (name, info.dtype, info.shape.clone(), base + a..base + b)
        })
        .collect();
    Ok((map, list))
}

/// `weight_map` of a sharded checkpoint's index: tensor name → shard file name.
fn read_index(path: &Path) -> Result<BTreeMap<String, String>, WeightError> {
    let text = std::fs::read_to_string(path).map_err(io(path))?;
    let bad = |message: String| WeightError::Index {
        path: path.to_path_buf(),
        message,
    };
    let json: serde_json::Value = serde_json::from_str(&text).map_err(|e| bad(e.to_string()))?;
    let map = json
        .get("weight_map")
        .and_then(|m| m.as_object())
        .ok_or_else(|| bad("no `weight_map` object".into()))?;
    map.iter()
        .map(|(k, v)| {
            v.as_str()
                .map(|f| (k.clone(), f.to_string()))
                .ok_or_else(|| bad(format!("`{k}` maps to {v}, not a file name")))
        })
        .collect()
}

impl Weights {
    /// Opens the weights of `dir` and checks them against `cfg`.
    pub fn open(dir: &Path, cfg: &ModelConfig) -> Result<Self, WeightError> {
        let index_path = dir.join(INDEX_FILE);
        let (file_names, index) = if index_path.exists() {
            let index = read_index(&index_path)?;
            let mut names: Vec<String> = index.values().cloned().collect();
            names.sort();
            names.dedup();
            (names, Some(index))
        } else if dir.join(SINGLE_FILE).exists() {
            (vec![SINGLE_FILE.to_string()], None)
        } else {
            return Err(WeightError::NoWeights {
                dir: dir.to_path_buf(),
            });
        };
        let mut files: Vec<(PathBuf, Mmap)> = Vec::new();
        let mut tensors: BTreeMap<String, Entry> = BTreeMap::new();
        for name in &file_names {
            let path = dir.join(name);
            let (map, list) = map_file(&path)?;
            let file = files.len();
            for (tname, dtype, shape, bytes) in list {
                let dtype = match dtype {
                    Dtype::BF16 => Stored::Bf16,
                    Dtype::F16 => Stored::F16,
                    Dtype::F32 => Stored::F32,
                    other => {
                        return Err(WeightError::DType {
                            name: tname,
                            dtype: format!("{other:?}"),
                        })
                    }
                };
                if let Some(prev) = tensors.get(&tname) {
                    return Err(WeightError::Duplicate {
                        name: tname,
                        first: files[prev.file].0.clone(),
                        second: path,
                    });
                }
                let entry = Entry {
                    file,
                    dtype,
                    shape,
                    bytes,
                };
                tensors.insert(tname, entry);
            }
            files.push((path, map));
        }
        let weights = Self { files, tensors };
        weights.check(cfg, index.as_ref(), dir)?;
        Ok(weights)
    }

    fn check(
        &self,
        cfg: &ModelConfig,
        index: Option<&BTreeMap<String, String>>,
        dir: &Path,
    ) -> Result<(), WeightError> {
        let want = expected(cfg);
        for (name, shape) in &want {
            let Some(e) = self.tensors.get(name) else {
                return Err(WeightError::Missing {
                    name: name.clone(),
                    file: index.and_then(|i| i.get(name)).map(|f| dir.join(f)),
                });
            };
            if &e.shape != shape {
                return Err(WeightError::Shape {
                    name: name.clone(),
                    want: shape.clone(),
                    got: e.shape.clone(),
                });
            }
        }
        let known: std::collections::HashSet<&str> = want.iter().map(|(n, _)| n.as_str()).collect();
        if let Some((name, e)) = self
            .tensors
            .iter()
            .find(|(n, _)| !known.contains(n.as_str()))
        {
            return Err(WeightError::Unexpected {
                name: name.clone(),
                file: self.files[e.file].0.clone(),
            });
        }
        Ok(())
    }

    /// A tensor the configuration names (opening checked that all of them exist).
    pub fn tensor(&self, name: &str) -> Option<TensorRef<'_>> {
        let e = self.tensors.get(name)?;
        Some(TensorRef {
            dtype: e.dtype,
            shape: &e.shape,
            bytes: &self.files[e.file].1[e.bytes.clone()],
        })
    }

    /// The files mapped, in the order read.
    pub fn files(&self) -> impl Iterator<Item = &Path> {
        self.files.iter().map(|(p, _)| p.as_path())
    }

    /// Total stored bytes of all tensors.
    pub fn stored_bytes(&self) -> usize {
        self.tensors.values().map(|e| e.bytes.len()).sum()
    }
}
