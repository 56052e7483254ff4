//! `tessel`: compile tiled-tensor kernels to PTX ahead of time, and run them.

mod cli;

use clap::{Parser, Subcommand};
use std::process::ExitCode;

#[derive(Parser)]
#[command(
    name = "tessel",
    version,
    about = "A tiled-tensor GPU kernel compiler and runtime"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// List the GPU targets tessel can generate code for, with their PTX ISA and features.
    Targets,
    /// Compile kernels to PTX.
    #[cfg(feature = "codegen")]
    Compile(cli::compile::CompileArgs),
    /// Compile the example kernels for every target and print PTX statistics.
    #[cfg(feature = "codegen")]
    Demo(cli::demo::DemoArgs),
    /// Show the GPUs the CUDA driver sees.
    Devices,
    /// Parse and check a .tsl file; errors point at the source.
    Check(cli::lang::SourceArgs),
    /// Print the Tile IR of a .tsl file's kernels.
    Ir(cli::lang::IrArgs),
    /// Run a kernel in the CPU interpreter on random inputs and summarise its outputs.
    Interpret(cli::lang::InterpretArgs),
    /// Run a package's kernel on the GPU on random inputs, checked against the interpreter.
    Run(cli::run::RunArgs),
    /// List a package's target and kernels: variants, parameters, requirements, launch, sizes.
    Inspect(cli::inspect::InspectArgs),
    /// Time a package's kernel on the GPU with events.
    Bench(cli::bench::BenchArgs),
    /// Time Lightning Attention decoding (tokens/s) along one long generation.
    BenchDecode(cli::bench_decode::DecodeBenchArgs),
    /// Plot a benchmark results file as SVG.
    Plot(cli::plot::PlotArgs),
    /// TransNormerLLM and LongNet model directories (`model init --random-weights DIR`).
    #[command(subcommand)]
    Model(cli::model::ModelCommand),
    /// Build every kernel variant a model directory's configuration needs into one package.
    #[cfg(feature = "codegen")]
    CompileModel(cli::compile_model::CompileModelArgs),
    /// Generate tokens from a model directory (greedy), streaming them.
    Generate(cli::generate::GenerateArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Targets => cli::targets::run(),
        #[cfg(feature = "codegen")]
        Command::Compile(args) => cli::compile::run(args),
        #[cfg(feature = "codegen")]
        Command::Demo(args) => cli::demo::run(args),
        Command::Devices => cli::devices::run(),
        Command::Check(args) => cli::lang::check(args),
        Command::Ir(args) => cli::lang::ir(args),
        Command::Interpret(args) => cli::lang::interpret(args),
        Command::Run(args) => cli::run::run(args),
        Command::Inspect(args) => cli::inspect::run(args),
        Command::Bench(args) => cli::bench::run(args),
        Command::BenchDecode(args) => cli::bench_decode::run(args),
        Command::Plot(args) => cli::plot::run(args),
        Command::Model(cmd) => cli::model::run(cmd),
        #[cfg(feature = "codegen")]
        Command::CompileModel(args) => cli::compile_model::run(args),
        Command::Generate(args) => cli::generate::run(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            let mut source = e.source();
            while let Some(s) = source {
                eprintln!("  caused by: {s}");
                source = s.source();
            }
            ExitCode::FAILURE
        }
    }
}
