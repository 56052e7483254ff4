//! The TMA rule of the verifier (**Tma**): every bulk tensor copy has a tensor map that writes
//! exactly its tile, and a ring slot's mbarrier to complete on.
//!
//! The lowering issues, per slot fill, one `mbarrier.arrive.expect_tx` of the bytes of every
//! TMA load of the ring and then each load's boxes; every thread waits on the slot's phase
//! before reading it. That is correct when the boxes deliver exactly the bytes announced (so
//! the phase completes once per fill, never early or never), when each box lands in its own
//! panel in the swizzle the wgmma descriptors name, and when a slot is refilled only after
//! every thread has waited on its previous fill (the Ring rule: copies at most `stages - 1`
//! ahead), so that a slot's barrier is at most one phase ahead of its readers and the parity
//! (iteration / stages) mod 2 names the fill they want.

use super::{ensure, Invariant, Res};
use crate::sched::tma::{MAX_BOX, MAX_RANK};
use crate::sched::wgmma::ATOM_BYTES;
use crate::sched::MBARRIER_BYTES;
use crate::sched::{Copy, Schedule};
use crate::tir::facts::Facts;
use crate::tir::{Io, Op, ParamKind};

pub(super) fn tma(facts: &Facts, s: &Schedule) -> Res {
    let k = facts.kernel;
    let mut used = vec![0; s.tensor_maps.len()];
    for (v, st) in &s.staged {
        let Copy::Tma(i) = st.copy else {
            continue;
        };
        let Some(m) = s.tensor_maps.get(i) else {
            return ensure(
                false,
                Invariant::Tma,
                v,
                format!("tensor map {i} does not exist"),
            );
        };
        used[i] += 1;
        let (tensor, extents) = match facts.def(*v) {
            Some(Op::Load {
                tensor, extents, ..
            }) => (*tensor, extents.clone()),
            _ => (usize::MAX, Vec::new()),
        };
        let rank = match &k.params.get(tensor).map(|p| &p.kind) {
            Some(ParamKind::Tensor { dims, io, .. }) if *io == Io::In => dims.len(),
            _ => 0,
        };
        let t = &st.tile;
        let es = t.dtype.size();
        let ok = m.load == *v
            && m.tensor == tensor
            && (1..=MAX_RANK).contains(&rank)
            && m.box_dims.len() == rank
            && extents.len() == rank
            && m.box_dims.iter().all(|&b| (1..=MAX_BOX).contains(&b));
        ensure(
            ok,
            Invariant::Tma,
            v,
            format!("tensor map {i} {m:?} does not describe its load"),
        )?;
        // The box is one panel of the tile: its columns innermost, the tile's rows along the
        // other ranged axis, 1 along the indexed ones; the panels fill the tile's columns.
        let rows_ok = extents
            .iter()
            .rev()
            .skip(1)
            .zip(&m.box_dims[1..])
            .all(|(e, &b)| b == if e.is_some() { t.rows } else { 1 });
        let ok = m.box_dims[0] == t.panel
            && rows_ok
            && m.panels * t.panel == t.cols
            && m.panels * m.box_bytes(t.dtype) == t.bytes();
        ensure(
            ok,
            Invariant::Tma,
            v,
            format!(
                "tensor map {i}: {} boxes of {:?} for a {t:?}",
                m.panels, m.box_dims
            ),
        )?;
        // TMA's swizzle is the staging's only when a panel row is the swizzle span and every
        // box starts on a swizzle atom.
        let slot_ok = s.buffers.get(st.buffer).is_some_and(|b| {
            b.offset.is_multiple_of(ATOM_BYTES) && t.bytes().is_multiple_of(ATOM_BYTES)
        });
        let ok = t.swizzle
            && m.swizzle == t.panel * es
            && [32, 64, 128].contains(&m.swizzle)
            && (t.rows * t.panel * es).is_multiple_of(ATOM_BYTES)
            && slot_ok;
        ensure(
            ok,
            Invariant::Tma,
            v,
            format!("a {}-byte TMA swizzle into {t:?}", m.swizzle),
        )?;
        let ring = st.pipelined.and_then(|lp| s.pipelines.get(&lp));
        let ok = ring.is_some_and(|p| p.mbarriers.is_some());
        ensure(
            ok,
            Invariant::Tma,
            v,
            "a TMA copy with no ring slot mbarrier",
        )?;
    }
    let ok = used.iter().all(|&n| n == 1);
    ensure(ok, Invariant::Tma, "tensor maps", "each is one TMA load's")?;
    // Every ring with TMA loads has `stages` mbarriers of its own, past the scratch region.
    let mut regions = Vec::new();
    for (lp, p) in &s.pipelines {
        let tma = p.loads.iter().any(|v| {
            s.staged
                .get(v)
                .is_some_and(|st| matches!(st.copy, Copy::Tma(_)))
        });
        let ok = match p.mbarriers {
            Some(at) => {
                regions.push((at, at + MBARRIER_BYTES * p.stages));
                tma && at.is_multiple_of(MBARRIER_BYTES)
                    && at >= s.scratch_offset + s.scratch_bytes
                    && at + MBARRIER_BYTES * p.stages <= s.shared_bytes
            }
            None => !tma,
        };
        ensure(
            ok,
            Invariant::Tma,
            lp,
            format!("mbarriers {:?} for {} slots", p.mbarriers, p.stages),
        )?;
    }
    regions.sort();
    let ok = regions.windows(2).all(|w| w[0].1 <= w[1].0);
    ensure(ok, Invariant::Tma, "mbarriers", "two rings share one")
}

#[cfg(test)]
mod tests {
    use super::super::check;
    use super::*;
    use crate::sched::{schedule, schedule_with, SchedOptions, Strategy};
    use crate::sema::{compile_source, Overrides};
    use crate::Target;

    const MATMUL: &str = include_str!("../../../../dsl-examples/matmul.tsl");

    /// `break_it` applied to matmul's Hopper schedule on sm_90a is refused for the TMA rule.
    fn refused(break_it: impl Fn(&mut Schedule)) {
        let k = compile_source(MATMUL, &Overrides::new()).unwrap().remove(0);
        let facts = Facts::of(&k);
        let mut s = schedule(&k, Target::lookup("sm_90a").unwrap()).unwrap();
        assert_eq!(check(&facts, &s), Ok(()));
        break_it(&mut s);
        let e = check(&facts, &s).expect_err("the broken schedule passes");
        assert_eq!(e.invariant, Invariant::Tma, "{e:?}");
    }

    fn b_map(s: &mut Schedule) -> &mut crate::sched::TensorMap {
        s.tensor_maps.iter_mut().find(|m| m.panels == 4).unwrap()
    }

    #[test]
    fn matmul_copies_both_operands_by_tma_on_sm_90a_only() {
        let k = compile_source(MATMUL, &Overrides::new()).unwrap().remove(0);
        let s = schedule(&k, Target::lookup("sm_90a").unwrap()).unwrap();
        assert!(s.staged.values().all(|st| matches!(st.copy, Copy::Tma(_))));
        // A: one 64x128 box (columns innermost); B: four 64x64 boxes, one per panel.
        let boxes: Vec<_> = s
            .tensor_maps
            .iter()
            .map(|m| (m.box_dims.clone(), m.panels))
            .collect();
        assert_eq!(boxes, [(vec![64, 128], 1), (vec![64, 64], 4)]);
        let p = s.pipelines.values().next().unwrap();
        assert_eq!(p.mbarriers, Some(196608));
        assert_eq!(s.shared_bytes, 196608 + 8 * p.stages);
        // Off Hopper (sm_90, or Ampere forced on sm_90a) nothing changes: cp.async, no maps.
        let ampere = SchedOptions {
            strategy: Some(Strategy::Ampere),
            ..Default::default()
        };
        for s in [
            schedule(&k, Target::lookup("sm_90").unwrap()).unwrap(),
            schedule_with(&k, Target::lookup("sm_90a").unwrap(), &ampere).unwrap(),
        ] {
            assert!(s.tensor_maps.is_empty());
            assert!(s.staged.values().all(|st| st.copy == Copy::Async));
            assert!(s.pipelines.values().all(|p| p.mbarriers.is_none()));
        }
    }

    #[test]
    fn broken_maps_and_rings_are_refused() {
        // A box that delivers other bytes than the tile holds (the phase would never complete).
        refused(|s| b_map(s).box_dims[1] = 32);
        refused(|s| b_map(s).panels = 2);
        // A swizzle other than the descriptors' (TMA would write another pattern).
        refused(|s| b_map(s).swizzle = 64);
        // A map of another tensor, or two loads through one map.
        refused(|s| b_map(s).tensor = 2);
        refused(|s| {
            for st in s.staged.values_mut() {
                st.copy = Copy::Tma(0);
            }
        });
        // A box past TMA's 256 elements.
        refused(|s| s.tensor_maps[0].box_dims[1] = 512);
        // A ring without mbarriers, or with them inside the staged buffers.
        refused(|s| s.pipelines.values_mut().for_each(|p| p.mbarriers = None));
        refused(|s| {
            s.pipelines
                .values_mut()
                .for_each(|p| p.mbarriers = Some(1024))
        });
    }
}
