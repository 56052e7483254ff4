//! The Hopper rules of the verifier: a wgmma dot's plan and tiles (**Wgmma**), and the safety of
//! a pipeline's ring of slots while dots may still be reading them (**Ring**).

use super::{ensure, Invariant, Res};
use crate::sched::layout::Dist;
use crate::sched::overlap::only_carried;
use crate::sched::wgmma::{panel, Major, Swizzle, WgmmaPlan, ATOM_BYTES};
use crate::sched::{DotPlan, DotUnit, Frame, Operand, Schedule};
use crate::tir::facts::Facts;
use crate::tir::ValueId;

pub(super) fn wgmma(s: &Schedule, r: ValueId, plan: &DotPlan, w: &WgmmaPlan) -> Res {
    let warps = s.num_warps as usize;
    let ok = warps.is_multiple_of(4)
        && s.frame == (Frame::Mma { wm: warps, wn: 1 })
        && plan.m == 64 * w.groups
        && plan.m == 16 * warps
        && w.n == plan.n
        && w.k_steps * 16 == plan.k;
    ensure(
        ok,
        Invariant::Wgmma,
        r,
        format!(
            "{w:?} cannot carry {}x{}x{} on {warps} warps",
            plan.m, plan.n, plan.k
        ),
    )?;
    // The wait depth is the ring's concern (below); everything else is fixed by the operands.
    let a_regs = matches!(plan.a, Operand::RegA { .. });
    let b_major = match plan.b {
        Operand::Smem { trans: true, .. } => Major::K,
        _ => Major::MN,
    };
    let ok = WgmmaPlan { wait: 0, ..*w } == WgmmaPlan::new(plan.m, plan.n, plan.k, b_major, a_regs);
    ensure(
        ok,
        Invariant::Wgmma,
        r,
        "descriptors not those of its tiles",
    )?;
    let acc = Dist::wgmma(plan.n, warps);
    let ok = s.dist(r).is_some_and(|d| d.same_placement(&acc));
    ensure(
        ok,
        Invariant::Wgmma,
        r,
        "output not in the wgmma accumulator layout",
    )?;
    for (o, is_a) in [(&plan.a, true), (&plan.b, false)] {
        let ok = match o {
            // Registers in the accumulator layout of K columns hold A's fragments as they are.
            Operand::RegA { value } => {
                is_a && s
                    .dist(*value)
                    .is_some_and(|d| d.same_placement(&Dist::wgmma(plan.k, warps)))
            }
            // A K-major A, or a B either way; the plan's major-ness was checked above.
            Operand::Smem {
                value,
                trans,
                staged: true,
            } if !(is_a && *trans) => s.staged.get(value).is_some_and(|st| {
                let atom = 8 * st.tile.panel * st.tile.dtype.size();
                let slot_aligned = st.tile.bytes().is_multiple_of(atom);
                st.tile.panel == panel(st.tile.cols)
                    && Swizzle::of_row(st.tile.panel * 2) != Swizzle::None
                    && st.tile.swizzle
                    && st.tile.dtype.size() == 2
                    && st.async_reads
                    && slot_aligned
                    && s.buffers
                        .get(st.buffer)
                        .is_some_and(|b| b.offset.is_multiple_of(ATOM_BYTES))
            }),
            _ => false,
        };
        ensure(
            ok,
            Invariant::Wgmma,
            r,
            format!("operand {o:?} is neither a fenced swizzled panel tile on an atom nor A's fragments"),
        )?;
    }
    Ok(())
}

/// No slot is refilled while a dot may still read it, and no accumulator is read while a batch
/// may still write it.
///
/// At the top of iteration i the copies refill slot (i + ahead) mod stages; the batches of the
/// `d` iterations before i may still be reading their slots (i − d .. i − 1), and iteration i
/// reads slot i. So 1 ≤ ahead ≤ stages − 1 − d, d the deepest wait of the dots reading the ring.
/// A dot left in flight (wait > 0) sits directly in that loop, reads only that ring's slots and
/// has its accumulator only carried from one iteration's dot to the next, so that nothing but
/// the next batch (ordered after it by the hardware) touches its registers before the wait to 0
/// after the loop.
pub(super) fn ring(facts: &Facts, s: &Schedule) -> Res {
    for (&r, plan) in &s.dots {
        let DotUnit::Wgmma(w) = plan.unit else {
            continue;
        };
        if w.wait == 0 {
            continue;
        }
        let lp = facts.loop_of(r);
        let own = lp.and_then(|lp| s.pipelines.get(&lp)).is_some_and(|p| {
            [&plan.a, &plan.b].iter().all(|o| {
                matches!(o, Operand::Smem { value, staged: true, .. } if p.loads.contains(value))
            })
        });
        ensure(
            own,
            Invariant::Ring,
            r,
            format!(
                "{} batches left in flight outside a pipeline of its own operands",
                w.wait
            ),
        )?;
        let carried = lp.is_some_and(|lp| only_carried(facts, s, lp, r));
        ensure(
            carried,
            Invariant::Ring,
            r,
            "accumulators read while its batch may be in flight",
        )?;
    }
    for (lp, p) in &s.pipelines {
        let in_flight = s
            .dots
            .values()
            .filter(|d| {
                [&d.a, &d.b]
                    .iter()
                    .any(|o| matches!(o, Operand::Smem { value, .. } if p.loads.contains(value)))
            })
            .map(|d| match d.unit {
                DotUnit::Wgmma(w) => w.wait,
                DotUnit::Mma | DotUnit::Fma => 0,
            })
            .max()
            .unwrap_or(0);
        let ok = p.ahead >= 1 && p.ahead + in_flight < p.stages;
        ensure(
            ok,
            Invariant::Ring,
            lp,
            format!(
                "copies {} ahead refill a slot of {} that one of {in_flight} batches in flight \
                 may still read",
                p.ahead, p.stages
            ),
        )?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::super::check;
    use super::*;
    use crate::sched::wgmma::Side;
    use crate::sched::{schedule, schedule_with, Layout, SchedOptions, SmemTile, Strategy};
    use crate::sema::{compile_source, Overrides};
    use crate::tir::Kernel;
    use crate::Target;

    const MATMUL: &str = include_str!("../../../../dsl-examples/matmul.tsl");
    const FLASH: &str = include_str!("../../../../dsl-examples/flash_attention.tsl");

    fn kernel(source: &str) -> Kernel {
        compile_source(source, &Overrides::new()).unwrap().remove(0)
    }

    /// `break_it` applied to the Hopper schedule of `source` on sm_90a (its forms not yet
    /// GPU-verified allowed) is refused for `invariant`.
    fn refused_on_hopper(source: &str, invariant: Invariant, break_it: impl Fn(&mut Schedule)) {
        let k = kernel(source);
        let facts = Facts::of(&k);
        let preview = SchedOptions {
            hopper_preview: true,
            ..Default::default()
        };
        let mut s = schedule_with(&k, Target::lookup("sm_90a").unwrap(), &preview).unwrap();
        assert_eq!(s.strategy, Strategy::Hopper);
        assert_eq!(check(&facts, &s), Ok(()));
        break_it(&mut s);
        let e = check(&facts, &s).expect_err("the broken schedule passes");
        assert_eq!(e.invariant, invariant, "{e:?}");
    }

    fn wgmma_plan(s: &mut Schedule) -> &mut WgmmaPlan {
        match &mut s.dots.values_mut().next().unwrap().unit {
            DotUnit::Wgmma(w) => w,
            u => panic!("{u:?}"),
        }
    }

    fn first_staged(s: &Schedule) -> ValueId {
        *s.staged.keys().min().unwrap()
    }

    #[test]
    fn wgmma() {
        let refused = |f: &dyn Fn(&mut Schedule)| refused_on_hopper(MATMUL, Invariant::Wgmma, f);
        // A descriptor that is not its tile's.
        refused(&|s| wgmma_plan(s).b.desc.lbo = 4096);
        // Not whole warpgroups, or not 64 rows each.
        refused(&|s| wgmma_plan(s).groups = 1);
        // An operand tile not in swizzled panels, or not fenced for the async proxy.
        // (B, 64x256: unpanelled, its rows are 512 bytes; A's 64 columns are one panel anyway.)
        refused(&|s| {
            let v = *s.staged.keys().max().unwrap();
            let t = &mut s.staged.get_mut(&v).unwrap().tile;
            *t = SmemTile::new(t.rows, t.cols, t.dtype);
        });
        refused(&|s| {
            let v = first_staged(s);
            s.staged.get_mut(&v).unwrap().async_reads = false;
        });
        // A buffer off a 1024-byte swizzle atom.
        refused(&|s| {
            let v = first_staged(s);
            let b = s.staged[&v].buffer;
            s.buffers[b].offset += 512;
        });
        // An output layout that is not the accumulator's.
        refused(&|s| {
            let r = *s.dots.keys().next().unwrap();
            let d = Dist::mma(128, 256, 2, 4);
            s.layouts[r.0 as usize] = Layout::Dist(d);
        });
    }

    /// The `i`-th dot of a schedule in value order.
    fn dot_mut(s: &mut Schedule, i: usize) -> &mut DotPlan {
        let mut rs: Vec<ValueId> = s.dots.keys().copied().collect();
        rs.sort();
        s.dots.get_mut(&rs[i]).unwrap()
    }

    fn plan_of(d: &mut DotPlan) -> &mut WgmmaPlan {
        match &mut d.unit {
            DotUnit::Wgmma(w) => w,
            u => panic!("{u:?}"),
        }
    }

    #[test]
    fn wgmma_k_major_b_and_register_a() {
        // flash_attention_fwd: S = Q·Kᵀ (B K-major), then P·V (A from registers). Both are read
        // in the loop (by the softmax, by the update of the output): no batch stays in flight,
        // and a plan that leaves one is refused.
        let k = kernel(FLASH);
        let preview = SchedOptions {
            hopper_preview: true,
            ..Default::default()
        };
        let s = schedule_with(&k, Target::lookup("sm_90a").unwrap(), &preview).unwrap();
        assert!(s
            .dots
            .values()
            .all(|d| matches!(d.unit, DotUnit::Wgmma(w) if w.wait == 0)));
        for i in 0..2 {
            refused_on_hopper(FLASH, Invariant::Ring, |s| plan_of(dot_mut(s, i)).wait = 1);
        }
        let refused = |f: &dyn Fn(&mut Schedule)| refused_on_hopper(FLASH, Invariant::Wgmma, f);
        // K's tile read through the N-major descriptor, or a K-major plan on a K × N tile.
        refused(&|s| plan_of(dot_mut(s, 0)).b = Side::n_major(64, 64));
        refused(&|s| {
            if let Operand::Smem { trans, .. } = &mut dot_mut(s, 0).b {
                *trans = false;
            }
        });
        // Q read transposed: wgmma's descriptor A is K-major only.
        refused(&|s| {
            if let Operand::Smem { trans, .. } = &mut dot_mut(s, 0).a {
                *trans = true;
            }
        });
        // P·V with A by descriptor while P is in registers.
        refused(&|s| plan_of(dot_mut(s, 1)).a = Some(Side::k_major(64, 64)));
        // P in registers of another layout: its registers are not A's fragments.
        refused(&|s| {
            let Operand::RegA { value } = dot_mut(s, 1).a else {
                panic!("P·V reads P from registers")
            };
            s.layouts[value.0 as usize] = Layout::Dist(Dist::mma(64, 64, 2, 2));
        });
    }

    #[test]
    fn ring() {
        let refused = |f: &dyn Fn(&mut Schedule)| refused_on_hopper(MATMUL, Invariant::Ring, f);
        // matmul keeps one batch in flight: its ring has a fourth slot, copies 2 ahead.
        let k = kernel(MATMUL);
        let s = schedule(&k, Target::lookup("sm_90a").unwrap()).unwrap();
        let p = s.pipelines.values().next().unwrap();
        assert_eq!((p.stages, p.ahead), (4, 2));
        assert!(s
            .dots
            .values()
            .all(|d| matches!(d.unit, DotUnit::Wgmma(w) if w.wait == 1)));
        // Copies 3 ahead refill the slot the batch in flight reads.
        refused(&|s| s.pipelines.values_mut().for_each(|p| p.ahead = 3));
        // Two batches in flight with the copies 2 ahead.
        refused(&|s| wgmma_plan(s).wait = 2);
        // No copies ahead at all: the iteration waits on a slot nobody filled.
        refused(&|s| s.pipelines.values_mut().for_each(|p| p.ahead = 0));
        // @stages(4) at 128x256: a fifth 48 KB slot would pass the 227 KB, so the ring keeps 4
        // slots and the copies come one iteration closer (2 ahead), the batch still in flight.
        let four = crate::sched::SchedOptions {
            stages: Some(4),
            ..Default::default()
        };
        let s = schedule_with(&k, Target::lookup("sm_90a").unwrap(), &four).unwrap();
        let p = s.pipelines.values().next().unwrap();
        assert_eq!((p.stages, p.ahead), (4, 2));
        assert!(matches!(s.dots.values().next().unwrap().unit, DotUnit::Wgmma(w) if w.wait == 1));
        // A dot whose result is read in the loop (here scaled before it is carried) may not be
        // left in flight: the overlap pass waits it to 0, and a plan that does not is refused.
        let scaled = MATMUL.replace("acc = dot(x, y, acc);", "acc = dot(x, y, acc) * 0.5;");
        assert_ne!(scaled, MATMUL);
        let k = kernel(&scaled);
        let s = schedule(&k, Target::lookup("sm_90a").unwrap()).unwrap();
        let p = s.pipelines.values().next().unwrap();
        assert_eq!((p.stages, p.ahead), (3, 2));
        refused_on_hopper(&scaled, Invariant::Ring, |s| {
            wgmma_plan(s).wait = 1;
            s.pipelines.values_mut().for_each(|p| p.ahead = 1);
        });
    }
}
