//! LongNet dilated attention (dsl-examples/dilated_attention.tsl) in the interpreter against the
//! float64 closed form of tessel-reference (`dilated`): several pattern sets (w > N, r not
//! dividing w, a ragged last segment, overlapping patterns, one (N, 1) pattern = plain
//! attention), both head-offset conventions, causal and not, both gradient modes. The launches
//! are chained as the runtime's operator chains them (runtime/src/dilated.rs): an r = 1 pattern
//! first with FIRST = true, else (O, L) and the gradients start at (0, −∞) and 0.

mod support;

use support::{err_vs_scale, example_kernel, filled, lse_err, random, run, tensor};
use tessel_compiler::interp::{HostArg, HostTensor};
use tessel_compiler::tir::DType;
use tessel_reference::dilated::{self, Grad, Offsets, Pattern, Problem};
use tessel_reference::Dims;

const FILE: &str = "dilated_attention.tsl";

struct Case {
    b: usize,
    h: usize,
    n: usize,
    patterns: &'static [(usize, usize)],
    offsets: Offsets,
    causal: bool,
    dtype: DType,
}

const D: usize = 16;

fn defines(c: &Case, first: Option<bool>, causal: bool) -> Vec<(&'static str, String)> {
    let mut d = vec![
        ("BM", "16".to_string()),
        ("BN", "16".to_string()),
        ("D", D.to_string()),
        ("T", c.dtype.name().to_string()),
    ];
    if causal {
        d.push(("CAUSAL", c.causal.to_string()));
    }
    if let Some(f) = first {
        d.push(("FIRST", f.to_string()));
    }
    d
}

/// The patterns in the operator's launch order with their head groups, and whether the first
/// launch writes.
fn launches(c: &Case) -> (Vec<(usize, usize, usize)>, bool) {
    let mut l: Vec<(usize, usize, usize)> = c
        .patterns
        .iter()
        .map(|&(w, r)| {
            let group = match c.offsets {
                Offsets::Paper => 1,
                Offsets::Torchscale => c.h.div_ceil(r),
            };
            (w, r, group)
        })
        .collect();
    l.sort_by_key(|&(_, r, _)| r != 1);
    let first = l[0].1 == 1;
    (l, first)
}

fn scalars(scale: f64, (w, r, g): (usize, usize, usize)) -> [HostArg; 4] {
    [scale, w as f64, r as f64, g as f64].map(HostArg::Scalar)
}

/// The operator's forward: (O, L).
fn forward(c: &Case, q: &HostTensor, k: &HostTensor, v: &HostTensor) -> (HostTensor, HostTensor) {
    let (l, first) = launches(c);
    let shape = vec![c.b, c.h, c.n, D];
    let (mut o, mut lse) = if first {
        let rows = vec![c.b, c.h, c.n];
        (
            HostTensor::poisoned(c.dtype, shape),
            HostTensor::poisoned(DType::F32, rows),
        )
    } else {
        (
            filled(c.dtype, shape, 0.0),
            filled(DType::F32, vec![c.b, c.h, c.n], f64::NEG_INFINITY),
        )
    };
    let scale = 1.0 / (D as f64).sqrt();
    for (i, &launch) in l.iter().enumerate() {
        let k_ = example_kernel(
            FILE,
            "dilated_attention_fwd",
            &defines(c, Some(first && i == 0), true),
        );
        let mut args = vec![
            HostArg::Tensor(q.clone()),
            HostArg::Tensor(k.clone()),
            HostArg::Tensor(v.clone()),
            HostArg::Tensor(o),
            HostArg::Tensor(lse),
        ];
        args.extend(scalars(scale, launch));
        run(&k_, &mut args);
        (o, lse) = (tensor(&args[3]).clone(), tensor(&args[4]).clone());
    }
    (o, lse)
}

/// The operator's backward in `mode`: (dQ, dK, dV).
fn backward(
    c: &Case,
    mode: Grad,
    [q, k, v, d_o]: [&HostTensor; 4],
    (o, lse): (&HostTensor, &HostTensor),
) -> [HostTensor; 3] {
    let (l, first) = launches(c);
    let shape = vec![c.b, c.h, c.n, D];
    let start = || {
        if first {
            HostTensor::poisoned(c.dtype, shape.clone())
        } else {
            filled(c.dtype, shape.clone(), 0.0)
        }
    };
    let (mut dq, mut dk, mut dv) = (start(), start(), start());
    let mut delta = HostTensor::poisoned(DType::F32, vec![c.b, c.h, c.n]);
    let scale = 1.0 / (D as f64).sqrt();
    if mode == Grad::Exact {
        let pre = example_kernel(
            FILE,
            "dilated_attention_bwd_preprocess",
            &defines(c, None, false),
        );
        let mut args = [o, d_o, &delta].map(|t| HostArg::Tensor(t.clone()));
        run(&pre, &mut args);
        delta = tensor(&args[2]).clone();
    }
    for (i, &launch) in l.iter().enumerate() {
        let f = Some(first && i == 0);
        if mode == Grad::Torchscale {
            let kd = example_kernel(FILE, "dilated_attention_bwd_delta", &defines(c, None, true));
            let mut args: Vec<HostArg> = [q, k, v, d_o, &delta]
                .map(|t| HostArg::Tensor(t.clone()))
                .into();
            args.extend(scalars(scale, launch));
            run(&kd, &mut args);
            delta = tensor(&args[4]).clone();
        }
        let common = [q, k, v, d_o, lse, &delta].map(|t| HostArg::Tensor(t.clone()));
        let kk = example_kernel(FILE, "dilated_attention_bwd_dkdv", &defines(c, f, true));
        let mut args: Vec<HostArg> = common.to_vec();
        args.extend([HostArg::Tensor(dk), HostArg::Tensor(dv)]);
        args.extend(scalars(scale, launch));
        run(&kk, &mut args);
        (dk, dv) = (tensor(&args[6]).clone(), tensor(&args[7]).clone());
        let kq = example_kernel(FILE, "dilated_attention_bwd_dq", &defines(c, f, true));
        let mut args: Vec<HostArg> = common.to_vec();
        args.push(HostArg::Tensor(dq));
        args.extend(scalars(scale, launch));
        run(&kq, &mut args);
        dq = tensor(&args[6]).clone();
    }
    [dq, dk, dv]
}

fn problem(c: &Case) -> Problem {
    let pats: Vec<Pattern> = c.patterns.iter().map(|&(w, r)| Pattern { w, r }).collect();
    Problem::new(Dims::new(c.b, c.h, c.n, D), &pats, c.offsets, c.causal)
}

const CASES: &[Case] = &[
    // One (N, 1) pattern: plain attention; w > N.
    Case {
        b: 1,
        h: 2,
        n: 37,
        patterns: &[(64, 1)],
        offsets: Offsets::Paper,
        causal: true,
        dtype: DType::F32,
    },
    // Overlapping patterns with a ragged last segment (N = 100 is no multiple of 32 or 64).
    Case {
        b: 2,
        h: 3,
        n: 100,
        patterns: &[(32, 1), (64, 2), (128, 4)],
        offsets: Offsets::Paper,
        causal: false,
        dtype: DType::F32,
    },
    Case {
        b: 1,
        h: 3,
        n: 100,
        patterns: &[(64, 2), (32, 1), (128, 4)],
        offsets: Offsets::Torchscale,
        causal: true,
        dtype: DType::F32,
    },
    // No r = 1 pattern (rows nobody keeps stay 0, −∞); r not dividing w; offsets past a short segment.
    Case {
        b: 1,
        h: 4,
        n: 90,
        patterns: &[(48, 5), (40, 3)],
        offsets: Offsets::Paper,
        causal: true,
        dtype: DType::F32,
    },
    Case {
        b: 1,
        h: 5,
        n: 70,
        patterns: &[(30, 4), (70, 2)],
        offsets: Offsets::Torchscale,
        causal: false,
        dtype: DType::F32,
    },
    Case {
        b: 1,
        h: 2,
        n: 96,
        patterns: &[(32, 1), (96, 3)],
        offsets: Offsets::Paper,
        causal: true,
        dtype: DType::Bf16,
    },
];

#[test]
fn forward_matches_the_closed_form() {
    for c in CASES {
        let shape = [c.b, c.h, c.n, D];
        let (q, k, v) = (
            random(c.dtype, &shape, -1.0, 1.0),
            random(c.dtype, &shape, -1.0, 1.0),
            random(c.dtype, &shape, -1.0, 1.0),
        );
        let (o, lse) = forward(c, &q, &k, &v);
        let (want_o, want_l) = dilated::forward(&problem(c), &q.data, &k.data, &v.data);
        let tol = if c.dtype == DType::F32 { 1e-5 } else { 2e-2 };
        let (eo, el) = (err_vs_scale(&o.data, &want_o), lse_err(&lse.data, &want_l));
        assert!(
            eo < tol && el < tol.max(1e-5),
            "{:?} {:?}: O {eo:.2e}, L {el:.2e}",
            c.patterns,
            c.offsets
        );
    }
}

#[test]
fn gradients_match_the_reference_in_both_modes() {
    for c in CASES.iter().filter(|c| c.dtype == DType::F32) {
        let shape = [c.b, c.h, c.n, D];
        let [q, k, v, d_o] = [0; 4].map(|_| random(c.dtype, &shape, -1.0, 1.0));
        let (o, lse) = forward(c, &q, &k, &v);
        for mode in [Grad::Exact, Grad::Torchscale] {
            let got = backward(c, mode, [&q, &k, &v, &d_o], (&o, &lse));
            let want = dilated::backward(&problem(c), mode, &q.data, &k.data, &v.data, &d_o.data);
            for (name, g, w) in [
                ("dq", &got[0], &want.0),
                ("dk", &got[1], &want.1),
                ("dv", &got[2], &want.2),
            ] {
                if let Some(i) = g.data.iter().position(|x| !x.is_finite()) {
                    panic!(
                        "{:?} {mode:?} {name}: element {i} is {}",
                        c.patterns, g.data[i]
                    );
                }
                let e = err_vs_scale(&g.data, w);
                assert!(e < 2e-5, "{:?} {mode:?} {name}: {e:.2e}", c.patterns);
            }
        }
    }
}
