//! FlashAttention from dsl-examples/flash_attention.tsl through the runtime's operators
//! (`tessel_runtime::attention`), forward and all three gradients, against the float64 reference
//! of `tessel_reference::attention` (the O(N²) definition, checked there by finite differences).
//! Fresh random bf16 inputs every run, every output poisoned first, N ∈ {1, 17, 128, 1000, 4096},
//! D ∈ {64, 128}, causal and full, grouped-query heads, and Nq ≠ Nk.
//!
//! With TESSEL_DUMP_DIR set, every case's inputs and tessel's outputs are also written there as
//! .npy files (plus cases.json) for bench/sdpa_check.py, which compares them with PyTorch's
//! scaled_dot_product_attention on the same inputs.

use tessel_reference::attention::{self as reference, Problem};
use tessel_runtime::attention::{
    flash_attention_backward, flash_attention_backward_into, flash_attention_forward,
    flash_attention_forward_into, AttentionGrads, AttentionOptions, AttentionOutput,
};
use tessel_runtime::format::DType;
use tessel_runtime::{device, Device, DeviceTensor, LoadedPackage, RuntimeError};

include!("support/packages.rs");

fn flash_package(dev: &Device, arch: &str) -> LoadedPackage {
    let p = operator_package(&tessel_runtime::spec::flash::SPEC, arch);
    LoadedPackage::load(dev, p).unwrap()
}

struct Case {
    b: usize,
    hq: usize,
    hkv: usize,
    nq: usize,
    nk: usize,
    d: usize,
    causal: bool,
}

/// What one case produced on the GPU, and its inputs as the kernels saw them (bf16-rounded).
struct Run {
    inputs: [Vec<f64>; 4],
    outputs: [Vec<f64>; 5],
}

fn cases() -> Vec<Case> {
    let mut out = Vec::new();
    for d in [64, 128] {
        for causal in [false, true] {
            for n in [1, 17, 128, 1000, 4096] {
                let (b, hq, hkv) = if n >= 4096 { (1, 2, 1) } else { (2, 4, 2) };
                out.push(Case {
                    b,
                    hq,
                    hkv,
                    nq: n,
                    nk: n,
                    d,
                    causal,
                });
            }
            // Cross attention with more queries than keys: causal rows that see no key at all.
            out.push(Case {
                b: 1,
                hq: 3,
                hkv: 1,
                nq: 150,
                nk: 77,
                d,
                causal,
            });
        }
    }
    out
}

fn run_case(dev: &Device, pkg: &LoadedPackage, c: &Case) -> Run {
    let upload = |shape: &[usize]| {
        let n = shape.iter().product();
        let t = DeviceTensor::from_f64(dev, DType::Bf16, shape, &randn(n)).unwrap();
        let host = t.to_f64(dev).unwrap();
        (t, host)
    };
    let (q, qh) = upload(&[c.b, c.hq, c.nq, c.d]);
    let (k, kh) = upload(&[c.b, c.hkv, c.nk, c.d]);
    let (v, vh) = upload(&[c.b, c.hkv, c.nk, c.d]);
    let (d_o, doh) = upload(&[c.b, c.hq, c.nq, c.d]);
    let opts = AttentionOptions {
        causal: c.causal,
        scale: None,
    };
    // Every output poisoned (NaN) before the launches that must overwrite it.
    let poisoned = |shape: &[usize], dtype| DeviceTensor::poisoned(dev, dtype, shape).unwrap();
    let fwd = AttentionOutput {
        o: poisoned(&q.shape, DType::Bf16),
        lse: poisoned(&q.shape[..3], DType::F32),
    };
    flash_attention_forward_into(dev, pkg, &q, &k, &v, &fwd, &opts).unwrap();
    let g = AttentionGrads {
        dq: poisoned(&q.shape, DType::Bf16),
        dk: poisoned(&k.shape, DType::Bf16),
        dv: poisoned(&v.shape, DType::Bf16),
    };
    flash_attention_backward_into(dev, pkg, &q, &k, &v, &fwd, &d_o, &g, &opts).unwrap();
    Run {
        inputs: [qh, kh, vh, doh],
        outputs: [
            fwd.o.to_f64(dev).unwrap(),
            fwd.lse.to_f64(dev).unwrap(),
            g.dq.to_f64(dev).unwrap(),
            g.dk.to_f64(dev).unwrap(),
            g.dv.to_f64(dev).unwrap(),
        ],
    }
}

/// Errors of one run against the float64 reference: O, L, dQ, dK, dV.
fn check(c: &Case, r: &Run) -> [f64; 5] {
    let p = Problem::gqa(c.b, c.hq, c.hkv, c.nq, c.nk, c.d, c.causal);
    let [q, k, v, d_o] = &r.inputs;
    let (o, lse) = reference::forward(&p, q, k, v);
    let (dq, dk, dv) = reference::backward(&p, q, k, v, d_o);
    // L: +inf exactly where a row sees no key, otherwise absolute error (L is O(log N)).
    let lse_err = r.outputs[1]
        .iter()
        .zip(&lse)
        .map(|(g, w)| {
            if w.is_infinite() {
                if g == w {
                    0.0
                } else {
                    f64::INFINITY
                }
            } else if g.is_finite() {
                (g - w).abs()
            } else {
                f64::INFINITY
            }
        })
        .fold(0.0, f64::max);
    [
        scaled_err(&r.outputs[0], &o),
        lse_err,
        scaled_err(&r.outputs[2], &dq),
        scaled_err(&r.outputs[3], &dk),
        scaled_err(&r.outputs[4], &dv),
    ]
}

fn dump(dir: &std::path::Path, index: usize, c: &Case, r: &Run, manifest: &mut Vec<String>) {
    let shapes = [
        vec![c.b, c.hq, c.nq, c.d],
        vec![c.b, c.hkv, c.nk, c.d],
        vec![c.b, c.hkv, c.nk, c.d],
        vec![c.b, c.hq, c.nq, c.d],
        vec![c.b, c.hq, c.nq, c.d],
        vec![c.b, c.hq, c.nq],
        vec![c.b, c.hq, c.nq, c.d],
        vec![c.b, c.hkv, c.nk, c.d],
        vec![c.b, c.hkv, c.nk, c.d],
    ];
    let names = ["q", "k", "v", "do", "o", "lse", "dq", "dk", "dv"];
    let data = r.inputs.iter().chain(&r.outputs);
    for ((name, shape), values) in names.iter().zip(&shapes).zip(data) {
        write_npy(&dir.join(format!("case{index}_{name}.npy")), shape, values);
    }
    manifest.push(format!(
        r#"{{"case": {index}, "b": {}, "hq": {}, "hkv": {}, "nq": {}, "nk": {}, "d": {}, "causal": {}}}"#,
        c.b, c.hq, c.hkv, c.nq, c.nk, c.d, c.causal
    ));
}

#[test]
fn flash_attention_matches_float64() {
    if !device::driver_present() {
        eprintln!("SKIP flash_attention_matches_float64: no CUDA driver on this machine");
        return;
    }
    let dev = Device::open(0).unwrap();
    let dump_dir = std::env::var_os("TESSEL_DUMP_DIR").map(std::path::PathBuf::from);
    let cases = cases();
    let mut manifest = Vec::new();
    let mut failures = Vec::new();
    println!(
        "{:<7} {:>2} {:>3} {:>3} {:>5} {:>5} {:>4} {:<6} {:>9} {:>9} {:>9} {:>9} {:>9}",
        "arch", "B", "Hq", "Hkv", "Nq", "Nk", "D", "mask", "O", "L (abs)", "dQ", "dK", "dV"
    );
    for arch in archs_for(&dev) {
        let pkg = flash_package(&dev, arch);
        // The GPU runs in order; the float64 references (seconds each at N = 4096) run on every
        // core at once.
        let runs: Vec<Run> = cases.iter().map(|c| run_case(&dev, &pkg, c)).collect();
        let errors: Vec<[f64; 5]> = std::thread::scope(|s| {
            let handles: Vec<_> = cases
                .iter()
                .zip(&runs)
                .map(|(c, r)| s.spawn(move || check(c, r)))
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        for (i, (c, e)) in cases.iter().zip(&errors).enumerate() {
            let mask = if c.causal { "causal" } else { "full" };
            println!(
                "{arch:<7} {:>2} {:>3} {:>3} {:>5} {:>5} {:>4} {mask:<6} {:>9.2e} {:>9.2e} {:>9.2e} {:>9.2e} {:>9.2e}",
                c.b, c.hq, c.hkv, c.nq, c.nk, c.d, e[0], e[1], e[2], e[3], e[4]
            );
            // bf16 inputs and outputs, f32 accumulation, P rounded to bf16 for the PV and
            // dS products: bf16's 1e-2 of each tensor's scale; L is f32 from exact scores.
            if e[0] >= 1e-2 || e[1] >= 1e-3 || e[2..].iter().any(|x| *x >= 1e-2) {
                failures.push(format!("{arch} case {i}: {e:?}"));
            }
            if arch == archs_for(&dev)[0] {
                if let Some(dir) = &dump_dir {
                    std::fs::create_dir_all(dir).unwrap();
                    dump(dir, i, c, &runs[i], &mut manifest);
                }
            }
        }
    }
    if let Some(dir) = &dump_dir {
        std::fs::write(
            dir.join("cases.json"),
            format!("[{}]\n", manifest.join(",\n")),
        )
        .unwrap();
    }
    assert!(
        failures.is_empty(),
        "flash attention errors over tolerance:\n{}",
        failures.join("\n")
    );
}

#[test]
fn flash_attention_refuses_bad_operands() {
    if !device::driver_present() {
        eprintln!("SKIP flash_attention_refuses_bad_operands: no CUDA driver on this machine");
        return;
    }
    let dev = Device::open(0).unwrap();
    let pkg = flash_package(&dev, archs_for(&dev)[0]);
    let t = |dtype, shape: &[usize]| DeviceTensor::empty(&dev, dtype, shape).unwrap();
    let opts = AttentionOptions::default();
    let q = t(DType::Bf16, &[1, 4, 32, 64]);
    let kv = t(DType::Bf16, &[1, 2, 32, 64]);
    // Heads not a multiple, head dim mismatch, rank, dtype, a head dim with no kernel, k and v
    // of different lengths: (q dtype, q shape, k shape, v shape).
    type Call<'a> = (DType, &'a [usize], &'a [usize], &'a [usize]);
    let refused: [Call; 6] = [
        (
            DType::Bf16,
            &[1, 4, 32, 64],
            &[1, 3, 32, 64],
            &[1, 3, 32, 64],
        ),
        (
            DType::Bf16,
            &[1, 4, 32, 64],
            &[1, 2, 32, 128],
            &[1, 2, 32, 128],
        ),
        (DType::Bf16, &[4, 32, 64], &[1, 2, 32, 64], &[1, 2, 32, 64]),
        (
            DType::F32,
            &[1, 4, 32, 64],
            &[1, 2, 32, 64],
            &[1, 2, 32, 64],
        ),
        (
            DType::Bf16,
            &[1, 4, 32, 96],
            &[1, 2, 32, 96],
            &[1, 2, 32, 96],
        ),
        (
            DType::Bf16,
            &[1, 4, 32, 64],
            &[1, 2, 32, 64],
            &[1, 2, 31, 64],
        ),
    ];
    let mut msgs: Vec<String> = refused
        .iter()
        .map(|(dtype, qs, ks, vs)| {
            let (q, k, v) = (t(*dtype, qs), t(DType::Bf16, ks), t(DType::Bf16, vs));
            bad(flash_attention_forward(&dev, &pkg, &q, &k, &v, &opts))
        })
        .collect();
    // Backward with a forward result of the wrong shape.
    let fwd = flash_attention_forward(&dev, &pkg, &q, &kv, &kv, &opts).unwrap();
    let wrong = AttentionOutput {
        o: t(DType::Bf16, &[1, 4, 31, 64]),
        lse: fwd.lse,
    };
    msgs.push(bad(flash_attention_backward(
        &dev, &pkg, &q, &kv, &kv, &wrong, &q, &opts,
    )));
    // Caller-owned outputs of the wrong shape.
    let (qq, kk) = (
        t(DType::Bf16, &[1, 4, 32, 64]),
        t(DType::Bf16, &[1, 2, 32, 64]),
    );
    let short = AttentionOutput {
        o: t(DType::Bf16, &[1, 4, 32, 64]),
        lse: t(DType::F32, &[1, 4, 31]),
    };
    msgs.push(bad(flash_attention_forward_into(
        &dev, &pkg, &qq, &kk, &kk, &short, &opts,
    )));
    dev.synchronize().unwrap();
    for m in &msgs {
        println!("refused: {m}");
    }
}

/// The message of a typed refusal; any other outcome fails the test.
fn bad<T>(r: Result<T, RuntimeError>) -> String {
    match r {
        Err(e @ (RuntimeError::BadOperand { .. } | RuntimeError::NoVariant { .. })) => {
            e.to_string()
        }
        Err(other) => panic!("wrong error: {other}"),
        Ok(_) => panic!("accepted a bad call"),
    }
}
