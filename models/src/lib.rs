//! TransNormerLLM and LongNet, assembled from tessel kernels through the runtime.
//!
//! Nothing lives here yet: the models arrive once their kernels (Lightning Attention, dilated
//! attention, SRMSNorm, SGLU) run on the GPU.

pub use tessel_runtime as runtime;
