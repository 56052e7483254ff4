use std::path::PathBuf;
use std::process::Command;
use std::time::Instant;

use clap::Args;
use tessel_compiler::ptx::PtxStats;
use tessel_compiler::target::TARGETS;

#[derive(Args)]
pub struct DemoArgs {
    /// Directory the PTX files are written to.
    #[arg(long, default_value = "target/demo")]
    pub out_dir: PathBuf,
    /// ptxas used to report registers and spills (default: $PTXAS).
    #[arg(long, env = "PTXAS")]
    pub ptxas: Option<PathBuf>,
}

/// What `ptxas -v` says about one entry.
pub(crate) struct PtxasReport {
    pub registers: String,
    pub spills: String,
}

pub(crate) fn ptxas_report(
    ptxas: &PathBuf,
    file: &PathBuf,
    arch: &str,
) -> Result<PtxasReport, String> {
    let out = Command::new(ptxas)
        .args([&format!("-arch={arch}"), "-v"])
        .arg(file)
        .args(["-o", "/dev/null"])
        .output()
        .map_err(|e| format!("cannot run {}: {e}", ptxas.display()))?;
    let log = String::from_utf8_lossy(&out.stderr);
    if !out.status.success() {
        return Err(format!("ptxas rejected {}:\n{log}", file.display()));
    }
    let find = |key: &str| {
        log.split([',', '\n'])
            .find(|s| s.contains(key))
            .and_then(|s| s.split_whitespace().find(|w| w.parse::<u32>().is_ok()))
            .unwrap_or("?")
            .to_string()
    };
    Ok(PtxasReport {
        registers: find("registers"),
        spills: find("spill stores"),
    })
}

/// `NAME=VALUE` compile-time values.
type Defines = &'static [(&'static str, &'static str)];

/// Example files compiled from source (built into the binary: `super::examples`), each with
/// its -D values and the suffix of its output names. Every kernel of a file is built.
const DSL_FILES: [(&str, Defines, &str); 17] = [
    ("dsl-examples/elementwise.tsl", &[("T", "f32")], "_f32"),
    ("dsl-examples/elementwise.tsl", &[("T", "bf16")], "_bf16"),
    ("dsl-examples/elementwise.tsl", &[("T", "f16")], "_f16"),
    ("dsl-examples/activation.tsl", &[], ""),
    ("dsl-examples/matmul.tsl", &[], ""),
    // 128-column tiles: on sm_90a, wgmma.m64n128k16 (tests/filetests/sched/hopper_matmul.tsl).
    ("dsl-examples/matmul.tsl", &[("BN", "128")], "_bn128"),
    // Narrower K (and N) blocks: the 64- and 32-byte swizzles (tests/filetests/sched/hopper_*).
    ("dsl-examples/matmul.tsl", &[("BK", "32")], "_bk32"),
    (
        "dsl-examples/matmul.tsl",
        &[("BK", "16"), ("BN", "32")],
        "_bk16",
    ),
    ("dsl-examples/softmax.tsl", &[], ""),
    ("dsl-examples/flash_attention.tsl", &[], ""),
    ("dsl-examples/lightning_attention.tsl", &[], ""),
    ("dsl-examples/gla.tsl", &[], ""),
    (
        "dsl-examples/gla.tsl",
        &[("D", "128"), ("E", "128")],
        "_128",
    ),
    ("dsl-examples/flash_gau.tsl", &[], ""),
    (
        "dsl-examples/flash_gau.tsl",
        &[("CAUSAL", "true")],
        "_causal",
    ),
    ("dsl-examples/scan.tsl", &[], ""),
    ("dsl-examples/strided.tsl", &[], ""),
];

/// Writes one kernel's PTX and package into the output directory and prints its row.
fn emit(
    args: &DemoArgs,
    name: &str,
    arch: &str,
    ptx: &str,
    package: &tessel_runtime::format::PackageBuilder,
    seconds: f64,
) -> super::CliResult {
    package.write(&args.out_dir.join(format!("{name}.{arch}.tpkg")))?;
    let file = args.out_dir.join(format!("{name}.{arch}.ptx"));
    row(args, name, &file, arch, ptx, seconds)
}

/// Writes `ptx` to `file` and prints its row of the table (ptxas's registers and spills too).
fn row(
    args: &DemoArgs,
    name: &str,
    file: &PathBuf,
    arch: &str,
    ptx: &str,
    seconds: f64,
) -> super::CliResult {
    std::fs::write(file, ptx)?;
    let stats = PtxStats::of(ptx);
    let report = match &args.ptxas {
        Some(p) => ptxas_report(p, file, arch)?,
        None => PtxasReport {
            registers: "-".into(),
            spills: "-".into(),
        },
    };
    println!(
        "{:<46} {:<7} {:>5} {:>7} {:>5} {:>5} {:>5} {:>5} {:>5} {:>5} {:>5} {:>7.1}ms",
        name,
        arch,
        stats.version.clone().unwrap_or_default(),
        stats.instructions,
        report.registers,
        report.spills,
        stats.count("fma.rn"),
        stats.count("wgmma.mma_async"),
        stats.count("mma.sync"),
        stats.count("ldmatrix"),
        stats.count("cp.async"),
        seconds * 1e3
    );
    Ok(())
}

pub fn run(args: DemoArgs) -> super::CliResult {
    std::fs::create_dir_all(&args.out_dir)?;
    println!(
        "{:<46} {:<7} {:>5} {:>7} {:>5} {:>5} {:>5} {:>5} {:>5} {:>5} {:>5} {:>9}",
        "kernel",
        "arch",
        "ptx",
        "instrs",
        "regs",
        "spill",
        "fma",
        "wgmma",
        "mma",
        "ldmat",
        "cpasy",
        "compile"
    );
    // Kernels compiled from .tsl source, for every target the scheduler can place them on.
    for (file, defines, suffix) in DSL_FILES {
        let source = super::examples::source(file)?;
        let overrides = defines
            .iter()
            .map(|(k, v)| {
                (
                    k.to_string(),
                    tessel_compiler::sema::parse_const(v).expect("a valid define"),
                )
            })
            .collect();
        let kernels = tessel_compiler::sema::compile_source(source, &overrides)
            .map_err(|d| tessel_compiler::diag::render_all(&d, file, source))?;
        for kernel in &kernels {
            let out = format!("dsl_{}{suffix}", kernel.name);
            for target in TARGETS {
                let start = Instant::now();
                let compiled = tessel_compiler::driver::compile_kernel(kernel, *target)?;
                let elapsed = start.elapsed().as_secs_f64();
                let package = tessel_compiler::package::kernel_package(kernel, &compiled)?;
                emit(&args, &out, target.name, &compiled.ptx, &package, elapsed)?;
            }
        }
    }
    // Operator packages: every kernel of a file over the variants an operator of the runtime
    // selects from, as its spec declares them (tessel_runtime::spec).
    for spec in tessel_runtime::OPERATORS {
        let (file, name) = (spec.source, spec.package);
        let source = super::examples::source(file)?;
        let variants = super::compile::parse_variants(&spec.variant_flags())?;
        for target in TARGETS {
            let start = Instant::now();
            let built = tessel_compiler::package::source_package(
                source,
                file,
                &Default::default(),
                &variants,
                *target,
                &Default::default(),
            )?;
            let package = built.package;
            let per_kernel = start.elapsed().as_secs_f64() / package.len().max(1) as f64;
            for (name, why) in &built.skipped {
                println!("{name:<46} {:<7} not built: {why}", target.name);
            }
            package.write(&args.out_dir.join(format!("{name}.{}.tpkg", target.name)))?;
            for (entry, ptx) in package.kernels() {
                let file_name: String = entry
                    .name
                    .chars()
                    .map(|c| {
                        if c.is_ascii_alphanumeric() || c == '_' {
                            c
                        } else {
                            '.'
                        }
                    })
                    .collect();
                row(
                    &args,
                    &entry.name,
                    &args.out_dir.join(format!(
                        "{name}.{}.{}.ptx",
                        file_name.trim_end_matches('.'),
                        target.name
                    )),
                    target.name,
                    ptx,
                    per_kernel,
                )?;
            }
        }
    }
    if args.ptxas.is_none() {
        println!("(set PTXAS to have ptxas validate each file and report registers)");
    } else {
        println!(
            "ptxas accepted every file; PTX is in {}",
            args.out_dir.display()
        );
    }
    Ok(())
}
