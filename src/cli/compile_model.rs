//! `tessel compile-model MODEL_DIR -o tnl.tpkg`: every kernel variant a model's graphs call, in
//! one package, compiled in parallel.

use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

use clap::Args;
use tessel_compiler::driver::compile_kernel_with;
use tessel_compiler::package::kernel_entry;
use tessel_compiler::sched::SchedOptions;
use tessel_compiler::Target;
use tessel_models::graph::KernelRef;
use tessel_models::transnormer::config::ModelConfig;
use tessel_models::transnormer::{Tiles, Transnormer};
use tessel_package::{KernelEntry, PackageBuilder};

#[derive(Args)]
pub struct CompileModelArgs {
    /// A model directory (its config.json; the weights are not read), a config.json, or a
    /// released shape (385m, 1b, 7b, tnl2-3b, tnl3-15b); LongNet configurations (a
    /// DecoderConfig JSON, longnet-tiny/-small/-base) are recognised by their fields.
    pub model: String,
    /// GPU architecture (see `tessel targets`).
    #[arg(long, default_value = "sm_90a")]
    pub arch: String,
    /// The package to write.
    #[arg(short, long)]
    pub output: PathBuf,
    /// Kernels compiled at once (default: the machine's cores).
    #[arg(long)]
    pub jobs: Option<usize>,
    /// Also build the kernels of a rank of an N-way tensor-parallel split (the package then
    /// serves `generate` with and without `--tensor-parallel N`).
    #[arg(long, default_value_t = 1, value_name = "N")]
    pub tensor_parallel: usize,
}

type Built = Result<(KernelEntry, String), String>;

fn build(k: &KernelRef, target: Target) -> Built {
    let kernel = tessel_models::backend::compile(k).map_err(|e| e.to_string())?;
    let compiled = compile_kernel_with(&kernel, target, &SchedOptions::default())
        .map_err(|e| format!("{}: {e}", k.display()))?;
    let mut entry = kernel_entry(&kernel, &compiled).map_err(|e| e.to_string())?;
    entry.name = tessel_models::backend_gpu::entry_name(k);
    Ok((entry, compiled.ptx))
}

/// The configuration `what` names: a released shape, a config.json, or a directory holding one.
pub fn config(what: &str) -> Result<ModelConfig, Box<dyn std::error::Error>> {
    if let Some(c) = ModelConfig::released(what) {
        return Ok(c);
    }
    let path = std::path::Path::new(what);
    let file = if path.is_dir() {
        path.join("config.json")
    } else {
        path.to_path_buf()
    };
    Ok(ModelConfig::read(&file)?)
}

pub fn run(args: CompileModelArgs) -> super::CliResult {
    let target = Target::lookup(&args.arch)?;
    let kernels = if tessel_models::longnet::config::is_longnet(&args.model) {
        super::longnet::kernels(&args.model)?
    } else {
        let model = Transnormer::new(config(&args.model)?, Tiles::gpu());
        let mut k = model.kernels();
        if args.tensor_parallel > 1 {
            k.extend(model.rank_model(args.tensor_parallel)?.kernels());
            k.sort();
            k.dedup();
        }
        k
    };
    let jobs = args
        .jobs
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
        .clamp(1, kernels.len().max(1));
    let start = std::time::Instant::now();
    let results: Vec<Mutex<Option<Built>>> = kernels.iter().map(|_| Mutex::new(None)).collect();
    // The first compile runs alone: LLVM's one-time target registration is not made to race.
    if let Some(first) = kernels.first() {
        *results[0].lock().unwrap() = Some(build(first, target));
    }
    let next = AtomicUsize::new(1);
    std::thread::scope(|s| {
        for _ in 0..jobs {
            s.spawn(|| loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(k) = kernels.get(i) else { break };
                *results[i].lock().unwrap() = Some(build(k, target));
            });
        }
    });
    let mut b = PackageBuilder::new(target.name, &target.ptx.to_string());
    for r in results {
        let (entry, ptx) = r.into_inner().unwrap().expect("every kernel was built")?;
        b.add(entry, &ptx)?;
    }
    b.write(&args.output)?;
    eprintln!(
        "wrote {} ({} kernels for {target} in {:.1} s, {jobs} jobs)",
        args.output.display(),
        kernels.len(),
        start.elapsed().as_secs_f64()
    );
    Ok(())
}
