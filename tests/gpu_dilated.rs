//! LongNet dilated attention through the runtime's operator (`tessel_runtime::dilated`), forward
//! and gradients in both modes, against the float64 closed form of `tessel_reference::dilated`
//! (itself checked by finite differences there). Fresh random bf16 inputs, outputs poisoned
//! first, several pattern sets: one (N, 1) pattern (plain attention), w > N, r not dividing w,
//! ragged N, no r = 1 pattern (rows nobody keeps), both head-offset conventions, causal and not,
//! D = 64 and 128.

use tessel_reference::dilated::{self as reference, Grad, Offsets, Problem};
use tessel_reference::Dims;
use tessel_runtime::dilated::{
    dilated_attention_backward, dilated_attention_forward, DilatedOptions, DilatedOutput, GradMode,
    HeadOffsets, Pattern,
};
use tessel_runtime::format::DType;
use tessel_runtime::{device, Device, DeviceTensor, LoadedPackage, RuntimeError};

include!("support/packages.rs");

fn dilated_package(dev: &Device, arch: &str) -> LoadedPackage {
    let p = operator_package(&tessel_runtime::spec::dilated::SPEC, arch);
    LoadedPackage::load(dev, p).unwrap()
}

struct Case {
    b: usize,
    h: usize,
    n: usize,
    d: usize,
    patterns: &'static [(usize, usize)],
    torchscale_offsets: bool,
    causal: bool,
}

fn cases() -> Vec<Case> {
    let sets: [(&[(usize, usize)], bool); 5] = [
        (&[(8192, 1)], false),
        (&[(256, 1), (512, 2), (1024, 4)], false),
        (&[(512, 2), (256, 1), (2048, 4)], true),
        (&[(384, 5), (1000, 3)], false),
        (&[(300, 6), (4096, 2)], true),
    ];
    let mut out = Vec::new();
    for (i, (patterns, ts)) in sets.into_iter().enumerate() {
        for causal in [false, true] {
            let d = if i % 2 == 0 { 64 } else { 128 };
            // Ragged N for all but the first set (which is plain attention at N = 1000 < w).
            let n = [1000, 2048, 1999, 3001, 2500][i];
            out.push(Case {
                b: 1 + (i % 2),
                h: if ts { 5 } else { 4 },
                n,
                d,
                patterns,
                torchscale_offsets: ts,
                causal,
            });
        }
    }
    out
}

fn options(c: &Case) -> DilatedOptions {
    DilatedOptions {
        patterns: c.patterns.iter().map(|&(w, r)| Pattern { w, r }).collect(),
        offsets: if c.torchscale_offsets {
            HeadOffsets::Torchscale
        } else {
            HeadOffsets::Paper
        },
        causal: c.causal,
        scale: None,
    }
}

fn problem(c: &Case) -> Problem {
    let pats: Vec<reference::Pattern> = c
        .patterns
        .iter()
        .map(|&(w, r)| reference::Pattern { w, r })
        .collect();
    let offsets = if c.torchscale_offsets {
        Offsets::Torchscale
    } else {
        Offsets::Paper
    };
    Problem::new(Dims::new(c.b, c.h, c.n, c.d), &pats, offsets, c.causal)
}

/// Inputs as the kernels saw them (bf16-rounded), then O, L, and (dQ, dK, dV) per mode.
struct Run {
    inputs: [Vec<f64>; 4],
    o: Vec<f64>,
    lse: Vec<f64>,
    grads: Vec<[Vec<f64>; 3]>,
}

fn run_case(dev: &Device, pkg: &LoadedPackage, c: &Case) -> Run {
    let shape = [c.b, c.h, c.n, c.d];
    let upload = || {
        let t = DeviceTensor::from_f64(dev, DType::Bf16, &shape, &randn(shape.iter().product()))
            .unwrap();
        let host = t.to_f64(dev).unwrap();
        (t, host)
    };
    let ((q, qh), (k, kh), (v, vh), (d_o, dh)) = (upload(), upload(), upload(), upload());
    let opts = options(c);
    let out = dilated_attention_forward(dev, pkg, &q, &k, &v, &opts).unwrap();
    let mut grads = Vec::new();
    for mode in [GradMode::Exact, GradMode::Torchscale] {
        let g = dilated_attention_backward(dev, pkg, &q, &k, &v, &out, &d_o, &opts, mode).unwrap();
        grads.push([&g.dq, &g.dk, &g.dv].map(|t| t.to_f64(dev).unwrap()));
    }
    Run {
        inputs: [qh, kh, vh, dh],
        o: out.o.to_f64(dev).unwrap(),
        lse: out.lse.to_f64(dev).unwrap(),
        grads,
    }
}

/// [O, L (abs), then dQ, dK, dV exact, then dQ, dK, dV torchscale].
fn check(c: &Case, r: &Run) -> Vec<f64> {
    let p = problem(c);
    let [q, k, v, d_o] = &r.inputs;
    let (o, lse) = reference::forward(&p, q, k, v);
    let lse_err = r
        .lse
        .iter()
        .zip(&lse)
        .map(|(g, w)| match (g.is_finite(), w.is_finite()) {
            (true, true) => (g - w).abs(),
            _ if g == w => 0.0,
            _ => f64::INFINITY,
        })
        .fold(0.0, f64::max);
    let mut e = vec![scaled_err(&r.o, &o), lse_err];
    for (mode, got) in [Grad::Exact, Grad::Torchscale].into_iter().zip(&r.grads) {
        let (dq, dk, dv) = reference::backward(&p, mode, q, k, v, d_o);
        e.extend([
            scaled_err(&got[0], &dq),
            scaled_err(&got[1], &dk),
            scaled_err(&got[2], &dv),
        ]);
    }
    e
}

#[test]
fn dilated_attention_matches_float64() {
    if !device::driver_present() {
        eprintln!("SKIP dilated_attention_matches_float64: no CUDA driver on this machine");
        return;
    }
    let dev = Device::open(0).unwrap();
    let cases = cases();
    let mut failures = Vec::new();
    println!(
        "{:<7} {:>2} {:>2} {:>5} {:>4} {:<26} {:<5} {:<6} {:>8} {:>8} {:>8} {:>8} {:>8} {:>8} {:>8} {:>8}",
        "arch", "B", "H", "N", "D", "patterns", "offs", "mask", "O", "L(abs)", "dQ", "dK", "dV", "dQ ts", "dK ts", "dV ts"
    );
    for arch in archs_for(&dev) {
        let pkg = dilated_package(&dev, arch);
        let runs: Vec<Run> = cases.iter().map(|c| run_case(&dev, &pkg, c)).collect();
        let errors: Vec<Vec<f64>> = std::thread::scope(|s| {
            let handles: Vec<_> = cases
                .iter()
                .zip(&runs)
                .map(|(c, r)| s.spawn(move || check(c, r)))
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        for (i, (c, e)) in cases.iter().zip(&errors).enumerate() {
            let pats = format!("{:?}", c.patterns);
            let offs = if c.torchscale_offsets { "ts" } else { "paper" };
            let mask = if c.causal { "causal" } else { "full" };
            let cols: Vec<String> = e.iter().map(|x| format!("{x:>8.1e}")).collect();
            println!(
                "{arch:<7} {:>2} {:>2} {:>5} {:>4} {pats:<26} {offs:<5} {mask:<6} {}",
                c.b,
                c.h,
                c.n,
                c.d,
                cols.join(" ")
            );
            // bf16 inputs and outputs, f32 accumulation; O merged across patterns in bf16, and
            // the gradients accumulated across patterns in bf16: 1e-2 of each tensor's scale.
            // L is f32 from exact scores.
            if e[0] >= 1e-2 || e[1] >= 1e-3 || e[2..].iter().any(|x| *x >= 1e-2) {
                failures.push(format!("{arch} case {i}: {e:?}"));
            }
        }
    }
    assert!(
        failures.is_empty(),
        "dilated attention errors over tolerance:\n{}",
        failures.join("\n")
    );
}

fn bad<T>(r: Result<T, RuntimeError>) -> String {
    match r {
        Err(e @ (RuntimeError::BadOperand { .. } | RuntimeError::NoVariant { .. })) => {
            e.to_string()
        }
        Err(e) => panic!("expected a typed refusal, got {e}"),
        Ok(_) => panic!("expected a refusal"),
    }
}

#[test]
fn dilated_attention_refuses_bad_operands() {
    if !device::driver_present() {
        eprintln!("SKIP dilated_attention_refuses_bad_operands: no CUDA driver on this machine");
        return;
    }
    let dev = Device::open(0).unwrap();
    let pkg = dilated_package(&dev, archs_for(&dev)[0]);
    let t = |dtype, shape: &[usize]| DeviceTensor::empty(&dev, dtype, shape).unwrap();
    let q = t(DType::Bf16, &[1, 4, 64, 64]);
    let ok = DilatedOptions {
        patterns: vec![Pattern { w: 32, r: 1 }],
        ..Default::default()
    };
    let with = |patterns: Vec<Pattern>| DilatedOptions {
        patterns,
        ..ok.clone()
    };
    let msgs = [
        bad(dilated_attention_forward(
            &dev,
            &pkg,
            &q,
            &q,
            &t(DType::Bf16, &[1, 4, 63, 64]),
            &ok,
        )),
        bad(dilated_attention_forward(
            &dev,
            &pkg,
            &q,
            &q,
            &t(DType::F16, &[1, 4, 64, 64]),
            &ok,
        )),
        bad(dilated_attention_forward(
            &dev,
            &pkg,
            &t(DType::Bf16, &[4, 64, 64]),
            &q,
            &q,
            &ok,
        )),
        bad(dilated_attention_forward(
            &dev,
            &pkg,
            &q,
            &q,
            &q,
            &with(vec![]),
        )),
        bad(dilated_attention_forward(
            &dev,
            &pkg,
            &q,
            &q,
            &q,
            &with(vec![Pattern { w: 0, r: 1 }]),
        )),
        bad(dilated_attention_forward(
            &dev,
            &pkg,
            &q,
            &q,
            &q,
            &with(vec![Pattern { w: 8, r: 0 }]),
        )),
        {
            let q96 = t(DType::Bf16, &[1, 4, 64, 96]);
            bad(dilated_attention_forward(&dev, &pkg, &q96, &q96, &q96, &ok))
        },
    ];
    for (m, want) in msgs.iter().zip([
        "shape",
        "dtype",
        "(B, H, N, D)",
        "no (w, r)",
        "w = 0",
        "r = 0",
        "96",
    ]) {
        assert!(m.contains(want), "{m:?} should mention {want:?}");
    }
    // Backward with a forward result of the wrong shape is refused before any launch.
    let fwd = dilated_attention_forward(&dev, &pkg, &q, &q, &q, &ok).unwrap();
    let wrong = DilatedOutput {
        o: t(DType::Bf16, &[1, 4, 32, 64]),
        lse: fwd.lse,
    };
    let m = bad(dilated_attention_backward(
        &dev,
        &pkg,
        &q,
        &q,
        &q,
        &wrong,
        &q,
        &ok,
        GradMode::Exact,
    ));
    assert!(m.contains("o is"), "{m}");
}
