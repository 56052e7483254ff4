//! Gated linear attention (ALGORITHMS.md §6; Yang et al. 2023, fla's `chunk_gla`), evaluated as
//! its recurrence in float64, one token at a time:
//!
//!   S_t = diag(α_t) S_{t−1} + k_tᵀ v_t,   o_t = (τ q_t) S_t,   α_t = e^{g_t}  (g ≤ 0, log space)
//!
//! with S_0 the initial state and S_N the final state. Tensors use fla's layout: q, k, g are
//! (B, N, H, D), v and o are (B, N, H, E), states (B, H, D, E); all dense row-major.

/// Shapes of one call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Problem {
    pub b: usize,
    pub n: usize,
    pub h: usize,
    pub d: usize,
    pub e: usize,
}

impl Problem {
    pub const fn new(b: usize, n: usize, h: usize, d: usize, e: usize) -> Self {
        Self { b, n, h, d, e }
    }

    /// Offset of token t of head h in sequence b, in a (B, N, H, width) tensor.
    const fn tok(&self, b: usize, t: usize, h: usize, width: usize) -> usize {
        ((b * self.n + t) * self.h + h) * width
    }

    /// Offset of the state of (b, h), in a (B, H, D, E) tensor.
    const fn state(&self, b: usize, h: usize) -> usize {
        (b * self.h + h) * self.d * self.e
    }

    pub const fn qk_len(&self) -> usize {
        self.b * self.n * self.h * self.d
    }

    pub const fn v_len(&self) -> usize {
        self.b * self.n * self.h * self.e
    }

    pub const fn state_len(&self) -> usize {
        self.b * self.h * self.d * self.e
    }
}

/// O (B, N, H, E) and the final state S_N (B, H, D, E), from the initial state `h0` (B, H, D, E).
pub fn forward(
    p: &Problem,
    q: &[f64],
    k: &[f64],
    v: &[f64],
    g: &[f64],
    h0: &[f64],
    scale: f64,
) -> (Vec<f64>, Vec<f64>) {
    assert_eq!(q.len(), p.qk_len(), "Q has the wrong length");
    assert_eq!(k.len(), p.qk_len(), "K has the wrong length");
    assert_eq!(g.len(), p.qk_len(), "G has the wrong length");
    assert_eq!(v.len(), p.v_len(), "V has the wrong length");
    assert_eq!(
        h0.len(),
        p.state_len(),
        "the initial state has the wrong length"
    );
    let (d, e) = (p.d, p.e);
    let mut o = vec![0.0; p.v_len()];
    let mut ht = h0.to_vec();
    for b in 0..p.b {
        for h in 0..p.h {
            let s = &mut ht[p.state(b, h)..p.state(b, h) + d * e];
            for t in 0..p.n {
                let (qi, vi) = (p.tok(b, t, h, d), p.tok(b, t, h, e));
                step(
                    s,
                    &q[qi..qi + d],
                    &k[qi..qi + d],
                    &v[vi..vi + e],
                    &g[qi..qi + d],
                    scale,
                    &mut o[vi..vi + e],
                );
            }
        }
    }
    (o, ht)
}

/// One token of the recurrence on a D × E state: S ← diag(e^g) S + kᵀ v, then o = τ q S.
/// The decode step of a generating model, and the body of [`forward`].
pub fn step(s: &mut [f64], q: &[f64], k: &[f64], v: &[f64], g: &[f64], scale: f64, o: &mut [f64]) {
    let e = v.len();
    for (i, row) in s.chunks_mut(e).enumerate() {
        let a = g[i].exp();
        for (j, x) in row.iter_mut().enumerate() {
            *x = a * *x + k[i] * v[j];
        }
    }
    for (j, out) in o.iter_mut().enumerate() {
        *out = scale * (0..q.len()).map(|i| q[i] * s[i * e + j]).sum::<f64>();
    }
}

/// Gradients of a loss through [`forward`], given dO and the gradient of the final state dS_N.
#[derive(Debug, Clone, PartialEq)]
pub struct Grads {
    pub dq: Vec<f64>,
    pub dk: Vec<f64>,
    pub dv: Vec<f64>,
    pub dg: Vec<f64>,
    pub dh0: Vec<f64>,
}

/// The gradients by the recurrence run backwards: dS_N = dht, and for t = N … 1, dS_t gains
/// τ q_tᵀ do_t, then dk_t = dS_t v_tᵀ, dv_t = k_t dS_t, dg_t = e^{g_t} ⊙ Σ_j dS_t ⊙ S_{t−1}, and
/// dS_{t−1} = diag(e^{g_t}) dS_t; dq_t = τ do_t S_tᵀ; dh0 = dS_0. Every S_t is kept (the
/// forward's states, recomputed here), so no state is ever divided by a gate.
#[allow(clippy::too_many_arguments)]
pub fn backward(
    p: &Problem,
    q: &[f64],
    k: &[f64],
    v: &[f64],
    g: &[f64],
    h0: &[f64],
    scale: f64,
    d_o: &[f64],
    dht: &[f64],
) -> Grads {
    assert_eq!(d_o.len(), p.v_len(), "dO has the wrong length");
    assert_eq!(dht.len(), p.state_len(), "dS_N has the wrong length");
    let (d, e) = (p.d, p.e);
    let mut gr = Grads {
        dq: vec![0.0; p.qk_len()],
        dk: vec![0.0; p.qk_len()],
        dv: vec![0.0; p.v_len()],
        dg: vec![0.0; p.qk_len()],
        dh0: vec![0.0; p.state_len()],
    };
    for b in 0..p.b {
        for h in 0..p.h {
            let at = p.state(b, h);
            // states[t] = S_t, t = 0 … N.
            let mut states = vec![h0[at..at + d * e].to_vec()];
            let mut out = vec![0.0; e];
            for t in 0..p.n {
                let (qi, vi) = (p.tok(b, t, h, d), p.tok(b, t, h, e));
                let mut s = states[t].clone();
                step(
                    &mut s,
                    &q[qi..qi + d],
                    &k[qi..qi + d],
                    &v[vi..vi + e],
                    &g[qi..qi + d],
                    scale,
                    &mut out,
                );
                states.push(s);
            }
            let mut ds = dht[at..at + d * e].to_vec();
            for t in (0..p.n).rev() {
                let (qi, vi) = (p.tok(b, t, h, d), p.tok(b, t, h, e));
                let (st, prev) = (&states[t + 1], &states[t]);
                for i in 0..d {
                    for j in 0..e {
                        ds[i * e + j] += scale * q[qi + i] * d_o[vi + j];
                    }
                }
                for i in 0..d {
                    let a = g[qi + i].exp();
                    let row = i * e..(i + 1) * e;
                    gr.dq[qi + i] =
                        scale * (0..e).map(|j| d_o[vi + j] * st[i * e + j]).sum::<f64>();
                    gr.dk[qi + i] = (0..e).map(|j| ds[i * e + j] * v[vi + j]).sum();
                    gr.dg[qi + i] = a * ds[row.clone()]
                        .iter()
                        .zip(&prev[row])
                        .map(|(x, y)| x * y)
                        .sum::<f64>();
                }
                for j in 0..e {
                    gr.dv[vi + j] = (0..d).map(|i| k[qi + i] * ds[i * e + j]).sum();
                }
                for i in 0..d {
                    let a = g[qi + i].exp();
                    ds[i * e..(i + 1) * e].iter_mut().for_each(|x| *x *= a);
                }
            }
            gr.dh0[at..at + d * e].copy_from_slice(&ds);
        }
    }
    gr
}

#[cfg(test)]
mod tests {
    use super::*;

    /// With every gate open (g = 0) the recurrence is plain causal linear attention:
    /// o_t = τ Σ_{s≤t} (q_t·k_s) v_s + τ q_t S_0, written here as that double sum.
    #[test]
    fn open_gates_are_linear_attention() {
        let p = Problem::new(1, 5, 2, 3, 2);
        let f = |i: usize| ((i * 37 % 11) as f64 - 5.0) / 7.0;
        let q: Vec<f64> = (0..p.qk_len()).map(f).collect();
        let k: Vec<f64> = (0..p.qk_len()).map(|i| f(i + 3)).collect();
        let v: Vec<f64> = (0..p.v_len()).map(|i| f(i + 5)).collect();
        let h0: Vec<f64> = (0..p.state_len()).map(|i| f(i + 7)).collect();
        let g = vec![0.0; p.qk_len()];
        let (o, ht) = forward(&p, &q, &k, &v, &g, &h0, 0.5);
        for h in 0..p.h {
            for t in 0..p.n {
                for j in 0..p.e {
                    let mut want = 0.0;
                    for i in 0..p.d {
                        let qi = q[p.tok(0, t, h, p.d) + i];
                        want += qi * h0[p.state(0, h) + i * p.e + j];
                        for s in 0..=t {
                            want += qi * k[p.tok(0, s, h, p.d) + i] * v[p.tok(0, s, h, p.e) + j];
                        }
                    }
                    let got = o[p.tok(0, t, h, p.e) + j];
                    assert!((got - 0.5 * want).abs() < 1e-12, "{got} vs {}", 0.5 * want);
                }
            }
        }
        // A closed gate (g = −∞) forgets: the final state is the last token's kᵀ v alone.
        let g = vec![f64::NEG_INFINITY; p.qk_len()];
        let (_, ht2) = forward(&p, &q, &k, &v, &g, &h0, 0.5);
        let last = p.n - 1;
        for i in 0..p.d {
            for j in 0..p.e {
                let want = k[p.tok(0, last, 1, p.d) + i] * v[p.tok(0, last, 1, p.e) + j];
                assert_eq!(ht2[p.state(0, 1) + i * p.e + j], want);
            }
        }
        assert_ne!(ht, ht2);
    }

    /// Every gradient of L = Σ o ⊙ W + Σ S_N ⊙ U against central differences of the forward.
    #[test]
    fn backward_matches_finite_differences() {
        let p = Problem::new(2, 4, 2, 3, 2);
        let f = |i: usize, m: usize| ((i * m % 13) as f64 - 6.0) / 9.0;
        let q: Vec<f64> = (0..p.qk_len()).map(|i| f(i, 7)).collect();
        let k: Vec<f64> = (0..p.qk_len()).map(|i| f(i + 1, 5)).collect();
        let v: Vec<f64> = (0..p.v_len()).map(|i| f(i + 2, 3)).collect();
        let g: Vec<f64> = (0..p.qk_len()).map(|i| -0.1 - f(i, 11).abs()).collect();
        let h0: Vec<f64> = (0..p.state_len()).map(|i| f(i + 4, 9)).collect();
        let w: Vec<f64> = (0..p.v_len()).map(|i| f(i + 5, 8)).collect();
        let u: Vec<f64> = (0..p.state_len()).map(|i| f(i + 6, 4)).collect();
        let scale = 0.7;
        let loss = |q: &[f64], k: &[f64], v: &[f64], g: &[f64], h0: &[f64]| {
            let (o, ht) = forward(&p, q, k, v, g, h0, scale);
            let a: f64 = o.iter().zip(&w).map(|(x, y)| x * y).sum();
            a + ht.iter().zip(&u).map(|(x, y)| x * y).sum::<f64>()
        };
        let gr = backward(&p, &q, &k, &v, &g, &h0, scale, &w, &u);
        let inputs = [&q, &k, &v, &g, &h0];
        let grads = [&gr.dq, &gr.dk, &gr.dv, &gr.dg, &gr.dh0];
        for (which, grad) in grads.iter().enumerate() {
            for i in 0..grad.len() {
                let eps = 1e-6;
                let mut plus: Vec<Vec<f64>> = inputs.iter().map(|x| x.to_vec()).collect();
                let mut minus = plus.clone();
                plus[which][i] += eps;
                minus[which][i] -= eps;
                let lp = loss(&plus[0], &plus[1], &plus[2], &plus[3], &plus[4]);
                let lm = loss(&minus[0], &minus[1], &minus[2], &minus[3], &minus[4]);
                let fd = (lp - lm) / (2.0 * eps);
                assert!(
                    (fd - grad[i]).abs() < 1e-7,
                    "input {which} element {i}: {fd} vs {}",
                    grad[i]
                );
            }
        }
    }
}
