//! Device discovery and module loading.

use std::sync::Arc;

use cudarc::driver::{CudaContext, CudaFunction, CudaModule, CudaStream};
use cudarc::nvrtc::Ptx;

use crate::RuntimeError;

/// Whether the CUDA driver library can be loaded. cudarc panics on first use when it cannot, so
/// every entry into the driver goes through this check first.
pub fn driver_present() -> bool {
    // SAFETY: only tries to dlopen libcuda; no driver call is made.
    unsafe { cudarc::driver::sys::is_culib_present() }
}

/// Number of GPUs the driver sees; `NoDriver` when there is no driver at all.
pub fn device_count() -> Result<usize, RuntimeError> {
    if !driver_present() {
        return Err(RuntimeError::NoDriver);
    }
    cudarc::driver::result::init().map_err(RuntimeError::driver("cuInit"))?;
    let n = CudaContext::device_count().map_err(RuntimeError::driver("cuDeviceGetCount"))?;
    Ok(n.max(0) as usize)
}

/// One GPU with its primary context and a stream to launch on.
#[derive(Debug, Clone)]
pub struct Device {
    context: Arc<CudaContext>,
    stream: Arc<CudaStream>,
    pool: crate::memory::Pool,
}

impl Device {
    /// Opens GPU `ordinal`. Fails with a typed error, never a panic, when there is no driver, no
    /// GPU, or fewer GPUs than asked for.
    pub fn open(ordinal: usize) -> Result<Device, RuntimeError> {
        let count = device_count()?;
        if count == 0 {
            return Err(RuntimeError::NoDevice);
        }
        if ordinal >= count {
            return Err(RuntimeError::NoSuchDevice { ordinal, count });
        }
        let context =
            CudaContext::new(ordinal).map_err(RuntimeError::driver("context creation"))?;
        // One stream per device, synchronised by the runtime itself: cudarc's per-buffer event
        // tracking would only add cross-stream waits that CUDA-graph capture refuses.
        // SAFETY: every buffer the runtime hands out is used on this one stream only.
        unsafe { context.disable_event_tracking() };
        // A created stream, not the legacy default one: only created streams can be captured
        // into CUDA graphs.
        let stream = context
            .new_stream()
            .map_err(RuntimeError::driver("stream creation"))?;
        Ok(Device {
            context,
            stream,
            pool: crate::memory::Pool::new(),
        })
    }

    pub fn name(&self) -> Result<String, RuntimeError> {
        self.context
            .name()
            .map_err(RuntimeError::driver("cuDeviceGetName"))
    }

    /// Compute capability as (major, minor), e.g. (9, 0) on an H100.
    pub fn compute_capability(&self) -> Result<(u32, u32), RuntimeError> {
        use cudarc::driver::sys::CUdevice_attribute as A;
        let get = |a| {
            self.context
                .attribute(a)
                .map(|v| v as u32)
                .map_err(RuntimeError::driver("cuDeviceGetAttribute"))
        };
        Ok((
            get(A::CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR)?,
            get(A::CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR)?,
        ))
    }

    /// Streaming multiprocessors (132 on an H100 SXM): what operators size their grids by.
    pub fn multiprocessors(&self) -> Result<usize, RuntimeError> {
        use cudarc::driver::sys::CUdevice_attribute as A;
        self.context
            .attribute(A::CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT)
            .map(|v| v as usize)
            .map_err(RuntimeError::driver("cuDeviceGetAttribute"))
    }

    /// Free and total device memory in bytes: what callers check a problem against before
    /// allocating it.
    pub fn memory(&self) -> Result<(usize, usize), RuntimeError> {
        self.context
            .mem_get_info()
            .map_err(RuntimeError::driver("cuMemGetInfo"))
    }

    pub fn context(&self) -> &Arc<CudaContext> {
        &self.context
    }

    pub fn stream(&self) -> &Arc<CudaStream> {
        &self.stream
    }

    /// JIT-loads PTX text into this device's context.
    pub fn load_ptx(&self, ptx: &str) -> Result<LoadedModule, RuntimeError> {
        // cudarc turns the text into a C string with an unwrap: refuse interior NULs here.
        if ptx.contains('\0') {
            return Err(RuntimeError::InvalidPtx(
                "PTX text contains a NUL byte".into(),
            ));
        }
        let module = self
            .context
            .load_module(Ptx::from_src(ptx))
            .map_err(RuntimeError::driver("PTX module load"))?;
        Ok(LoadedModule { module })
    }

    /// Another stream on this device, for work that may overlap the device's own stream. Order
    /// it against other streams with [`Device::record`] and [`Device::wait`]; tensors it uses must
    /// be ready (created, or written, by work it is ordered after).
    pub fn new_stream(&self) -> Result<Arc<CudaStream>, RuntimeError> {
        self.context
            .new_stream()
            .map_err(RuntimeError::driver("stream creation"))
    }

    /// An event marking the work queued on `stream` so far.
    pub fn record(&self, stream: &CudaStream) -> Result<cudarc::driver::CudaEvent, RuntimeError> {
        stream
            .record_event(None)
            .map_err(RuntimeError::driver("event record"))
    }

    /// Makes `stream` wait, on the device, for the work `event` marks.
    pub fn wait(
        &self,
        stream: &CudaStream,
        event: &cudarc::driver::CudaEvent,
    ) -> Result<(), RuntimeError> {
        stream
            .wait(event)
            .map_err(RuntimeError::driver("stream wait"))
    }

    /// The device's caching allocator.
    pub fn pool(&self) -> &crate::memory::Pool {
        &self.pool
    }

    /// Runs `work` between two timing events on the device's stream and returns the elapsed
    /// device time in milliseconds.
    pub fn time_ms(
        &self,
        work: impl FnOnce() -> Result<(), RuntimeError>,
    ) -> Result<f32, RuntimeError> {
        use cudarc::driver::sys::CUevent_flags::CU_EVENT_DEFAULT;
        let start = self
            .stream
            .record_event(Some(CU_EVENT_DEFAULT))
            .map_err(RuntimeError::driver("event record"))?;
        work()?;
        let end = self
            .stream
            .record_event(Some(CU_EVENT_DEFAULT))
            .map_err(RuntimeError::driver("event record"))?;
        end.synchronize()
            .map_err(RuntimeError::driver("event synchronize"))?;
        start
            .elapsed_ms(&end)
            .map_err(RuntimeError::driver("event elapsed time"))
    }

    /// Records the launches `work` makes into a CUDA graph instead of running them.
    pub fn capture(
        &self,
        work: impl FnOnce() -> Result<(), RuntimeError>,
    ) -> Result<Graph, RuntimeError> {
        use cudarc::driver::sys::{CUgraphInstantiate_flags, CUstreamCaptureMode};
        self.stream
            .begin_capture(CUstreamCaptureMode::CU_STREAM_CAPTURE_MODE_THREAD_LOCAL)
            .map_err(RuntimeError::driver("graph capture begin"))?;
        let result = work();
        // End the capture whatever happened, so the stream is usable again.
        let graph = self.stream.end_capture(CUgraphInstantiate_flags(0));
        result?;
        match graph.map_err(RuntimeError::driver("graph capture end"))? {
            Some(graph) => Ok(Graph { graph }),
            None => Err(RuntimeError::EmptyGraph),
        }
    }

    pub fn synchronize(&self) -> Result<(), RuntimeError> {
        self.stream
            .synchronize()
            .map_err(RuntimeError::driver("stream synchronize"))
    }
}

/// A recorded sequence of launches, replayed with one call.
pub struct Graph {
    graph: cudarc::driver::CudaGraph,
}

impl std::fmt::Debug for Graph {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Graph")
    }
}

impl Graph {
    /// Launches the whole recorded sequence on the stream it was captured on.
    pub fn replay(&self) -> Result<(), RuntimeError> {
        self.graph
            .launch()
            .map_err(RuntimeError::driver("graph launch"))
    }
}

/// A PTX module loaded into a device context.
#[derive(Debug, Clone)]
pub struct LoadedModule {
    module: Arc<CudaModule>,
}

impl LoadedModule {
    /// The kernel entry `name`; `KernelNotFound` when the module has no such entry.
    pub fn function(&self, name: &str) -> Result<CudaFunction, RuntimeError> {
        if name.contains('\0') {
            return Err(RuntimeError::KernelNotFound { name: name.into() });
        }
        self.module.load_function(name).map_err(|e| match e.0 {
            cudarc::driver::sys::cudaError_enum::CUDA_ERROR_NOT_FOUND => {
                RuntimeError::KernelNotFound { name: name.into() }
            }
            _ => RuntimeError::Driver {
                during: "cuModuleGetFunction",
                source: e,
            },
        })
    }
}
