//! The schedule verifier: runs after the last pass and before any lowering, so that a schedule the
//! lowering cannot follow is a typed error naming the kernel and the op, not wrong code.
//!
//! Invariants checked, one [`Invariant`] each:
//! - **Block**: `threads` is 32 × `num_warps`, a power of two from 1 to 32; an mma frame's
//!   `wm × wn` is `num_warps`.
//! - **Layouts**: there is one layout and one role per value; a scalar is `Uniform`; a tile is
//!   `Dist` or `Shared`; a `Dist` has the value's element count and one warp bit per bit of the
//!   warp index.
//! - **SharedOnly**: a `Shared` value is a staged load, or a transpose of a `Shared` value, and
//!   only dots (as A or B) and transposes read it: it has no registers.
//! - **Dots**: exactly the dots have plans; a plan's m, n, k are its types' extents; an mma dot
//!   has 16-bit operands of one type, k a multiple of 16, and an output the mma frame tiles; a
//!   staged operand is staged; a register operand is the A of an mma or wgmma dot in a `wm × 1`
//!   frame.
//! - **Wgmma**: a wgmma dot has B staged (stored K × N, or N × K when transposed) and A staged
//!   untransposed or in registers in the accumulator layout of its K columns; staged operands sit
//!   in panels of up to 64 columns
//!   whose rows are a swizzle mode's width, whose buffers start on 1024-byte atoms (and slots on
//!   their own atoms) and whose writers fence
//!   the async proxy; its output is in the m64nNk16 accumulator layout over the whole block
//!   ([`crate::sched::Dist::wgmma`]) in a `num_warps × 1` frame of whole warpgroups, 64 rows each; its plan's
//!   descriptors are those of its tiles (`verify/hopper.rs`).
//! - **Staging**: a staged value is a 2-D load whose tile has its shape and dtype; a `cp.async`
//!   copy moves a 16-bit tile with rows of a multiple of 8 elements, from a load whose last axis
//!   is a unit-step range (a chunk is 8 adjacent elements; rows may be any step apart).
//! - **Pipelines**: a pipeline belongs to a loop (named by its induction variable), has 2 stages
//!   or more, and prefetches exactly the staged `cp.async` and TMA loads in that loop's body that name it.
//! - **Ring**: a pipeline refills a slot only when no dot may still read it: its copies run
//!   1 ≤ `ahead` ≤ `stages` − 1 − d iterations ahead, d the most wgmma batches left in flight
//!   by a dot reading its slots; a dot left in flight sits directly in its pipeline's loop,
//!   reads only that ring, and its accumulator is only carried to the next iteration's dot
//!   (nothing reads the registers a batch may still write).
//! - **Tma**: a TMA-copied load's tensor map is its own and describes it: its tensor (an input
//!   of rank ≤ 5), one box per panel (the panel's columns innermost, the tile's rows, 1 along
//!   indexed axes, each ≤ 256) whose bytes sum to the tile's, the swizzle span a panel row on
//!   1024-byte atoms; its ring has one mbarrier per slot, past the scratch region, shared with no
//!   other ring (`verify/tma.rs`).
//! - **Buffers**: every staged value has one buffer, holding its tile once per pipeline slot,
//!   16-byte aligned; buffers live at once do not overlap; all of them end before the scratch
//!   region, which starts 16-byte aligned and ends at `shared_bytes` (or the rings' mbarriers
//!   do, after it), within the target's limit.
//! - **Scratch**: conversions are listed once each, in value order, and the scratch region holds
//!   each converted value (4 bytes an element) and each dot's operands stored there.
//! - **Reductions**: every reduction of a register tile has a plan.
//! - **Scans**: a scan's result has its operand's layout, and the scratch region holds a register
//!   tile's scan (4 bytes an element).
//! - **Features**: every feature is in the target's table, and the features name what the dots
//!   and copies use (wgmma; mma.sync and ldmatrix; cp.async).
//! - **Occupancy**: `min_blocks_per_sm`, when set, is at least 1 and within the target's limits.

use std::fmt;

mod hopper;
mod tma;
use hopper::{ring, wgmma};
use tma::tma;

use super::{Copy, DotUnit, Frame, Layout, Operand, SchedError, Schedule};
use crate::tir::facts::Facts;
use crate::tir::{DType, Kernel, Op};
use crate::Feature;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Invariant {
    Block,
    Layouts,
    SharedOnly,
    Dots,
    Wgmma,
    Staging,
    Pipelines,
    Ring,
    Tma,
    Buffers,
    Scratch,
    Reductions,
    Scans,
    Features,
    Occupancy,
}

impl fmt::Display for Invariant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Invariant::Block => "block",
            Invariant::Layouts => "layouts",
            Invariant::SharedOnly => "shared-only values",
            Invariant::Dots => "dots",
            Invariant::Wgmma => "wgmma",
            Invariant::Ring => "ring",
            Invariant::Tma => "tma",
            Invariant::Staging => "staging",
            Invariant::Pipelines => "pipelines",
            Invariant::Buffers => "buffers",
            Invariant::Scratch => "scratch",
            Invariant::Reductions => "reductions",
            Invariant::Scans => "scans",
            Invariant::Features => "features",
            Invariant::Occupancy => "occupancy",
        })
    }
}

/// An invariant the schedule breaks, at one op (a value, a loop, a buffer or the block).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Broken {
    pub invariant: Invariant,
    pub op: String,
    pub detail: String,
}

impl Broken {
    pub fn into_error(self, k: &Kernel) -> SchedError {
        let reason = format!(
            "internal error: the schedule breaks the {} invariant: {}",
            self.invariant, self.detail
        );
        SchedError {
            broken: Some(self.invariant),
            ..SchedError::new(k, self.op, reason)
        }
    }
}

type Res = Result<(), Broken>;

fn ensure(ok: bool, invariant: Invariant, op: impl fmt::Display, detail: impl Into<String>) -> Res {
    if ok {
        Ok(())
    } else {
        Err(Broken {
            invariant,
            op: op.to_string(),
            detail: detail.into(),
        })
    }
}

/// Checks every invariant of the header, in that order.
pub fn check(facts: &Facts, s: &Schedule) -> Res {
    block(s)?;
    layouts(facts, s)?;
    dots(facts, s)?;
    staging(facts, s)?;
    ring(facts, s)?;
    tma(facts, s)?;
    buffers(s)?;
    scratch(facts, s)?;
    reductions(facts, s)?;
    scans(facts, s)?;
    features(s)?;
    occupancy(s)
}

fn block(s: &Schedule) -> Res {
    let w = s.num_warps;
    let ok = (1..=32).contains(&w) && w.is_power_of_two() && s.threads == 32 * w;
    ensure(
        ok,
        Invariant::Block,
        "block",
        format!("{w} warps, {} threads", s.threads),
    )?;
    if let Frame::Mma { wm, wn } = s.frame {
        let ok = wm * wn == w as usize;
        ensure(
            ok,
            Invariant::Block,
            "block",
            format!("a {wm}x{wn} frame of {w} warps"),
        )?;
    }
    Ok(())
}

fn layouts(facts: &Facts, s: &Schedule) -> Res {
    let k = facts.kernel;
    let n = k.types.len();
    let ok = s.layouts.len() == n && s.roles.len() == n;
    ensure(
        ok,
        Invariant::Layouts,
        "kernel",
        format!("{n} values, {} layouts", s.layouts.len()),
    )?;
    for &v in facts.order() {
        let t = k.ty(v);
        let l = s.layout(v);
        let ok = match l {
            Layout::Uniform => t.numel() == 1,
            Layout::Dist(d) => {
                t.numel() > 1
                    && d.shape[0] * d.shape[1] == t.numel()
                    && 1usize << d.warp.len() == s.num_warps as usize
            }
            Layout::Shared => t.numel() > 1,
            Layout::None => false,
        };
        ensure(ok, Invariant::Layouts, v, format!("{t} laid out as {l:?}"))?;
        if *l == Layout::Shared {
            let ok = match facts.def(v) {
                Some(Op::Load { .. }) => s.staged.contains_key(&v),
                Some(Op::Trans { x }) => *s.layout(*x) == Layout::Shared,
                _ => false,
            };
            ensure(
                ok,
                Invariant::SharedOnly,
                v,
                "only in shared memory, but not staged",
            )?;
            let ok = facts.uses(v).all(|(_, u)| match &u.inst.op {
                Op::Dot { a, b, .. } => *a == v || *b == v,
                Op::Trans { .. } => true,
                _ => false,
            });
            ensure(
                ok,
                Invariant::SharedOnly,
                v,
                "only in shared memory, but read from registers",
            )?;
        }
    }
    Ok(())
}

fn dots(facts: &Facts, s: &Schedule) -> Res {
    let k = facts.kernel;
    let mut count = 0;
    for inst in facts.insts() {
        let Op::Dot { a, b, trans_a, .. } = &inst.op else {
            continue;
        };
        count += 1;
        let r = inst.results[0];
        let Some(plan) = s.dots.get(&r) else {
            return ensure(false, Invariant::Dots, r, "a dot without a plan");
        };
        let (ta, tb, tr) = (k.ty(*a), k.ty(*b), k.ty(r));
        let depth = if *trans_a { ta.shape[0] } else { ta.shape[1] };
        let ok = [plan.m, plan.n, plan.k] == [tr.shape[0], tr.shape[1], depth];
        ensure(
            ok,
            Invariant::Dots,
            r,
            format!("planned {}x{}x{}", plan.m, plan.n, plan.k),
        )?;
        if plan.unit == DotUnit::Mma {
            let framed = matches!(s.frame, Frame::Mma { wm, wn }
                if plan.m.is_multiple_of(16 * wm) && plan.n.is_multiple_of(16 * wn));
            let sixteen = matches!(ta.dtype, DType::Bf16 | DType::F16) && ta.dtype == tb.dtype;
            let ok = framed && sixteen && plan.k.is_multiple_of(16);
            ensure(
                ok,
                Invariant::Dots,
                r,
                "on mma.sync, which cannot take its shape or types",
            )?;
        }
        if let DotUnit::Wgmma(w) = plan.unit {
            wgmma(s, r, plan, &w)?;
        }
        for (o, is_a) in [(&plan.a, true), (&plan.b, false)] {
            let ok = match o {
                Operand::Smem {
                    value,
                    staged: true,
                    ..
                } => s.staged.contains_key(value),
                Operand::Smem { .. } => true,
                Operand::RegA { .. } => {
                    is_a && matches!(plan.unit, DotUnit::Mma | DotUnit::Wgmma(_))
                        && matches!(s.frame, Frame::Mma { wn: 1, .. })
                }
            };
            ensure(
                ok,
                Invariant::Dots,
                r,
                format!("operand {o:?} cannot be read so"),
            )?;
        }
    }
    ensure(
        count == s.dots.len(),
        Invariant::Dots,
        "kernel",
        format!("{count} dots, {} plans", s.dots.len()),
    )
}

fn staging(facts: &Facts, s: &Schedule) -> Res {
    let k = facts.kernel;
    for (v, st) in &s.staged {
        let t = k.ty(*v);
        let ok = matches!(facts.def(*v), Some(Op::Load { .. }))
            && t.shape == [st.tile.rows, st.tile.cols]
            && t.dtype == st.tile.dtype;
        ensure(
            ok,
            Invariant::Staging,
            v,
            format!("a {t} staged as {:?}", st.tile),
        )?;
        if st.copy == Copy::Async {
            let unit_rows = matches!(facts.def(*v), Some(Op::Load { steps, .. }) if steps.last() == Some(&None));
            let ok = st.tile.dtype.size() == 2 && st.tile.cols.is_multiple_of(8) && unit_rows;
            ensure(
                ok,
                Invariant::Staging,
                v,
                "cp.async of a tile it cannot copy",
            )?;
        }
        let ok = match st.pipelined {
            Some(lp) => s.pipelines.get(&lp).is_some_and(|p| p.loads.contains(v)),
            None => !s.pipelines.values().any(|p| p.loads.contains(v)),
        };
        ensure(
            ok,
            Invariant::Pipelines,
            v,
            "prefetched by a loop that does not list it",
        )?;
    }
    for (lp, p) in &s.pipelines {
        let ok = facts.loop_span(*lp).is_some() && p.stages >= 2;
        ensure(ok, Invariant::Pipelines, lp, format!("{} stages", p.stages))?;
        for v in &p.loads {
            let ok = s.staged.get(v).is_some_and(|st| {
                st.pipelined == Some(*lp) && st.copy.is_async() && facts.loop_of(*v) == Some(*lp)
            });
            ensure(ok, Invariant::Pipelines, v, format!("listed by loop {lp}"))?;
        }
    }
    Ok(())
}

fn buffers(s: &Schedule) -> Res {
    for (v, st) in &s.staged {
        let slots = st.pipelined.map_or(1, |lp| s.pipelines[&lp].stages);
        let ok = s.buffers.get(st.buffer).is_some_and(|b| {
            b.value == *v && b.bytes == st.tile.bytes() * slots && b.offset.is_multiple_of(16)
        });
        ensure(
            ok,
            Invariant::Buffers,
            v,
            format!("buffer {} does not hold it", st.buffer),
        )?;
    }
    for (i, a) in s.buffers.iter().enumerate() {
        let ok = s.staged.get(&a.value).is_some_and(|st| st.buffer == i)
            && a.offset + a.bytes <= s.scratch_offset;
        ensure(
            ok,
            Invariant::Buffers,
            format!("buffer {}", a.value),
            "not the staged tile's, or past the scratch region",
        )?;
        for b in &s.buffers[i + 1..] {
            let live = a.live.0 <= b.live.1 && b.live.0 <= a.live.1;
            let overlap = a.offset < b.offset + b.bytes && b.offset < a.offset + a.bytes;
            let ok = !(live && overlap);
            ensure(
                ok,
                Invariant::Buffers,
                format!("buffer {}", a.value),
                format!("overlaps buffer {} while both are live", b.value),
            )?;
        }
    }
    let ok = s.scratch_offset.is_multiple_of(16)
        && s.shared_bytes == shared_end(s)
        && s.shared_bytes <= s.target.max_shared_bytes as usize;
    ensure(
        ok,
        Invariant::Buffers,
        "shared memory",
        format!(
            "{} bytes, scratch {} at {}",
            s.shared_bytes, s.scratch_bytes, s.scratch_offset
        ),
    )
}

/// Where shared memory ends: after the scratch region, or after the last ring's mbarriers.
fn shared_end(s: &Schedule) -> usize {
    let scratch = s.scratch_offset + s.scratch_bytes;
    s.pipelines
        .values()
        .filter_map(|p| p.mbarriers.map(|at| at + 8 * p.stages))
        .fold(scratch, usize::max)
}

fn scratch(facts: &Facts, s: &Schedule) -> Res {
    let k = facts.kernel;
    let ordered = s.conversions.windows(2).all(|w| w[0] < w[1]);
    ensure(
        ordered,
        Invariant::Scratch,
        "conversions",
        "not in value order, or listed twice",
    )?;
    for (v, why) in &s.conversions {
        let ok = k.ty(*v).numel() * 4 <= s.scratch_bytes;
        ensure(
            ok,
            Invariant::Scratch,
            v,
            format!("converted ({why}) through {} bytes", s.scratch_bytes),
        )?;
    }
    for (r, plan) in &s.dots {
        let mut bytes = 0;
        for o in [&plan.a, &plan.b] {
            if let Operand::Smem {
                value,
                staged: false,
                ..
            } = o
            {
                let t = k.ty(*value);
                let dtype = match plan.unit {
                    DotUnit::Wgmma(_) | DotUnit::Mma => t.dtype,
                    DotUnit::Fma => DType::F32,
                };
                bytes += t.numel() * dtype.size();
            }
        }
        ensure(
            bytes <= s.scratch_bytes,
            Invariant::Scratch,
            r,
            format!(
                "operands of {bytes} bytes in {} bytes of scratch",
                s.scratch_bytes
            ),
        )?;
    }
    Ok(())
}

fn reductions(facts: &Facts, s: &Schedule) -> Res {
    for inst in facts.insts() {
        if let Op::Reduce { x, .. } = &inst.op {
            let r = inst.results[0];
            let ok = s.dist(*x).is_none() || s.reduces.contains_key(&r);
            ensure(
                ok,
                Invariant::Reductions,
                r,
                "a reduction across threads without a plan",
            )?;
        }
    }
    Ok(())
}

fn scans(facts: &Facts, s: &Schedule) -> Res {
    for inst in facts.insts() {
        if let Op::Scan { x, .. } = &inst.op {
            let r = inst.results[0];
            let same = match (s.layout(*x), s.layout(r)) {
                (Layout::Dist(a), Layout::Dist(b)) => a.same_placement(b),
                (a, b) => a == b,
            };
            ensure(same, Invariant::Scans, r, "a scan whose result moved")?;
            let bytes = facts.kernel.ty(*x).numel() * 4;
            let ok = s.dist(*x).is_none() || bytes <= s.scratch_bytes;
            let detail = format!("a scan of {bytes} bytes in {} of scratch", s.scratch_bytes);
            ensure(ok, Invariant::Scans, r, detail)?;
        }
    }
    Ok(())
}

fn features(s: &Schedule) -> Res {
    for f in &s.features {
        let ok = s.target.has(*f);
        ensure(
            ok,
            Invariant::Features,
            "kernel",
            format!("{f}, which {} lacks", s.target.name),
        )?;
    }
    let used = [
        (
            s.dots.values().any(|d| matches!(d.unit, DotUnit::Wgmma(_))),
            Feature::Wgmma,
        ),
        (
            s.dots.values().any(|d| d.unit == DotUnit::Mma),
            Feature::MmaSync,
        ),
        (
            s.dots.values().any(|d| d.unit == DotUnit::Mma),
            Feature::Ldmatrix,
        ),
        (
            s.staged.values().any(|st| st.copy == Copy::Async),
            Feature::CpAsync,
        ),
        (!s.tensor_maps.is_empty(), Feature::Tma),
        (!s.tensor_maps.is_empty(), Feature::Mbarrier),
    ];
    for (uses, f) in used {
        let ok = !uses || s.features.contains(&f);
        ensure(
            ok,
            Invariant::Features,
            "kernel",
            format!("uses {f} without naming it"),
        )?;
    }
    Ok(())
}

fn occupancy(s: &Schedule) -> Res {
    let Some(n) = s.min_blocks_per_sm else {
        return Ok(());
    };
    let t = &s.target;
    let ok = n >= 1 && n <= t.max_blocks_per_sm && n * s.threads <= t.max_threads_per_sm;
    ensure(
        ok,
        Invariant::Occupancy,
        "block",
        format!("{n} blocks of {} threads per SM", s.threads),
    )
}

#[cfg(test)]
mod tests;
