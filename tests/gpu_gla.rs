//! Gated linear attention from dsl-examples/gla.tsl through the runtime's operators
//! (`tessel_runtime::gla`), against the float64 recurrence of `tessel_reference::gla`: the
//! forward (output and final state, from a random initial state or none) on ragged lengths
//! N ∈ {1, 63, 64, 150, 1000, 4099}, (D, E) ∈ {(64, 64), (128, 128), (64, 128)}, fla's gates
//! (log σ / 16) and fast-forgetting ones; prefill then decode equals the recurrence over the whole
//! sequence; the gradients (dq, dk, dv, dg, dh0, with and without a final-state gradient) against
//! the reference's backward (itself checked against finite differences); and operands the
//! kernels cannot take are refused before launch.
//!
//! With TESSEL_DUMP_DIR set, the forward cases of the first package (inputs, tessel's O and final
//! state, the float64 references) are written there as .npy files with cases.json, for
//! bench/fla_gla_check.py: the same inputs through fla's `chunk_gla`, element by element.

use tessel_reference::gla::{self as reference, Problem};
use tessel_runtime::format::DType;
use tessel_runtime::gla::{gla_backward, gla_decode, gla_forward};
use tessel_runtime::{device, Device, DeviceTensor, LoadedPackage, RuntimeError};

include!("support/packages.rs");

fn package(dev: &Device, arch: &str) -> LoadedPackage {
    let p = operator_package(&tessel_runtime::spec::gla::SPEC, arch);
    LoadedPackage::load(dev, p).unwrap()
}

fn open() -> Option<Device> {
    if !device::driver_present() {
        eprintln!("SKIP gpu_gla: no CUDA driver on this machine");
        return None;
    }
    Some(Device::open(0).unwrap())
}

/// A tensor of `dtype` holding `data`, and the values it holds after rounding.
fn upload(dev: &Device, dtype: DType, shape: &[usize], data: &[f64]) -> (DeviceTensor, Vec<f64>) {
    let t = DeviceTensor::from_f64(dev, dtype, shape, data).unwrap();
    let host = t.to_f64(dev).unwrap();
    (t, host)
}

/// fla's gates, log σ(x) / 16, minus up to `extra` more (a fast forget).
fn gates(n: usize, extra: f64) -> Vec<f64> {
    let z = randn(2 * n);
    (0..n)
        .map(|i| -(1.0 + (-2.0 * z[i]).exp()).ln() / 16.0 - extra * z[n + i].abs())
        .collect()
}

struct Inputs {
    dev: [DeviceTensor; 5],
    host: [Vec<f64>; 5],
}

/// q, k, v (bf16, unit normal), g (f32) and h0 (f32) for `p`.
fn inputs(dev: &Device, p: &Problem, extra: f64) -> Inputs {
    let (qk, vs, st) = (
        [p.b, p.n, p.h, p.d],
        [p.b, p.n, p.h, p.e],
        [p.b, p.h, p.d, p.e],
    );
    let (q, hq) = upload(dev, DType::Bf16, &qk, &randn(p.qk_len()));
    let (k, hk) = upload(dev, DType::Bf16, &qk, &randn(p.qk_len()));
    let (v, hv) = upload(dev, DType::Bf16, &vs, &randn(p.v_len()));
    let (g, hg) = upload(dev, DType::F32, &qk, &gates(p.qk_len(), extra));
    let (h0, hh) = upload(dev, DType::F32, &st, &randn(p.state_len()));
    Inputs {
        dev: [q, k, v, g, h0],
        host: [hq, hk, hv, hg, hh],
    }
}

#[test]
fn gla_forward_matches_the_float64_recurrence() {
    let Some(dev) = open() else { return };
    let mut cases = Vec::new();
    for (d, e) in [(64, 64), (128, 128), (64, 128)] {
        for n in [1, 63, 64, 150, 1000] {
            cases.push((Problem::new(2, n, 2, d, e), 0.0, true));
        }
        cases.push((Problem::new(1, 4099, 3, d, e), 0.0, true));
        cases.push((Problem::new(2, 300, 2, d, e), 3.0, true));
        cases.push((Problem::new(1, 200, 2, d, e), 0.0, false));
    }
    let dump_dir = std::env::var_os("TESSEL_DUMP_DIR").map(std::path::PathBuf::from);
    let mut failures = Vec::new();
    println!(
        "{:<7} {:>2} {:>5} {:>2} {:>4} {:>4} {:>5} {:>3} {:>9} {:>9}",
        "arch", "B", "N", "H", "D", "E", "extra", "h0", "O", "state"
    );
    for arch in archs_for(&dev) {
        let pkg = package(&dev, arch);
        let mut manifest = Vec::new();
        for (i, (p, extra, with_h0)) in cases.iter().enumerate() {
            let x = inputs(&dev, p, *extra);
            let [q, k, v, g, h0] = &x.dev;
            let [hq, hk, hv, hg, hh] = &x.host;
            let zero = vec![0.0; p.state_len()];
            let h0_host = if *with_h0 { hh } else { &zero };
            let scale = 1.0 / (p.d as f64).sqrt();
            let out = gla_forward(&dev, &pkg, q, k, v, g, with_h0.then_some(h0), None).unwrap();
            let o = out.o.to_f64(&dev).unwrap();
            let ht = out.final_state.to_f64(&dev).unwrap();
            let (want_o, want_ht) = reference::forward(p, hq, hk, hv, hg, h0_host, scale);
            let (eo, eh) = (scaled_err(&o, &want_o), scaled_err(&ht, &want_ht));
            println!(
                "{arch:<7} {:>2} {:>5} {:>2} {:>4} {:>4} {extra:>5} {:>3} {eo:>9.2e} {eh:>9.2e}",
                p.b, p.n, p.h, p.d, p.e, with_h0
            );
            // bf16 inputs, outputs and matrix-unit operands; f32 states and accumulation.
            if !(eo < 1e-2 && eh < 1e-2) {
                failures.push(format!(
                    "{arch} {p:?} extra {extra}: O {eo:.2e} state {eh:.2e}"
                ));
            }
            if let (Some(dir), true) = (&dump_dir, arch == archs_for(&dev)[0]) {
                std::fs::create_dir_all(dir).unwrap();
                let (qk, vs, st) = (
                    [p.b, p.n, p.h, p.d],
                    [p.b, p.n, p.h, p.e],
                    [p.b, p.h, p.d, p.e],
                );
                for (name, shape, values) in [
                    ("q", &qk[..], hq),
                    ("k", &qk[..], hk),
                    ("v", &vs[..], hv),
                    ("g", &qk[..], hg),
                    ("h0", &st[..], h0_host),
                    ("o", &vs[..], &o),
                    ("ht", &st[..], &ht),
                    ("ref_o", &vs[..], &want_o),
                    ("ref_ht", &st[..], &want_ht),
                ] {
                    write_npy(&dir.join(format!("case{i}_{name}.npy")), shape, values);
                }
                manifest.push(format!(
                    r#"{{"case": {i}, "b": {}, "n": {}, "h": {}, "d": {}, "e": {}}}"#,
                    p.b, p.n, p.h, p.d, p.e
                ));
            }
        }
        if let (Some(dir), false) = (&dump_dir, manifest.is_empty()) {
            let text = format!("[{}]\n", manifest.join(",\n"));
            std::fs::write(dir.join("cases.json"), text).unwrap();
        }
    }
    assert!(
        failures.is_empty(),
        "over tolerance:\n{}",
        failures.join("\n")
    );
}

/// The first `n0` tokens through the forward, the rest one at a time through decode: every
/// decoded output and the final state match the recurrence over the whole sequence.
#[test]
fn prefill_then_decode_continues_the_recurrence() {
    let Some(dev) = open() else { return };
    for arch in archs_for(&dev) {
        let pkg = package(&dev, arch);
        for (d, e) in [(64, 64), (128, 128)] {
            let (n0, steps) = (100, 20);
            let all = Problem::new(2, n0 + steps, 3, d, e);
            let x = inputs(&dev, &all, 0.5);
            let [hq, hk, hv, hg, hh] = &x.host;
            let scale = 1.0 / (d as f64).sqrt();
            let (want_o, want_ht) = reference::forward(&all, hq, hk, hv, hg, hh, scale);
            // (B, N, H, w) rows [t0, t1) of a host tensor, or one token as (B, H, w).
            let rows = |t: &[f64], t0: usize, t1: usize, w: usize| -> Vec<f64> {
                (0..all.b)
                    .flat_map(|b| {
                        let at = |t| (b * all.n + t) * all.h * w;
                        t[at(t0)..at(t1)].to_vec()
                    })
                    .collect()
            };
            let pre = Problem::new(all.b, n0, all.h, d, e);
            let put = |dtype, shape: &[usize], data: Vec<f64>| {
                DeviceTensor::from_f64(&dev, dtype, shape, &data).unwrap()
            };
            let qk = [all.b, n0, all.h, d];
            let vs = [all.b, n0, all.h, e];
            let (q, k) = (
                put(DType::Bf16, &qk, rows(hq, 0, n0, d)),
                put(DType::Bf16, &qk, rows(hk, 0, n0, d)),
            );
            let (v, g) = (
                put(DType::Bf16, &vs, rows(hv, 0, n0, e)),
                put(DType::F32, &qk, rows(hg, 0, n0, d)),
            );
            let out =
                gla_forward(&dev, &pkg, &q, &k, &v, &g, Some(&x.dev[4]), Some(scale)).unwrap();
            let o = out.o.to_f64(&dev).unwrap();
            let err = scaled_err(&o, &rows(&want_o, 0, n0, e));
            assert!(err < 1e-2, "{arch} D={d} prefill: {err}");
            assert_eq!(pre.v_len(), o.len());
            let mut state = out.final_state;
            for t in n0..n0 + steps {
                let tok = |data: &[f64], w: usize| rows(data, t, t + 1, w);
                let qk1 = [all.b, all.h, d];
                let v1 = [all.b, all.h, e];
                let (q, k) = (
                    put(DType::Bf16, &qk1, tok(hq, d)),
                    put(DType::Bf16, &qk1, tok(hk, d)),
                );
                let (v, g) = (
                    put(DType::Bf16, &v1, tok(hv, e)),
                    put(DType::F32, &qk1, tok(hg, d)),
                );
                let o = gla_decode(&dev, &pkg, &q, &k, &v, &g, &mut state, Some(scale)).unwrap();
                let err = scaled_err(&o.to_f64(&dev).unwrap(), &tok(&want_o, e));
                assert!(err < 1e-2, "{arch} D={d} decode token {t}: {err}");
            }
            let err = scaled_err(&state.to_f64(&dev).unwrap(), &want_ht);
            assert!(err < 1e-2, "{arch} D={d} final state: {err}");
        }
    }
}

#[test]
fn operands_the_kernels_cannot_take_are_refused_before_launch() {
    let Some(dev) = open() else { return };
    let pkg = package(&dev, archs_for(&dev)[0]);
    let p = Problem::new(1, 10, 2, 64, 64);
    let x = inputs(&dev, &p, 0.0);
    let [q, k, v, g, h0] = &x.dev;
    let refused = |r: Result<_, RuntimeError>, what: &str| match r {
        Err(RuntimeError::BadOperand { reason, .. }) => assert!(reason.contains(what), "{reason}"),
        other => panic!("expected a refusal naming {what}, got {other:?}"),
    };
    // Gates rounded to bf16: they must be f32.
    let (g16, _) = upload(&dev, DType::Bf16, &[1, 10, 2, 64], &vec![-0.1; p.qk_len()]);
    refused(
        gla_forward(&dev, &pkg, q, k, v, &g16, None, None).map(drop),
        "g is bf16",
    );
    // A head dim the package is not built for.
    let (q32, _) = upload(&dev, DType::Bf16, &[1, 10, 2, 32], &vec![0.5; 640]);
    let (g32, _) = upload(&dev, DType::F32, &[1, 10, 2, 32], &vec![-0.1; 640]);
    refused(
        gla_forward(&dev, &pkg, &q32, &q32, v, &g32, None, None).map(drop),
        "D (q's last dimension) is 32",
    );
    // An initial state of the wrong shape; k unlike q.
    refused(
        gla_forward(&dev, &pkg, q, k, v, g, Some(q), None).map(drop),
        "h0 is",
    );
    // (v has q's shape when D = E, so k gets a sequence of its own length.)
    let (k9, _) = upload(&dev, DType::Bf16, &[1, 9, 2, 64], &vec![0.5; 9 * 2 * 64]);
    refused(
        gla_forward(&dev, &pkg, q, &k9, v, g, Some(h0), None).map(drop),
        "differ in shape",
    );
}

#[test]
fn gla_backward_matches_the_float64_gradients() {
    let Some(dev) = open() else { return };
    let dump_dir = std::env::var_os("TESSEL_DUMP_DIR").map(std::path::PathBuf::from);
    let mut manifest = Vec::new();
    let mut failures = Vec::new();
    println!(
        "{:<7} {:>5} {:>4} {:>4} {:>4} {:>9} {:>9} {:>9} {:>9} {:>9}",
        "arch", "N", "D", "E", "dht", "dq", "dk", "dv", "dg", "dh0"
    );
    for arch in archs_for(&dev) {
        let pkg = package(&dev, arch);
        for (d, e) in [(64, 64), (128, 128), (64, 128)] {
            let lengths = [
                (1, true),
                (63, false),
                (150, true),
                (1000, true),
                (4099, true),
            ];
            for (n, with_dht) in lengths {
                let p = Problem::new(2, n, 2, d, e);
                let x = inputs(&dev, &p, 0.5);
                let [q, k, v, g, h0] = &x.dev;
                let [hq, hk, hv, hg, hh] = &x.host;
                let (d_o, hdo) = upload(&dev, DType::Bf16, &[2, n, 2, e], &randn(p.v_len()));
                let (dht, hdht) = upload(&dev, DType::F32, &[2, 2, d, e], &randn(p.state_len()));
                let zero = vec![0.0; p.state_len()];
                let scale = 1.0 / (d as f64).sqrt();
                let fwd = gla_forward(&dev, &pkg, q, k, v, g, Some(h0), None).unwrap();
                let dht_dev = with_dht.then_some(&dht);
                let grads = gla_backward(
                    &dev,
                    &pkg,
                    [q, k, v, g],
                    Some(h0),
                    &fwd.final_state,
                    &d_o,
                    dht_dev,
                    None,
                )
                .unwrap();
                let want_dht = if with_dht { &hdht } else { &zero };
                let want = reference::backward(&p, hq, hk, hv, hg, hh, scale, &hdo, want_dht);
                let got = [&grads.dq, &grads.dk, &grads.dv, &grads.dg, &grads.dh0]
                    .map(|t| t.to_f64(&dev).unwrap());
                let errs: Vec<f64> = got
                    .iter()
                    .zip([&want.dq, &want.dk, &want.dv, &want.dg, &want.dh0])
                    .map(|(g, w)| scaled_err(g, w))
                    .collect();
                println!(
                    "{arch:<7} {n:>5} {d:>4} {e:>4} {with_dht:>4} {:>9.2e} {:>9.2e} {:>9.2e} {:>9.2e} {:>9.2e}",
                    errs[0], errs[1], errs[2], errs[3], errs[4]
                );
                // bf16 inputs and dq, dk, dv; f32 states, dg and dh0.
                if !errs.iter().all(|e| *e < 1e-2) {
                    failures.push(format!("{arch} N={n} D={d} E={e} dht={with_dht}: {errs:?}"));
                }
                if let (Some(dir), true) = (&dump_dir, arch == archs_for(&dev)[0]) {
                    let i = manifest.len();
                    dump_backward(dir, i, &p, &x.host, [&hdo, want_dht], &got, &want);
                    manifest.push(format!(
                        r#"{{"case": {i}, "b": {}, "n": {n}, "h": {}, "d": {d}, "e": {e}}}"#,
                        p.b, p.h
                    ));
                }
            }
        }
    }
    if let (Some(dir), false) = (&dump_dir, manifest.is_empty()) {
        let text = format!("[{}]\n", manifest.join(",\n"));
        std::fs::write(dir.join("bwd_cases.json"), text).unwrap();
    }
    assert!(
        failures.is_empty(),
        "over tolerance:\n{}",
        failures.join("\n")
    );
}

/// One backward case for bench/fla_gla_check.py: inputs (bf16-rounded values), dO and dht,
/// tessel's gradients and the float64 ones, as `bwd{i}_NAME.npy`.
fn dump_backward(
    dir: &std::path::Path,
    i: usize,
    p: &Problem,
    host: &[Vec<f64>; 5],
    [d_o, dht]: [&Vec<f64>; 2],
    got: &[Vec<f64>; 5],
    want: &reference::Grads,
) {
    std::fs::create_dir_all(dir).unwrap();
    let (qk, vs, st) = (
        [p.b, p.n, p.h, p.d],
        [p.b, p.n, p.h, p.e],
        [p.b, p.h, p.d, p.e],
    );
    let [hq, hk, hv, hg, hh] = host;
    let [dq, dk, dv, dg, dh0] = got;
    let files: [(&str, &[usize], &[f64]); 17] = [
        ("q", &qk, hq),
        ("k", &qk, hk),
        ("v", &vs, hv),
        ("g", &qk, hg),
        ("h0", &st, hh),
        ("do", &vs, d_o),
        ("dht", &st, dht),
        ("dq", &qk, dq),
        ("dk", &qk, dk),
        ("dv", &vs, dv),
        ("dg", &qk, dg),
        ("dh0", &st, dh0),
        ("ref_dq", &qk, &want.dq),
        ("ref_dk", &qk, &want.dk),
        ("ref_dv", &vs, &want.dv),
        ("ref_dg", &qk, &want.dg),
        ("ref_dh0", &st, &want.dh0),
    ];
    for (name, shape, values) in files {
        write_npy(&dir.join(format!("bwd{i}_{name}.npy")), shape, values);
    }
}
