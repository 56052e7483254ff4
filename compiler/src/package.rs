//! AOT packages: of the compiler's built-in kernels, of one kernel compiled from `.tsl` source,
//! and of every kernel of a source over a set of variants (what the runtime's operators load).
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

/// A package of one kernel compiled from Tile IR, carrying that Tile IR as its reference.
pub fn kernel_package(
    kernel: &crate::tir::Kernel,
    compiled: &crate::driver::CompiledKernel,
) -> Result<PackageBuilder, CompileError> {
    let target = compiled.schedule.target;
    let mut b = PackageBuilder::new(target.name, &target.ptx.to_string());
    b.add(kernel_entry(kernel, compiled)?, &compiled.ptx)?;
    Ok(b)
}

/// The manifest entry of a kernel compiled from Tile IR (its `ptx` blob is filled in by `add`).
pub fn kernel_entry(
    kernel: &crate::tir::Kernel,
    compiled: &crate::driver::CompiledKernel,
) -> Result<KernelEntry, CompileError> {
    use crate::tir::{Io as TIo, ParamKind};
    let dtype = |d: crate::tir::DType| match d {
        crate::tir::DType::Bf16 => Ok(DType::Bf16),
        crate::tir::DType::F16 => Ok(DType::F16),
        crate::tir::DType::F32 => Ok(DType::F32),
        crate::tir::DType::I32 => Ok(DType::I32),
        crate::tir::DType::Bool => Err(CompileError::Reference(
            "bool parameters have no package type".into(),
        )),
    };
    let mut params = Vec::new();
    for p in &kernel.params {
        params.push(match &p.kind {
            ParamKind::Tensor {
                io, dtype: d, dims, ..
            } => ParamSpec::Tensor {
                name: p.name.clone(),
                dtype: dtype(*d)?,
                dims: dims
                    .iter()
                    .map(|d| match d {
                        crate::tir::Dim::Const(c) => DimSpec::Const(*c),
                        crate::tir::Dim::Sym(s) => DimSpec::Sym(s.clone()),
                    })
                    .collect(),
                io: match io {
                    TIo::In => Io::In,
                    TIo::Out => Io::Out,
                    TIo::InOut => Io::InOut,
                },
            },
            ParamKind::Scalar { dtype: d } => ParamSpec::Scalar {
                name: p.name.clone(),
                dtype: dtype(*d)?,
            },
        });
    }
    params.extend(
        crate::lower::tiles::shape_symbols(kernel)
            .into_iter()
            .map(|symbol| ParamSpec::Shape { symbol }),
    );
    // Bytes a call moves at least: every tensor read or written once (read and written for inout).
    let mut bytes: Option<ShapeExpr> = None;
    for p in &params {
        if let ParamSpec::Tensor {
            dtype, dims, io, ..
        } = p
        {
            let passes = if *io == Io::InOut { 2 } else { 1 };
            let mut e = ShapeExpr::Int((dtype.size() * passes) as i64);
            for d in dims {
                let d = match d {
                    DimSpec::Const(c) => ShapeExpr::Int(*c),
                    DimSpec::Sym(s) => ShapeExpr::Sym(s.clone()),
                };
                e = ShapeExpr::Mul(Box::new(e), Box::new(d));
            }
            bytes = Some(match bytes {
                Some(b) => ShapeExpr::Add(Box::new(b), Box::new(e)),
                None => e,
            });
        }
    }
    let entry = KernelEntry {
        name: kernel.name.clone(),
        entry: kernel.name.clone(),
        params,
        consts: kernel
            .consts
            .iter()
            .map(|(n, v)| (n.clone(), v.to_string()))
            .collect(),
        launch: LaunchRule {
            grid: kernel.grid.clone(),
            block: [compiled.schedule.threads, 1, 1],
            shared_bytes: compiled.schedule.shared_bytes as u32,
        },
        flops: None,
        bytes,
        ptx: Blob {
            offset: 0,
            len: 0,
            sha256: String::new(),
        },
        tile_ir: Some(kernel.to_string()),
    };
    Ok(entry)
}

/// A compile-time parameter a package is built over, with every value it takes.
pub type Variant = (String, Vec<ConstValue>);
/// The parameters a package is built over; entries exist for every combination.
pub type Variants = [Variant];

/// Parses `NAME=V1,V2,...` (the CLI's `--variant`): each value an integer, `true`/`false` or a
/// dtype name.
pub fn parse_variant(text: &str) -> Result<Variant, String> {
    let (name, values) = text
        .split_once('=')
        .ok_or_else(|| format!("`{text}`: expected NAME=V1,V2,..."))?;
    let values = values
        .split(',')
        .map(|v| {
            sema::parse_const(v.trim())
                .ok_or_else(|| format!("{name}: `{v}` is not an integer, true/false or a dtype"))
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok((name.trim().to_string(), values))
}

/// The name of one variant's entry: the kernel's name, then the varied parameters it declares,
/// e.g. `flash_attention_fwd[D=128,CAUSAL=true]`. A kernel that declares none keeps its name.
pub fn variant_name(kernel: &crate::tir::Kernel, variants: &Variants) -> String {
    let varied: Vec<String> = kernel
        .consts
        .iter()
        .filter(|(n, _)| variants.iter().any(|(v, _)| v == n))
        .map(|(n, v)| format!("{n}={v}"))
        .collect();
    if varied.is_empty() {
        kernel.name.clone()
    } else {
        format!("{}[{}]", kernel.name, varied.join(","))
    }
}

/// A package built over variants, and the variants the scheduler could not place on the target
/// (e.g. D = 128 tiles beyond sm_80's shared memory), each with the reason.
pub struct SourcePackage {
    pub package: PackageBuilder,
    pub skipped: Vec<(String, crate::sched::SchedError)>,
}

/// One package holding every kernel of `source` for every combination of `variants` (with
/// `fixed` applied to all), each entry named by [`variant_name`]. Kernels a parameter does not
/// apply to are built once. The runtime picks an entry by its kernel and constants
/// (`LoadedPackage::find`), so callers never spell variant names. With variants, an entry the
/// scheduler refuses for this target is left out and listed in `skipped` (the runtime then says
/// `NoVariant`); without, the refusal is the error.
pub fn source_package(
    source: &str,
    file_name: &str,
    fixed: &Overrides,
    variants: &Variants,
    target: Target,
    options: &crate::sched::SchedOptions,
) -> Result<SourcePackage, CompileError> {
    // A bad flag is the caller's error, not a variant to skip.
    options.hints()?;
    let mut combos: Vec<Overrides> = vec![fixed.clone()];
    for (name, values) in variants {
        combos = combos
            .iter()
            .flat_map(|o| {
                values.iter().map(move |v| {
                    let mut o = o.clone();
                    o.insert(name.clone(), *v);
                    o
                })
            })
            .collect();
    }
    let mut b = PackageBuilder::new(target.name, &target.ptx.to_string());
    let mut skipped = Vec::new();
    let mut seen = std::collections::HashSet::new();
    for overrides in &combos {
        let kernels = sema::compile_source(source, overrides)
            .map_err(|d| CompileError::Source(crate::diag::render_all(&d, file_name, source)))?;
        for kernel in &kernels {
            let name = variant_name(kernel, variants);
            if !seen.insert(name.clone()) {
                continue;
            }
            let compiled = match crate::driver::compile_kernel_with(kernel, target, options) {
                Ok(c) => c,
                // A variant the target cannot hold is left out; a broken schedule is a bug.
                Err(CompileError::Schedule(e)) if !variants.is_empty() && e.broken.is_none() => {
                    skipped.push((name, e));
                    continue;
                }
                Err(e) => return Err(e),
            };
            let mut entry = kernel_entry(kernel, &compiled)?;
            entry.name = name;
            b.add(entry, &compiled.ptx)?;
        }
    }
    Ok(SourcePackage {
        package: b,
        skipped,
    })
}
