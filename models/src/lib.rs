//! TransNormerLLM and LongNet assembled from tessel kernels: configs and weights in the released layouts,
//! the model as graphs of kernel calls over named buffers ([`graph`]), and the backends that
//! run them ([`backend`]: the Tile IR interpreter, and the GPU through the runtime).
//!
//! This crate links the compiler's front end and interpreter only (`default-features = false`:
//! no LLVM, no MLIR), so GPU-side binaries built on it stay small.

pub mod backend;
pub mod backend_gpu;
pub mod batch;
pub mod checkpoint;
pub mod graph;
pub mod kernels;
pub mod longnet;
pub mod parallel;
pub mod transnormer;

pub use tessel_runtime as runtime;

use transnormer::config::ConfigError;
use transnormer::weights::WeightError;

/// Everything that can stop a model from running, each naming what is at fault.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    LongNetConfig(#[from] longnet::config::ConfigError),
    #[error(transparent)]
    Weights(#[from] WeightError),
    #[error(transparent)]
    TensorParallel(#[from] transnormer::tensor_parallel::TpError),
    #[error("kernel {kernel}: {message}")]
    Kernel { kernel: String, message: String },
    #[error("{0}")]
    Backend(String),
    #[error("{0}")]
    Input(String),
}
