//! `dot` on wgmma: one `wgmma.mma_async.m64nNk16` per 16 of K on each warpgroup's 64 rows.
//!
//! Both operands are read by the tensor cores straight from their staged panels through matrix
//! descriptors (the layout, strides and swizzle the schedule planned, [`crate::sched::wgmma`]);
//! the lowering adds only the start address: the slot's, moved to the warpgroup's 64 rows of A
//! and, per K step, 32 bytes along A's panel rows (or to its next panel) and 16 rows down B's
//! panels.
//! A descriptor's start field is the address >> 4, and shared addresses stay below 2^18, so a
//! step is an add on the descriptor itself. The accumulators stay in registers across the batch,
//! tied in and out of each instruction; the batch is fenced, committed and waited as planned.

use super::dot::SmemOperand;
use super::emit::{Arith, Cast, Ty, Value};
use super::entry::Lower;
use super::ptx_templates as ptx;
use super::{err, R};
use crate::sched::wgmma::{Desc, Major, WgmmaPlan};
use crate::sched::DotPlan;
use crate::tir::DType;

impl Lower<'_> {
    pub fn wgmma(
        &mut self,
        plan: &DotPlan,
        w: &WgmmaPlan,
        c: &mut [Value],
        tiles: &[Option<SmemOperand>],
    ) -> R<()> {
        let [Some(a), Some(b)] = tiles else {
            return Err(err("wgmma reads both operands from shared memory"));
        };
        if c.len() != w.n / 2 || plan.n != w.n {
            return Err(err("a wgmma accumulator holds N/2 registers per thread"));
        }
        let dtype = match a.tile.dtype {
            DType::F16 => "f16",
            _ => "bf16",
        };
        // This warpgroup's 64 rows start 64 panel rows into every panel of A.
        let warp = self.warp.clone();
        let rows = self.hoisted(|me| {
            let four = me.e.i32(4);
            let g = me.e.arith(Arith::DivUI, &warp, &four);
            let bytes = me.e.i32((64 * w.a_row) as i64);
            me.e.muli(&g, &bytes)
        });
        let a_at = self.e.addi(&a.base, &rows);
        let da = self.descriptor(&w.a, &a_at)?;
        let db = self.descriptor(&w.b, &b.base)?;
        let op = ptx::wgmma_m64nk16(w.n, dtype, w.b.major == Major::MN);
        let es = a.tile.dtype.size();
        let a_panel = w.a_row / es;
        self.e.inline_asm(&ptx::wgmma_fence(), &[])?;
        for kk in 0..w.k_steps {
            let k0 = 16 * kk;
            let a_step = (k0 / a_panel) * w.a_panel_bytes + (k0 % a_panel) * es;
            let b_step = k0 * w.b_row;
            let ak = self.e.add_const(&da, (a_step >> 4) as i64);
            let bk = self.e.add_const(&db, (b_step >> 4) as i64);
            let mut ins: Vec<&Value> = vec![&ak, &bk];
            ins.extend(c.iter());
            let out = self.e.inline_asm(&op, &ins)?;
            c.clone_from_slice(&out);
        }
        self.e.inline_asm(&ptx::wgmma_commit(), &[])?;
        self.e.inline_asm(&ptx::wgmma_wait(w.wait), &[])?;
        Ok(())
    }

    /// The 64-bit descriptor of an operand at byte `off` of the shared array.
    fn descriptor(&mut self, d: &Desc, off: &Value) -> R<Value> {
        let (_, s32) = self.shared_base()?;
        let addr = self.e.addi(&s32, off);
        let four = self.e.i32(4);
        let q = self.e.arith(Arith::ShRUI, &addr, &four);
        let mask = self.e.i32(0x3fff);
        let q = self.e.andi(&q, &mask);
        let q = self.e.cast(Cast::ExtUI, &q, Ty::I64);
        let bits = self.e.i64(d.constant_bits() as i64);
        Ok(self.e.arith(Arith::OrI, &q, &bits))
    }
}
