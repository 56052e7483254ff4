//! Causal linear attention with per-head exponential decay: Lightning Attention's function
//! (TransNormerLLM), o_t = Σ_{s≤t} λ_h^{t−s} (q_t·k_s) v_s with λ_h = e^{−slope_h}.
//! No softmax, no scale, no normalisation. A slope of 0 means no decay.
//!
//! [`forward`] and [`backward`] evaluate the O(N²) definition directly; [`Recurrence`] is the
//! numerically robust form (the recurrence S_t = λ S_{t−1} + k_tᵀ v_t, o_t = q_t S_t), in
//! which every factor is ≤ 1 so nothing overflows however long the sequence.

use crate::{dot, Dims};

/// Shapes of one call: q and k are (B, H, N, D); v and o are (B, H, N, E).
#[derive(Debug, Clone, Copy)]
pub struct Problem {
    pub qk: Dims,
    pub v: Dims,
}

impl Problem {
    pub fn new(b: usize, h: usize, n: usize, d: usize, e: usize) -> Self {
        Self {
            qk: Dims::new(b, h, n, d),
            v: Dims::new(b, h, n, e),
        }
    }

    fn check(&self, q: &[f64], k: &[f64], v: &[f64], slopes: &[f64]) {
        assert_eq!(q.len(), self.qk.len(), "Q has the wrong length");
        assert_eq!(k.len(), self.qk.len(), "K has the wrong length");
        assert_eq!(v.len(), self.v.len(), "V has the wrong length");
        assert_eq!(slopes.len(), self.qk.h, "one slope per head");
    }
}

/// λ^{t−s} for t ≥ s, computed as one exponential (no repeated products).
#[inline]
fn decay(slope: f64, t: usize, s: usize) -> f64 {
    (-slope * (t - s) as f64).exp()
}

/// O, (B, H, N, E).
pub fn forward(p: &Problem, q: &[f64], k: &[f64], v: &[f64], slopes: &[f64]) -> Vec<f64> {
    p.check(q, k, v, slopes);
    let (qk, vd) = (p.qk, p.v);
    let mut o = vec![0.0; vd.len()];
    for b in 0..qk.b {
        for h in 0..qk.h {
            for t in 0..qk.n {
                let qrow = &q[qk.row(b, h, t)..][..qk.d];
                for s in 0..=t {
                    let w = decay(slopes[h], t, s) * dot(qrow, &k[qk.row(b, h, s)..][..qk.d]);
                    let vrow = &v[vd.row(b, h, s)..][..vd.d];
                    let out = &mut o[vd.row(b, h, t)..][..vd.d];
                    out.iter_mut().zip(vrow).for_each(|(o, v)| *o += w * v);
                }
            }
        }
    }
    o
}

/// (dQ, dK, dV) of ⟨dO, O⟩:
/// dq_t = Σ_{s≤t} λ^{t−s} (do_t·v_s) k_s;  dk_s = Σ_{t≥s} λ^{t−s} (do_t·v_s) q_t;
/// dv_s = Σ_{t≥s} λ^{t−s} (q_t·k_s) do_t.
pub fn backward(
    p: &Problem,
    q: &[f64],
    k: &[f64],
    v: &[f64],
    slopes: &[f64],
    d_o: &[f64],
) -> (Vec<f64>, Vec<f64>, Vec<f64>) {
    p.check(q, k, v, slopes);
    assert_eq!(d_o.len(), p.v.len(), "dO has the wrong length");
    let (qk, vd) = (p.qk, p.v);
    let (mut dq, mut dk, mut dv) = (vec![0.0; q.len()], vec![0.0; k.len()], vec![0.0; v.len()]);
    for b in 0..qk.b {
        for h in 0..qk.h {
            for t in 0..qk.n {
                let dorow = &d_o[vd.row(b, h, t)..][..vd.d];
                for s in 0..=t {
                    let lam = decay(slopes[h], t, s);
                    let dov = lam * dot(dorow, &v[vd.row(b, h, s)..][..vd.d]);
                    let qkd =
                        lam * dot(&q[qk.row(b, h, t)..][..qk.d], &k[qk.row(b, h, s)..][..qk.d]);
                    for j in 0..qk.d {
                        dq[qk.row(b, h, t) + j] += dov * k[qk.row(b, h, s) + j];
                        dk[qk.row(b, h, s) + j] += dov * q[qk.row(b, h, t) + j];
                    }
                    for j in 0..vd.d {
                        dv[vd.row(b, h, s) + j] += qkd * dorow[j];
                    }
                }
            }
        }
    }
    (dq, dk, dv)
}

/// The robust recurrent form, one token at a time, for every (batch, head) at once.
/// The state per (b, h) is a D×E matrix; `state` is (B, H, D, E) row-major.
#[derive(Debug, Clone)]
pub struct Recurrence {
    pub b: usize,
    pub h: usize,
    pub d: usize,
    pub e: usize,
    pub state: Vec<f64>,
}

impl Recurrence {
    pub fn new(b: usize, h: usize, d: usize, e: usize) -> Self {
        Self {
            b,
            h,
            d,
            e,
            state: vec![0.0; b * h * d * e],
        }
    }

    /// Consumes one token: q, k are (B, H, D) and v is (B, H, E); returns o, (B, H, E).
    /// S ← λ S + kᵀ v, then o = q S (the current token included, λ⁰ = 1).
    pub fn step(&mut self, q: &[f64], k: &[f64], v: &[f64], slopes: &[f64]) -> Vec<f64> {
        let (d, e) = (self.d, self.e);
        assert_eq!(q.len(), self.b * self.h * d);
        assert_eq!(k.len(), self.b * self.h * d);
        assert_eq!(v.len(), self.b * self.h * e);
        assert_eq!(slopes.len(), self.h);
        let mut o = vec![0.0; self.b * self.h * e];
        for bh in 0..self.b * self.h {
            let lam = (-slopes[bh % self.h]).exp();
            let s = &mut self.state[bh * d * e..][..d * e];
            for i in 0..d {
                for j in 0..e {
                    s[i * e + j] = lam * s[i * e + j] + k[bh * d + i] * v[bh * e + j];
                }
            }
            for j in 0..e {
                o[bh * e + j] = (0..d).map(|i| q[bh * d + i] * s[i * e + j]).sum();
            }
        }
        o
    }

    /// Runs a whole (B, H, N, ·) sequence through [`Recurrence::step`], returning O.
    pub fn run(
        &mut self,
        p: &Problem,
        q: &[f64],
        k: &[f64],
        v: &[f64],
        slopes: &[f64],
    ) -> Vec<f64> {
        p.check(q, k, v, slopes);
        let (qk, vd) = (p.qk, p.v);
        let mut o = vec![0.0; vd.len()];
        for t in 0..qk.n {
            let gather = |x: &[f64], dims: Dims| -> Vec<f64> {
                (0..dims.b * dims.h)
                    .flat_map(|bh| x[dims.row(bh / dims.h, bh % dims.h, t)..][..dims.d].to_vec())
                    .collect()
            };
            let ot = self.step(&gather(q, qk), &gather(k, qk), &gather(v, vd), slopes);
            for bh in 0..qk.b * qk.h {
                let r = vd.row(bh / qk.h, bh % qk.h, t);
                o[r..r + vd.d].copy_from_slice(&ot[bh * vd.d..][..vd.d]);
            }
        }
        o
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{check_gradients, randn};

    #[test]
    fn recurrence_equals_quadratic_definition() {
        let p = Problem::new(2, 3, 9, 4, 5);
        let (q, k, v) = (randn(p.qk.len()), randn(p.qk.len()), randn(p.v.len()));
        let slopes = [0.0, 0.3, 2.0];
        let want = forward(&p, &q, &k, &v, &slopes);
        let got = Recurrence::new(2, 3, 4, 5).run(&p, &q, &k, &v, &slopes);
        assert!(crate::max_rel_err(&got, &want, 1e-9) < 1e-12);
    }

    #[test]
    fn zero_slope_is_plain_causal_linear_attention() {
        let p = Problem::new(1, 1, 3, 1, 1);
        let (q, k, v) = (
            vec![1.0, 2.0, 3.0],
            vec![4.0, 5.0, 6.0],
            vec![7.0, 8.0, 9.0],
        );
        let o = forward(&p, &q, &k, &v, &[0.0]);
        assert_eq!(
            o,
            vec![28.0, 2.0 * (28.0 + 40.0), 3.0 * (28.0 + 40.0 + 54.0)]
        );
    }

    /// A decay near 1 over 200k steps: the robust recurrence stays bounded by its fixed point
    /// (|k||v| / (1 − λ)), where the "origin" form would overflow λ^{−t} long before.
    #[test]
    fn long_recurrence_stays_finite_and_bounded() {
        let slope = 1e-3;
        let mut r = Recurrence::new(1, 1, 1, 1);
        let mut worst: f64 = 0.0;
        for _ in 0..200_000 {
            let o = r.step(&[1.0], &[1.0], &[1.0], &[slope]);
            worst = worst.max(o[0]);
            assert!(o[0].is_finite());
        }
        let fixed_point = 1.0 / (1.0 - (-slope).exp());
        assert!(
            worst <= fixed_point * (1.0 + 1e-9),
            "{worst} > {fixed_point}"
        );
        assert!((worst - fixed_point).abs() / fixed_point < 1e-6);
    }

    #[test]
    fn gradients_match_finite_differences() {
        let p = Problem::new(1, 2, 5, 3, 2);
        let (q, k, v) = (randn(p.qk.len()), randn(p.qk.len()), randn(p.v.len()));
        let slopes = [0.1, 0.9];
        let d_o = randn(p.v.len());
        let (dq, dk, dv) = backward(&p, &q, &k, &v, &slopes, &d_o);
        let f = |q: &[f64], k: &[f64], v: &[f64]| dot(&forward(&p, q, k, v, &slopes), &d_o);
        check_gradients(f, [&q, &k, &v], [&dq, &dk, &dv]);
    }
}
