//! The driver: one specialised Tile IR kernel through the stages in order — schedule
//! (`sched`), MLIR (`lower`), LLVM dialect and LLVM IR (MLIR's passes and translation), O3 and
//! NVPTX (`codegen`) — keeping each stage's output for `--emit` and its wall time for `--timings`.

use crate::{CompileError, Target};

/// A Tile IR kernel through every backend stage, with each stage's text kept for `--emit`.
#[derive(Debug, Clone)]
pub struct CompiledKernel {
    pub schedule: crate::sched::Schedule,
    /// The MLIR module as built, before conversion.
    pub mlir: String,
    /// The LLVM IR after O3.
    pub llvm: String,
    pub ptx: String,
    /// Wall time of each stage, in pipeline order (`tessel compile --timings` prints them).
    pub timings: Vec<(&'static str, std::time::Duration)>,
}

/// Schedules, lowers and compiles one specialised Tile IR kernel for `target`.
pub fn compile_kernel(
    kernel: &crate::tir::Kernel,
    target: Target,
) -> Result<CompiledKernel, CompileError> {
    compile_kernel_with(kernel, target, &crate::sched::SchedOptions::default())
}

/// [`compile_kernel`] with schedule overrides (the CLI's `--num-warps`, `--stages`, `--warps`,
/// `--occupancy`, `--strategy`).
pub fn compile_kernel_with(
    kernel: &crate::tir::Kernel,
    target: Target,
    sched_options: &crate::sched::SchedOptions,
) -> Result<CompiledKernel, CompileError> {
    // A flag that breaks its rule is refused as the flag, before any kernel is looked at.
    sched_options.hints()?;
    let mut timings = Vec::new();
    let mut clock = std::time::Instant::now();
    let mut lap = |stage: &'static str| {
        let now = std::time::Instant::now();
        timings.push((stage, now - clock));
        clock = now;
    };
    let schedule = crate::sched::schedule_with(kernel, target, sched_options)?;
    lap("schedule");
    let options = crate::codegen::BackendOptions {
        features: schedule.features.clone(),
        ..crate::codegen::BackendOptions::new(target)
    };
    target.require(&options.features)?;
    let text = crate::lower::build_text(kernel, &schedule)?;
    lap("lower to MLIR text");
    let session = crate::lower::MlirSession::new();
    let mut module = melior::ir::Module::parse(&session.context, &text)
        .ok_or_else(|| session.error("parsing the built MLIR", "the module text does not parse"))?;
    lap("MLIR context + parse");
    session.convert_to_llvm_dialect(&mut module)?;
    lap("MLIR to LLVM dialect");
    let llvm_ctx = inkwell::context::Context::create();
    let llvm_module = session.translate(&module, &llvm_ctx)?;
    lap("translate to LLVM IR");
    let machine = crate::codegen::optimise(&llvm_module, &options)?;
    lap("LLVM O3");
    let ptx = crate::codegen::print_ptx(&llvm_module, &machine)?;
    lap("NVPTX emission");
    let llvm = llvm_module.print_to_string().to_string();
    lap("print LLVM IR");
    Ok(CompiledKernel {
        schedule,
        mlir: text,
        llvm,
        ptx,
        timings,
    })
}
