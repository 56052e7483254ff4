// Shared through `include!` by the LongNet model tests (models/tests/longnet_interp.rs,
// tests/gpu_longnet.rs): random-weight model directories under torchscale's names, read back by
// the loader, and the float64 model of tessel-reference built from the same tensors.

#[allow(dead_code)]
mod fixture {
    use std::path::{Path, PathBuf};

    use tessel_models::checkpoint::{Checkpoint, Stored};
    use tessel_models::longnet::config::LongNetConfig;
    use tessel_models::longnet::init::write_random;
    use tessel_models::longnet::weights::{expected, layer};
    use tessel_models::runtime::dilated::HeadOffsets;
    use tessel_reference::dilated::{Offsets, Pattern};
    use tessel_reference::longnet as reference;

    pub struct Dir(pub PathBuf);

    impl Drop for Dir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    pub fn config(name: &str) -> LongNetConfig {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        let p = [root.join("tests/configs"), root.join("../tests/configs"), "tests/configs".into()]
            .iter()
            .map(|d| d.join(format!("{name}.json")))
            .find(|p| p.exists())
            .unwrap_or_else(|| panic!("no tests/configs/{name}.json"));
        LongNetConfig::read(&p).unwrap()
    }

    /// Writes fresh random weights (matrices of standard deviation `std`, the output
    /// projection `head_std`), reads them back.
    pub fn random_model(cfg: &LongNetConfig, std: f64, head_std: f64, shards: usize) -> (LongNetConfig, Checkpoint, Dir) {
        let dir = std::env::temp_dir().join(format!(
            "longnet-fixture-{}-{:x}",
            std::process::id(),
            rand::random::<u64>()
        ));
        write_random(cfg, &dir, rand::random(), std, Some(head_std), Stored::Bf16, shards).unwrap();
        let cfg = LongNetConfig::read(&dir.join("config.json")).unwrap();
        let ck = Checkpoint::open(&dir, &expected(&cfg)).unwrap();
        (cfg, ck, Dir(dir))
    }

    pub fn reference_model(cfg: &LongNetConfig, ck: &Checkpoint) -> reference::Model {
        let t = |name: &str| ck.tensor(name).unwrap().to_f64();
        let aff = |l: usize, name: &str| (t(&layer(l, &format!("{name}.weight"))), t(&layer(l, &format!("{name}.bias"))));
        let layers = (0..cfg.layers)
            .map(|l| reference::Layer {
                attn_norm: aff(l, "self_attn_layer_norm"),
                q: aff(l, "self_attn.q_proj"),
                k: aff(l, "self_attn.k_proj"),
                v: aff(l, "self_attn.v_proj"),
                inner_norm: cfg.subln.then(|| aff(l, "self_attn.inner_attn_ln")),
                out: aff(l, "self_attn.out_proj"),
                ffn_norm: aff(l, "final_layer_norm"),
                fc1: aff(l, "ffn.fc1"),
                ffn_inner_norm: cfg.subln.then(|| aff(l, "ffn.ffn_layernorm")),
                fc2: aff(l, "ffn.fc2"),
            })
            .collect();
        let embed = t("embed_tokens.weight");
        reference::Model {
            shape: reference::Shape {
                dim: cfg.dim,
                layers: cfg.layers,
                heads: cfg.heads,
                ffn: cfg.ffn,
                vocab: cfg.vocab,
                patterns: cfg.patterns.iter().map(|p| Pattern { w: p.w, r: p.r }).collect(),
                offsets: match cfg.offsets {
                    HeadOffsets::Paper => Offsets::Paper,
                    HeadOffsets::Torchscale => Offsets::Torchscale,
                },
                subln: cfg.subln,
                scale_embedding: cfg.scale_embedding,
                eps: cfg.eps,
            },
            head: if cfg.tied { embed.clone() } else { t("output_projection.weight") },
            embed,
            layers,
            final_norm: (t("layer_norm.weight"), t("layer_norm.bias")),
        }
    }

    /// max |got − want| over the row, relative to the row's largest |want|.
    pub fn err(got: &[f64], want: &[f64]) -> f64 {
        let scale = want.iter().fold(0.0f64, |m, v| m.max(v.abs())).max(1e-30);
        got.iter()
            .zip(want)
            .map(|(g, w)| if g.is_nan() { f64::INFINITY } else { (g - w).abs() / scale })
            .fold(0.0, f64::max)
    }

    pub fn prompt(n: usize, vocab: usize) -> Vec<u32> {
        (0..n).map(|_| rand::random_range(0..vocab as u32)).collect()
    }
}
