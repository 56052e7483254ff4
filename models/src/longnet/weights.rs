//! LongNet's tensors under torchscale's state-dict names (`LongNetDecoder.state_dict()`): the
//! decoder's own `embed_tokens`, `layers.{i}.…`, `layer_norm`, `output_projection`. Every
//! `nn.Linear` of the blocks has a bias (torchscale builds q/k/v/out_proj with `bias=True`, fc1
//! and fc2 with torch's default); the output projection has none.

use super::config::LongNetConfig;
use crate::checkpoint::Expected;

pub const EMBED: &str = "embed_tokens.weight";
pub const OUTPUT: &str = "output_projection.weight";

/// Layer `l`'s tensor `name` (e.g. `self_attn.q_proj.weight`).
pub fn layer(l: usize, name: &str) -> String {
    format!("layers.{l}.{name}")
}

/// Every tensor of the configuration, in state-dict order. Tied embeddings: torchscale's state
/// dict lists `output_projection.weight` as the same tensor as `embed_tokens.weight`, and
/// safetensors writers keep one of the two, so it is optional then (and must equal the
/// embedding if present; [`super::LongNet::load`] checks).
pub fn expected(c: &LongNetConfig) -> Expected {
    let (d, f) = (c.dim, c.ffn);
    let mut req = vec![(EMBED.to_string(), vec![c.vocab, d])];
    for l in 0..c.layers {
        let mut add = |name: &str, shape: Vec<usize>| req.push((layer(l, name), shape));
        for p in ["q_proj", "k_proj", "v_proj"] {
            add(&format!("self_attn.{p}.weight"), vec![d, d]);
            add(&format!("self_attn.{p}.bias"), vec![d]);
        }
        if c.subln {
            add("self_attn.inner_attn_ln.weight", vec![d]);
            add("self_attn.inner_attn_ln.bias", vec![d]);
        }
        add("self_attn.out_proj.weight", vec![d, d]);
        add("self_attn.out_proj.bias", vec![d]);
        add("self_attn_layer_norm.weight", vec![d]);
        add("self_attn_layer_norm.bias", vec![d]);
        add("ffn.fc1.weight", vec![f, d]);
        add("ffn.fc1.bias", vec![f]);
        add("ffn.fc2.weight", vec![d, f]);
        add("ffn.fc2.bias", vec![d]);
        if c.subln {
            add("ffn.ffn_layernorm.weight", vec![f]);
            add("ffn.ffn_layernorm.bias", vec![f]);
        }
        add("final_layer_norm.weight", vec![d]);
        add("final_layer_norm.bias", vec![d]);
    }
    req.push(("layer_norm.weight".into(), vec![d]));
    req.push(("layer_norm.bias".into(), vec![d]));
    let head = (OUTPUT.to_string(), vec![c.vocab, d]);
    if c.tied {
        Expected {
            required: req,
            optional: vec![head],
        }
    } else {
        req.push(head);
        Expected {
            required: req,
            optional: Vec::new(),
        }
    }
}
