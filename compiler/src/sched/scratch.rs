//! Conversions and scratch: the values a use needs in another layout, and the shared memory every
//! transient use takes.
//!
//! Writes `conversions` and `scratch_bytes`.
//!
//! A use whose operand's layout places elements differently from what it wants converts through
//! shared memory (4 bytes an element); cross-warp reductions exchange partials there, and scans
//! their running sums (4 bytes an element); dot operands
//! not staged are stored there as tiles. All of them share one region, each use starting with a
//! barrier, so the region is as large as the largest.

use super::{Ctx, DotUnit, Layout, Operand, Schedule, SmemTile};
use crate::tir::{DType, Inst, Op, ValueId};

struct Needs<'a> {
    cx: &'a Ctx<'a>,
    s: &'a Schedule,
    conversions: Vec<(ValueId, String)>,
    scratch: usize,
}

impl Needs<'_> {
    fn convert(&mut self, v: ValueId, why: &str) {
        self.conversions.push((v, why.to_string()));
        self.scratch = self.scratch.max(self.cx.facts.kernel.ty(v).numel() * 4);
    }

    /// `v` is wanted in `want`'s layout.
    fn need(&mut self, v: ValueId, want: ValueId, why: &str) {
        if let (Layout::Dist(have), Layout::Dist(want)) = (self.s.layout(v), self.s.layout(want)) {
            if !have.same_placement(want) {
                self.convert(v, why);
            }
        }
    }

    fn inst(&mut self, inst: &Inst) {
        let s = self.s;
        let res = inst.results.first().copied();
        let out = res.unwrap_or(ValueId(0));
        match &inst.op {
            Op::Unary { .. }
            | Op::Binary { .. }
            | Op::Cmp { .. }
            | Op::Select { .. }
            | Op::Cast { .. } => {
                for o in inst.op.operands() {
                    self.need(o, out, "elementwise operand");
                }
            }
            Op::Broadcast { x, .. } => {
                if let (Some(d), Some(o)) = (s.dist(*x), res.and_then(|r| s.dist(r))) {
                    let axis = if d.shape[0] == 1 { 0 } else { 1 };
                    if !d.same_placement(&o.project(axis)) {
                        self.convert(*x, "broadcast source");
                    }
                }
            }
            Op::ExpandDims { x, .. } => {
                if let (Some(d), Some(o)) = (s.dist(*x), res.and_then(|r| s.dist(r))) {
                    if !d.reshaped(o.shape).same_placement(o) {
                        self.convert(*x, "expand");
                    }
                }
            }
            Op::Load { mask: Some(m), .. } => self.need(*m, out, "mask"),
            Op::Store {
                mask: Some(m),
                value,
                ..
            } => self.need(*m, *value, "mask"),
            Op::Dot { acc: Some(acc), .. } => self.need(*acc, out, "dot accumulator"),
            Op::For { inits, body, .. } => {
                for (i, init) in inits.iter().enumerate() {
                    let arg = body.args[i + 1];
                    self.need(*init, arg, "loop init");
                    if let Some(Op::Yield(ys)) = body.insts.last().map(|i| &i.op) {
                        self.need(ys[i], arg, "loop yield");
                    }
                }
            }
            // A scan of a register tile runs its steps through scratch, one word an element.
            Op::Scan { x, .. } if s.dist(*x).is_some() => {
                self.scratch = self.scratch.max(self.cx.facts.kernel.ty(*x).numel() * 4);
            }
            Op::Reduce { x, .. } => {
                if let Some(r) =
                    res.filter(|r| s.reduces.get(r).is_some_and(|p| !p.warp_bits.is_empty()))
                {
                    let warps = s.dist(*x).map_or(1, |d| 1usize << d.warp.len());
                    let regs = s.dist(r).map_or(1, |d| d.regs.len());
                    self.scratch = self.scratch.max(warps * 32 * regs * 4);
                }
            }
            _ => {}
        }
    }
}

pub fn run(cx: &Ctx, s: &mut Schedule) {
    let mut needs = Needs {
        cx,
        s,
        conversions: Vec::new(),
        scratch: 0,
    };
    for inst in cx.facts.insts() {
        needs.inst(inst);
    }
    let (mut conversions, mut scratch) = (needs.conversions, needs.scratch);
    for plan in s.dots.values() {
        let mut total = 0;
        for o in [&plan.a, &plan.b] {
            if let Operand::Smem {
                value,
                staged: false,
                ..
            } = o
            {
                let t = cx.facts.kernel.ty(*value);
                // The FMA path reads its operands from shared memory as f32.
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
    conversions.sort_by_key(|(v, _)| *v);
    conversions.dedup();
    s.conversions = conversions;
    s.scratch_bytes = scratch;
}
