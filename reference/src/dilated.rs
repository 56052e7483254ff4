//! LongNet's dilated attention (ALGORITHMS.md §4), in its closed form.
//!
//! A pattern (w, r) cuts the sequence into segments of w' = min(w, N) positions; in a segment,
//! head h keeps the positions whose in-segment index j satisfies j ≡ o_h (mod r), and the kept
//! positions of one segment attend to each other only. The patterns' outputs are combined with
//! weights proportional to their softmax denominators, which is the same as one softmax in which
//! key s counts c_ts times for query t (c_ts = the number of patterns that put t and s in the
//! same segment and keep both, s ≤ t when causal):
//!
//!   O_t = Σ_s c_ts e^{τ q_t·k_s} v_s / Σ_s c_ts e^{τ q_t·k_s},   L_t = log Σ_s c_ts e^{τ q_t·k_s}.
//!
//! A row no pattern keeps gets O = 0 and L = −∞ (a combination weight of zero). The gradients
//! come in two modes: [`Grad::Exact`] differentiates the closed form; [`Grad::Torchscale`] treats
//! the combination weights α_i = e^{L_i − L} as constants, as torchscale does (it computes them
//! under `no_grad`), so each pattern back-propagates α_i·dO through its own softmax.

use crate::{dot, Dims};

/// One (segment length, dilation) pair.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pattern {
    pub w: usize,
    pub r: usize,
}

/// Which in-segment offset head h uses for a pattern of dilation r.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Offsets {
    /// The paper's o_h = h mod r.
    Paper,
    /// torchscale's: heads grouped contiguously, ⌈H/r⌉ per group, group g uses offset g.
    Torchscale,
}

/// How the gradients treat the combination weights.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Grad {
    Exact,
    Torchscale,
}

/// One dilated-attention call over (B, H, N, D) tensors.
#[derive(Debug, Clone)]
pub struct Problem {
    pub dims: Dims,
    pub patterns: Vec<Pattern>,
    pub offsets: Offsets,
    pub causal: bool,
    pub scale: f64,
}

impl Problem {
    pub fn new(dims: Dims, patterns: &[Pattern], offsets: Offsets, causal: bool) -> Self {
        assert!(
            patterns.iter().all(|p| p.w > 0 && p.r > 0),
            "w and r must be positive"
        );
        Self {
            dims,
            patterns: patterns.to_vec(),
            offsets,
            causal,
            scale: 1.0 / (dims.d as f64).sqrt(),
        }
    }

    /// The offset head `h` uses under a pattern of dilation `r`.
    pub fn offset(&self, h: usize, r: usize) -> usize {
        match self.offsets {
            Offsets::Paper => h % r,
            Offsets::Torchscale => h / self.dims.h.div_ceil(r),
        }
    }

    /// The positions pattern `i` lets query `t` of head `h` attend to (empty when t is not kept).
    pub fn keys(&self, i: usize, h: usize, t: usize) -> impl Iterator<Item = usize> {
        let Pattern { w, r } = self.patterns[i];
        let w = w.min(self.dims.n);
        let seg = t / w * w;
        let end = (seg + w).min(self.dims.n);
        let o = self.offset(h, r);
        let kept = (t - seg) % r == o;
        let last = if self.causal { t + 1 } else { end };
        (seg + o..if kept { last } else { seg }).step_by(r)
    }

    /// c_ts of the module docs, counted pattern by pattern.
    pub fn multiplicity(&self, h: usize, t: usize, s: usize) -> usize {
        (0..self.patterns.len())
            .filter(|&i| self.keys(i, h, t).any(|x| x == s))
            .count()
    }
}

/// The logits, probabilities and log-denominator of query (b, h, t) over the keys `keys`
/// (repeats allowed: each occurrence is one term of the sum).
fn softmax_row(
    p: &Problem,
    q: &[f64],
    k: &[f64],
    (b, h, t): (usize, usize, usize),
    keys: &[usize],
) -> (Vec<f64>, f64) {
    let d = p.dims;
    let qrow = &q[d.row(b, h, t)..][..d.d];
    let s: Vec<f64> = keys
        .iter()
        .map(|&s| p.scale * dot(qrow, &k[d.row(b, h, s)..][..d.d]))
        .collect();
    let m = s.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    if m == f64::NEG_INFINITY {
        return (Vec::new(), f64::NEG_INFINITY);
    }
    let e: Vec<f64> = s.iter().map(|x| (x - m).exp()).collect();
    let z: f64 = e.iter().sum();
    (e.iter().map(|x| x / z).collect(), m + z.ln())
}

/// Every key occurrence of query (h, t) over all patterns: key s appears c_ts times.
fn all_keys(p: &Problem, h: usize, t: usize) -> Vec<usize> {
    (0..p.patterns.len())
        .flat_map(|i| p.keys(i, h, t))
        .collect()
}

/// (O, L) of the closed form.
pub fn forward(p: &Problem, q: &[f64], k: &[f64], v: &[f64]) -> (Vec<f64>, Vec<f64>) {
    let d = p.dims;
    check_lengths(p, q, k, v);
    let mut o = vec![0.0; d.len()];
    let mut lse = vec![f64::NEG_INFINITY; d.b * d.h * d.n];
    for b in 0..d.b {
        for h in 0..d.h {
            for t in 0..d.n {
                let keys = all_keys(p, h, t);
                let (probs, l) = softmax_row(p, q, k, (b, h, t), &keys);
                lse[(b * d.h + h) * d.n + t] = l;
                let orow = &mut o[d.row(b, h, t)..][..d.d];
                for (w, &s) in probs.iter().zip(&keys) {
                    let vrow = &v[d.row(b, h, s)..][..d.d];
                    orow.iter_mut().zip(vrow).for_each(|(o, v)| *o += w * v);
                }
            }
        }
    }
    (o, lse)
}

/// Gradients (dQ, dK, dV) of ⟨dO, O⟩ in the given mode.
pub fn backward(
    p: &Problem,
    mode: Grad,
    q: &[f64],
    k: &[f64],
    v: &[f64],
    d_o: &[f64],
) -> (Vec<f64>, Vec<f64>, Vec<f64>) {
    let d = p.dims;
    check_lengths(p, q, k, v);
    assert_eq!(d_o.len(), d.len(), "dO has the wrong length");
    let mut grads = (vec![0.0; d.len()], vec![0.0; d.len()], vec![0.0; d.len()]);
    for b in 0..d.b {
        for h in 0..d.h {
            for t in 0..d.n {
                let at = (b, h, t);
                match mode {
                    // One softmax over every key occurrence, the gradient of the closed form.
                    Grad::Exact => {
                        let keys = all_keys(p, h, t);
                        let (probs, _) = softmax_row(p, q, k, at, &keys);
                        row_backward(p, (q, k, v), d_o, at, (&keys, &probs, 1.0), &mut grads);
                    }
                    // Each pattern's own softmax, its output weighted by a constant α_i.
                    Grad::Torchscale => {
                        let (_, l) = softmax_row(p, q, k, at, &all_keys(p, h, t));
                        for i in 0..p.patterns.len() {
                            let keys: Vec<usize> = p.keys(i, h, t).collect();
                            let (probs, li) = softmax_row(p, q, k, at, &keys);
                            if li == f64::NEG_INFINITY {
                                continue;
                            }
                            let alpha = (li - l).exp();
                            row_backward(p, (q, k, v), d_o, at, (&keys, &probs, alpha), &mut grads);
                        }
                    }
                }
            }
        }
    }
    grads
}

/// Attention backward for one query row whose output is `weight`·Σ probs[j]·v[keys[j]]:
/// dV += P·(w dO); dP = w dO·v; dS = P(dP − Σ P dP); dQ += τ dS K; dK += τ dS q.
fn row_backward(
    p: &Problem,
    (q, k, v): (&[f64], &[f64], &[f64]),
    d_o: &[f64],
    (b, h, t): (usize, usize, usize),
    (keys, probs, weight): (&[usize], &[f64], f64),
    (dq, dk, dv): &mut (Vec<f64>, Vec<f64>, Vec<f64>),
) {
    let d = p.dims;
    let (qr, n) = (d.row(b, h, t), d.d);
    let dorow: Vec<f64> = d_o[qr..][..n].iter().map(|x| weight * x).collect();
    let dp: Vec<f64> = keys
        .iter()
        .map(|&s| dot(&dorow, &v[d.row(b, h, s)..][..n]))
        .collect();
    let delta: f64 = probs.iter().zip(&dp).map(|(p, d)| p * d).sum();
    for ((&s, &w), &dps) in keys.iter().zip(probs).zip(&dp) {
        let ds = w * (dps - delta);
        let kr = d.row(b, h, s);
        for j in 0..n {
            dv[kr + j] += w * dorow[j];
            dq[qr + j] += p.scale * ds * k[kr + j];
            dk[kr + j] += p.scale * ds * q[qr + j];
        }
    }
}

fn check_lengths(p: &Problem, q: &[f64], k: &[f64], v: &[f64]) {
    let n = p.dims.len();
    assert_eq!(q.len(), n, "Q has the wrong length");
    assert_eq!(k.len(), n, "K has the wrong length");
    assert_eq!(v.len(), n, "V has the wrong length");
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::attention;
    use crate::testing::{check_gradients, randn};

    fn close(a: &[f64], b: &[f64], tol: f64) -> bool {
        a.iter()
            .zip(b)
            .all(|(x, y)| (x - y).abs() <= tol * (1.0 + y.abs()))
    }

    #[test]
    fn one_full_pattern_is_plain_attention() {
        for causal in [false, true] {
            let dims = Dims::new(2, 3, 13, 4);
            let p = Problem::new(dims, &[Pattern { w: 64, r: 1 }], Offsets::Paper, causal);
            let (q, k, v) = (randn(dims.len()), randn(dims.len()), randn(dims.len()));
            let (o, lse) = forward(&p, &q, &k, &v);
            let a = attention::Problem::square(2, 3, 13, 4, causal);
            let (o2, lse2) = attention::forward(&a, &q, &k, &v);
            assert!(close(&o, &o2, 1e-12) && close(&lse, &lse2, 1e-12));
        }
    }

    #[test]
    fn keys_follow_segments_offsets_and_ragged_ends() {
        let dims = Dims::new(1, 4, 10, 2);
        let p = Problem::new(dims, &[Pattern { w: 4, r: 2 }], Offsets::Paper, false);
        // Head 1 keeps odd in-segment indices: segment [4, 8) keeps 5 and 7.
        assert_eq!(p.keys(0, 1, 5).collect::<Vec<_>>(), [5, 7]);
        assert_eq!(p.keys(0, 1, 6).count(), 0);
        // The last segment is [8, 10): head 0 keeps 8 only.
        assert_eq!(p.keys(0, 0, 8).collect::<Vec<_>>(), [8]);
        let ts = Problem::new(dims, &[Pattern { w: 4, r: 2 }], Offsets::Torchscale, false);
        // ⌈4/2⌉ = 2 heads per group: heads 0, 1 use offset 0; heads 2, 3 offset 1.
        assert_eq!([0, 1, 2, 3].map(|h| ts.offset(h, 2)), [0, 0, 1, 1]);
    }

    #[test]
    fn overlapping_patterns_count_a_key_once_per_pattern() {
        let dims = Dims::new(1, 1, 8, 2);
        let pats = [Pattern { w: 4, r: 1 }, Pattern { w: 8, r: 2 }];
        let p = Problem::new(dims, &pats, Offsets::Paper, false);
        assert_eq!(p.multiplicity(0, 2, 0), 2);
        assert_eq!(p.multiplicity(0, 2, 1), 1);
        assert_eq!(p.multiplicity(0, 2, 6), 1);
        assert_eq!(p.multiplicity(0, 3, 6), 0);
    }

    #[test]
    fn forward_is_the_dense_closed_form() {
        let dims = Dims::new(1, 3, 11, 2);
        let pats = [
            Pattern { w: 4, r: 1 },
            Pattern { w: 8, r: 2 },
            Pattern { w: 16, r: 3 },
        ];
        for offsets in [Offsets::Paper, Offsets::Torchscale] {
            let p = Problem::new(dims, &pats, offsets, true);
            let (q, k, v) = (randn(dims.len()), randn(dims.len()), randn(dims.len()));
            let (o, _) = forward(&p, &q, &k, &v);
            for h in 0..dims.h {
                for t in 0..dims.n {
                    let (mut num, mut den) = (vec![0.0; dims.d], 0.0);
                    for s in 0..dims.n {
                        let c = p.multiplicity(h, t, s) as f64;
                        let qk = dot(&q[dims.row(0, h, t)..][..2], &k[dims.row(0, h, s)..][..2]);
                        let e = c * (p.scale * qk).exp();
                        den += e;
                        num.iter_mut()
                            .zip(&v[dims.row(0, h, s)..][..2])
                            .for_each(|(n, v)| *n += e * v);
                    }
                    let want: Vec<f64> = num
                        .iter()
                        .map(|n| if den > 0.0 { n / den } else { 0.0 })
                        .collect();
                    assert!(
                        close(&o[dims.row(0, h, t)..][..2], &want, 1e-12),
                        "h {h} t {t}"
                    );
                }
            }
        }
    }

    #[test]
    fn uncovered_rows_get_zero_and_minus_infinity() {
        let dims = Dims::new(1, 1, 6, 2);
        let p = Problem::new(dims, &[Pattern { w: 6, r: 3 }], Offsets::Paper, true);
        let (q, k, v) = (randn(dims.len()), randn(dims.len()), randn(dims.len()));
        let (o, lse) = forward(&p, &q, &k, &v);
        assert_eq!(lse[1], f64::NEG_INFINITY);
        assert_eq!(&o[2..4], &[0.0, 0.0]);
        assert!(lse[3].is_finite());
    }

    #[test]
    fn exact_gradients_match_finite_differences() {
        let dims = Dims::new(1, 2, 9, 3);
        let pats = [Pattern { w: 4, r: 1 }, Pattern { w: 8, r: 2 }];
        for causal in [false, true] {
            let p = Problem::new(dims, &pats, Offsets::Paper, causal);
            let (q, k, v, d_o) = (
                randn(dims.len()),
                randn(dims.len()),
                randn(dims.len()),
                randn(dims.len()),
            );
            let (dq, dk, dv) = backward(&p, Grad::Exact, &q, &k, &v, &d_o);
            let f = |q: &[f64], k: &[f64], v: &[f64]| dot(&forward(&p, q, k, v).0, &d_o);
            check_gradients(f, [&q, &k, &v], [&dq, &dk, &dv]);
        }
    }

    #[test]
    fn torchscale_gradients_hold_the_weights_constant() {
        let dims = Dims::new(1, 3, 8, 3);
        let pats = [Pattern { w: 4, r: 1 }, Pattern { w: 8, r: 2 }];
        let p = Problem::new(dims, &pats, Offsets::Torchscale, true);
        let (q, k, v, d_o) = (
            randn(dims.len()),
            randn(dims.len()),
            randn(dims.len()),
            randn(dims.len()),
        );
        let (_, lse) = forward(&p, &q, &k, &v);
        // α_i = e^{L_i − L} taken at (q, k) and held fixed; each pattern's output moves with
        // the perturbed inputs: ⟨dO, Σ_i α_i O_i⟩.
        let frozen = |qx: &[f64], kx: &[f64], vx: &[f64]| {
            let mut total = 0.0;
            for h in 0..dims.h {
                for t in 0..dims.n {
                    let row = dims.row(0, h, t);
                    for i in 0..pats.len() {
                        let keys: Vec<usize> = p.keys(i, h, t).collect();
                        let (_, li) = softmax_row(&p, &q, &k, (0, h, t), &keys);
                        if li == f64::NEG_INFINITY {
                            continue;
                        }
                        let alpha = (li - lse[h * dims.n + t]).exp();
                        let (probs, _) = softmax_row(&p, qx, kx, (0, h, t), &keys);
                        for (w, &s) in probs.iter().zip(&keys) {
                            let vr = dims.row(0, h, s);
                            total += alpha * w * dot(&vx[vr..][..dims.d], &d_o[row..][..dims.d]);
                        }
                    }
                }
            }
            total
        };
        let (dq, dk, dv) = backward(&p, Grad::Torchscale, &q, &k, &v, &d_o);
        check_gradients(frozen, [&q, &k, &v], [&dq, &dk, &dv]);
        // dV agrees with the exact mode (O is linear in V with the same weights); dQ does not.
        let (eq, _, ev) = backward(&p, Grad::Exact, &q, &k, &v, &d_o);
        assert!(close(&dv, &ev, 1e-12));
        assert!(!close(&dq, &eq, 1e-6));
    }
}
