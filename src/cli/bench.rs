//! `tessel bench`: times one kernel of a package with CUDA events: warm-up, then the median of
//! many launches, rotating through enough input sets that their total exceeds the L2 cache, so a
//! memory-bound kernel is measured against DRAM, not cache.

use std::collections::HashMap;
use std::path::PathBuf;

use clap::Args;
use tessel_runtime::format::Package;
use tessel_runtime::{Device, LoadedPackage};

use super::numeric_key_values;
use tessel_runtime::format::{DType, ParamSpec};
use tessel_runtime::{Arg, DeviceTensor};

use super::run::{concrete_shape, random_values};

#[derive(Args)]
pub struct BenchArgs {
    pub package: PathBuf,
    /// The kernel (or give --cases).
    #[arg(long, required_unless_present = "cases")]
    pub kernel: Option<String>,
    /// Values of the shape symbols, e.g. --shape M=100,N=64,K=40.
    #[arg(long, value_delimiter = ',')]
    pub shape: Vec<String>,
    /// Values of scalar parameters, e.g. --scalar scale=0.125 (default 1).
    #[arg(long, value_delimiter = ',')]
    pub scalar: Vec<String>,
    /// Time many problems with one package load: a file of lines `KERNEL SHAPE [SCALARS]`
    /// (e.g. `flash_attention_fwd[D=128,CAUSAL=true] B=4,HQ=16,HKV=16,NQ=4096,NK=4096 scale=0.088`),
    /// each timed in turn (with --json, one JSON line each).
    #[arg(long, conflicts_with_all = ["kernel", "shape", "scalar"])]
    pub cases: Option<PathBuf>,
    /// Timed launches.
    #[arg(long, default_value_t = 200)]
    pub iters: usize,
    #[arg(long, default_value_t = 20)]
    pub warmup: usize,
    /// Bytes the rotating input sets must exceed together (default 256 MiB: 5× an H100's L2).
    #[arg(long, default_value_t = 256 << 20)]
    pub rotate_bytes: usize,
    /// Print one JSON object instead of a table row.
    #[arg(long)]
    pub json: bool,
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

pub fn run(args: BenchArgs) -> super::CliResult {
    let package = Package::read(&args.package)?;
    let mut cases = Vec::new();
    match &args.cases {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
            for (n, line) in text.lines().enumerate() {
                let words: Vec<&str> = line.split_whitespace().collect();
                match words.as_slice() {
                    [] => continue,
                    [kernel, shape, rest @ ..] if rest.len() <= 1 => {
                        let split = |w: &str| w.split(',').map(String::from).collect::<Vec<_>>();
                        cases.push((
                            kernel.to_string(),
                            split(shape),
                            rest.first().map(|w| split(w)).unwrap_or_default(),
                        ));
                    }
                    _ => {
                        return Err(format!(
                            "{}:{}: expected `KERNEL SHAPE [SCALARS]`",
                            path.display(),
                            n + 1
                        )
                        .into())
                    }
                }
            }
        }
        None => cases.push((
            args.kernel.clone().unwrap_or_default(),
            args.shape.clone(),
            args.scalar.clone(),
        )),
    }
    // Every entry is checked to exist, and every case's sizes and names, before the device is
    // touched.
    for (kernel, shape, scalar) in &cases {
        let entry = package.kernel(kernel)?.0;
        let symbols = sizes_f64(shape)?;
        let scalars = numeric_key_values(scalar, "--scalar")?;
        super::run::check_problem_names(entry, &symbols, &scalars)?;
    }
    let dev = Device::open(0)?;
    let loaded = LoadedPackage::load(&dev, package)?;
    let mut pool = TensorPool::default();
    for (kernel, shape, scalar) in &cases {
        bench_one(&args, &mut pool, &dev, &loaded, kernel, shape, scalar)?;
    }
    Ok(())
}

/// A non-shape parameter of a timed launch: a tensor to draw, or a scalar's value.
enum BenchParam {
    Tensor(DType, Vec<usize>),
    Scalar(f64),
}

fn bench_params(
    entry: &tessel_runtime::format::KernelEntry,
    symbols: &HashMap<String, f64>,
    scalars: &HashMap<String, f64>,
) -> Result<Vec<BenchParam>, String> {
    let mut out = Vec::new();
    for p in &entry.params {
        match p {
            ParamSpec::Tensor {
                name, dtype, dims, ..
            } => out.push(BenchParam::Tensor(
                *dtype,
                concrete_shape(name, dims, symbols)?,
            )),
            ParamSpec::Scalar { name, .. } => out.push(BenchParam::Scalar(
                scalars.get(name).copied().unwrap_or(1.0),
            )),
            ParamSpec::Shape { .. } | ParamSpec::TensorMap { .. } => {}
        }
    }
    Ok(out)
}

/// The launch arguments: `tensors` (one per tensor parameter, in order) with the scalars.
fn bench_args<'t>(tensors: &'t [DeviceTensor], params: &[BenchParam]) -> Vec<Arg<'t>> {
    let mut tensors = tensors.iter();
    params
        .iter()
        .filter_map(|p| match p {
            BenchParam::Tensor(..) => tensors.next().map(Arg::Tensor),
            BenchParam::Scalar(v) => Some(Arg::Scalar(*v)),
        })
        .collect()
}

/// Device tensors kept between the cases of one run, by dtype and element count: a case reuses
/// (reshaped) the random inputs an earlier case uploaded instead of drawing and copying its own,
/// so a long `--cases` list costs GPU time, not host time.
#[derive(Default)]
struct TensorPool {
    free: HashMap<(DType, usize), Vec<DeviceTensor>>,
    draws: u64,
}

impl TensorPool {
    /// One tensor per tensor parameter of `params`, in order.
    fn take(
        &mut self,
        dev: &Device,
        params: &[BenchParam],
    ) -> Result<Vec<DeviceTensor>, Box<dyn std::error::Error>> {
        let mut out = Vec::new();
        for p in params {
            let BenchParam::Tensor(dtype, shape) = p else {
                continue;
            };
            let numel: usize = shape.iter().product();
            let mut tensor = match self.free.get_mut(&(*dtype, numel)).and_then(Vec::pop) {
                Some(t) => t,
                None => {
                    self.draws += 1;
                    let data = random_values(numel, self.draws);
                    DeviceTensor::from_f64(dev, *dtype, &[numel], &data)?
                }
            };
            tensor.reshape(shape)?;
            out.push(tensor);
        }
        Ok(out)
    }

    fn give_back(&mut self, set: Vec<DeviceTensor>) {
        for t in set {
            self.free.entry((t.dtype, t.numel())).or_default().push(t);
        }
    }
}

fn bench_one(
    args: &BenchArgs,
    pool: &mut TensorPool,
    dev: &Device,
    loaded: &LoadedPackage,
    kernel: &str,
    shape: &[String],
    scalar: &[String],
) -> super::CliResult {
    let entry = loaded.entry(kernel)?.clone();
    let symbols = sizes_f64(shape)?;
    let scalars = numeric_key_values(scalar, "--scalar")?;
    let params = bench_params(&entry, &symbols, &scalars)?;
    let set_bytes: usize = params
        .iter()
        .map(|p| match p {
            BenchParam::Tensor(dtype, shape) => shape.iter().product::<usize>() * dtype.size(),
            BenchParam::Scalar(_) => 0,
        })
        .sum::<usize>()
        .max(1);
    let sets = args.rotate_bytes.div_ceil(set_bytes).clamp(1, 64);
    let mut tensor_sets = Vec::with_capacity(sets);
    for _ in 0..sets {
        tensor_sets.push(pool.take(dev, &params)?);
    }
    let launch = |i: usize| {
        loaded
            .launch(
                dev,
                &entry.name,
                &bench_args(&tensor_sets[i % sets], &params),
            )
            .map(|_| ())
    };
    for i in 0..args.warmup {
        launch(i)?;
    }
    dev.synchronize()?;
    let mut times = Vec::with_capacity(args.iters);
    for i in 0..args.iters.max(1) {
        times.push(dev.time_ms(|| launch(i))? as f64);
    }
    let min = times.iter().copied().fold(f64::INFINITY, f64::min);
    let med = median(&mut times);
    let plan = loaded.launch(dev, &entry.name, &bench_args(&tensor_sets[0], &params))?;
    dev.synchronize()?;
    let lookup = |s: &str| plan.symbols.get(s).copied();
    let flops = entry.flops.as_ref().and_then(|e| e.eval(&lookup));
    let bytes = entry.bytes.as_ref().and_then(|e| e.eval(&lookup));
    let tflops = flops.map(|f| f as f64 / (med * 1e-3) / 1e12);
    let gbps = bytes.map(|b| b as f64 / (med * 1e-3) / 1e9);
    for set in tensor_sets {
        pool.give_back(set);
    }
    let shape: HashMap<&String, &f64> = symbols.iter().collect();
    if args.json {
        let v = serde_json::json!({
            "kernel": entry.name, "device": dev.name()?, "shape": shape, "median_ms": med, "min_ms": min,
            "iters": args.iters, "input_sets": sets, "tflops": tflops, "gbps": gbps,
        });
        println!("{v}");
    } else {
        println!(
            "{:<12} {:>10} {:>10} {:>9} {:>9} {:>5}",
            "kernel", "median ms", "min ms", "GB/s", "TFLOP/s", "sets"
        );
        let f = |x: Option<f64>| x.map(|v| format!("{v:.1}")).unwrap_or_else(|| "-".into());
        println!(
            "{:<12} {:>10.4} {:>10.4} {:>9} {:>9} {:>5}",
            entry.name,
            med,
            min,
            f(gbps),
            f(tflops),
            sets
        );
    }
    Ok(())
}

/// `--shape` sizes (whole numbers within i32, see `inputs::sizes`) as the f64 values the shape
/// helpers take.
fn sizes_f64(shape: &[String]) -> Result<HashMap<String, f64>, String> {
    Ok(super::inputs::sizes(shape)?
        .into_iter()
        .map(|(k, v)| (k, v as f64))
        .collect())
}
