//! What every model's batch of sequences shares on a backend: the names of its persistent
//! buffers (spelled here once for both models), reading the logits and choices a step leaves
//! there, overriding the choices, and the key a captured step is replayed under.

use crate::backend::Backend;
use crate::graph::{
    persistent, view,
    Access::{Read, Write},
    CallArg, Graph, KernelRef, Plan,
};
use crate::ModelError;
use tessel_package::DType;

/// Names of the persistent buffers of a batch shape.
pub struct Names;

impl Names {
    /// The tokens the next step consumes (the choices of the last one).
    pub fn next(b: usize) -> String {
        format!("next.b{b}")
    }
    /// Each sequence's position: the tokens it has consumed.
    pub fn pos(b: usize) -> String {
        format!("pos.b{b}")
    }
    pub fn logits(b: usize) -> String {
        format!("logits.b{b}")
    }
    pub fn prompt(b: usize, n: usize) -> String {
        format!("prompt.{b}x{n}")
    }
    pub fn all_logits(b: usize, n: usize) -> String {
        format!("logits.{b}x{n}")
    }
    /// TransNormerLLM: layer `layer`'s recurrent state.
    pub fn state(layer: usize, b: usize) -> String {
        format!("state.{layer}.b{b}")
    }
    /// TransNormerLLM: each prompt position's token position (left padding is negative).
    pub fn pos0(b: usize, n: usize) -> String {
        format!("pos0.{b}x{n}")
    }
    /// TransNormerLLM: layer `layer`'s decay rates.
    pub fn slope(layer: usize) -> String {
        format!("slope.{layer}")
    }
    /// TransNormerLLM: the θ standing in for LRPE in layers without it (not read).
    pub const NO_THETA: &'static str = "theta.none";
    /// LongNet: layer `layer`'s key (`kind` "k") or value ("v") cache of `cap` positions (a
    /// session of another capacity on the same backend gets caches of its own).
    pub fn cache(kind: &str, layer: usize, b: usize, cap: usize) -> String {
        format!("{kind}cache.{layer}.b{b}.c{cap}")
    }
    /// LongNet: zeros standing in for `inner_attn_ln`'s weight and bias without subln (not read).
    pub const NO_NORM: &'static str = "longnet.no_inner_norm";
}

/// The logits of the last token each of `batch` sequences consumed: [batch][vocab].
pub fn logits(
    be: &mut dyn Backend,
    batch: usize,
    vocab: usize,
) -> Result<Vec<Vec<f64>>, ModelError> {
    let flat = be.read(&Names::logits(batch))?;
    Ok(flat.chunks(vocab).map(<[f64]>::to_vec).collect())
}

/// Logits of every position after a prefill of length n that kept them all: [batch][n][vocab].
pub fn all_logits(
    be: &mut dyn Backend,
    batch: usize,
    n: usize,
    vocab: usize,
) -> Result<Vec<Vec<Vec<f64>>>, ModelError> {
    let flat = be.read(&Names::all_logits(batch, n))?;
    Ok(flat
        .chunks(n * vocab)
        .map(|s| s.chunks(vocab).map(<[f64]>::to_vec).collect())
        .collect())
}

/// The tokens the next step will consume (the model's choices, unless overridden).
pub fn next_tokens(be: &mut dyn Backend, batch: usize) -> Result<Vec<u32>, ModelError> {
    Ok(be
        .read(&Names::next(batch))?
        .into_iter()
        .map(|t| t as u32)
        .collect())
}

/// Makes the next step consume `tokens` instead of the model's choices; one per sequence, each
/// inside the vocabulary.
pub fn set_next_tokens(
    be: &mut dyn Backend,
    batch: usize,
    vocab: usize,
    tokens: &[u32],
) -> Result<(), ModelError> {
    if tokens.len() != batch {
        return Err(ModelError::Input(format!(
            "{} tokens for a batch of {batch}",
            tokens.len()
        )));
    }
    if let Some(t) = tokens.iter().find(|t| **t as usize >= vocab) {
        return Err(ModelError::Input(format!(
            "token id {t} is outside the vocabulary of {vocab}"
        )));
    }
    let v: Vec<f64> = tokens.iter().map(|t| *t as f64).collect();
    be.write(&Names::next(batch), &v)
}

/// A name for a graph that differs whenever its calls do: a backend keeps what it captured
/// under it, so two graphs (say greedy and sampling) on one backend never share a capture.
pub fn fingerprint(g: &Graph, p: &Plan) -> String {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    for node in &p.order {
        format!("{:?}", g.graph[*node]).hash(&mut h);
    }
    p.offsets.hash(&mut h);
    format!("{:016x}", h.finish())
}

/// How the next token is chosen (on the device, inside the step).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Choice {
    Greedy,
    /// softmax(logits / temperature) over the top_k (0: all) largest, then the smallest top set
    /// of probability ≥ top_p; draws are a function of (seed, position, sequence).
    Sample {
        temperature: f64,
        top_k: usize,
        top_p: f64,
        seed: u32,
    },
}

/// Adds the call that picks the next tokens from `logits.b{b}` (b, vocab) into `next.b{b}`
/// (sampling.tsl, `argmax_tile` logits a program); sampling keys its draws on the positions
/// in `pos` (+ `offset`): the token just consumed.
pub fn choose(
    g: &mut Graph,
    choice: Choice,
    argmax_tile: usize,
    b: usize,
    vocab: usize,
    pos: &str,
    offset: usize,
) {
    let logits = view(
        &persistent(&Names::logits(b)),
        DType::F32,
        &[b, vocab],
        Read,
    );
    let next = view(&persistent(&Names::next(b)), DType::I32, &[b], Write);
    let bv = [("BV", argmax_tile.to_string())];
    match choice {
        Choice::Greedy => g.call(
            "argmax",
            KernelRef::new("sampling", "argmax", &bv),
            vec![logits, next],
        ),
        Choice::Sample {
            temperature,
            top_k,
            top_p,
            seed,
        } => g.call(
            "sample",
            KernelRef::new("sampling", "sample", &bv),
            vec![
                logits,
                view(&persistent(pos), DType::I32, &[b], Read),
                next,
                CallArg::Scalar(temperature),
                CallArg::Scalar(top_k as f64),
                CallArg::Scalar(top_p),
                // The kernel's seed is an i32: the bits of the u32, reinterpreted.
                CallArg::Scalar(seed as i32 as f64),
                CallArg::Scalar(offset as f64),
            ],
        ),
    }
}
