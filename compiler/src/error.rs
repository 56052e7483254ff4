//! Errors of the compiler's back half. Front-end errors are diagnostics with spans (syntax, sema).

use tessel_package::TargetError;

#[derive(Debug, thiserror::Error)]
pub enum CompileError {
    /// The source has errors: the rendered diagnostics, spans included.
    #[error("{0}")]
    Source(String),
    /// The request names a target or feature the table refuses: no LLVM call was made.
    #[error(transparent)]
    Target(#[from] TargetError),
    /// MLIR refused the module we built or a conversion pass failed. A tessel bug, reported with
    /// MLIR's own diagnostics.
    #[error("internal error in MLIR lowering ({stage}): {message}")]
    Mlir {
        stage: &'static str,
        message: String,
    },
    /// A schedule hint on the command line breaks its rule (the same rule as its attribute's).
    #[error(transparent)]
    Hint(#[from] crate::sched::HintError),
    /// The kernel uses something the scheduler cannot place yet.
    #[error(transparent)]
    Schedule(#[from] crate::sched::SchedError),
    /// Writing the AOT package failed.
    #[error(transparent)]
    Package(#[from] tessel_package::PackageError),
    /// The Tile IR a package carries as its reference could not be built.
    #[error("internal error building the reference Tile IR: {0}")]
    Reference(String),
    /// LLVM refused the module or could not emit PTX. Also a tessel bug.
    #[error("internal error in LLVM code generation ({stage}): {message}")]
    Llvm {
        stage: &'static str,
        message: String,
    },
}

// Only the backend half constructs these.
#[cfg(feature = "codegen")]
impl CompileError {
    pub(crate) fn mlir(stage: &'static str, message: impl Into<String>) -> Self {
        CompileError::Mlir {
            stage,
            message: message.into(),
        }
    }

    pub(crate) fn llvm(stage: &'static str, message: impl Into<String>) -> Self {
        CompileError::Llvm {
            stage,
            message: message.into(),
        }
    }
}
