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
    /// Tensor map `index` of the schedule (`.param .align 64 .b8 [128]`, passed by value), for
    /// TMA copies of tensor parameter `tensor`; the runtime encodes it per launch.
    TensorMap { index: usize, tensor: usize },
}

/// A kernel's arguments: one per Tile IR parameter in declaration order, then one i32 per shape
/// symbol in order of first appearance in the tensors' dimensions and strides (each tensor's
/// dimensions, then its strides), so a kernel without strides keeps its order, then the tensor
/// maps its schedule copies through (none off the TMA path, so other kernels keep theirs).
#[derive(Clone, Debug)]
pub struct Signature<'k> {
    kernel: &'k Kernel,
    symbols: Vec<String>,
    /// The tensor parameter of each tensor map, in the schedule's order.
    maps: Vec<usize>,
}

impl<'k> Signature<'k> {
    pub fn of(kernel: &'k Kernel) -> Self {
        Self {
            kernel,
            symbols: shape_symbols(kernel),
            maps: Vec::new(),
        }
    }

    /// The arguments of `kernel` as scheduled by `s`: with its tensor maps.
    pub fn scheduled(kernel: &'k Kernel, s: &crate::sched::Schedule) -> Self {
        Self {
            maps: s.tensor_maps.iter().map(|m| m.tensor).collect(),
            ..Self::of(kernel)
        }
    }

    /// Every argument, in order.
    pub fn args(&self) -> impl Iterator<Item = Arg<'_>> {
        self.kernel
            .params
            .iter()
            .map(Arg::Param)
            .chain(self.symbols.iter().map(|s| Arg::Shape(s)))
            .chain(
                self.maps
                    .iter()
                    .enumerate()
                    .map(|(index, &tensor)| Arg::TensorMap { index, tensor }),
            )
    }

    /// The argument index of tensor map `index`.
    pub fn tensor_map_arg(&self, index: usize) -> Option<usize> {
        (index < self.maps.len()).then(|| self.kernel.params.len() + self.symbols.len() + index)
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
                Arg::TensorMap { .. } => "tensor map",
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

    #[test]
    fn tensor_maps_follow_the_shape_symbols_when_the_schedule_has_them() {
        let src = include_str!("../../dsl-examples/matmul.tsl");
        let k = compile_source(src, &Overrides::new()).unwrap().remove(0);
        let hopper = crate::sched::schedule(&k, crate::Target::lookup("sm_90a").unwrap()).unwrap();
        let sig = Signature::scheduled(&k, &hopper);
        let maps: Vec<(usize, Arg)> = sig
            .args()
            .enumerate()
            .filter(|(_, a)| matches!(a, Arg::TensorMap { .. }))
            .collect();
        // a, b, c, M, K, N, then A's map (of parameter 0) and B's (of parameter 1).
        assert_eq!(
            maps,
            [
                (
                    6,
                    Arg::TensorMap {
                        index: 0,
                        tensor: 0
                    }
                ),
                (
                    7,
                    Arg::TensorMap {
                        index: 1,
                        tensor: 1
                    }
                )
            ]
        );
        assert_eq!(sig.tensor_map_arg(1), Some(7));
        assert_eq!(sig.tensor_map_arg(2), None);
        // Off the TMA path the signature is the kernel's own.
        let ampere = crate::sched::schedule(&k, crate::Target::lookup("sm_90").unwrap()).unwrap();
        assert_eq!(Signature::scheduled(&k, &ampere).args().count(), 6);
    }
}
