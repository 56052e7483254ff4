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

const MATMUL: &str = include_str!("../../dsl-examples/matmul.tsl");

/// A package holding the tensor-core matmul (bf16, f32 accumulation) on `target`, carrying the
/// Tile IR of dsl-examples/matmul.tsl — the same function — as its reference.
pub fn matmul_package(target: Target) -> Result<PackageBuilder, CompileError> {
    use crate::lower::matmul::{BLOCK_M, BLOCK_N, KERNEL, THREADS};
    let ptx = crate::codegen::compile_matmul(target)?;
    let sym = |s: &str| ShapeExpr::Sym(s.into());
    let mul = |a: ShapeExpr, b: ShapeExpr| ShapeExpr::Mul(Box::new(a), Box::new(b));
    let add = |a: ShapeExpr, b: ShapeExpr| ShapeExpr::Add(Box::new(a), Box::new(b));
    let mat = |name: &str, r: &str, c: &str, io| ParamSpec::Tensor {
        name: name.into(),
        dtype: DType::Bf16,
        dims: vec![DimSpec::Sym(r.into()), DimSpec::Sym(c.into())],
        io,
    };
    let kernels = sema::compile_source(MATMUL, &Overrides::new())
        .map_err(|d| CompileError::Reference(format!("{} diagnostics in matmul.tsl", d.len())))?;
    let entry = KernelEntry {
        name: KERNEL.into(),
        entry: KERNEL.into(),
        params: vec![
            mat("a", "M", "K", Io::In),
            mat("b", "K", "N", Io::In),
            mat("c", "M", "N", Io::Out),
            ParamSpec::Shape { symbol: "M".into() },
            ParamSpec::Shape { symbol: "N".into() },
            ParamSpec::Shape { symbol: "K".into() },
        ],
        consts: vec![
            ("BM".into(), BLOCK_M.to_string()),
            ("BN".into(), BLOCK_N.to_string()),
        ],
        launch: LaunchRule {
            grid: vec![
                ShapeExpr::CeilDiv(Box::new(sym("N")), Box::new(ShapeExpr::Int(BLOCK_N as i64))),
                ShapeExpr::CeilDiv(Box::new(sym("M")), Box::new(ShapeExpr::Int(BLOCK_M as i64))),
            ],
            block: [THREADS, 1, 1],
            shared_bytes: 0,
        },
        flops: Some(mul(
            ShapeExpr::Int(2),
            mul(sym("M"), mul(sym("N"), sym("K"))),
        )),
        bytes: Some(mul(
            ShapeExpr::Int(2),
            add(
                add(mul(sym("M"), sym("K")), mul(sym("K"), sym("N"))),
                mul(sym("M"), sym("N")),
            ),
        )),
        ptx: Blob {
            offset: 0,
            len: 0,
            sha256: String::new(),
        },
        tile_ir: Some(kernels[0].to_string()),
    };
    let mut b = PackageBuilder::new(target.name, &target.ptx.to_string());
    b.add(entry, &ptx)?;
    Ok(b)
}
