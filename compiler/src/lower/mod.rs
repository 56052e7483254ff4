//! Lowering to MLIR and from MLIR to an LLVM module.
//!
//! Kernels are built in MLIR's upstream dialects (llvm, nvvm, arith, scf; nvgpu and gpu as the
//! matrix path grows), converted to the LLVM dialect by MLIR's own passes, and translated into an
//! LLVM module that lives in the caller's inkwell context. `codegen` takes it from there.
//!
//! A scheduled Tile IR kernel becomes MLIR in [`build_text`]. The schedule has made every
//! decision; the lowering only spells it out, so each file below is one concern and reads alone:
//!
//! - `emit`: the typed emitter, the only place that spells MLIR ops; `ptx_templates`: every
//!   inline-PTX instruction;
//! - `entry`: the kernel function, its parameters (in `crate::abi`'s order) and the thread-invariant
//!   values computed once at entry;
//! - `inst`: one Tile IR instruction at a time; `scalar`: the per-register arithmetic; `layout`:
//!   moving a tile between register layouts;
//! - `global`, `shared`: tiles to and from global memory and shared memory (`cp.async` staging);
//! - `dot`, `wgmma`, `mma`, `fma`: matrix products per unit; `reduce`; `scan`; `loops`: `scf.for` and software
//!   pipelining.
//!
//! Every tile is unrolled into the registers its layout gives a thread: a value becomes one SSA
//! name per register (one for uniform values), so the schedule's layouts are the code and nothing
//! is left for MLIR's passes to decide.

mod dot;
mod emit;
mod entry;
mod fma;
mod global;
mod inst;
mod layout;
mod loops;
mod mma;
mod ptx_templates;
mod reduce;
mod scalar;
mod scan;
mod shared;
mod tma;
mod wgmma;

pub use entry::build_text;

use std::cell::RefCell;
use std::rc::Rc;

use melior::dialect::DialectRegistry;
use melior::ir::operation::OperationLike;
use melior::ir::Module;
use melior::pass::PassManager;
use melior::utility::{
    parse_pass_pipeline, register_all_dialects, register_all_llvm_translations, register_all_passes,
};
use melior::Context;

use crate::CompileError;

type R<T> = Result<T, CompileError>;

/// An invariant of the schedule that the tile lowering found broken.
fn err(what: impl Into<String>) -> CompileError {
    CompileError::mlir("tile lowering", what.into())
}

/// The conversion pipeline from tessel's mix of dialects to the LLVM dialect only.
pub const TO_LLVM_PIPELINE: &str = "builtin.module(convert-scf-to-cf,convert-nvvm-to-llvm,\
convert-arith-to-llvm,convert-cf-to-llvm,reconcile-unrealized-casts)";

/// An MLIR context with every upstream dialect and LLVM translation registered, whose
/// diagnostics are collected instead of printed, so that failures become `CompileError`s.
pub struct MlirSession {
    pub context: Context,
    diagnostics: Rc<RefCell<Vec<String>>>,
}

impl MlirSession {
    pub fn new() -> Self {
        let registry = DialectRegistry::new();
        register_all_dialects(&registry);
        // Threading would make pass ordering and diagnostics timing nondeterministic for no gain on
        // kernels this size.
        let context = Context::new_with_registry(&registry, false);
        context.load_all_available_dialects();
        register_all_llvm_translations(&context);
        register_all_passes();
        let diagnostics = Rc::new(RefCell::new(Vec::new()));
        let sink = diagnostics.clone();
        context.attach_diagnostic_handler(move |d| {
            sink.borrow_mut().push(format!("{}: {}", d.location(), d));
            true
        });
        Self {
            context,
            diagnostics,
        }
    }

    /// Everything MLIR has reported since the last call.
    fn take_diagnostics(&self) -> String {
        std::mem::take(&mut *self.diagnostics.borrow_mut()).join("\n")
    }

    pub fn error(&self, stage: &'static str, fallback: impl std::fmt::Display) -> CompileError {
        let diags = self.take_diagnostics();
        CompileError::mlir(
            stage,
            if diags.is_empty() {
                fallback.to_string()
            } else {
                diags
            },
        )
    }

    /// Verifies `module`, then runs the conversion pipeline down to the LLVM dialect.
    pub fn convert_to_llvm_dialect(&self, module: &mut Module) -> Result<(), CompileError> {
        if !module.as_operation().verify() {
            return Err(self.error("verify", "the built module does not verify"));
        }
        let pm = PassManager::new(&self.context);
        pm.enable_verifier(true);
        parse_pass_pipeline(pm.as_operation_pass_manager(), TO_LLVM_PIPELINE)
            .map_err(|e| self.error("pass pipeline", e))?;
        pm.run(module)
            .map_err(|e| self.error("conversion to the LLVM dialect", e))
    }

    /// Translates a module that is in the LLVM dialect only into an LLVM module owned by `llvm`.
    pub fn translate<'ll>(
        &self,
        module: &Module,
        llvm: &'ll inkwell::context::Context,
    ) -> Result<inkwell::module::Module<'ll>, CompileError> {
        // SAFETY: MLIR and inkwell link the same static LLVM, so the context pointer inkwell owns
        // is a valid `LLVMContextRef` for MLIR's C API; the module returned is owned by the caller
        // and inkwell's `Module` takes that ownership.
        unsafe {
            let raw = mlir_sys::mlirTranslateModuleToLLVMIR(
                module.as_operation().to_raw(),
                llvm.raw() as mlir_sys::LLVMContextRef,
            );
            if raw.is_null() {
                return Err(self.error("translation to LLVM IR", "translation returned no module"));
            }
            Ok(inkwell::module::Module::new(raw as _))
        }
    }
}

impl Default for MlirSession {
    fn default() -> Self {
        Self::new()
    }
}
