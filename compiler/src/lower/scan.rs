//! `cumsum` / `cumprod` along one axis: a Hillis–Steele scan through the shared scratch region.
//!
//! Each step s = 1, 2, 4, … writes every element's running value at its row-major word and then
//! combines it with the value s elements earlier along the axis. Going through shared memory
//! rather than lane shuffles makes it correct for every layout the schedule can give the operand
//! (blocked, mma accumulators, slices, replicated elements) at the price of two barriers a step:
//! log2(extent) steps. Threads holding replicas of an element compute the same values from the
//! same words, so only the owner writes. Floats accumulate in f32 and round once at the end.

use super::emit::{Arith, ICmp, Ty, Value};
use super::entry::Lower;
use super::{err, R};
use crate::sched::Layout;
use crate::tir::{Inst, Op, ScanOp};

impl Lower<'_> {
    fn scan_combine(&mut self, op: ScanOp, a: &Value, b: &Value) -> Value {
        let float = a.ty() == Ty::F32;
        let op = match (op, float) {
            (ScanOp::Sum, true) => Arith::AddF,
            (ScanOp::Prod, true) => Arith::MulF,
            (ScanOp::Sum, false) => Arith::AddI,
            (ScanOp::Prod, false) => Arith::MulI,
        };
        self.e.arith(op, a, b)
    }

    pub fn scan(&mut self, inst: &Inst) -> R<Vec<Value>> {
        let Op::Scan { op, x, axis } = &inst.op else {
            return Err(err("not a scan"));
        };
        let dt = self.dtype(inst.results[0]);
        // A single element is its own prefix.
        let Layout::Dist(d) = self.s.layout(*x).clone() else {
            return self.get(*x);
        };
        let n = d.shape[0] * d.shape[1];
        if n * 4 > self.s.scratch_bytes {
            return Err(err(format!(
                "a scan needs {} scratch bytes, the schedule has {}",
                n * 4,
                self.s.scratch_bytes
            )));
        }
        let ax = d.tile_axis(self.k.ty(*x).shape.len(), *axis);
        let cols = d.shape[1] as i64;
        let along = if ax == 0 { cols } else { 1 };
        let src = self.get(*x)?;
        let mut cur = self.widen_all(&src, dt);
        let t = cur[0].ty();
        let (br, bc) = self.base(&d);
        let base = if ax == 0 { br } else { bc };
        let owner = self.owner(&d);
        let lin = self.scratch_word(&d);
        let own: Vec<Value> = d
            .regs
            .iter()
            .map(|r| {
                self.e
                    .add_const(&lin, 4 * (r[0] as i64 * cols + r[1] as i64))
            })
            .collect();
        let mut step = 1usize;
        while step < d.shape[ax] {
            self.barrier()?;
            self.when(&owner, |me| {
                for (off, v) in own.iter().zip(&cur) {
                    let w = me.as_b32(v);
                    me.st_shared(off, &w)?;
                }
                Ok(())
            })?;
            self.barrier()?;
            let s = self.e.i32(step as i64);
            for (i, r) in d.regs.iter().enumerate() {
                let coord = self.e.add_const(&base, r[ax] as i64);
                let has = self.e.cmpi(ICmp::Sge, &coord, &s);
                // The first `step` elements have no partner; they read their own word, so no
                // address leaves the tile, and keep their value.
                let back = self.e.add_const(&own[i], -4 * step as i64 * along);
                let off = self.e.select(&has, &back, &own[i]);
                let w = self.ld_shared(&off, Ty::I32)?;
                let v = self.of_b32(&w, t);
                let c = self.scan_combine(*op, &cur[i], &v);
                cur[i] = self.e.select(&has, &c, &cur[i]);
            }
            step *= 2;
        }
        Ok(self.narrow_all(&cur, dt))
    }
}
