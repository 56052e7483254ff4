//! The schedule: the data the passes write and the lowering reads.

use std::collections::HashMap;

use super::alloc::Buffer;
use super::layout::Dist;
use super::strategy::Strategy;
use super::verify::Invariant;
use super::wgmma::WgmmaPlan;
use crate::tir::{DType, Kernel, ValueId};
use crate::{Feature, Target};

/// Where the elements of one value live.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Layout {
    /// One element, held (and computed) by every thread.
    Uniform,
    /// Spread over the block's registers.
    Dist(Dist),
    /// Only in shared memory (a load whose every use is a dot operand).
    Shared,
    /// No value (a store's non-result).
    None,
}

/// How the elements of the block split: the layout family every tile starts from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Frame {
    /// Tiles take the accumulator layout of m16n8k16 over `wm × wn` warps.
    Mma { wm: usize, wn: usize },
    /// Tiles take coalesced blocked layouts.
    Blocked,
}

/// A 2-D tile in shared memory, rows of `cols` elements; 16-bit tiles have their 16-byte chunks
/// XOR-swizzled by row so that `ldmatrix` and row-wise copies are free of bank conflicts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SmemTile {
    pub rows: usize,
    pub cols: usize,
    pub dtype: DType,
    pub swizzle: bool,
    /// Columns per panel: the tile is stored as `cols / panel` column panels one after another,
    /// each `rows × panel` row-major and swizzled on its own (`cols` itself when unpanelled).
    pub panel: usize,
}

impl SmemTile {
    pub fn new(rows: usize, cols: usize, dtype: DType) -> Self {
        SmemTile::panelled(rows, cols, dtype, cols)
    }

    /// A tile stored in panels of `panel` columns (wgmma's swizzled operand layout when a panel
    /// row is 32, 64 or 128 bytes).
    pub fn panelled(rows: usize, cols: usize, dtype: DType, panel: usize) -> Self {
        let panel = panel.min(cols);
        let swizzle = dtype.size() == 2 && panel.is_multiple_of(8);
        SmemTile {
            rows,
            cols,
            dtype,
            swizzle,
            panel,
        }
    }

    pub fn is_panelled(&self) -> bool {
        self.panel < self.cols
    }

    pub fn bytes(&self) -> usize {
        self.rows * self.cols * self.dtype.size()
    }

    /// (rows per phase, phases): row r XORs its chunk index with (r / per_phase) % phases.
    pub fn swizzle_params(&self) -> (usize, usize) {
        let chunks = self.panel / 8;
        ((8 / chunks).max(1), chunks.min(8))
    }
}

/// How a staged load is copied from global to shared memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Copy {
    /// 16-byte `cp.async` (zero-filled past the tensor's edge), falling back at run time to
    /// element copies when the tensor's rows are not 16-byte aligned.
    Async,
    /// Element loads and shared stores (fills other than 0, explicit masks, 32-bit data).
    Sync,
    /// TMA (`cp.async.bulk.tensor`) of one box per panel, issued by one thread and completing on
    /// its pipeline slot's mbarrier, through tensor map `schedule.tensor_maps[i]` (zero-filled
    /// past the tensor's edge by the hardware).
    Tma(usize),
}

impl Copy {
    /// Whether the copy runs asynchronously, so that a loop may prefetch it into a ring.
    pub fn is_async(self) -> bool {
        matches!(self, Copy::Async | Copy::Tma(_))
    }
}

/// The tensor map a TMA-copied load reads through: a kernel parameter (`.param .align 64 .b8
/// [128]`) the runtime encodes per launch from the tensor's pointer, shape and strides.
#[derive(Debug, Clone, PartialEq)]
pub struct TensorMap {
    /// The staged load it copies.
    pub load: ValueId,
    /// The tensor parameter it describes.
    pub tensor: usize,
    /// The box, innermost tensor dimension first (TMA's order): a panel's columns, then 1 for
    /// every indexed axis and the tile's rows for the ranged one.
    pub box_dims: Vec<usize>,
    /// The swizzle span in bytes (128, 64 or 32): a panel row, the width the wgmma descriptors
    /// name, so that TMA writes exactly the staging's XOR pattern.
    pub swizzle: usize,
    /// Boxes per slot: one per panel of the tile, side by side in the tensor's last dimension.
    pub panels: usize,
}

impl TensorMap {
    /// Bytes one box delivers (out-of-bounds elements included: the hardware fills and counts
    /// them).
    pub fn box_bytes(&self, dtype: DType) -> usize {
        self.box_dims.iter().product::<usize>() * dtype.size()
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Staging {
    pub tile: SmemTile,
    pub copy: Copy,
    /// Read by the async proxy (wgmma): every thread that writes the tile fences
    /// (`fence.proxy.async.shared::cta`) before the barrier that precedes the reads.
    pub async_reads: bool,
    /// The buffer (one slot per pipeline stage).
    pub buffer: usize,
    /// The loop that prefetches it, when pipelined.
    pub pipelined: Option<ValueId>,
}

/// One operand of a dot.
#[derive(Debug, Clone, PartialEq)]
pub enum Operand {
    /// Read from shared memory, where `value` is stored as its own tile; `trans` when that
    /// stored tile is the transpose of the operand's logical orientation (A is M×K, B is K×N).
    Smem {
        value: ValueId,
        trans: bool,
        staged: bool,
    },
    /// An A operand in accumulator layout, repacked in registers (no shared memory).
    RegA { value: ValueId },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DotUnit {
    /// wgmma.mma_async.m64nNk16 with f32 accumulation, B (and A unless in registers) through
    /// descriptors.
    Wgmma(WgmmaPlan),
    /// mma.sync.m16n8k16 with f32 accumulation.
    Mma,
    /// FMAs over operands in shared memory (for operand types the matrix unit does not take).
    Fma,
}

#[derive(Debug, Clone, PartialEq)]
pub struct DotPlan {
    pub unit: DotUnit,
    pub m: usize,
    pub n: usize,
    pub k: usize,
    pub a: Operand,
    pub b: Operand,
}

/// A loop whose staged loads are prefetched `ahead` iterations ahead into a ring of `stages`
/// slots per load.
#[derive(Debug, Clone, PartialEq)]
pub struct Pipeline {
    /// Slots in the ring of each of its loads.
    pub stages: usize,
    /// Iterations the copies run ahead of the compute (`stages - 1` when the dots reading the
    /// slots finish within their iteration; fewer slots stay free when some are still being
    /// read by batches in flight).
    pub ahead: usize,
    /// The staged loads it prefetches.
    pub loads: Vec<ValueId>,
    /// Where its TMA loads complete: `stages` 8-byte mbarriers at this shared offset, one per
    /// slot (None when no load goes by TMA). Written by the allocator.
    pub mbarriers: Option<usize>,
}

/// How a reduction crosses threads.
#[derive(Debug, Clone, PartialEq)]
pub struct ReducePlan {
    pub shuffles: Vec<usize>,
    pub warp_bits: Vec<usize>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Schedule {
    pub kernel: String,
    pub target: Target,
    pub strategy: Strategy,
    /// Why Hopper was passed over on a target that has it.
    pub declined: Option<String>,
    pub num_warps: u32,
    pub threads: u32,
    pub frame: Frame,
    /// The layout of every value, indexed by `ValueId`.
    pub layouts: Vec<Layout>,
    /// 1-D values: whether they index rows (`Some(0)`), columns (`Some(1)`) of 2-D tiles.
    pub roles: Vec<Option<usize>>,
    pub staged: HashMap<ValueId, Staging>,
    pub dots: HashMap<ValueId, DotPlan>,
    pub pipelines: HashMap<ValueId, Pipeline>,
    pub reduces: HashMap<ValueId, ReducePlan>,
    /// The tensor maps of TMA-copied loads, in the order the kernel takes them (after its
    /// shape arguments).
    pub tensor_maps: Vec<TensorMap>,
    /// Values that are converted between layouts at some use.
    pub conversions: Vec<(ValueId, String)>,
    pub buffers: Vec<Buffer>,
    /// Scratch for conversions, reductions and register operands: one region, used between
    /// barriers, at `scratch_offset`.
    pub scratch_offset: usize,
    pub scratch_bytes: usize,
    pub shared_bytes: usize,
    pub features: Vec<Feature>,
    /// Blocks that must fit on one SM at once (`@occupancy`): caps registers per thread.
    pub min_blocks_per_sm: Option<u32>,
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("kernel `{kernel}` cannot be scheduled: {op}: {reason}")]
pub struct SchedError {
    pub kernel: String,
    pub op: String,
    pub reason: String,
    /// The invariant a finished schedule breaks: a tessel bug, where every other error is a
    /// refusal of the kernel or its hints.
    pub broken: Option<Invariant>,
}

impl Schedule {
    pub fn layout(&self, v: ValueId) -> &Layout {
        &self.layouts[v.0 as usize]
    }

    pub fn dist(&self, v: ValueId) -> Option<&Dist> {
        match self.layout(v) {
            Layout::Dist(d) => Some(d),
            _ => None,
        }
    }

    /// The schedule before any pass: every decision at its "none yet" value.
    pub(super) fn empty(k: &Kernel, target: Target, strategy: Strategy) -> Schedule {
        Schedule {
            kernel: k.name.clone(),
            target,
            strategy,
            declined: None,
            num_warps: 0,
            threads: 0,
            frame: Frame::Blocked,
            layouts: vec![Layout::None; k.types.len()],
            roles: vec![None; k.types.len()],
            staged: HashMap::new(),
            dots: HashMap::new(),
            pipelines: HashMap::new(),
            reduces: HashMap::new(),
            tensor_maps: Vec::new(),
            conversions: Vec::new(),
            buffers: Vec::new(),
            scratch_offset: 0,
            scratch_bytes: 0,
            shared_bytes: 0,
            features: Vec::new(),
            min_blocks_per_sm: None,
        }
    }
}

impl SchedError {
    pub(super) fn new(k: &Kernel, op: impl Into<String>, reason: impl Into<String>) -> SchedError {
        SchedError {
            kernel: k.name.clone(),
            op: op.into(),
            reason: reason.into(),
            broken: None,
        }
    }
}
