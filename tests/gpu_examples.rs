//! The example kernels compiled from .tsl source (dsl-examples/), on a GPU, against float64
//! references written here from the math (not from the kernels, not from the interpreter): row
//! softmax, the elementwise fma and the gated activation (matmul.tsl has its own: gpu_matmul).
//! Fresh random inputs every run, shapes ragged against every tile size, outputs poisoned (NaN)
//! before each launch so an element a kernel fails to write fails the check.

use tessel_runtime::format::DType;
use tessel_runtime::{device, Arg, Device, DeviceTensor, LoadedPackage};

include!("support/packages.rs");

fn open() -> Option<Device> {
    if !device::driver_present() {
        eprintln!("SKIP gpu_examples: no CUDA driver on this machine");
        return None;
    }
    Some(Device::open(0).unwrap())
}

fn upload(dev: &Device, dtype: DType, shape: &[usize], data: &[f64]) -> (DeviceTensor, Vec<f64>) {
    let t = DeviceTensor::from_f64(dev, dtype, shape, data).unwrap();
    // The reference sees exactly the (rounded) values the kernel reads.
    let rounded = t.to_f64(dev).unwrap();
    (t, rounded)
}

#[test]
fn softmax_tsl_matches_float64() {
    let Some(dev) = open() else { return };
    println!("{:<7} {:>5} {:>5} {:>12}", "arch", "M", "N", "max rel err");
    for arch in archs_for(&dev) {
        let pkg = LoadedPackage::load(
            &dev,
            example_package("dsl_softmax", "softmax.tsl", &[], &[], arch),
        )
        .unwrap();
        for (m, n) in [
            (1, 1),
            (3, 1),
            (37, 1000),
            (8, 1024),
            (1001, 517),
            (4096, 1000),
        ] {
            let x: Vec<f64> = randn(m * n).iter().map(|v| 4.0 * v).collect();
            let (tx, x) = upload(&dev, DType::F32, &[m, n], &x);
            let ty = DeviceTensor::poisoned(&dev, DType::F32, &[m, n]).unwrap();
            pkg.launch(&dev, "softmax", &[Arg::Tensor(&tx), Arg::Tensor(&ty)])
                .unwrap();
            let got = ty.to_f64(&dev).unwrap();
            let mut err = 0.0f64;
            for r in 0..m {
                let row = &x[r * n..(r + 1) * n];
                let mx = row.iter().copied().fold(f64::NEG_INFINITY, f64::max);
                let sum: f64 = row.iter().map(|v| (v - mx).exp()).sum();
                for (c, v) in row.iter().enumerate() {
                    let want = (v - mx).exp() / sum;
                    let g = got[r * n + c];
                    let e = if g.is_nan() {
                        f64::INFINITY
                    } else {
                        (g - want).abs() / want
                    };
                    err = err.max(e);
                }
            }
            println!("{arch:<7} {m:>5} {n:>5} {err:>12.2e}");
            // f32 arithmetic with the hardware's exp2 approximation: a few ulp per element.
            assert!(err < 1e-5, "{arch} softmax {m}x{n}: {err}");
        }
    }
}

#[test]
fn elementwise_tsl_matches_float64() {
    let Some(dev) = open() else { return };
    println!(
        "{:<7} {:<5} {:>9} {:>14}",
        "arch", "dtype", "N", "err/bound"
    );
    for arch in archs_for(&dev) {
        for (dtype, name, ulp) in [
            (DType::F32, "f32", 2f64.powi(-23)),
            (DType::Bf16, "bf16", 2f64.powi(-8)),
        ] {
            let pkg = LoadedPackage::load(
                &dev,
                example_package(
                    &format!("dsl_fma_{name}"),
                    "elementwise.tsl",
                    &[("T", name)],
                    &[],
                    arch,
                ),
            )
            .unwrap();
            for n in [1usize, 1023, 1_000_003, 1 << 22] {
                let (ta, a) = upload(&dev, dtype, &[n], &randn(n));
                let (tb, b) = upload(&dev, dtype, &[n], &randn(n));
                let (tc, c) = upload(&dev, dtype, &[n], &randn(n));
                pkg.launch(
                    &dev,
                    "fma",
                    &[Arg::Tensor(&ta), Arg::Tensor(&tb), Arg::Tensor(&tc)],
                )
                .unwrap();
                let got = tc.to_f64(&dev).unwrap();
                // One rounding of the f32 product-sum and one to the output type, at most.
                let worst = (0..n)
                    .map(|i| {
                        let bound = 2.0 * ulp * (a[i] * b[i]).abs().max(c[i].abs()) + 1e-30;
                        (got[i] - (a[i] * b[i] + c[i])).abs() / bound
                    })
                    .fold(0.0, f64::max);
                println!("{arch:<7} {name:<5} {n:>9} {worst:>14.3}");
                assert!(
                    worst <= 1.0,
                    "{arch} fma {name} N={n}: {worst} of the rounding bound"
                );
            }
        }
    }
}

#[test]
fn gated_silu_tsl_matches_float64() {
    let Some(dev) = open() else { return };
    println!("{:<7} {:>9} {:>12}", "arch", "N", "max rel err");
    for arch in archs_for(&dev) {
        let pkg = LoadedPackage::load(
            &dev,
            example_package("dsl_gated_silu", "activation.tsl", &[], &[], arch),
        )
        .unwrap();
        for n in [1usize, 2, 129, 100_001] {
            let limit = 0.5;
            let (tx, x) = upload(&dev, DType::Bf16, &[n], &randn(n));
            let (ty, y0) = upload(&dev, DType::Bf16, &[n], &randn(n));
            pkg.launch(
                &dev,
                "gated_silu",
                &[Arg::Tensor(&tx), Arg::Tensor(&ty), Arg::Scalar(limit)],
            )
            .unwrap();
            let got = ty.to_f64(&dev).unwrap();
            let mut err = 0.0f64;
            for i in 0..n {
                let v = x[i];
                let sigmoid = 1.0 / (1.0 + (-v).exp());
                let want = if i == n - 1 {
                    y0[i]
                } else if i % 2 == 0 && v < limit {
                    v * sigmoid + v.exp() * sigmoid
                } else {
                    v.abs().sqrt()
                };
                let e = if got[i].is_nan() {
                    f64::INFINITY
                } else {
                    (got[i] - want).abs() / want.abs().max(1e-3)
                };
                err = err.max(e);
            }
            println!("{arch:<7} {n:>9} {err:>12.2e}");
            // bf16 output: 2^-8 relative, plus the approximate transcendental functions.
            assert!(err < 1e-2, "{arch} gated_silu N={n}: {err}");
        }
    }
}
