//! TMA copies into a pipeline's ring: one thread fills a slot, every thread waits on its
//! mbarrier.
//!
//! Each slot of a ring with TMA loads has an mbarrier ([`crate::sched::Pipeline::mbarriers`]),
//! initialised for one arrival when the loop is entered and invalidated after it. Filling a
//! slot, thread 0 announces the bytes of every TMA load of the ring
//! (`mbarrier.arrive.expect_tx`, the phase's one arrival) and issues their boxes, one per panel
//! of each tile, at the load's start coordinates for that iteration (innermost dimension
//! first); the phase completes when the bytes have landed. Iteration j reads slot j mod
//! `stages`, its (j / `stages`)-th fill, so every thread waits for the phase of that parity
//! before the iteration's barrier. The ring rule (copies at most `stages` − 1 ahead, a slot
//! refilled only after the barrier that follows every thread's wait on it) keeps a barrier at
//! most one phase ahead of its waiters, which is what makes a parity name one fill.
//! TMA writes through the async proxy that wgmma reads through, so these tiles need no
//! `fence.proxy.async`; the mbarrier's completion makes them visible.

use super::emit::{Arith, ICmp, Value};
use super::entry::Lower;
use super::loops::find_def;
use super::ptx_templates as ptx;
use super::{err, R};
use crate::sched::MBARRIER_BYTES;
use crate::sched::{Copy, Pipeline};
use crate::tir::{Op, ValueId};

impl Lower<'_> {
    /// The loads of `p` copied by TMA.
    pub(super) fn tma_loads(&self, p: &Pipeline) -> Vec<ValueId> {
        p.loads
            .iter()
            .copied()
            .filter(|l| matches!(self.s.staged[l].copy, Copy::Tma(_)))
            .collect()
    }

    /// The 32-bit shared address of the mbarrier of slot `slot` of ring `p`.
    fn mbarrier(&mut self, p: &Pipeline, slot: &Value) -> R<Value> {
        let at = p
            .mbarriers
            .ok_or_else(|| err("a ring with TMA loads has no mbarriers"))?;
        let (_, s32) = self.shared_base()?;
        let base = self.e.i32(at as i64);
        let base = self.e.addi(&s32, &base);
        let eight = self.e.i32(MBARRIER_BYTES as i64);
        let off = self.e.muli(slot, &eight);
        Ok(self.e.addi(&base, &off))
    }

    /// Runs `f` on thread 0 only: the one thread that drives the ring's mbarriers and TMA.
    fn on_thread_zero(&mut self, f: impl FnOnce(&mut Self) -> R<()>) -> R<()> {
        let z = self.e.i32(0);
        let tid = self.tid.clone();
        let first = self.e.cmpi(ICmp::Eq, &tid, &z);
        self.when(&first, f)
    }

    /// Initialises every slot's mbarrier when the loop is entered (before the prologue's barrier,
    /// which publishes them).
    pub(super) fn ring_init(&mut self, p: &Pipeline) -> R<()> {
        self.on_thread_zero(|me| {
            for s in 0..p.stages {
                let sv = me.e.i32(s as i64);
                let bar = me.mbarrier(p, &sv)?;
                me.e.inline_asm(&ptx::mbarrier_init(), &[&bar])?;
            }
            me.e.inline_asm(&ptx::fence_mbarrier_init(), &[])?;
            Ok(())
        })
    }

    /// Invalidates every slot's mbarrier after the loop (after the barrier every thread passes
    /// once its last wait is done), so that entering the loop again may initialise them afresh.
    pub(super) fn ring_end(&mut self, p: &Pipeline) -> R<()> {
        self.on_thread_zero(|me| {
            for s in 0..p.stages {
                let sv = me.e.i32(s as i64);
                let bar = me.mbarrier(p, &sv)?;
                me.e.inline_asm(&ptx::mbarrier_inval(), &[&bar])?;
            }
            Ok(())
        })
    }

    /// Waits until slot `j mod stages` holds iteration `j`'s tiles: the phase of parity
    /// (j / stages) mod 2 of its mbarrier.
    pub(super) fn ring_wait(&mut self, p: &Pipeline, j: &Value) -> R<()> {
        let sv = self.e.i32(p.stages as i64);
        let slot = self.e.arith(Arith::RemSI, j, &sv);
        let fill = self.e.arith(Arith::DivSI, j, &sv);
        let one = self.e.i32(1);
        let parity = self.e.andi(&fill, &one);
        let bar = self.mbarrier(p, &slot)?;
        self.e
            .inline_asm(&ptx::mbarrier_wait_parity(), &[&bar, &parity])?;
        Ok(())
    }

    /// Fills slot `slot` (an i32 index) with the TMA loads of `p`, their starts already lowered
    /// for the iteration it holds: thread 0 announces the bytes, then issues every box.
    pub(super) fn ring_fill(&mut self, p: &Pipeline, slot: &Value) -> R<()> {
        let loads = self.tma_loads(p);
        let bytes: usize = loads.iter().map(|l| self.s.staged[l].tile.bytes()).sum();
        let bar = self.mbarrier(p, slot)?;
        let mut dsts = Vec::new();
        for &l in &loads {
            dsts.push(self.slot(l, slot));
        }
        self.on_thread_zero(|me| {
            me.e.inline_asm(&ptx::mbarrier_arrive_expect_tx(bytes), &[&bar])?;
            for (l, dst) in loads.iter().zip(&dsts) {
                me.tma_boxes(*l, dst, &bar)?;
            }
            Ok(())
        })
    }

    /// The boxes of TMA load `l` into its slot at byte offset `dst`, one per panel.
    fn tma_boxes(&mut self, l: ValueId, dst: &Value, bar: &Value) -> R<()> {
        let Copy::Tma(i) = self.s.staged[&l].copy else {
            return Err(err(format!("{l} is not copied by TMA")));
        };
        let m = self.s.tensor_maps[i].clone();
        let tile = self.s.staged[&l].tile;
        let Some(Op::Load { starts, .. }) = find_def(&self.k.body, l) else {
            return Err(err(format!("{l} is not a load")));
        };
        let arg = self
            .sig
            .tensor_map_arg(i)
            .ok_or_else(|| err(format!("tensor map {i} is not a parameter")))?;
        let map = self.e.param(arg);
        let (_, s32) = self.shared_base()?;
        let at = self.e.addi(&s32, dst);
        let panel_bytes = tile.rows * tile.panel * tile.dtype.size();
        for panel in 0..m.panels {
            let mut coords = Vec::new();
            for axis in (0..starts.len()).rev() {
                let c = self.get(starts[axis])?[0].clone();
                coords.push(if axis + 1 == starts.len() {
                    self.e.add_const(&c, (panel * tile.panel) as i64)
                } else {
                    c
                });
            }
            let to = self.e.add_const(&at, (panel * panel_bytes) as i64);
            let mut ins: Vec<&Value> = vec![&to, &map];
            ins.extend(coords.iter());
            ins.push(bar);
            self.e.inline_asm(&ptx::tma_load(coords.len()), &ins)?;
        }
        Ok(())
    }
}
