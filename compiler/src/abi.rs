//! The kernel calling convention: which arguments a compiled kernel takes, in which order.
//!
//! The lowering declares a kernel's parameters in this order and the package records them in this
//! order for the runtime to pass; both read it from here, so the two cannot drift apart. It needs
//! no LLVM, so it builds with the stages that run without the backend.

use crate::tir::{Dim, Kernel, Param, ParamKind};

/// One argument of a compiled kernel.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Arg<'k> {
    /// A Tile IR parameter: a global pointer for a tensor, the value itself for a scalar.
    Param(&'k Param),
    /// The run-time value of a shape symbol (an extent, or a stride in elements), as an i32.
    Shape(&'k str),
}

/// A kernel's arguments: one per Tile IR parameter in declaration order, then one i32 per shape
/// symbol in order of first appearance in the tensors' dimensions and strides (each tensor's
/// dimensions, then its strides), so a kernel without strides keeps its order.
#[derive(Clone, Debug)]
pub struct Signature<'k> {
    kernel: &'k Kernel,
    symbols: Vec<String>,
}

impl<'k> Signature<'k> {
    pub fn of(kernel: &'k Kernel) -> Self {
        Self {
            kernel,
            symbols: shape_symbols(kernel),
        }
    }

    /// Every argument, in order.
    pub fn args(&self) -> impl Iterator<Item = Arg<'_>> {
        self.kernel
            .params
            .iter()
            .map(Arg::Param)
            .chain(self.symbols.iter().map(|s| Arg::Shape(s)))
    }

    /// The argument index that carries shape symbol `symbol`'s extent.
    pub fn shape_arg(&self, symbol: &str) -> Option<usize> {
        self.symbols
            .iter()
            .position(|s| s == symbol)
            .map(|i| self.kernel.params.len() + i)
    }
}

/// The shape symbols a kernel receives as trailing i32 arguments, in order.
pub fn shape_symbols(k: &Kernel) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for p in &k.params {
        if let ParamKind::Tensor { dims, strides, .. } = &p.kind {
            for d in dims.iter().chain(strides.iter().flatten()) {
                if let Dim::Sym(s) = d {
                    if !out.contains(s) {
                        out.push(s.clone());
                    }
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sema::{compile_source, Overrides};

    #[test]
    fn parameters_then_shape_symbols_in_order_of_first_appearance() {
        let src = "kernel k(a: in tensor<f32>[M, K], b: in tensor<f32>[K, N], c: out tensor<f32>[M, N], s: f32)
            grid(1)
        {
            store(c[0 : +16, 0 : +16], load(a[0 : +16, 0 : +16]) * s);
        }";
        let kernels = compile_source(src, &Overrides::new()).expect("a valid kernel");
        let sig = Signature::of(&kernels[0]);
        let names: Vec<&str> = sig
            .args()
            .map(|a| match a {
                Arg::Param(p) => p.name.as_str(),
                Arg::Shape(s) => s,
            })
            .collect();
        assert_eq!(names, ["a", "b", "c", "s", "M", "K", "N"]);
        assert_eq!(sig.shape_arg("M"), Some(4));
        assert_eq!(sig.shape_arg("N"), Some(6));
        assert_eq!(sig.shape_arg("Q"), None);
    }

    #[test]
    fn stride_symbols_follow_their_tensors_dimensions_and_are_listed_once() {
        let src = "kernel k(a: in tensor<f32>[M, K] strides[SA, 1], b: out tensor<f32>[M, K] strides[K, 1])
            grid(1)
        {
            store(b[0 : +16, 0 : +16], load(a[0 : +16, 0 : +16]));
        }";
        let kernels = compile_source(src, &Overrides::new()).expect("a valid kernel");
        assert_eq!(shape_symbols(&kernels[0]), ["M", "K", "SA"]);
        let sig = Signature::of(&kernels[0]);
        assert_eq!(sig.shape_arg("SA"), Some(4));
    }
}
