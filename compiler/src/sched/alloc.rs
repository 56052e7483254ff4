//! Shared-memory allocation by liveness.
//!
//! Writes `buffers`, `staged[_].buffer`, `scratch_offset`, `pipelines[_].mbarriers` and
//! `shared_bytes`.
//!
//! Positions are program order with loop bodies inline ([`Facts`]); a buffer lives from
//! its definition to its last use, stretched to the end of every loop that re-reads it, or over
//! its whole loop when a pipeline prefetches into it. Buffers whose live ranges overlap interfere
//! (edges of a petgraph graph); each is placed, largest first, at the lowest offset of the
//! strategy's alignment (16 bytes, or 1024 for wgmma's swizzle atoms) clear of the buffers it
//! interferes with that are already placed.

use petgraph::graph::{NodeIndex, UnGraph};

use super::staging::staged_loads;
use super::{Copy, Ctx, SchedError, Schedule};

/// Bytes (and alignment) of one mbarrier object.
pub const MBARRIER_BYTES: usize = 8;
use crate::tir::facts::Facts;
use crate::tir::ValueId;

#[derive(Debug, Clone, PartialEq)]
pub struct BufferUse {
    pub value: ValueId,
    pub bytes: usize,
    /// The offset's alignment: the strategy's (a wgmma swizzle atom, or 16 bytes).
    pub align: usize,
    /// Pipelined: live for the whole of this loop (named by its induction variable).
    pub whole_loop: Option<ValueId>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Buffer {
    pub value: ValueId,
    pub bytes: usize,
    pub offset: usize,
    /// Program positions [first, last].
    pub live: (usize, usize),
}

/// Places the staged buffers (one slot per pipeline stage), then the scratch region after them,
/// and refuses a schedule that needs more shared memory than the target has.
pub fn run(cx: &Ctx, s: &mut Schedule) -> Result<(), SchedError> {
    let uses: Vec<BufferUse> = staged_loads(cx, s)
        .iter()
        .map(|v| {
            let st = &s.staged[v];
            BufferUse {
                value: *v,
                bytes: st.tile.bytes() * st.pipelined.map_or(1, |lp| s.pipelines[&lp].stages),
                align: cx.strategy.shared_align(),
                whole_loop: st.pipelined,
            }
        })
        .collect();
    let (buffers, staged_bytes) = allocate(&cx.facts, &uses);
    for (i, b) in buffers.iter().enumerate() {
        if let Some(st) = s.staged.get_mut(&b.value) {
            st.buffer = i;
        }
    }
    s.buffers = buffers;
    s.scratch_offset = staged_bytes.div_ceil(16) * 16;
    s.shared_bytes = s.scratch_offset + s.scratch_bytes;
    // Each ring with TMA loads gets one 8-byte mbarrier per slot after the scratch region, live
    // for the whole kernel (re-initialised each time its loop is entered).
    let mut rings: Vec<_> = s.pipelines.keys().copied().collect();
    rings.sort();
    for lp in rings {
        let p = s.pipelines.get_mut(&lp).expect("listed above");
        let tma = p
            .loads
            .iter()
            .any(|v| matches!(s.staged[v].copy, Copy::Tma(_)));
        if tma {
            let at = s.shared_bytes.div_ceil(MBARRIER_BYTES) * MBARRIER_BYTES;
            p.mbarriers = Some(at);
            s.shared_bytes = at + MBARRIER_BYTES * p.stages;
        }
    }
    let target = &cx.target;
    if s.shared_bytes > target.max_shared_bytes as usize {
        return Err(cx.refuse(
            "shared memory",
            format!(
                "{} bytes needed, {} allows {}; lower @stages or the block tile",
                s.shared_bytes, target.name, target.max_shared_bytes
            ),
        ));
    }
    Ok(())
}

/// A buffer's live range in program positions: from its definition to its last use, a use inside
/// a loop that the definition is outside of standing for the whole loop.
fn live_range(facts: &Facts, u: &BufferUse) -> (usize, usize) {
    if let Some(span) = u.whole_loop.and_then(|l| facts.loop_span(l)) {
        return (span.start, span.end);
    }
    let def = facts.def_position(u.value);
    let mut end = def;
    for (at, user) in facts.uses(u.value) {
        let mut e = at;
        for l in &user.loops {
            if let Some(span) = facts.loop_span(*l) {
                if def < span.start {
                    e = e.max(span.end);
                    break;
                }
            }
        }
        end = end.max(e);
    }
    (def, end)
}

/// Places `uses` in shared memory; returns the buffers and the bytes they span.
fn allocate(facts: &Facts, uses: &[BufferUse]) -> (Vec<Buffer>, usize) {
    let live: Vec<(usize, usize)> = uses.iter().map(|u| live_range(facts, u)).collect();
    let mut g: UnGraph<usize, ()> = UnGraph::new_undirected();
    let nodes: Vec<NodeIndex> = (0..uses.len()).map(|i| g.add_node(i)).collect();
    for i in 0..uses.len() {
        for j in i + 1..uses.len() {
            let (a, b) = (live[i], live[j]);
            if a.0 <= b.1 && b.0 <= a.1 {
                g.add_edge(nodes[i], nodes[j], ());
            }
        }
    }
    let mut order: Vec<usize> = (0..uses.len()).collect();
    order.sort_by_key(|&i| (std::cmp::Reverse(uses[i].bytes), uses[i].value));
    let mut offsets: Vec<Option<usize>> = vec![None; uses.len()];
    for &i in &order {
        let mut taken: Vec<(usize, usize)> = g
            .neighbors(nodes[i])
            .filter_map(|n| {
                let j = g[n];
                offsets[j].map(|o| (o, o + uses[j].bytes))
            })
            .collect();
        taken.sort();
        let mut at = 0;
        for (s, e) in taken {
            if at + uses[i].bytes <= s {
                break;
            }
            at = at.max(e.div_ceil(uses[i].align) * uses[i].align);
        }
        offsets[i] = Some(at);
    }
    let buffers: Vec<Buffer> = uses
        .iter()
        .enumerate()
        .map(|(i, u)| Buffer {
            value: u.value,
            bytes: u.bytes,
            offset: offsets[i].unwrap_or(0),
            live: live[i],
        })
        .collect();
    let end = buffers
        .iter()
        .map(|b| b.offset + b.bytes)
        .max()
        .unwrap_or(0);
    (buffers, end)
}
