//! `dot` on the FMA units, for operands the matrix unit does not take (f32).
//!
//! An `scf.for` over K rather than unrolled: each step loads one A element per output row and
//! one B element per output column the thread holds, then one FMA per register, so code size is
//! independent of K and every operand element loaded is reused across the thread's row or column.

use std::collections::HashMap;

use super::dot::SmemOperand;
use super::emit::{Ty, Value};
use super::entry::Lower;
use super::shared::tile_offset;
use super::{err, R};
use crate::sched::{Dist, DotPlan};

impl Lower<'_> {
    pub fn fma_dot(
        &mut self,
        plan: &DotPlan,
        od: &Dist,
        c: Vec<Value>,
        tiles: &[Option<SmemOperand>],
    ) -> R<Vec<Value>> {
        let a = tiles[0].clone().ok_or_else(|| err("A operand"))?;
        let b = tiles[1].clone().ok_or_else(|| err("B operand"))?;
        let (br, bc) = self.base(od);
        let lo = self.e.i32(0);
        let hi = self.e.i32(plan.k as i64);
        let one = self.e.i32(1);
        let vars = self.e.loop_vars(&c);
        self.e.open_region();
        let k = vars.iv.clone();
        let mut rows: Vec<usize> = od.regs.iter().map(|r| r[0]).collect();
        rows.sort();
        rows.dedup();
        let mut cols: Vec<usize> = od.regs.iter().map(|r| r[1]).collect();
        cols.sort();
        cols.dedup();
        let mut av = HashMap::new();
        for &r in &rows {
            let row = self.e.add_const(&br, r as i64);
            let (sr, sc) = if a.trans { (&k, &row) } else { (&row, &k) };
            av.insert(r, self.operand_element(&a, sr, sc)?);
        }
        let mut bv = HashMap::new();
        for &cc in &cols {
            let col = self.e.add_const(&bc, cc as i64);
            let (sr, sc) = if b.trans { (&col, &k) } else { (&k, &col) };
            bv.insert(cc, self.operand_element(&b, sr, sc)?);
        }
        let outs: Vec<Value> = od
            .regs
            .iter()
            .zip(&vars.args)
            .map(|(r, acc)| self.e.fma(&av[&r[0]], &bv[&r[1]], acc))
            .collect();
        let body = self.e.close_region(&outs);
        self.e.scf_for(vars, [&lo, &hi, &one], &c, body)
    }

    /// Element (row, col) of a stored operand tile, as f32.
    fn operand_element(&mut self, o: &SmemOperand, row: &Value, col: &Value) -> R<Value> {
        let off = tile_offset(&mut self.e, &o.tile, &o.base, row, col);
        let x = self.ld_shared(&off, Ty::of(o.tile.dtype))?;
        Ok(self.widen(&x))
    }
}
