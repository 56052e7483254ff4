//! The block: how many warps, how they tile the kernel's dots (the frame every layout starts
//! from), and how many blocks must share an SM.
//!
//! Writes `num_warps`, `threads`, `frame`, `min_blocks_per_sm`.
//!
//! A kernel with a dot gets an mma frame: `@warps` when it tiles every dot's output (refused when
//! it does not), else the strategy's own when it fixes one (Hopper: `num_warps × 1`, each warp
//! on 16 rows of a wgmma accumulator), else `num_warps × 1` when rows are reduced (so a row never crosses warps), else the
//! split with the squarest warp tile. A kernel without a dot gets a blocked frame, and a `@warps`
//! there has nothing to tile: refused.

use super::hints::Given;
use super::{Ctx, Frame, SchedError, Schedule};
use crate::tir::{Op, ValueId};

pub fn run(cx: &Ctx, s: &mut Schedule) -> Result<(), SchedError> {
    s.num_warps = cx.hints.num_warps(&cx.target);
    s.threads = 32 * s.num_warps;
    s.min_blocks_per_sm = cx.hints.occupancy.map(|o| o.value);
    let k = cx.facts.kernel;
    let mut dots = Vec::new();
    let mut row_reductions = false;
    for inst in cx.facts.insts() {
        match &inst.op {
            Op::Dot { .. } => {
                let r = inst.results[0];
                dots.push((r, k.ty(r).shape[0], k.ty(r).shape[1]));
            }
            Op::Reduce { x, axis: 1, .. } if k.ty(*x).shape.len() == 2 => row_reductions = true,
            _ => {}
        }
    }
    s.frame = frame(cx, s.num_warps as usize, &dots, row_reductions)?;
    Ok(())
}

fn frame(
    cx: &Ctx,
    warps: usize,
    dots: &[(ValueId, usize, usize)],
    row_reductions: bool,
) -> Result<Frame, SchedError> {
    let tiles = |wm: usize, wn: usize, m: usize, n: usize| {
        m.is_multiple_of(16 * wm) && n.is_multiple_of(16 * wn)
    };
    let valid = |wm: usize, wn: usize| dots.iter().all(|&(_, m, n)| tiles(wm, wn, m, n));
    if let Some(w) = cx.hints.warps {
        return forced(cx, w, dots, tiles);
    }
    if dots.is_empty() {
        return Ok(Frame::Blocked);
    }
    if let Some(f) = cx.strategy.frame(warps) {
        return Ok(f);
    }
    if row_reductions && valid(warps, 1) {
        return Ok(Frame::Mma { wm: warps, wn: 1 });
    }
    let mut best: Option<(usize, Frame)> = None;
    let mut wn = 1;
    while wn <= warps {
        let wm = warps / wn;
        if valid(wm, wn) {
            let cost = dots
                .iter()
                .map(|&(_, m, n)| m / wm + n / wn)
                .max()
                .unwrap_or(0);
            if best.is_none_or(|(c, _)| cost < c) {
                best = Some((cost, Frame::Mma { wm, wn }));
            }
        }
        wn *= 2;
    }
    Ok(best.map(|(_, f)| f).unwrap_or(Frame::Blocked))
}

/// The frame `@warps` asks for, if it tiles every dot (the hints already checked that it tiles
/// the block's warps).
fn forced(
    cx: &Ctx,
    w: Given<(usize, usize)>,
    dots: &[(ValueId, usize, usize)],
    tiles: impl Fn(usize, usize, usize, usize) -> bool,
) -> Result<Frame, SchedError> {
    let (wm, wn) = w.value;
    let name = super::hints::Hint::Warps.spelled(w.origin);
    if dots.is_empty() {
        return Err(cx.refuse(
            format!("`{name}`"),
            "the warps tile a dot's output, and the kernel has no dot",
        ));
    }
    for &(v, m, n) in dots {
        if !tiles(wm, wn, m, n) {
            return Err(cx.refuse(
                format!("`{name}`"),
                format!(
                    "{wm} × {wn} warps cannot tile the {m}x{n} output of dot {v}: it needs rows \
                     in multiples of {} and columns in multiples of {}",
                    16 * wm,
                    16 * wn
                ),
            ));
        }
    }
    Ok(Frame::Mma { wm, wn })
}
