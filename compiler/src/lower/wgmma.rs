//! `dot` on wgmma: one `wgmma.mma_async.m64nNk16` per 16 of K on each warpgroup's 64 rows.
//!
//! B, and A when staged, are read by the tensor cores straight from their staged panels through
//! matrix descriptors (the layout, strides and swizzle the schedule planned,
//! [`crate::sched::wgmma`]); the lowering adds only the start address: the slot's, moved to the
//! warpgroup's 64 rows of A and, per K step, 32 bytes along a K-major operand's panel rows (or
//! to its next panel) and 16 rows down an N-major B's panels.
//! A descriptor's start field is the address >> 4, and shared addresses stay below 2^18, so a
//! step is an add on the descriptor itself. An A in registers gives each K step four registers,
//! its accumulator-layout values packed in pairs, passed through the batch's `wgmma.fence` so
//! that nothing writes them between the fence and the wgmma. The accumulators stay in registers
//! across the batch, tied in and out of each instruction (a dot without an accumulator input
//! starts with scale-d 0); the batch is fenced, committed and waited as planned, a wait to 0
//! passing the accumulators through it so that no reader moves above it.

use super::dot::SmemOperand;
use super::emit::{Arith, Cast, Ty, Value};
use super::entry::Lower;
use super::ptx_templates as ptx;
use super::{err, R};
use crate::sched::wgmma::{Desc, Major, WgmmaPlan};
use crate::sched::{DotPlan, Operand};
use crate::tir::DType;

impl Lower<'_> {
    /// The dot's batch; `fresh` when it has no accumulator input (the first instruction then
    /// writes D = A·B and the zeros in `c` are never read).
    pub fn wgmma(
        &mut self,
        plan: &DotPlan,
        w: &WgmmaPlan,
        c: &mut [Value],
        tiles: &[Option<SmemOperand>],
        fresh: bool,
    ) -> R<()> {
        let [a, Some(b)] = tiles else {
            return Err(err("wgmma reads B from shared memory"));
        };
        if c.len() != w.n / 2 || plan.n != w.n {
            return Err(err("a wgmma accumulator holds N/2 registers per thread"));
        }
        let dtype = match b.tile.dtype {
            DType::F16 => "f16",
            _ => "bf16",
        };
        // A's descriptor, or its fenced fragment registers, four per K step.
        let (da, a_regs) = match (&w.a, a, &plan.a) {
            (Some(side), Some(a), _) => {
                // This warpgroup's 64 rows start 64 panel rows into every panel of A.
                let warp = self.warp.clone();
                let rows = self.hoisted(|me| {
                    let four = me.e.i32(4);
                    let g = me.e.arith(Arith::DivUI, &warp, &four);
                    let bytes = me.e.i32((64 * side.row) as i64);
                    me.e.muli(&g, &bytes)
                });
                let a_at = self.e.addi(&a.base, &rows);
                (
                    Some((self.descriptor(&side.desc, &a_at)?, *side)),
                    Vec::new(),
                )
            }
            (None, None, Operand::RegA { value }) => {
                let (regs, d) = self.register_a(*value)?;
                let mut packed = Vec::new();
                for kk in 0..w.k_steps {
                    packed.extend(self.a_from_registers(&regs, &d, 0, kk)?);
                }
                // Fenced after they are written, before any wgmma of the batch reads them.
                let ins: Vec<&Value> = packed.iter().collect();
                let fenced = self
                    .e
                    .inline_asm(&ptx::wgmma_fence_for(packed.len()), &ins)?;
                (None, fenced)
            }
            _ => {
                return Err(err(
                    "wgmma A is a descriptor operand or registers, as planned",
                ))
            }
        };
        let db = self.descriptor(&w.b.desc, &b.base)?;
        if da.is_some() {
            self.e.inline_asm(&ptx::wgmma_fence(), &[])?;
        }
        for kk in 0..w.k_steps {
            let k0 = 16 * kk;
            let ak = match &da {
                Some((da, side)) => vec![self.e.add_const(da, (side.k_step(k0) >> 4) as i64)],
                None => a_regs[4 * kk..4 * kk + 4].to_vec(),
            };
            let bk = self.e.add_const(&db, (w.b.k_step(k0) >> 4) as i64);
            let accumulate = !(fresh && kk == 0);
            let op = ptx::wgmma_m64nk16(ptx::Wgmma {
                n: w.n,
                dtype,
                a_regs: da.is_none(),
                trans_b: w.b.desc.major == Major::MN,
                accumulate,
            });
            let mut ins: Vec<&Value> = ak.iter().collect();
            ins.push(&bk);
            if accumulate {
                ins.extend(c.iter());
            }
            let out = self.e.inline_asm(&op, &ins)?;
            c.clone_from_slice(&out);
        }
        self.e.inline_asm(&ptx::wgmma_commit(), &[])?;
        if w.wait == 0 {
            // Whatever reads the accumulators reads the wait's results: nothing moves above it.
            let ins: Vec<&Value> = c.iter().collect();
            let out = self.e.inline_asm(&ptx::wgmma_wait_for(0, c.len()), &ins)?;
            c.clone_from_slice(&out);
        } else {
            self.e.inline_asm(&ptx::wgmma_wait(w.wait), &[])?;
        }
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
