//! Softmax attention (FlashAttention's function): O = softmax(τ·QKᵀ + mask)·V.
//!
//! S = τ·Q Kᵀ with masked entries −∞, P = rowsoftmax(S), O = P V, L = rowlogsumexp(S).
//! Causal masks are bottom-right aligned (key s visible to query t iff s ≤ t + Nk − Nq), as in
//! flash-attn ≥ 2.1. A row with no visible key gets O = 0 and L = +∞ (so a backward pass that
//! recomputes P = exp(S − L) gets 0). Grouped-query attention: query head h reads key/value head
//! h / (Hq / Hkv).

use crate::{dot, Dims};

/// The shapes and options of one attention call.
#[derive(Debug, Clone, Copy)]
pub struct Problem {
    /// (B, Hq, Nq, D)
    pub q: Dims,
    /// (B, Hkv, Nk, D)
    pub k: Dims,
    /// (B, Hkv, Nk, Dv)
    pub v: Dims,
    pub scale: f64,
    pub causal: bool,
}

impl Problem {
    /// Self-attention with Hq = Hkv = h, Nq = Nk = n, Dv = D, τ = 1/√D.
    pub fn square(b: usize, h: usize, n: usize, d: usize, causal: bool) -> Self {
        Self::gqa(b, h, h, n, n, d, causal)
    }

    pub fn gqa(
        b: usize,
        hq: usize,
        hkv: usize,
        nq: usize,
        nk: usize,
        d: usize,
        causal: bool,
    ) -> Self {
        assert!(
            hkv > 0 && hq.is_multiple_of(hkv),
            "Hq must be a multiple of Hkv"
        );
        Self {
            q: Dims::new(b, hq, nq, d),
            k: Dims::new(b, hkv, nk, d),
            v: Dims::new(b, hkv, nk, d),
            scale: 1.0 / (d as f64).sqrt(),
            causal,
        }
    }

    /// Shape of O and dO: (B, Hq, Nq, Dv).
    pub fn o(&self) -> Dims {
        Dims::new(self.q.b, self.q.h, self.q.n, self.v.d)
    }

    fn kv_head(&self, h: usize) -> usize {
        h / (self.q.h / self.k.h)
    }

    /// Whether key `s` is visible to query `t`.
    pub fn visible(&self, t: usize, s: usize) -> bool {
        !self.causal || (s as i64) <= t as i64 + self.k.n as i64 - self.q.n as i64
    }

    /// Row t of P for (b, h): the softmax probabilities over keys, and L = logsumexp.
    fn probabilities(&self, q: &[f64], k: &[f64], b: usize, h: usize, t: usize) -> (Vec<f64>, f64) {
        let kh = self.kv_head(h);
        let qrow = &q[self.q.row(b, h, t)..][..self.q.d];
        let scores: Vec<f64> = (0..self.k.n)
            .map(|s| {
                if self.visible(t, s) {
                    self.scale * dot(qrow, &k[self.k.row(b, kh, s)..][..self.k.d])
                } else {
                    f64::NEG_INFINITY
                }
            })
            .collect();
        let m = scores.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        if m == f64::NEG_INFINITY {
            return (vec![0.0; self.k.n], f64::INFINITY);
        }
        let sum: f64 = scores.iter().map(|s| (s - m).exp()).sum();
        let p = scores.iter().map(|s| (s - m).exp() / sum).collect();
        (p, m + sum.ln())
    }
}

/// O (B, Hq, Nq, Dv) and L (B, Hq, Nq).
pub fn forward(p: &Problem, q: &[f64], k: &[f64], v: &[f64]) -> (Vec<f64>, Vec<f64>) {
    check_lengths(p, q, k, v);
    let od = p.o();
    let mut o = vec![0.0; od.len()];
    let mut lse = vec![0.0; p.q.b * p.q.h * p.q.n];
    for b in 0..p.q.b {
        for h in 0..p.q.h {
            let kh = p.kv_head(h);
            for t in 0..p.q.n {
                let (probs, l) = p.probabilities(q, k, b, h, t);
                lse[(b * p.q.h + h) * p.q.n + t] = l;
                let out = &mut o[od.row(b, h, t)..][..od.d];
                for (s, &w) in probs.iter().enumerate() {
                    if w != 0.0 {
                        let vrow = &v[p.v.row(b, kh, s)..][..p.v.d];
                        out.iter_mut().zip(vrow).for_each(|(o, v)| *o += w * v);
                    }
                }
            }
        }
    }
    (o, lse)
}

/// Gradients (dQ, dK, dV) of ⟨dO, O⟩ by the formulas of §1:
/// dV = Pᵀ dO; dP = dO Vᵀ; dS = P ⊙ (dP − rowsum(P ⊙ dP)); dQ = τ dS K; dK = τ dSᵀ Q, with
/// dK and dV summed over the query heads that share a key/value head.
pub fn backward(
    p: &Problem,
    q: &[f64],
    k: &[f64],
    v: &[f64],
    d_o: &[f64],
) -> (Vec<f64>, Vec<f64>, Vec<f64>) {
    check_lengths(p, q, k, v);
    let od = p.o();
    assert_eq!(d_o.len(), od.len(), "dO has the wrong length");
    let (mut dq, mut dk, mut dv) = (vec![0.0; q.len()], vec![0.0; k.len()], vec![0.0; v.len()]);
    for b in 0..p.q.b {
        for h in 0..p.q.h {
            let kh = p.kv_head(h);
            for t in 0..p.q.n {
                let (probs, _) = p.probabilities(q, k, b, h, t);
                let dorow = &d_o[od.row(b, h, t)..][..od.d];
                let dp: Vec<f64> = (0..p.k.n)
                    .map(|s| dot(dorow, &v[p.v.row(b, kh, s)..][..p.v.d]))
                    .collect();
                let delta: f64 = probs.iter().zip(&dp).map(|(p, d)| p * d).sum();
                let qrow = q[p.q.row(b, h, t)..][..p.q.d].to_vec();
                for s in 0..p.k.n {
                    let w = probs[s];
                    if w == 0.0 {
                        continue;
                    }
                    let ds = w * (dp[s] - delta);
                    let (kr, vr) = (p.k.row(b, kh, s), p.v.row(b, kh, s));
                    for j in 0..p.v.d {
                        dv[vr + j] += w * dorow[j];
                    }
                    let qr = p.q.row(b, h, t);
                    for j in 0..p.q.d {
                        dq[qr + j] += p.scale * ds * k[kr + j];
                        dk[kr + j] += p.scale * ds * qrow[j];
                    }
                }
            }
        }
    }
    (dq, dk, dv)
}

fn check_lengths(p: &Problem, q: &[f64], k: &[f64], v: &[f64]) {
    assert_eq!(q.len(), p.q.len(), "Q has the wrong length");
    assert_eq!(k.len(), p.k.len(), "K has the wrong length");
    assert_eq!(v.len(), p.v.len(), "V has the wrong length");
    assert_eq!((p.q.b, p.q.d), (p.k.b, p.k.d), "Q and K disagree on B or D");
    assert_eq!(
        (p.k.b, p.k.h, p.k.n),
        (p.v.b, p.v.h, p.v.n),
        "K and V disagree"
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{check_gradients, randn};

    #[test]
    fn rows_of_p_sum_to_one_and_o_is_a_convex_combination() {
        let p = Problem::square(1, 2, 7, 4, true);
        let (q, k) = (randn(p.q.len()), randn(p.k.len()));
        let v = vec![1.0; p.v.len()];
        let (o, lse) = forward(&p, &q, &k, &v);
        assert!(o.iter().all(|x| (x - 1.0).abs() < 1e-12));
        assert!(lse.iter().all(|l| l.is_finite()));
    }

    #[test]
    fn causal_first_query_sees_only_the_first_key() {
        let p = Problem::square(1, 1, 5, 3, true);
        let (q, k, v) = (randn(p.q.len()), randn(p.k.len()), randn(p.v.len()));
        let (o, lse) = forward(&p, &q, &k, &v);
        assert_eq!(&o[..3], &v[..3]);
        assert!((lse[0] - p.scale * dot(&q[..3], &k[..3])).abs() < 1e-12);
    }

    #[test]
    fn bottom_right_alignment_and_fully_masked_rows() {
        // Nq > Nk: the first Nq − Nk queries see no key at all.
        let p = Problem::gqa(1, 1, 1, 5, 3, 2, true);
        let (q, k, v) = (randn(p.q.len()), randn(p.k.len()), randn(p.v.len()));
        let (o, lse) = forward(&p, &q, &k, &v);
        assert!(o[..4].iter().all(|&x| x == 0.0));
        assert_eq!(&lse[..2], &[f64::INFINITY, f64::INFINITY]);
        assert!(lse[2].is_finite());
        assert!(p.visible(4, 2) && !p.visible(3, 2) && p.visible(2, 0) && !p.visible(2, 1));
    }

    #[test]
    fn gqa_equals_repeated_kv_heads() {
        let g = Problem::gqa(2, 4, 2, 6, 6, 3, false);
        let (q, k, v) = (randn(g.q.len()), randn(g.k.len()), randn(g.v.len()));
        let full = Problem::gqa(2, 4, 4, 6, 6, 3, false);
        let repeat = |x: &[f64]| {
            let mut out = Vec::new();
            for b in 0..2 {
                for h in 0..4 {
                    let r = g.k.row(b, h / 2, 0);
                    out.extend_from_slice(&x[r..r + 6 * 3]);
                }
            }
            out
        };
        let (o1, l1) = forward(&g, &q, &k, &v);
        let (o2, l2) = forward(&full, &q, &repeat(&k), &repeat(&v));
        assert!(crate::max_rel_err(&o1, &o2, 1e-12) < 1e-12);
        assert!(crate::max_rel_err(&l1, &l2, 1e-12) < 1e-12);
    }

    /// Central finite differences of f = ⟨dO, O⟩ against the analytic gradients.
    #[test]
    fn gradients_match_finite_differences() {
        for causal in [false, true] {
            let p = Problem::gqa(1, 2, 1, 4, 5, 3, causal);
            let (q, k, v) = (randn(p.q.len()), randn(p.k.len()), randn(p.v.len()));
            let d_o = randn(p.o().len());
            let (dq, dk, dv) = backward(&p, &q, &k, &v, &d_o);
            let f = |q: &[f64], k: &[f64], v: &[f64]| dot(&forward(&p, q, k, v).0, &d_o);
            check_gradients(f, [&q, &k, &v], [&dq, &dk, &dv]);
        }
    }
}
