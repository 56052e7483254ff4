//! What tessel's compiler and runtime must agree on without depending on each other: the table of
//! supported GPU targets, and (later) the AOT package format.
//!
//! This crate links neither LLVM nor the CUDA driver, so both sides can use it.

pub mod target;

pub use target::{Feature, PtxVersion, Target, TargetError};
