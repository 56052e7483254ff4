//! TransNormerLLM and LongNet, assembled from tessel kernels through the runtime.
//!
//! So far only what kernels and tests need before the models exist: TransNormerLLM's decay
//! schedule ([`transnormer::decay`]).

pub mod transnormer;

pub use tessel_runtime as runtime;
