//! tessel's compiler.
//!
//! The pipeline flows one way (see docs/architecture.md):
//! `.tsl` → syntax → sema → Tile IR → sched → lower (MLIR) → codegen (LLVM → PTX); `driver` runs
//! the stages after Tile IR in order.
//! Stages up to the interpreter build without LLVM; `lower` and `codegen` need the `codegen`
//! feature, which links MLIR and LLVM statically.

pub mod abi;
pub mod diag;
pub mod error;
pub mod interp;
pub mod ptx;
pub mod sched;
pub mod sema;
pub mod syntax;
pub mod tir;

#[cfg(feature = "codegen")]
pub mod codegen;
#[cfg(feature = "codegen")]
pub mod driver;
#[cfg(feature = "codegen")]
pub mod lower;
#[cfg(feature = "codegen")]
pub mod package;

pub use error::CompileError;
pub use tessel_package::target::{self, Feature, PtxVersion, Target, TargetError};
