//! The backend: an LLVM module → `default<O3>` → NVPTX → PTX text.
//!
//! Every request is checked against the target table before LLVM sees it, because LLVM's NVPTX
//! backend aborts the process on an impossible (arch, PTX ISA, instruction) combination.

use inkwell::module::Module;
use inkwell::passes::PassBuilderOptions;
use inkwell::targets::{
    CodeModel, FileType, InitializationConfig, RelocMode, Target as LlvmTarget, TargetMachine,
    TargetTriple,
};
use inkwell::OptimizationLevel;
use std::sync::Once;

use crate::{CompileError, Feature, Target};

pub const NVPTX_TRIPLE: &str = "nvptx64-nvidia-cuda";

/// Options for one backend run.
#[derive(Debug, Clone)]
pub struct BackendOptions {
    pub target: Target,
    /// Hardware features the kernel's schedule uses; refused up front if the target lacks one.
    pub features: Vec<Feature>,
    pub opt_level: OptimizationLevel,
}

impl BackendOptions {
    pub fn new(target: Target) -> Self {
        Self {
            target,
            features: Vec::new(),
            opt_level: OptimizationLevel::Aggressive,
        }
    }
}

fn init_nvptx() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        LlvmTarget::initialize_nvptx(&InitializationConfig::default());
        // 32-bit shared-memory pointers: shared memory is < 4 GB, and with 64-bit ones every
        // shared address held across a loop costs a register pair and every offset a 64-bit add
        // and a widening convert (the Lightning forward had ~230 `cvt.u64.u32` for that alone).
        // NVPTX reads this option when the target machine is created, which is after this.
        let args = [c"tessel".as_ptr(), c"-nvptx-short-ptr".as_ptr()];
        // SAFETY: two valid NUL-terminated strings that outlive the call; run once per process,
        // before any target machine exists, so no other thread reads LLVM's options meanwhile.
        unsafe {
            inkwell::llvm_sys::support::LLVMParseCommandLineOptions(
                args.len() as i32,
                args.as_ptr(),
                std::ptr::null(),
            )
        };
    });
}

/// A target machine for `target`; fails (without touching LLVM) if the table refuses the request.
pub fn target_machine(options: &BackendOptions) -> Result<TargetMachine, CompileError> {
    let target = options.target;
    target.require(&options.features)?;
    target.check_ptx(target.ptx)?;
    init_nvptx();
    let triple = TargetTriple::create(NVPTX_TRIPLE);
    let llvm_target = LlvmTarget::from_triple(&triple)
        .map_err(|e| CompileError::llvm("target", e.to_string()))?;
    llvm_target
        .create_target_machine(
            &triple,
            target.llvm_cpu(),
            &target.ptx.llvm_feature(),
            options.opt_level,
            RelocMode::Default,
            CodeModel::Default,
        )
        .ok_or_else(|| CompileError::llvm("target machine", format!("NVPTX refused {target}")))
}

/// Optimises `module` at O3 for `options.target` and prints it as PTX.
pub fn emit_ptx(module: &Module, options: &BackendOptions) -> Result<String, CompileError> {
    let machine = optimise(module, options)?;
    print_ptx(module, &machine)
}

/// Verifies `module` and runs the optimisation pipeline of `options.opt_level` on it; returns the
/// target machine for [`print_ptx`].
pub(crate) fn optimise(
    module: &Module,
    options: &BackendOptions,
) -> Result<TargetMachine, CompileError> {
    let machine = target_machine(options)?;
    module.set_triple(&machine.get_triple());
    module.set_data_layout(&machine.get_target_data().get_data_layout());
    module
        .verify()
        .map_err(|e| CompileError::llvm("verify", e.to_string()))?;
    let pipeline = match options.opt_level {
        OptimizationLevel::None => "default<O0>",
        OptimizationLevel::Less => "default<O1>",
        OptimizationLevel::Default => "default<O2>",
        OptimizationLevel::Aggressive => "default<O3>",
    };
    module
        .run_passes(pipeline, &machine, PassBuilderOptions::create())
        .map_err(|e| CompileError::llvm("optimisation", e.to_string()))?;
    Ok(machine)
}

/// NVPTX code generation of an optimised module.
pub(crate) fn print_ptx(module: &Module, machine: &TargetMachine) -> Result<String, CompileError> {
    let buffer = machine
        .write_to_memory_buffer(module, FileType::Assembly)
        .map_err(|e| CompileError::llvm("PTX emission", e.to_string()))?;
    String::from_utf8(buffer.as_slice().to_vec())
        .map_err(|e| CompileError::llvm("PTX emission", e.to_string()))
}
