//! The whole TransNormerLLM in float64, written from ALGORITHMS.md §2–3 alone: the full forward
//! with the O(N²) decayed attention, and token-by-token decoding with the robust recurrence
//! (Alg. 4). It reads nothing from the kernels or the models crate — not even the decay slopes,
//! which are derived again here from the rule (a) text — so a bug shared with them would have to
//! be written twice.
//!
//! Weights are in the released layout: row-major f64, a projection W of shape [out, in] applied
//! as x·Wᵀ.

/// Shapes of the model.
#[derive(Debug, Clone, PartialEq)]
pub struct Shape {
    pub dim: usize,
    pub layers: usize,
    pub heads: usize,
    /// Inner width of the token mixer (q, k, v and u are each this wide).
    pub hidden: usize,
    pub glu: usize,
    pub vocab: usize,
    /// Per layer: LRPE on q and k.
    pub lrpe: Vec<bool>,
    pub scale_embedding: bool,
}

/// One layer's weights.
#[derive(Debug, Clone)]
pub struct Layer {
    /// [4·hidden, dim]: q, k, v, u stacked in that order.
    pub qkvu: Vec<f64>,
    /// [dim, hidden].
    pub out: Vec<f64>,
    /// [heads, head_dim] when the layer has LRPE.
    pub theta: Option<Vec<f64>>,
    /// [glu, dim], [glu, dim], [dim, glu].
    pub l1: Vec<f64>,
    pub l2: Vec<f64>,
    pub l3: Vec<f64>,
}

#[derive(Debug, Clone)]
pub struct Model {
    pub shape: Shape,
    /// [vocab, dim].
    pub embed: Vec<f64>,
    pub layers: Vec<Layer>,
    /// [vocab, dim].
    pub head: Vec<f64>,
}

const EPS: f64 = 1e-6;

/// x / sqrt(mean(x²) + ε), no weight.
fn srmsnorm(x: &[f64]) -> Vec<f64> {
    let ms = x.iter().map(|v| v * v).sum::<f64>() / x.len() as f64;
    let r = 1.0 / (ms + EPS).sqrt();
    x.iter().map(|v| v * r).collect()
}

/// How an activation is stored: [`exact`], or a rounding the caller supplies (bf16, say).
pub type Store = fn(f64) -> f64;

/// Stores a value as it is (float64 throughout).
pub fn exact(x: f64) -> f64 {
    x
}

/// y = x·Wᵀ for W [out, in].
fn project(x: &[f64], w: &[f64], out: usize) -> Vec<f64> {
    let inp = x.len();
    assert_eq!(w.len(), out * inp);
    (0..out)
        .map(|o| {
            w[o * inp..(o + 1) * inp]
                .iter()
                .zip(x)
                .map(|(a, b)| a * b)
                .sum()
        })
        .collect()
}

fn silu(x: f64) -> f64 {
    x / (1.0 + (-x).exp())
}

/// ALiBi slopes by rule (a): 2^(−8h/H), h = 1..H, for a power of two; otherwise the list of the
/// largest power of two below H followed by every second slope of twice that.
pub fn head_slopes(heads: usize) -> Vec<f64> {
    let pow2 = |n: usize| -> Vec<f64> {
        (1..=n)
            .map(|h| 2f64.powf(-8.0 * h as f64 / n as f64))
            .collect()
    };
    let mut p = 1;
    while p * 2 <= heads {
        p *= 2;
    }
    let mut s = pow2(p);
    let twice = pow2(2 * p);
    let mut i = 0;
    while s.len() < heads {
        s.push(twice[i]);
        i += 2;
    }
    s
}

/// λ_{h,l} = exp(−slope_h · (1 − l/(L−1) + 1e−5)); one layer: factor 1 + 1e−5.
pub fn decays(heads: usize, layer: usize, layers: usize) -> Vec<f64> {
    let factor = if layers == 1 {
        1.0 + 1e-5
    } else {
        1.0 - layer as f64 / (layers as f64 - 1.0) + 1e-5
    };
    head_slopes(heads)
        .into_iter()
        .map(|s| (-s * factor).exp())
        .collect()
}

impl Model {
    fn head_dim(&self) -> usize {
        self.shape.hidden / self.shape.heads
    }

    fn embed(&self, token: usize) -> Vec<f64> {
        let d = self.shape.dim;
        let scale = if self.shape.scale_embedding {
            (d as f64).sqrt()
        } else {
            1.0
        };
        self.embed[token * d..(token + 1) * d]
            .iter()
            .map(|x| x * scale)
            .collect()
    }

    /// q, k (after SiLU and, in LRPE layers, [x cos θt, x sin θt] per head), v, u of one token
    /// at position `t`; q and k per head, v per head, u whole.
    #[allow(clippy::type_complexity)]
    fn qkvu(
        &self,
        l: usize,
        x: &[f64],
        t: usize,
        st: Store,
    ) -> (Vec<Vec<f64>>, Vec<Vec<f64>>, Vec<Vec<f64>>, Vec<f64>) {
        let (hid, heads, hd) = (self.shape.hidden, self.shape.heads, self.head_dim());
        let layer = &self.layers[l];
        let h: Vec<f64> = srmsnorm(x).into_iter().map(st).collect();
        let p: Vec<f64> = project(&h, &layer.qkvu, 4 * hid)
            .into_iter()
            .map(st)
            .collect();
        let per_head = |part: usize, act: bool| -> Vec<Vec<f64>> {
            (0..heads)
                .map(|h| {
                    let s = &p[part * hid + h * hd..part * hid + (h + 1) * hd];
                    let v: Vec<f64> = if act {
                        s.iter().map(|x| silu(*x)).collect()
                    } else {
                        s.to_vec()
                    };
                    match (&layer.theta, act) {
                        (Some(theta), true) => {
                            let th = &theta[h * hd..(h + 1) * hd];
                            let mut r: Vec<f64> = v
                                .iter()
                                .zip(th)
                                .map(|(x, a)| st(x * (a * t as f64).cos()))
                                .collect();
                            r.extend(v.iter().zip(th).map(|(x, a)| st(x * (a * t as f64).sin())));
                            r
                        }
                        _ => v.into_iter().map(st).collect(),
                    }
                })
                .collect()
        };
        let q = per_head(0, true);
        let k = per_head(1, true);
        let v = per_head(2, false);
        (q, k, v, p[3 * hid..].to_vec())
    }

    /// The token mixer's output for attention output `o` (per head) and gate `u`, added to x.
    fn mix_out(&self, l: usize, x: &mut [f64], o: &[Vec<f64>], u: &[f64], st: Store) {
        let flat: Vec<f64> = o.iter().flatten().map(|v| st(*v)).collect();
        let gated: Vec<f64> = srmsnorm(&flat)
            .iter()
            .zip(u)
            .map(|(a, b)| st(a * b))
            .collect();
        let y = project(&gated, &self.layers[l].out, self.shape.dim);
        x.iter_mut().zip(y).for_each(|(a, b)| *a += b);
    }

    /// x += ((h W1ᵀ) ⊙ (h W2ᵀ)) W3ᵀ with h = SRMSNorm(x).
    fn channel_mix(&self, l: usize, x: &mut [f64], st: Store) {
        let layer = &self.layers[l];
        let h: Vec<f64> = srmsnorm(x).into_iter().map(st).collect();
        let a = project(&h, &layer.l1, self.shape.glu);
        let b = project(&h, &layer.l2, self.shape.glu);
        let g: Vec<f64> = a.iter().zip(&b).map(|(p, q)| st(p * q)).collect();
        let y = project(&g, &layer.l3, self.shape.dim);
        x.iter_mut().zip(y).for_each(|(a, b)| *a += b);
    }

    fn logits(&self, x: &[f64], st: Store) -> Vec<f64> {
        let h: Vec<f64> = srmsnorm(x).into_iter().map(st).collect();
        project(&h, &self.head, self.shape.vocab)
    }

    /// Logits [N, vocab] of every position of `tokens`: o_t = Σ_{s≤t} λ^{t−s} (q_t·k_s) v_s.
    pub fn forward(&self, tokens: &[usize]) -> Vec<Vec<f64>> {
        self.forward_stored(tokens, exact)
    }

    /// [`Model::forward`] with every activation an implementation stores in a narrower type
    /// passed through `st` where it is stored (SRMSNorm's outputs h, the projected q, k, v, u,
    /// the attention output, the gate's product, the SGLU product); the residual stream, the
    /// states and every sum stay float64. With `st` rounding to bf16 this is what a careful
    /// bf16 implementation gets, so its distance from [`Model::forward`] measures what bf16
    /// storage costs at a shape, independently of any kernel.
    pub fn forward_stored(&self, tokens: &[usize], st: Store) -> Vec<Vec<f64>> {
        let heads = self.shape.heads;
        let mut xs: Vec<Vec<f64>> = tokens.iter().map(|&t| self.embed(t)).collect();
        for l in 0..self.shape.layers {
            let lam = decays(heads, l, self.shape.layers);
            let parts: Vec<_> = xs
                .iter()
                .enumerate()
                .map(|(t, x)| self.qkvu(l, x, t, st))
                .collect();
            for (t, x) in xs.iter_mut().enumerate() {
                let o: Vec<Vec<f64>> = (0..heads)
                    .map(|h| {
                        let mut acc = vec![0.0; self.head_dim()];
                        for (s, part) in parts.iter().enumerate().take(t + 1) {
                            let qk: f64 = parts[t].0[h]
                                .iter()
                                .zip(&part.1[h])
                                .map(|(a, b)| a * b)
                                .sum();
                            let w = lam[h].powi((t - s) as i32) * qk;
                            acc.iter_mut()
                                .zip(&part.2[h])
                                .for_each(|(a, v)| *a += w * v);
                        }
                        acc
                    })
                    .collect();
                self.mix_out(l, x, &o, &parts[t].3, st);
                self.channel_mix(l, x, st);
            }
        }
        xs.iter().map(|x| self.logits(x, st)).collect()
    }
}

/// Token-by-token decoding: per layer and head the state S (key width × head_dim), advanced by
/// S ← λS + kᵀv, o = qS.
#[derive(Debug, Clone)]
pub struct Decoder<'m> {
    model: &'m Model,
    state: Vec<Vec<Vec<f64>>>,
    /// Tokens consumed so far: the position of the next one.
    pub position: usize,
}

impl<'m> Decoder<'m> {
    pub fn new(model: &'m Model) -> Self {
        let (heads, hd) = (model.shape.heads, model.head_dim());
        let state = (0..model.shape.layers)
            .map(|l| {
                let dk = if model.shape.lrpe[l] { 2 * hd } else { hd };
                vec![vec![0.0; dk * hd]; heads]
            })
            .collect();
        Self {
            model,
            state,
            position: 0,
        }
    }

    /// Consumes one token and returns the logits that follow it.
    pub fn step(&mut self, token: usize) -> Vec<f64> {
        let m = self.model;
        let (heads, hd) = (m.shape.heads, m.head_dim());
        let mut x = m.embed(token);
        for l in 0..m.shape.layers {
            let lam = decays(heads, l, m.shape.layers);
            let (q, k, v, u) = m.qkvu(l, &x, self.position, exact);
            let o: Vec<Vec<f64>> = (0..heads)
                .map(|h| {
                    let st = &mut self.state[l][h];
                    let dk = k[h].len();
                    for i in 0..dk {
                        for j in 0..hd {
                            st[i * hd + j] = lam[h] * st[i * hd + j] + k[h][i] * v[h][j];
                        }
                    }
                    (0..hd)
                        .map(|j| (0..dk).map(|i| q[h][i] * st[i * hd + j]).sum())
                        .collect()
                })
                .collect();
            m.mix_out(l, &mut x, &o, &u, exact);
            m.channel_mix(l, &mut x, exact);
        }
        self.position += 1;
        m.logits(&x, exact)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slopes_follow_rule_a_for_twenty_heads() {
        let s = head_slopes(20);
        assert_eq!(s.len(), 20);
        // 16 geometric slopes 2^(−h/2), then 2^(−1/4·(2i+1)) for i = 0..3.
        for (h, v) in s.iter().take(16).enumerate() {
            assert!((v - 2f64.powf(-0.5 * (h + 1) as f64)).abs() < 1e-15);
        }
        for (i, v) in s[16..].iter().enumerate() {
            assert!((v - 2f64.powf(-0.25 * (2 * i + 1) as f64)).abs() < 1e-15);
        }
    }

    /// Uniform draws in [−0.5, 0.5) from a small xorshift (the reference crate has no
    /// dependencies), seeded afresh per process.
    fn uniform(seed: u64) -> impl FnMut() -> f64 {
        let mut seed = seed ^ std::process::id() as u64;
        move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            (seed >> 11) as f64 / (1u64 << 53) as f64 - 0.5
        }
    }

    fn random_model(rng: &mut impl FnMut() -> f64, lrpe: Vec<bool>) -> Model {
        let shape = Shape {
            dim: 8,
            layers: lrpe.len(),
            heads: 2,
            hidden: 8,
            glu: 12,
            vocab: 11,
            lrpe,
            scale_embedding: true,
        };
        let mut m = |n: usize| (0..n).map(|_| rng()).collect::<Vec<f64>>();
        let layers = shape
            .lrpe
            .iter()
            .map(|&r| Layer {
                qkvu: m(32 * 8),
                out: m(64),
                theta: r.then(|| m(8).iter().map(|x| x.abs()).collect()),
                l1: m(96),
                l2: m(96),
                l3: m(96),
            })
            .collect();
        Model {
            embed: m(88),
            head: m(88),
            layers,
            shape,
        }
    }

    #[test]
    fn the_recurrence_equals_the_quadratic_forward() {
        let mut rng = uniform(0x9e3779b97f4a7c15);
        let model = random_model(&mut rng, vec![true, false, false]);
        let tokens = [3usize, 1, 4, 1, 5, 9, 2, 6, 5, 3];
        let full = model.forward(&tokens);
        let mut dec = Decoder::new(&model);
        for (t, &tok) in tokens.iter().enumerate() {
            let got = dec.step(tok);
            for (a, b) in got.iter().zip(&full[t]) {
                assert!((a - b).abs() < 1e-12 * (1.0 + b.abs()), "t={t}: {a} vs {b}");
            }
        }
    }

    #[test]
    fn stored_activations_are_rounded_where_stored_and_only_there() {
        let mut rng = uniform(0x2545f4914f6cdd1d);
        let model = random_model(&mut rng, vec![true, false]);
        let tokens = [2usize, 7, 1, 8, 2, 8];
        let full = model.forward(&tokens);
        assert_eq!(model.forward_stored(&tokens, exact), full);
        // f32 storage moves the logits by about f32's rounding, not more, and not by nothing.
        let f32s = model.forward_stored(&tokens, |x| x as f32 as f64);
        let scale = full.iter().flatten().fold(0f64, |m, x| m.max(x.abs()));
        let worst = f32s
            .iter()
            .flatten()
            .zip(full.iter().flatten())
            .fold(0f64, |m, (a, b)| m.max((a - b).abs()));
        assert!(worst > 0.0 && worst < 1e-5 * scale, "{worst} of {scale}");
    }
}
