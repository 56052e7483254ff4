//! `tessel run`: one kernel of a package on random inputs, checked against the Tile IR
//! interpreter running the kernel's own Tile IR on the same inputs.

use std::collections::HashMap;
use std::path::PathBuf;

use clap::Args;

use super::numeric_key_values;
use tessel_compiler::interp::{self, HostArg, HostTensor};
use tessel_compiler::tir;
use tessel_runtime::format::{DType, DimSpec, Io, KernelEntry, Package, ParamSpec};
use tessel_runtime::{Arg, Device, DeviceTensor, LoadedPackage};

#[derive(Args)]
pub struct RunArgs {
    /// An AOT package (.tpkg).
    pub package: PathBuf,
    #[command(flatten)]
    pub problem: super::ProblemArgs,
}

/// The concrete shape of a tensor parameter for the given symbol values.
pub(crate) fn concrete_shape(
    name: &str,
    dims: &[DimSpec],
    symbols: &HashMap<String, f64>,
) -> Result<Vec<usize>, String> {
    dims.iter()
        .map(|d| match d {
            DimSpec::Const(c) => usize::try_from(*c)
                .map_err(|_| format!("tensor `{name}` has a fixed dimension of {c}: not a size")),
            DimSpec::Sym(s) => symbols.get(s).map(|v| *v as usize).ok_or_else(|| {
                format!("tensor `{name}` needs the size of `{s}`: pass --shape {s}=...")
            }),
        })
        .collect()
}

/// A splitmix64 stream of values uniform in [-1, 1): every random input of `run`, `bench`,
/// `bench-decode` and `interpret`.
pub(crate) fn uniform_stream(seed: u64) -> impl FnMut() -> f64 {
    let mut state = seed;
    move || {
        state = state.wrapping_add(0x9e3779b97f4a7c15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58476d1ce4e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d049bb133111eb);
        ((z ^ (z >> 31)) >> 11) as f64 / (1u64 << 53) as f64 * 2.0 - 1.0
    }
}

/// `u` (uniform in [-1, 1)) moved to [lo, hi).
pub(crate) fn in_range(u: f64, (lo, hi): (f64, f64)) -> f64 {
    lo + (u + 1.0) / 2.0 * (hi - lo)
}

/// `n` values uniform in [-1, 1), seeded with `seed`.
pub(crate) fn random_values(n: usize, seed: u64) -> Vec<f64> {
    let mut next = uniform_stream(seed);
    (0..n).map(|_| next()).collect()
}

/// Host inputs for every non-shape parameter: random for inputs (uniform in [-1, 1), or in the
/// interval `ranges` names), NaN for outputs.
pub(crate) fn host_inputs(
    entry: &KernelEntry,
    symbols: &HashMap<String, f64>,
    scalars: &HashMap<String, f64>,
    ranges: &HashMap<String, (f64, f64)>,
    seed: u64,
) -> Result<Vec<HostArg>, String> {
    super::ranges_name_inputs(
        ranges,
        entry.params.iter().filter_map(|p| match p {
            ParamSpec::Tensor { name, io, .. } if *io != Io::Out => Some(name.as_str()),
            _ => None,
        }),
    )?;
    let mut next = uniform_stream(seed);
    let mut out = Vec::new();
    for p in &entry.params {
        match p {
            // A kernel that declares strides is given dense tensors here, which bind their dense
            // strides.
            ParamSpec::Tensor {
                name,
                dtype,
                dims,
                io,
                ..
            } => {
                let shape = concrete_shape(name, dims, symbols)?;
                let n: usize = shape.iter().product();
                let dtype = *dtype;
                out.push(HostArg::Tensor(if *io == Io::Out {
                    HostTensor::poisoned(dtype, shape)
                } else {
                    let range = ranges.get(name).copied().unwrap_or((-1.0, 1.0));
                    HostTensor::new(
                        dtype,
                        shape,
                        (0..n).map(|_| in_range(next(), range)).collect(),
                    )
                }));
            }
            ParamSpec::Scalar { name, .. } => {
                out.push(HostArg::Scalar(scalars.get(name).copied().unwrap_or(1.0)))
            }
            ParamSpec::Shape { .. } | ParamSpec::TensorMap { .. } => {}
        }
    }
    Ok(out)
}

pub(crate) fn upload(
    dev: &Device,
    entry: &KernelEntry,
    host: &[HostArg],
) -> Result<Vec<Option<DeviceTensor>>, Box<dyn std::error::Error>> {
    let specs = entry.params.iter().filter(|p| p.is_passed());
    let mut out = Vec::new();
    for (spec, h) in specs.zip(host) {
        out.push(match (spec, h) {
            (ParamSpec::Tensor { dtype, .. }, HostArg::Tensor(t)) => {
                Some(DeviceTensor::from_f64(dev, *dtype, &t.shape, &t.data)?)
            }
            _ => None,
        });
    }
    Ok(out)
}

pub(crate) fn device_args<'t>(
    tensors: &'t [Option<DeviceTensor>],
    host: &[HostArg],
) -> Vec<Arg<'t>> {
    tensors
        .iter()
        .zip(host)
        .map(|(t, h)| match (t, h) {
            (Some(t), _) => Arg::Tensor(t),
            (None, HostArg::Scalar(v)) => Arg::Scalar(*v),
            (None, HostArg::Tensor(_)) => unreachable!("tensors were uploaded"),
        })
        .collect()
}

/// The 16-bit float the kernel rounds values to on the way, if any (bf16 before f16: the coarser).
/// An f32 output computed from such a rounded value is only that exact: the GPU's `ex2.approx`
/// and the interpreter's exact `exp` may differ in a last f32 bit, and a bf16 rounding of the two
/// can then land one bf16 ulp apart (seen on Lightning's segment states, 2026-12-03).
fn rounds_through(k: &tir::Kernel) -> Option<DType> {
    fn walk(b: &tir::Block, found: &mut Vec<tir::DType>) {
        for inst in &b.insts {
            match &inst.op {
                tir::Op::Cast { to, .. } => found.push(*to),
                tir::Op::For { body, .. } => walk(body, found),
                _ => {}
            }
        }
    }
    let mut found = Vec::new();
    walk(&k.body, &mut found);
    if found.contains(&tir::DType::Bf16) {
        Some(DType::Bf16)
    } else if found.contains(&tir::DType::F16) {
        Some(DType::F16)
    } else {
        None
    }
}

/// Tolerance relative to the largest reference magnitude, by storage dtype.
fn tolerance(d: DType) -> f64 {
    match d {
        DType::Bf16 => 1e-2,
        DType::F16 => 2e-3,
        DType::F32 => 1e-5,
        DType::I32 | DType::Bool => 0.0,
    }
}

pub fn run(args: RunArgs) -> super::CliResult {
    let package = Package::read(&args.package)?;
    let entry = package.kernel(&args.problem.kernel)?.0.clone();
    let ir = entry.tile_ir.as_ref().ok_or_else(|| {
        format!(
            "kernel `{}` carries no Tile IR to check against",
            entry.name
        )
    })?;
    let reference = tir::parse_kernel(ir)?;
    tir::verify(&reference)?;
    let rounded = rounds_through(&reference);
    let symbols: HashMap<String, f64> = super::inputs::sizes(&args.problem.shape)?
        .into_iter()
        .map(|(k, v)| (k, v as f64))
        .collect();
    let scalars = numeric_key_values(&args.problem.scalar, "--scalar")?;
    check_problem_names(&entry, &symbols, &scalars)?;
    let (host_bytes, device_bytes) = problem_bytes(&entry, &symbols)?;
    // Twice the f64 copies: the inputs, and the GPU's outputs read back to compare.
    super::inputs::check_host_memory(
        host_bytes * 2,
        "the tensors and their reference (8 bytes an element)",
    )?;
    // The device first: no point drawing gigabytes of inputs for a machine without a GPU.
    let dev = Device::open(0)?;
    let (free, _) = dev.memory()?;
    if device_bytes > free as u128 {
        return Err(format!(
            "the kernel's tensors need {} of GPU memory; {} has {} free",
            super::inputs::human(device_bytes),
            dev.name()?,
            super::inputs::human(free as u128)
        )
        .into());
    }
    let seed = args.problem.seed.unwrap_or_else(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(1)
    });
    let ranges = super::ranges(&args.problem.range)?;
    let mut host = host_inputs(&entry, &symbols, &scalars, &ranges, seed)?;
    let loaded = LoadedPackage::load(&dev, package)?;
    let tensors = upload(&dev, &entry, &host)?;
    let plan = loaded.launch(&dev, &entry.name, &device_args(&tensors, &host))?;
    dev.synchronize()?;
    interp::run(&reference, &mut host)?;
    println!(
        "{} on {} (seed {seed}), grid {:?} block {:?}",
        entry.name,
        dev.name()?,
        plan.grid,
        plan.block
    );
    println!(
        "{:<8} {:<6} {:<16} {:>12} {:>10} {:>8}",
        "output", "dtype", "shape", "max err/max", "tolerance", "result"
    );
    let mut failed = false;
    let specs = entry.params.iter().filter(|p| p.is_passed());
    for ((spec, t), h) in specs.zip(&tensors).zip(&host) {
        let (
            ParamSpec::Tensor {
                name, dtype, io, ..
            },
            Some(t),
            HostArg::Tensor(want),
        ) = (spec, t, h)
        else {
            continue;
        };
        if *io == Io::In {
            continue;
        }
        let got = t.to_f64(&dev)?;
        let scale = want
            .data
            .iter()
            .fold(0.0f64, |m, x| m.max(x.abs()))
            .max(1e-30);
        let err = got
            .iter()
            .zip(&want.data)
            .map(|(g, w)| {
                if g.is_nan() {
                    f64::INFINITY
                } else {
                    (g - w).abs()
                }
            })
            .fold(0.0, f64::max)
            / scale;
        // An f32 output computed through 16-bit roundings is held to that dtype's tolerance.
        let through = rounded.filter(|_| *dtype == DType::F32);
        let limit = tolerance(through.unwrap_or(*dtype));
        let ok = err <= limit;
        failed |= !ok;
        println!(
            "{:<8} {:<6} {:<16} {:>12.3e} {:>10.0e} {:>8}{}",
            name,
            dtype.name(),
            format!("{:?}", t.shape),
            err,
            limit,
            if ok { "ok" } else { "MISMATCH" },
            through.map_or(String::new(), |r| format!(
                "  (computed through {} roundings)",
                r.name()
            ))
        );
    }
    if failed {
        return Err("the GPU result differs from the interpreter's".into());
    }
    Ok(())
}

/// Fails on a `--shape` or `--scalar` naming nothing the kernel has (it would be ignored).
pub(crate) fn check_problem_names(
    entry: &KernelEntry,
    symbols: &HashMap<String, f64>,
    scalars: &HashMap<String, f64>,
) -> Result<(), String> {
    let mut syms: Vec<String> = Vec::new();
    let mut scalar_names = Vec::new();
    for p in &entry.params {
        match p {
            ParamSpec::Tensor { dims, .. } => {
                for d in dims {
                    if let DimSpec::Sym(s) = d {
                        if !syms.contains(s) {
                            syms.push(s.clone());
                        }
                    }
                }
            }
            ParamSpec::Scalar { name, .. } => scalar_names.push(name.clone()),
            ParamSpec::Shape { .. } | ParamSpec::TensorMap { .. } => {}
        }
    }
    let sorted = |m: &HashMap<String, f64>| {
        let mut v: Vec<String> = m.keys().cloned().collect();
        v.sort();
        v
    };
    let given = sorted(symbols);
    super::inputs::check_names(
        "--shape",
        given.iter().map(String::as_str),
        "shape symbol",
        &syms,
    )?;
    let given = sorted(scalars);
    super::inputs::check_names(
        "--scalar",
        given.iter().map(String::as_str),
        "scalar parameter",
        &scalar_names,
    )
}

/// Host bytes (f64 per element) and device bytes (the dtype's) of every tensor of the call.
fn problem_bytes(
    entry: &KernelEntry,
    symbols: &HashMap<String, f64>,
) -> Result<(u128, u128), String> {
    let (mut host, mut device) = (0u128, 0u128);
    for p in &entry.params {
        if let ParamSpec::Tensor {
            name, dims, dtype, ..
        } = p
        {
            let n = super::inputs::elements(name, &concrete_shape(name, dims, symbols)?)? as u128;
            host += n * 8;
            device += n * dtype.size() as u128;
        }
    }
    Ok((host, device))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kernels(file: &str) -> Vec<tir::Kernel> {
        let path = format!("{}/dsl-examples/{file}", env!("CARGO_MANIFEST_DIR"));
        let source = std::fs::read_to_string(path).unwrap();
        tessel_compiler::sema::compile_source(&source, &Default::default()).unwrap()
    }

    #[test]
    fn f32_outputs_computed_through_bf16_take_its_tolerance() {
        let la = kernels("lightning_attention.tsl");
        let seg = la
            .iter()
            .find(|k| k.name == tessel_runtime::spec::lightning::SEGMENT_STATE)
            .unwrap();
        // Its f32 state is a product of bf16-rounded decayed operands.
        assert_eq!(rounds_through(seg), Some(DType::Bf16));
        // The f32 fma rounds nothing: its outputs keep f32's tolerance.
        let fma = kernels("elementwise.tsl");
        assert_eq!(rounds_through(&fma[0]), None);
    }
}
