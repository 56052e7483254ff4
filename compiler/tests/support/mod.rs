//! What the interpreter tests of the example kernels share: a kernel from dsl-examples/,
//! fresh random tensors, and running a kernel over host arguments.
#![allow(dead_code)]

use rand::Rng;
use tessel_compiler::interp::{self, HostArg, HostTensor};
use tessel_compiler::sema::{self, parse_const, Overrides};
use tessel_compiler::tir::{DType, Kernel};

/// Every kernel of `dsl-examples/<file>`, compiled with `defines` (as `-D NAME=VALUE`).
pub fn example_kernels<V: AsRef<str>>(file: &str, defines: &[(&str, V)]) -> Vec<Kernel> {
    let path = format!("{}/../dsl-examples/{file}", env!("CARGO_MANIFEST_DIR"));
    let source = std::fs::read_to_string(&path).unwrap();
    let overrides: Overrides = defines
        .iter()
        .map(|(k, v)| (k.to_string(), parse_const(v.as_ref()).unwrap()))
        .collect();
    sema::compile_source(&source, &overrides)
        .unwrap_or_else(|d| panic!("{}", tessel_compiler::diag::render_all(&d, &path, &source)))
}

/// Kernel `name` of `dsl-examples/<file>`, compiled with `defines`.
pub fn example_kernel<V: AsRef<str>>(file: &str, name: &str, defines: &[(&str, V)]) -> Kernel {
    example_kernels(file, defines)
        .into_iter()
        .find(|k| k.name == name)
        .unwrap_or_else(|| panic!("no kernel {name} in {file}"))
}

/// A tensor of fresh uniform values in [lo, hi), rounded to `dtype`.
pub fn random(dtype: DType, shape: &[usize], lo: f64, hi: f64) -> HostTensor {
    let mut rng = rand::rng();
    let n = shape.iter().product();
    let data = (0..n)
        .map(|_| interp::round(dtype, rng.random_range(lo..hi)))
        .collect();
    HostTensor::new(dtype, shape.to_vec(), data)
}

pub fn tensor(a: &HostArg) -> &HostTensor {
    match a {
        HostArg::Tensor(t) => t,
        HostArg::Scalar(_) => panic!("not a tensor"),
    }
}

/// Runs `k` over `args` in place.
pub fn run(k: &Kernel, args: &mut [HostArg]) {
    interp::run(k, args).unwrap_or_else(|e| panic!("{}: {e}", k.name));
}

/// The largest |got − want| over the largest |want|; every element of `got` must be finite
/// (outputs start poisoned with NaN, so an unwritten one fails here).
pub fn err_vs_scale(got: &[f64], want: &[f64]) -> f64 {
    assert_eq!(got.len(), want.len());
    assert!(
        got.iter().all(|x| x.is_finite()),
        "an output is not finite (unwritten?)"
    );
    let scale = want.iter().fold(0.0f64, |m, x| m.max(x.abs())).max(1e-30);
    let worst = got.iter().zip(want).map(|(g, w)| (g - w).abs());
    worst.fold(0.0, f64::max) / scale
}

/// A tensor of `shape` with every element `x` (NaN poisons an output).
pub fn filled(dtype: DType, shape: Vec<usize>, x: f64) -> HostTensor {
    let n = shape.iter().product();
    HostTensor::new(dtype, shape, vec![x; n])
}

/// The worst disagreement of two log-sum-exp vectors: relative where both are finite, and they
/// must be −∞ together (rows no key reaches).
pub fn lse_err(got: &[f64], want: &[f64]) -> f64 {
    got.iter()
        .zip(want)
        .map(|(g, w)| match (g.is_finite(), w.is_finite()) {
            (true, true) => (g - w).abs() / w.abs().max(1.0),
            _ if g == w => 0.0,
            _ => f64::INFINITY,
        })
        .fold(0.0, f64::max)
}
