//! tessel's runtime: runs ahead-of-time compiled tessel kernels through the CUDA driver.
//!
//! It links neither LLVM nor MLIR: a program built on it needs only libc and, at run time, the
//! NVIDIA driver (loaded dynamically, so a machine without one gets `RuntimeError::NoDriver`
//! instead of a crash).

pub mod device;
pub mod error;

pub use device::{Device, LoadedModule};
pub use error::RuntimeError;

/// The CUDA driver bindings the runtime is built on, for callers that need a raw launch.
pub use cudarc::driver as cuda;
