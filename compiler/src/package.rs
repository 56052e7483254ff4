//! AOT packages: of one kernel compiled from `.tsl` source, and of every kernel of a source over a
//! set of variants (what the runtime's operators load).

use tessel_package::manifest::Blob;
use tessel_package::{
    DType, DimSpec, Io, KernelEntry, LaunchRule, PackageBuilder, ParamSpec, ShapeExpr,
};

use crate::sema::{self, Overrides};
use crate::tir::ConstValue;
use crate::{CompileError, Target};

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
    use crate::abi::Arg;
    use crate::tir::ParamKind;
    // sema declares no bool parameter; a kernel built some other way is refused here, not
    // written into a manifest no runtime can launch.
    let dtype = |d: DType| match d {
        DType::Bool => Err(CompileError::Reference(
            "bool parameters have no package type".into(),
        )),
        d => Ok(d),
    };
    let mut params = Vec::new();
    for arg in crate::abi::Signature::of(kernel).args() {
        params.push(match arg {
            Arg::Param(p) => match &p.kind {
                ParamKind::Tensor {
                    io, dtype: d, dims, ..
                } => ParamSpec::Tensor {
                    name: p.name.clone(),
                    dtype: dtype(*d)?,
                    dims: dims.clone(),
                    io: *io,
                },
                ParamKind::Scalar { dtype: d } => ParamSpec::Scalar {
                    name: p.name.clone(),
                    dtype: dtype(*d)?,
                },
            },
            Arg::Shape(symbol) => ParamSpec::Shape {
                symbol: symbol.to_string(),
            },
        });
    }
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
