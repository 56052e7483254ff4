//! Strided tensors on the GPU through the runtime: heads of [B, N, H, D] storage passed as
//! strided views (`DeviceTensor::strided_view`), every r-th row gathered (dsl-examples/strided.tsl
//! `gather_rows`) and dilated scores from two strided bf16 heads (`dilated_scores`, whose
//! operands move by cp.async), against references computed here; a view that breaks a declared
//! stride is refused before launch.
//!
//! Without a CUDA driver each test prints why it skips. On the GPU machine the packages come from
//! `$TESSEL_KERNEL_DIR/dsl_<kernel>.<arch>.tpkg` (as `tessel demo` builds them).

use rand::Rng;
use tessel_runtime::format::{DType, LaunchError, Package};
use tessel_runtime::{device, Arg, Device, DeviceTensor, LoadedPackage, RuntimeError};

fn skip(test: &str) -> bool {
    if !device::driver_present() {
        eprintln!("SKIP {test}: no CUDA driver on this machine");
        return true;
    }
    false
}

include!("support/packages.rs");

fn package(kernel: &str, arch: &str) -> Package {
    example_package(&format!("dsl_{kernel}"), "strided.tsl", &[], &[], arch)
}

fn arch_for(dev: &Device) -> &'static str {
    let (major, minor) = dev.compute_capability().unwrap();
    tessel_runtime::format::Target::best_for(major * 10 + minor)
        .expect("a GPU tessel targets")
        .name
}

/// Multiples of 1/64 in [-2, 2]: exact in bf16.
fn random(n: usize) -> Vec<f64> {
    let mut rng = rand::rng();
    (0..n)
        .map(|_| rng.random_range(-128..128) as f64 / 64.0)
        .collect()
}

#[test]
fn gather_rows_of_a_strided_head() {
    if skip("gather_rows_of_a_strided_head") {
        return;
    }
    let dev = Device::open(0).unwrap();
    let pkg = LoadedPackage::load(&dev, package("gather_rows", arch_for(&dev))).unwrap();
    let (b, n, heads, h, d, m) = (2usize, 1000usize, 4usize, 2usize, 64usize, 300usize);
    let storage = random(b * n * heads * d);
    let x = DeviceTensor::from_f64(&dev, DType::F32, &[b, n, heads, d], &storage).unwrap();
    let shape = [b, n, d];
    let strides = [n * heads * d, heads * d, 1];
    for (r, s0) in [(3i64, 5i64), (1, 0), (0, 2), (7, 999)] {
        let view = x
            .strided_view(&dev, h * d * 4, DType::F32, &shape, &strides)
            .unwrap();
        let y = DeviceTensor::poisoned(&dev, DType::F32, &[b, m, d]).unwrap();
        pkg.launch(
            &dev,
            "gather_rows",
            &[
                Arg::View(view),
                Arg::Tensor(&y),
                Arg::Scalar(r as f64),
                Arg::Scalar(s0 as f64),
            ],
        )
        .unwrap();
        let got = y.to_f64(&dev).unwrap();
        for bi in 0..b {
            for i in 0..m {
                let row = s0 + i as i64 * r;
                for j in 0..d {
                    let want = if r > 0 && (0..n as i64).contains(&row) {
                        storage[((bi * n + row as usize) * heads + h) * d + j]
                    } else {
                        -1.0
                    };
                    assert_eq!(
                        got[(bi * m + i) * d + j],
                        want,
                        "r {r} s0 {s0} b {bi} ({i}, {j})"
                    );
                }
            }
        }
    }
    // A last stride of 2 where the kernel declares 1: refused before anything launches.
    let bad = [n * heads * d, heads * d, 2];
    let y = DeviceTensor::poisoned(&dev, DType::F32, &[b, m, d]).unwrap();
    let view = x.strided_view(&dev, 0, DType::F32, &shape, &bad).unwrap();
    let e = pkg
        .launch(
            &dev,
            "gather_rows",
            &[
                Arg::View(view),
                Arg::Tensor(&y),
                Arg::Scalar(1.0),
                Arg::Scalar(0.0),
            ],
        )
        .unwrap_err();
    assert!(
        matches!(
            e,
            RuntimeError::Launch {
                source: LaunchError::FixedStride { axis: 2, .. },
                ..
            }
        ),
        "{e}"
    );
}

#[test]
fn dilated_scores_from_strided_bf16_heads() {
    if skip("dilated_scores_from_strided_bf16_heads") {
        return;
    }
    let dev = Device::open(0).unwrap();
    let pkg = LoadedPackage::load(&dev, package("dilated_scores", arch_for(&dev))).unwrap();
    let (n, heads, d, r, g) = (1000usize, 2usize, 64usize, 3usize, 6usize);
    let qs = random(n * heads * d);
    let ks = random(n * heads * d);
    let q = DeviceTensor::from_f64(&dev, DType::Bf16, &[n, heads, d], &qs).unwrap();
    let k = DeviceTensor::from_f64(&dev, DType::Bf16, &[n, heads, d], &ks).unwrap();
    let shape = [n, d];
    let strides = [heads * d, 1];
    let qv = q
        .strided_view(&dev, 0, DType::Bf16, &shape, &strides)
        .unwrap();
    let kv = k
        .strided_view(&dev, d * 2, DType::Bf16, &shape, &strides)
        .unwrap();
    let s = DeviceTensor::poisoned(&dev, DType::F32, &[g, 64, 64]).unwrap();
    pkg.launch(
        &dev,
        "dilated_scores",
        &[
            Arg::View(qv),
            Arg::View(kv),
            Arg::Tensor(&s),
            Arg::Scalar(r as f64),
        ],
    )
    .unwrap();
    let got = s.to_f64(&dev).unwrap();
    let at = |st: &[f64], head: usize, row: usize, c: usize| {
        if row < n {
            st[(row * heads + head) * d + c]
        } else {
            0.0
        }
    };
    for gi in 0..g {
        let s0 = gi * 64 * r;
        for i in 0..64 {
            for j in 0..64 {
                let want: f64 = (0..d)
                    .map(|c| at(&qs, 0, s0 + i * r, c) * at(&ks, 1, s0 + j * r, c))
                    .sum();
                let g_ = got[(gi * 64 + i) * 64 + j];
                assert!(
                    (g_ - want).abs() <= 1e-3 * (1.0 + want.abs()),
                    "{gi} ({i}, {j}): {g_} vs {want}"
                );
            }
        }
    }
}
