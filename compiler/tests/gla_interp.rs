//! Gated linear attention (dsl-examples/gla.tsl) in the interpreter against the float64
//! recurrence of tessel-reference (`gla`: one token at a time, no chunks), on fresh random inputs
//! with ragged lengths, an initial state in and the final state out, outputs poisoned first.

use rand::Rng;
use tessel_compiler::interp::{self, HostArg, HostTensor};
use tessel_compiler::tir::{DType, Kernel};

mod support;
use support::{err_vs_scale, random, tensor};

fn kernel(name: &str, defines: &[(&str, String)]) -> Kernel {
    support::example_kernel("gla.tsl", name, defines)
}
use tessel_reference::gla::{self, Problem};

/// fla's gates: log σ(x) / 16 (normaliser 16), plus `extra` more negative (a fast forget),
/// so runs with large |g| check that no exponent of the chunked form is positive.
fn gates(shape: &[usize], extra: f64) -> HostTensor {
    let mut rng = rand::rng();
    let n = shape.iter().product();
    let data = (0..n)
        .map(|_| {
            let x: f64 = rng.random_range(-4.0..4.0);
            -(1.0 + (-x).exp()).ln() / 16.0 - extra * rng.random_range(0.0..1.0)
        })
        .collect();
    HostTensor::new(DType::F32, shape.to_vec(), data)
}

/// The largest Σ|g| over one 64-token chunk of one (batch, head, channel): how far the kernel's
/// f32 running sums of log-gates reach.
fn chunk_gate_mass(g: &HostTensor, p: &Problem) -> f64 {
    let mut worst = 0f64;
    for b in 0..p.b {
        for h in 0..p.h {
            for c in 0..p.d {
                for start in (0..p.n).step_by(64) {
                    let mass: f64 = (start..(start + 64).min(p.n))
                        .map(|t| g.data[((b * p.n + t) * p.h + h) * p.d + c].abs())
                        .sum();
                    worst = worst.max(mass);
                }
            }
        }
    }
    worst
}

struct Inputs {
    q: HostTensor,
    k: HostTensor,
    v: HostTensor,
    g: HostTensor,
    h0: HostTensor,
}

fn inputs(p: &Problem, dt: DType, extra: f64) -> Inputs {
    let (qk, vs) = ([p.b, p.n, p.h, p.d], [p.b, p.n, p.h, p.e]);
    Inputs {
        q: random(dt, &qk, -1.0, 1.0),
        k: random(dt, &qk, -1.0, 1.0),
        v: random(dt, &vs, -1.0, 1.0),
        g: gates(&qk, extra),
        h0: random(DType::F32, &[p.b, p.h, p.d, p.e], -1.0, 1.0),
    }
}

/// The forward as the runtime runs it: chunk states, then every chunk's output. Returns O and
/// the final state.
fn chunked_forward(
    p: &Problem,
    x: &Inputs,
    dt: DType,
    scale: f64,
    defs: &[(&str, String)],
) -> (HostTensor, HostTensor) {
    let nc = p.n.div_ceil(64);
    let mut a = vec![
        HostArg::Tensor(x.k.clone()),
        HostArg::Tensor(x.v.clone()),
        HostArg::Tensor(x.g.clone()),
        HostArg::Tensor(x.h0.clone()),
        HostArg::Tensor(HostTensor::poisoned(
            DType::F32,
            vec![p.b, p.h, nc, p.d, p.e],
        )),
        HostArg::Tensor(HostTensor::poisoned(DType::F32, vec![p.b, p.h, p.d, p.e])),
    ];
    interp::run(&kernel("gla_fwd_state", defs), &mut a).unwrap();
    let (hs, ht) = (tensor(&a[4]).clone(), tensor(&a[5]).clone());
    let mut a = vec![
        HostArg::Tensor(x.q.clone()),
        HostArg::Tensor(x.k.clone()),
        HostArg::Tensor(x.v.clone()),
        HostArg::Tensor(x.g.clone()),
        HostArg::Tensor(hs),
        HostArg::Tensor(HostTensor::poisoned(dt, vec![p.b, p.n, p.h, p.e])),
        HostArg::Scalar(scale),
    ];
    interp::run(&kernel("gla_fwd_o", defs), &mut a).unwrap();
    (tensor(&a[5]).clone(), ht)
}

fn defines(d: usize, e: usize, t: &str) -> Vec<(&'static str, String)> {
    vec![
        ("D", d.to_string()),
        ("E", e.to_string()),
        ("T", t.to_string()),
    ]
}

#[test]
fn chunked_forward_matches_the_recurrence() {
    // Ragged lengths (1 token, a partial chunk, a partial sub-chunk past whole chunks), both
    // head dims, f32 operands (tight) and bf16 ones (operands rounded for the matrix unit).
    let cases = [
        (1, 1, 2, 64, 64, "f32", 0.0),
        (1, 50, 1, 64, 64, "f32", 0.0),
        (2, 75, 1, 64, 64, "f32", 2.0),
        (1, 130, 1, 128, 128, "f32", 0.0),
        (1, 70, 2, 64, 128, "bf16", 0.5),
    ];
    for (b, n, h, d, e, t, extra) in cases {
        let p = Problem::new(b, n, h, d, e);
        let dt = DType::parse(t).unwrap();
        let x = inputs(&p, dt, extra);
        let scale = 1.0 / (d as f64).sqrt();
        let (o, ht) = chunked_forward(&p, &x, dt, scale, &defines(d, e, t));
        let (want_o, want_ht) = gla::forward(
            &p, &x.q.data, &x.k.data, &x.v.data, &x.g.data, &x.h0.data, scale,
        );
        let tol = if dt == DType::F32 { 1e-5 } else { 3e-2 };
        let (eo, eh) = (
            err_vs_scale(&o.data, &want_o),
            err_vs_scale(&ht.data, &want_ht),
        );
        assert!(eo < tol, "{p:?} {t}: O error {eo}");
        assert!(eh < tol, "{p:?} {t}: final state error {eh}");
    }
}

#[test]
fn decode_steps_continue_the_recurrence() {
    // A prefix's final state (from the reference), then token by token through gla_decode: every
    // output and the state at the end match the recurrence over the whole sequence.
    for (d, e) in [(64, 64), (128, 128)] {
        let p = Problem::new(2, 6, 2, d, e);
        let x = inputs(&p, DType::F32, 0.5);
        let scale = 1.0 / (d as f64).sqrt();
        let (want_o, want_ht) = gla::forward(
            &p, &x.q.data, &x.k.data, &x.v.data, &x.g.data, &x.h0.data, scale,
        );
        let k = kernel("gla_decode", &defines(d, e, "f32"));
        let token = |t: &HostTensor, i: usize, w: usize| {
            let mut out = Vec::new();
            for b in 0..p.b {
                let at = (b * p.n + i) * p.h * w;
                out.extend_from_slice(&t.data[at..at + p.h * w]);
            }
            HostTensor::new(t.dtype, vec![p.b, p.h, w], out)
        };
        let mut state = x.h0.clone();
        for i in 0..p.n {
            let mut a = vec![
                HostArg::Tensor(token(&x.q, i, d)),
                HostArg::Tensor(token(&x.k, i, d)),
                HostArg::Tensor(token(&x.v, i, e)),
                HostArg::Tensor(token(&x.g, i, d)),
                HostArg::Tensor(state.clone()),
                HostArg::Tensor(HostTensor::poisoned(DType::F32, vec![p.b, p.h, e])),
                HostArg::Scalar(scale),
            ];
            interp::run(&k, &mut a).unwrap();
            state = tensor(&a[4]).clone();
            let want: Vec<f64> = (0..p.b)
                .flat_map(|b| {
                    let at = (b * p.n + i) * p.h * e;
                    want_o[at..at + p.h * e].to_vec()
                })
                .collect();
            let err = err_vs_scale(&tensor(&a[5]).data, &want);
            assert!(err < 1e-5, "D={d} token {i}: {err}");
        }
        let err = err_vs_scale(&state.data, &want_ht);
        assert!(err < 1e-5, "D={d} final state: {err}");
    }
}

#[test]
fn backward_matches_the_float64_gradients() {
    // dq, dk, dv, dg and dh0 against the reference's backward recurrence (itself checked
    // against finite differences), with a gradient on the final state too; ragged N.
    for (b, n, h, d, e, extra) in [
        (1, 1, 1, 64, 64, 0.0),
        (1, 37, 2, 64, 64, 2.0),
        (1, 9, 1, 128, 128, 0.0),
    ] {
        let p = Problem::new(b, n, h, d, e);
        let x = inputs(&p, DType::F32, extra);
        let d_o = random(DType::F32, &[b, n, h, e], -1.0, 1.0);
        let dht = random(DType::F32, &[b, h, d, e], -1.0, 1.0);
        let scale = 1.0 / (d as f64).sqrt();
        let (_, ht) = gla::forward(
            &p, &x.q.data, &x.k.data, &x.v.data, &x.g.data, &x.h0.data, scale,
        );
        let want = gla::backward(
            &p, &x.q.data, &x.k.data, &x.v.data, &x.g.data, &x.h0.data, scale, &d_o.data, &dht.data,
        );
        let defs = defines(d, e, "f32");
        let (qk, vs, st) = (vec![b, n, h, d], vec![b, n, h, e], vec![b, h, d, e]);
        let mut a = vec![
            HostArg::Tensor(x.q.clone()),
            HostArg::Tensor(x.k.clone()),
            HostArg::Tensor(x.v.clone()),
            HostArg::Tensor(x.g.clone()),
            HostArg::Tensor(x.h0.clone()),
            HostArg::Tensor(d_o.clone()),
            HostArg::Tensor(HostTensor::poisoned(DType::F32, qk.clone())),
            HostArg::Tensor(HostTensor::poisoned(DType::F32, qk.clone())),
            HostArg::Scalar(scale),
        ];
        interp::run(&kernel("gla_bwd_dq", &defs), &mut a).unwrap();
        let (dq, qdq) = (tensor(&a[6]).clone(), tensor(&a[7]).clone());
        let mut a = vec![
            HostArg::Tensor(x.q.clone()),
            HostArg::Tensor(x.k.clone()),
            HostArg::Tensor(x.v.clone()),
            HostArg::Tensor(x.g.clone()),
            HostArg::Tensor(HostTensor::new(DType::F32, st.clone(), ht)),
            HostArg::Tensor(d_o.clone()),
            HostArg::Tensor(dht.clone()),
            HostArg::Tensor(qdq),
            HostArg::Tensor(HostTensor::poisoned(DType::F32, qk.clone())),
            HostArg::Tensor(HostTensor::poisoned(DType::F32, vs.clone())),
            HostArg::Tensor(HostTensor::poisoned(DType::F32, qk.clone())),
            HostArg::Tensor(HostTensor::poisoned(DType::F32, st.clone())),
            HostArg::Scalar(scale),
        ];
        interp::run(&kernel("gla_bwd_dkv", &defs), &mut a).unwrap();
        for (name, got, want) in [
            ("dq", &dq.data, &want.dq),
            ("dk", &tensor(&a[8]).data, &want.dk),
            ("dv", &tensor(&a[9]).data, &want.dv),
            ("dg", &tensor(&a[10]).data, &want.dg),
            ("dh0", &tensor(&a[11]).data, &want.dh0),
        ] {
            let err = err_vs_scale(got, want);
            assert!(err < 1e-5, "{p:?} {name}: {err}");
        }
    }
}

/// The chunked backward as the runtime runs it: chunk states again (`gla_fwd_state`), their
/// gradients from the end (`gla_bwd_dstate`), then every chunk's dq, dk, dg and dv. Returns
/// dq, dk, dv, dg, dh0.
fn chunked_backward(
    p: &Problem,
    x: &Inputs,
    d_o: &HostTensor,
    dht: &HostTensor,
    dt: DType,
    scale: f64,
    defs: &[(&str, String)],
) -> [HostTensor; 5] {
    let nc = p.n.div_ceil(64);
    let (qk, vs) = (vec![p.b, p.n, p.h, p.d], vec![p.b, p.n, p.h, p.e]);
    let (st, chunks) = (vec![p.b, p.h, p.d, p.e], vec![p.b, p.h, nc, p.d, p.e]);
    let t = |x: &HostTensor| HostArg::Tensor(x.clone());
    let poison = |dt: DType, s: &[usize]| HostArg::Tensor(HostTensor::poisoned(dt, s.to_vec()));
    let mut a = vec![
        t(&x.k),
        t(&x.v),
        t(&x.g),
        t(&x.h0),
        poison(DType::F32, &chunks),
        poison(DType::F32, &st),
    ];
    interp::run(&kernel("gla_fwd_state", defs), &mut a).unwrap();
    let (hs, ht) = (tensor(&a[4]).clone(), tensor(&a[5]).clone());
    let mut a = vec![
        t(&x.q),
        t(&x.g),
        t(d_o),
        t(dht),
        poison(DType::F32, &chunks),
        poison(DType::F32, &st),
        HostArg::Scalar(scale),
    ];
    interp::run(&kernel("gla_bwd_dstate", defs), &mut a).unwrap();
    let (dhs, dh0) = (tensor(&a[4]).clone(), tensor(&a[5]).clone());
    let mut a = vec![
        t(&x.q),
        t(&x.k),
        t(&x.v),
        t(&x.g),
        t(&hs),
        t(&ht),
        t(d_o),
        t(&dhs),
        poison(dt, &qk),
        poison(dt, &qk),
        poison(DType::F32, &qk),
        HostArg::Scalar(scale),
    ];
    interp::run(&kernel("gla_bwd_dqk", defs), &mut a).unwrap();
    let (dq, dk, dg) = (
        tensor(&a[8]).clone(),
        tensor(&a[9]).clone(),
        tensor(&a[10]).clone(),
    );
    let mut a = vec![
        t(&x.q),
        t(&x.k),
        t(&x.g),
        t(d_o),
        t(&dhs),
        poison(dt, &vs),
        HostArg::Scalar(scale),
    ];
    interp::run(&kernel("gla_bwd_dv", defs), &mut a).unwrap();
    [dq, dk, tensor(&a[5]).clone(), dg, dh0]
}

#[test]
fn chunked_backward_matches_the_float64_gradients() {
    // Ragged lengths (one token; a partial sub-chunk; exactly one chunk; chunks and a partial
    // one), all four head-dim pairs, fla's gates and fast-forgetting ones (every exponent of the
    // chunked form must stay ≤ 0), an initial state and a final-state gradient; f32 operands
    // (tight) and bf16 ones (operands of the matrix unit rounded). The fastest gates (3) run in
    // bf16: in f32, cumulative gates near −100 carry ~1e-5 relative rounding into e^{b_t − b_s},
    // which is f32's own limit, not the kernel's.
    let cases = [
        (1, 1, 1, 64, 64, "f32", 0.0),
        (1, 37, 2, 64, 64, "f32", 2.0),
        (2, 64, 1, 64, 128, "f32", 0.0),
        (1, 130, 1, 128, 64, "f32", 0.5),
        (1, 75, 1, 128, 128, "f32", 2.0),
        (1, 100, 2, 64, 64, "bf16", 0.0),
        (1, 150, 1, 128, 128, "bf16", 3.0),
    ];
    for (b, n, h, d, e, t, extra) in cases {
        let p = Problem::new(b, n, h, d, e);
        let dt = DType::parse(t).unwrap();
        let x = inputs(&p, dt, extra);
        let d_o = random(dt, &[b, n, h, e], -1.0, 1.0);
        let dht = random(DType::F32, &[b, h, d, e], -1.0, 1.0);
        let scale = 1.0 / (d as f64).sqrt();
        let want = gla::backward(
            &p, &x.q.data, &x.k.data, &x.v.data, &x.g.data, &x.h0.data, scale, &d_o.data, &dht.data,
        );
        let got = chunked_backward(&p, &x, &d_o, &dht, dt, scale, &defines(d, e, t));
        // f32: 1e-5, plus what f32 itself loses in the gates' running sums: an exponent
        // b_t − b_s built from up to a chunk of f32 additions carries ~ε·Σ|g| absolute error,
        // which e^{b_t − b_s} turns into relative error (fast gates make Σ|g| ~ 64 per chunk).
        let tol = if dt == DType::F32 {
            1e-5 + 4.0 * f32::EPSILON as f64 * chunk_gate_mass(&x.g, &p)
        } else {
            3e-2
        };
        let names = ["dq", "dk", "dv", "dg", "dh0"];
        let wants = [&want.dq, &want.dk, &want.dv, &want.dg, &want.dh0];
        for ((name, got), want) in names.iter().zip(&got).zip(wants) {
            let err = err_vs_scale(&got.data, want);
            assert!(err < tol, "{p:?} {t} extra {extra}: {name} error {err}");
        }
    }
}
