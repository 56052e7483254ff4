//! Scheduling: how the threads of a block carry a kernel's tiles.
//!
//! The scheduler decides, for one specialised kernel on one target:
//! - the block: `@num_warps` warps (or the target table's `default_num_warps`), and for kernels with a `dot`,
//!   how those warps tile the matrix unit's output (`@warps(wm, wn)` or chosen here);
//! - the register layout of every tile ([`layout::Dist`]): the m16n8k16 accumulator layout for
//!   tiles of dot-shaped kernels, a coalesced blocked layout otherwise, slices of those for
//!   vectors; a value whose producer and consumer disagree is converted through shared memory;
//! - how every `dot` runs: on `mma.sync.m16n8k16` with operands read by `ldmatrix` from swizzled
//!   shared memory or, for an accumulator-shaped A operand, straight from registers; or, for
//!   operands the matrix unit cannot take (f32), as FMAs over shared memory;
//! - which loads are staged in shared memory, copied with 16-byte `cp.async` where the tile allows,
//!   and which loops overlap those copies with compute (`@stages`, software pipelining);
//! - how each reduction crosses threads (lane shuffles, then shared memory across warps);
//! - where every shared-memory buffer lives, by liveness over the kernel's dependency graph.
//!
//! The result is data, printed by `Display` (and snapshot-tested); the lowering follows it.

mod alloc;
pub mod layout;

use std::collections::HashMap;
use std::fmt;

pub use alloc::{Buffer, BufferUse};
pub use layout::{Coord, Dist, DistKind};

use crate::tir::{Block, DType, Kernel, Op, ParamKind, ValueId};
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
}

impl SmemTile {
    pub fn new(rows: usize, cols: usize, dtype: DType) -> Self {
        let swizzle = dtype.size() == 2 && cols.is_multiple_of(8);
        SmemTile {
            rows,
            cols,
            dtype,
            swizzle,
        }
    }

    pub fn bytes(&self) -> usize {
        self.rows * self.cols * self.dtype.size()
    }

    /// (rows per phase, phases): row r XORs its chunk index with (r / per_phase) % phases.
    pub fn swizzle_params(&self) -> (usize, usize) {
        let chunks = self.cols / 8;
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
}

#[derive(Debug, Clone, PartialEq)]
pub struct Staging {
    pub tile: SmemTile,
    pub copy: Copy,
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

/// A loop whose staged loads are prefetched `stages - 1` iterations ahead.
#[derive(Debug, Clone, PartialEq)]
pub struct Pipeline {
    pub stages: usize,
    /// The staged loads it prefetches.
    pub loads: Vec<ValueId>,
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
}

/// Options from the command line that override the kernel's attributes and the defaults.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SchedOptions {
    pub num_warps: Option<u32>,
    pub stages: Option<usize>,
    pub warps: Option<(usize, usize)>,
    pub occupancy: Option<u32>,
}

/// Decides the schedule of `kernel` on `target` with the kernel's own attributes.
pub fn schedule(kernel: &Kernel, target: Target) -> Result<Schedule, SchedError> {
    schedule_with(kernel, target, &SchedOptions::default())
}

struct Facts<'k> {
    k: &'k Kernel,
    /// Per value: the instruction defining it (a path of block indices is not needed: ops are
    /// looked up by result).
    defs: HashMap<ValueId, &'k Op>,
    /// Per value: the ops that read it.
    uses: HashMap<ValueId, Vec<&'k Op>>,
    /// Loop bodies: the For's first result (or a synthetic id) → body, with the loop's iv.
    parent_loop: HashMap<ValueId, ValueId>,
}

fn collect<'k>(
    block: &'k Block,
    loop_id: Option<ValueId>,
    f: &mut Facts<'k>,
    loops: &mut Vec<(ValueId, &'k Block)>,
) {
    for inst in &block.insts {
        for r in &inst.results {
            f.defs.insert(*r, &inst.op);
            if let Some(l) = loop_id {
                f.parent_loop.insert(*r, l);
            }
        }
        for o in inst.op.operands() {
            f.uses.entry(o).or_default().push(&inst.op);
        }
        if let Op::For { body, .. } = &inst.op {
            // A loop is named by its induction variable.
            let iv = body.args[0];
            for a in &body.args {
                if let Some(l) = loop_id {
                    f.parent_loop.insert(*a, l);
                }
            }
            loops.push((iv, body));
            collect(body, Some(iv), f, loops);
        }
    }
}

/// Union-find over values that must share a 1-D role.
struct Roles {
    parent: Vec<usize>,
    role: Vec<Option<usize>>,
}

impl Roles {
    fn find(&mut self, x: usize) -> usize {
        let mut r = x;
        while self.parent[r] != r {
            r = self.parent[r];
        }
        let mut y = x;
        while self.parent[y] != r {
            let n = self.parent[y];
            self.parent[y] = r;
            y = n;
        }
        r
    }

    fn union(&mut self, a: ValueId, b: ValueId) {
        let (ra, rb) = (self.find(a.0 as usize), self.find(b.0 as usize));
        if ra != rb {
            self.parent[rb] = ra;
            if self.role[ra].is_none() {
                self.role[ra] = self.role[rb];
            }
        }
    }

    fn set(&mut self, v: ValueId, role: usize) {
        let r = self.find(v.0 as usize);
        if self.role[r].is_none() {
            self.role[r] = Some(role);
        }
    }
}

fn rank1(k: &Kernel, v: ValueId) -> bool {
    let t = k.ty(v);
    t.shape.len() == 1 && t.numel() > 1
}

fn assign_roles(k: &Kernel, block: &Block, roles: &mut Roles) {
    for inst in &block.insts {
        let res = inst.results.first().copied();
        match &inst.op {
            Op::ExpandDims { x, axis } if rank1(k, *x) => {
                // expand(x, 1) makes a column of rows: x indexes rows.
                roles.set(*x, if *axis == 1 { 0 } else { 1 });
            }
            Op::Reduce { x, axis, .. } if k.ty(*x).shape.len() == 2 => {
                if let Some(r) = res {
                    if rank1(k, r) {
                        roles.set(r, 1 - *axis);
                    }
                }
            }
            Op::Unary { .. }
            | Op::Binary { .. }
            | Op::Cmp { .. }
            | Op::Select { .. }
            | Op::Cast { .. }
            | Op::Splat { .. } => {
                if let Some(r) = res {
                    if rank1(k, r) {
                        for o in inst.op.operands() {
                            if rank1(k, o) {
                                roles.union(r, o);
                            }
                        }
                    }
                }
            }
            Op::For { inits, body, .. } => {
                for (i, init) in inits.iter().enumerate() {
                    let arg = body.args[i + 1];
                    if rank1(k, arg) {
                        roles.union(arg, *init);
                        roles.union(arg, inst.results[i]);
                        if let Some(Op::Yield(ys)) = body.insts.last().map(|i| &i.op) {
                            roles.union(arg, ys[i]);
                        }
                    }
                }
                assign_roles(k, body, roles);
            }
            _ => {}
        }
    }
}

struct Sched<'k> {
    k: &'k Kernel,
    warps: usize,
    frame: Frame,
    roles: Vec<Option<usize>>,
    /// Blocked frame: the column count of the first 2-D tile with a given row count, and back.
    width_of_rows: HashMap<usize, usize>,
    height_of_cols: HashMap<usize, usize>,
}

impl Sched<'_> {
    fn refuse(&self, op: impl Into<String>, reason: impl Into<String>) -> SchedError {
        SchedError {
            kernel: self.k.name.clone(),
            op: op.into(),
            reason: reason.into(),
        }
    }

    fn full(&self, r: usize, c: usize) -> Dist {
        match self.frame {
            Frame::Mma { wm, wn } if r.is_multiple_of(16 * wm) && c.is_multiple_of(8 * wn) => {
                Dist::mma(r, c, wm, wn)
            }
            _ => Dist::blocked(r, c, self.warps),
        }
    }

    fn rows_vec(&self, r: usize) -> Dist {
        match self.frame {
            Frame::Mma { wm, wn } if r.is_multiple_of(16 * wm) => {
                Dist::mma(r, 8 * wn, wm, wn).project(1)
            }
            _ => {
                let c = self.width_of_rows.get(&r).copied().unwrap_or(1);
                self.full(r, c).project(1)
            }
        }
    }

    fn cols_vec(&self, c: usize) -> Dist {
        match self.frame {
            Frame::Mma { wm, wn } if c.is_multiple_of(8 * wn) => {
                Dist::mma(16 * wm, c, wm, wn).project(0)
            }
            _ => match self.height_of_cols.get(&c) {
                Some(&r) => self.full(r, c).project(0),
                None => Dist::blocked(1, c, self.warps),
            },
        }
    }

    /// The layout a value takes when its producer is free to choose.
    fn canonical(&self, v: ValueId) -> Result<Layout, SchedError> {
        let t = self.k.ty(v);
        if t.numel() == 1 {
            return Ok(Layout::Uniform);
        }
        for d in &t.shape {
            if !d.is_power_of_two() {
                return Err(self.refuse(format!("{v}: {t}"), "tile extents must be powers of two"));
            }
        }
        Ok(Layout::Dist(match t.shape.as_slice() {
            [n] => match self.roles[v.0 as usize] {
                Some(0) => self.rows_vec(*n),
                Some(_) => self.cols_vec(*n),
                None => Dist::blocked(1, *n, self.warps),
            },
            [1, c] => self.cols_vec(*c),
            [r, 1] => self.rows_vec(*r),
            [r, c] => self.full(*r, *c),
            _ => {
                return Err(self.refuse(
                    format!("{v}: {t}"),
                    "tiles of rank 3 or more are not scheduled",
                ))
            }
        }))
    }
}

fn frame_for(
    k: &Kernel,
    warps: usize,
    dots: &[(usize, usize)],
    row_reductions: bool,
    forced: Option<(usize, usize)>,
) -> Frame {
    if dots.is_empty() {
        return Frame::Blocked;
    }
    let valid = |wm: usize, wn: usize| {
        dots.iter()
            .all(|&(m, n)| m.is_multiple_of(16 * wm) && n.is_multiple_of(16 * wn))
    };
    if let Some((wm, wn)) = forced.or_else(|| {
        k.attr("warps")
            .filter(|a| a.len() == 2)
            .map(|a| (a[0] as usize, a[1] as usize))
    }) {
        if wm * wn == warps && valid(wm, wn) {
            return Frame::Mma { wm, wn };
        }
    }
    if row_reductions && valid(warps, 1) {
        return Frame::Mma { wm: warps, wn: 1 };
    }
    let mut best: Option<(usize, Frame)> = None;
    let mut wn = 1;
    while wn <= warps {
        let wm = warps / wn;
        if valid(wm, wn) {
            let cost = dots
                .iter()
                .map(|&(m, n)| m / wm + n / wn)
                .max()
                .unwrap_or(0);
            if best.is_none_or(|(c, _)| cost < c) {
                best = Some((cost, Frame::Mma { wm, wn }));
            }
        }
        wn *= 2;
    }
    best.map(|(_, f)| f).unwrap_or(Frame::Blocked)
}

fn visit<'k>(block: &'k Block, f: &mut dyn FnMut(&'k crate::tir::Inst)) {
    for inst in &block.insts {
        f(inst);
        if let Op::For { body, .. } = &inst.op {
            visit(body, f);
        }
    }
}

/// Decides the schedule of `kernel` on `target`, `options` overriding the kernel's attributes.
pub fn schedule_with(
    kernel: &Kernel,
    target: Target,
    options: &SchedOptions,
) -> Result<Schedule, SchedError> {
    let k = kernel;
    let num_warps = options
        .num_warps
        .or_else(|| {
            k.attr("num_warps")
                .and_then(|a| a.first())
                .map(|w| *w as u32)
        })
        .unwrap_or(target.default_num_warps);
    let warps = num_warps as usize;
    if !(1..=32).contains(&num_warps) || !num_warps.is_power_of_two() {
        return Err(SchedError {
            kernel: k.name.clone(),
            op: "block".into(),
            reason: format!("{num_warps} warps: a block has a power of two between 1 and 32"),
        });
    }
    let stages = options
        .stages
        .or_else(|| {
            k.attr("stages")
                .and_then(|a| a.first())
                .map(|s| *s as usize)
        })
        .unwrap_or(target.default_stages as usize)
        .max(1);

    let mut facts = Facts {
        k,
        defs: HashMap::new(),
        uses: HashMap::new(),
        parent_loop: HashMap::new(),
    };
    let mut loops = Vec::new();
    collect(&k.body, None, &mut facts, &mut loops);

    // Refuse what has no lowering before deciding anything.
    let mut refusal = None;
    let mut dot_shapes = Vec::new();
    let mut row_reductions = false;
    visit(&k.body, &mut |inst| match &inst.op {
        Op::StrideSize { .. } => {
            refusal.get_or_insert(("stride", "strided tensors are not lowered yet"));
        }
        Op::Dot { .. } => {
            let t = k.ty(inst.results[0]);
            dot_shapes.push((t.shape[0], t.shape[1]));
        }
        Op::Reduce { x, axis: 1, .. } if k.ty(*x).shape.len() == 2 => row_reductions = true,
        _ => {}
    });
    for p in &k.params {
        if let ParamKind::Tensor {
            strides: Some(_), ..
        } = &p.kind
        {
            refusal.get_or_insert(("strides", "strided tensors are not lowered yet"));
        }
    }
    let frame = frame_for(k, warps, &dot_shapes, row_reductions, options.warps);

    let mut roles = Roles {
        parent: (0..k.types.len()).collect(),
        role: vec![None; k.types.len()],
    };
    assign_roles(k, &k.body, &mut roles);
    let role_of: Vec<Option<usize>> = (0..k.types.len())
        .map(|v| {
            let r = roles.find(v);
            roles.role[r]
        })
        .collect();

    let mut width_of_rows = HashMap::new();
    let mut height_of_cols = HashMap::new();
    for t in &k.types {
        if let [r, c] = t.shape[..] {
            if r > 1 && c > 1 {
                width_of_rows.entry(r).or_insert(c);
                height_of_cols.entry(c).or_insert(r);
            }
        }
    }
    let s = Sched {
        k,
        warps,
        frame,
        roles: role_of.clone(),
        width_of_rows,
        height_of_cols,
    };
    if let Some((op, reason)) = refusal {
        return Err(s.refuse(op, reason));
    }

    // Dot plans, and the loads they stage.
    let peel = |mut v: ValueId, mut trans: bool| {
        while let Some(Op::Trans { x }) = facts.defs.get(&v) {
            v = *x;
            trans = !trans;
        }
        (v, trans)
    };
    let is_load = |v: ValueId| matches!(facts.defs.get(&v), Some(Op::Load { .. }));
    let mut dots = HashMap::new();
    let mut staged_loads: Vec<ValueId> = Vec::new();
    let mut dot_insts = Vec::new();
    visit(&k.body, &mut |inst| {
        if let Op::Dot { .. } = inst.op {
            dot_insts.push(inst);
        }
    });
    for inst in &dot_insts {
        let Op::Dot {
            a,
            b,
            trans_a,
            trans_b,
            ..
        } = &inst.op
        else {
            continue;
        };
        let (ta, tb) = (k.ty(*a), k.ty(*b));
        let r = inst.results[0];
        let [m, n] = [k.ty(r).shape[0], k.ty(r).shape[1]];
        let kk = if *trans_a { ta.shape[0] } else { ta.shape[1] };
        let sixteen = |d: DType| matches!(d, DType::Bf16 | DType::F16);
        let mma = matches!(frame, Frame::Mma { wm, wn } if m.is_multiple_of(16 * wm) && n.is_multiple_of(16 * wn))
            && sixteen(ta.dtype)
            && ta.dtype == tb.dtype
            && kk.is_multiple_of(16)
            && target.has(Feature::MmaSync);
        let operand = |x: ValueId, trans: bool, is_a: bool| {
            let (src, t) = peel(x, trans);
            if is_load(src) {
                return Operand::Smem {
                    value: src,
                    trans: t,
                    staged: true,
                };
            }
            if mma && is_a && !trans {
                if let (Frame::Mma { wm, wn: 1 }, Ok(Layout::Dist(d))) = (frame, s.canonical(x)) {
                    if d.same_placement(&Dist::mma(m, kk, wm, 1)) && producer_is_register(&facts, x)
                    {
                        return Operand::RegA { value: x };
                    }
                }
            }
            Operand::Smem {
                value: x,
                trans,
                staged: false,
            }
        };
        let pa = operand(*a, *trans_a, true);
        let pb = operand(*b, *trans_b, false);
        for o in [&pa, &pb] {
            if let Operand::Smem {
                value,
                staged: true,
                ..
            } = o
            {
                if !staged_loads.contains(value) {
                    staged_loads.push(*value);
                }
            }
        }
        dots.insert(
            r,
            DotPlan {
                unit: if mma { DotUnit::Mma } else { DotUnit::Fma },
                m,
                n,
                k: kk,
                a: pa,
                b: pb,
            },
        );
    }

    // Layouts.
    let mut layouts = vec![Layout::None; k.types.len()];
    let mut fail = None;
    let only_dot_uses = |v: ValueId| -> bool {
        facts.uses.get(&v).is_none_or(|us| {
            us.iter().all(|u| match u {
                Op::Dot { a, b, .. } => *a == v || *b == v,
                Op::Trans { .. } => true,
                _ => false,
            })
        })
    };
    let mut assign = |v: ValueId, op: &Op, layouts: &mut Vec<Layout>| {
        let l = match op {
            Op::Load { .. } if staged_loads.contains(&v) && only_dot_uses(v) => Ok(Layout::Shared),
            Op::Trans { x } => match &layouts[x.0 as usize] {
                Layout::Dist(d) => Ok(Layout::Dist(d.transpose())),
                other => Ok(other.clone()),
            },
            Op::Reduce { x, axis, .. } => match &layouts[x.0 as usize] {
                Layout::Dist(d) => {
                    let p = d.project(*axis);
                    if k.ty(v).numel() == 1 {
                        Ok(Layout::Uniform)
                    } else {
                        Ok(Layout::Dist(p.reshaped(p.shape)))
                    }
                }
                _ => Ok(Layout::Uniform),
            },
            _ => s.canonical(v),
        };
        match l {
            Ok(l) => layouts[v.0 as usize] = l,
            Err(e) => {
                fail.get_or_insert(e);
            }
        }
    };
    fn walk(
        block: &Block,
        f: &mut dyn FnMut(ValueId, &Op, &mut Vec<Layout>),
        ls: &mut Vec<Layout>,
    ) {
        for inst in &block.insts {
            if let Op::For { body, .. } = &inst.op {
                for a in &body.args {
                    f(*a, &Op::Yield(vec![]), ls);
                }
                walk(body, f, ls);
            }
            for r in &inst.results {
                f(*r, &inst.op, ls);
            }
        }
    }
    walk(&k.body, &mut assign, &mut layouts);
    if let Some(e) = fail {
        return Err(e);
    }
    // A trans of a register value feeding a Trans-of-staged chain keeps Shared.
    for (v, op) in &facts.defs {
        if let Op::Trans { x } = op {
            if layouts[x.0 as usize] == Layout::Shared {
                layouts[v.0 as usize] = Layout::Shared;
            }
        }
    }

    // Reductions.
    let mut reduces = HashMap::new();
    visit(&k.body, &mut |inst| {
        if let Op::Reduce { x, axis, .. } = &inst.op {
            if let Layout::Dist(d) = &layouts[x.0 as usize] {
                reduces.insert(
                    inst.results[0],
                    ReducePlan {
                        shuffles: d.lane_bits_along(*axis),
                        warp_bits: d.warp_bits_along(*axis),
                    },
                );
            }
        }
    });

    // Staging and pipelining.
    let mut staged = HashMap::new();
    let mut pipelines: HashMap<ValueId, Pipeline> = HashMap::new();
    let mut uses_async = false;
    for &v in &staged_loads {
        let Some(Op::Load {
            extents,
            mask,
            fill,
            ..
        }) = facts.defs.get(&v)
        else {
            continue;
        };
        let t = k.ty(v);
        let tile = SmemTile::new(t.shape[0], t.shape[1], t.dtype);
        let last_is_inner = extents.last().is_some_and(|e| e.is_some());
        let copy = if t.dtype.size() == 2
            && *fill == 0.0
            && mask.is_none()
            && last_is_inner
            && tile.cols.is_multiple_of(8)
            && target.has(Feature::CpAsync)
        {
            Copy::Async
        } else {
            Copy::Sync
        };
        uses_async |= copy == Copy::Async;
        let pipelined = match facts.parent_loop.get(&v) {
            Some(&lp) if copy == Copy::Async && stages > 1 && starts_hoistable(&facts, v, lp) => {
                pipelines
                    .entry(lp)
                    .or_insert_with(|| Pipeline {
                        stages,
                        loads: Vec::new(),
                    })
                    .loads
                    .push(v);
                Some(lp)
            }
            _ => None,
        };
        staged.insert(
            v,
            Staging {
                tile,
                copy,
                buffer: usize::MAX,
                pipelined,
            },
        );
    }

    // Conversions a use needs, and the scratch every transient use takes.
    let mut conversions = Vec::new();
    let mut scratch = 0usize;
    let bytes4 = |v: ValueId| k.ty(v).numel() * 4;
    let need = |v: ValueId,
                want: &Layout,
                why: &str,
                conv: &mut Vec<(ValueId, String)>,
                scratch: &mut usize| {
        let have = &layouts[v.0 as usize];
        let same = match (have, want) {
            (Layout::Dist(a), Layout::Dist(b)) => a.same_placement(b),
            (Layout::Uniform, _) => true,
            _ => true,
        };
        if !same {
            conv.push((v, why.to_string()));
            *scratch = (*scratch).max(bytes4(v));
        }
    };
    let mut insts = Vec::new();
    visit(&k.body, &mut |inst| insts.push(inst));
    for inst in &insts {
        let res = inst.results.first().copied();
        match &inst.op {
            Op::Unary { .. }
            | Op::Binary { .. }
            | Op::Cmp { .. }
            | Op::Select { .. }
            | Op::Cast { .. } => {
                let want = layouts[res.unwrap_or(ValueId(0)).0 as usize].clone();
                for o in inst.op.operands() {
                    need(
                        o,
                        &want,
                        "elementwise operand",
                        &mut conversions,
                        &mut scratch,
                    );
                }
            }
            Op::Broadcast { x, .. } => {
                if let (Layout::Dist(d), Some(r)) = (&layouts[x.0 as usize].clone(), res) {
                    if let Layout::Dist(out) = &layouts[r.0 as usize] {
                        let axis = if d.shape[0] == 1 { 0 } else { 1 };
                        let want = Layout::Dist(out.project(axis));
                        need(
                            *x,
                            &want,
                            "broadcast source",
                            &mut conversions,
                            &mut scratch,
                        );
                    }
                }
            }
            Op::ExpandDims { x, .. } => {
                if let (Layout::Dist(d), Some(r)) = (&layouts[x.0 as usize], res) {
                    if let Layout::Dist(out) = &layouts[r.0 as usize] {
                        if !d.reshaped(out.shape).same_placement(out) {
                            conversions.push((*x, "expand".into()));
                            scratch = scratch.max(bytes4(*x));
                        }
                    }
                }
            }
            Op::Load { mask: Some(m), .. } | Op::Store { mask: Some(m), .. } => {
                if let Some(v) = res.or(match &inst.op {
                    Op::Store { value, .. } => Some(*value),
                    _ => None,
                }) {
                    let want = layouts[v.0 as usize].clone();
                    need(*m, &want, "mask", &mut conversions, &mut scratch);
                }
            }
            Op::Dot { acc: Some(acc), .. } => {
                let want = layouts[res.unwrap_or(ValueId(0)).0 as usize].clone();
                need(
                    *acc,
                    &want,
                    "dot accumulator",
                    &mut conversions,
                    &mut scratch,
                );
            }
            Op::For { inits, body, .. } => {
                for (i, init) in inits.iter().enumerate() {
                    let want = layouts[body.args[i + 1].0 as usize].clone();
                    need(*init, &want, "loop init", &mut conversions, &mut scratch);
                    if let Some(Op::Yield(ys)) = body.insts.last().map(|i| &i.op) {
                        need(ys[i], &want, "loop yield", &mut conversions, &mut scratch);
                    }
                }
            }
            Op::Reduce { x, .. } => {
                if let Some(r) = res {
                    let w = match &layouts[x.0 as usize] {
                        Layout::Dist(d) => 1usize << d.warp.len(),
                        _ => 1,
                    };
                    let regs = match &layouts[r.0 as usize] {
                        Layout::Dist(d) => d.regs.len(),
                        _ => 1,
                    };
                    if reduces.get(&r).is_some_and(|p| !p.warp_bits.is_empty()) {
                        scratch = scratch.max(w * 32 * regs * 4);
                    }
                }
            }
            _ => {}
        }
    }
    for plan in dots.values() {
        let mut total = 0;
        for o in [&plan.a, &plan.b] {
            if let Operand::Smem {
                value,
                staged: false,
                ..
            } = o
            {
                let t = k.ty(*value);
                let dt = if plan.unit == DotUnit::Mma {
                    t.dtype
                } else {
                    DType::F32
                };
                total += SmemTile::new(t.shape[0], t.shape[1], dt).bytes();
            }
        }
        scratch = scratch.max(total);
    }

    // Shared memory: staged buffers by liveness, then the scratch region.
    let uses: Vec<BufferUse> = staged_loads
        .iter()
        .map(|v| {
            let st = &staged[v];
            BufferUse {
                value: *v,
                bytes: st.tile.bytes() * st.pipelined.map_or(1, |_| stages),
                whole_loop: st.pipelined,
            }
        })
        .collect();
    let (buffers, staged_bytes) = alloc::allocate(k, &uses);
    for b in &buffers {
        if let Some(st) = staged.get_mut(&b.value) {
            st.buffer = buffers.iter().position(|x| x.value == b.value).unwrap_or(0);
        }
    }
    let scratch_offset = staged_bytes.div_ceil(16) * 16;
    let shared_bytes = scratch_offset + scratch;
    if shared_bytes > target.max_shared_bytes as usize {
        return Err(s.refuse(
            "shared memory",
            format!(
                "{shared_bytes} bytes needed, {} allows {}; lower @stages or the block tile",
                target.name, target.max_shared_bytes
            ),
        ));
    }

    let mut features = Vec::new();
    if k.types.iter().any(|t| t.dtype == DType::Bf16) {
        features.push(Feature::Bf16);
    }
    if dots.values().any(|d| d.unit == DotUnit::Mma) {
        features.push(Feature::MmaSync);
        features.push(Feature::Ldmatrix);
    }
    if uses_async {
        features.push(Feature::CpAsync);
    }
    conversions.sort_by_key(|(v, _)| *v);
    conversions.dedup();
    Ok(Schedule {
        kernel: k.name.clone(),
        target,
        num_warps,
        threads: num_warps * 32,
        frame,
        layouts,
        roles: role_of,
        staged,
        dots,
        pipelines,
        reduces,
        conversions,
        buffers,
        scratch_offset,
        scratch_bytes: scratch,
        shared_bytes,
        features,
        min_blocks_per_sm: options.occupancy.or_else(|| {
            k.attr("occupancy")
                .and_then(|a| a.first())
                .map(|v| *v as u32)
        }),
    })
}

/// Whether `v` is computed into registers by an op of its own (not a load, which is staged).
fn producer_is_register(f: &Facts, v: ValueId) -> bool {
    !matches!(f.defs.get(&v), Some(Op::Load { .. }) | None)
}

/// Whether the start indices of the load `v` (in the body of loop `lp`) can be computed for a
/// later iteration: they depend only on the induction variable and on values from outside the
/// loop, through scalar arithmetic.
fn starts_hoistable(f: &Facts, v: ValueId, lp: ValueId) -> bool {
    let Some(Op::Load { starts, .. }) = f.defs.get(&v) else {
        return false;
    };
    let mut stack: Vec<ValueId> = starts.clone();
    let mut seen = std::collections::HashSet::new();
    while let Some(x) = stack.pop() {
        if !seen.insert(x) || x == lp {
            continue;
        }
        if f.parent_loop.get(&x) != Some(&lp) {
            // Defined outside this loop (or in an enclosing one): invariant here.
            continue;
        }
        match f.defs.get(&x) {
            Some(op) if f.k.ty(x).numel() == 1 => match op {
                Op::Const(_)
                | Op::ProgramId(_)
                | Op::NumPrograms(_)
                | Op::DimSize { .. }
                | Op::ScalarParam(_)
                | Op::Unary { .. }
                | Op::Binary { .. }
                | Op::Cmp { .. }
                | Op::Select { .. }
                | Op::Cast { .. } => stack.extend(op.operands()),
                _ => return false,
            },
            // A carried block argument of this loop, or a non-scalar.
            _ => return false,
        }
    }
    true
}

impl fmt::Display for Schedule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "schedule {} for {}", self.kernel, self.target.name)?;
        write!(
            f,
            "  block: {} warps, {} threads",
            self.num_warps, self.threads
        )?;
        match self.frame {
            Frame::Mma { wm, wn } => writeln!(f, "; mma frame {wm}x{wn} warps")?,
            Frame::Blocked => writeln!(f, "; blocked frame")?,
        }
        if let Some(n) = self.min_blocks_per_sm {
            writeln!(f, "  occupancy: at least {n} blocks per SM")?;
        }
        writeln!(
            f,
            "  shared memory: {} bytes ({} staged, {} scratch at {})",
            self.shared_bytes, self.scratch_offset, self.scratch_bytes, self.scratch_offset
        )?;
        for b in &self.buffers {
            writeln!(
                f,
                "  buffer {}: {} bytes at {}, live {}..{}",
                b.value, b.bytes, b.offset, b.live.0, b.live.1
            )?;
        }
        let mut keys: Vec<&ValueId> = self.staged.keys().collect();
        keys.sort();
        for v in keys {
            let st = &self.staged[v];
            write!(
                f,
                "  stage {v}: {}x{} {}{} via {}",
                st.tile.rows,
                st.tile.cols,
                st.tile.dtype,
                if st.tile.swizzle {
                    let (p, m) = st.tile.swizzle_params();
                    format!(" swizzled (xor chunk with row/{p} mod {m})")
                } else {
                    String::new()
                },
                match st.copy {
                    Copy::Async => "cp.async 16B",
                    Copy::Sync => "element copies",
                }
            )?;
            match st.pipelined {
                Some(l) => writeln!(f, ", prefetched by loop {l}")?,
                None => writeln!(f)?,
            }
        }
        let mut keys: Vec<&ValueId> = self.pipelines.keys().collect();
        keys.sort();
        for l in keys {
            let p = &self.pipelines[l];
            let loads: Vec<String> = p.loads.iter().map(|v| v.to_string()).collect();
            writeln!(
                f,
                "  pipeline loop {l}: {} stages over {}",
                p.stages,
                loads.join(", ")
            )?;
        }
        let mut keys: Vec<&ValueId> = self.dots.keys().collect();
        keys.sort();
        for v in keys {
            let d = &self.dots[v];
            let op = |o: &Operand| match o {
                Operand::Smem {
                    value,
                    trans,
                    staged,
                } => format!(
                    "{value} from {} smem{}",
                    if *staged { "staged" } else { "scratch" },
                    if *trans {
                        " (transposed: ldmatrix.trans)"
                    } else {
                        ""
                    }
                ),
                Operand::RegA { value } => format!("{value} from registers"),
            };
            writeln!(
                f,
                "  dot {v}: {}x{}x{} on {}; A {}; B {}",
                d.m,
                d.n,
                d.k,
                match d.unit {
                    DotUnit::Mma => "mma.sync.m16n8k16",
                    DotUnit::Fma => "fma",
                },
                op(&d.a),
                op(&d.b)
            )?;
        }
        let mut keys: Vec<&ValueId> = self.reduces.keys().collect();
        keys.sort();
        for v in keys {
            let r = &self.reduces[v];
            writeln!(
                f,
                "  reduce {v}: shuffle xor {:?}, across warps {:?}",
                r.shuffles.iter().map(|b| 1 << b).collect::<Vec<_>>(),
                r.warp_bits.iter().map(|b| 1 << b).collect::<Vec<_>>()
            )?;
        }
        for (v, why) in &self.conversions {
            writeln!(f, "  convert {v} through shared memory ({why})")?;
        }
        let mut uniform = 0;
        for (i, l) in self.layouts.iter().enumerate() {
            match l {
                Layout::Uniform => uniform += 1,
                Layout::Dist(d) => writeln!(f, "  %{i}: {d}")?,
                Layout::Shared => writeln!(f, "  %{i}: shared only")?,
                Layout::None => {}
            }
        }
        writeln!(f, "  {uniform} uniform scalar values")
    }
}
