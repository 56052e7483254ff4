//! Where a [`Graph`] runs. [`InterpBackend`] runs each call's Tile IR on host arrays with the
//! compiler's interpreter (the front end and interpreter only: no LLVM is linked), which is how
//! CI runs the whole model without a GPU; the GPU backend launches the same calls from an AOT
//! package.
//!
//! The interpreter backend keeps buffers as the device would — bytes in their element type, the
//! intermediates at their planned offsets in one arena — so a memory plan that let two live
//! buffers overlap corrupts results here exactly as it would on the GPU.

use std::collections::HashMap;

use half::{bf16, f16};
use tessel_compiler::interp::{self, HostArg, HostTensor};
use tessel_compiler::sema::{self, parse_const, Overrides};
use tessel_compiler::tir::{Io, Kernel, ParamKind};
use tessel_package::DType;

use petgraph::graph::NodeIndex;

use crate::graph::{Access, Buf, Call, CallArg, Graph, KernelRef, Op, Plan};
use crate::kernels::source;
use crate::ModelError;

/// What the model needs of a machine.
pub trait Backend {
    /// Creates the persistent buffer `name` (zero-filled), or checks that it exists as asked.
    fn persistent(&mut self, name: &str, dtype: DType, numel: usize) -> Result<(), ModelError>;
    /// Overwrites a persistent buffer (values converted to its element type).
    fn write(&mut self, name: &str, data: &[f64]) -> Result<(), ModelError>;
    /// Overwrites a persistent buffer with bytes already in its element type (weights).
    fn write_bytes(&mut self, name: &str, bytes: &[u8]) -> Result<(), ModelError>;
    /// A persistent buffer's contents, after all work issued so far.
    fn read(&mut self, name: &str) -> Result<Vec<f64>, ModelError>;
    /// Runs every call of `graph` in `plan`'s order.
    fn run(&mut self, graph: &Graph, plan: &Plan) -> Result<(), ModelError> {
        self.begin(graph, plan)?;
        self.run_nodes(graph, plan, &plan.order)
    }
    /// Readies the arena for `plan` before `graph`'s nodes run, in pieces, through
    /// [`Backend::run_nodes`] (how a group of ranks steps together between collectives).
    fn begin(&mut self, graph: &Graph, plan: &Plan) -> Result<(), ModelError>;
    /// Runs these nodes of `graph`, in this order. A collective over one rank is the identity;
    /// one over more ranks is refused (it runs only in [`crate::parallel::Ranks`]).
    fn run_nodes(
        &mut self,
        graph: &Graph,
        plan: &Plan,
        nodes: &[NodeIndex],
    ) -> Result<(), ModelError>;
    /// [`Backend::run_nodes`] of a piece of a graph that will run again unchanged, under `key`
    /// (a GPU backend captures it once, as [`Backend::run_repeated`] does a whole graph).
    fn run_nodes_repeated(
        &mut self,
        key: &str,
        graph: &Graph,
        plan: &Plan,
        nodes: &[NodeIndex],
    ) -> Result<(), ModelError> {
        let _ = key;
        self.run_nodes(graph, plan, nodes)
    }
    /// Runs a graph that will be run again unchanged (a decode step): a GPU backend captures it
    /// once and replays it. `key` names it; the graph must be the same on every call with it.
    fn run_repeated(&mut self, key: &str, graph: &Graph, plan: &Plan) -> Result<(), ModelError> {
        let _ = key;
        self.run(graph, plan)
    }
    /// Device milliseconds spent in collectives since the last call, where a group measures
    /// them ([`crate::parallel::Nccl::timing`]); None elsewhere.
    fn take_collective_ms(&mut self) -> Result<Option<f64>, ModelError> {
        Ok(None)
    }
    /// Peak bytes of persistent buffers and of the largest arena so far.
    fn memory(&self) -> (usize, usize);
}

pub(crate) fn encode(dtype: DType, data: &[f64]) -> Vec<u8> {
    let mut out = Vec::with_capacity(data.len() * dtype.size());
    for &x in data {
        match dtype {
            DType::F32 => out.extend_from_slice(&(x as f32).to_le_bytes()),
            DType::I32 => out.extend_from_slice(&(x as i32).to_le_bytes()),
            DType::Bf16 => out.extend_from_slice(&bf16::from_f64(x).to_le_bytes()),
            DType::F16 => out.extend_from_slice(&f16::from_f64(x).to_le_bytes()),
            DType::Bool => out.push(u8::from(x != 0.0)),
        }
    }
    out
}

/// Whether a single backend may skip `call`: a collective over one rank changes nothing; a
/// collective over more needs the other ranks, which a single backend does not have.
pub(crate) fn single_rank_collective(call: &Call) -> Result<bool, ModelError> {
    match call.op {
        Op::Kernel(_) => Ok(false),
        Op::Collective { ranks: 1, .. } => Ok(true),
        Op::Collective { kind, ranks } => Err(ModelError::Backend(format!(
            "`{}` is a {kind:?} over {ranks} ranks: run the graph on a group of ranks \
             (parallel::Ranks), not on one backend",
            call.label
        ))),
    }
}

pub(crate) fn decode(dtype: DType, bytes: &[u8]) -> Vec<f64> {
    bytes
        .chunks_exact(dtype.size())
        .map(|c| match dtype {
            DType::F32 => f32::from_le_bytes([c[0], c[1], c[2], c[3]]) as f64,
            DType::I32 => i32::from_le_bytes([c[0], c[1], c[2], c[3]]) as f64,
            DType::Bf16 => bf16::from_le_bytes([c[0], c[1]]).to_f64(),
            DType::F16 => f16::from_le_bytes([c[0], c[1]]).to_f64(),
            DType::Bool => f64::from(c[0] != 0),
        })
        .collect()
}

/// Compiles `k` from its embedded source with its constants (front end only).
pub fn compile(k: &KernelRef) -> Result<Kernel, ModelError> {
    let bad = |message: String| ModelError::Kernel {
        kernel: k.display(),
        message,
    };
    let text = source(k.source).ok_or_else(|| bad(format!("no source `{}`", k.source)))?;
    let overrides: Overrides = k
        .consts
        .iter()
        .map(|(n, v)| {
            parse_const(v)
                .map(|c| (n.clone(), c))
                .ok_or_else(|| bad(format!("constant {n} = {v}")))
        })
        .collect::<Result<_, _>>()?;
    // Only this kernel is elaborated: the file's other kernels may not hold at these constants
    // (a BN that suits a reduction gives a matrix kernel a tile too large for one block).
    let render = |d: &[tessel_compiler::diag::Diagnostic]| {
        bad(tessel_compiler::diag::render_all(
            d,
            &format!("{}.tsl", k.source),
            text,
        ))
    };
    let file = tessel_compiler::syntax::parse(text).map_err(|d| render(&[d]))?;
    let ast = file
        .kernels
        .iter()
        .find(|x| x.name.name == k.name)
        .ok_or_else(|| bad("not in its source".into()))?;
    sema::elaborate_kernel(ast, &overrides).map_err(|d| render(&[d]))
}

/// The CPU backend: the Tile IR interpreter over host bytes.
#[derive(Debug, Default)]
pub struct InterpBackend {
    kernels: HashMap<KernelRef, Kernel>,
    persistent: HashMap<String, (DType, Vec<u8>)>,
    arena: Vec<u8>,
    peak_arena: usize,
    /// Kernel calls run so far.
    pub launches: usize,
}

impl InterpBackend {
    pub fn new() -> Self {
        Self::default()
    }

    fn bytes_of<'a>(
        persistent: &'a HashMap<String, (DType, Vec<u8>)>,
        arena: &'a [u8],
        plan: &Plan,
        graph: &Graph,
        buf: &Buf,
    ) -> Result<&'a [u8], ModelError> {
        match buf {
            Buf::Persistent(n) => persistent
                .get(n)
                .map(|(_, b)| b.as_slice())
                .ok_or_else(|| ModelError::Backend(format!("no persistent buffer `{n}`"))),
            Buf::Transient(i) => {
                let at = plan.offsets[*i];
                Ok(&arena[at..at + graph.transients[*i].bytes()])
            }
        }
    }

    /// The bytes of `buf` as `graph` under `plan` places it, for writing (the simulated
    /// collectives of [`crate::parallel`]).
    pub(crate) fn bytes_mut(
        &mut self,
        graph: &Graph,
        plan: &Plan,
        buf: &Buf,
    ) -> Result<&mut [u8], ModelError> {
        match buf {
            Buf::Persistent(n) => self
                .persistent
                .get_mut(n)
                .map(|(_, b)| b.as_mut_slice())
                .ok_or_else(|| ModelError::Backend(format!("no persistent buffer `{n}`"))),
            Buf::Transient(i) => {
                let at = plan.offsets[*i];
                Ok(&mut self.arena[at..at + graph.transients[*i].bytes()])
            }
        }
    }

    fn run_call(&mut self, graph: &Graph, plan: &Plan, node: NodeIndex) -> Result<(), ModelError> {
        let call = &graph.graph[node];
        if single_rank_collective(call)? {
            return Ok(());
        }
        let Op::Kernel(kref) = &call.op else {
            unreachable!("a collective over several ranks was refused above")
        };
        if !self.kernels.contains_key(kref) {
            let k = compile(kref)?;
            self.kernels.insert(kref.clone(), k);
        }
        let kernel = &self.kernels[kref];
        let bad = |message: String| ModelError::Kernel {
            kernel: format!("{} ({})", kref.display(), call.label),
            message,
        };
        if kernel.params.len() != call.args.len() {
            return Err(bad(format!(
                "{} arguments for {} parameters",
                call.args.len(),
                kernel.params.len()
            )));
        }
        let mut args = Vec::with_capacity(call.args.len());
        for (p, a) in kernel.params.iter().zip(&call.args) {
            match (a, &p.kind) {
                (CallArg::Scalar(v), ParamKind::Scalar { .. }) => args.push(HostArg::Scalar(*v)),
                (CallArg::Tensor(v), ParamKind::Tensor { io, .. }) => {
                    let declared = match io {
                        Io::In => Access::Read,
                        Io::Out => Access::Write,
                        Io::InOut => Access::ReadWrite,
                    };
                    if declared != v.access {
                        return Err(bad(format!(
                            "`{}` is {io:?} but the graph says {:?}",
                            p.name, v.access
                        )));
                    }
                    let bytes = Self::bytes_of(&self.persistent, &self.arena, plan, graph, &v.buf)?;
                    let numel: usize = v.shape.iter().product();
                    if numel * v.dtype.size() != bytes.len() {
                        return Err(bad(format!(
                            "`{}` viewed as {:?} {} over {} bytes",
                            p.name,
                            v.shape,
                            v.dtype.name(),
                            bytes.len()
                        )));
                    }
                    let data = decode(v.dtype, bytes);
                    args.push(HostArg::Tensor(HostTensor::new(
                        v.dtype,
                        v.shape.clone(),
                        data,
                    )));
                }
                _ => return Err(bad(format!("`{}`: tensor/scalar mismatch", p.name))),
            }
        }
        interp::run(kernel, &mut args).map_err(|e| bad(e.to_string()))?;
        for (a, host) in call.args.iter().zip(args) {
            let (CallArg::Tensor(v), HostArg::Tensor(t)) = (a, host) else {
                continue;
            };
            if v.access == Access::Read {
                continue;
            }
            let bytes = encode(v.dtype, &t.data);
            match &v.buf {
                Buf::Persistent(n) => self.persistent.get_mut(n).expect("checked above").1 = bytes,
                Buf::Transient(i) => {
                    let at = plan.offsets[*i];
                    self.arena[at..at + bytes.len()].copy_from_slice(&bytes);
                }
            }
        }
        self.launches += 1;
        Ok(())
    }
}

impl Backend for InterpBackend {
    fn persistent(&mut self, name: &str, dtype: DType, numel: usize) -> Result<(), ModelError> {
        match self.persistent.get(name) {
            Some((d, b)) if *d == dtype && b.len() == numel * dtype.size() => Ok(()),
            Some((d, b)) => Err(ModelError::Backend(format!(
                "`{name}` exists as {} bytes of {}, asked for {numel} of {}",
                b.len(),
                d.name(),
                dtype.name()
            ))),
            None => {
                self.persistent
                    .insert(name.to_string(), (dtype, vec![0; numel * dtype.size()]));
                Ok(())
            }
        }
    }

    fn write(&mut self, name: &str, data: &[f64]) -> Result<(), ModelError> {
        let dtype = self
            .persistent
            .get(name)
            .map(|(d, _)| *d)
            .ok_or_else(|| ModelError::Backend(format!("no persistent buffer `{name}`")))?;
        self.write_bytes(name, &encode(dtype, data))
    }

    fn write_bytes(&mut self, name: &str, bytes: &[u8]) -> Result<(), ModelError> {
        let (_, b) = self
            .persistent
            .get_mut(name)
            .ok_or_else(|| ModelError::Backend(format!("no persistent buffer `{name}`")))?;
        if b.len() != bytes.len() {
            return Err(ModelError::Backend(format!(
                "`{name}` holds {} bytes, {} written",
                b.len(),
                bytes.len()
            )));
        }
        b.copy_from_slice(bytes);
        Ok(())
    }

    fn read(&mut self, name: &str) -> Result<Vec<f64>, ModelError> {
        let (d, b) = self
            .persistent
            .get(name)
            .ok_or_else(|| ModelError::Backend(format!("no persistent buffer `{name}`")))?;
        Ok(decode(*d, b))
    }

    fn begin(&mut self, _: &Graph, plan: &Plan) -> Result<(), ModelError> {
        if self.arena.len() < plan.arena_bytes {
            self.arena.resize(plan.arena_bytes, 0);
        }
        // Poison the arena: an intermediate read before it is written shows as NaN.
        self.arena.fill(0xff);
        self.peak_arena = self.peak_arena.max(plan.arena_bytes);
        Ok(())
    }

    fn run_nodes(
        &mut self,
        graph: &Graph,
        plan: &Plan,
        nodes: &[NodeIndex],
    ) -> Result<(), ModelError> {
        for node in nodes {
            self.run_call(graph, plan, *node)?;
        }
        Ok(())
    }

    fn memory(&self) -> (usize, usize) {
        (
            self.persistent.values().map(|(_, b)| b.len()).sum(),
            self.peak_arena,
        )
    }
}
