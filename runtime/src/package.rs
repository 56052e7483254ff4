//! Packages on a device: PTX loaded once, every launch checked against the manifest first.

use std::collections::HashMap;

use cudarc::driver::{CudaFunction, PushKernelArg};
use tessel_package::{plan, ArgInfo, KernelEntry, LaunchPlan, Package, ParamValue, Target};

use crate::{Device, DeviceTensor, LoadedModule, RuntimeError};

/// An argument of a launch, in the order of the kernel's non-shape parameters.
#[derive(Debug, Clone, Copy)]
pub enum Arg<'t> {
    Tensor(&'t DeviceTensor),
    /// Part of a tensor's memory as a tensor of its own ([`DeviceTensor::view`]).
    View(crate::tensor::TensorView<'t>),
    Scalar(f64),
}

/// Whether PTX built for `arch` runs on a GPU of compute capability `sm` (e.g. 90), by the
/// target table: an architecture tessel does not know runs nowhere.
pub fn arch_runs_on(arch: &str, sm: u32) -> bool {
    Target::lookup(arch).is_ok_and(|t| t.runs_on(sm))
}

pub struct LoadedPackage {
    package: Package,
    functions: HashMap<String, (CudaFunction, LoadedModule)>,
}

impl LoadedPackage {
    /// JIT-loads every kernel of `package` on `dev`, after checking the package's target can run
    /// there.
    pub fn load(dev: &Device, package: Package) -> Result<Self, RuntimeError> {
        let (major, minor) = dev.compute_capability()?;
        let sm = major * 10 + minor;
        let arch = package.manifest.target.arch.clone();
        if !arch_runs_on(&arch, sm) {
            return Err(RuntimeError::ArchMismatch { arch, device: sm });
        }
        let mut functions = HashMap::new();
        for (entry, ptx) in package.kernels() {
            let module = dev.load_ptx(ptx)?;
            let f = module.function(&entry.entry)?;
            if entry.launch.shared_bytes > 48 * 1024 {
                use cudarc::driver::sys::CUfunction_attribute::CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES;
                f.set_attribute(
                    CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES,
                    entry.launch.shared_bytes as i32,
                )
                .map_err(RuntimeError::driver("setting the shared-memory size"))?;
            }
            functions.insert(entry.name.clone(), (f, module));
        }
        Ok(Self { package, functions })
    }

    /// How many programs of kernel `name` one SM holds at once, with its block size and dynamic
    /// shared memory (the driver's occupancy calculator: registers, shared memory, threads).
    pub fn resident_blocks(&self, dev: &Device, name: &str) -> Result<u32, RuntimeError> {
        let entry = self.entry(name)?;
        let (func, _) = self
            .functions
            .get(name)
            .ok_or_else(|| RuntimeError::KernelNotFound { name: name.into() })?;
        // The occupancy query runs in the current context, which need not be this device's.
        dev.context()
            .bind_to_thread()
            .map_err(RuntimeError::driver("binding the context"))?;
        let threads = entry.launch.block.iter().product::<u32>();
        func.occupancy_max_active_blocks_per_multiprocessor(
            threads,
            entry.launch.shared_bytes as usize,
            None,
        )
        .map_err(RuntimeError::driver(
            "cuOccupancyMaxActiveBlocksPerMultiprocessor",
        ))
    }

    pub fn package(&self) -> &Package {
        &self.package
    }

    pub fn entry(&self, name: &str) -> Result<&KernelEntry, RuntimeError> {
        Ok(self.package.kernel(name)?.0)
    }

    /// The entry of kernel `kernel` (its PTX entry symbol) specialised with every `NAME=VALUE` of
    /// `consts`: how operators pick a variant out of a package built with `--variant`.
    pub fn find(
        &self,
        kernel: &str,
        consts: &[(&str, &str)],
    ) -> Result<&KernelEntry, RuntimeError> {
        let candidates = || {
            self.package
                .kernels()
                .map(|(e, _)| e)
                .filter(|e| e.entry == kernel)
        };
        self.package
            .find_variant(kernel, consts)
            .ok_or_else(|| RuntimeError::NoVariant {
                kernel: kernel.into(),
                wanted: consts
                    .iter()
                    .map(|(n, v)| format!("{n}={v}"))
                    .collect::<Vec<_>>()
                    .join(", "),
                available: {
                    let names: Vec<&str> = candidates().map(|e| e.name.as_str()).collect();
                    if names.is_empty() {
                        "no such kernel".into()
                    } else {
                        names.join(" ")
                    }
                },
            })
    }

    /// Checks `args` against the manifest, then launches `name` on the device's stream. Nothing
    /// is launched when the check fails. Returns the plan it launched with.
    pub fn launch(
        &self,
        dev: &Device,
        name: &str,
        args: &[Arg],
    ) -> Result<LaunchPlan, RuntimeError> {
        self.launch_on(dev, dev.stream(), name, args)
    }

    /// [`LoadedPackage::launch`] of a kernel whose arguments are all tensors, in order.
    pub fn launch_tensors(
        &self,
        dev: &Device,
        name: &str,
        tensors: &[&DeviceTensor],
    ) -> Result<LaunchPlan, RuntimeError> {
        let args: Vec<Arg> = tensors.iter().map(|t| Arg::Tensor(t)).collect();
        self.launch(dev, name, &args)
    }

    /// [`LoadedPackage::launch`] on another stream of the same device.
    pub fn launch_on(
        &self,
        dev: &Device,
        stream: &std::sync::Arc<cudarc::driver::CudaStream>,
        name: &str,
        args: &[Arg],
    ) -> Result<LaunchPlan, RuntimeError> {
        let entry = self.entry(name)?;
        let infos: Vec<ArgInfo> = args
            .iter()
            .map(|a| match a {
                Arg::Tensor(t) => ArgInfo::Tensor {
                    dtype: t.dtype,
                    shape: t.shape.clone(),
                    strides: t.strides.clone(),
                    ptr: t.device_ptr(dev),
                },
                Arg::View(v) => ArgInfo::Tensor {
                    dtype: v.dtype,
                    shape: v.shape.to_vec(),
                    strides: v
                        .strides
                        .map_or_else(|| tessel_package::dense_strides(v.shape), <[usize]>::to_vec),
                    ptr: v.ptr,
                },
                Arg::Scalar(v) => ArgInfo::Scalar(*v),
            })
            .collect();
        let plan = plan(entry, &infos).map_err(|source| RuntimeError::Launch {
            kernel: name.into(),
            source,
        })?;
        if plan.is_empty() {
            return Ok(plan);
        }
        let (func, _) = self
            .functions
            .get(name)
            .ok_or_else(|| RuntimeError::KernelNotFound { name: name.into() })?;
        // Tensor maps are encoded first: the builder holds references to every argument.
        let maps = plan
            .params
            .iter()
            .filter_map(|p| match p {
                ParamValue::TensorMap(e) => Some(crate::tensor_map::encode(e)),
                _ => None,
            })
            .collect::<Result<Vec<_>, _>>()?;
        let mut maps = maps.iter();
        let mut builder = stream.launch_builder(func);
        for p in &plan.params {
            match p {
                ParamValue::Ptr(v) => builder.arg(v),
                ParamValue::I32(v) => builder.arg(v),
                ParamValue::F32(v) => builder.arg(v),
                ParamValue::B16(v) => builder.arg(v),
                ParamValue::TensorMap(_) => builder.arg(maps.next().expect("encoded above")),
            };
        }
        let cfg = cudarc::driver::LaunchConfig {
            grid_dim: (plan.grid[0], plan.grid[1], plan.grid[2]),
            block_dim: (plan.block[0], plan.block[1], plan.block[2]),
            shared_mem_bytes: plan.shared_bytes,
        };
        // SAFETY: `plan` checked every argument against the manifest the PTX was compiled with:
        // pointer parameters are live, aligned, dense tensors of the declared dtype and of the
        // sizes the shape symbols (also passed) describe; outputs overlap nothing else; tensor
        // maps describe those same tensors (true extents, so TMA reads nothing outside them).
        unsafe { builder.launch(cfg) }.map_err(RuntimeError::driver("kernel launch"))?;
        Ok(plan)
    }
}
