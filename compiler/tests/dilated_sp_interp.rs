//! Sequence-parallel dilated attention (dsl-examples/dilated_sp.tsl with the single-device
//! kernels of dilated_attention.tsl for the local patterns) in the interpreter, P ranks run one
//! after another with the all-gather and reduce-scatter simulated in process, against the float64
//! single-device closed form (reference/src/dilated.rs): O, L and both gradient modes must equal
//! it at the dtype's tolerance — the split must not change the result. The per-rank schedule is
//! runtime::dilated_sp::Plan's, as the GPU operator runs it: P ∈ {2, 3, 4}, local and gathered
//! patterns, w > N, a ragged last segment of one rank, no r = 1 pattern, causal and not, both
//! head offsets, f32 and bf16.

mod support;

use support::{err_vs_scale, example_kernel, filled, lse_err, random, run, tensor};
use tessel_compiler::interp::{HostArg, HostTensor};
use tessel_compiler::tir::DType;
use tessel_reference::dilated::{self, Grad, Offsets, Pattern as RefPattern, Problem};
use tessel_reference::Dims;
use tessel_runtime::dilated::Pattern;
use tessel_runtime::dilated_sp::{Plan, RankPattern};

const LOCAL: &str = "dilated_attention.tsl";
const SP: &str = "dilated_sp.tsl";
const D: usize = 16;

struct Case {
    b: usize,
    h: usize,
    n: usize,
    ranks: usize,
    patterns: &'static [(usize, usize)],
    offsets: Offsets,
    causal: bool,
    dtype: DType,
}

impl Case {
    fn plan(&self) -> Plan {
        let p: Vec<Pattern> = self
            .patterns
            .iter()
            .map(|&(w, r)| Pattern { w, r })
            .collect();
        Plan::new(self.n, self.ranks, &p).unwrap()
    }
    fn local(&self) -> usize {
        self.n / self.ranks
    }
    fn group(&self, r: usize) -> usize {
        match self.offsets {
            Offsets::Paper => 1,
            Offsets::Torchscale => self.h.div_ceil(r),
        }
    }
    /// Pattern indices in the operator's launch order (an r = 1 pattern first) and whether the
    /// first launch writes rather than merges.
    fn order(&self) -> (Vec<usize>, bool) {
        let mut o: Vec<usize> = (0..self.patterns.len()).collect();
        o.sort_by_key(|&i| self.patterns[i].1 != 1);
        let first = self.patterns[o[0]].1 == 1;
        (o, first)
    }
    fn defines(&self, causal: bool, first: Option<bool>) -> Vec<(&'static str, String)> {
        let mut d = vec![
            ("BM", "16".to_string()),
            ("BN", "16".to_string()),
            ("D", D.to_string()),
            ("T", self.dtype.name().to_string()),
        ];
        if causal {
            d.push(("CAUSAL", self.causal.to_string()));
        }
        if let Some(f) = first {
            d.push(("FIRST", f.to_string()));
        }
        d
    }
}

fn scale() -> f64 {
    1.0 / (D as f64).sqrt()
}

fn t(x: &HostTensor) -> HostArg {
    HostArg::Tensor(x.clone())
}

fn s(x: f64) -> HostArg {
    HostArg::Scalar(x)
}

/// Rank `p`'s block of a (B, H, N, …) tensor: positions p·l .. (p + 1)·l.
fn block(x: &HostTensor, p: usize, l: usize) -> HostTensor {
    let (b, h, n) = (x.shape[0], x.shape[1], x.shape[2]);
    let inner: usize = x.shape[3..].iter().product();
    let mut data = Vec::with_capacity(b * h * l * inner);
    for bh in 0..b * h {
        let start = (bh * n + p * l) * inner;
        data.extend_from_slice(&x.data[start..start + l * inner]);
    }
    let mut shape = x.shape.clone();
    shape[2] = l;
    HostTensor::new(x.dtype, shape, data)
}

/// The ranks' blocks back into one (B, H, N, …) tensor.
fn unblock(parts: &[HostTensor]) -> Vec<f64> {
    let (b, h, l) = (parts[0].shape[0], parts[0].shape[1], parts[0].shape[2]);
    let inner: usize = parts[0].shape[3..].iter().product();
    let mut out = Vec::new();
    for bh in 0..b * h {
        for p in parts {
            out.extend_from_slice(&p.data[bh * l * inner..(bh + 1) * l * inner]);
        }
    }
    out
}

/// All-gather, simulated: the members' (B, H, M, D) buffers stacked into (G, B, H, M, D).
fn all_gather(parts: &[&HostTensor]) -> HostTensor {
    let mut shape = vec![parts.len()];
    shape.extend(&parts[0].shape);
    let data = parts.iter().flat_map(|p| p.data.iter().copied()).collect();
    HostTensor::new(parts[0].dtype, shape, data)
}

/// Reduce-scatter, simulated: member m gets Σ over the members' (G, B, H, M, D) of slice m.
fn reduce_scatter(parts: &[&HostTensor], m: usize) -> HostTensor {
    let size: usize = parts[0].shape[1..].iter().product();
    let data = (0..size)
        .map(|i| parts.iter().map(|p| p.data[m * size + i]).sum())
        .collect();
    HostTensor::new(parts[0].dtype, parts[0].shape[1..].to_vec(), data)
}

/// Each rank's (Q, K, V[, dO]) blocks.
struct Ranks {
    q: Vec<HostTensor>,
    k: Vec<HostTensor>,
    v: Vec<HostTensor>,
}

/// The kept K, V rows of every rank for pattern `i`, gathered per segment: `kv[p]` is what rank
/// p attends to (None where the pattern is local to it).
fn gathered(c: &Case, x: &Ranks, i: usize) -> Vec<Option<(HostTensor, HostTensor)>> {
    let plan = c.plan();
    let (_, r) = c.patterns[i];
    let sparse: Vec<_> = (0..c.ranks)
        .map(|p| {
            let k_ = example_kernel(SP, "dilated_sp_sparsify", &c.defines(false, None));
            let m = c.local() / r;
            let out = HostTensor::poisoned(c.dtype, vec![c.b, c.h, m, D]);
            let mut args = vec![t(&x.k[p]), t(&x.v[p]), t(&out), t(&out)];
            args.extend([s(r as f64), s(c.group(r) as f64)]);
            run(&k_, &mut args);
            (tensor(&args[2]).clone(), tensor(&args[3]).clone())
        })
        .collect();
    (0..c.ranks)
        .map(|p| match plan.rank(i, p, c.causal) {
            RankPattern::Local { .. } => None,
            RankPattern::Gathered { members, .. } => {
                let ks: Vec<_> = members.iter().map(|&m| &sparse[m].0).collect();
                let vs: Vec<_> = members.iter().map(|&m| &sparse[m].1).collect();
                Some((all_gather(&ks), all_gather(&vs)))
            }
        })
        .collect()
}

/// The sequence-parallel forward: every rank's (O, L).
fn forward(c: &Case, x: &Ranks) -> Vec<(HostTensor, HostTensor)> {
    let plan = c.plan();
    let (order, first) = c.order();
    let l = c.local();
    let mut out: Vec<_> = (0..c.ranks)
        .map(|_| {
            if first {
                (
                    HostTensor::poisoned(c.dtype, vec![c.b, c.h, l, D]),
                    HostTensor::poisoned(DType::F32, vec![c.b, c.h, l]),
                )
            } else {
                (
                    filled(c.dtype, vec![c.b, c.h, l, D], 0.0),
                    filled(DType::F32, vec![c.b, c.h, l], f64::NEG_INFINITY),
                )
            }
        })
        .collect();
    for (n, &i) in order.iter().enumerate() {
        let (_, r) = c.patterns[i];
        let g = c.group(r) as f64;
        let f = Some(first && n == 0);
        let kv = gathered(c, x, i);
        for (p, (o, lse)) in out.iter_mut().enumerate() {
            let mut args = vec![t(&x.q[p])];
            let kernel = match (plan.rank(i, p, c.causal), &kv[p]) {
                (RankPattern::Local { segment }, _) => {
                    args.extend([t(&x.k[p]), t(&x.v[p]), t(o), t(lse)]);
                    args.extend([scale(), segment as f64, r as f64, g].map(s));
                    example_kernel(LOCAL, "dilated_attention_fwd", &c.defines(true, f))
                }
                (RankPattern::Gathered { me, .. }, Some((kg, vg))) => {
                    args.extend([t(kg), t(vg), t(o), t(lse)]);
                    args.extend([scale(), r as f64, g, me as f64].map(s));
                    example_kernel(SP, "dilated_sp_fwd", &c.defines(true, f))
                }
                _ => unreachable!("a gathered rank has gathered keys"),
            };
            run(&kernel, &mut args);
            (*o, *lse) = (tensor(&args[3]).clone(), tensor(&args[4]).clone());
        }
    }
    out
}

/// One rank's backward state.
struct Grads {
    dq: HostTensor,
    dk: HostTensor,
    dv: HostTensor,
    delta: HostTensor,
}

/// The common leading arguments of the backward kernels: q, K (local or gathered), V, dO, L, δ.
fn bwd_args(
    q: &HostTensor,
    (k, v): (&HostTensor, &HostTensor),
    d_o: &HostTensor,
    lse: &HostTensor,
    delta: &HostTensor,
) -> Vec<HostArg> {
    [q, k, v, d_o, lse, delta].map(t).to_vec()
}

/// The sequence-parallel backward in `mode`: every rank's (dQ, dK, dV).
fn backward(
    c: &Case,
    mode: Grad,
    x: &Ranks,
    d_o: &[HostTensor],
    fwd: &[(HostTensor, HostTensor)],
) -> Vec<Grads> {
    let plan = c.plan();
    let (order, first) = c.order();
    let shape = vec![c.b, c.h, c.local(), D];
    let start = || {
        if first {
            HostTensor::poisoned(c.dtype, shape.clone())
        } else {
            filled(c.dtype, shape.clone(), 0.0)
        }
    };
    let mut st: Vec<Grads> = (0..c.ranks)
        .map(|p| {
            let mut delta = HostTensor::poisoned(DType::F32, shape[..3].to_vec());
            if mode == Grad::Exact {
                let pre = example_kernel(
                    LOCAL,
                    "dilated_attention_bwd_preprocess",
                    &c.defines(false, None),
                );
                let mut args = [&fwd[p].0, &d_o[p], &delta].map(t);
                run(&pre, &mut args);
                delta = tensor(&args[2]).clone();
            }
            Grads {
                dq: start(),
                dk: start(),
                dv: start(),
                delta,
            }
        })
        .collect();
    for (n, &i) in order.iter().enumerate() {
        let (_, r) = c.patterns[i];
        let g = c.group(r) as f64;
        let f = Some(first && n == 0);
        let kv = gathered(c, x, i);
        // Each rank's share of dK̃, dṼ for the gathered rows, then the segment's reduce-scatter.
        let mut shares: Vec<Option<(HostTensor, HostTensor)>> = Vec::new();
        for (p, gr) in st.iter_mut().enumerate() {
            let place = plan.rank(i, p, c.causal);
            let (file, keys, tail) = match (&place, &kv[p]) {
                (RankPattern::Local { segment }, _) => (
                    LOCAL,
                    (&x.k[p], &x.v[p]),
                    [scale(), *segment as f64, r as f64, g],
                ),
                (RankPattern::Gathered { me, .. }, Some((kg, vg))) => {
                    (SP, (kg, vg), [scale(), r as f64, g, *me as f64])
                }
                _ => unreachable!("a gathered rank has gathered keys"),
            };
            let name = |what: &str| match file {
                LOCAL => format!("dilated_attention_{what}"),
                _ => format!("dilated_sp_{what}"),
            };
            if mode == Grad::Torchscale {
                let kd = example_kernel(file, &name("bwd_delta"), &c.defines(true, None));
                let mut args = vec![t(&x.q[p]), t(keys.0), t(keys.1), t(&d_o[p]), t(&gr.delta)];
                args.extend(tail.map(s));
                run(&kd, &mut args);
                gr.delta = tensor(&args[4]).clone();
            }
            let common = bwd_args(&x.q[p], keys, &d_o[p], &fwd[p].1, &gr.delta);
            let mut args = common.clone();
            if file == LOCAL {
                args.extend([t(&gr.dk), t(&gr.dv)]);
                args.extend(tail.map(s));
                run(
                    &example_kernel(file, &name("bwd_dkdv"), &c.defines(true, f)),
                    &mut args,
                );
                (gr.dk, gr.dv) = (tensor(&args[6]).clone(), tensor(&args[7]).clone());
                shares.push(None);
            } else {
                let out = HostTensor::poisoned(c.dtype, keys.0.shape.clone());
                args.extend([t(&out), t(&out)]);
                args.extend(tail.map(s));
                run(
                    &example_kernel(file, &name("bwd_dkdv"), &c.defines(true, None)),
                    &mut args,
                );
                shares.push(Some((tensor(&args[6]).clone(), tensor(&args[7]).clone())));
            }
            let mut args = common;
            args.push(t(&gr.dq));
            args.extend(tail.map(s));
            run(
                &example_kernel(file, &name("bwd_dq"), &c.defines(true, f)),
                &mut args,
            );
            gr.dq = tensor(&args[6]).clone();
        }
        for (p, gr) in st.iter_mut().enumerate() {
            let RankPattern::Gathered { members, me, .. } = plan.rank(i, p, c.causal) else {
                continue;
            };
            let share = |pick: fn(&(HostTensor, HostTensor)) -> &HostTensor| {
                let parts: Vec<&HostTensor> = members
                    .iter()
                    .map(|&m| pick(shares[m].as_ref().unwrap()))
                    .collect();
                reduce_scatter(&parts, me)
            };
            let (dks, dvs) = (share(|s| &s.0), share(|s| &s.1));
            let mut d = c.defines(false, f);
            d.retain(|(k, _)| *k != "BN");
            let sa = example_kernel(SP, "dilated_sp_scatter_add", &d);
            let mut args = vec![t(&dks), t(&dvs), t(&gr.dk), t(&gr.dv), s(r as f64), s(g)];
            run(&sa, &mut args);
            (gr.dk, gr.dv) = (tensor(&args[2]).clone(), tensor(&args[3]).clone());
        }
    }
    st
}

fn problem(c: &Case) -> Problem {
    let pats: Vec<RefPattern> = c
        .patterns
        .iter()
        .map(|&(w, r)| RefPattern { w, r })
        .collect();
    Problem::new(Dims::new(c.b, c.h, c.n, D), &pats, c.offsets, c.causal)
}

const CASES: &[Case] = &[
    // P = 2: (32, 1) local; (128, 2) gathered over both ranks, 32 rows a rank (two key blocks).
    Case {
        b: 1,
        h: 2,
        n: 128,
        ranks: 2,
        patterns: &[(32, 1), (128, 2)],
        offsets: Offsets::Paper,
        causal: true,
        dtype: DType::F32,
    },
    Case {
        b: 2,
        h: 3,
        n: 128,
        ranks: 2,
        patterns: &[(128, 2), (32, 1)],
        offsets: Offsets::Torchscale,
        causal: false,
        dtype: DType::F32,
    },
    // P = 3: (32, 2) in segments of two ranks, the last rank alone (ragged); (48, 4) over all.
    Case {
        b: 1,
        h: 3,
        n: 48,
        ranks: 3,
        patterns: &[(8, 1), (32, 2), (48, 4)],
        offsets: Offsets::Torchscale,
        causal: false,
        dtype: DType::F32,
    },
    Case {
        b: 1,
        h: 3,
        n: 48,
        ranks: 3,
        patterns: &[(8, 1), (32, 2), (48, 4)],
        offsets: Offsets::Paper,
        causal: true,
        dtype: DType::F32,
    },
    // P = 4, no r = 1 pattern (rows nobody keeps: 0, −∞), w > N, every pattern gathered.
    Case {
        b: 1,
        h: 4,
        n: 64,
        ranks: 4,
        patterns: &[(64, 2), (32, 4), (128, 8)],
        offsets: Offsets::Paper,
        causal: true,
        dtype: DType::F32,
    },
    Case {
        b: 1,
        h: 5,
        n: 64,
        ranks: 4,
        patterns: &[(16, 1), (64, 4)],
        offsets: Offsets::Torchscale,
        causal: false,
        dtype: DType::F32,
    },
    Case {
        b: 1,
        h: 2,
        n: 128,
        ranks: 2,
        patterns: &[(32, 1), (128, 2)],
        offsets: Offsets::Paper,
        causal: true,
        dtype: DType::Bf16,
    },
];

fn split(c: &Case, x: &HostTensor) -> Vec<HostTensor> {
    (0..c.ranks).map(|p| block(x, p, c.local())).collect()
}

#[test]
fn forward_equals_the_single_device_closed_form() {
    for c in CASES {
        let shape = [c.b, c.h, c.n, D];
        let [q, k, v] = [0; 3].map(|_| random(c.dtype, &shape, -1.0, 1.0));
        let x = Ranks {
            q: split(c, &q),
            k: split(c, &k),
            v: split(c, &v),
        };
        let out = forward(c, &x);
        let o: Vec<_> = out.iter().map(|p| p.0.clone()).collect();
        let lse: Vec<_> = out.iter().map(|p| p.1.clone()).collect();
        let (want_o, want_l) = dilated::forward(&problem(c), &q.data, &k.data, &v.data);
        let tol = if c.dtype == DType::F32 { 1e-5 } else { 2e-2 };
        let (eo, el) = (
            err_vs_scale(&unblock(&o), &want_o),
            lse_err(&unblock(&lse), &want_l),
        );
        assert!(
            eo < tol && el < tol.max(1e-5),
            "P {} {:?} {:?} causal {}: O {eo:.2e}, L {el:.2e}",
            c.ranks,
            c.patterns,
            c.offsets,
            c.causal
        );
    }
}

#[test]
fn gradients_equal_the_single_device_closed_form_in_both_modes() {
    for c in CASES.iter().filter(|c| c.dtype == DType::F32) {
        let shape = [c.b, c.h, c.n, D];
        let [q, k, v, d_o] = [0; 4].map(|_| random(c.dtype, &shape, -1.0, 1.0));
        let x = Ranks {
            q: split(c, &q),
            k: split(c, &k),
            v: split(c, &v),
        };
        let fwd = forward(c, &x);
        for mode in [Grad::Exact, Grad::Torchscale] {
            let got = backward(c, mode, &x, &split(c, &d_o), &fwd);
            let want = dilated::backward(&problem(c), mode, &q.data, &k.data, &v.data, &d_o.data);
            let pick = |f: fn(&Grads) -> &HostTensor| {
                unblock(&got.iter().map(|g| f(g).clone()).collect::<Vec<_>>())
            };
            for (name, g, w) in [
                ("dq", pick(|g| &g.dq), &want.0),
                ("dk", pick(|g| &g.dk), &want.1),
                ("dv", pick(|g| &g.dv), &want.2),
            ] {
                let e = err_vs_scale(&g, w);
                assert!(
                    e < 2e-5,
                    "P {} {:?} {:?} causal {} {mode:?} {name}: {e:.2e}",
                    c.ranks,
                    c.patterns,
                    c.offsets,
                    c.causal
                );
            }
        }
    }
}
