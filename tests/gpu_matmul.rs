//! dsl-examples/matmul.tsl on a GPU, through its package: fresh random bf16 inputs of several
//! shapes, ragged ones included, output poisoned first, compared with a float64 product of the
//! same (bf16-rounded) inputs; and `tessel run`'s own check, the Tile IR of matmul.tsl interpreted
//! on the same inputs, agrees too.

use rand::Rng;
use tessel_compiler::interp::{self, HostArg, HostTensor};
use tessel_runtime::format::{DType, Package};
use tessel_runtime::{device, Arg, Device, DeviceTensor, LoadedPackage};

include!("support/packages.rs");

/// dsl-examples/matmul.tsl (bf16, f32 accumulation) compiled for `arch`.
fn package(arch: &str) -> Package {
    example_package("dsl_matmul", "matmul.tsl", &[], &[], arch)
}

#[test]
fn matmul_matches_float64_on_ragged_shapes() {
    if !device::driver_present() {
        eprintln!("SKIP matmul_matches_float64_on_ragged_shapes: no CUDA driver on this machine");
        return;
    }
    let dev = Device::open(0).unwrap();
    let (major, minor) = dev.compute_capability().unwrap();
    let mut rng = rand::rng();
    println!(
        "{:<6} {:>5} {:>5} {:>5} {:>14} {:>14}",
        "arch", "M", "N", "K", "err/max|ref|", "vs interp"
    );
    for arch in ["sm_80", "sm_90a"] {
        if arch == "sm_90a" && (major, minor) != (9, 0) {
            continue;
        }
        let pkg = LoadedPackage::load(&dev, package(arch)).unwrap();
        for (m, n, k) in [
            (1, 1, 1),
            (64, 64, 16),
            (128, 256, 64),
            (300, 200, 130),
            (257, 129, 77),
            // K not a multiple of 8: rows are not 16-byte aligned, the element copy path.
            (517, 129, 77),
            (64, 1000, 1000),
            // K aligned to 8 but not N, and the reverse: each operand's vector path alone.
            (130, 90, 64),
            (70, 136, 41),
            (1000, 1000, 1000),
            (2048, 512, 4096),
            // Ragged in every extent with rows 16-byte aligned: the TMA path's edges, boxes past
            // M, N and K zero-filled by the hardware.
            (300, 200, 136),
            (257, 136, 72),
            (130, 88, 40),
        ] {
            let a: Vec<f64> = (0..m * k).map(|_| rng.random_range(-1.0..1.0)).collect();
            let b: Vec<f64> = (0..k * n).map(|_| rng.random_range(-1.0..1.0)).collect();
            let ta = DeviceTensor::from_f64(&dev, DType::Bf16, &[m, k], &a).unwrap();
            let tb = DeviceTensor::from_f64(&dev, DType::Bf16, &[k, n], &b).unwrap();
            let tc = DeviceTensor::poisoned(&dev, DType::Bf16, &[m, n]).unwrap();
            let (a, b) = (ta.to_f64(&dev).unwrap(), tb.to_f64(&dev).unwrap());
            let launched = pkg.launch(
                &dev,
                "matmul",
                &[Arg::Tensor(&ta), Arg::Tensor(&tb), Arg::Tensor(&tc)],
            );
            // On sm_90a both operands go by TMA, whose tensor maps need rows 16 bytes apart
            // (K and N multiples of 8): any other shape is refused before launch, typed, never
            // run on another path.
            if arch == "sm_90a" && (k % 8 != 0 || n % 8 != 0) {
                let e = launched.expect_err("a tensor map TMA cannot encode was launched");
                assert!(
                    matches!(
                        &e,
                        tessel_runtime::RuntimeError::Launch {
                            source: tessel_runtime::format::LaunchError::TensorMap { .. },
                            ..
                        }
                    ),
                    "{arch} {m}x{n}x{k}: {e}"
                );
                println!("{arch:<6} {m:>5} {n:>5} {k:>5} refused: {e}");
                continue;
            }
            launched.unwrap();
            let got = tc.to_f64(&dev).unwrap();
            let want = tessel_reference::matmul(&a, &b, m, n, k);
            assert!(
                got.iter().all(|x| x.is_finite()),
                "{arch} {m}x{n}x{k}: an element was not written"
            );
            let scale = want.iter().fold(0.0f64, |s, x| s.max(x.abs()));
            let err = got
                .iter()
                .zip(&want)
                .map(|(g, w)| (g - w).abs())
                .fold(0.0, f64::max)
                / scale;
            // bf16 output: 2^-8 relative rounding of each element, against the largest.
            assert!(err < 1e-2, "{arch} {m}x{n}x{k}: {err}");
            // The interpreter's run of the package's Tile IR on the same inputs (small shapes).
            let vs_interp = if m * n * k <= 4_000_000 {
                let (entry, _) = pkg.package().kernel("matmul").unwrap();
                let ir =
                    tessel_compiler::tir::parse_kernel(entry.tile_ir.as_ref().unwrap()).unwrap();
                let mut args = vec![
                    HostArg::Tensor(HostTensor::new(
                        tessel_compiler::tir::DType::Bf16,
                        vec![m, k],
                        a.clone(),
                    )),
                    HostArg::Tensor(HostTensor::new(
                        tessel_compiler::tir::DType::Bf16,
                        vec![k, n],
                        b.clone(),
                    )),
                    HostArg::Tensor(HostTensor::poisoned(
                        tessel_compiler::tir::DType::Bf16,
                        vec![m, n],
                    )),
                ];
                interp::run(&ir, &mut args).unwrap();
                let HostArg::Tensor(c) = &args[2] else {
                    unreachable!()
                };
                let e = got
                    .iter()
                    .zip(&c.data)
                    .map(|(g, w)| (g - w).abs())
                    .fold(0.0, f64::max)
                    / scale;
                assert!(e < 1e-2, "{arch} {m}x{n}x{k}: GPU vs interpreter {e}");
                format!("{e:.2e}")
            } else {
                "-".into()
            };
            println!("{arch:<6} {m:>5} {n:>5} {k:>5} {err:>14.2e} {vs_interp:>14}");
        }
    }
}
