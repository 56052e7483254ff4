//! Overlapping the tensor cores with the next copies: which wgmma batches stay in flight.
//!
//! Writes a wgmma plan's `wait` and its pipeline's `stages` and `ahead`.
//!
//! A wgmma batch reads its operand slots after it is issued, until `wgmma.wait_group` retires
//! it. Waiting to 0 right after each commit leaves the tensor cores idle while the next
//! iteration waits for its copies and passes its barrier; waiting to `d` (the strategy's
//! [`dots_in_flight`](super::Strategy::dots_in_flight)) keeps the last `d` batches running
//! through that. Those batches still read the `d` slots before this iteration's, so the copies
//! issued at the top of an iteration may only refill a slot `ahead` ≤ `stages - 1 - d` ahead.
//! The ring grows by `d` slots when shared memory holds them (the copies stay `@stages - 1`
//! ahead, as the hint asks); otherwise the copies come `d` iterations closer.
//!
//! A dot overlaps when it sits directly in a pipelined loop, both its operands are that loop's
//! prefetched loads, and its accumulator is only carried: the loop argument it accumulates into
//! is read by this dot alone, its result only by the loop's `yield` into that argument, both in
//! one f32 layout (no conversion reads the registers while they are being written). The
//! lowering then waits to 0 after the loop, before the results are read. A dot reading A from
//! registers never stays in flight: the next iteration would rewrite the registers the batch
//! may still read (flash attention's P). Flash's S = Q·Kᵀ waits to 0 too: the softmax reads it
//! in the same iteration.

use super::{Ctx, DotUnit, Operand, Schedule};
use crate::tir::facts::Facts;
use crate::tir::{DType, Op, ValueId};

pub fn run(cx: &Ctx, s: &mut Schedule) {
    let depth = cx.strategy.dots_in_flight();
    if depth == 0 {
        return;
    }
    let mut loops: Vec<ValueId> = s.pipelines.keys().copied().collect();
    loops.sort();
    for lp in loops {
        let Some(dots) = overlapping(&cx.facts, s, lp) else {
            continue;
        };
        let p = &s.pipelines[&lp];
        let slot: usize = p.loads.iter().map(|v| s.staged[v].tile.bytes()).sum();
        let align = cx.strategy.shared_align();
        let fits =
            shared_upper_bound(s, align) + depth * slot <= cx.target.max_shared_bytes as usize;
        let p = s.pipelines.get_mut(&lp).expect("listed above");
        if fits {
            p.stages += depth;
        } else if p.ahead > depth {
            p.ahead -= depth;
        } else {
            continue;
        }
        for r in dots {
            if let Some(DotUnit::Wgmma(w)) = s.dots.get_mut(&r).map(|d| &mut d.unit) {
                w.wait = depth;
            }
        }
    }
}

/// The wgmma dots reading loop `lp`'s slots, when every one of them may stay in flight.
fn overlapping(facts: &Facts, s: &Schedule, lp: ValueId) -> Option<Vec<ValueId>> {
    let loads = &s.pipelines[&lp].loads;
    let mut dots = Vec::new();
    for (&r, plan) in &s.dots {
        let reads_ring = [&plan.a, &plan.b].iter().any(
            |o| matches!(o, Operand::Smem { value, staged: true, .. } if loads.contains(value)),
        );
        if !reads_ring {
            continue;
        }
        let own = [&plan.a, &plan.b].iter().all(
            |o| matches!(o, Operand::Smem { value, staged: true, .. } if loads.contains(value)),
        );
        let ok = matches!(plan.unit, DotUnit::Wgmma(_))
            && own
            && facts.loop_of(r) == Some(lp)
            && only_carried(facts, s, lp, r);
        if !ok {
            return None;
        }
        dots.push(r);
    }
    dots.sort();
    (!dots.is_empty()).then_some(dots)
}

/// Whether the accumulator of dot `r` in loop `lp` is only carried from one iteration's dot to
/// the next: its loop argument read by `r` alone, `r` read only by the yield into that argument,
/// both f32 in one layout.
pub(super) fn only_carried(facts: &Facts, s: &Schedule, lp: ValueId, r: ValueId) -> bool {
    let Some(Op::Dot { acc: Some(c), .. }) = facts.def(r) else {
        return false;
    };
    let Some(body) = facts.insts().find_map(|i| match &i.op {
        Op::For { body, .. } if body.args.first() == Some(&lp) => Some(body),
        _ => None,
    }) else {
        return false;
    };
    let Some(arg) = body.args.iter().skip(1).position(|a| a == c) else {
        return false;
    };
    let Some(Op::Yield(ys)) = body.insts.last().map(|i| &i.op) else {
        return false;
    };
    let read_by = |v: ValueId, f: &dyn Fn(&Op) -> bool| {
        let mut uses = facts.uses(v);
        uses.next().is_some_and(|(_, u)| f(&u.inst.op)) && uses.next().is_none()
    };
    let same_layout = match (s.dist(*c), s.dist(r)) {
        (Some(x), Some(y)) => x.same_placement(y),
        _ => false,
    };
    let k = facts.kernel;
    ys.get(arg) == Some(&r)
        && read_by(
            *c,
            &|op| matches!(op, Op::Dot { acc: Some(a), .. } if a == c),
        )
        && read_by(r, &|op| matches!(op, Op::Yield(_)))
        && k.ty(*c).dtype == DType::F32
        && k.ty(r).dtype == DType::F32
        && same_layout
}

/// Shared bytes the schedule needs at most: every staged buffer on its own, aligned, and the
/// scratch region (the allocator may overlap buffers that are not live at once).
fn shared_upper_bound(s: &Schedule, align: usize) -> usize {
    let slots = |v: &ValueId| {
        s.staged[v]
            .pipelined
            .map_or(1, |lp| s.pipelines[&lp].stages)
    };
    let staged: usize = s
        .staged
        .iter()
        .map(|(v, st)| (st.tile.bytes() * slots(v)).div_ceil(align) * align)
        .sum();
    staged + s.scratch_bytes.div_ceil(16) * 16
}
