//! Bulk tensor copies: which prefetched loads go by TMA, and the tensor maps they read through.
//!
//! Writes `staged[_].copy` (`Copy::Tma`) and `tensor_maps`. (The allocator then places each
//! pipeline's mbarriers, one per slot: [`super::alloc`].)
//!
//! On a strategy with bulk tensor copies ([`super::Strategy::tma_copies`]) a staged load goes by
//! TMA when a ring prefetches it (a slot's mbarrier is what the copy completes on), it would
//! otherwise be a 16-byte `cp.async` (fill 0, no mask: TMA fills out-of-bounds elements with
//! zeros, which is the load's meaning at the tensor's edges), its tensor is an input of rank at
//! most 5 whose last axis is contiguous whatever the call (dense, or declared stride 1 there:
//! TMA's innermost dimension has no stride), every ranged axis has step 1 (a box is dense),
//! the tile's rows fit one box (at most 256) and its panels' rows are a swizzle span (32, 64
//! or 128 bytes, the width the wgmma descriptors name). The box is one panel: a tile of several
//! panels is that many boxes side by side along the last axis, each landing in its own panel.
//!
//! What a launch must satisfy for the map to be encodable (16-byte aligned base and strides)
//! is the runtime's check, recorded with the map in the manifest.

use super::{Copy, Ctx, Schedule, TensorMap};
use crate::tir::{Io, Op, ParamKind};

/// Most dimensions a tensor map has.
pub const MAX_RANK: usize = 5;
/// Most elements of a box along one dimension.
pub const MAX_BOX: usize = 256;

pub fn run(cx: &Ctx, s: &mut Schedule) {
    if !cx.strategy.tma_copies() {
        return;
    }
    let mut loads: Vec<_> = s
        .pipelines
        .values()
        .flat_map(|p| p.loads.iter().copied())
        .collect();
    loads.sort();
    for v in loads {
        let Some(map) = tensor_map(cx, s, v) else {
            continue;
        };
        let st = s.staged.get_mut(&v).expect("a pipeline lists staged loads");
        st.copy = Copy::Tma(s.tensor_maps.len());
        s.tensor_maps.push(map);
    }
}

/// The tensor map through which staged load `v` can be copied, if it qualifies.
fn tensor_map(cx: &Ctx, s: &Schedule, v: crate::tir::ValueId) -> Option<TensorMap> {
    let st = &s.staged[&v];
    let Some(Op::Load {
        tensor,
        extents,
        steps,
        ..
    }) = cx.facts.def(v)
    else {
        return None;
    };
    let ParamKind::Tensor {
        io, dims, strides, ..
    } = &cx.facts.kernel.params[*tensor].kind
    else {
        return None;
    };
    let contiguous = strides
        .as_ref()
        .is_none_or(|st| st.last() == Some(&crate::tir::Dim::Const(1)));
    let row_bytes = st.tile.panel * st.tile.dtype.size();
    let ok = st.copy == Copy::Async
        && st.pipelined.is_some()
        && *io == Io::In
        && dims.len() <= MAX_RANK
        && contiguous
        && steps.iter().all(Option::is_none)
        && extents.last().is_some_and(Option::is_some)
        && st.tile.rows <= MAX_BOX
        && st.tile.swizzle
        && [32, 64, 128].contains(&row_bytes);
    if !ok {
        return None;
    }
    // Innermost first: the panel's columns along the last axis, the tile's rows along the other
    // ranged one, 1 along every indexed axis.
    let mut box_dims = vec![st.tile.panel];
    for e in extents.iter().rev().skip(1) {
        box_dims.push(if e.is_some() { st.tile.rows } else { 1 });
    }
    Some(TensorMap {
        load: v,
        tensor: *tensor,
        box_dims,
        swizzle: row_bytes,
        panels: st.tile.cols / st.tile.panel,
    })
}
