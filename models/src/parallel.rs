//! A group of ranks running one graph together: the multi-rank execution every parallel model
//! (tensor parallel TransNormerLLM, sequence parallel LongNet) shares.
//!
//! Every rank holds the same graph over its own buffers (the same names; a rank's weights are
//! its shards). [`Ranks`] runs the plan's order cut at the collective nodes: each rank runs the
//! kernel calls up to the next collective, then the [`Communicator`] combines the ranks'
//! buffers, and so on. On the GPU the ranks' kernels are only queued (one stream per device),
//! so the ranks overlap; NCCL orders the collective after each rank's queued work.
//!
//! [`Ranks`] is itself a [`Backend`]: inputs written to it go to every rank, results are read
//! from rank 0 (after a collective every rank holds the same values), so a [`Session`] drives a
//! group exactly as it drives one device. Sharded weights go to each rank through
//! [`Ranks::rank_mut`].
//!
//! [`Simulated`] runs the collectives in process over the interpreter's host buffers (how CI
//! tests a split graph); [`Nccl`] through `tessel_runtime::collective::Group`.
//!
//! [`Session`]: crate::transnormer::Session

use petgraph::graph::NodeIndex;
use tessel_package::DType;
use tessel_runtime::collective::Group;
use tessel_runtime::cuda::CudaEvent;

use crate::backend::{decode, encode, Backend, InterpBackend};
use crate::backend_gpu::GpuBackend;
use crate::graph::{Collective, Graph, Op, Plan};
use crate::ModelError;

/// How a group's ranks meet at a collective node.
pub trait Communicator {
    type Rank: Backend;
    /// Executes the collective `node` of `graph` over every rank's buffers.
    fn collective(
        &mut self,
        ranks: &mut [Self::Rank],
        graph: &Graph,
        plan: &Plan,
        node: NodeIndex,
    ) -> Result<(), ModelError>;
    /// Device milliseconds spent in collectives since the last call, where measured.
    fn take_collective_ms(&mut self) -> Result<Option<f64>, ModelError> {
        Ok(None)
    }
}

/// The ranks of a parallel group and how they communicate.
pub struct Ranks<C: Communicator> {
    ranks: Vec<C::Rank>,
    pub comm: C,
}

/// The collective a node runs, checked against the group it runs on.
fn collective_of(graph: &Graph, node: NodeIndex, ranks: usize) -> Result<Collective, ModelError> {
    let call = &graph.graph[node];
    match call.op {
        Op::Collective { kind, ranks: n } if n == ranks => Ok(kind),
        Op::Collective { ranks: n, .. } => Err(ModelError::Backend(format!(
            "`{}` is a collective over {n} ranks, run on a group of {ranks}",
            call.label
        ))),
        Op::Kernel(_) => unreachable!("only collective nodes are passed here"),
    }
}

impl<C: Communicator> Ranks<C> {
    pub fn new(ranks: Vec<C::Rank>, comm: C) -> Result<Self, ModelError> {
        if ranks.is_empty() {
            return Err(ModelError::Backend("a group of no ranks".into()));
        }
        Ok(Self { ranks, comm })
    }

    pub fn size(&self) -> usize {
        self.ranks.len()
    }

    /// Rank r's backend: where its shards of the weights are written.
    pub fn rank_mut(&mut self, r: usize) -> &mut C::Rank {
        &mut self.ranks[r]
    }

    pub fn ranks(&self) -> &[C::Rank] {
        &self.ranks
    }

    /// Runs `nodes` on every rank, cut at collectives; `key` (a repeated graph) lets each rank
    /// keep what it captured of each piece between collectives.
    fn step(
        &mut self,
        graph: &Graph,
        plan: &Plan,
        nodes: &[NodeIndex],
        key: Option<&str>,
    ) -> Result<(), ModelError> {
        let mut piece = 0;
        let mut start = 0;
        for (i, node) in nodes.iter().enumerate() {
            let is_collective = matches!(graph.graph[*node].op, Op::Collective { .. });
            if !is_collective && i + 1 < nodes.len() {
                continue;
            }
            let end = if is_collective { i } else { i + 1 };
            if end > start {
                for rank in &mut self.ranks {
                    match key {
                        Some(k) => {
                            let k = format!("{k}/{piece}");
                            rank.run_nodes_repeated(&k, graph, plan, &nodes[start..end])?
                        }
                        None => rank.run_nodes(graph, plan, &nodes[start..end])?,
                    }
                }
            }
            if is_collective {
                collective_of(graph, *node, self.ranks.len())?;
                self.comm.collective(&mut self.ranks, graph, plan, *node)?;
            }
            piece += 1;
            start = i + 1;
        }
        Ok(())
    }
}

impl<C: Communicator> Backend for Ranks<C> {
    fn persistent(&mut self, name: &str, dtype: DType, numel: usize) -> Result<(), ModelError> {
        self.ranks
            .iter_mut()
            .try_for_each(|r| r.persistent(name, dtype, numel))
    }

    /// Replicated data (token ids, positions): the same on every rank.
    fn write(&mut self, name: &str, data: &[f64]) -> Result<(), ModelError> {
        self.ranks.iter_mut().try_for_each(|r| r.write(name, data))
    }

    fn write_bytes(&mut self, name: &str, bytes: &[u8]) -> Result<(), ModelError> {
        self.ranks
            .iter_mut()
            .try_for_each(|r| r.write_bytes(name, bytes))
    }

    /// Rank 0's copy: what a graph leaves in a persistent buffer after its last collective is
    /// the same on every rank.
    fn read(&mut self, name: &str) -> Result<Vec<f64>, ModelError> {
        self.ranks[0].read(name)
    }

    fn begin(&mut self, graph: &Graph, plan: &Plan) -> Result<(), ModelError> {
        self.ranks.iter_mut().try_for_each(|r| r.begin(graph, plan))
    }

    fn run_nodes(
        &mut self,
        graph: &Graph,
        plan: &Plan,
        nodes: &[NodeIndex],
    ) -> Result<(), ModelError> {
        self.step(graph, plan, nodes, None)
    }

    fn run_repeated(&mut self, key: &str, graph: &Graph, plan: &Plan) -> Result<(), ModelError> {
        self.begin(graph, plan)?;
        self.step(graph, plan, &plan.order, Some(key))
    }

    fn take_collective_ms(&mut self) -> Result<Option<f64>, ModelError> {
        self.comm.take_collective_ms()
    }

    /// The largest rank's: what one device must hold.
    fn memory(&self) -> (usize, usize) {
        let m: Vec<(usize, usize)> = self.ranks.iter().map(Backend::memory).collect();
        (
            m.iter().map(|x| x.0).max().unwrap_or(0),
            m.iter().map(|x| x.1).max().unwrap_or(0),
        )
    }
}

/// Collectives simulated in process over the interpreter ranks' host buffers.
#[derive(Debug, Default)]
pub struct Simulated {
    /// Collective nodes run so far.
    pub collectives: usize,
}

/// `x` rounded to `dtype`, as an element of that type holds it.
fn round(dtype: DType, x: f64) -> f64 {
    decode(dtype, &encode(dtype, &[x]))[0]
}

impl Communicator for Simulated {
    type Rank = InterpBackend;

    /// The sum is taken in rank order and rounded to the buffer's type after every addition, as
    /// a reduction that combines one rank at a time (NCCL's ring or tree) rounds at every hop.
    fn collective(
        &mut self,
        ranks: &mut [InterpBackend],
        graph: &Graph,
        plan: &Plan,
        node: NodeIndex,
    ) -> Result<(), ModelError> {
        let call = &graph.graph[node];
        match collective_of(graph, node, ranks.len())? {
            Collective::AllReduceSum => {
                for v in call.views() {
                    if !matches!(v.dtype, DType::F32 | DType::Bf16 | DType::F16) {
                        return Err(ModelError::Backend(format!(
                            "`{}`: a sum of {} buffers",
                            call.label,
                            v.dtype.name()
                        )));
                    }
                    let numel: usize = v.shape.iter().product();
                    let mut acc: Option<Vec<f64>> = None;
                    for rank in ranks.iter_mut() {
                        let bytes = rank.bytes_mut(graph, plan, &v.buf)?;
                        if bytes.len() != numel * v.dtype.size() {
                            return Err(ModelError::Backend(format!(
                                "`{}` views {:?} {} over {} bytes",
                                call.label,
                                v.shape,
                                v.dtype.name(),
                                bytes.len()
                            )));
                        }
                        let x = decode(v.dtype, bytes);
                        acc = Some(match acc {
                            None => x,
                            Some(a) => a
                                .iter()
                                .zip(&x)
                                .map(|(a, b)| round(v.dtype, a + b))
                                .collect(),
                        });
                    }
                    let out = encode(v.dtype, &acc.expect("a group has ranks"));
                    for rank in ranks.iter_mut() {
                        rank.bytes_mut(graph, plan, &v.buf)?.copy_from_slice(&out);
                    }
                }
            }
        }
        self.collectives += 1;
        Ok(())
    }
}

impl Ranks<Simulated> {
    /// `n` interpreter ranks with simulated collectives.
    pub fn interpreted(n: usize) -> Result<Self, ModelError> {
        Ranks::new(
            (0..n).map(|_| InterpBackend::new()).collect(),
            Simulated::default(),
        )
    }
}

/// Collectives through NCCL; rank r's backend runs on the group's device r.
pub struct Nccl {
    pub group: Group,
    /// When set, each collective is bracketed by timing events on rank 0's stream (recorded,
    /// not waited for: the ranks keep overlapping), summed by `take_collective_ms`. The time
    /// includes waiting for the slowest rank to arrive, which is what the step pays.
    pub timing: bool,
    events: Vec<(CudaEvent, CudaEvent)>,
}

fn timing_event(dev: &tessel_runtime::Device) -> Result<CudaEvent, ModelError> {
    use tessel_runtime::cuda::sys::CUevent_flags::CU_EVENT_DEFAULT;
    dev.stream()
        .record_event(Some(CU_EVENT_DEFAULT))
        .map_err(|e| ModelError::Backend(format!("timing event: {e}")))
}

impl Communicator for Nccl {
    type Rank = GpuBackend;

    fn collective(
        &mut self,
        ranks: &mut [GpuBackend],
        graph: &Graph,
        plan: &Plan,
        node: NodeIndex,
    ) -> Result<(), ModelError> {
        let call = &graph.graph[node];
        match collective_of(graph, node, ranks.len())? {
            Collective::AllReduceSum => {
                let views = ranks
                    .iter()
                    .map(|be| call.views().map(|v| be.tensor_view(plan, v)).collect())
                    .collect::<Result<Vec<Vec<_>>, _>>()?;
                let start = self
                    .timing
                    .then(|| timing_event(self.group.device(0)))
                    .transpose()?;
                self.group
                    .all_reduce_sum(&views)
                    .map_err(|e| ModelError::Backend(e.to_string()))?;
                if let Some(start) = start {
                    let end = timing_event(self.group.device(0))?;
                    self.events.push((start, end));
                }
            }
        }
        Ok(())
    }

    fn take_collective_ms(&mut self) -> Result<Option<f64>, ModelError> {
        if !self.timing {
            return Ok(None);
        }
        let bad = |e: tessel_runtime::cuda::DriverError| ModelError::Backend(e.to_string());
        let mut ms = 0.0;
        for (start, end) in self.events.drain(..) {
            end.synchronize().map_err(bad)?;
            ms += f64::from(start.elapsed_ms(&end).map_err(bad)?);
        }
        Ok(Some(ms))
    }
}

impl Ranks<Nccl> {
    /// One GPU backend per device of `group`, each with `package` loaded.
    pub fn gpu(
        group: Group,
        package: &tessel_runtime::format::Package,
    ) -> Result<Self, ModelError> {
        let rt = |e: tessel_runtime::RuntimeError| ModelError::Backend(e.to_string());
        let ranks = group
            .devices()
            .iter()
            .map(|d| {
                let pkg = tessel_runtime::LoadedPackage::load(d, package.clone()).map_err(rt)?;
                Ok(GpuBackend::new(d.clone(), pkg))
            })
            .collect::<Result<Vec<_>, ModelError>>()?;
        Ranks::new(
            ranks,
            Nccl {
                group,
                timing: false,
                events: Vec::new(),
            },
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::graph::{Access, Buf, View};

    fn view(name: &str, dtype: DType, n: usize) -> View {
        View {
            buf: Buf::Persistent(name.into()),
            dtype,
            shape: vec![n],
            access: Access::ReadWrite,
        }
    }

    #[test]
    fn the_simulated_all_reduce_sums_every_rank_in_place() {
        let mut g = Graph::default();
        g.collective(
            "sum",
            Collective::AllReduceSum,
            3,
            vec![view("a", DType::F32, 2), view("b", DType::Bf16, 1)],
        );
        let plan = g.plan();
        let mut ranks = Ranks::interpreted(3).unwrap();
        ranks.persistent("a", DType::F32, 2).unwrap();
        ranks.persistent("b", DType::Bf16, 1).unwrap();
        for r in 0..3 {
            let be = ranks.rank_mut(r);
            be.write("a", &[r as f64, 10.0 * r as f64]).unwrap();
            // bf16 keeps 8 bits: 256 + 1 + 1 rounds to 256 at each hop (ties to even).
            be.write("b", &[if r == 0 { 256.0 } else { 1.0 }]).unwrap();
        }
        ranks.run(&g, &plan).unwrap();
        for r in 0..3 {
            assert_eq!(ranks.rank_mut(r).read("a").unwrap(), vec![3.0, 30.0]);
            assert_eq!(ranks.rank_mut(r).read("b").unwrap(), vec![256.0]);
        }
        assert_eq!(ranks.comm.collectives, 1);
    }

    #[test]
    fn a_collective_runs_only_on_the_group_it_was_built_for() {
        let mut g = Graph::default();
        g.collective(
            "sum",
            Collective::AllReduceSum,
            2,
            vec![view("a", DType::F32, 1)],
        );
        let plan = g.plan();
        let mut one = InterpBackend::new();
        one.persistent("a", DType::F32, 1).unwrap();
        let e = one.run(&g, &plan).unwrap_err().to_string();
        assert!(
            e.contains("over 2 ranks") && e.contains("parallel::Ranks"),
            "{e}"
        );
        let mut three = Ranks::interpreted(3).unwrap();
        three.persistent("a", DType::F32, 1).unwrap();
        let e = three.run(&g, &plan).unwrap_err().to_string();
        assert!(e.contains("group of 3"), "{e}");
        // Over one rank it is the identity, on a plain backend too.
        let mut g1 = Graph::default();
        g1.collective(
            "sum",
            Collective::AllReduceSum,
            1,
            vec![view("a", DType::F32, 1)],
        );
        one.write("a", &[5.0]).unwrap();
        one.run(&g1, &g1.plan()).unwrap();
        assert_eq!(one.read("a").unwrap(), vec![5.0]);
    }
}
