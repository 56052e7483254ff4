//! The GPU backend: each call launched, checked against the manifest, from an AOT package that
//! `tessel compile-model` built for the model (entries named `kernel[CONST=V,...]` after the
//! graph's [`KernelRef`]s); intermediates at their planned offsets in one device allocation; a
//! repeated graph (the decode step) captured once as a CUDA graph and replayed.

use std::collections::HashMap;

use tessel_package::DType;
use tessel_runtime::{Arg, Device, DeviceTensor, LoadedPackage, RuntimeError, TensorView};

use petgraph::graph::NodeIndex;

use crate::backend::{single_rank_collective, Backend};
use crate::graph::{Buf, CallArg, Graph, KernelRef, Plan, View};
use crate::ModelError;

fn rt(e: RuntimeError) -> ModelError {
    ModelError::Backend(e.to_string())
}

pub struct GpuBackend {
    pub dev: Device,
    pub pkg: LoadedPackage,
    persistent: HashMap<String, DeviceTensor>,
    /// The arena of intermediates (i32 elements: any dtype's view fits at a 256-byte offset).
    arena: Option<DeviceTensor>,
    captured: HashMap<String, tessel_runtime::Graph>,
}

impl GpuBackend {
    pub fn new(dev: Device, pkg: LoadedPackage) -> Self {
        Self {
            dev,
            pkg,
            persistent: HashMap::new(),
            arena: None,
            captured: HashMap::new(),
        }
    }

    /// Grows the arena to `bytes`. Captured graphs hold its address, so they are dropped when it
    /// moves (the next repeated run captures again).
    fn ensure_arena(&mut self, bytes: usize) -> Result<(), ModelError> {
        let have = self.arena.as_ref().map_or(0, DeviceTensor::bytes);
        if have < bytes {
            self.captured.clear();
            self.arena = None;
            let t = DeviceTensor::empty(&self.dev, DType::I32, &[bytes.div_ceil(4)]).map_err(rt)?;
            self.arena = Some(t);
        }
        Ok(())
    }

    /// The device memory a graph's tensor argument names, as planned.
    pub fn tensor_view<'t>(
        &'t self,
        plan: &Plan,
        v: &'t View,
    ) -> Result<TensorView<'t>, ModelError> {
        let (t, offset) = match &v.buf {
            Buf::Persistent(n) => (
                self.persistent
                    .get(n)
                    .ok_or_else(|| ModelError::Backend(format!("no persistent buffer `{n}`")))?,
                0,
            ),
            Buf::Transient(i) => (
                self.arena
                    .as_ref()
                    .ok_or_else(|| ModelError::Backend("no arena: begin() was not run".into()))?,
                plan.offsets[*i],
            ),
        };
        t.view(&self.dev, offset, v.dtype, &v.shape).map_err(rt)
    }

    fn launch_nodes(
        &self,
        graph: &Graph,
        plan: &Plan,
        nodes: &[NodeIndex],
    ) -> Result<(), ModelError> {
        for node in nodes {
            let call = &graph.graph[*node];
            if single_rank_collective(call)? {
                continue;
            }
            let Some(kernel) = call.kernel() else {
                unreachable!("a collective over several ranks was refused above")
            };
            let name = entry_name(kernel);
            let mut args = Vec::with_capacity(call.args.len());
            for a in &call.args {
                args.push(match a {
                    CallArg::Scalar(v) => Arg::Scalar(*v),
                    CallArg::Tensor(v) => Arg::View(self.tensor_view(plan, v)?),
                });
            }
            self.pkg
                .launch(&self.dev, &name, &args)
                .map_err(|e| ModelError::Kernel {
                    kernel: format!("{name} ({})", call.label),
                    message: e.to_string(),
                })?;
        }
        Ok(())
    }
}

/// The package entry a call launches: what `tessel compile-model` names it.
pub fn entry_name(k: &KernelRef) -> String {
    k.display()
}

impl Backend for GpuBackend {
    fn persistent(&mut self, name: &str, dtype: DType, numel: usize) -> Result<(), ModelError> {
        match self.persistent.get(name) {
            Some(t) if t.dtype == dtype && t.numel() == numel => Ok(()),
            Some(t) => Err(ModelError::Backend(format!(
                "`{name}` exists as {} elements of {}, asked for {numel} of {}",
                t.numel(),
                t.dtype.name(),
                dtype.name()
            ))),
            None => {
                // Zeroed from bytes: a weight the size of a 15B embedding would otherwise pass
                // through a host vector of f64 zeros first.
                let mut t = DeviceTensor::empty(&self.dev, dtype, &[numel]).map_err(rt)?;
                t.write_bytes(&self.dev, &vec![0u8; numel * dtype.size()])
                    .map_err(rt)?;
                self.persistent.insert(name.to_string(), t);
                Ok(())
            }
        }
    }

    fn write(&mut self, name: &str, data: &[f64]) -> Result<(), ModelError> {
        let t = self
            .persistent
            .get_mut(name)
            .ok_or_else(|| ModelError::Backend(format!("no persistent buffer `{name}`")))?;
        t.write_f64(&self.dev, data).map_err(rt)
    }

    fn write_bytes(&mut self, name: &str, bytes: &[u8]) -> Result<(), ModelError> {
        let t = self
            .persistent
            .get_mut(name)
            .ok_or_else(|| ModelError::Backend(format!("no persistent buffer `{name}`")))?;
        t.write_bytes(&self.dev, bytes).map_err(rt)
    }

    fn read(&mut self, name: &str) -> Result<Vec<f64>, ModelError> {
        let t = self
            .persistent
            .get(name)
            .ok_or_else(|| ModelError::Backend(format!("no persistent buffer `{name}`")))?;
        t.to_f64(&self.dev).map_err(rt)
    }

    fn begin(&mut self, _: &Graph, plan: &Plan) -> Result<(), ModelError> {
        self.ensure_arena(plan.arena_bytes)
    }

    fn run_nodes(
        &mut self,
        graph: &Graph,
        plan: &Plan,
        nodes: &[NodeIndex],
    ) -> Result<(), ModelError> {
        self.launch_nodes(graph, plan, nodes)
    }

    fn run_repeated(&mut self, key: &str, graph: &Graph, plan: &Plan) -> Result<(), ModelError> {
        self.ensure_arena(plan.arena_bytes)?;
        self.run_nodes_repeated(key, graph, plan, &plan.order)
    }

    fn run_nodes_repeated(
        &mut self,
        key: &str,
        graph: &Graph,
        plan: &Plan,
        nodes: &[NodeIndex],
    ) -> Result<(), ModelError> {
        if !self.captured.contains_key(key) {
            // A refused launch inside the capture keeps its own error; the capture ends cleanly.
            let mut refused = None;
            let captured = self.dev.capture(|| {
                self.launch_nodes(graph, plan, nodes).map_err(|e| {
                    refused = Some(e);
                    RuntimeError::EmptyGraph
                })
            });
            if let Some(e) = refused {
                return Err(e);
            }
            let g = captured.map_err(rt)?;
            self.captured.insert(key.to_string(), g);
        }
        self.captured[key].replay().map_err(rt)
    }

    fn memory(&self) -> (usize, usize) {
        (
            self.persistent.values().map(DeviceTensor::bytes).sum(),
            self.arena.as_ref().map_or(0, DeviceTensor::bytes),
        )
    }
}
