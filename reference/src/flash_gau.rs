//! FLASH mixed-chunk attention with GAU's output gate (ALGORITHMS.md §5; Hua et al. 2022),
//! evaluated densely in float64 from its definition. Single head; per-dimension scale/offset
//! heads of a shared Z give the four query/key sets:
//!
//!   Q_quad = Z ⊙ γ_0 + β_0,  K_quad = Z ⊙ γ_1 + β_1,  Q_lin = Z ⊙ γ_2 + β_2,  K_lin = Z ⊙ γ_3 + β_3
//!
//! and, for the chunk g of G tokens holding token t,
//!
//!   quad_t = Σ_{s in g (s ≤ t if causal), s < N} relu(Q_quad,t · K_quad,s / G)² v_s
//!   lin_t  = Q_lin,t · Σ_{s < N} K_lin,sᵀ v_s / N                  (non-causal)
//!   lin_t  = Q_lin,t · Σ_{s in chunks before g} K_lin,sᵀ v_s / G   (causal)
//!   o_t    = u_t ⊙ (quad_t + lin_t)
//!
//! Tokens past N (the padding of the last chunk) take part in nothing. z is (B, N, S); v, u and
//! o are (B, N, E); γ and β are (4, S); all dense row-major.

/// Shapes of one call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Problem {
    pub b: usize,
    pub n: usize,
    pub s: usize,
    pub e: usize,
    /// Chunk length G.
    pub g: usize,
    pub causal: bool,
}

/// O (B, N, E).
pub fn forward(
    p: &Problem,
    z: &[f64],
    gamma: &[f64],
    beta: &[f64],
    v: &[f64],
    u: &[f64],
) -> Vec<f64> {
    let (n, s, e) = (p.n, p.s, p.e);
    assert_eq!(z.len(), p.b * n * s, "Z has the wrong length");
    assert_eq!(v.len(), p.b * n * e, "V has the wrong length");
    assert_eq!(u.len(), p.b * n * e, "U has the wrong length");
    assert_eq!(
        (gamma.len(), beta.len()),
        (4 * s, 4 * s),
        "γ and β are (4, S)"
    );
    let mut o = vec![0.0; p.b * n * e];
    for b in 0..p.b {
        // head h of token t: z_t ⊙ γ_h + β_h.
        let head = |h: usize, t: usize| -> Vec<f64> {
            (0..s)
                .map(|i| z[(b * n + t) * s + i] * gamma[h * s + i] + beta[h * s + i])
                .collect()
        };
        let vrow = |t: usize| &v[(b * n + t) * e..(b * n + t + 1) * e];
        for t in 0..n {
            let chunk = t / p.g;
            let (qq, ql) = (head(0, t), head(2, t));
            let mut out = vec![0.0; e];
            let last = if p.causal {
                t
            } else {
                ((chunk + 1) * p.g).min(n) - 1
            };
            for src in chunk * p.g..=last {
                let kq = head(1, src);
                let x = crate::dot(&qq, &kq) / p.g as f64;
                let w = x.max(0.0).powi(2);
                out.iter_mut().zip(vrow(src)).for_each(|(o, v)| *o += w * v);
            }
            let (keys, norm) = if p.causal {
                (0..chunk * p.g, p.g as f64)
            } else {
                (0..n, n as f64)
            };
            for src in keys {
                let w = crate::dot(&ql, &head(3, src)) / norm;
                out.iter_mut().zip(vrow(src)).for_each(|(o, v)| *o += w * v);
            }
            let at = (b * n + t) * e;
            for j in 0..e {
                o[at + j] = u[at + j] * out[j];
            }
        }
    }
    o
}

/// Gradients of a loss through [`forward`] given dO.
#[derive(Debug, Clone, PartialEq)]
pub struct Grads {
    pub dz: Vec<f64>,
    pub dgamma: Vec<f64>,
    pub dbeta: Vec<f64>,
    pub dv: Vec<f64>,
    pub du: Vec<f64>,
}

/// The gradients of the dense definition, term by term: with Y = quad + lin and dY = dO ⊙ u,
/// du = dO ⊙ Y; each weight w_ts (relu² or the linear Q_lin·K_lin / norm) passes dY_t·v_s to
/// its query and key heads and w_ts dY_t to v_s; a head's gradient reaches z through γ and
/// γ, β through z and 1.
pub fn backward(
    p: &Problem,
    z: &[f64],
    gamma: &[f64],
    beta: &[f64],
    v: &[f64],
    u: &[f64],
    d_o: &[f64],
) -> Grads {
    let (n, s, e) = (p.n, p.s, p.e);
    assert_eq!(d_o.len(), p.b * n * e, "dO has the wrong length");
    let mut gr = Grads {
        dz: vec![0.0; z.len()],
        dgamma: vec![0.0; 4 * s],
        dbeta: vec![0.0; 4 * s],
        dv: vec![0.0; v.len()],
        du: vec![0.0; u.len()],
    };
    for b in 0..p.b {
        let tok = |t: usize, w: usize| (b * n + t) * w;
        let head = |h: usize, t: usize| -> Vec<f64> {
            (0..s)
                .map(|i| z[tok(t, s) + i] * gamma[h * s + i] + beta[h * s + i])
                .collect()
        };
        // dhead[h][t]: the gradient of head h at token t.
        let mut dhead = vec![vec![vec![0.0; s]; n]; 4];
        for t in 0..n {
            let chunk = t / p.g;
            let dy: Vec<f64> = (0..e)
                .map(|j| d_o[tok(t, e) + j] * u[tok(t, e) + j])
                .collect();
            let mut y = vec![0.0; e];
            // (query head, key head, keys, weight of x = q·k / norm, its derivative, norm)
            let last = if p.causal {
                t
            } else {
                ((chunk + 1) * p.g).min(n) - 1
            };
            let quad = (0, 1, chunk * p.g..last + 1, p.g as f64, true);
            let lin = if p.causal {
                (2, 3, 0..chunk * p.g, p.g as f64, false)
            } else {
                (2, 3, 0..n, n as f64, false)
            };
            for (hq, hk, keys, norm, squared) in [quad, lin] {
                let q = head(hq, t);
                for src in keys {
                    let k = head(hk, src);
                    let x = crate::dot(&q, &k) / norm;
                    let (w, dw_dx) = if squared {
                        (x.max(0.0).powi(2), 2.0 * x.max(0.0))
                    } else {
                        (x, 1.0)
                    };
                    let vs = &v[tok(src, e)..tok(src, e) + e];
                    let dw: f64 = dy.iter().zip(vs).map(|(a, b)| a * b).sum();
                    for j in 0..e {
                        y[j] += w * vs[j];
                        gr.dv[tok(src, e) + j] += w * dy[j];
                    }
                    let dx = dw * dw_dx / norm;
                    for i in 0..s {
                        dhead[hq][t][i] += dx * k[i];
                        dhead[hk][src][i] += dx * q[i];
                    }
                }
            }
            for j in 0..e {
                gr.du[tok(t, e) + j] = d_o[tok(t, e) + j] * y[j];
            }
        }
        for (h, dh) in dhead.iter().enumerate() {
            for (t, row) in dh.iter().enumerate() {
                for i in 0..s {
                    gr.dz[tok(t, s) + i] += row[i] * gamma[h * s + i];
                    gr.dgamma[h * s + i] += row[i] * z[tok(t, s) + i];
                    gr.dbeta[h * s + i] += row[i];
                }
            }
        }
    }
    gr
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One chunk covering the sequence, non-causal, identity heads (γ = 1, β = 0) and u = 1:
    /// o_t = Σ_s relu(z_t·z_s / G)² v_s + z_t · Σ_s z_sᵀ v_s / N, spelled out for two tokens.
    #[test]
    fn one_chunk_is_quadratic_plus_linear_attention() {
        let p = Problem {
            b: 1,
            n: 2,
            s: 1,
            e: 1,
            g: 2,
            causal: false,
        };
        let z = [1.0, -2.0];
        let v = [3.0, 5.0];
        let o = forward(&p, &z, &[1.0; 4], &[0.0; 4], &v, &[1.0, 1.0]);
        // t = 0: relu(1/2)² 3 + relu(-1)² 5 = 0.75; lin: 1 · (1·3 − 2·5) / 2 = −3.5.
        assert!((o[0] - (0.75 - 3.5)).abs() < 1e-12, "{}", o[0]);
        // t = 1: relu(-1)² 3 + relu(2)² 5 = 20; lin: −2 · (−7) / 2 = 7.
        assert!((o[1] - 27.0).abs() < 1e-12, "{}", o[1]);
        // Causal, chunks of 1: no quad partner but itself, lin from the chunk before (/ G = 1).
        let p = Problem {
            g: 1,
            causal: true,
            ..p
        };
        let o = forward(&p, &z, &[1.0; 4], &[0.0; 4], &v, &[1.0, 1.0]);
        assert!((o[0] - 3.0).abs() < 1e-12, "{}", o[0]);
        // t = 1: relu(4 / 1)² 5 = 80, lin −2 · 1 · 3 = −6.
        assert!((o[1] - 74.0).abs() < 1e-12, "{}", o[1]);
    }

    /// Every gradient of L = Σ o ⊙ W against central differences, causal and not, with a
    /// ragged last chunk.
    #[test]
    fn backward_matches_finite_differences() {
        let f = |i: usize, m: usize| ((i * m % 17) as f64 - 8.0) / 6.0;
        for causal in [false, true] {
            let p = Problem {
                b: 2,
                n: 5,
                s: 3,
                e: 2,
                g: 2,
                causal,
            };
            let z: Vec<f64> = (0..p.b * p.n * p.s).map(|i| f(i, 7)).collect();
            let gamma: Vec<f64> = (0..4 * p.s).map(|i| 1.0 + f(i, 5) / 4.0).collect();
            let beta: Vec<f64> = (0..4 * p.s).map(|i| f(i, 3) / 5.0).collect();
            let v: Vec<f64> = (0..p.b * p.n * p.e).map(|i| f(i + 1, 11)).collect();
            let u: Vec<f64> = (0..p.b * p.n * p.e).map(|i| f(i + 2, 13)).collect();
            let w: Vec<f64> = (0..p.b * p.n * p.e).map(|i| f(i + 3, 9)).collect();
            let loss = |x: &[Vec<f64>]| -> f64 {
                let o = forward(&p, &x[0], &x[1], &x[2], &x[3], &x[4]);
                o.iter().zip(&w).map(|(a, b)| a * b).sum()
            };
            let inputs = vec![z, gamma, beta, v, u];
            let gr = backward(
                &p, &inputs[0], &inputs[1], &inputs[2], &inputs[3], &inputs[4], &w,
            );
            let grads = [&gr.dz, &gr.dgamma, &gr.dbeta, &gr.dv, &gr.du];
            for (which, grad) in grads.iter().enumerate() {
                for i in 0..grad.len() {
                    let eps = 1e-6;
                    let (mut plus, mut minus) = (inputs.clone(), inputs.clone());
                    plus[which][i] += eps;
                    minus[which][i] -= eps;
                    let fd = (loss(&plus) - loss(&minus)) / (2.0 * eps);
                    let tol = 1e-6 * (1.0 + fd.abs());
                    assert!(
                        (fd - grad[i]).abs() < tol,
                        "causal {causal} input {which} [{i}]: {fd} vs {}",
                        grad[i]
                    );
                }
            }
        }
    }
}
