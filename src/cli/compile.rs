use std::path::PathBuf;

use clap::Args;
use tessel_compiler::codegen::compile_elementwise;
use tessel_compiler::lower::elementwise::{kernel_name, ElemType};
use tessel_compiler::Target;

#[derive(Args)]
pub struct CompileArgs {
    /// A kernel built into the compiler (until .tsl sources lower): `fma` (c = a*b + c) or
    /// `matmul` (bf16 C = A·B on the tensor cores).
    #[arg(long, value_name = "NAME")]
    pub builtin: String,
    /// Element type of the builtin: f32, bf16 or f16.
    #[arg(long, default_value = "f32")]
    pub dtype: String,
    /// GPU architecture (see `tessel targets`).
    #[arg(long, default_value = "sm_90a")]
    pub arch: String,
    /// Where to write the PTX; `-` for standard output.
    #[arg(short, long, default_value = "-")]
    pub output: PathBuf,
    /// Also write an AOT package (manifest + PTX) the runtime loads: `tessel run`/`bench` take it.
    #[arg(long, value_name = "FILE.tpkg")]
    pub package: Option<PathBuf>,
}

pub fn run(args: CompileArgs) -> super::CliResult {
    let target = Target::lookup(&args.arch)?;
    if args.builtin == "matmul" {
        if let Some(path) = &args.package {
            tessel_compiler::package::matmul_package(target)?.write(path)?;
            eprintln!("wrote package {}", path.display());
        }
        let ptx = tessel_compiler::codegen::compile_matmul(target)?;
        return write_ptx(&args, &ptx, tessel_compiler::lower::matmul::KERNEL, target);
    }
    if args.builtin != "fma" {
        return Err(format!(
            "unknown builtin kernel `{}` (available: fma, matmul)",
            args.builtin
        )
        .into());
    }
    let dtype = ElemType::parse(&args.dtype)
        .ok_or_else(|| format!("unknown dtype `{}` (f32, bf16, f16)", args.dtype))?;
    if let Some(path) = &args.package {
        tessel_compiler::package::fma_package(dtype, target)?.write(path)?;
        eprintln!("wrote package {}", path.display());
    }
    let ptx = compile_elementwise(dtype, target)?;
    write_ptx(&args, &ptx, &kernel_name(dtype), target)
}

fn write_ptx(args: &CompileArgs, ptx: &str, kernel: &str, target: Target) -> super::CliResult {
    if args.output.as_os_str() == "-" {
        print!("{ptx}");
    } else {
        std::fs::write(&args.output, ptx)
            .map_err(|e| format!("cannot write {}: {e}", args.output.display()))?;
        eprintln!(
            "wrote {} ({kernel} for {target}, {} bytes)",
            args.output.display(),
            ptx.len()
        );
    }
    Ok(())
}
