//! LongNet's refusals: configuration values tessel does not compute, and checkpoints that do not
//! match their configuration — each a typed error naming the field or tensor.

use tessel_models::checkpoint::{encode, write, Checkpoint, Stored, WeightError};
use tessel_models::longnet::config::{ConfigError, LongNetConfig};
use tessel_models::longnet::weights::expected;
use tessel_models::longnet::{LongNet, LongNetTiles};

include!("../../tests/support/longnet_fixture.rs");

const BASE: &str = r#""decoder_layers": 1, "decoder_embed_dim": 64, "decoder_attention_heads": 2,
    "decoder_ffn_embed_dim": 128, "vocab_size": 50, "segment_length": [16], "dilated_ratio": [1]"#;

fn parse(extra: &str) -> Result<LongNetConfig, ConfigError> {
    let dir = std::env::temp_dir().join(format!(
        "longnet-cfg-{}-{:x}",
        std::process::id(),
        rand::random::<u64>()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    let p = dir.join("config.json");
    let sep = if extra.is_empty() { "" } else { "," };
    std::fs::write(&p, format!("{{{BASE}{sep}{extra}}}")).unwrap();
    let r = LongNetConfig::read(&p);
    let _ = std::fs::remove_dir_all(&dir);
    r
}

#[test]
fn the_base_config_reads_with_torchscale_defaults() {
    let c = parse(r#""dropout": 0.1, "unknown_field": [1, 2]"#).unwrap();
    assert!(c.subln && !c.scale_embedding && !c.tied);
    assert_eq!(c.eps, 1e-5);
    assert_eq!(c.head_dim, 32);
}

#[test]
fn unsupported_values_are_refused_by_field() {
    for (extra, field) in [
        (r#""xpos_rel_pos": true"#, "xpos_rel_pos"),
        (r#""deepnorm": true"#, "deepnorm"),
        (r#""multiway": true"#, "multiway"),
        (r#""moe_freq": 2"#, "moe_freq"),
        (r#""moe_expert_count": 4"#, "moe_expert_count"),
        (r#""rel_pos_buckets": 32"#, "rel_pos_buckets"),
        (r#""max_rel_pos": 128"#, "max_rel_pos"),
        (r#""layernorm_embedding": true"#, "layernorm_embedding"),
        (
            r#""decoder_normalize_before": false"#,
            "decoder_normalize_before",
        ),
        (r#""no_output_layer": true"#, "no_output_layer"),
        (r#""activation_fn": "relu""#, "activation_fn"),
        (r#""head_offsets": "diagonal""#, "head_offsets"),
        (r#""model_type": "transnormer""#, "model_type"),
    ] {
        match parse(extra) {
            Err(ConfigError::Unsupported { field: f, .. }) => assert_eq!(f, field, "{extra}"),
            other => panic!("{extra}: {other:?}"),
        }
    }
}

#[test]
fn bad_shapes_and_pattern_lists_are_refused() {
    let bad = |json: &str, field: &str| {
        let dir = std::env::temp_dir().join(format!(
            "longnet-cfg2-{}-{:x}",
            std::process::id(),
            rand::random::<u64>()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("config.json");
        std::fs::write(&p, json).unwrap();
        let r = LongNetConfig::read(&p);
        let _ = std::fs::remove_dir_all(&dir);
        match r {
            Err(ConfigError::Unsupported { field: f, .. }) => assert_eq!(f, field, "{json}"),
            other => panic!("{json}: {other:?}"),
        }
    };
    let cfg = |e: &str| format!(r#"{{"decoder_layers": 1, "decoder_ffn_embed_dim": 128, {e}}}"#);
    bad(
        &cfg(r#""vocab_size": 50, "segment_length": [16, 32], "dilated_ratio": [1]"#),
        "dilated_ratio",
    );
    bad(
        &cfg(r#""vocab_size": 50, "dilated_ratio": [1]"#),
        "segment_length",
    );
    bad(
        &cfg(r#""vocab_size": 50, "segment_length": "[16, 0]", "dilated_ratio": "[1, 2]""#),
        "segment_length",
    );
    bad(
        &cfg(r#""segment_length": [16], "dilated_ratio": [1]"#),
        "vocab_size",
    );
    bad(
        &cfg(
            r#""vocab_size": 50, "decoder_embed_dim": 96, "decoder_attention_heads": 2, "segment_length": [16], "dilated_ratio": [1]"#,
        ),
        "decoder_embed_dim",
    );
    let text = "{not json";
    let dir = std::env::temp_dir().join(format!("longnet-cfg3-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("config.json"), text).unwrap();
    let e = LongNetConfig::read(&dir.join("config.json")).unwrap_err();
    assert!(
        matches!(e, ConfigError::Json { .. }) && e.to_string().contains("config.json"),
        "{e}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// The tiny configuration's tensors, each as (name, shape, bf16 zeros), for editing.
fn tensors(cfg: &LongNetConfig) -> Vec<(String, Vec<usize>, Vec<u8>)> {
    expected(cfg)
        .required
        .into_iter()
        .map(|(n, s)| {
            let len = s.iter().product();
            (n, s, encode(Stored::Bf16, &vec![0.5; len]))
        })
        .collect()
}

fn open_edited(
    cfg: &LongNetConfig,
    edit: impl FnOnce(&mut Vec<(String, Vec<usize>, Vec<u8>)>),
) -> Result<Checkpoint, WeightError> {
    let dir = std::env::temp_dir().join(format!(
        "longnet-w-{}-{:x}",
        std::process::id(),
        rand::random::<u64>()
    ));
    let mut t = tensors(cfg);
    edit(&mut t);
    write(&dir, &t, Stored::Bf16, 2).unwrap();
    let r = Checkpoint::open(&dir, &expected(cfg));
    let _ = std::fs::remove_dir_all(&dir);
    r
}

#[test]
fn checkpoints_that_do_not_match_are_refused_naming_the_tensor() {
    let cfg = fixture::config("longnet-tiny");
    assert!(open_edited(&cfg, |_| {}).is_ok());
    let e = open_edited(&cfg, |t| {
        t.retain(|x| x.0 != "layers.1.ffn.ffn_layernorm.bias")
    })
    .unwrap_err();
    assert!(
        matches!(&e, WeightError::Missing { name, .. } if name == "layers.1.ffn.ffn_layernorm.bias"),
        "{e}"
    );
    let e = open_edited(&cfg, |t| {
        t.push((
            "embed_positions.weight".into(),
            vec![4, 64],
            encode(Stored::Bf16, &[0.0; 256]),
        ))
    })
    .unwrap_err();
    assert!(
        matches!(&e, WeightError::Unexpected { name, .. } if name == "embed_positions.weight"),
        "{e}"
    );
    let e = open_edited(&cfg, |t| {
        let x = t
            .iter_mut()
            .find(|x| x.0 == "layers.0.self_attn.q_proj.weight")
            .unwrap();
        x.1 = vec![32, 128];
    })
    .unwrap_err();
    assert!(
        matches!(&e, WeightError::Shape { name, .. } if name == "layers.0.self_attn.q_proj.weight"),
        "{e}"
    );
}

#[test]
fn a_truncated_file_and_a_missing_directory_are_refused() {
    let cfg = fixture::config("longnet-tiny");
    let dir = std::env::temp_dir().join(format!("longnet-trunc-{}", std::process::id()));
    write(&dir, &tensors(&cfg), Stored::Bf16, 1).unwrap();
    let f = dir.join("model.safetensors");
    let len = std::fs::metadata(&f).unwrap().len();
    let file = std::fs::OpenOptions::new().write(true).open(&f).unwrap();
    file.set_len(len - 100).unwrap();
    let e = Checkpoint::open(&dir, &expected(&cfg)).unwrap_err();
    assert!(matches!(e, WeightError::Format { .. }), "{e}");
    std::fs::remove_dir_all(&dir).unwrap();
    let e = Checkpoint::open(&dir, &expected(&cfg)).unwrap_err();
    assert!(matches!(e, WeightError::NoWeights { .. }), "{e}");
}

#[test]
fn a_tied_checkpoint_whose_output_projection_differs_is_refused() {
    let cfg = fixture::config("longnet-tiny-h3");
    assert!(cfg.tied);
    let ck = open_edited(&cfg, |t| {
        t.push((
            "output_projection.weight".into(),
            vec![cfg.vocab, cfg.dim],
            encode(Stored::Bf16, &vec![0.25; cfg.vocab * cfg.dim]),
        ))
    })
    .unwrap();
    let model = LongNet::new(cfg, LongNetTiles::interpreter());
    let mut be = tessel_models::backend::InterpBackend::new();
    let e = model.load(&mut be, &ck).unwrap_err();
    assert!(e.to_string().contains("output_projection.weight"), "{e}");
}
