//! `cumsum` / `cumprod` in the interpreter against float64 prefix sums and products written here
//! as plain loops, on fresh random tiles (ragged extents read as zeros past the tensor), outputs
//! poisoned first. The kernels are dsl-examples/scan.tsl, whose schedule, PTX and GPU runs the
//! codegen file test (tests/filetests/codegen/scan.tsl) checks.

mod support;

use rand::Rng;
use tessel_compiler::interp::{self, HostArg, HostTensor};
use tessel_compiler::tir::{DType, Kernel};

fn kernel(name: &str) -> Kernel {
    support::example_kernel::<&str>("scan.tsl", name, &[])
}

fn random(dtype: DType, shape: &[usize], lo: f64, hi: f64) -> HostTensor {
    let mut rng = rand::rng();
    let n = shape.iter().product();
    let data = (0..n).map(|_| rng.random_range(lo..hi)).collect();
    HostTensor::new(dtype, shape.to_vec(), data)
}

fn out(a: &HostArg) -> &[f64] {
    match a {
        HostArg::Tensor(t) => &t.data,
        HostArg::Scalar(_) => panic!("not a tensor"),
    }
}

/// Float64 inclusive prefix sums of a row-major m × n matrix along rows (axis 1) or columns.
fn prefix(x: &[f64], m: usize, n: usize, axis: usize) -> Vec<f64> {
    let mut y = x.to_vec();
    for i in 0..m {
        for j in 0..n {
            let prev = match axis {
                1 if j > 0 => y[i * n + j - 1],
                0 if i > 0 => y[(i - 1) * n + j],
                _ => 0.0,
            };
            y[i * n + j] += prev;
        }
    }
    y
}

fn assert_close(got: &[f64], want: &[f64], tol: f64, what: &str) {
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        assert!(
            (g - w).abs() <= tol * (1.0 + w.abs()),
            "{what}: element {i}: {g} vs {w}"
        );
    }
}

#[test]
fn cumsum_along_rows_and_columns_matches_float64() {
    let k = kernel("scan_rows");
    // Whole tiles and ragged ones (the tile is 16 × 64; the rest of it reads as zero).
    for (m, n) in [(16, 64), (13, 50), (1, 1), (16, 3)] {
        let x = random(DType::F32, &[m, n], -1.0, 1.0);
        let mut args = vec![
            HostArg::Tensor(x.clone()),
            HostArg::Tensor(HostTensor::poisoned(DType::F32, vec![m, n])),
            HostArg::Tensor(HostTensor::poisoned(DType::F32, vec![m, n])),
        ];
        interp::run(&k, &mut args).unwrap();
        assert_close(out(&args[1]), &prefix(&x.data, m, n, 1), 1e-6, "rows");
        assert_close(out(&args[2]), &prefix(&x.data, m, n, 0), 1e-6, "columns");
        // Not the identity: a scan changes every element after the first along the axis.
        if n > 1 {
            assert_ne!(out(&args[1])[1], x.data[1]);
        }
    }
}

#[test]
fn cumsum_of_a_bf16_vector_rounds_once_per_element() {
    let k = kernel("scan_vector");
    for n in [128, 77] {
        let x = random(DType::Bf16, &[n], -1.0, 1.0);
        let mut args = vec![
            HostArg::Tensor(x.clone()),
            HostArg::Tensor(HostTensor::poisoned(DType::Bf16, vec![n])),
        ];
        interp::run(&k, &mut args).unwrap();
        let want = prefix(&x.data, 1, n, 1);
        // One bf16 rounding of the exact prefix: half a unit in the last place (2^-8 relative).
        assert_close(out(&args[1]), &want, 2f64.powi(-8), "bf16 prefix");
    }
}

#[test]
fn cumsum_of_a_dot_result_matches_float64() {
    let k = kernel("scan_dot");
    let (m, kk, n) = (64, 16, 64);
    let a = random(DType::Bf16, &[m, kk], -1.0, 1.0);
    let b = random(DType::Bf16, &[kk, n], -1.0, 1.0);
    let mut args = vec![
        HostArg::Tensor(a.clone()),
        HostArg::Tensor(b.clone()),
        HostArg::Tensor(HostTensor::poisoned(DType::F32, vec![m, n])),
    ];
    interp::run(&k, &mut args).unwrap();
    let mut p = vec![0.0; m * n];
    for i in 0..m {
        for j in 0..n {
            p[i * n + j] = (0..kk)
                .map(|l| a.data[i * kk + l] * b.data[l * n + j])
                .sum();
        }
    }
    assert_close(out(&args[2]), &prefix(&p, m, n, 1), 1e-5, "dot prefix");
}

#[test]
fn cumprod_of_integers_is_exact() {
    let k = kernel("scan_int");
    for n in [32, 9] {
        // Small magnitudes so the products of 32 terms stay far from i32 overflow.
        let mut rng = rand::rng();
        let data: Vec<f64> = (0..n)
            .map(|i| {
                if i % 4 == 0 {
                    -2.0
                } else {
                    rng.random_range(-1..=1) as f64
                }
            })
            .collect();
        let x = HostTensor::new(DType::I32, vec![n], data.clone());
        let mut args = vec![
            HostArg::Tensor(x),
            HostArg::Tensor(HostTensor::poisoned(DType::I32, vec![n])),
        ];
        interp::run(&k, &mut args).unwrap();
        let mut acc = 1.0;
        let want: Vec<f64> = data
            .iter()
            .map(|v| {
                acc *= v;
                acc
            })
            .collect();
        assert_eq!(out(&args[1]), want.as_slice());
    }
}
