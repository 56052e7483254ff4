use std::path::PathBuf;
use std::process::Command;
use std::time::Instant;

use clap::Args;
use tessel_compiler::codegen::compile_elementwise;
use tessel_compiler::lower::elementwise::{kernel_name, ElemType};
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
struct PtxasReport {
    registers: String,
    spills: String,
}

fn ptxas_report(ptxas: &PathBuf, file: &PathBuf, arch: &str) -> Result<PtxasReport, String> {
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

pub fn run(args: DemoArgs) -> super::CliResult {
    std::fs::create_dir_all(&args.out_dir)?;
    println!(
        "{:<10} {:<7} {:>6} {:>7} {:>5} {:>5} {:>6} {:>8}",
        "kernel", "arch", "ptx", "instrs", "regs", "spill", "fma", "compile"
    );
    for dtype in ElemType::ALL {
        for target in TARGETS {
            let start = Instant::now();
            let ptx = compile_elementwise(dtype, *target)?;
            let elapsed = start.elapsed();
            let name = kernel_name(dtype);
            let file = args.out_dir.join(format!("{name}.{}.ptx", target.name));
            std::fs::write(&file, &ptx)?;
            tessel_compiler::package::fma_package(dtype, *target)?
                .write(&args.out_dir.join(format!("{name}.{}.tpkg", target.name)))?;
            let stats = PtxStats::of(&ptx);
            let report = match &args.ptxas {
                Some(p) => ptxas_report(p, &file, target.name)?,
                None => PtxasReport {
                    registers: "-".into(),
                    spills: "-".into(),
                },
            };
            println!(
                "{:<10} {:<7} {:>6} {:>7} {:>5} {:>5} {:>6} {:>6.1}ms",
                name,
                target.name,
                stats.version.clone().unwrap_or_default(),
                stats.instructions,
                report.registers,
                report.spills,
                stats.count("fma.rn"),
                elapsed.as_secs_f64() * 1e3
            );
        }
    }
    for target in TARGETS {
        let start = Instant::now();
        let ptx = tessel_compiler::codegen::compile_matmul(*target)?;
        let elapsed = start.elapsed();
        let name = tessel_compiler::lower::matmul::KERNEL;
        let file = args.out_dir.join(format!("{name}.{}.ptx", target.name));
        std::fs::write(&file, &ptx)?;
        tessel_compiler::package::matmul_package(*target)?
            .write(&args.out_dir.join(format!("{name}.{}.tpkg", target.name)))?;
        let stats = PtxStats::of(&ptx);
        let report = match &args.ptxas {
            Some(p) => ptxas_report(p, &file, target.name)?,
            None => PtxasReport {
                registers: "-".into(),
                spills: "-".into(),
            },
        };
        println!(
            "{:<10} {:<7} {:>6} {:>7} {:>5} {:>5} {:>6} {:>6.1}ms  mma.sync: {}",
            "matmul",
            target.name,
            stats.version.clone().unwrap_or_default(),
            stats.instructions,
            report.registers,
            report.spills,
            stats.count("fma.rn"),
            elapsed.as_secs_f64() * 1e3,
            stats.count("mma.sync")
        );
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
