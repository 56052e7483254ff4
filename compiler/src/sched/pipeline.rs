//! Software pipelining: which loops prefetch their staged loads `stages - 1` iterations ahead.
//!
//! Writes `pipelines` and each prefetched load's `staged[_].pipelined`. (The overlap pass may
//! later add a slot to a ring that asynchronous dots read: [`super::overlap`].)
//!
//! A staged load is prefetched by the loop around it when it is copied asynchronously, `@stages`
//! is above 1 (a depth asked for that no loop can take is refused), and its start indices can be computed for a later iteration (they depend on the
//! induction variable and loop invariants only, through scalar arithmetic).

use std::collections::HashSet;

use super::staging::staged_loads;
use super::{Ctx, Pipeline, SchedError, Schedule, Strategy};
use crate::tir::{Op, ValueId};

pub fn run(cx: &Ctx, s: &mut Schedule) -> Result<(), SchedError> {
    let stages = cx.hints.stages(&cx.target);
    for v in staged_loads(cx, s) {
        let Some(st) = s.staged.get_mut(&v) else {
            continue;
        };
        let Some(lp) = cx.facts.loop_of(v) else {
            continue;
        };
        if st.copy.is_async() && stages > 1 && starts_hoistable(cx, v, lp) {
            st.pipelined = Some(lp);
            s.pipelines
                .entry(lp)
                .or_insert_with(|| Pipeline {
                    stages,
                    ahead: stages - 1,
                    loads: Vec::new(),
                    mbarriers: None,
                })
                .loads
                .push(v);
        }
    }
    // A depth asked for (`@stages(n)`, `--stages n`) that no loop takes is a hint the compiler
    // cannot honour: refused, like the other hints, rather than silently unused. The simt
    // strategy copies nothing asynchronously, so there a depth written for the matrix-unit
    // strategies has nothing to apply to (its schedule shows no pipeline).
    match cx.hints.stages {
        Some(h) if h.value > 1 && s.pipelines.is_empty() && cx.strategy != Strategy::Simt => {
            Err(cx.refuse(
                format!("`@stages({})`", h.value),
                "no loop of this kernel prefetches a staged load (a loop around an asynchronously \
             copied dot operand whose start follows the induction variable)",
            ))
        }
        _ => Ok(()),
    }
}

/// Whether the start indices of the load `v` (in the body of loop `lp`) can be computed for a
/// later iteration.
fn starts_hoistable(cx: &Ctx, v: ValueId, lp: ValueId) -> bool {
    let Some(Op::Load { starts, steps, .. }) = cx.facts.def(v) else {
        return false;
    };
    let mut stack: Vec<ValueId> = starts
        .iter()
        .chain(steps.iter().flatten())
        .copied()
        .collect();
    let mut seen = HashSet::new();
    while let Some(x) = stack.pop() {
        if !seen.insert(x) || x == lp {
            continue;
        }
        // A value this loop carries changes every iteration, though it is defined outside.
        if cx.facts.arg_of(x) == Some(lp) {
            return false;
        }
        if cx.facts.loop_of(x) != Some(lp) {
            // Defined outside this loop (or in an enclosing one): invariant here.
            continue;
        }
        match cx.facts.def(x) {
            Some(op) if cx.facts.kernel.ty(x).numel() == 1 => match op {
                Op::Const(_)
                | Op::ProgramId(_)
                | Op::NumPrograms(_)
                | Op::DimSize { .. }
                | Op::StrideSize { .. }
                | Op::ScalarParam(_)
                | Op::Unary { .. }
                | Op::Binary { .. }
                | Op::Cmp { .. }
                | Op::Select { .. }
                | Op::Cast { .. } => stack.extend(op.operands()),
                _ => return false,
            },
            // The argument of a loop nested in this one, or a non-scalar.
            _ => return false,
        }
    }
    true
}
