//! Strided slices and strided tensors in the interpreter against references written here as
//! plain index loops: dsl-examples/strided.tsl on random data, strided host views, ragged edges
//! (fill past the tensor), run-time steps that are not positive (fill / no write), and steps
//! whose i·r passes i32. The GPU runs the same kernels (tests/filetests/codegen/strided.tsl).

mod support;

use rand::Rng;
use tessel_compiler::interp::{self, HostArg, HostTensor};
use tessel_compiler::tir::{DType, Kernel};

fn kernel(name: &str) -> Kernel {
    support::example_kernel::<&str>("strided.tsl", name, &[])
}

fn random(n: usize) -> Vec<f64> {
    let mut rng = rand::rng();
    // Multiples of 1/64 in [-2, 2]: exact in bf16, so references need no rounding model.
    (0..n)
        .map(|_| rng.random_range(-128..128) as f64 / 64.0)
        .collect()
}

fn data(a: &HostArg) -> &[f64] {
    match a {
        HostArg::Tensor(t) => &t.data,
        HostArg::Scalar(_) => panic!("not a tensor"),
    }
}

/// gather_rows over x, a strided view [B, N, 64] of [B, N, H, 64] storage (head `h`).
fn gather(b: usize, n: usize, m: usize, r: i64, s0: i64) {
    let (heads, h, d) = (3usize, 1usize, 64usize);
    let storage = random(b * n * heads * d);
    let x = HostTensor::strided(
        DType::F32,
        vec![b, n, d],
        vec![n * heads * d, heads * d, 1],
        storage[h * d..].to_vec(),
    );
    let mut args = vec![
        HostArg::Tensor(x),
        HostArg::Tensor(HostTensor::poisoned(DType::F32, vec![b, m, d])),
        HostArg::Scalar(r as f64),
        HostArg::Scalar(s0 as f64),
    ];
    interp::run(&kernel("gather_rows"), &mut args).unwrap();
    let y = data(&args[1]);
    for bi in 0..b {
        for i in 0..m {
            // Tile of 32 rows i0.. starts at s0 + i0·r; row i is that start + (i − i0)·r.
            let row = s0 + i as i64 * r;
            for j in 0..d {
                let want = if r > 0 && (0..n as i64).contains(&row) {
                    storage[h * d + bi * n * heads * d + row as usize * heads * d + j]
                } else {
                    -1.0
                };
                assert_eq!(y[(bi * m + i) * d + j], want, "b {bi} row {i} col {j}");
            }
        }
    }
}

#[test]
fn gather_every_rth_row_of_a_strided_head() {
    gather(2, 100, 40, 2, 3); // rows 3, 5, …: the second tile runs past N and reads fill
    gather(1, 64, 64, 1, 0); // step 1 at run time: a plain copy
    gather(1, 50, 32, 7, 49); // only the first row exists
}

#[test]
fn a_run_time_step_that_is_not_positive_selects_nothing() {
    gather(1, 64, 32, 0, 5);
    gather(1, 64, 32, -1, 40);
}

#[test]
fn a_step_whose_product_passes_i32_is_out_of_range_not_wrapped() {
    // i·r = 2^30·i: row 0 exists; every other would wrap to a small row in 32-bit arithmetic.
    gather(1, 8, 32, 1 << 30, 0);
}

fn scatter(m: usize, n: usize, r: i64) {
    let d = 64;
    let x = random(m * d);
    let before = random(n * d);
    let mut args = vec![
        HostArg::Tensor(HostTensor::new(DType::F32, vec![m, d], x.clone())),
        HostArg::Tensor(HostTensor::new(DType::F32, vec![n, d], before.clone())),
        HostArg::Scalar(r as f64),
    ];
    interp::run(&kernel("scatter_rows"), &mut args).unwrap();
    let mut want = before;
    if r > 0 {
        for i in 0..m {
            let row = i as i64 * r;
            if row < n as i64 {
                for j in 0..d {
                    want[row as usize * d + j] = 2.0 * x[i * d + j];
                }
            }
        }
    }
    assert_eq!(data(&args[1]), &want[..]);
}

#[test]
fn scatter_writes_every_rth_row_and_nothing_else() {
    scatter(40, 100, 3);
    scatter(32, 32, 1);
    scatter(32, 64, 0);
    scatter(32, 64, -2);
}

#[test]
fn every_other_column() {
    let (m, n, k) = (20, 63, 32);
    let x = random(m * n);
    let mut args = vec![
        HostArg::Tensor(HostTensor::new(DType::Bf16, vec![m, n], x.clone())),
        HostArg::Tensor(HostTensor::poisoned(DType::Bf16, vec![m, k])),
    ];
    interp::run(&kernel("even_columns"), &mut args).unwrap();
    let y = data(&args[1]);
    for i in 0..m {
        for j in 0..k {
            let want = if 2 * j < n { x[i * n + 2 * j] } else { 0.0 };
            assert_eq!(y[i * k + j], want, "({i}, {j})");
        }
    }
}

#[test]
fn dilated_scores_against_float64() {
    let (n, d, heads, r, g) = (300usize, 64usize, 2usize, 2usize, 3usize);
    let qs = random(n * heads * d);
    let ks = random(n * heads * d);
    let view = |s: &[f64], head: usize| {
        HostTensor::strided(
            DType::Bf16,
            vec![n, d],
            vec![heads * d, 1],
            s[head * d..].to_vec(),
        )
    };
    let mut args = vec![
        HostArg::Tensor(view(&qs, 0)),
        HostArg::Tensor(view(&ks, 1)),
        HostArg::Tensor(HostTensor::poisoned(DType::F32, vec![g, 64, 64])),
        HostArg::Scalar(r as f64),
    ];
    interp::run(&kernel("dilated_scores"), &mut args).unwrap();
    let s = data(&args[2]);
    let at = |st: &[f64], head: usize, row: usize, j: usize| {
        if row < n {
            st[row * heads * d + head * d + j]
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
                let got = s[(gi * 64 + i) * 64 + j];
                assert!(
                    (got - want).abs() <= 1e-4 * (1.0 + want.abs()),
                    "{gi} ({i}, {j}): {got} vs {want}"
                );
            }
        }
    }
}
