//! TransNormerLLM's kernels (dsl-examples/{srmsnorm, embedding, linear, sglu, transnormer_mixer,
//! sampling}.tsl) run by the Tile IR interpreter on fresh random inputs with ragged sizes, outputs
//! poisoned first, against float64 written here from ALGORITHMS.md §2.

use rand::Rng;
use tessel_compiler::interp::{self, HostArg, HostTensor};
use tessel_compiler::tir::{DType, Kernel};

mod support;
use support::err_vs_scale as err;

fn kernel(file: &str, name: &str, defines: &[(&str, &str)]) -> Kernel {
    support::example_kernel(file, name, defines)
}

/// Fresh uniform values in [−scale, scale).
fn random(dtype: DType, shape: &[usize], scale: f64) -> HostTensor {
    support::random(dtype, shape, -scale, scale)
}

fn t(a: HostTensor) -> HostArg {
    HostArg::Tensor(a)
}

fn out(a: &HostArg) -> &[f64] {
    match a {
        HostArg::Tensor(t) => &t.data,
        HostArg::Scalar(_) => panic!("not a tensor"),
    }
}

fn srms(row: &[f64]) -> Vec<f64> {
    let ms = row.iter().map(|x| x * x).sum::<f64>() / row.len() as f64;
    row.iter().map(|x| x / (ms + 1e-6).sqrt()).collect()
}

/// x·Wᵀ for x (m, k), W (n, k).
fn xwt(x: &[f64], w: &[f64], m: usize, n: usize, k: usize) -> Vec<f64> {
    let mut y = vec![0.0; m * n];
    for i in 0..m {
        for j in 0..n {
            y[i * n + j] = (0..k).map(|p| x[i * k + p] * w[j * k + p]).sum();
        }
    }
    y
}

#[test]
fn srmsnorm_rows_and_last_rows_match_float64() {
    let k = kernel("srmsnorm.tsl", "srmsnorm", &[("BM", "2"), ("BD", "128")]);
    let last = kernel("srmsnorm.tsl", "srmsnorm_last", &[("BD", "128")]);
    for (m, d) in [(1, 1), (5, 100), (3, 128)] {
        let x = random(DType::F32, &[m, d], 3.0);
        let want: Vec<f64> = x.data.chunks(d).flat_map(srms).collect();
        let mut args = vec![
            t(x.clone()),
            t(HostTensor::poisoned(DType::Bf16, vec![m, d])),
        ];
        interp::run(&k, &mut args).unwrap();
        let e = err(out(&args[1]), &want);
        assert!(e < 8e-3, "{m}x{d}: {e}");
        // As (B = 1, N = m, D): the last row only.
        let x3 = HostTensor::new(DType::F32, vec![1, m, d], x.data.clone());
        let mut args = vec![t(x3), t(HostTensor::poisoned(DType::Bf16, vec![1, d]))];
        interp::run(&last, &mut args).unwrap();
        let e = err(out(&args[1]), &want[(m - 1) * d..]);
        assert!(e < 8e-3, "last of {m}x{d}: {e}");
    }
}

#[test]
fn embedding_gathers_and_scales_rows() {
    let k = kernel("embedding.tsl", "embedding", &[("BD", "64")]);
    let (v, d, m) = (37, 50, 9);
    let table = random(DType::Bf16, &[v, d], 1.0);
    let mut rng = rand::rng();
    let ids: Vec<f64> = (0..m).map(|_| rng.random_range(0..v) as f64).collect();
    let scale = 7.25;
    let want: Vec<f64> = ids
        .iter()
        .flat_map(|&i| {
            table.data[i as usize * d..(i as usize + 1) * d]
                .iter()
                .map(|x| x * scale)
        })
        .collect();
    let mut args = vec![
        t(HostTensor::new(DType::I32, vec![m], ids)),
        t(table),
        t(HostTensor::poisoned(DType::F32, vec![m, d])),
        HostArg::Scalar(scale),
    ];
    interp::run(&k, &mut args).unwrap();
    // bf16 × 7.25 is exact in f32.
    assert_eq!(out(&args[2]), want.as_slice());
}

#[test]
fn linear_schedules_match_float64_with_weights_as_stored() {
    let tiles = [("BM", "16"), ("BN", "16"), ("BK", "8")];
    let full = kernel("linear.tsl", "linear", &tiles);
    let resid = kernel("linear.tsl", "linear_residual", &tiles);
    let partial = kernel("linear.tsl", "linear_partial", &tiles);
    let reduce = kernel("linear.tsl", "reduce_partials", &[("BN", "32")]);
    let reduce_res = kernel("linear.tsl", "reduce_partials_residual", &[("BN", "32")]);
    for (m, n, kk, s) in [
        (1, 1, 1, 1),
        (3, 33, 45, 4),
        (20, 17, 24, 3),
        (2, 40, 16, 5),
    ] {
        let x = random(DType::Bf16, &[m, kk], 1.0);
        let w = random(DType::Bf16, &[n, kk], 1.0);
        let r = random(DType::F32, &[m, n], 1.0);
        let want = xwt(&x.data, &w.data, m, n, kk);
        let mut args = vec![
            t(x.clone()),
            t(w.clone()),
            t(HostTensor::poisoned(DType::F32, vec![m, n])),
        ];
        // TO = f32 is what the LM head uses; the default TO = T covers the rest below.
        let full_f32 = kernel(
            "linear.tsl",
            "linear",
            &[tiles[0], tiles[1], tiles[2], ("TO", "f32")],
        );
        interp::run(&full_f32, &mut args).unwrap();
        assert!(err(out(&args[2]), &want) < 1e-6, "linear f32 {m}x{n}x{kk}");
        let mut args = vec![
            t(x.clone()),
            t(w.clone()),
            t(HostTensor::poisoned(DType::Bf16, vec![m, n])),
        ];
        interp::run(&full, &mut args).unwrap();
        assert!(err(out(&args[2]), &want) < 8e-3, "linear {m}x{n}x{kk}");
        let plus: Vec<f64> = want.iter().zip(&r.data).map(|(a, b)| a + b).collect();
        let mut args = vec![t(x.clone()), t(w.clone()), t(r.clone())];
        interp::run(&resid, &mut args).unwrap();
        assert!(err(out(&args[2]), &plus) < 1e-6, "residual {m}x{n}x{kk}");
        // Split K: partials, then the plain and residual reductions.
        let mut args = vec![
            t(x),
            t(w),
            t(HostTensor::poisoned(DType::F32, vec![s, m, n])),
        ];
        interp::run(&partial, &mut args).unwrap();
        let parts = args.pop().unwrap();
        let mut args = vec![
            parts.clone(),
            t(HostTensor::poisoned(DType::Bf16, vec![m, n])),
        ];
        interp::run(&reduce, &mut args).unwrap();
        assert!(
            err(out(&args[1]), &want) < 8e-3,
            "split-K {m}x{n}x{kk} S={s}"
        );
        let mut args = vec![parts, t(r)];
        interp::run(&reduce_res, &mut args).unwrap();
        assert!(
            err(out(&args[1]), &plus) < 1e-6,
            "split-K residual {m}x{n}x{kk} S={s}"
        );
    }
}

#[test]
fn sglu_gate_matches_float64_in_both_schedules() {
    let tiles = [("BM", "16"), ("BN", "16"), ("BK", "8")];
    let fused = kernel("sglu.tsl", "sglu", &tiles);
    let normed = kernel(
        "sglu.tsl",
        "sglu_norm",
        &[("BM", "4"), ("BN", "8"), ("BK", "16")],
    );
    for (m, f, kk) in [(1, 1, 1), (5, 35, 24), (18, 20, 40)] {
        let x = random(DType::Bf16, &[m, kk], 1.0);
        let w1 = random(DType::Bf16, &[f, kk], 1.0);
        let w2 = random(DType::Bf16, &[f, kk], 1.0);
        let gate = |x: &[f64]| -> Vec<f64> {
            let a = xwt(x, &w1.data, m, f, kk);
            let b = xwt(x, &w2.data, m, f, kk);
            a.iter().zip(&b).map(|(p, q)| p * q).collect()
        };
        let mut args = vec![
            t(x.clone()),
            t(w1.clone()),
            t(w2.clone()),
            t(HostTensor::poisoned(DType::Bf16, vec![m, f])),
        ];
        interp::run(&fused, &mut args).unwrap();
        assert!(
            err(out(&args[3]), &gate(&x.data)) < 8e-3,
            "sglu {m}x{f}x{kk}"
        );
        // The decode form takes SRMSNorm of the f32 residual stream itself.
        let xs = random(DType::F32, &[m, kk], 3.0);
        let h: Vec<f64> = xs.data.chunks(kk).flat_map(srms).collect();
        let mut args = vec![
            t(xs),
            t(w1.clone()),
            t(w2.clone()),
            t(HostTensor::poisoned(DType::Bf16, vec![m, f])),
        ];
        interp::run(&normed, &mut args).unwrap();
        let e = err(out(&args[3]), &gate(&h));
        assert!(e < 8e-3, "sglu_norm {m}x{f}x{kk}: {e}");
    }
}

fn silu(x: f64) -> f64 {
    x / (1.0 + (-x).exp())
}

#[test]
fn mixer_qkv_applies_silu_lrpe_positions_and_left_padding() {
    let (b, n, h, hd) = (2, 7, 3, 16);
    for lrpe in [false, true] {
        let flag = if lrpe { "true" } else { "false" };
        let k = kernel(
            "transnormer_mixer.tsl",
            "mixer_qkv",
            &[("BN", "4"), ("HD", "16"), ("LRPE", flag)],
        );
        let kd = if lrpe { 2 * hd } else { hd };
        let qkvu = random(DType::Bf16, &[b, n, 4 * h, hd], 3.0);
        // Learned θ may have either sign; angles up to ~100 rad exercise the range reduction.
        let theta = random(DType::F32, &[h, hd], 4.0);
        // Sequence 0 is decoding at position 90; sequence 1 has 3 pad rows then positions 0..3.
        let pos0 = [90.0, -3.0];
        let mut args = vec![
            t(qkvu.clone()),
            t(theta.clone()),
            t(HostTensor::new(DType::I32, vec![b], pos0.to_vec())),
            t(HostTensor::poisoned(DType::Bf16, vec![b, h, n, kd])),
            t(HostTensor::poisoned(DType::Bf16, vec![b, h, n, kd])),
            t(HostTensor::poisoned(DType::Bf16, vec![b, h, n, hd])),
        ];
        interp::run(&k, &mut args).unwrap();
        let mut want = [
            vec![0.0; b * h * n * kd],
            vec![0.0; b * h * n * kd],
            vec![0.0; b * h * n * hd],
        ];
        for bi in 0..b {
            for ti in 0..n {
                let pos = pos0[bi] + ti as f64;
                if pos < 0.0 {
                    continue;
                }
                for hi in 0..h {
                    for j in 0..hd {
                        let src = |part: usize| {
                            qkvu.data[((bi * n + ti) * 4 * h + part * h + hi) * hd + j]
                        };
                        let ang = theta.data[hi * hd + j] * pos;
                        for (which, part) in [(0, 0), (1, 1)] {
                            let x = silu(src(part));
                            let base = ((bi * h + hi) * n + ti) * kd;
                            if lrpe {
                                want[which][base + j] = x * ang.cos();
                                want[which][base + hd + j] = x * ang.sin();
                            } else {
                                want[which][base + j] = x;
                            }
                        }
                        want[2][((bi * h + hi) * n + ti) * hd + j] = src(2);
                    }
                }
            }
        }
        for (i, name) in ["q", "k", "v"].iter().enumerate() {
            let e = err(out(&args[3 + i]), &want[i]);
            assert!(e < 8e-3, "{name} lrpe={lrpe}: {e}");
        }
    }
}

#[test]
fn mixer_gate_normalises_over_all_heads_then_gates() {
    let (b, n, h, hd) = (2, 3, 3, 16);
    let k = kernel(
        "transnormer_mixer.tsl",
        "mixer_gate",
        &[("BH", "4"), ("HD", "16")],
    );
    let o = random(DType::Bf16, &[b, h, n, hd], 2.0);
    let qkvu = random(DType::Bf16, &[b, n, 4 * h, hd], 2.0);
    let mut args = vec![
        t(o.clone()),
        t(qkvu.clone()),
        t(HostTensor::poisoned(DType::Bf16, vec![b, n, h, hd])),
    ];
    interp::run(&k, &mut args).unwrap();
    let mut want = vec![0.0; b * n * h * hd];
    for bi in 0..b {
        for ti in 0..n {
            let row: Vec<f64> = (0..h * hd)
                .map(|c| o.data[((bi * h + c / hd) * n + ti) * hd + c % hd])
                .collect();
            for (c, y) in srms(&row).into_iter().enumerate() {
                let u = qkvu.data[((bi * n + ti) * 4 * h + 3 * h) * hd + c];
                want[(bi * n + ti) * h * hd + c] = y * u;
            }
        }
    }
    let e = err(out(&args[2]), &want);
    assert!(e < 8e-3, "{e}");
}

#[test]
fn argmax_picks_the_first_largest_logit_across_tiles() {
    let k = kernel("sampling.tsl", "argmax", &[("BV", "16")]);
    let (b, v) = (5, 70);
    let mut x = random(DType::F32, &[b, v], 4.0);
    // Row 1: a tie between a later tile and an earlier one; row 2: the maximum in the ragged tail;
    // row 3: a tie within one tile.
    x.data[v + 50] = 9.0;
    x.data[v + 20] = 9.0;
    x.data[2 * v + 69] = 9.5;
    x.data[3 * v + 33] = 8.0;
    x.data[3 * v + 35] = 8.0;
    let mut args = vec![t(x.clone()), t(HostTensor::poisoned(DType::I32, vec![b]))];
    interp::run(&k, &mut args).unwrap();
    let want: Vec<f64> = x
        .data
        .chunks(v)
        .map(|r| {
            let m = r.iter().copied().fold(f64::NEG_INFINITY, f64::max);
            r.iter().position(|y| *y == m).unwrap() as f64
        })
        .collect();
    assert_eq!(out(&args[1]), want.as_slice());
    assert_eq!(&want[1..4], &[20.0, 69.0, 33.0]);
}

/// Draws `rows` samples of one logit row (every row a different counter) and returns the counts.
#[allow(clippy::too_many_arguments)]
fn draw(
    k: &Kernel,
    logits: &[f64],
    rows: usize,
    t: f64,
    top_k: i32,
    top_p: f64,
    seed: i32,
    pos: i32,
) -> Vec<usize> {
    let v = logits.len();
    let data: Vec<f64> = (0..rows).flat_map(|_| logits.iter().copied()).collect();
    let mut args = vec![
        HostArg::Tensor(HostTensor::new(DType::F32, vec![rows, v], data)),
        HostArg::Tensor(HostTensor::new(
            DType::I32,
            vec![rows],
            vec![pos as f64; rows],
        )),
        HostArg::Tensor(HostTensor::poisoned(DType::I32, vec![rows])),
        HostArg::Scalar(t),
        HostArg::Scalar(top_k as f64),
        HostArg::Scalar(top_p),
        HostArg::Scalar(seed as f64),
        HostArg::Scalar(3.0),
    ];
    interp::run(k, &mut args).unwrap();
    let mut counts = vec![0; v];
    for &tok in out(&args[2]) {
        assert!(tok >= 0.0 && (tok as usize) < v, "token {tok}");
        counts[tok as usize] += 1;
    }
    counts
}

/// Pearson's χ² of `counts` against probabilities `p` (cells with p = 0 must be empty).
fn chi2(counts: &[usize], p: &[f64]) -> f64 {
    let n: usize = counts.iter().sum();
    counts
        .iter()
        .zip(p)
        .map(|(&c, &q)| {
            if q == 0.0 {
                assert_eq!(c, 0, "a token outside the kept set was drawn");
                0.0
            } else {
                let e = q * n as f64;
                (c as f64 - e).powi(2) / e
            }
        })
        .sum()
}

/// softmax(x/T) over the top-k, then the smallest top set of mass ≥ top_p, renormalised.
fn kept_distribution(x: &[f64], t: f64, top_k: usize, top_p: f64) -> Vec<f64> {
    let mut order: Vec<usize> = (0..x.len()).collect();
    order.sort_by(|a, b| x[*b].total_cmp(&x[*a]));
    let k = if top_k == 0 { x.len() } else { top_k };
    let m = x[order[0]];
    let w: Vec<f64> = x.iter().map(|v| ((v - m) / t).exp()).collect();
    let z: f64 = order[..k].iter().map(|i| w[*i]).sum();
    let mut kept = 0;
    let mut mass = 0.0;
    while kept < k && (kept == 0 || mass < top_p * z) {
        mass += w[order[kept]];
        kept += 1;
    }
    let mut p = vec![0.0; x.len()];
    for i in &order[..kept] {
        p[*i] = w[*i] / mass;
    }
    p
}

#[test]
fn sampling_draws_the_truncated_softmax_and_is_seeded() {
    let k = kernel("sampling.tsl", "sample", &[("BV", "8")]);
    // 13 distinct logits over two tiles of 8 (the second ragged).
    let mut rng = rand::rng();
    let mut x: Vec<f64> = (0..13)
        .map(|i| i as f64 * 0.37 + rng.random_range(0.0..0.3))
        .collect();
    x.rotate_left(rng.random_range(0..13));
    let x: Vec<f64> = x.iter().map(|v| *v as f32 as f64).collect();
    let rows = 2000;
    let seed = rng.random_range(0..1_000_000);
    // (temperature, top_k, top_p); χ² bounds are the 0.999 quantiles for the kept cells − 1.
    for (t, top_k, top_p, bound) in [
        (1.0, 0, 1.0, 32.9), // 13 cells, df 12
        (0.7, 5, 1.0, 18.5), // df 4
        (1.3, 0, 0.8, 32.9), // at most 13 cells
        (1.0, 8, 0.6, 24.3), // at most 8 cells
    ] {
        let p = kept_distribution(&x, t, top_k, top_p);
        let counts = draw(&k, &x, rows, t, top_k as i32, top_p, seed, 17);
        let c = chi2(&counts, &p);
        assert!(
            c < bound,
            "T={t} k={top_k} p={top_p}: χ² {c:.1} ≥ {bound}: {counts:?} vs {p:?}"
        );
    }
    // The same seed and positions draw the same tokens; another seed or position others.
    let a = draw(&k, &x, 64, 1.0, 0, 1.0, seed, 17);
    assert_eq!(a, draw(&k, &x, 64, 1.0, 0, 1.0, seed, 17));
    let run = |seed: i32, pos: i32| {
        let data: Vec<f64> = (0..64).flat_map(|_| x.iter().copied()).collect();
        let mut args = vec![
            HostArg::Tensor(HostTensor::new(DType::F32, vec![64, 13], data)),
            HostArg::Tensor(HostTensor::new(DType::I32, vec![64], vec![pos as f64; 64])),
            HostArg::Tensor(HostTensor::poisoned(DType::I32, vec![64])),
            HostArg::Scalar(1.0),
            HostArg::Scalar(0.0),
            HostArg::Scalar(1.0),
            HostArg::Scalar(seed as f64),
            HostArg::Scalar(0.0),
        ];
        interp::run(&k, &mut args).unwrap();
        out(&args[2]).to_vec()
    };
    let base = run(seed, 5);
    assert_eq!(base, run(seed, 5));
    assert_ne!(base, run(seed + 1, 5));
    assert_ne!(base, run(seed, 6));
}

/// The decode step's GEMV projections: each program takes the norm (of x, or the gate's of o)
/// of its own rows, the product runs over the whole of K, residuals are added in place.
#[test]
fn decode_projections_take_their_norms_and_add_residuals() {
    let tiles = [("BM", "4"), ("BN", "8"), ("BK", "16")];
    let gemv = kernel("linear.tsl", "linear_residual_gemv", &tiles);
    let rows = kernel(
        "linear.tsl",
        "linear_residual_rows",
        &[("BN", "4"), ("BK", "16")],
    );
    let head = kernel("linear.tsl", "linear_norm", &tiles);
    let gate = kernel("transnormer_mixer.tsl", "mixer_gate_out", &tiles);
    for (m, n, kk) in [(1, 1, 1), (3, 33, 45), (6, 17, 24), (2, 40, 16)] {
        let x = random(DType::Bf16, &[m, kk], 1.0);
        let w = random(DType::Bf16, &[n, kk], 1.0);
        let r = random(DType::F32, &[m, n], 1.0);
        let plus =
            |y: Vec<f64>| -> Vec<f64> { y.iter().zip(&r.data).map(|(a, b)| a + b).collect() };
        let mut args = vec![t(x.clone()), t(w.clone()), t(r.clone())];
        interp::run(&gemv, &mut args).unwrap();
        let want = plus(xwt(&x.data, &w.data, m, n, kk));
        assert!(err(out(&args[2]), &want) < 1e-6, "gemv {m}x{n}x{kk}");
        let mut args = vec![t(x.clone()), t(w.clone()), t(r.clone())];
        interp::run(&rows, &mut args).unwrap();
        assert!(err(out(&args[2]), &want) < 1e-6, "rows {m}x{n}x{kk}");
        // LM head: logits = SRMSNorm(x) · Wᵀ in f32, x the f32 residual stream.
        let xs = random(DType::F32, &[m, kk], 3.0);
        let h: Vec<f64> = xs.data.chunks(kk).flat_map(srms).collect();
        let mut args = vec![
            t(xs),
            t(w.clone()),
            t(HostTensor::poisoned(DType::F32, vec![m, n])),
        ];
        interp::run(&head, &mut args).unwrap();
        let e = err(out(&args[2]), &xwt(&h, &w.data, m, n, kk));
        assert!(e < 8e-3, "linear_norm {m}x{n}x{kk}: {e}");
        // out_proj: x ← x + (SRMSNorm(o) ⊙ u) · Wᵀ, the norm over the whole row of o.
        let o = random(DType::Bf16, &[m, kk], 2.0);
        let u = random(DType::Bf16, &[m, kk], 1.0);
        let y: Vec<f64> = o
            .data
            .chunks(kk)
            .flat_map(srms)
            .zip(&u.data)
            .map(|(a, b)| a * b)
            .collect();
        let mut args = vec![t(o), t(u), t(w.clone()), t(r.clone())];
        interp::run(&gate, &mut args).unwrap();
        let e = err(out(&args[3]), &plus(xwt(&y, &w.data, m, n, kk)));
        assert!(e < 8e-3, "mixer_gate_out {m}x{n}x{kk}: {e}");
    }
}

/// The decode step's first launch: SRMSNorm, the qkvu projection over the whole of K, then SiLU
/// and LRPE on q and k at each row's position, v and u split out by head.
#[test]
fn mixer_qkvu_norm_projects_then_applies_silu_and_lrpe() {
    let (h, hd, kk) = (3, 16, 45);
    let n = 4 * h * hd;
    for (m, lrpe) in [(1, false), (6, true), (2, true), (5, false)] {
        let flag = if lrpe { "true" } else { "false" };
        let k = kernel(
            "transnormer_mixer.tsl",
            "mixer_qkvu_norm",
            &[
                ("BM", "4"),
                ("BN", "8"),
                ("BK", "16"),
                ("HD", "16"),
                ("LRPE", flag),
            ],
        );
        let kd = if lrpe { 2 * hd } else { hd };
        let x = random(DType::F32, &[m, kk], 3.0);
        let w = random(DType::Bf16, &[n, kk], 1.0);
        // Learned θ may have either sign; angles up to ~100 rad exercise the range reduction.
        let theta = random(DType::F32, &[h, hd], 4.0);
        let pos: Vec<f64> = (0..m).map(|i| [37.0, 5.0, 0.0, 24.0][i % 4]).collect();
        let mut args = vec![
            t(x.clone()),
            t(w.clone()),
            t(theta.clone()),
            t(HostTensor::new(DType::I32, vec![m], pos.clone())),
            t(HostTensor::poisoned(DType::Bf16, vec![m, h, kd])),
            t(HostTensor::poisoned(DType::Bf16, vec![m, h, kd])),
            t(HostTensor::poisoned(DType::Bf16, vec![m, h, hd])),
            t(HostTensor::poisoned(DType::Bf16, vec![m, h, hd])),
        ];
        interp::run(&k, &mut args).unwrap();
        let hx: Vec<f64> = x.data.chunks(kk).flat_map(srms).collect();
        let y = xwt(&hx, &w.data, m, n, kk);
        let (mut q, mut kq) = (vec![0.0; m * h * kd], vec![0.0; m * h * kd]);
        let (mut v, mut u) = (vec![0.0; m * h * hd], vec![0.0; m * h * hd]);
        for bi in 0..m {
            for hi in 0..h {
                for j in 0..hd {
                    let at = |part: usize| y[bi * n + (part * h + hi) * hd + j];
                    let ang = theta.data[hi * hd + j] * pos[bi];
                    for (dst, part) in [(&mut q, 0), (&mut kq, 1)] {
                        let s = silu(at(part));
                        let base = (bi * h + hi) * kd;
                        if lrpe {
                            dst[base + j] = s * ang.cos();
                            dst[base + hd + j] = s * ang.sin();
                        } else {
                            dst[base + j] = s;
                        }
                    }
                    v[(bi * h + hi) * hd + j] = at(2);
                    u[(bi * h + hi) * hd + j] = at(3);
                }
            }
        }
        for (i, (name, want)) in [("q", &q), ("k", &kq), ("v", &v), ("u", &u)]
            .iter()
            .enumerate()
        {
            let e = err(out(&args[4 + i]), want);
            assert!(e < 1.2e-2, "{name} m={m} lrpe={lrpe}: {e}");
        }
    }
}
