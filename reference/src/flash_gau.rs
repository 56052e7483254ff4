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
}
