//! Typed runtime errors: every way a call can be refused or fail, none of them a panic.

#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    #[error("no CUDA driver found (libcuda.so could not be loaded): tessel needs an NVIDIA GPU and its driver")]
    NoDriver,
    #[error("the CUDA driver reports no GPU")]
    NoDevice,
    #[error("GPU {ordinal} requested, but only {count} present")]
    NoSuchDevice { ordinal: usize, count: usize },
    #[error("CUDA driver error during {during}: {source}")]
    Driver {
        during: &'static str,
        #[source]
        source: cudarc::driver::DriverError,
    },
    #[error("PTX is not loadable: {0}")]
    InvalidPtx(String),
    #[error("kernel `{name}` is not in the loaded module")]
    KernelNotFound { name: String },
    #[error(transparent)]
    Package(#[from] tessel_package::PackageError),
    #[error("launch of `{kernel}` refused: {source}")]
    Launch {
        kernel: String,
        #[source]
        source: tessel_package::LaunchError,
    },
    #[error("the package targets {arch}, which cannot run on this GPU (sm_{device})")]
    ArchMismatch { arch: String, device: u32 },
    #[error("host data has {got} elements, the tensor needs {want}")]
    HostLength { want: usize, got: usize },
    #[error("graph capture recorded nothing")]
    EmptyGraph,
    #[error("the package has no `{kernel}` with {wanted}; it has: {available}")]
    NoVariant {
        kernel: String,
        wanted: String,
        available: String,
    },
    #[error("no NCCL library found (libnccl.so could not be loaded): collectives over several GPUs need NCCL")]
    NoNccl,
    /// An NCCL call failed; `code` is NCCL's result code (cudarc's error carries no message).
    #[error("NCCL error during {during}: {code}")]
    Nccl { during: &'static str, code: String },
    #[error("{op}: {reason}")]
    BadOperand { op: &'static str, reason: String },
}

impl RuntimeError {
    pub(crate) fn nccl(
        during: &'static str,
    ) -> impl FnOnce(cudarc::nccl::result::NcclError) -> Self {
        move |e| RuntimeError::Nccl {
            during,
            code: format!("{:?}", e.0),
        }
    }

    pub(crate) fn driver(during: &'static str) -> impl FnOnce(cudarc::driver::DriverError) -> Self {
        move |source| RuntimeError::Driver { during, source }
    }
}
