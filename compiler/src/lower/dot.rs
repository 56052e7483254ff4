//! `dot`: gathering the operands where the schedule's unit reads them, then one unit's product.
//!
//! Every unit reads operands from shared memory (wgmma through descriptors, mma.sync through
//! `ldmatrix`, FMAs element by element), except an mma A operand already in the accumulator layout, which is repacked in
//! registers. Operands not staged from global memory are written to scratch first, between two
//! barriers, so the product never reads a half-written tile. The accumulator lives in the
//! result's layout throughout: `mma` for the matrix units (wgmma's accumulator places its registers
//! the same way), any layout for FMAs.

use super::emit::Value;
use super::entry::Lower;
use super::{err, R};
use crate::sched::{DotUnit, Layout, Operand, SmemTile};
use crate::tir::{Inst, Op, ValueId};

/// A dot operand in shared memory: its tile, the byte offset of its slot, and whether the stored
/// tile is the transpose of the operand.
#[derive(Clone)]
pub(super) struct SmemOperand {
    pub tile: SmemTile,
    pub base: Value,
    pub trans: bool,
}

impl Lower<'_> {
    pub fn dot(&mut self, inst: &Inst) -> R<Vec<Value>> {
        let r = inst.results[0];
        let Op::Dot { acc, .. } = &inst.op else {
            return Err(err("not a dot"));
        };
        let plan = self.s.dots[&r].clone();
        let out_layout = self.s.layout(r).clone();
        let Layout::Dist(od) = &out_layout else {
            return Err(err("a dot result must be distributed"));
        };
        let mut c = match acc {
            Some(a) => {
                let v = self.regs_in(*a, &out_layout)?;
                v.iter().map(|x| self.widen(x)).collect::<Vec<_>>()
            }
            None => {
                let z = self.cf32(0.0);
                vec![z; od.regs.len()]
            }
        };
        let operands = self.dot_operands([&plan.a, &plan.b])?;
        match plan.unit {
            DotUnit::Wgmma(w) => self.wgmma(&plan, &w, &mut c, &operands, acc.is_none())?,
            DotUnit::Mma => self.mma(&plan, od, &mut c, &operands)?,
            DotUnit::Fma => c = self.fma_dot(&plan, od, c, &operands)?,
        }
        Ok(c)
    }

    /// Each operand in shared memory (`None`: an A operand read from registers), register
    /// operands written to scratch first.
    fn dot_operands(&mut self, ops: [&Operand; 2]) -> R<Vec<Option<SmemOperand>>> {
        let needs_scratch = ops
            .iter()
            .any(|o| matches!(o, Operand::Smem { staged: false, .. }));
        if needs_scratch {
            self.barrier()?;
        }
        let mut at = 0;
        let mut out = Vec::new();
        for o in ops {
            match o {
                Operand::Smem {
                    value,
                    trans,
                    staged,
                } => {
                    let (tile, base) = self.operand_tile(*value, *staged, at)?;
                    if !staged {
                        at += tile.bytes().div_ceil(16) * 16;
                    }
                    out.push(Some(SmemOperand {
                        tile,
                        base,
                        trans: *trans,
                    }));
                }
                Operand::RegA { .. } => out.push(None),
            }
        }
        if at > self.s.scratch_bytes {
            return Err(err("dot operands exceed the scheduled scratch"));
        }
        if needs_scratch {
            self.barrier()?;
        }
        Ok(out)
    }

    /// Where a shared operand lives: a staged tile's slot, or scratch at byte `scratch_at` for a
    /// register tile (written there now).
    fn operand_tile(
        &mut self,
        value: ValueId,
        staged: bool,
        scratch_at: usize,
    ) -> R<(SmemTile, Value)> {
        if staged {
            let tile = self.s.staged[&value].tile;
            let at = self
                .smem_at
                .get(&value)
                .cloned()
                .ok_or_else(|| err(format!("staged {value} read before it was copied")))?;
            return Ok((tile, at));
        }
        let t = self.k.ty(value).clone();
        let tile = SmemTile::new(t.shape[0], t.shape[1], t.dtype);
        let base = self.e.i32((self.s.scratch_offset + scratch_at) as i64);
        let vals = self.get(value)?;
        let d = self
            .s
            .dist(value)
            .cloned()
            .ok_or_else(|| err(format!("{value} is not in registers")))?;
        self.store_tile(&vals, &d, &tile, &base)?;
        Ok((tile, base))
    }
}
