//! The loader against directories written by `init`, and against each way one can be wrong.

use std::path::{Path, PathBuf};

use safetensors::tensor::TensorView;
use safetensors::Dtype;

use super::config::ModelConfig;
use super::init::{lrpe_theta_init, write_random, InitOptions};
use super::weights::{expected, Stored, WeightError, Weights, INDEX_FILE, SINGLE_FILE};

fn tiny() -> ModelConfig {
    ModelConfig::with_shape(2, 64, 2, 96, 50, &[0]).unwrap()
}

struct TempDir(PathBuf);

impl TempDir {
    fn new(tag: &str) -> Self {
        let n = rand::random::<u64>();
        let p = std::env::temp_dir().join(format!("tnl-{tag}-{}-{n:x}", std::process::id()));
        std::fs::create_dir_all(&p).unwrap();
        Self(p)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Rewrites the single file of `dir` with `edit` applied to its (name, dtype, shape, bytes).
fn rewrite(dir: &Path, edit: impl FnOnce(&mut Vec<(String, Dtype, Vec<usize>, Vec<u8>)>)) {
    let path = dir.join(SINGLE_FILE);
    let bytes = std::fs::read(&path).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let mut list: Vec<_> = st
        .tensors()
        .into_iter()
        .map(|(n, v)| (n, v.dtype(), v.shape().to_vec(), v.data().to_vec()))
        .collect();
    edit(&mut list);
    let views: Vec<(String, TensorView<'_>)> = list
        .iter()
        .map(|(n, d, s, b)| (n.clone(), TensorView::new(*d, s.clone(), b).unwrap()))
        .collect();
    safetensors::serialize_to_file(views, &None, &path).unwrap();
}

#[test]
fn random_weights_round_trip_in_every_stored_dtype_and_sharding() {
    let cfg = tiny();
    for (dtype, shards) in [(Stored::Bf16, 1), (Stored::F16, 3), (Stored::F32, 2)] {
        let dir = TempDir::new("roundtrip");
        let opts = InitOptions {
            seed: rand::random(),
            dtype,
            shards,
            ..InitOptions::default()
        };
        write_random(&cfg, &dir.0, &opts).unwrap();
        assert_eq!(dir.0.join(INDEX_FILE).exists(), shards > 1);
        let read = ModelConfig::read(&dir.0.join("config.json")).unwrap();
        assert_eq!(read, cfg);
        let w = Weights::open(&dir.0, &read).unwrap();
        assert_eq!(w.files().count(), shards);
        for (name, shape) in expected(&cfg) {
            let t = w.tensor(&name).unwrap();
            assert_eq!(t.shape, shape.as_slice());
            assert_eq!(t.dtype, dtype);
            let v = t.to_f64();
            assert_eq!(v.len(), t.numel());
            if name.ends_with("lrpe.theta") {
                let want = lrpe_theta_init(cfg.heads, cfg.head_dim);
                // Relative rounding of the type, and f16's smallest subnormal: the smallest
                // angles (1e-8 at d = 32) underflow in f16.
                let (rel, abs) = match dtype {
                    Stored::F32 => (1e-7, 0.0),
                    Stored::Bf16 => (4e-3, 0.0),
                    Stored::F16 => (1e-3, 6e-8),
                };
                assert!(v
                    .iter()
                    .zip(&want)
                    .all(|(a, b)| (a - b).abs() <= rel * b + abs));
            } else {
                // Uniform on ±0.02·√3 with every value drawn: bounded, not constant.
                let a = 0.02 * 3f64.sqrt() * 1.01;
                assert!(v.iter().all(|x| x.abs() <= a), "{name}");
                let mean_sq = v.iter().map(|x| x * x).sum::<f64>() / v.len() as f64;
                assert!(
                    (mean_sq.sqrt() - 0.02).abs() < 0.006,
                    "{name}: rms {mean_sq}"
                );
            }
        }
    }
}

fn open_err(dir: &Path) -> WeightError {
    Weights::open(dir, &tiny()).unwrap_err()
}

fn fresh() -> TempDir {
    let dir = TempDir::new("refuse");
    let opts = InitOptions {
        seed: rand::random(),
        ..InitOptions::default()
    };
    write_random(&tiny(), &dir.0, &opts).unwrap();
    dir
}

#[test]
fn a_missing_tensor_is_named() {
    let dir = fresh();
    rewrite(&dir.0, |l| {
        l.retain(|t| t.0 != "model.layers.1.channel_mixer.l2.weight")
    });
    let err = open_err(&dir.0);
    assert!(
        matches!(&err, WeightError::Missing { name, .. } if name == "model.layers.1.channel_mixer.l2.weight"),
        "{err}"
    );
}

#[test]
fn an_unexpected_tensor_is_named_with_its_file() {
    let dir = fresh();
    rewrite(&dir.0, |l| {
        l.push((
            "model.layers.1.token_mixer.lrpe.theta".into(),
            Dtype::F32,
            vec![2, 1, 32],
            vec![0; 256],
        ))
    });
    let err = open_err(&dir.0);
    assert!(
        matches!(&err, WeightError::Unexpected { name, file } if name == "model.layers.1.token_mixer.lrpe.theta" && file.ends_with(SINGLE_FILE)),
        "{err}"
    );
}

#[test]
fn a_wrong_shape_is_named_with_both_shapes() {
    let dir = fresh();
    rewrite(&dir.0, |l| {
        let t = l.iter_mut().find(|t| t.0 == "lm_head.weight").unwrap();
        t.2 = vec![64, 50];
    });
    let err = open_err(&dir.0);
    assert!(
        matches!(&err, WeightError::Shape { name, want, got } if name == "lm_head.weight" && want == &[50, 64] && got == &[64, 50]),
        "{err}"
    );
}

#[test]
fn an_unsupported_dtype_is_named() {
    let dir = fresh();
    rewrite(&dir.0, |l| {
        let t = l
            .iter_mut()
            .find(|t| t.0 == "model.embed_tokens.weight")
            .unwrap();
        t.1 = Dtype::I16;
    });
    let err = open_err(&dir.0);
    assert!(
        matches!(&err, WeightError::DType { name, dtype } if name == "model.embed_tokens.weight" && dtype == "I16"),
        "{err}"
    );
}

#[test]
fn a_truncated_file_is_refused_by_path() {
    let dir = fresh();
    let path = dir.0.join(SINGLE_FILE);
    let len = std::fs::metadata(&path).unwrap().len();
    let f = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
    f.set_len(len - 7).unwrap();
    let err = open_err(&dir.0);
    assert!(
        matches!(&err, WeightError::Format { path: p, .. } if p == &path),
        "{err}"
    );
    // A file cut inside its header too.
    f.set_len(5).unwrap();
    assert!(matches!(open_err(&dir.0), WeightError::Format { .. }));
}

#[test]
fn sharded_refusals_name_the_index_or_the_shard() {
    let cfg = tiny();
    let dir = TempDir::new("shards");
    let opts = InitOptions {
        seed: rand::random(),
        shards: 2,
        ..InitOptions::default()
    };
    write_random(&cfg, &dir.0, &opts).unwrap();
    let index = dir.0.join(INDEX_FILE);
    let text = std::fs::read_to_string(&index).unwrap();
    // A shard that is gone: an I/O error naming it.
    let shard = dir.0.join("model-00002-of-00002.safetensors");
    let saved = std::fs::read(&shard).unwrap();
    std::fs::remove_file(&shard).unwrap();
    let err = Weights::open(&dir.0, &cfg).unwrap_err();
    assert!(
        matches!(&err, WeightError::Io { path, .. } if path == &shard),
        "{err}"
    );
    std::fs::write(&shard, &saved).unwrap();
    // An index whose map is not one.
    std::fs::write(&index, r#"{"weight_map": ["model.safetensors"]}"#).unwrap();
    let err = Weights::open(&dir.0, &cfg).unwrap_err();
    assert!(matches!(&err, WeightError::Index { .. }), "{err}");
    // An index that points a tensor at the other shard, which also holds its own copy: two.
    let mut json: serde_json::Value = serde_json::from_str(&text).unwrap();
    let map = json["weight_map"].as_object_mut().unwrap();
    let all: Vec<String> = map.keys().cloned().collect();
    for k in &all {
        map.insert(k.clone(), "model-00001-of-00002.safetensors".into());
    }
    std::fs::write(&index, serde_json::to_string(&json).unwrap()).unwrap();
    let err = Weights::open(&dir.0, &cfg).unwrap_err();
    assert!(
        matches!(&err, WeightError::Missing { file: Some(f), .. } if f.ends_with("model-00001-of-00002.safetensors")),
        "{err}"
    );
    // No weights at all.
    let empty = TempDir::new("empty");
    assert!(matches!(
        Weights::open(&empty.0, &cfg).unwrap_err(),
        WeightError::NoWeights { .. }
    ));
}

#[test]
fn a_tensor_stored_in_two_shards_is_refused() {
    let cfg = tiny();
    let dir = TempDir::new("dup");
    let opts = InitOptions {
        seed: rand::random(),
        shards: 2,
        ..InitOptions::default()
    };
    write_random(&cfg, &dir.0, &opts).unwrap();
    // Copy shard 1's first tensor into shard 2.
    let (a, b) = (
        dir.0.join("model-00001-of-00002.safetensors"),
        dir.0.join("model-00002-of-00002.safetensors"),
    );
    let abytes = std::fs::read(&a).unwrap();
    let first = safetensors::SafeTensors::deserialize(&abytes).unwrap();
    let (name, view) = first.tensors().into_iter().next().unwrap();
    let bbytes = std::fs::read(&b).unwrap();
    let second = safetensors::SafeTensors::deserialize(&bbytes).unwrap();
    let mut list = second.tensors();
    list.push((name.clone(), view));
    safetensors::serialize_to_file(list, &None, &b).unwrap();
    let err = Weights::open(&dir.0, &cfg).unwrap_err();
    assert!(
        matches!(&err, WeightError::Duplicate { name: n, .. } if n == &name),
        "{err}"
    );
}
