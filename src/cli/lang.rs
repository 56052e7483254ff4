//! `tessel check`, `tessel ir` and `tessel interpret`: the front end and the interpreter.

use std::collections::HashMap;
use std::path::PathBuf;

use clap::Args;

use super::{key_values, numeric_key_values};
use tessel_compiler::diag::render_all;
use tessel_compiler::interp::{self, HostArg, HostTensor};
use tessel_compiler::sema::{self, Overrides};
use tessel_compiler::tir::{self, Dim, ParamKind};

#[derive(Args)]
pub struct SourceArgs {
    /// A .tsl source file.
    pub file: PathBuf,
    /// Compile-time parameter values, e.g. -D BM=64 -D T=bf16.
    #[arg(short = 'D', value_name = "NAME=VALUE")]
    pub defines: Vec<String>,
}

#[derive(Args)]
pub struct IrArgs {
    #[command(flatten)]
    pub source: SourceArgs,
    /// Print only this kernel.
    #[arg(long)]
    pub kernel: Option<String>,
}

#[derive(Args)]
pub struct InterpretArgs {
    #[command(flatten)]
    pub source: SourceArgs,
    /// Read a tensor input from a NumPy .npy file (C order; f64, f32, f16 or i32), e.g.
    /// --npy a=a.npy. Its shape binds the tensor's shape symbols.
    #[arg(long, value_name = "NAME=PATH")]
    pub npy: Vec<String>,
    #[command(flatten)]
    pub problem: super::ProblemArgs,
    /// Write every output (and inout) tensor to DIR/NAME.npy: f32 for f32 and bf16 (which NumPy
    /// lacks; f32 holds it exactly), f16, i32.
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
}

/// The `-D NAME=VALUE` values as compile-time constants.
pub fn defines(defines: &[String]) -> Result<Overrides, Box<dyn std::error::Error>> {
    let mut overrides = Overrides::new();
    for (k, v) in key_values(defines, "-D")? {
        let value = sema::parse_const(&v)
            .ok_or_else(|| format!("-D {k}={v}: expected an integer, true/false or a dtype"))?;
        overrides.insert(k, value);
    }
    Ok(overrides)
}

pub fn front_end(args: &SourceArgs) -> Result<Vec<tir::Kernel>, Box<dyn std::error::Error>> {
    let source = std::fs::read_to_string(&args.file)
        .map_err(|e| format!("cannot read {}: {e}", args.file.display()))?;
    let overrides = defines(&args.defines)?;
    let mut given: Vec<&str> = overrides.keys().map(String::as_str).collect();
    given.sort();
    check_declared("-D", &source, given)?;
    sema::compile_source(&source, &overrides).map_err(|diags| {
        let name = args.file.display().to_string();
        eprint!("{}", render_all(&diags, &name, &source));
        format!("{} error(s) in {name}", diags.len()).into()
    })
}

/// Fails unless every name in `given` is a compile-time parameter of some kernel of `source`:
/// one that none declares would be ignored, keeping the default. A file that does not parse
/// passes here and gets its syntax error from the front end.
pub fn check_declared<'a>(
    flag: &str,
    source: &str,
    given: impl IntoIterator<Item = &'a str>,
) -> Result<(), String> {
    let Ok(file) = tessel_compiler::syntax::parse(source) else {
        return Ok(());
    };
    let mut consts: Vec<String> = Vec::new();
    for c in file.kernels.iter().flat_map(|k| &k.consts) {
        if !consts.contains(&c.name.name) {
            consts.push(c.name.name.clone());
        }
    }
    super::inputs::check_names(flag, given, "compile-time parameter", &consts)
}

pub fn check(args: SourceArgs) -> super::CliResult {
    let kernels = front_end(&args)?;
    for k in &kernels {
        let consts: Vec<String> = k.consts.iter().map(|(n, v)| format!("{n}={v}")).collect();
        println!(
            "ok: kernel {} ({} params, {} values; {})",
            k.name,
            k.params.len(),
            k.types.len(),
            consts.join(" ")
        );
    }
    Ok(())
}

pub fn ir(args: IrArgs) -> super::CliResult {
    let kernels = front_end(&args.source)?;
    let mut printed = 0;
    for k in kernels
        .iter()
        .filter(|k| args.kernel.as_ref().is_none_or(|n| *n == k.name))
    {
        print!("{k}");
        printed += 1;
    }
    if printed == 0 {
        let name = args.kernel.unwrap_or_default();
        return Err(no_kernel(&name, &kernels, &args.source.file).into());
    }
    Ok(())
}

/// "no kernel named `X` in FILE", with the closest name the file has or the list of them.
pub fn no_kernel(name: &str, kernels: &[tir::Kernel], file: &std::path::Path) -> String {
    let names: Vec<String> = kernels.iter().map(|k| k.name.clone()).collect();
    let hint = match tessel_compiler::diag::closest(name, &names) {
        Some(near) => format!("; did you mean `{near}`?"),
        None => format!(" (it has: {})", names.join(", ")),
    };
    format!("no kernel named `{name}` in {}{hint}", file.display())
}

pub fn interpret(args: InterpretArgs) -> super::CliResult {
    let kernels = front_end(&args.source)?;
    let kernel = kernels
        .iter()
        .find(|k| k.name == args.problem.kernel)
        .ok_or_else(|| no_kernel(&args.problem.kernel, &kernels, &args.source.file))?;
    let mut dims = super::inputs::sizes(&args.problem.shape)?;
    let mut given: Vec<&str> = dims.keys().map(String::as_str).collect();
    given.sort();
    super::inputs::check_names("--shape", given, "shape symbol", &shape_symbols(kernel))?;
    let mut npy: HashMap<String, (Vec<usize>, Vec<f64>)> = HashMap::new();
    for (name, path) in key_values(&args.npy, "--npy")? {
        let (shape, data) = read_npy(std::path::Path::new(&path))?;
        let p = kernel
            .params
            .iter()
            .find(|p| p.name == name)
            .ok_or_else(|| format!("--npy {name}: the kernel has no parameter `{name}`"))?;
        let ParamKind::Tensor { dims: pd, .. } = &p.kind else {
            return Err(format!("--npy {name}: `{name}` is not a tensor").into());
        };
        if pd.len() != shape.len() {
            return Err(format!(
                "--npy {name}: {path} has shape {shape:?}, `{name}` has rank {}",
                pd.len()
            )
            .into());
        }
        for (d, &n) in pd.iter().zip(&shape) {
            if let Dim::Sym(sym) = d {
                match dims.get(sym) {
                    Some(&m) if m != n => {
                        return Err(format!(
                            "--npy {name}: `{sym}` is {m} elsewhere but {n} in {path}"
                        )
                        .into())
                    }
                    _ => {
                        dims.insert(sym.clone(), n);
                    }
                }
            }
        }
        npy.insert(name, (shape, data));
    }
    let scalars = numeric_key_values(&args.problem.scalar, "--scalar")?;
    let scalar_names: Vec<String> = kernel
        .params
        .iter()
        .filter(|p| matches!(p.kind, ParamKind::Scalar { .. }))
        .map(|p| p.name.clone())
        .collect();
    let mut given: Vec<&str> = scalars.keys().map(String::as_str).collect();
    given.sort();
    super::inputs::check_names("--scalar", given, "scalar parameter", &scalar_names)?;
    let seed = args.problem.seed.unwrap_or_else(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(1)
    });
    let ranges = super::ranges(&args.problem.range)?;
    super::ranges_name_inputs(
        &ranges,
        kernel.params.iter().filter_map(|p| match &p.kind {
            ParamKind::Tensor { io, .. } if *io != tir::Io::Out => Some(p.name.as_str()),
            _ => None,
        }),
    )?;
    let layouts = layouts(kernel, &dims)?;
    let elements: u128 = layouts.iter().flatten().map(|(_, _, n)| *n as u128).sum();
    super::inputs::check_host_memory(
        elements * 8,
        "the kernel's tensors (8 bytes an element in the interpreter)",
    )?;
    println!("kernel {} (seed {seed})", kernel.name);
    let mut host_args = host_args(kernel, &layouts, &npy, &scalars, &ranges, seed)?;
    interp::run(kernel, &mut host_args)?;
    if let Some(dir) = &args.out {
        write_outputs(dir, kernel, &host_args)?;
    }
    println!(
        "{:<10} {:<6} {:<18} {:>11} {:>11} {:>11} {:>8}",
        "output", "dtype", "shape", "min", "max", "mean", "unset"
    );
    for (p, a) in kernel.params.iter().zip(&host_args) {
        if let (ParamKind::Tensor { io, .. }, HostArg::Tensor(t)) = (&p.kind, a) {
            if *io == tir::Io::In {
                continue;
            }
            let written: Vec<f64> = t.data.iter().copied().filter(|x| !x.is_nan()).collect();
            let (mn, mx) = written
                .iter()
                .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), &x| {
                    (a.min(x), b.max(x))
                });
            let mean = written.iter().sum::<f64>() / written.len().max(1) as f64;
            println!(
                "{:<10} {:<6} {:<18} {:>11.4e} {:>11.4e} {:>11.4e} {:>8}",
                p.name,
                t.dtype.name(),
                format!("{:?}", t.shape),
                mn,
                mx,
                mean,
                t.data.len() - written.len()
            );
        }
    }
    Ok(())
}

/// Each tensor parameter's shape, strides and the elements its strides reach (None for scalars),
/// from the shape symbols' values: computed, with overflow refused, before anything is allocated.
type Layout = (Vec<usize>, Vec<usize>, usize);

fn layouts(
    kernel: &tir::Kernel,
    dims: &HashMap<String, usize>,
) -> Result<Vec<Option<Layout>>, Box<dyn std::error::Error>> {
    let size = |ds: &[Dim]| {
        ds.iter()
            .map(|d| match d {
                Dim::Const(c) => Ok(*c as usize),
                Dim::Sym(s) => dims
                    .get(s)
                    .copied()
                    .ok_or_else(|| format!("give the size of `{s}` with --shape {s}=...")),
            })
            .collect::<Result<Vec<_>, _>>()
    };
    let mut out = Vec::new();
    for p in &kernel.params {
        let ParamKind::Tensor {
            dims: pd, strides, ..
        } = &p.kind
        else {
            out.push(None);
            continue;
        };
        let shape = size(pd)?;
        let dense = super::inputs::elements(&p.name, &shape)?;
        let (strides, span) = match strides {
            Some(st) => {
                let st = size(st)?;
                // One past the largest index the strides reach, as HostTensor::span computes it.
                let span = shape
                    .iter()
                    .zip(&st)
                    .try_fold(1usize, |a, (&d, &s)| {
                        a.checked_add(d.saturating_sub(1).checked_mul(s)?)
                    })
                    .ok_or_else(|| format!("tensor `{}`: its strides reach too far", p.name))?;
                (st, if dense == 0 { 0 } else { span })
            }
            // Dense strides are partial products of the shape, safe once the count is (an empty
            // tensor's may overflow, and nothing is at any stride).
            None if dense == 0 => (vec![1; shape.len()], 0),
            None => (tessel_runtime::format::dense_strides(&shape), dense),
        };
        out.push(Some((shape, strides, span)));
    }
    Ok(out)
}

/// The interpreter's arguments: `.npy` contents where given, random inputs, NaN-poisoned outputs.
fn host_args(
    kernel: &tir::Kernel,
    layouts: &[Option<Layout>],
    npy: &HashMap<String, (Vec<usize>, Vec<f64>)>,
    scalars: &HashMap<String, f64>,
    ranges: &HashMap<String, (f64, f64)>,
    seed: u64,
) -> Result<Vec<HostArg>, Box<dyn std::error::Error>> {
    let mut next = super::run::uniform_stream(seed);
    let mut host_args = Vec::new();
    for (p, layout) in kernel.params.iter().zip(layouts) {
        host_args.push(match (&p.kind, layout) {
            (ParamKind::Tensor { io, dtype, .. }, Some((shape, strides, n))) => {
                let (shape, strides, n) = (shape.clone(), strides.clone(), *n);
                if let Some((file_shape, data)) = npy.get(&p.name) {
                    if *file_shape != shape {
                        return Err(format!(
                            "--npy {}: shape {file_shape:?} where {shape:?} is needed",
                            p.name
                        )
                        .into());
                    }
                    host_args.push(HostArg::Tensor(HostTensor::new(
                        *dtype,
                        shape,
                        data.clone(),
                    )));
                    continue;
                }
                let mut t = HostTensor::strided(*dtype, shape, strides, vec![]);
                t.data = if *io == tir::Io::Out {
                    let poison = if dtype.is_float() {
                        f64::NAN
                    } else {
                        i32::MIN as f64
                    };
                    vec![poison; n]
                } else {
                    let range = ranges.get(&p.name).copied().unwrap_or((-1.0, 1.0));
                    (0..n)
                        .map(|_| interp::round(*dtype, super::run::in_range(next(), range)))
                        .collect()
                };
                HostArg::Tensor(t)
            }
            _ => HostArg::Scalar(scalars.get(&p.name).copied().unwrap_or(1.0)),
        });
    }
    Ok(host_args)
}

/// Every shape symbol a kernel's tensors declare (dimensions and strides), each once.
fn shape_symbols(kernel: &tir::Kernel) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for p in &kernel.params {
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

/// Writes each output tensor of a finished run as DIR/NAME.npy, in its logical (row-major) order.
fn write_outputs(
    dir: &std::path::Path,
    kernel: &tir::Kernel,
    host_args: &[HostArg],
) -> Result<(), Box<dyn std::error::Error>> {
    use npyz::WriterBuilder;
    std::fs::create_dir_all(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    for (p, a) in kernel.params.iter().zip(host_args) {
        let (ParamKind::Tensor { io, .. }, HostArg::Tensor(t)) = (&p.kind, a) else {
            continue;
        };
        if *io == tir::Io::In {
            continue;
        }
        // Element i of the logical order, wherever the strides put it.
        let values = (0..t.shape.iter().product::<usize>()).map(|mut i| {
            let mut at = 0;
            for (d, s) in t.shape.iter().zip(&t.strides).rev() {
                at += (i % d) * s;
                i /= d;
            }
            t.data[at]
        });
        let path = dir.join(format!("{}.npy", p.name));
        let file = std::fs::File::create(&path)
            .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
        let shape: Vec<u64> = t.shape.iter().map(|&d| d as u64).collect();
        let io_err = |e: std::io::Error| format!("{}: {e}", path.display());
        let buf = std::io::BufWriter::new(file);
        match t.dtype {
            tir::DType::F16 => {
                let mut w = npyz::WriteOptions::<half::f16>::new()
                    .default_dtype()
                    .shape(&shape)
                    .writer(buf)
                    .begin_nd()
                    .map_err(io_err)?;
                w.extend(values.map(half::f16::from_f64)).map_err(io_err)?;
                w.finish().map_err(io_err)?;
            }
            tir::DType::I32 | tir::DType::Bool => {
                let mut w = npyz::WriteOptions::<i32>::new()
                    .default_dtype()
                    .shape(&shape)
                    .writer(buf)
                    .begin_nd()
                    .map_err(io_err)?;
                w.extend(values.map(|v| v as i32)).map_err(io_err)?;
                w.finish().map_err(io_err)?;
            }
            _ => {
                let mut w = npyz::WriteOptions::<f32>::new()
                    .default_dtype()
                    .shape(&shape)
                    .writer(buf)
                    .begin_nd()
                    .map_err(io_err)?;
                w.extend(values.map(|v| v as f32)).map_err(io_err)?;
                w.finish().map_err(io_err)?;
            }
        }
        println!("wrote {}", path.display());
    }
    Ok(())
}

/// A C-order .npy array as f64 values, with its shape.
fn read_npy(path: &std::path::Path) -> Result<(Vec<usize>, Vec<f64>), String> {
    let open = || -> Result<npyz::NpyFile<std::io::BufReader<std::fs::File>>, String> {
        let f = std::fs::File::open(path)
            .map_err(|e| format!("cannot open {}: {e}", path.display()))?;
        npyz::NpyFile::new(std::io::BufReader::new(f))
            .map_err(|e| format!("{}: not a .npy file: {e}", path.display()))
    };
    let file = open()?;
    if file.order() != npyz::Order::C {
        return Err(format!(
            "{}: Fortran-order arrays are not supported; save with np.ascontiguousarray",
            path.display()
        ));
    }
    let shape: Vec<usize> = file.shape().iter().map(|&d| d as usize).collect();
    let bad = |e: std::io::Error| format!("{}: {e}", path.display());
    let descr = file.dtype().descr();
    let data: Vec<f64> = match descr.trim_matches('\'').trim_start_matches(['<', '|', '=']) {
        "f8" => file.into_vec::<f64>().map_err(bad)?,
        "f4" => file
            .into_vec::<f32>()
            .map_err(bad)?
            .into_iter()
            .map(f64::from)
            .collect(),
        "f2" => file
            .into_vec::<half::f16>()
            .map_err(bad)?
            .into_iter()
            .map(f64::from)
            .collect(),
        "i4" => file
            .into_vec::<i32>()
            .map_err(bad)?
            .into_iter()
            .map(f64::from)
            .collect(),
        other => {
            return Err(format!(
                "{}: element type `{other}` is not supported (f8, f4, f2, i4)",
                path.display()
            ))
        }
    };
    Ok((shape, data))
}
