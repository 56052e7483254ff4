//! AOT packages of the compiler's built-in kernels (until `.tsl` kernels lower to PTX).
//!
//! The built-in `fma_<dtype>` computes c = a*b + c; its package entry carries the Tile IR of the
//! same function written in the language (dsl-examples/elementwise.tsl), which `tessel run`
//! interprets as the reference.

use tessel_package::manifest::Blob;
use tessel_package::{
    DType, DimSpec, Io, KernelEntry, LaunchRule, PackageBuilder, ParamSpec, ShapeExpr,
};

use crate::codegen::compile_elementwise;
use crate::lower::elementwise::{kernel_name, ElemType};
use crate::sema::{self, Overrides};
use crate::tir::ConstValue;
use crate::{CompileError, Target};

const ELEMENTWISE: &str = include_str!("../../dsl-examples/elementwise.tsl");
/// Threads per block of the built-in kernel, one element each.
pub const FMA_BLOCK: u32 = 256;

fn dtype(e: ElemType) -> DType {
    match e {
        ElemType::F32 => DType::F32,
        ElemType::Bf16 => DType::Bf16,
        ElemType::F16 => DType::F16,
    }
}

/// The Tile IR text of c = a*b + c for `e`, from the language's own example.
fn reference_ir(e: ElemType) -> Result<String, CompileError> {
    let mut o = Overrides::new();
    let t = crate::tir::DType::parse(e.name()).unwrap_or(crate::tir::DType::F32);
    o.insert("T".into(), ConstValue::Dtype(t));
    let kernels = sema::compile_source(ELEMENTWISE, &o).map_err(|d| {
        CompileError::Reference(format!("{} diagnostics in elementwise.tsl", d.len()))
    })?;
    Ok(kernels[0].to_string())
}

/// A package holding the built-in fma kernel for `e` on `target`.
pub fn fma_package(e: ElemType, target: Target) -> Result<PackageBuilder, CompileError> {
    let ptx = compile_elementwise(e, target)?;
    let dt = dtype(e);
    let n = || ShapeExpr::Sym("N".into());
    let vec_param = |name: &str, io| ParamSpec::Tensor {
        name: name.into(),
        dtype: dt,
        dims: vec![DimSpec::Sym("N".into())],
        io,
    };
    let entry = KernelEntry {
        name: kernel_name(e),
        entry: kernel_name(e),
        params: vec![
            vec_param("a", Io::In),
            vec_param("b", Io::In),
            vec_param("c", Io::InOut),
            ParamSpec::Shape { symbol: "N".into() },
        ],
        consts: vec![("T".into(), e.name().into())],
        launch: LaunchRule {
            grid: vec![ShapeExpr::CeilDiv(
                Box::new(n()),
                Box::new(ShapeExpr::Int(FMA_BLOCK as i64)),
            )],
            block: [FMA_BLOCK, 1, 1],
            shared_bytes: 0,
        },
        flops: Some(ShapeExpr::Mul(Box::new(ShapeExpr::Int(2)), Box::new(n()))),
        // Reads a, b, c; writes c.
        bytes: Some(ShapeExpr::Mul(
            Box::new(ShapeExpr::Int(4 * dt.size() as i64)),
            Box::new(n()),
        )),
        ptx: Blob {
            offset: 0,
            len: 0,
            sha256: String::new(),
        },
        tile_ir: Some(reference_ir(e)?),
    };
    let mut b = PackageBuilder::new(target.name, &target.ptx.to_string());
    b.add(entry, &ptx)?;
    Ok(b)
}
