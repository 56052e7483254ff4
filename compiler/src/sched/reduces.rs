//! Reductions: how each crosses threads.
//!
//! Writes `reduces`.
//!
//! Registers that project to the same coordinate fold in-thread; the lane bits of the operand's
//! layout along the axis fold with butterfly shuffles, its warp bits along the axis through shared
//! memory.

use super::{Ctx, ReducePlan, Schedule};
use crate::tir::Op;

pub fn run(cx: &Ctx, s: &mut Schedule) {
    for inst in cx.facts.insts() {
        if let Op::Reduce { x, axis, .. } = &inst.op {
            if let Some(d) = s.dist(*x) {
                let axis = d.tile_axis(cx.facts.kernel.ty(*x).shape.len(), *axis);
                let plan = ReducePlan {
                    shuffles: d.lane_bits_along(axis),
                    warp_bits: d.warp_bits_along(axis),
                };
                s.reduces.insert(inst.results[0], plan);
            }
        }
    }
}
