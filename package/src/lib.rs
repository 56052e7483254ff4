//! What tessel's compiler and runtime must agree on without depending on each other: the table of
//! supported GPU targets, the AOT package format, and the rules for checking a call against a
//! kernel's manifest entry.
//!
//! This crate links neither LLVM nor the CUDA driver, so both sides can use it.

pub mod expr;
pub mod format;
pub mod launch;
pub mod manifest;
pub mod target;
pub mod tensor_map;

pub use expr::{Cmp, Requirement, ShapeExpr};
pub use format::{Package, PackageBuilder, PackageError};
pub use launch::{failed_requirement, plan, ArgInfo, LaunchError, LaunchPlan, ParamValue};
pub use manifest::{dense_strides, DType, DimSpec, Io, KernelEntry, LaunchRule, ParamSpec};
pub use target::{Feature, PtxVersion, Target, TargetError};
pub use tensor_map::TensorMapEncoding;
