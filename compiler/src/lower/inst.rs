//! One Tile IR instruction at a time: each op's registers from its operands' registers.
//!
//! Elementwise ops first bring every operand into the result's layout (see `layout`), then apply
//! the op register by register; everything with more structure — memory, `dot`, `reduce`, loops —
//! has its own module.

use super::emit::{Sreg, Value};
use super::entry::Lower;
use super::global::Access;
use super::{err, R};
use crate::sched::{Dist, Layout};
use crate::tir::{DType, Inst, Op, ValueId};

impl Lower<'_> {
    fn n_regs(&self, v: ValueId) -> usize {
        match self.s.layout(v) {
            Layout::Dist(d) => d.regs.len(),
            _ => 1,
        }
    }

    pub fn inst(&mut self, inst: &Inst) -> R<()> {
        let res = inst.results.first().copied();
        let result = || res.ok_or_else(|| err("an op that defines a value has no result"));
        let d = res.map(|r| self.dtype(r)).unwrap_or(DType::F32);
        let vals: Vec<Value> = match &inst.op {
            Op::Const(l) => vec![self.constant(*l, d)],
            Op::ProgramId(a) => vec![self.e.sreg(Sreg::CtaId(*a))],
            Op::NumPrograms(a) => vec![self.e.sreg(Sreg::NCtaId(*a))],
            Op::DimSize { tensor, axis } => vec![self.dim(*tensor, *axis)?],
            Op::StrideSize { tensor, axis } => vec![self.declared_stride(*tensor, *axis)?],
            Op::ScalarParam(p) => vec![self.e.param(*p)],
            Op::Iota(_) => self.iota(result()?),
            Op::Splat { x, .. } => {
                let v = self.get(*x)?[0].clone();
                vec![v; self.n_regs(res.unwrap_or(*x))]
            }
            Op::ExpandDims { x, .. } => self.expand_dims(*x, result()?)?,
            Op::Trans { x } => match self.s.layout(*x) {
                Layout::Shared => vec![],
                _ => self.get(*x)?,
            },
            Op::Broadcast { x, .. } => self.broadcast(*x, result()?)?,
            Op::Unary { op, x } => {
                let w = self.want(res.unwrap_or(*x));
                let xs = self.operands_in(&[*x], &w)?;
                xs[0].iter().map(|v| self.unary(*op, v, d)).collect()
            }
            Op::Binary { op, a, b } => {
                let w = self.want(res.unwrap_or(*a));
                let xs = self.operands_in(&[*a, *b], &w)?;
                (0..xs[0].len())
                    .map(|i| self.binary(*op, &xs[0][i], &xs[1][i], d))
                    .collect()
            }
            Op::Cmp { op, a, b } => {
                let ad = self.dtype(*a);
                let w = self.want(res.unwrap_or(*a));
                let xs = self.operands_in(&[*a, *b], &w)?;
                (0..xs[0].len())
                    .map(|i| self.cmp(*op, &xs[0][i], &xs[1][i], ad))
                    .collect()
            }
            Op::Select { cond, a, b } => {
                let w = self.want(res.unwrap_or(*a));
                let xs = self.operands_in(&[*cond, *a, *b], &w)?;
                (0..xs[0].len())
                    .map(|i| self.e.select(&xs[0][i], &xs[1][i], &xs[2][i]))
                    .collect()
            }
            Op::Cast { x, to } => {
                let from = self.dtype(*x);
                let w = self.want(res.unwrap_or(*x));
                let xs = self.operands_in(&[*x], &w)?;
                xs[0].iter().map(|v| self.cast(v, from, *to)).collect()
            }
            Op::Reduce { .. } => self.reduce(inst)?,
            Op::Scan { .. } => self.scan(inst)?,
            Op::Dot { .. } => self.dot(inst)?,
            Op::Load {
                tensor,
                starts,
                extents,
                steps,
                mask,
                fill,
            } => {
                let a = Access {
                    tensor: *tensor,
                    starts,
                    extents,
                    steps,
                };
                self.load(result()?, &a, *mask, *fill)?
            }
            Op::Store {
                tensor,
                starts,
                extents,
                steps,
                value,
                mask,
            } => {
                let a = Access {
                    tensor: *tensor,
                    starts,
                    extents,
                    steps,
                };
                match self.s.layout(*value).clone() {
                    Layout::Dist(dd) => self.store_regs(*value, &dd, &a, *mask)?,
                    _ => self.store_uniform(*value, &a, *mask)?,
                }
                vec![]
            }
            Op::For { .. } => return self.for_loop(inst),
            Op::Yield(_) => return Ok(()),
        };
        if let Some(r) = res {
            self.env.insert(r, vals);
        }
        Ok(())
    }

    /// `iota`: each register's row-major element index.
    fn iota(&mut self, r: ValueId) -> Vec<Value> {
        match self.want(r) {
            Layout::Dist(dd) => {
                let (br, bc) = self.base(&dd);
                let cols = self.e.i32(dd.shape[1] as i64);
                let l = self.e.muli(&br, &cols);
                let l = self.e.addi(&l, &bc);
                dd.regs
                    .iter()
                    .map(|c| self.e.add_const(&l, (c[0] * dd.shape[1] + c[1]) as i64))
                    .collect()
            }
            _ => vec![self.e.i32(0)],
        }
    }

    /// A load's registers: read back from its shared slot when staged (copied in place first
    /// unless a pipeline already did), from global memory otherwise.
    fn load(&mut self, r: ValueId, a: &Access, mask: Option<ValueId>, fill: f64) -> R<Vec<Value>> {
        self.stage_in_place(r)?;
        let staged_at = self
            .s
            .staged
            .get(&r)
            .map(|st| st.tile)
            .zip(self.smem_at.get(&r).cloned());
        match (self.want(r), staged_at) {
            (Layout::Dist(dd), Some((tile, base))) => self.read_tile(&dd, &tile, &base),
            (Layout::Dist(dd), None) => self.load_regs(r, &dd, a, mask, fill),
            // One element, read by every thread.
            (Layout::Uniform, _) => self.load_regs(r, &Dist::blocked(1, 1, 1), a, mask, fill),
            _ => Ok(vec![]),
        }
    }
}
