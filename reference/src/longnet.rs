//! LongNet's decoder (torchscale's `LongNetDecoder` at inference) in float64, written from the
//! module structure alone: pre-norm blocks x ← x + out_proj(LN_sub(attn(LN(x)))),
//! x ← x + fc2(LN_ffn(gelu(fc1(LN(x))))), the final LayerNorm and the output projection. The
//! dilated attention is the dense closed form of [`crate::dilated`] (causal); GELU is the erf form
//! with erf evaluated by its Taylor series (and erfc's continued fraction in the tails) to ≤ 1e-13.
//! Nothing here reads the kernels or the models crate.
//!
//! Weights as torch stores them: row-major, a projection W [out, in] applied as x·Wᵀ + b.

use crate::dilated::{self, Offsets, Pattern, Problem};
use crate::Dims;

#[derive(Debug, Clone, PartialEq)]
pub struct Shape {
    pub dim: usize,
    pub layers: usize,
    pub heads: usize,
    pub ffn: usize,
    pub vocab: usize,
    pub patterns: Vec<Pattern>,
    pub offsets: Offsets,
    pub subln: bool,
    pub scale_embedding: bool,
    pub eps: f64,
}

/// A LayerNorm's (weight, bias), or a projection's (weight [out, in], bias [out]).
pub type Affine = (Vec<f64>, Vec<f64>);

#[derive(Debug, Clone)]
pub struct Layer {
    pub attn_norm: Affine,
    pub q: Affine,
    pub k: Affine,
    pub v: Affine,
    /// `inner_attn_ln` (subln only).
    pub inner_norm: Option<Affine>,
    pub out: Affine,
    pub ffn_norm: Affine,
    pub fc1: Affine,
    /// `ffn_layernorm` (subln only).
    pub ffn_inner_norm: Option<Affine>,
    pub fc2: Affine,
}

#[derive(Debug, Clone)]
pub struct Model {
    pub shape: Shape,
    /// [vocab, dim].
    pub embed: Vec<f64>,
    pub layers: Vec<Layer>,
    pub final_norm: Affine,
    /// [vocab, dim] (the embedding itself when tied).
    pub head: Vec<f64>,
}

/// erf(x): the Maclaurin series for |x| < 3, else 1 − erfc by Lentz's continued fraction.
pub fn erf(x: f64) -> f64 {
    let a = x.abs();
    let r = if a < 3.0 {
        let (mut term, mut sum, mut n) = (a, a, 0.0);
        while term.abs() > 1e-17 * sum.abs() {
            n += 1.0;
            term *= -a * a / n;
            sum += term / (2.0 * n + 1.0);
        }
        sum * 2.0 / std::f64::consts::PI.sqrt()
    } else {
        // erfc(a) = e^{−a²}/√π · 1/(a + (1/2)/(a + 1/(a + (3/2)/(a + …)))), evaluated bottom-up.
        let mut f = a;
        for k in (1..60).rev() {
            f = a + (k as f64 / 2.0) / f;
        }
        1.0 - (-a * a).exp() / std::f64::consts::PI.sqrt() / f
    };
    r.copysign(x)
}

/// torch's default GELU: x·Φ(x) = x/2·(1 + erf(x/√2)).
pub fn gelu(x: f64) -> f64 {
    0.5 * x * (1.0 + erf(x / std::f64::consts::SQRT_2))
}

/// LayerNorm of each row of `x` (rows of `w.len()`): centred, biased variance, affine.
pub fn layernorm(x: &[f64], (w, b): &Affine, eps: f64) -> Vec<f64> {
    let d = w.len();
    x.chunks(d)
        .flat_map(|row| {
            let mean = row.iter().sum::<f64>() / d as f64;
            let var = row.iter().map(|v| (v - mean) * (v - mean)).sum::<f64>() / d as f64;
            let r = 1.0 / (var + eps).sqrt();
            row.iter()
                .enumerate()
                .map(move |(i, v)| (v - mean) * r * w[i] + b[i])
                .collect::<Vec<_>>()
        })
        .collect()
}

/// x·Wᵀ + b for each row of x.
pub fn affine(x: &[f64], (w, b): &Affine) -> Vec<f64> {
    let out = b.len();
    let k = w.len() / out;
    x.chunks(k)
        .flat_map(|row| {
            (0..out).map(move |o| {
                b[o] + row
                    .iter()
                    .zip(&w[o * k..][..k])
                    .map(|(a, c)| a * c)
                    .sum::<f64>()
            })
        })
        .collect()
}

impl Model {
    /// Causal dilated self-attention of the normed tokens h (n, D) → (n, D), before out_proj.
    fn attention(&self, l: &Layer, h: &[f64], n: usize) -> Vec<f64> {
        let s = &self.shape;
        let (hh, hd) = (s.heads, s.dim / s.heads);
        // (n, H, hd) → (1, H, n, hd).
        let heads = |x: Vec<f64>| {
            let mut y = vec![0.0; x.len()];
            for t in 0..n {
                for head in 0..hh {
                    for j in 0..hd {
                        y[(head * n + t) * hd + j] = x[(t * hh + head) * hd + j];
                    }
                }
            }
            y
        };
        let (q, k, v) = (
            heads(affine(h, &l.q)),
            heads(affine(h, &l.k)),
            heads(affine(h, &l.v)),
        );
        let p = Problem::new(Dims::new(1, hh, n, hd), &s.patterns, s.offsets, true);
        let (o, _) = dilated::forward(&p, &q, &k, &v);
        let mut y = vec![0.0; n * s.dim];
        for t in 0..n {
            for head in 0..hh {
                for j in 0..hd {
                    y[(t * hh + head) * hd + j] = o[(head * n + t) * hd + j];
                }
            }
        }
        y
    }

    /// The logits of every position of one sequence: [n][vocab].
    pub fn forward(&self, tokens: &[u32]) -> Vec<Vec<f64>> {
        let s = &self.shape;
        let (n, d) = (tokens.len(), s.dim);
        let scale = if s.scale_embedding {
            (d as f64).sqrt()
        } else {
            1.0
        };
        let mut x: Vec<f64> = tokens
            .iter()
            .flat_map(|&t| self.embed[t as usize * d..][..d].iter().map(|v| v * scale))
            .collect();
        for l in &self.layers {
            let h = layernorm(&x, &l.attn_norm, s.eps);
            let mut a = self.attention(l, &h, n);
            if let Some(norm) = &l.inner_norm {
                a = layernorm(&a, norm, s.eps);
            }
            let y = affine(&a, &l.out);
            x.iter_mut().zip(&y).for_each(|(x, y)| *x += y);
            let h = layernorm(&x, &l.ffn_norm, s.eps);
            let mut f: Vec<f64> = affine(&h, &l.fc1).into_iter().map(gelu).collect();
            if let Some(norm) = &l.ffn_inner_norm {
                f = layernorm(&f, norm, s.eps);
            }
            let y = affine(&f, &l.fc2);
            x.iter_mut().zip(&y).for_each(|(x, y)| *x += y);
        }
        let h = layernorm(&x, &self.final_norm, s.eps);
        let zero = vec![0.0; s.vocab];
        affine(&h, &(self.head.clone(), zero))
            .chunks(s.vocab)
            .map(<[f64]>::to_vec)
            .collect()
    }

    /// Greedy generation (first index of the maximum): each step reruns the full forward on
    /// the prefix, so nothing is cached here.
    pub fn generate(&self, prompt: &[u32], new_tokens: usize) -> Vec<u32> {
        let mut seq = prompt.to_vec();
        let mut out = Vec::new();
        for _ in 0..new_tokens {
            let logits = self.forward(&seq);
            let last = logits.last().expect("a non-empty prompt");
            let mut best = 0;
            for (i, v) in last.iter().enumerate() {
                if *v > last[best] {
                    best = i;
                }
            }
            out.push(best as u32);
            seq.push(best as u32);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn erf_matches_known_values() {
        // Abramowitz & Stegun table 7.1 / high-precision values.
        for (x, want) in [
            (0.0, 0.0),
            (0.5, 0.520_499_877_813_046_5),
            (1.0, 0.842_700_792_949_714_9),
            (2.0, 0.995_322_265_018_952_7),
            (2.9, 0.999_958_902_121_900_7),
            (3.5, 0.999_999_256_901_627_7),
            (-1.0, -0.842_700_792_949_714_9),
        ] {
            assert!(
                (erf(x) - want).abs() < 1e-13,
                "erf({x}) = {} vs {want}",
                erf(x)
            );
        }
        assert!((gelu(1.0) - 0.841_344_746_068_542_9).abs() < 1e-14);
    }

    #[test]
    fn layernorm_centres_and_scales() {
        let y = layernorm(&[1.0, 2.0, 3.0, 4.0], &(vec![1.0; 4], vec![0.0; 4]), 0.0);
        let mean: f64 = y.iter().sum::<f64>() / 4.0;
        let var: f64 = y.iter().map(|v| v * v).sum::<f64>() / 4.0;
        assert!(mean.abs() < 1e-15 && (var - 1.0).abs() < 1e-12);
    }
}
