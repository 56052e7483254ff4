//! Safetensors checkpoints checked against a list of expected tensors, for models whose names
//! and shapes are not TransNormerLLM's: one file (`model.safetensors`) or shards named by
//! `model.safetensors.index.json`, memory-mapped, headers parsed at open, bytes read one tensor
//! at a time. The errors, stored dtypes and tensor views are [`crate::transnormer::weights`]'
//! (one vocabulary of refusals for every model); the layout rules are the same.

use std::collections::BTreeMap;
use std::fs::File;
use std::ops::Range;
use std::path::{Path, PathBuf};

use half::{bf16, f16};
use memmap2::Mmap;
use safetensors::tensor::TensorView;
use safetensors::{Dtype, SafeTensors};

pub use crate::transnormer::weights::{Stored, TensorRef, WeightError, INDEX_FILE, SINGLE_FILE};

/// What a checkpoint must hold: each tensor's name and shape. `optional` ones may be absent
/// (checked for shape when present).
#[derive(Debug, Clone, Default)]
pub struct Expected {
    pub required: Vec<(String, Vec<usize>)>,
    pub optional: Vec<(String, Vec<usize>)>,
}

#[derive(Debug)]
struct Entry {
    file: usize,
    dtype: Stored,
    shape: Vec<usize>,
    bytes: Range<usize>,
}

/// The opened, checked tensors of one model directory.
#[derive(Debug)]
pub struct Checkpoint {
    files: Vec<(PathBuf, Mmap)>,
    tensors: BTreeMap<String, Entry>,
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> WeightError + '_ {
    move |source| WeightError::Io {
        path: path.to_path_buf(),
        source,
    }
}

fn stored(name: &str, dtype: Dtype) -> Result<Stored, WeightError> {
    match dtype {
        Dtype::BF16 => Ok(Stored::Bf16),
        Dtype::F16 => Ok(Stored::F16),
        Dtype::F32 => Ok(Stored::F32),
        other => Err(WeightError::DType {
            name: name.to_string(),
            dtype: format!("{other:?}"),
        }),
    }
}

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

impl Checkpoint {
    /// Opens the safetensors of `dir` and checks them against `want`: every required tensor
    /// present once with its shape, nothing unexpected, a supported dtype.
    pub fn open(dir: &Path, want: &Expected) -> Result<Self, WeightError> {
        let index_path = dir.join(INDEX_FILE);
        let index = if index_path.exists() {
            Some(read_index(&index_path)?)
        } else if dir.join(SINGLE_FILE).exists() {
            None
        } else {
            return Err(WeightError::NoWeights {
                dir: dir.to_path_buf(),
            });
        };
        let mut names: Vec<String> = match &index {
            Some(i) => i.values().cloned().collect(),
            None => vec![SINGLE_FILE.to_string()],
        };
        names.sort();
        names.dedup();
        let mut ck = Self {
            files: Vec::new(),
            tensors: BTreeMap::new(),
        };
        for name in &names {
            ck.map(&dir.join(name))?;
        }
        ck.check(want, index.as_ref(), dir)?;
        Ok(ck)
    }

    fn map(&mut self, path: &Path) -> Result<(), WeightError> {
        let file = File::open(path).map_err(io(path))?;
        // SAFETY: read-only; a checkpoint modified while mapped is outside what any loader
        // defends against.
        let map = unsafe { Mmap::map(&file) }.map_err(io(path))?;
        let (header, meta) = SafeTensors::read_metadata(&map).map_err(|e| WeightError::Format {
            path: path.to_path_buf(),
            message: format!("{e:?}"),
        })?;
        let base = 8 + header;
        let at = self.files.len();
        for (name, info) in meta.tensors() {
            let dtype = stored(&name, info.dtype)?;
            if let Some(prev) = self.tensors.get(&name) {
                return Err(WeightError::Duplicate {
                    name,
                    first: self.files[prev.file].0.clone(),
                    second: path.to_path_buf(),
                });
            }
            let (a, b) = info.data_offsets;
            let entry = Entry {
                file: at,
                dtype,
                shape: info.shape.clone(),
                bytes: base + a..base + b,
            };
            self.tensors.insert(name, entry);
        }
        self.files.push((path.to_path_buf(), map));
        Ok(())
    }

    fn check(
        &self,
        want: &Expected,
        index: Option<&BTreeMap<String, String>>,
        dir: &Path,
    ) -> Result<(), WeightError> {
        let shape_of = |name: &String, shape: &Vec<usize>, e: &Entry| {
            if &e.shape != shape {
                return Err(WeightError::Shape {
                    name: name.clone(),
                    want: shape.clone(),
                    got: e.shape.clone(),
                });
            }
            Ok(())
        };
        for (name, shape) in &want.required {
            let Some(e) = self.tensors.get(name) else {
                return Err(WeightError::Missing {
                    name: name.clone(),
                    file: index.and_then(|i| i.get(name)).map(|f| dir.join(f)),
                });
            };
            shape_of(name, shape, e)?;
        }
        for (name, shape) in &want.optional {
            if let Some(e) = self.tensors.get(name) {
                shape_of(name, shape, e)?;
            }
        }
        let known = |n: &str| {
            want.required
                .iter()
                .chain(&want.optional)
                .any(|(k, _)| k == n)
        };
        if let Some((name, e)) = self.tensors.iter().find(|(n, _)| !known(n)) {
            return Err(WeightError::Unexpected {
                name: name.clone(),
                file: self.files[e.file].0.clone(),
            });
        }
        Ok(())
    }

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

/// Values in a stored dtype's bytes.
pub fn encode(dtype: Stored, values: &[f64]) -> Vec<u8> {
    let mut out = Vec::with_capacity(values.len() * dtype.size());
    for &x in values {
        match dtype {
            Stored::Bf16 => out.extend_from_slice(&bf16::from_f64(x).to_le_bytes()),
            Stored::F16 => out.extend_from_slice(&f16::from_f64(x).to_le_bytes()),
            Stored::F32 => out.extend_from_slice(&(x as f32).to_le_bytes()),
        }
    }
    out
}

/// Writes (name, shape, bytes in `dtype`) as `model.safetensors`, or as `shards` files and an
/// index (tensors dealt round-robin).
pub fn write(
    dir: &Path,
    tensors: &[(String, Vec<usize>, Vec<u8>)],
    dtype: Stored,
    shards: usize,
) -> Result<(), WeightError> {
    std::fs::create_dir_all(dir).map_err(io(dir))?;
    let shards = shards.max(1);
    let file_name = |i: usize| {
        if shards == 1 {
            SINGLE_FILE.to_string()
        } else {
            format!("model-{:05}-of-{:05}.safetensors", i + 1, shards)
        }
    };
    let mut weight_map = BTreeMap::new();
    for shard in 0..shards {
        let path = dir.join(file_name(shard));
        let views: Vec<(String, TensorView<'_>)> = tensors
            .iter()
            .enumerate()
            .filter(|(i, _)| i % shards == shard)
            .map(|(_, (name, shape, bytes))| {
                weight_map.insert(name.clone(), file_name(shard));
                let view = TensorView::new(dtype.safetensors(), shape.clone(), bytes)
                    .expect("bytes fill the shape");
                (name.clone(), view)
            })
            .collect();
        safetensors::serialize_to_file(views, &None, &path).map_err(|e| WeightError::Format {
            path: path.clone(),
            message: format!("writing: {e:?}"),
        })?;
    }
    if shards > 1 {
        let index_path = dir.join(INDEX_FILE);
        let total: usize = tensors.iter().map(|t| t.2.len()).sum();
        let index = serde_json::json!({
            "metadata": {"total_size": total},
            "weight_map": weight_map,
        });
        std::fs::write(&index_path, serde_json::to_string_pretty(&index).unwrap())
            .map_err(io(&index_path))?;
    }
    Ok(())
}
