//! Staging: the loads that dots read from shared memory, and how each is copied there.
//!
//! Writes `staged` (each with its tile and copy; `buffer` and `pipelined` are left to the
//! allocation and pipelining passes).
//!
//! A staged tile is stored as the strategy says: row-major, 16-bit tiles XOR-swizzled by 16-byte
//! chunk ([`super::SmemTile::new`]), or for wgmma in panels of up to 64 columns (its swizzles)
//! ([`super::wgmma`]), whose generic-proxy writers fence before wgmma reads them; the strategy
//! picks the copy: `cp.async` where the tile and the load allow
//! (zero fill past the tensor's edge, no mask, the tensor's innermost dimension along the rows
//! at step 1; rows may be any step apart),
//! element copies otherwise.

use super::{Ctx, Operand, Schedule, Staging};
use crate::tir::{Op, ValueId};

pub fn run(cx: &Ctx, s: &mut Schedule) {
    for v in staged_loads(cx, s) {
        let Some(Op::Load {
            extents,
            steps,
            mask,
            fill,
            ..
        }) = cx.facts.def(v)
        else {
            continue;
        };
        let t = cx.facts.kernel.ty(v);
        let tile = cx.strategy.staged_tile(t.shape[0], t.shape[1], t.dtype);
        // A 16-byte chunk is 8 adjacent elements of a row: a step along the rows (the tensor's
        // last axis) leaves none adjacent, a step across them (every r-th row) keeps them.
        let inner_is_range = extents.last().is_some_and(|e| e.is_some())
            && steps.last().is_some_and(|s| s.is_none());
        let zero_filled = *fill == 0.0 && mask.is_none() && inner_is_range;
        let staging = Staging {
            tile,
            copy: cx.strategy.copy(&tile, zero_filled),
            async_reads: cx.strategy.async_proxy_reads(),
            buffer: usize::MAX,
            pipelined: None,
        };
        s.staged.insert(v, staging);
    }
}

/// The staged loads in the order the dots name them (dots in program order, A before B): the
/// order buffers are listed and prefetched in.
pub fn staged_loads(cx: &Ctx, s: &Schedule) -> Vec<ValueId> {
    let mut loads = Vec::new();
    for inst in cx.facts.insts() {
        let Some(plan) = inst.results.first().and_then(|r| s.dots.get(r)) else {
            continue;
        };
        for o in [&plan.a, &plan.b] {
            if let Operand::Smem {
                value,
                staged: true,
                ..
            } = o
            {
                if !loads.contains(value) {
                    loads.push(*value);
                }
            }
        }
    }
    loads
}
