//! Scheduling: how the threads of a block carry a kernel's tiles.
//!
//! This first scheduler handles kernels whose tiles are scalars or 1-D (elementwise work with
//! masked loads and stores): a block has `num_warps · 32` threads, and element i of a 1-D tile
//! lives on thread i mod T in slot ⌊i / T⌋, so consecutive threads touch consecutive addresses.
//! Tiles of one element are computed redundantly by every thread. Anything else (2-D tiles,
//! reductions, dot, loops) is refused with a typed error naming the op, until the tensor-core
//! scheduler (fragment layouts, shared-memory staging, pipelining) takes it.

use std::fmt;

use crate::tir::{Block, Kernel, Op, ValueId};
use crate::Target;

/// Warps per block when the kernel does not say (`@num_warps`).
pub const DEFAULT_NUM_WARPS: u32 = 4;

/// Where the elements of one value live.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layout {
    /// One element, held (and computed) by every thread.
    Uniform,
    /// A 1-D tile of `len` elements; element i on thread i mod T, slot i / T.
    Strided { len: usize, slots: usize },
}

#[derive(Debug, Clone, PartialEq)]
pub struct Schedule {
    pub kernel: String,
    pub target: Target,
    pub num_warps: u32,
    pub threads: u32,
    /// The layout of every value, indexed by `ValueId`.
    pub layouts: Vec<Layout>,
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("kernel `{kernel}` cannot be scheduled yet: {op}: {reason}")]
pub struct SchedError {
    pub kernel: String,
    pub op: String,
    pub reason: String,
}

impl Schedule {
    pub fn layout(&self, v: ValueId) -> Layout {
        self.layouts[v.0 as usize]
    }
}

/// Decides the schedule of `kernel` on `target`.
pub fn schedule(kernel: &Kernel, target: Target) -> Result<Schedule, SchedError> {
    let num_warps = kernel
        .attr("num_warps")
        .and_then(|a| a.first().copied())
        .map(|w| w as u32)
        .unwrap_or(DEFAULT_NUM_WARPS);
    let threads = num_warps * 32;
    let refuse = |op: &str, reason: &str| SchedError {
        kernel: kernel.name.clone(),
        op: op.into(),
        reason: reason.into(),
    };
    let mut layouts = Vec::with_capacity(kernel.types.len());
    for t in &kernel.types {
        let n = t.numel();
        layouts.push(match t.shape.len() {
            _ if n == 1 => Layout::Uniform,
            1 => Layout::Strided {
                len: n,
                slots: n.div_ceil(threads as usize),
            },
            _ => {
                return Err(refuse(
                    &format!("a {t} tile"),
                    "tiles of rank 2 or more need the tensor-core scheduler",
                ))
            }
        });
    }
    check_ops(&kernel.body, &refuse)?;
    Ok(Schedule {
        kernel: kernel.name.clone(),
        target,
        num_warps,
        threads,
        layouts,
    })
}

fn check_ops(block: &Block, refuse: &dyn Fn(&str, &str) -> SchedError) -> Result<(), SchedError> {
    for inst in &block.insts {
        match &inst.op {
            Op::Reduce { .. } => {
                return Err(refuse(
                    "reduce",
                    "reductions need the warp-shuffle lowering",
                ))
            }
            Op::Dot { .. } => return Err(refuse("dot", "dot needs the tensor-core scheduler")),
            Op::Trans { .. } => return Err(refuse("trans", "transposes need 2-D layouts")),
            Op::For { .. } | Op::Yield(_) => {
                return Err(refuse("for", "loops are not lowered yet"))
            }
            Op::StrideSize { .. } => {
                return Err(refuse("stride", "strided tensors are not lowered yet"))
            }
            Op::Broadcast { .. } | Op::ExpandDims { .. } => {
                return Err(refuse(
                    "broadcast",
                    "broadcasts between layouts are not lowered yet",
                ))
            }
            _ => {}
        }
    }
    Ok(())
}

impl fmt::Display for Schedule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "schedule {} for {}", self.kernel, self.target.name)?;
        writeln!(
            f,
            "  block: {} warps, {} threads",
            self.num_warps, self.threads
        )?;
        let mut uniform = 0;
        for (i, l) in self.layouts.iter().enumerate() {
            match l {
                Layout::Uniform => uniform += 1,
                Layout::Strided { len, slots } => writeln!(
                    f,
                    "  %{i}: {len} elements, strided over {} threads, {slots} per thread",
                    self.threads
                )?,
            }
        }
        writeln!(f, "  {uniform} uniform scalar values")
    }
}
