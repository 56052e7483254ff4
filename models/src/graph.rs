//! A model step as a graph of kernel calls over named buffers, and the memory plan of its
//! intermediates.
//!
//! Nodes are kernel calls (a kernel of a dsl-examples source, the constants it is specialised
//! with, its arguments) or collectives over the ranks of a parallel group ([`Collective`]: what a
//! tensor-parallel graph reduces between ranks); an edge A → B says B must run after A because of a buffer: B reads what
//! A wrote (true dependence), or B overwrites what A read or wrote. Calls run in a topological
//! order of that graph (petgraph's, checked for cycles), and the order is what liveness is
//! computed over.
//!
//! Buffers are of two kinds. *Persistent* ones outlive a step and are named globally (weights,
//! the per-layer decode states, token ids, positions, logits): the backend owns them and every
//! graph of a model shares them. *Transient* ones live from the call that first touches them to
//! the last, and [`Plan`] packs them into one arena by those intervals: two buffers share bytes
//! only when their lifetimes do not overlap.

use petgraph::algo::toposort;
use petgraph::graph::{DiGraph, NodeIndex};
use tessel_package::DType;

/// Which buffer an argument names.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Buf {
    Persistent(String),
    Transient(usize),
}

/// How a call touches an argument (what the kernel's parameter declares).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    Read,
    Write,
    ReadWrite,
}

/// A buffer seen with a shape (the same bytes may be seen as (M, 4·hidden) by one call and as
/// (B, N, 4H, head_dim) by the next).
#[derive(Debug, Clone, PartialEq)]
pub struct View {
    pub buf: Buf,
    pub dtype: DType,
    pub shape: Vec<usize>,
    pub access: Access,
}

#[derive(Debug, Clone, PartialEq)]
pub enum CallArg {
    Tensor(View),
    Scalar(f64),
}

/// A kernel of one of the model's sources, with the constants that select its variant.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct KernelRef {
    /// The source file's stem in dsl-examples/ (e.g. `linear`).
    pub source: &'static str,
    pub name: &'static str,
    /// Sorted by name.
    pub consts: Vec<(String, String)>,
}

impl KernelRef {
    pub fn new(source: &'static str, name: &'static str, consts: &[(&str, String)]) -> Self {
        let mut consts: Vec<(String, String)> = consts
            .iter()
            .map(|(k, v)| (k.to_string(), v.clone()))
            .collect();
        consts.sort();
        Self {
            source,
            name,
            consts,
        }
    }

    /// `name[K=V,...]`, the way packages name variants.
    pub fn display(&self) -> String {
        let c: Vec<String> = self
            .consts
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        format!("{}[{}]", self.name, c.join(","))
    }
}

/// A collective over the ranks of a parallel group. Each rank runs the same graph on its own
/// buffers; at a collective node the ranks meet. Its tensor arguments are every rank's
/// buffers of the same name (all `ReadWrite`: the ranks' values go in, the combined values come
/// out), so the dependence edges of kernel calls order it like any other writer.
///
/// Only the sum all-reduce exists yet; gathers and scatters (sequence parallelism) add variants
/// here, each backend executing them as it executes this one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Collective {
    /// Every tensor argument summed over the ranks, in place. Several arguments are one
    /// operation (one NCCL group on the GPU, which NCCL fuses into one launch).
    AllReduceSum,
}

/// What a node does.
#[derive(Debug, Clone, PartialEq)]
pub enum Op {
    Kernel(KernelRef),
    /// A collective over a group of `ranks` ranks (a backend of one rank runs `ranks == 1`
    /// as the identity and refuses anything else).
    Collective {
        kind: Collective,
        ranks: usize,
    },
}

#[derive(Debug, Clone, PartialEq)]
pub struct Call {
    pub op: Op,
    pub args: Vec<CallArg>,
    /// What the call is for, for listings (`layer 3 qkvu`).
    pub label: String,
}

impl Call {
    /// The kernel a kernel call launches (None for a collective).
    pub fn kernel(&self) -> Option<&KernelRef> {
        match &self.op {
            Op::Kernel(k) => Some(k),
            Op::Collective { .. } => None,
        }
    }

    /// `name[K=V,...]` of a kernel call, `AllReduceSum×2` of a collective over two ranks.
    pub fn describe(&self) -> String {
        match &self.op {
            Op::Kernel(k) => k.display(),
            Op::Collective { kind, ranks } => format!("{kind:?}×{ranks}"),
        }
    }

    /// The tensors the call touches, in argument order.
    pub fn views(&self) -> impl Iterator<Item = &View> {
        self.args.iter().filter_map(|a| match a {
            CallArg::Tensor(v) => Some(v),
            CallArg::Scalar(_) => None,
        })
    }
}

#[derive(Debug, Clone)]
pub struct Transient {
    pub name: String,
    pub dtype: DType,
    pub numel: usize,
}

impl Transient {
    pub fn bytes(&self) -> usize {
        self.numel * self.dtype.size()
    }
}

/// A step's calls and the transient buffers they use.
#[derive(Debug, Clone, Default)]
pub struct Graph {
    pub transients: Vec<Transient>,
    pub graph: DiGraph<Call, ()>,
}

/// Offsets of the transient buffers in one arena.
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    /// Calls in execution order.
    pub order: Vec<NodeIndex>,
    /// Byte offset of each transient buffer.
    pub offsets: Vec<usize>,
    /// The arena's size: the peak of live intermediate bytes, after alignment.
    pub arena_bytes: usize,
    /// What the intermediates would take without reuse.
    pub unshared_bytes: usize,
}

/// Offsets are multiples of this (what vectorised and TMA accesses want).
pub const ALIGN: usize = 256;

impl Graph {
    pub fn transient(&mut self, name: impl Into<String>, dtype: DType, numel: usize) -> Buf {
        self.transients.push(Transient {
            name: name.into(),
            dtype,
            numel,
        });
        Buf::Transient(self.transients.len() - 1)
    }

    /// Appends a call, with an edge from every earlier call it must follow.
    pub fn call(&mut self, label: impl Into<String>, kernel: KernelRef, args: Vec<CallArg>) {
        self.node(label.into(), Op::Kernel(kernel), args);
    }

    /// Appends a collective over `ranks` ranks on `bufs` (each read and written in place).
    pub fn collective(
        &mut self,
        label: impl Into<String>,
        kind: Collective,
        ranks: usize,
        bufs: Vec<View>,
    ) {
        let args = bufs
            .into_iter()
            .map(|v| {
                CallArg::Tensor(View {
                    access: Access::ReadWrite,
                    ..v
                })
            })
            .collect();
        self.node(label.into(), Op::Collective { kind, ranks }, args);
    }

    /// Every kernel the graph launches, sorted and without repeats.
    pub fn kernels(&self) -> Vec<KernelRef> {
        let mut set: Vec<KernelRef> = self
            .graph
            .node_weights()
            .filter_map(|c| c.kernel().cloned())
            .collect();
        set.sort();
        set.dedup();
        set
    }

    fn node(&mut self, label: String, op: Op, args: Vec<CallArg>) {
        let node = self.graph.add_node(Call { op, args, label });
        let earlier: Vec<NodeIndex> = self.graph.node_indices().filter(|n| *n != node).collect();
        for prev in earlier {
            if conflicts(&self.graph[prev], &self.graph[node]) {
                self.graph.add_edge(prev, node, ());
            }
        }
    }

    pub fn len(&self) -> usize {
        self.graph.node_count()
    }

    pub fn is_empty(&self) -> bool {
        self.graph.node_count() == 0
    }

    /// Liveness over a topological order, then first-fit packing, largest buffers first.
    pub fn plan(&self) -> Plan {
        let order = toposort(&self.graph, None).expect("calls only depend on earlier calls");
        let n = self.transients.len();
        let mut first = vec![usize::MAX; n];
        let mut last = vec![0usize; n];
        for (step, node) in order.iter().enumerate() {
            for arg in &self.graph[*node].args {
                if let CallArg::Tensor(View {
                    buf: Buf::Transient(i),
                    ..
                }) = arg
                {
                    first[*i] = first[*i].min(step);
                    last[*i] = last[*i].max(step);
                }
            }
        }
        let mut by_size: Vec<usize> = (0..n).filter(|i| first[*i] != usize::MAX).collect();
        by_size.sort_by_key(|i| std::cmp::Reverse(self.transients[*i].bytes()));
        let mut offsets = vec![0usize; n];
        let mut placed: Vec<usize> = Vec::new();
        let mut arena = 0;
        for i in by_size {
            let size = self.transients[i].bytes().div_ceil(ALIGN) * ALIGN;
            // Intervals of bytes taken by buffers alive at the same time, sorted by offset.
            let mut busy: Vec<(usize, usize)> = placed
                .iter()
                .filter(|j| first[**j] <= last[i] && first[i] <= last[**j])
                .map(|j| {
                    let s = self.transients[*j].bytes().div_ceil(ALIGN) * ALIGN;
                    (offsets[*j], offsets[*j] + s)
                })
                .collect();
            busy.sort();
            let mut at = 0;
            for (s, e) in busy {
                if at + size <= s {
                    break;
                }
                at = at.max(e);
            }
            offsets[i] = at;
            arena = arena.max(at + size);
            placed.push(i);
        }
        Plan {
            order,
            offsets,
            arena_bytes: arena,
            unshared_bytes: self
                .transients
                .iter()
                .map(|t| t.bytes().div_ceil(ALIGN) * ALIGN)
                .sum(),
        }
    }
}

fn touches(call: &Call) -> impl Iterator<Item = (&Buf, Access)> {
    call.args.iter().filter_map(|a| match a {
        CallArg::Tensor(v) => Some((&v.buf, v.access)),
        CallArg::Scalar(_) => None,
    })
}

/// Whether `later` must wait for `earlier`: they share a buffer and one of them writes it.
fn conflicts(earlier: &Call, later: &Call) -> bool {
    touches(earlier).any(|(b1, a1)| {
        touches(later).any(|(b2, a2)| b1 == b2 && (a1 != Access::Read || a2 != Access::Read))
    })
}

/// The persistent buffer `name`.
pub fn persistent(name: &str) -> Buf {
    Buf::Persistent(name.to_string())
}

/// A call argument: `buf` seen as a `dtype` tensor of `shape`, accessed as `access`.
pub fn view(buf: &Buf, dtype: DType, shape: &[usize], access: Access) -> CallArg {
    CallArg::Tensor(View {
        buf: buf.clone(),
        dtype,
        shape: shape.to_vec(),
        access,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn view(buf: &Buf, access: Access) -> CallArg {
        CallArg::Tensor(View {
            buf: buf.clone(),
            dtype: DType::F32,
            shape: vec![1],
            access,
        })
    }

    fn k() -> KernelRef {
        KernelRef::new("x", "k", &[])
    }

    #[test]
    fn buffers_share_bytes_only_when_their_lifetimes_do_not_overlap() {
        let mut g = Graph::default();
        let a = g.transient("a", DType::F32, 1000);
        let b = g.transient("b", DType::F32, 1000);
        let c = g.transient("c", DType::F32, 500);
        let d = g.transient("d", DType::Bf16, 10);
        // a → b → c → d: a chain where each buffer dies after its consumer.
        g.call("1", k(), vec![view(&a, Access::Write)]);
        g.call(
            "2",
            k(),
            vec![view(&a, Access::Read), view(&b, Access::Write)],
        );
        g.call(
            "3",
            k(),
            vec![view(&b, Access::Read), view(&c, Access::Write)],
        );
        g.call(
            "4",
            k(),
            vec![view(&c, Access::Read), view(&d, Access::Write)],
        );
        let p = g.plan();
        assert_eq!(p.order.len(), 4);
        let span = |i: usize| {
            let s = g.transients[i].bytes().div_ceil(ALIGN) * ALIGN;
            (p.offsets[i], p.offsets[i] + s)
        };
        let overlap = |x: (usize, usize), y: (usize, usize)| x.0 < y.1 && y.0 < x.1;
        // Live together: (a, b), (b, c), (c, d) — never overlapping; a and c may share.
        assert!(!overlap(span(0), span(1)));
        assert!(!overlap(span(1), span(2)));
        assert!(!overlap(span(2), span(3)));
        assert!(overlap(span(0), span(2)), "a is dead when c is born: {p:?}");
        assert_eq!(p.arena_bytes, 2 * 4096);
        assert!(p.unshared_bytes > p.arena_bytes);
    }

    #[test]
    fn edges_follow_reads_after_writes_and_writes_after_reads() {
        let mut g = Graph::default();
        let x = Buf::Persistent("x".into());
        let t = g.transient("t", DType::F32, 4);
        g.call("w", k(), vec![view(&x, Access::Write)]);
        g.call(
            "r1",
            k(),
            vec![view(&x, Access::Read), view(&t, Access::Write)],
        );
        g.call("r2", k(), vec![view(&x, Access::Read)]);
        g.call("rw", k(), vec![view(&x, Access::ReadWrite)]);
        let e = |a: usize, b: usize| {
            g.graph
                .find_edge(NodeIndex::new(a), NodeIndex::new(b))
                .is_some()
        };
        assert!(e(0, 1) && e(0, 2) && e(1, 3) && e(2, 3) && e(0, 3));
        assert!(!e(1, 2), "two reads need no order");
    }
}
