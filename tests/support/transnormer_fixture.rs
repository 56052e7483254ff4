// Shared through `include!` by the TransNormerLLM model tests (models/tests/transnormer_interp.rs,
// tests/gpu_transnormer.rs): random-weight model directories in the released layout, read back by
// the loader, and the float64 model of tessel-reference built from the same tensors.

#[allow(dead_code)]
mod fixture {
    use std::path::{Path, PathBuf};

    use rand::Rng;
    use tessel_models::transnormer::config::ModelConfig;
    use tessel_models::transnormer::init::{write_random, InitOptions};
    use tessel_models::transnormer::weights::Weights;
    use tessel_reference::transnormer as reference;

    /// A directory removed when dropped.
    pub struct Dir(pub PathBuf);

    impl Drop for Dir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    /// Writes random weights for `cfg` with standard deviation `std` (`head_std` for the LM
    /// head) and reads them back: the configuration as read, the weights, the directory.
    pub fn random_model(cfg: &ModelConfig, std: f64, head_std: f64) -> (ModelConfig, Weights, Dir) {
        let dir = std::env::temp_dir().join(format!(
            "tnl-fixture-{}-{:x}",
            std::process::id(),
            rand::random::<u64>()
        ));
        let opts = InitOptions {
            seed: rand::random(),
            std,
            head_std: Some(head_std),
            ..InitOptions::default()
        };
        write_random(cfg, &dir, &opts).unwrap();
        let cfg = ModelConfig::read(&dir.join("config.json")).unwrap();
        let weights = Weights::open(&dir, &cfg).unwrap();
        (cfg, weights, Dir(dir))
    }

    /// A tiny configuration from tests/configs/ (of the source tree, or of the working directory:
    /// test binaries carried to the GPU machine run from a copy of the repository root).
    pub fn tiny(name: &str) -> ModelConfig {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        let p = [root.join("tests/configs"), root.join("../tests/configs"), "tests/configs".into()]
            .iter()
            .map(|d| d.join(format!("{name}.json")))
            .find(|p| p.exists())
            .unwrap_or_else(|| panic!("no tests/configs/{name}.json"));
        ModelConfig::read(&p).unwrap()
    }

    pub fn reference_model(cfg: &ModelConfig, w: &Weights) -> reference::Model {
        let t = |name: String| w.tensor(&name).unwrap().to_f64();
        let layers = (0..cfg.layers)
            .map(|l| {
                let p = format!("model.layers.{l}");
                reference::Layer {
                    qkvu: t(format!("{p}.token_mixer.qkvu_proj.weight")),
                    out: t(format!("{p}.token_mixer.out_proj.weight")),
                    theta: cfg.lrpe[l].then(|| t(format!("{p}.token_mixer.lrpe.theta"))),
                    l1: t(format!("{p}.channel_mixer.l1.weight")),
                    l2: t(format!("{p}.channel_mixer.l2.weight")),
                    l3: t(format!("{p}.channel_mixer.l3.weight")),
                }
            })
            .collect();
        reference::Model {
            shape: reference::Shape {
                dim: cfg.dim,
                layers: cfg.layers,
                heads: cfg.heads,
                hidden: cfg.hidden,
                glu: cfg.glu,
                vocab: cfg.vocab,
                lrpe: cfg.lrpe.clone(),
                scale_embedding: cfg.scale_embedding,
            },
            embed: t("model.embed_tokens.weight".into()),
            layers,
            head: t("lm_head.weight".into()),
        }
    }

    pub fn prompt(len: usize, vocab: usize) -> Vec<u32> {
        let mut rng = rand::rng();
        (0..len).map(|_| rng.random_range(0..vocab as u32)).collect()
    }

    /// Worst error relative to the reference's largest magnitude; every value must be finite.
    pub fn err(got: &[f64], want: &[f64]) -> f64 {
        assert_eq!(got.len(), want.len());
        assert!(got.iter().all(|x| x.is_finite()), "non-finite logits");
        let scale = want.iter().fold(1e-30f64, |m, x| m.max(x.abs()));
        got.iter()
            .zip(want)
            .map(|(g, w)| (g - w).abs())
            .fold(0.0, f64::max)
            / scale
    }

    pub fn ids(p: &[u32]) -> Vec<usize> {
        p.iter().map(|t| *t as usize).collect()
    }
}
