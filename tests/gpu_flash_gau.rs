//! FLASH mixed-chunk attention with GAU's gate through the runtime's operator
//! (`tessel_runtime::flash_gau`), against the dense float64 definition of
//! `tessel_reference::flash_gau`: ragged lengths over one and several chunks of 256
//! (N ∈ {1, 255, 256, 600, 2000}), E ∈ {64, 128}, causal and not; the backward's dz, dγ, dβ, dv
//! and du against the reference's gradients (checked against finite differences); and bad
//! operands refused before launch.

use tessel_reference::flash_gau::{self as reference, Problem};
use tessel_runtime::flash_gau::{flash_gau_backward, flash_gau_forward};
use tessel_runtime::format::DType;
use tessel_runtime::{device, Device, DeviceTensor, LoadedPackage, RuntimeError};

include!("support/packages.rs");

fn open() -> Option<Device> {
    if !device::driver_present() {
        eprintln!("SKIP gpu_flash_gau: no CUDA driver on this machine");
        return None;
    }
    Some(Device::open(0).unwrap())
}

fn upload(dev: &Device, dtype: DType, shape: &[usize], data: &[f64]) -> (DeviceTensor, Vec<f64>) {
    let t = DeviceTensor::from_f64(dev, dtype, shape, data).unwrap();
    let host = t.to_f64(dev).unwrap();
    (t, host)
}

#[test]
fn flash_gau_forward_matches_the_dense_definition() {
    let Some(dev) = open() else { return };
    let s = 128;
    let mut failures = Vec::new();
    for arch in archs_for(&dev) {
        let p = operator_package(&tessel_runtime::spec::flash_gau::SPEC, arch);
        let pkg = LoadedPackage::load(&dev, p).unwrap();
        for e in [64, 128] {
            for n in [1, 255, 256, 600, 2000] {
                for causal in [false, true] {
                    let b = 2;
                    let prob = Problem {
                        b,
                        n,
                        s,
                        e,
                        g: 256,
                        causal,
                    };
                    // z of standard deviation 3: relu²(q·k / 256) comparable to the linear part.
                    let zd: Vec<f64> = randn(b * n * s).iter().map(|x| 3.0 * x).collect();
                    let (z, hz) = upload(&dev, DType::Bf16, &[b, n, s], &zd);
                    let gd: Vec<f64> = randn(4 * s).iter().map(|x| 1.0 + 0.25 * x).collect();
                    let (gamma, hg) = upload(&dev, DType::F32, &[4, s], &gd);
                    let bd: Vec<f64> = randn(4 * s).iter().map(|x| 0.1 * x).collect();
                    let (beta, hb) = upload(&dev, DType::F32, &[4, s], &bd);
                    let (v, hv) = upload(&dev, DType::Bf16, &[b, n, e], &randn(b * n * e));
                    let (u, hu) = upload(&dev, DType::Bf16, &[b, n, e], &randn(b * n * e));
                    let o = flash_gau_forward(&dev, &pkg, &z, &gamma, &beta, &v, &u, causal)
                        .unwrap()
                        .to_f64(&dev)
                        .unwrap();
                    let want = reference::forward(&prob, &hz, &hg, &hb, &hv, &hu);
                    let err = scaled_err(&o, &want);
                    println!("{arch:<7} N={n:>5} E={e:>3} causal={causal:<5} {err:.2e}");
                    // bf16 inputs, heads and relu² weights rounded to bf16 for the matrix unit.
                    if err.is_nan() || err >= 1e-2 {
                        failures.push(format!("{arch} N={n} E={e} causal={causal}: {err:.2e}"));
                    }
                }
            }
        }
    }
    assert!(
        failures.is_empty(),
        "over tolerance:\n{}",
        failures.join("\n")
    );
}

#[test]
fn bad_operands_are_refused_before_launch() {
    let Some(dev) = open() else { return };
    let p = operator_package(&tessel_runtime::spec::flash_gau::SPEC, archs_for(&dev)[0]);
    let pkg = LoadedPackage::load(&dev, p).unwrap();
    let t = |dtype, shape: &[usize]| {
        let n = shape.iter().product();
        DeviceTensor::from_f64(&dev, dtype, shape, &vec![0.5; n]).unwrap()
    };
    let (z, v) = (t(DType::Bf16, &[1, 10, 128]), t(DType::Bf16, &[1, 10, 64]));
    let (gamma, beta) = (t(DType::F32, &[4, 128]), t(DType::F32, &[4, 128]));
    let refused = |r: Result<DeviceTensor, RuntimeError>, what: &str| match r {
        Err(RuntimeError::BadOperand { reason, .. }) => assert!(reason.contains(what), "{reason}"),
        other => panic!("expected a refusal naming {what}, got {other:?}"),
    };
    let z64 = t(DType::Bf16, &[1, 10, 64]);
    refused(
        flash_gau_forward(&dev, &pkg, &z64, &gamma, &beta, &v, &v, false),
        "width S is 64",
    );
    let v32 = t(DType::Bf16, &[1, 10, 32]);
    refused(
        flash_gau_forward(&dev, &pkg, &z, &gamma, &beta, &v32, &v32, false),
        "64 or 128",
    );
    let g16 = t(DType::Bf16, &[4, 128]);
    refused(
        flash_gau_forward(&dev, &pkg, &z, &g16, &beta, &v, &v, true),
        "gamma is bf16",
    );
    let u_short = t(DType::Bf16, &[1, 9, 64]);
    refused(
        flash_gau_forward(&dev, &pkg, &z, &gamma, &beta, &v, &u_short, true),
        "u is",
    );
}

#[test]
fn flash_gau_backward_matches_the_dense_gradients() {
    let Some(dev) = open() else { return };
    let s = 128;
    let mut failures = Vec::new();
    for arch in archs_for(&dev) {
        let p = operator_package(&tessel_runtime::spec::flash_gau::SPEC, arch);
        let pkg = LoadedPackage::load(&dev, p).unwrap();
        for (e, n) in [(64, 1), (64, 300), (128, 600), (128, 1000)] {
            for causal in [false, true] {
                let b = 2;
                let prob = Problem {
                    b,
                    n,
                    s,
                    e,
                    g: 256,
                    causal,
                };
                let zd: Vec<f64> = randn(b * n * s).iter().map(|x| 3.0 * x).collect();
                let (z, hz) = upload(&dev, DType::Bf16, &[b, n, s], &zd);
                let gd: Vec<f64> = randn(4 * s).iter().map(|x| 1.0 + 0.25 * x).collect();
                let (gamma, hg) = upload(&dev, DType::F32, &[4, s], &gd);
                let bd: Vec<f64> = randn(4 * s).iter().map(|x| 0.1 * x).collect();
                let (beta, hb) = upload(&dev, DType::F32, &[4, s], &bd);
                let (v, hv) = upload(&dev, DType::Bf16, &[b, n, e], &randn(b * n * e));
                let (u, hu) = upload(&dev, DType::Bf16, &[b, n, e], &randn(b * n * e));
                let (d_o, hdo) = upload(&dev, DType::Bf16, &[b, n, e], &randn(b * n * e));
                let gr = flash_gau_backward(&dev, &pkg, [&z, &gamma, &beta, &v, &u], &d_o, causal)
                    .unwrap();
                let want = reference::backward(&prob, &hz, &hg, &hb, &hv, &hu, &hdo);
                let errs: Vec<f64> = [
                    (&gr.dz, &want.dz),
                    (&gr.dgamma, &want.dgamma),
                    (&gr.dbeta, &want.dbeta),
                    (&gr.dv, &want.dv),
                    (&gr.du, &want.du),
                ]
                .iter()
                .map(|(t, w)| scaled_err(&t.to_f64(&dev).unwrap(), w))
                .collect();
                let shown: Vec<String> = errs.iter().map(|x| format!("{x:.2e}")).collect();
                println!(
                    "{arch:<7} N={n:>5} E={e:>3} causal={causal:<5} dz dγ dβ dv du: {}",
                    shown.join(" ")
                );
                // bf16 operands of every product; f32 head gradients and parameter sums.
                if errs.iter().any(|x| x.is_nan() || *x >= 2e-2) {
                    failures.push(format!("{arch} N={n} E={e} causal={causal}: {errs:?}"));
                }
            }
        }
    }
    assert!(
        failures.is_empty(),
        "over tolerance:\n{}",
        failures.join("\n")
    );
}
