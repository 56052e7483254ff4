//! Moving a tile between register layouts.
//!
//! The schedule gives producer and consumer the same layout wherever it can, so most uses are
//! free (the same registers, or a uniform value repeated). Where they still disagree the tile goes
//! through the shared scratch region as 32-bit words at the row-major element index: written by
//! the owner of each element, read back by every thread that wants it, with a barrier before each
//! half so consecutive uses of scratch never race.

use super::emit::{Ty, Value};
use super::entry::Lower;
use super::{err, R};
use crate::sched::{Dist, Layout};
use crate::tir::ValueId;

impl Lower<'_> {
    /// `v`'s registers in layout `want` (converting through scratch when they differ).
    pub fn regs_in(&mut self, v: ValueId, want: &Layout) -> R<Vec<Value>> {
        let have = self.s.layout(v).clone();
        let vals = self.get(v)?;
        match (&have, want) {
            (Layout::Uniform, Layout::Dist(d)) => Ok(vec![vals[0].clone(); d.regs.len()]),
            (Layout::Dist(a), Layout::Dist(b)) if a.same_placement(b) => Ok(vals),
            (Layout::Dist(a), Layout::Dist(b)) => self.convert(&vals, a, b),
            _ => Ok(vals),
        }
    }

    /// Every operand's registers in layout `want`, a uniform operand repeated per register.
    pub fn operands_in(&mut self, ops: &[ValueId], want: &Layout) -> R<Vec<Vec<Value>>> {
        let n = match want {
            Layout::Dist(d) => d.regs.len(),
            _ => 1,
        };
        ops.iter()
            .map(|o| {
                let v = self.regs_in(*o, want)?;
                Ok(if v.len() == 1 && n > 1 {
                    vec![v[0].clone(); n]
                } else {
                    v
                })
            })
            .collect()
    }

    /// The scratch byte offset of this thread's base element of `d`, one 32-bit word per element
    /// in row-major order.
    pub(super) fn scratch_word(&mut self, d: &Dist) -> Value {
        let (br, bc) = self.base(d);
        self.hoisted(|me| {
            let so = me.e.i32(me.s.scratch_offset as i64);
            let four = me.e.i32(4);
            let cv = me.e.i32(d.shape[1] as i64);
            let lin = me.e.muli(&br, &cv);
            let lin = me.e.addi(&lin, &bc);
            let lin = me.e.muli(&lin, &four);
            me.e.addi(&lin, &so)
        })
    }

    /// Moves a tile from layout `from` to `to` through the scratch region.
    pub fn convert(&mut self, vals: &[Value], from: &Dist, to: &Dist) -> R<Vec<Value>> {
        let n = from.shape[0] * from.shape[1];
        if n * 4 > self.s.scratch_bytes {
            return Err(err(format!(
                "a layout conversion needs {} scratch bytes, the schedule has {}",
                n * 4,
                self.s.scratch_bytes
            )));
        }
        let t = vals[0].ty();
        self.barrier()?;
        let owner = self.owner(from);
        let cols = from.shape[1] as i64;
        let lin = self.scratch_word(from);
        self.when(&owner, |me| {
            for (i, r) in from.regs.iter().enumerate() {
                let off = me.e.add_const(&lin, 4 * (r[0] as i64 * cols + r[1] as i64));
                let w = me.as_b32(&vals[i]);
                me.st_shared(&off, &w)?;
            }
            Ok(())
        })?;
        self.barrier()?;
        let lin = self.scratch_word(to);
        let mut out = Vec::new();
        for r in &to.regs {
            let off = self
                .e
                .add_const(&lin, 4 * (r[0] as i64 * cols + r[1] as i64));
            let w = self.ld_shared(&off, Ty::I32)?;
            out.push(self.of_b32(&w, t));
        }
        Ok(out)
    }

    /// `expand_dims`: the same registers under the result's shape, converted if the reshaped
    /// layout places them differently.
    pub fn expand_dims(&mut self, x: ValueId, r: ValueId) -> R<Vec<Value>> {
        match (self.s.layout(x).clone(), self.want(r)) {
            (Layout::Dist(a), Layout::Dist(b)) => {
                let vals = self.get(x)?;
                let a2 = a.reshaped(b.shape);
                if a2.same_placement(&b) {
                    Ok(vals)
                } else {
                    self.convert(&vals, &a2, &b)
                }
            }
            _ => self.get(x),
        }
    }

    /// `broadcast` of a row or column onto a tile: each register takes the source register at
    /// its projected coordinate.
    pub fn broadcast(&mut self, x: ValueId, r: ValueId) -> R<Vec<Value>> {
        match (self.s.layout(x).clone(), self.want(r)) {
            (Layout::Dist(src), Layout::Dist(out)) => {
                let axis = if src.shape[0] == 1 { 0 } else { 1 };
                let proj = out.project(axis);
                let vals = self.regs_in(x, &Layout::Dist(proj.clone()))?;
                Ok(out
                    .regs
                    .iter()
                    .map(|c| {
                        let mut p = *c;
                        p[axis] = 0;
                        let i = proj.regs.iter().position(|q| *q == p).unwrap_or(0);
                        vals[i].clone()
                    })
                    .collect())
            }
            (_, Layout::Dist(out)) => Ok(vec![self.get(x)?[0].clone(); out.regs.len()]),
            _ => self.get(x),
        }
    }
}
