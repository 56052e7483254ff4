//! FLASH mixed-chunk attention with GAU's gate (dsl-examples/flash_gau.tsl) in the interpreter
//! against the dense float64 definition of tessel-reference (`flash_gau`), causal and not, on
//! ragged lengths (a partial last chunk), several chunks, fresh random inputs, outputs poisoned
//! first.

use tessel_compiler::interp::{self, HostArg, HostTensor};
use tessel_compiler::tir::{DType, Kernel};

mod support;
use support::{err_vs_scale, random, tensor};

fn kernel(name: &str, defines: &[(&str, String)]) -> Kernel {
    support::example_kernel("flash_gau.tsl", name, defines)
}
use tessel_reference::flash_gau::{self, Problem};

#[test]
fn flash_gau_forward_matches_the_dense_definition() {
    // G = 128 here (256 by default) to keep the interpreter fast; N ragged over 1 to 3 chunks.
    let cases = [
        (1, 1, 64, 64, false, "f32"),
        (2, 200, 64, 64, false, "f32"),
        (1, 300, 64, 64, true, "f32"),
        (1, 130, 64, 128, true, "f32"),
        (1, 150, 128, 64, false, "bf16"),
        (1, 190, 64, 64, true, "bf16"),
    ];
    for (b, n, s, e, causal, t) in cases {
        let g = 128;
        let p = Problem {
            b,
            n,
            s,
            e,
            g,
            causal,
        };
        let dt = DType::parse(t).unwrap();
        // |z| up to 3: the quadratic part relu²(q·k / G) is then as large as the linear one.
        let z = random(dt, &[b, n, s], -3.0, 3.0);
        // Scales around 1 and small offsets, as a trained FLASH layer's heads.
        let gamma = random(DType::F32, &[4, s], 0.5, 1.5);
        let beta = random(DType::F32, &[4, s], -0.1, 0.1);
        let v = random(dt, &[b, n, e], -1.0, 1.0);
        let u = random(dt, &[b, n, e], -1.0, 1.0);
        let defs: Vec<(&str, String)> = vec![
            ("G", g.to_string()),
            ("S", s.to_string()),
            ("E", e.to_string()),
            ("T", t.to_string()),
            ("CAUSAL", causal.to_string()),
        ];
        let ng = n.div_ceil(g);
        let state_defs: Vec<_> = defs
            .iter()
            .filter(|(k, _)| *k != "CAUSAL")
            .cloned()
            .collect();
        let inputs = [&z, &gamma, &beta, &v].map(|x| HostArg::Tensor(x.clone()));
        let (prefix, total) = chunk_states(
            "flash_chunk_state",
            &state_defs,
            inputs.to_vec(),
            [b, ng, s, e],
            false,
        );
        let mut a = vec![
            HostArg::Tensor(z.clone()),
            HostArg::Tensor(gamma.clone()),
            HostArg::Tensor(beta.clone()),
            HostArg::Tensor(v.clone()),
            HostArg::Tensor(u.clone()),
            HostArg::Tensor(prefix),
            HostArg::Tensor(total),
            HostArg::Tensor(HostTensor::poisoned(dt, vec![b, n, e])),
        ];
        interp::run(&kernel("flash_gau_fwd", &defs), &mut a).unwrap();
        let want = flash_gau::forward(&p, &z.data, &gamma.data, &beta.data, &v.data, &u.data);
        let err = err_vs_scale(&tensor(&a[7]).data, &want);
        let tol = if dt == DType::F32 { 1e-5 } else { 3e-2 };
        assert!(err < tol, "{p:?} {t}: {err}");
    }
}

/// The linear part's states as the operator computes them: `chunk` (flash_chunk_state or
/// flash_bwd_chunk_state) writes each chunk's own state, then flash_state_scan makes them the
/// sums over the chunks before (or, `reverse`, after) each, in place, with the total.
fn chunk_states(
    chunk: &str,
    defs: &[(&str, String)],
    mut inputs: Vec<HostArg>,
    [b, ng, s, e]: [usize; 4],
    reverse: bool,
) -> (HostTensor, HostTensor) {
    inputs.push(HostArg::Tensor(HostTensor::poisoned(
        DType::F32,
        vec![b, ng, s, e],
    )));
    let states = run(&kernel(chunk, defs), inputs).pop().unwrap();
    let scan_defs: Vec<_> = defs
        .iter()
        .filter(|(k, _)| matches!(*k, "S" | "E"))
        .cloned()
        .collect();
    let scanned = run(
        &kernel("flash_state_scan", &scan_defs),
        vec![
            HostArg::Tensor(states),
            HostArg::Tensor(HostTensor::poisoned(DType::F32, vec![b, s, e])),
            HostArg::Scalar(f64::from(u8::from(reverse))),
        ],
    );
    (scanned[0].clone(), scanned[1].clone())
}

fn run(k: &Kernel, args: Vec<HostArg>) -> Vec<HostTensor> {
    let mut args = args;
    interp::run(k, &mut args).unwrap();
    args.iter()
        .filter_map(|a| match a {
            HostArg::Tensor(t) => Some(t.clone()),
            HostArg::Scalar(_) => None,
        })
        .collect()
}

#[test]
fn flash_gau_backward_matches_the_dense_gradients() {
    // The five passes as the runtime would chain them, against the reference's backward
    // (itself checked against finite differences): dz, dγ, dβ, dv, du.
    for (b, n, causal) in [
        (1, 1, false),
        (1, 150, false),
        (1, 200, true),
        (2, 70, true),
    ] {
        let (s, e, g) = (64, 64, 128);
        let p = Problem {
            b,
            n,
            s,
            e,
            g,
            causal,
        };
        let dt = DType::F32;
        let z = random(dt, &[b, n, s], -3.0, 3.0);
        let gamma = random(DType::F32, &[4, s], 0.5, 1.5);
        let beta = random(DType::F32, &[4, s], -0.1, 0.1);
        let v = random(dt, &[b, n, e], -1.0, 1.0);
        let u = random(dt, &[b, n, e], -1.0, 1.0);
        let d_o = random(dt, &[b, n, e], -1.0, 1.0);
        let mut defs: Vec<(&str, String)> = vec![
            ("G", g.to_string()),
            ("S", s.to_string()),
            ("E", e.to_string()),
            ("T", "f32".to_string()),
        ];
        let plain = defs.clone();
        defs.push(("CAUSAL", causal.to_string()));
        let (ng, nb) = (n.div_ceil(g), n.div_ceil(64));
        let t = |x: &HostTensor| HostArg::Tensor(x.clone());
        let poison = |shape: Vec<usize>| HostArg::Tensor(HostTensor::poisoned(DType::F32, shape));
        let dims = [b, ng, s, e];
        let fwd_states = chunk_states(
            "flash_chunk_state",
            &plain,
            vec![t(&z), t(&gamma), t(&beta), t(&v)],
            dims,
            false,
        );
        let bwd_states = chunk_states(
            "flash_bwd_chunk_state",
            &plain,
            vec![t(&z), t(&gamma), t(&beta), t(&u), t(&d_o)],
            dims,
            true,
        );
        let kv = run(
            &kernel("flash_gau_bwd_kv", &defs),
            vec![
                t(&z),
                t(&gamma),
                t(&beta),
                t(&v),
                t(&u),
                t(&d_o),
                t(&bwd_states.0),
                t(&bwd_states.1),
                poison(vec![b, n, e]),
                poison(vec![b, n, s]),
                poison(vec![b, n, s]),
            ],
        );
        let q = run(
            &kernel("flash_gau_bwd_q", &defs),
            vec![
                t(&z),
                t(&gamma),
                t(&beta),
                t(&v),
                t(&u),
                t(&d_o),
                t(&fwd_states.0),
                t(&fwd_states.1),
                poison(vec![b, n, e]),
                poison(vec![b, n, s]),
                poison(vec![b, n, s]),
            ],
        );
        let zs = run(
            &kernel(
                "flash_gau_bwd_z",
                &[("S", s.to_string()), ("T", "f32".to_string())],
            ),
            vec![
                t(&z),
                t(&gamma),
                t(&q[9]),
                t(&kv[9]),
                t(&q[10]),
                t(&kv[10]),
                poison(vec![b, n, s]),
                poison(vec![b, nb, 4, s]),
                poison(vec![b, nb, 4, s]),
            ],
        );
        let params = run(
            &kernel("flash_gau_bwd_params", &[("S", s.to_string())]),
            vec![t(&zs[7]), t(&zs[8]), poison(vec![4, s]), poison(vec![4, s])],
        );
        let want = flash_gau::backward(
            &p,
            &z.data,
            &gamma.data,
            &beta.data,
            &v.data,
            &u.data,
            &d_o.data,
        );
        for (name, got, want) in [
            ("dz", &zs[6].data, &want.dz),
            ("dgamma", &params[2].data, &want.dgamma),
            ("dbeta", &params[3].data, &want.dbeta),
            ("dv", &kv[8].data, &want.dv),
            ("du", &q[8].data, &want.du),
        ] {
            let err = err_vs_scale(got, want);
            assert!(err < 1e-5, "{p:?} {name}: {err}");
        }
    }
}
