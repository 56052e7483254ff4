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
    let s = &compiled.schedule;
    for arg in crate::abi::Signature::scheduled(kernel, s).args() {
        params.push(match arg {
            Arg::Param(p) => match &p.kind {
                ParamKind::Tensor {
                    io,
                    dtype: d,
                    dims,
                    strides,
                } => ParamSpec::Tensor {
                    name: p.name.clone(),
                    dtype: dtype(*d)?,
                    dims: dims.clone(),
                    io: *io,
                    strides: strides.clone(),
                },
                ParamKind::Scalar { dtype: d } => ParamSpec::Scalar {
                    name: p.name.clone(),
                    dtype: dtype(*d)?,
                },
            },
            Arg::Shape(symbol) => ParamSpec::Shape {
                symbol: symbol.to_string(),
            },
            Arg::TensorMap { index, tensor } => {
                let m = &s.tensor_maps[index];
                let p = &kernel.params[tensor];
                let ParamKind::Tensor { dtype: d, .. } = &p.kind else {
                    return Err(CompileError::Reference(
                        "a tensor map of a scalar parameter".into(),
                    ));
                };
                ParamSpec::TensorMap {
                    name: format!("{}_tmap{index}", p.name),
                    tensor: p.name.clone(),
                    dtype: dtype(*d)?,
                    box_dims: m.box_dims.iter().map(|&b| b as u32).collect(),
                    swizzle: m.swizzle as u32,
                    requires: tessel_package::tensor_map::REQUIREMENT.into(),
                }
            }
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
        requires: kernel.requires.clone(),
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
    /// Entries left out, with why: a combination of variant values the scheduler cannot place
    /// on this target, or one that makes a kernel of the file invalid (a tile too large for
    /// its block) while other combinations build it.
    pub skipped: Vec<Skipped>,
    /// Each entry's compile time per stage, in package order (`tessel compile --timings`).
    pub timings: Vec<(String, Vec<(&'static str, std::time::Duration)>)>,
}

/// One entry to compile: its name in the package and its specialised kernel.
type Job = (String, crate::tir::Kernel);
/// An entry left out of a variant build, and why.
type Skipped = (String, String);

/// Every kernel of `source` at every combination of variant values, each entry once. Without
/// variants any diagnostic is the error. With them, a combination that makes one kernel invalid
/// (`BN = 1024` gives another kernel of the file a tile too large for a block) leaves that
/// entry out, listed with its first diagnostic — unless no combination builds the kernel at
/// all, which is the user's error.
fn elaborate_variants(
    source: &str,
    file_name: &str,
    combos: &[Overrides],
    variants: &Variants,
) -> Result<(Vec<Job>, Vec<Skipped>), CompileError> {
    let render = |d: &[crate::diag::Diagnostic]| {
        CompileError::Source(crate::diag::render_all(d, file_name, source))
    };
    let mut jobs: Vec<Job> = Vec::new();
    let mut skipped = Vec::new();
    let mut failures: Vec<(String, crate::diag::Diagnostic)> = Vec::new();
    for overrides in combos {
        let kernels = match sema::compile_source(source, overrides) {
            Ok(k) => k,
            Err(d) if variants.is_empty() => return Err(render(&d)),
            Err(d) => {
                let file = crate::syntax::parse(source).map_err(|e| render(&[e]))?;
                let mut ok = Vec::new();
                for k in &file.kernels {
                    match sema::elaborate_kernel(k, overrides) {
                        Ok(t) => ok.push(t),
                        Err(diag) => {
                            let at: Vec<String> = variants
                                .iter()
                                .filter_map(|(n, _)| overrides.get(n).map(|v| format!("{n}={v}")))
                                .collect();
                            failures.push((format!("{}[{}]", k.name, at.join(",")), diag));
                        }
                    }
                }
                if ok.is_empty() && failures.is_empty() {
                    return Err(render(&d));
                }
                ok
            }
        };
        for kernel in kernels {
            let name = variant_name(&kernel, variants);
            if !jobs.iter().any(|(n, _)| *n == name) {
                jobs.push((name, kernel));
            }
        }
    }
    for (entry, diag) in failures {
        let kernel = entry.split('[').next().unwrap_or(&entry);
        if !jobs.iter().any(|(_, k)| k.name == kernel) {
            return Err(render(&[diag]));
        }
        skipped.push((entry, diag.message.clone()));
    }
    Ok((jobs, skipped))
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
    source_package_with(
        source,
        file_name,
        fixed,
        variants,
        target,
        options,
        &|_, _, _| {},
    )
}

/// [`source_package`], calling `progress(entry, done, total)` as each entry is compiled. Entries
/// compile in parallel, one thread per core: each compile has its own MLIR and LLVM contexts, and
/// the first runs alone so that the process-wide setup (NVPTX initialisation, MLIR's pass
/// registry) is complete before threads share it.
pub fn source_package_with(
    source: &str,
    file_name: &str,
    fixed: &Overrides,
    variants: &Variants,
    target: Target,
    options: &crate::sched::SchedOptions,
    progress: &(dyn Fn(&str, usize, usize) + Sync),
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
    // The front end is cheap and its errors are the user's: run it first, in order.
    let (jobs, mut skipped) = elaborate_variants(source, file_name, &combos, variants)?;
    let done = std::sync::atomic::AtomicUsize::new(0);
    let compile = |(name, kernel): &(String, crate::tir::Kernel)| {
        let r = crate::driver::compile_kernel_with(kernel, target, options);
        let n = done.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1;
        progress(name, n, jobs.len());
        r
    };
    let mut results = Vec::with_capacity(jobs.len());
    if let Some(first) = jobs.first() {
        results.push(compile(first));
    }
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let rest = &jobs[results.len()..];
    let chunk = rest.len().div_ceil(threads).max(1);
    std::thread::scope(|scope| {
        let handles: Vec<_> = rest
            .chunks(chunk)
            .map(|part| scope.spawn(|| part.iter().map(compile).collect::<Vec<_>>()))
            .collect();
        for h in handles {
            match h.join() {
                Ok(r) => results.extend(r),
                Err(panic) => std::panic::resume_unwind(panic),
            }
        }
    });
    let mut b = PackageBuilder::new(target.name, &target.ptx.to_string());
    let mut timings = Vec::new();
    for ((name, kernel), compiled) in jobs.iter().zip(results) {
        let compiled = match compiled {
            Ok(c) => c,
            // A variant the target cannot hold is left out; a broken schedule is a bug.
            Err(CompileError::Schedule(e)) if !variants.is_empty() && e.broken.is_none() => {
                skipped.push((name.clone(), e.reason));
                continue;
            }
            Err(e) => return Err(e),
        };
        let mut entry = kernel_entry(kernel, &compiled)?;
        entry.name = name.clone();
        b.add(entry, &compiled.ptx)?;
        timings.push((name.clone(), compiled.timings));
    }
    Ok(SourcePackage {
        package: b,
        skipped,
        timings,
    })
}
