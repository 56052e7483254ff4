//! Dots: which unit runs each, and where its operands come from.
//!
//! Writes `dots`.
//!
//! A dot whose output the mma frame tiles runs on the unit the strategy picks for its operand types;
//! any other on FMAs. An operand that is a load (through any transposes) is read from its staged
//! tile; an A operand already in the accumulator layout of a `wm × 1` frame, computed into
//! registers, is read from there by mma.sync and wgmma alike (the same per-warp fragment); anything
//! else is stored to scratch shared memory first. A wgmma plan names B's major-ness (K-major when
//! the stored tile is the transpose of B) and whether A comes from registers.

use super::layout::Dist;
use super::layouts::Canon;
use super::wgmma::Major;
use super::{Ctx, DotPlan, DotUnit, Frame, Layout, Operand, Schedule};
use crate::tir::{Op, ValueId};

pub fn run(cx: &Ctx, s: &mut Schedule) {
    let k = cx.facts.kernel;
    let canon = Canon::new(cx, s);
    let mut dots = Vec::new();
    for inst in cx.facts.insts() {
        let Op::Dot {
            a,
            b,
            trans_a,
            trans_b,
            ..
        } = &inst.op
        else {
            continue;
        };
        let (ta, tb) = (k.ty(*a), k.ty(*b));
        let r = inst.results[0];
        let [m, n] = [k.ty(r).shape[0], k.ty(r).shape[1]];
        let kk = if *trans_a { ta.shape[0] } else { ta.shape[1] };
        let framed = matches!(s.frame, Frame::Mma { wm, wn }
            if m.is_multiple_of(16 * wm) && n.is_multiple_of(16 * wn));
        // An A operand computed into registers in the accumulator layout of a `wm × 1` frame is
        // already a matrix unit's A fragment, column block by column block.
        let a_fragment = !trans_a
            && !matches!(cx.facts.def(*a), Some(Op::Load { .. }) | None)
            && matches!((s.frame, canon.of(*a)), (Frame::Mma { wm, wn: 1 }, Ok(Layout::Dist(d)))
                if d.same_placement(&Dist::mma(m, kk, wm, 1)));
        let b_major = if peel(cx, *b, *trans_b).1 {
            Major::K
        } else {
            Major::MN
        };
        let unit = if framed {
            cx.strategy
                .dot_unit(ta.dtype, tb.dtype, [m, n, kk], b_major, a_fragment)
        } else {
            DotUnit::Fma
        };
        let operand = |x: ValueId, trans: bool, is_a: bool| {
            let (src, t) = peel(cx, x, trans);
            if matches!(cx.facts.def(src), Some(Op::Load { .. })) {
                return Operand::Smem {
                    value: src,
                    trans: t,
                    staged: true,
                };
            }
            if is_a && a_fragment && matches!(unit, DotUnit::Mma | DotUnit::Wgmma(_)) {
                return Operand::RegA { value: x };
            }
            Operand::Smem {
                value: x,
                trans,
                staged: false,
            }
        };
        let plan = DotPlan {
            unit,
            m,
            n,
            k: kk,
            a: operand(*a, *trans_a, true),
            b: operand(*b, *trans_b, false),
        };
        dots.push((r, plan));
    }
    s.dots = dots.into_iter().collect();
}

/// The value under a chain of transposes, and whether an odd number of them flips it.
fn peel(cx: &Ctx, mut v: ValueId, mut trans: bool) -> (ValueId, bool) {
    while let Some(Op::Trans { x }) = cx.facts.def(v) {
        v = *x;
        trans = !trans;
    }
    (v, trans)
}
