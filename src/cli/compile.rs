use std::path::PathBuf;

use clap::{Args, ValueEnum};
use tessel_compiler::driver::compile_kernel_with;
use tessel_compiler::sched::{SchedOptions, Strategy};
use tessel_compiler::Target;

/// Which stage `--emit` prints.
#[derive(Clone, Copy, ValueEnum)]
pub enum Stage {
    Tir,
    Sched,
    Mlir,
    Llvm,
    Ptx,
}

#[derive(Args)]
pub struct CompileArgs {
    /// The .tsl source file.
    pub file: PathBuf,
    /// The kernel to compile (default: the file's only kernel).
    #[arg(long)]
    pub kernel: Option<String>,
    /// Compile-time parameter values, e.g. -D BLOCK=1024 -D T=bf16.
    #[arg(short = 'D', value_name = "NAME=VALUE")]
    pub defines: Vec<String>,
    /// GPU architecture (see `tessel targets`).
    #[arg(long, default_value = "sm_90a")]
    pub arch: String,
    /// The stage to print or write.
    #[arg(long, value_enum, default_value = "ptx")]
    pub emit: Stage,
    /// Where to write it; `-` for standard output.
    #[arg(short, long, default_value = "-")]
    pub output: PathBuf,
    /// Warps per block, overriding the kernel's `@num_warps`.
    #[arg(long)]
    pub num_warps: Option<u32>,
    /// Software-pipelining depth of global→shared copies, overriding `@stages`.
    #[arg(long)]
    pub stages: Option<usize>,
    /// How the warps tile a dot's output, ROWSxCOLS (e.g. 2x4), overriding `@warps`.
    #[arg(long, value_name = "WMxWN", value_parser = parse_warps)]
    pub warps: Option<(usize, usize)>,
    /// Blocks that must fit on one SM at once (caps registers), overriding `@occupancy`.
    #[arg(long)]
    pub occupancy: Option<u32>,
    /// The code-generation strategy, overriding the target's own: hopper (wgmma; sm_90a, kernels
    /// whose dots it carries), ampere (mma.sync, ldmatrix, cp.async) or simt (FMA dots, element
    /// copies).
    #[arg(long, value_parser = parse_strategy)]
    pub strategy: Option<Strategy>,
    /// On sm_90a, also take the Hopper strategy for dots in forms not yet verified on a GPU (B
    /// read K-major, A from registers: flash attention's forward and dQ, the x·Wᵀ projections)
    #[arg(long)]
    pub hopper_preview: bool,
    /// Also write an AOT package (manifest + PTX) the runtime loads: `tessel run`/`bench` take it.
    #[arg(long, value_name = "FILE.tpkg")]
    pub package: Option<PathBuf>,
    /// Print how long each compiler stage took (to standard error).
    #[arg(long)]
    pub timings: bool,
    /// Build the package over every kernel of the file and every combination of these values,
    /// e.g. --variant D=64,128 --variant CAUSAL=false,true (entries are named
    /// `kernel[D=128,CAUSAL=true]`; the runtime selects them by constant). Needs --package.
    #[arg(long, value_name = "NAME=V1,V2,...", requires = "package")]
    pub variant: Vec<String>,
}

pub fn run(args: CompileArgs) -> super::CliResult {
    let target = Target::lookup(&args.arch)?;
    compile_file(&args, &args.file, target)
}

fn compile_file(args: &CompileArgs, file: &std::path::Path, target: Target) -> super::CliResult {
    if !args.variant.is_empty() {
        return compile_variants(args, file, target);
    }
    let source = super::lang::SourceArgs {
        file: file.to_path_buf(),
        defines: args.defines.clone(),
    };
    let kernels = super::lang::front_end(&source)?;
    let kernel = match &args.kernel {
        Some(name) => kernels
            .iter()
            .find(|k| &k.name == name)
            .ok_or_else(|| super::lang::no_kernel(name, &kernels, file))?,
        None if kernels.len() == 1 => &kernels[0],
        None => {
            let names: Vec<&str> = kernels.iter().map(|k| k.name.as_str()).collect();
            return Err(format!(
                "{} has several kernels ({}): choose one with --kernel",
                file.display(),
                names.join(", ")
            )
            .into());
        }
    };
    if let Stage::Tir = args.emit {
        return write(args, &kernel.to_string(), &kernel.name, target);
    }
    let start = std::time::Instant::now();
    let compiled = compile_kernel_with(kernel, target, &sched_options(args))?;
    if args.timings {
        for (stage, t) in &compiled.timings {
            eprintln!("{:>9.1} ms  {stage}", t.as_secs_f64() * 1e3);
        }
        eprintln!(
            "{:>9.1} ms  total ({} for {target})",
            start.elapsed().as_secs_f64() * 1e3,
            kernel.name
        );
    }
    warn_on_spills(&compiled.ptx, &kernel.name, target)?;
    if let Some(path) = &args.package {
        tessel_compiler::package::kernel_package(kernel, &compiled)?.write(path)?;
        eprintln!("wrote package {}", path.display());
    }
    let text = match args.emit {
        Stage::Tir => unreachable!("handled above"),
        Stage::Sched => compiled.schedule.to_string(),
        Stage::Mlir => compiled.mlir.clone(),
        Stage::Llvm => compiled.llvm.clone(),
        Stage::Ptx => compiled.ptx.clone(),
    };
    write(args, &text, &kernel.name, target)
}

fn sched_options(args: &CompileArgs) -> SchedOptions {
    SchedOptions {
        num_warps: args.num_warps,
        stages: args.stages,
        warps: args.warps,
        occupancy: args.occupancy,
        strategy: args.strategy,
        hopper_preview: args.hopper_preview,
    }
}

fn parse_strategy(name: &str) -> Result<Strategy, String> {
    Strategy::parse(name).ok_or_else(|| {
        let known: Vec<&str> = Strategy::ALL.iter().map(|s| s.name()).collect();
        format!("unknown strategy `{name}` (known: {})", known.join(", "))
    })
}

/// `NAME=V1,V2,...` flags as the variant table of a package.
pub fn parse_variants(
    flags: &[String],
) -> Result<Vec<tessel_compiler::package::Variant>, Box<dyn std::error::Error>> {
    Ok(flags
        .iter()
        .map(|f| tessel_compiler::package::parse_variant(f).map_err(|e| format!("--variant {e}")))
        .collect::<Result<_, _>>()?)
}

fn compile_variants(
    args: &CompileArgs,
    file: &std::path::Path,
    target: Target,
) -> super::CliResult {
    let path = args.package.as_ref().ok_or("--variant needs --package")?;
    let source = std::fs::read_to_string(file)
        .map_err(|e| format!("cannot read {}: {e}", file.display()))?;
    let fixed = super::lang::defines(&args.defines)?;
    let variants = parse_variants(&args.variant)?;
    let mut given: Vec<&str> = fixed.keys().map(String::as_str).collect();
    given.sort();
    super::lang::check_declared("-D", &source, given)?;
    super::lang::check_declared(
        "--variant",
        &source,
        variants.iter().map(|(n, _)| n.as_str()),
    )?;
    for (i, (name, _)) in variants.iter().enumerate() {
        if variants[..i].iter().any(|(n, _)| n == name) {
            // A second flag would silently replace the first one's values.
            return Err(format!(
                "--variant {name} is given twice: list every value in one, e.g. --variant {name}=A,B"
            )
            .into());
        }
    }
    // Progress on standard error, drawn only on a terminal (indicatif hides it elsewhere).
    let bar = indicatif::ProgressBar::new(0).with_style(
        indicatif::ProgressStyle::with_template("{bar:30} {pos}/{len} {msg}")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    let start = std::time::Instant::now();
    let built = tessel_compiler::package::source_package_with(
        &source,
        &file.display().to_string(),
        &fixed,
        &variants,
        target,
        &sched_options(args),
        &|name, done, total| {
            bar.set_length(total as u64);
            bar.set_position(done as u64);
            bar.set_message(name.to_string());
        },
    );
    bar.finish_and_clear();
    let built = built?;
    if args.timings {
        for (name, stages) in &built.timings {
            let parts: Vec<String> = stages
                .iter()
                .map(|(stage, t)| format!("{stage} {:.1} ms", t.as_secs_f64() * 1e3))
                .collect();
            eprintln!("{name}: {}", parts.join(", "));
        }
        eprintln!(
            "{:>9.1} ms  total ({} entries for {target}, compiled in parallel)",
            start.elapsed().as_secs_f64() * 1e3,
            built.timings.len()
        );
    }
    for (name, why) in &built.skipped {
        eprintln!("skipped {name} on {target}: {why}");
    }
    for (entry, ptx) in built.package.kernels() {
        warn_on_spills(ptx, &entry.name, target)?;
    }
    built.package.write(path)?;
    eprintln!(
        "wrote package {} ({} kernels for {target})",
        path.display(),
        built.package.len()
    );
    Ok(())
}

/// With $PTXAS set, assembles the PTX and warns when ptxas reports spills to local memory: the
/// kernel is correct but slower than its schedule promises (usually a tile too large for its
/// warps' registers).
fn warn_on_spills(ptx: &str, kernel: &str, target: Target) -> super::CliResult {
    let Some(ptxas) = std::env::var_os("PTXAS") else {
        return Ok(());
    };
    let safe: String = kernel
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect();
    let file = std::env::temp_dir().join(format!("tessel-{}-{safe}.ptx", std::process::id()));
    std::fs::write(&file, ptx).map_err(|e| format!("cannot write {}: {e}", file.display()))?;
    let report = super::demo::ptxas_report(&ptxas.into(), &file, target.name);
    let _ = std::fs::remove_file(&file);
    let report = report?;
    if report.spills.parse::<u64>().is_ok_and(|b| b > 0) {
        eprintln!(
            "warning: `{kernel}` spills {} bytes to local memory on {target} ({} registers, per \
             ptxas): try smaller tiles or more warps",
            report.spills, report.registers
        );
    }
    Ok(())
}

fn write(args: &CompileArgs, text: &str, kernel: &str, target: Target) -> super::CliResult {
    if args.output.as_os_str() == "-" {
        use std::io::Write;
        // A closed pipe (`| head`) ends the output quietly instead of panicking in print!.
        let _ = std::io::stdout().write_all(text.as_bytes());
    } else {
        std::fs::write(&args.output, text)
            .map_err(|e| format!("cannot write {}: {e}", args.output.display()))?;
        eprintln!(
            "wrote {} ({kernel} for {target}, {} bytes)",
            args.output.display(),
            text.len()
        );
    }
    Ok(())
}

fn parse_warps(s: &str) -> Result<(usize, usize), String> {
    let (a, b) = s
        .split_once('x')
        .ok_or_else(|| format!("`{s}`: expected ROWSxCOLS, e.g. 2x2"))?;
    // Whether the grid tiles the block is the scheduler's rule, as for `@warps`.
    let n = |t: &str| {
        t.parse::<usize>()
            .map_err(|_| format!("`{t}` is not a number of warps"))
    };
    Ok((n(a)?, n(b)?))
}
