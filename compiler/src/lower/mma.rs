//! `dot` on the matrix unit: `mma.sync.m16n8k16`, operands by `ldmatrix.x4`.
//!
//! Each warp owns a `wr × wc` block of the output (the schedule's `wm × wn` warp frame), as
//! 16×8 fragments whose four f32 accumulators per thread stay in registers across the K loop.
//! Which shared row a lane's `ldmatrix` address points at depends only on the lane, the warp and
//! the unrolled step, so every address offset is hoisted to entry and the loop body only adds the
//! slot's base. One `ldmatrix.x4` loads a whole A fragment (16×16) or two B fragments (16×8 each);
//! `.trans` when the stored tile is the transpose of what the instruction reads.

use super::dot::SmemOperand;
use super::emit::{Arith, Ty, Value};
use super::entry::Lower;
use super::ptx_templates as ptx;
use super::shared::tile_offset;
use super::{err, R};
use crate::sched::{Dist, DistKind, DotPlan, Operand};
use crate::tir::{DType, ValueId};

/// The lane's coordinates in the fragment layouts, computed once at entry.
struct Lanes {
    /// The warp's first output row and column.
    row0: Value,
    col0: Value,
    /// 8·((lane/8)%2) and 8·(lane/16).
    q_lo8: Value,
    q_hi8: Value,
    /// lane%8 + 8·((lane/8)%2): the row of non-transposed A and transposed B reads.
    pat_row: Value,
    /// lane%8 + 8·(lane/16): the row of non-transposed B and transposed A reads.
    pat_row2: Value,
}

impl Lower<'_> {
    pub fn mma(
        &mut self,
        plan: &DotPlan,
        od: &Dist,
        c: &mut [Value],
        tiles: &[Option<SmemOperand>],
    ) -> R<()> {
        let DistKind::Mma { wm, wn } = od.kind else {
            return Err(err("an mma dot needs the mma layout"));
        };
        let (m, n, kdim) = (plan.m, plan.n, plan.k);
        let (wr, wc) = (m / wm, n / wn);
        let (fm, fnn) = (wr / 16, wc / 8);
        let lanes = self.mma_lanes(wn, wr, wc);
        let dtype = match tiles
            .iter()
            .flatten()
            .next()
            .map(|t| t.tile.dtype)
            .unwrap_or(DType::Bf16)
        {
            DType::F16 => "f16",
            _ => "bf16",
        };
        let areg = match &plan.a {
            Operand::RegA { value } => Some(self.register_a(*value)?),
            _ => None,
        };
        for kk in 0..kdim / 16 {
            let mut afr: Vec<Vec<Value>> = Vec::new();
            for i in 0..fm {
                afr.push(match &areg {
                    Some((regs, d)) => self.a_from_registers(regs, d, i, kk)?,
                    None => {
                        let a = tiles[0].clone().ok_or_else(|| err("A operand"))?;
                        self.a_fragment(&lanes, &a, i, kk)?
                    }
                });
            }
            let b = tiles[1].clone().ok_or_else(|| err("B operand"))?;
            let mut bfr: Vec<[Value; 2]> = Vec::new();
            for jj in 0..fnn / 2 {
                let [r0, r1, r2, r3] = self.b_fragments(&lanes, &b, jj, kk)?;
                bfr.push([r0, r1]);
                bfr.push([r2, r3]);
            }
            let op = ptx::mma_m16n8k16(dtype);
            for (i, a) in afr.iter().enumerate() {
                for (j, b) in bfr.iter().enumerate() {
                    let f = (i * fnn + j) * 4;
                    let acc = &c[f..f + 4];
                    let ins = [
                        &a[0], &a[1], &a[2], &a[3], &b[0], &b[1], &acc[0], &acc[1], &acc[2],
                        &acc[3],
                    ];
                    let out = self.e.inline_asm(&op, &ins)?;
                    c[f..f + 4].clone_from_slice(&out);
                }
            }
        }
        Ok(())
    }

    fn mma_lanes(&mut self, wn: usize, wr: usize, wc: usize) -> Lanes {
        let (warp, lane) = (self.warp.clone(), self.lane.clone());
        self.hoisted(|me| {
            let e = &mut me.e;
            let wnv = e.i32(wn as i64);
            let wi_m = e.arith(Arith::DivUI, &warp, &wnv);
            let wi_n = e.arith(Arith::RemUI, &warp, &wnv);
            let wrv = e.i32(wr as i64);
            let wcv = e.i32(wc as i64);
            let row0 = e.muli(&wi_m, &wrv);
            let col0 = e.muli(&wi_n, &wcv);
            let c7 = e.i32(7);
            let c8 = e.i32(8);
            let c1 = e.i32(1);
            let c3 = e.i32(3);
            let c4 = e.i32(4);
            let l8 = e.andi(&lane, &c7);
            let q = e.arith(Arith::ShRUI, &lane, &c3);
            let q_lo = e.andi(&q, &c1);
            let q_hi = e.arith(Arith::ShRUI, &lane, &c4);
            let q_lo8 = e.muli(&q_lo, &c8);
            let q_hi8 = e.muli(&q_hi, &c8);
            let pat_row = e.addi(&l8, &q_lo8);
            let pat_row2 = e.addi(&l8, &q_hi8);
            Lanes {
                row0,
                col0,
                q_lo8,
                q_hi8,
                pat_row,
                pat_row2,
            }
        })
    }

    /// A register A operand's values and layout.
    pub(super) fn register_a(&mut self, v: ValueId) -> R<(Vec<Value>, Dist)> {
        let d = self.s.dist(v).cloned();
        let d = d.ok_or_else(|| err(format!("A operand {v} is not in registers")))?;
        Ok((self.get(v)?, d))
    }

    /// A fragment (i, kk) from an operand in registers in layout `d`: the registers the layout
    /// places where the fragment wants them ([`Dist::mma_a_fragment`]), two 16-bit halves per
    /// register.
    pub(super) fn a_from_registers(
        &mut self,
        regs: &[Value],
        d: &Dist,
        i: usize,
        kk: usize,
    ) -> R<Vec<Value>> {
        let f = d
            .mma_a_fragment(i, kk)
            .ok_or_else(|| err(format!("A in registers ({d}) is not the mma A fragment")))?;
        Ok((0..4)
            .map(|j| self.pack(&regs[f[2 * j]], &regs[f[2 * j + 1]]))
            .collect())
    }

    /// A fragment (i, kk) from shared memory.
    fn a_fragment(&mut self, l: &Lanes, a: &SmemOperand, i: usize, kk: usize) -> R<Vec<Value>> {
        let (row, col) = self.hoisted(|me| {
            let e = &mut me.e;
            let mrow = e.add_const(&l.row0, 16 * i as i64);
            if !a.trans {
                (
                    e.addi(&mrow, &l.pat_row),
                    e.add_const(&l.q_hi8, 16 * kk as i64),
                )
            } else {
                // Stored [K, M]: row k = 16kk + lane%8 + 8·(lane/16), col m = 8·((lane/8)%2).
                (
                    e.add_const(&l.pat_row2, 16 * kk as i64),
                    e.addi(&mrow, &l.q_lo8),
                )
            }
        });
        self.ldmatrix(a, &row, &col, a.trans)
    }

    /// B fragments (2jj, kk) and (2jj+1, kk) from shared memory, by one `ldmatrix.x4`.
    fn b_fragments(&mut self, l: &Lanes, b: &SmemOperand, jj: usize, kk: usize) -> R<[Value; 4]> {
        let (row, col) = self.hoisted(|me| {
            let e = &mut me.e;
            let n0 = e.add_const(&l.col0, 16 * jj as i64);
            if b.trans {
                // Stored [N, K]: row n = n0 + lane%8 + 8·(lane/16), col k = 16kk + 8·((lane/8)%2).
                (
                    e.addi(&n0, &l.pat_row2),
                    e.add_const(&l.q_lo8, 16 * kk as i64),
                )
            } else {
                // Stored [K, N]: row k = 16kk + lane%8 + 8·((lane/8)%2), col n = n0 + 8·(lane/16).
                (
                    e.add_const(&l.pat_row, 16 * kk as i64),
                    e.addi(&n0, &l.q_hi8),
                )
            }
        });
        let r = self.ldmatrix(b, &row, &col, !b.trans)?;
        r.try_into()
            .map_err(|_| err("ldmatrix.x4 returns four registers"))
    }

    fn ldmatrix(
        &mut self,
        o: &SmemOperand,
        row: &Value,
        col: &Value,
        trans: bool,
    ) -> R<Vec<Value>> {
        // row and col depend only on the thread (and the unrolled step): so does their offset.
        let rel = self.hoisted(|me| {
            let zero = me.e.i32(0);
            tile_offset(&mut me.e, &o.tile, &zero, row, col)
        });
        let off = self.e.addi(&o.base, &rel);
        let p = self.smem_ptr(&off)?;
        let a = self.e.ptrtoint(&p, Ty::I32);
        self.e.inline_asm(&ptx::ldmatrix_x4(trans), &[&a])
    }

    /// Two 16-bit registers as one 32-bit operand register, low half first. Built as a vector so
    /// that two f32 → bf16 rounds feeding it become one `cvt.rn.bf16x2.f32`.
    fn pack(&mut self, lo: &Value, hi: &Value) -> Value {
        let v = self.e.pack2(lo, hi);
        self.e.llvm_bitcast(&v, Ty::I32)
    }
}
