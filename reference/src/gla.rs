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
}
