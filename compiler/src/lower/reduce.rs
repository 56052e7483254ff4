//! `reduce` along one axis, in three levels the schedule chose: registers that project to the
//! same coordinate fold in-thread, lane bits along the axis fold by butterfly shuffles, and warp
//! bits through shared scratch.
//!
//! Every thread combines the warps' partials itself, in warp order, so every replica of the
//! result holds bit-identical values. Floats reduce in f32 and round once at the end.

use super::emit::{Arith, Ty, Value};
use super::entry::Lower;
use super::ptx_templates as ptx;
use super::{err, R};
use crate::sched::{Dist, Layout, ReducePlan};
use crate::tir::{Inst, Op, ReduceOp};

impl Lower<'_> {
    fn combine(&mut self, op: ReduceOp, a: &Value, b: &Value) -> Value {
        let float = a.ty() == Ty::F32;
        let op = match (op, float) {
            (ReduceOp::Sum, true) => Arith::AddF,
            (ReduceOp::Max, true) => Arith::MaximumF,
            (ReduceOp::Sum, false) => Arith::AddI,
            (ReduceOp::Max, false) => Arith::MaxSI,
        };
        self.e.arith(op, a, b)
    }

    pub fn reduce(&mut self, inst: &Inst) -> R<Vec<Value>> {
        let Op::Reduce { op, x, axis } = &inst.op else {
            return Err(err("not a reduce"));
        };
        let r = inst.results[0];
        let Layout::Dist(d) = self.s.layout(*x).clone() else {
            return self.get(*x);
        };
        let src = self.get(*x)?;
        let dt = self.dtype(r);
        let src = self.widen_all(&src, dt);
        let axis = d.tile_axis(self.k.ty(*x).shape.len(), *axis);
        let mut acc = self.fold_in_thread(*op, &d, axis, &src);
        let plan = self.s.reduces.get(&r).cloned().unwrap_or(ReducePlan {
            shuffles: vec![],
            warp_bits: vec![],
        });
        for b in &plan.shuffles {
            self.shuffle_fold(*op, &mut acc, *b)?;
        }
        if !plan.warp_bits.is_empty() {
            acc = self.fold_across_warps(*op, &d, &plan.warp_bits, &acc)?;
        }
        let acc = self.narrow_all(&acc, dt);
        // The result's registers are the projection's, possibly seen under a 1-D shape.
        Ok(match self.s.layout(r) {
            Layout::Uniform => vec![acc[0].clone()],
            _ => acc,
        })
    }

    /// One value per register of `d`'s projection along `axis`.
    fn fold_in_thread(&mut self, op: ReduceOp, d: &Dist, axis: usize, src: &[Value]) -> Vec<Value> {
        let p = d.project(axis);
        let mut acc: Vec<Option<Value>> = vec![None; p.regs.len()];
        for (i, reg) in d.regs.iter().enumerate() {
            let mut pc = *reg;
            pc[axis] = 0;
            let j = p.regs.iter().position(|q| *q == pc).unwrap_or(0);
            acc[j] = Some(match &acc[j] {
                None => src[i].clone(),
                Some(a) => self.combine(op, a, &src[i]),
            });
        }
        acc.into_iter().flatten().collect()
    }

    /// Folds every value with the lane whose index differs in bit `bit`.
    fn shuffle_fold(&mut self, op: ReduceOp, acc: &mut [Value], bit: usize) -> R<()> {
        let m = self.e.i32(1 << bit);
        for a in acc.iter_mut() {
            let w = self.as_b32(a);
            let o = self.e.inline_asm(&ptx::shfl_bfly(), &[&w, &m])?;
            let o = self.of_b32(&o[0], a.ty());
            *a = self.combine(op, a, &o);
        }
        Ok(())
    }

    /// Folds the partials of the warps whose indices differ in `warp_bits`, through scratch:
    /// each thread writes its values at its own slot, then sums its peers' slots in warp order.
    fn fold_across_warps(
        &mut self,
        op: ReduceOp,
        d: &Dist,
        warp_bits: &[usize],
        acc: &[Value],
    ) -> R<Vec<Value>> {
        let n = acc.len();
        let warps = 1usize << d.warp.len();
        if warps * 32 * n * 4 > self.s.scratch_bytes {
            return Err(err("a cross-warp reduction exceeds the scheduled scratch"));
        }
        self.barrier()?;
        let so = self.e.i32(self.s.scratch_offset as i64);
        let tid = self.tid.clone();
        let stride = self.e.i32((n * 4) as i64);
        let mine = self.e.muli(&tid, &stride);
        let mine = self.e.addi(&mine, &so);
        for (j, a) in acc.iter().enumerate() {
            let off = self.e.add_const(&mine, (j * 4) as i64);
            let w = self.as_b32(a);
            self.st_shared(&off, &w)?;
        }
        self.barrier()?;
        let axis_mask: usize = warp_bits.iter().map(|b| 1 << b).sum();
        let keep = self.e.i32(!(axis_mask as i64) & (warps as i64 - 1));
        let warp = self.warp.clone();
        let wbase = self.e.andi(&warp, &keep);
        let lane = self.lane.clone();
        let t = acc[0].ty();
        let mut out: Vec<Option<Value>> = vec![None; n];
        for combo in 0..(1usize << warp_bits.len()) {
            let mut w = 0usize;
            for (i, b) in warp_bits.iter().enumerate() {
                if combo >> i & 1 == 1 {
                    w |= 1 << b;
                }
            }
            let wv = self.e.add_const(&wbase, w as i64);
            let c32 = self.e.i32(32);
            let th = self.e.muli(&wv, &c32);
            let th = self.e.addi(&th, &lane);
            let o = self.e.muli(&th, &stride);
            let o = self.e.addi(&o, &so);
            for (j, slot) in out.iter_mut().enumerate() {
                let off = self.e.add_const(&o, (j * 4) as i64);
                let word = self.ld_shared(&off, Ty::I32)?;
                let v = self.of_b32(&word, t);
                *slot = Some(match slot.take() {
                    None => v,
                    Some(a) => self.combine(op, &a, &v),
                });
            }
        }
        Ok(out.into_iter().flatten().collect())
    }
}
