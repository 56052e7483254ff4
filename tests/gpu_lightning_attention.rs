//! Lightning Attention from dsl-examples/lightning_attention.tsl through the runtime's operators
//! (`tessel_runtime::lightning`), against the float64 references of `tessel_reference::linear`
//! (the O(N²) definition, and the robust recurrence for the longest sequences): forward and the
//! three gradients for N ∈ {1, 63, 64, 1000, 8192} (forward also at 65536), head dims 64 and 128
//! and a value dim different from the key dim; TransNormerLLM's LRPE-d slopes (first and last
//! layer) and zero decay; prefill followed by decode equals the forward of the whole sequence;
//! and 100 000 decode steps with λ = 0.9999 stay finite and on the float64 recurrence.
//!
//! With TESSEL_DUMP_DIR set, the forward cases of the first package (inputs, slopes, tessel's O and
//! the float64 reference) are also written there as .npy files with cases.json, for
//! bench/fla_check.py: the same inputs through fla's `chunk_gla` with constant gates.

use tessel_models::transnormer::decay::{layer_slopes, Schedule};
use tessel_reference::linear::{self as reference, Problem, Recurrence};
use tessel_runtime::format::DType;
use tessel_runtime::lightning::{
    lightning_attention_backward_into, lightning_attention_decode, lightning_attention_forward,
    lightning_attention_forward_into, lightning_attention_prefill, LightningGrads,
    LightningOptions,
};
use tessel_runtime::{device, Device, DeviceTensor, LoadedPackage};

include!("support/packages.rs");

fn package(dev: &Device, arch: &str) -> LoadedPackage {
    let p = operator_package(&tessel_runtime::spec::lightning::SPEC, arch);
    LoadedPackage::load(dev, p).unwrap()
}

fn open() -> Option<Device> {
    if !device::driver_present() {
        eprintln!("SKIP gpu_lightning_attention: no CUDA driver on this machine");
        return None;
    }
    Some(Device::open(0).unwrap())
}

/// A bf16 tensor of fresh standard-normal values scaled by `scale`, and the values it holds.
fn upload(dev: &Device, shape: &[usize], scale: f64) -> (DeviceTensor, Vec<f64>) {
    let n = shape.iter().product();
    let data: Vec<f64> = randn(n).iter().map(|x| x * scale).collect();
    let t = DeviceTensor::from_f64(dev, DType::Bf16, shape, &data).unwrap();
    let host = t.to_f64(dev).unwrap();
    (t, host)
}

struct Case {
    b: usize,
    h: usize,
    n: usize,
    d: usize,
    e: usize,
    /// "lrpe-first", "lrpe-last" or "none".
    decay: &'static str,
    grads: bool,
    /// Sequence segments; `None` is the runtime's choice (1 up to N = 64, 4 at N = 1000 and
    /// 32 at 8192 for B·H = 2..4, 132 at 65536).
    segments: Option<usize>,
}

fn slopes_for(decay: &str, h: usize) -> Vec<f64> {
    match decay {
        "lrpe-first" => layer_slopes(Schedule::Released, h, 0, 24),
        "lrpe-last" => layer_slopes(Schedule::Released, h, 23, 24),
        _ => vec![0.0; h],
    }
}

#[test]
fn lightning_attention_matches_float64() {
    let Some(dev) = open() else { return };
    let mut cases = Vec::new();
    for (d, e) in [(64, 64), (128, 128), (64, 128)] {
        for n in [1, 63, 64, 1000, 8192] {
            let (b, h) = if n >= 8192 { (1, 2) } else { (2, 2) };
            cases.push(Case {
                b,
                h,
                n,
                d,
                e,
                decay: "lrpe-first",
                grads: true,
                segments: None,
            });
        }
        // One segment walking all 128 blocks; 7 segments of 3 blocks over 16 (the last empty).
        for (n, segments) in [(8192, 1), (1000, 7)] {
            cases.push(Case {
                b: 1,
                h: 2,
                n,
                d,
                e,
                decay: "lrpe-first",
                grads: true,
                segments: Some(segments),
            });
        }
        cases.push(Case {
            b: 1,
            h: 2,
            n: 65536,
            d,
            e,
            decay: "lrpe-first",
            grads: false,
            segments: None,
        });
        cases.push(Case {
            b: 1,
            h: 4,
            n: 1000,
            d,
            e,
            decay: "lrpe-last",
            grads: true,
            segments: None,
        });
        cases.push(Case {
            b: 1,
            h: 2,
            n: 300,
            d,
            e,
            decay: "none",
            grads: true,
            segments: None,
        });
    }
    println!(
        "{:<7} {:>2} {:>2} {:>6} {:>4} {:>4} {:<10} {:>4} {:>9} {:>9} {:>9} {:>9}",
        "arch", "B", "H", "N", "D", "E", "decay", "seg", "O", "dQ", "dK", "dV"
    );
    let mut failures = Vec::new();
    let dump_dir = std::env::var_os("TESSEL_DUMP_DIR").map(std::path::PathBuf::from);
    for arch in archs_for(&dev) {
        let pkg = package(&dev, arch);
        let mut runs = Vec::new();
        for c in &cases {
            // Keys scaled by 1/√D keep q·k O(1), as the model's normalised inputs do.
            let (q, qh) = upload(&dev, &[c.b, c.h, c.n, c.d], 1.0);
            let (k, kh) = upload(&dev, &[c.b, c.h, c.n, c.d], 1.0 / (c.d as f64).sqrt());
            let (v, vh) = upload(&dev, &[c.b, c.h, c.n, c.e], 1.0);
            let (d_o, doh) = upload(&dev, &[c.b, c.h, c.n, c.e], 1.0);
            let slopes = slopes_for(c.decay, c.h);
            let ts = DeviceTensor::from_f64(&dev, DType::F32, &[c.h], &slopes).unwrap();
            let slopes = ts.to_f64(&dev).unwrap();
            // Every output poisoned (NaN) before the launch that must overwrite it.
            let poisoned =
                |shape: &[usize]| DeviceTensor::poisoned(&dev, DType::Bf16, shape).unwrap();
            let o = poisoned(&v.shape);
            let opts = LightningOptions {
                segments: c.segments,
            };
            lightning_attention_forward_into(&dev, &pkg, &q, &k, &v, &ts, &o, &opts).unwrap();
            let grads = c.grads.then(|| {
                let g = LightningGrads {
                    dq: poisoned(&q.shape),
                    dk: poisoned(&k.shape),
                    dv: poisoned(&v.shape),
                };
                lightning_attention_backward_into(&dev, &pkg, &q, &k, &v, &ts, &d_o, &g, &opts)
                    .unwrap();
                [
                    g.dq.to_f64(&dev).unwrap(),
                    g.dk.to_f64(&dev).unwrap(),
                    g.dv.to_f64(&dev).unwrap(),
                ]
            });
            runs.push((o.to_f64(&dev).unwrap(), grads, [qh, kh, vh, doh], slopes));
        }
        // References on every core at once.
        let checked: Vec<([f64; 4], Vec<f64>)> = std::thread::scope(|s| {
            let handles: Vec<_> = cases
                .iter()
                .zip(&runs)
                .map(|(c, (o, grads, [q, k, v, d_o], slopes))| {
                    s.spawn(move || {
                        let p = Problem::new(c.b, c.h, c.n, c.d, c.e);
                        let want = if c.n > 8192 {
                            Recurrence::new(c.b, c.h, c.d, c.e).run(&p, q, k, v, slopes)
                        } else {
                            reference::forward(&p, q, k, v, slopes)
                        };
                        let mut e = [scaled_err(o, &want), f64::NAN, f64::NAN, f64::NAN];
                        if let Some([dq, dk, dv]) = grads {
                            let (wq, wk, wv) = reference::backward(&p, q, k, v, slopes, d_o);
                            e[1] = scaled_err(dq, &wq);
                            e[2] = scaled_err(dk, &wk);
                            e[3] = scaled_err(dv, &wv);
                        }
                        (e, want)
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        if let (Some(dir), true) = (&dump_dir, arch == archs_for(&dev)[0]) {
            std::fs::create_dir_all(dir).unwrap();
            let mut manifest = Vec::new();
            for (i, ((c, (o, _, [q, k, v, _], slopes)), (_, want))) in
                cases.iter().zip(&runs).zip(&checked).enumerate()
            {
                let (qk, vo) = ([c.b, c.h, c.n, c.d], [c.b, c.h, c.n, c.e]);
                for (name, shape, values) in [
                    ("q", &qk[..], q),
                    ("k", &qk[..], k),
                    ("v", &vo[..], v),
                    ("slopes", &[c.h][..], slopes),
                    ("o", &vo[..], o),
                    ("ref", &vo[..], want),
                ] {
                    write_npy(&dir.join(format!("case{i}_{name}.npy")), shape, values);
                }
                manifest.push(format!(
                    r#"{{"case": {i}, "b": {}, "h": {}, "n": {}, "d": {}, "e": {}, "decay": "{}"}}"#,
                    c.b, c.h, c.n, c.d, c.e, c.decay
                ));
            }
            std::fs::write(
                dir.join("cases.json"),
                format!("[{}]\n", manifest.join(",\n")),
            )
            .unwrap();
        }
        for (c, (e, _)) in cases.iter().zip(&checked) {
            println!(
                "{arch:<7} {:>2} {:>2} {:>6} {:>4} {:>4} {:<10} {:>4} {:>9.2e} {:>9.2e} {:>9.2e} {:>9.2e}",
                c.b,
                c.h,
                c.n,
                c.d,
                c.e,
                c.decay,
                c.segments.map_or("auto".to_string(), |s| s.to_string()),
                e[0],
                e[1],
                e[2],
                e[3]
            );
            // bf16 inputs and outputs, f32 state and accumulation.
            if e.iter().any(|x| !x.is_nan() && *x >= 1e-2) || e[0].is_nan() {
                failures.push(format!(
                    "{arch} N={} D={} E={} {}: {e:?}",
                    c.n, c.d, c.e, c.decay
                ));
            }
        }
    }
    assert!(
        failures.is_empty(),
        "over tolerance:\n{}",
        failures.join("\n")
    );
}

/// Prefill N0 tokens, then decode T more one at a time: the decoded outputs equal the last T rows
/// of the forward over all N0 + T tokens, and the float64 recurrence.
#[test]
fn prefill_then_decode_equals_the_full_forward() {
    let Some(dev) = open() else { return };
    let (b, h, n0, t) = (2, 3, 1000, 40);
    println!(
        "{:<7} {:>4} {:>4} {:>12} {:>12}",
        "arch", "D", "E", "vs forward", "vs float64"
    );
    for arch in archs_for(&dev) {
        let pkg = package(&dev, arch);
        for (d, e) in [(64, 64), (128, 128), (64, 128)] {
            let n = n0 + t;
            let (q, qh) = upload(&dev, &[b, h, n, d], 1.0);
            let (k, kh) = upload(&dev, &[b, h, n, d], 1.0 / (d as f64).sqrt());
            let (v, vh) = upload(&dev, &[b, h, n, e], 1.0);
            let slopes = layer_slopes(Schedule::Released, h, 0, 24);
            let ts = DeviceTensor::from_f64(&dev, DType::F32, &[h], &slopes).unwrap();
            let slopes = ts.to_f64(&dev).unwrap();
            let full = lightning_attention_forward(&dev, &pkg, &q, &k, &v, &ts).unwrap();
            let full = full.to_f64(&dev).unwrap();
            // The first n0 tokens as their own tensors.
            let head = |x: &[f64], w: usize, len: usize, off: usize| -> Vec<f64> {
                (0..b * h)
                    .flat_map(|bh| x[(bh * n + off) * w..][..len * w].to_vec())
                    .collect()
            };
            let up = |data: Vec<f64>, shape: &[usize]| {
                DeviceTensor::from_f64(&dev, DType::Bf16, shape, &data).unwrap()
            };
            let pre = lightning_attention_prefill(
                &dev,
                &pkg,
                &up(head(&qh, d, n0, 0), &[b, h, n0, d]),
                &up(head(&kh, d, n0, 0), &[b, h, n0, d]),
                &up(head(&vh, e, n0, 0), &[b, h, n0, e]),
                &ts,
            )
            .unwrap();
            let mut state = pre.state;
            let p = Problem::new(b, h, n, d, e);
            let want = reference::forward(&p, &qh, &kh, &vh, &slopes);
            let (mut vs_fwd, mut vs_ref) = (0.0f64, 0.0f64);
            let scale = want.iter().fold(0.0f64, |s, x| s.max(x.abs()));
            for step in 0..t {
                let tok = |x: &[f64], w: usize| head(x, w, 1, n0 + step);
                let o = lightning_attention_decode(
                    &dev,
                    &pkg,
                    &up(tok(&qh, d), &[b, h, d]),
                    &up(tok(&kh, d), &[b, h, d]),
                    &up(tok(&vh, e), &[b, h, e]),
                    &ts,
                    &mut state,
                )
                .unwrap();
                let o = o.to_f64(&dev).unwrap();
                let rows_full = tok(&full, e);
                let rows_ref = tok(&want, e);
                for i in 0..o.len() {
                    vs_fwd = vs_fwd.max((o[i] - rows_full[i]).abs() / scale);
                    vs_ref = vs_ref.max((o[i] - rows_ref[i]).abs() / scale);
                }
            }
            println!("{arch:<7} {d:>4} {e:>4} {vs_fwd:>12.2e} {vs_ref:>12.2e}");
            assert!(
                vs_fwd < 1e-2 && vs_ref < 1e-2,
                "{arch} D={d} E={e}: {vs_fwd} {vs_ref}"
            );
        }
    }
}

/// 100 000 decode steps at λ = e^{−1e−4} (the state's effective memory is ~10 000 tokens): the
/// GPU's outputs stay finite and on the float64 recurrence, checked every 10 000 steps.
#[test]
fn long_decode_is_stable() {
    let Some(dev) = open() else { return };
    let arch = archs_for(&dev)[0];
    let pkg = package(&dev, arch);
    let (b, h, d, e) = (1, 2, 64, 64);
    let slopes = vec![1e-4, 1e-5];
    let ts = DeviceTensor::from_f64(&dev, DType::F32, &[h], &slopes).unwrap();
    let slopes = ts.to_f64(&dev).unwrap();
    let mut state =
        DeviceTensor::from_f64(&dev, DType::F32, &[b, h, d, e], &vec![0.0; b * h * d * e]).unwrap();
    let mut reference = Recurrence::new(b, h, d, e);
    let mut worst = 0.0f64;
    println!("{:>7} {:>12} {:>12}", "step", "max|o|", "err/max|o|");
    for step in 1..=100_000 {
        let (q, qh) = upload(&dev, &[b, h, d], 1.0);
        let (k, kh) = upload(&dev, &[b, h, d], 1.0 / (d as f64).sqrt());
        let (v, vh) = upload(&dev, &[b, h, e], 1.0);
        let o = lightning_attention_decode(&dev, &pkg, &q, &k, &v, &ts, &mut state).unwrap();
        let want = reference.step(&qh, &kh, &vh, &slopes);
        if step % 10_000 == 0 {
            let got = o.to_f64(&dev).unwrap();
            assert!(
                got.iter().all(|x| x.is_finite()),
                "step {step}: non-finite output"
            );
            let err = scaled_err(&got, &want);
            let scale = want.iter().fold(0.0f64, |s, x| s.max(x.abs()));
            println!("{step:>7} {scale:>12.3e} {err:>12.2e}");
            worst = worst.max(err);
        }
    }
    let s = state.to_f64(&dev).unwrap();
    let state_err = scaled_err(&s, &reference.state);
    println!("final state err/max|S|: {state_err:.2e}");
    // f32 state over 100k updates: drift would show as a growing error, overflow as inf.
    assert!(
        worst < 1e-2 && state_err < 1e-3,
        "drift: outputs {worst}, state {state_err}"
    );
}
