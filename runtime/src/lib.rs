//! tessel's runtime: runs ahead-of-time compiled tessel kernels through the CUDA driver.
//!
//! It links neither LLVM nor MLIR: a program built on it needs only libc and, at run time, the
//! NVIDIA driver (loaded dynamically, so a machine without one gets `RuntimeError::NoDriver`
//! instead of a crash; collectives load libnccl the same way, `RuntimeError::NoNccl` when
//! absent). Packages are verified when read, every launch is checked against the package's
//! manifest before it reaches the GPU, device memory comes from a caching pool, and
//! sequences of launches can be captured into CUDA graphs.

pub mod attention;
pub mod collective;
pub mod device;
pub mod dilated;
pub mod dilated_sp;
pub mod error;
pub mod flash_gau;
pub mod gla;
pub mod lightning;
pub mod memory;
mod operand;
pub mod package;
pub mod spec;
pub mod tensor;
pub mod tensor_map;

pub use device::{Device, Graph, LoadedModule};
pub use error::RuntimeError;
pub use package::{Arg, LoadedPackage};
pub use spec::{OperatorSpec, OPERATORS};
pub use tensor::{DeviceTensor, TensorView};
pub use tessel_package as format;

/// The CUDA driver bindings the runtime is built on, for callers that need a raw launch.
pub use cudarc::driver as cuda;
