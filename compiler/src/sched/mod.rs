//! Scheduling: how the threads of a block carry a kernel's tiles.
//!
//! The scheduler is an ordered list of passes ([`schedule_with`]), each in its own file and each
//! writing its own part of the [`Schedule`]. Every pass reads the same inputs ([`Ctx`]): the facts
//! of the Tile IR (walked once, [`Facts`]), the target, the checked hints ([`Hints`]), and the
//! strategy chosen for this kernel on this target ([`Strategy`]), which a pass asks instead of
//! testing target features itself. The verifier checks the result before anything lowers it.
//!
//! The result is data, printed by `Display` (and snapshot-tested); the lowering follows it.
//! A new decision is a new pass file writing one part of the schedule, one line below, a file
//! test, and a rule in the verifier.

mod alloc;
mod block;
mod dots;
mod features;
pub mod hints;
pub mod layout;
mod layouts;
mod overlap;
mod pipeline;
mod print;
mod reduces;
mod roles;
mod schedule;
mod scratch;
mod staging;
pub mod strategy;
pub mod tma;
pub mod verify;
pub mod wgmma;

pub use alloc::{Buffer, BufferUse, MBARRIER_BYTES};
pub use hints::{HintError, Hints, SchedOptions};
pub use layout::{Coord, Dist, DistKind};
pub use schedule::{
    Copy, DotPlan, DotUnit, Frame, Layout, Operand, Pipeline, ReducePlan, SchedError, Schedule,
    SmemTile, Staging, TensorMap,
};
pub use strategy::Strategy;

use crate::tir::facts::Facts;
use crate::tir::Kernel;
use crate::Target;

/// What every pass reads.
pub struct Ctx<'k> {
    pub facts: Facts<'k>,
    pub target: Target,
    pub hints: Hints,
    pub strategy: Strategy,
}

impl Ctx<'_> {
    fn refuse(&self, op: impl Into<String>, reason: impl Into<String>) -> SchedError {
        SchedError::new(self.facts.kernel, op, reason)
    }
}

/// Decides the schedule of `kernel` on `target` with the kernel's own attributes.
pub fn schedule(kernel: &Kernel, target: Target) -> Result<Schedule, SchedError> {
    schedule_with(kernel, target, &SchedOptions::default())
}

/// Decides the schedule of `kernel` on `target`, `options` overriding the kernel's attributes.
pub fn schedule_with(
    kernel: &Kernel,
    target: Target,
    options: &SchedOptions,
) -> Result<Schedule, SchedError> {
    let hint_error = |e: HintError| SchedError::new(kernel, format!("`{}`", e.name), e.reason);
    let hints = Hints::of(kernel, options).map_err(hint_error)?;
    hints.check_target(&target).map_err(hint_error)?;
    let facts = Facts::of(kernel);
    let warps = hints.num_warps(&target) as usize;
    let hopper = wgmma::qualifies(&facts, warps, hints.warps.map(|w| w.value)).and_then(|q| {
        let asked = hints.strategy.is_some() || hints.hopper_preview;
        match wgmma::unproven(&facts) {
            Some(why) if q && !asked => Err(why),
            _ => Ok(q),
        }
    });
    let (strategy, declined) =
        Strategy::choose(&target, hints.strategy, hopper).map_err(hint_error)?;
    let cx = Ctx {
        facts,
        target,
        hints,
        strategy,
    };
    let mut s = Schedule::empty(kernel, target, strategy);
    s.declined = declined;
    // The passes in order, each with the part of the schedule it writes.
    block::run(&cx, &mut s)?; // num_warps, threads, frame, min_blocks_per_sm
    roles::run(&cx, &mut s); // roles
    dots::run(&cx, &mut s); // dots
    layouts::run(&cx, &mut s)?; // layouts
    reduces::run(&cx, &mut s); // reduces
    staging::run(&cx, &mut s); // staged
    pipeline::run(&cx, &mut s)?; // pipelines, staged[_].pipelined
    tma::run(&cx, &mut s); // staged[_].copy (TMA), tensor_maps
    scratch::run(&cx, &mut s); // conversions, scratch_bytes
    overlap::run(&cx, &mut s); // dots[_] wgmma wait, pipelines[_].stages and ahead
    alloc::run(&cx, &mut s)?; // buffers, staged[_].buffer, scratch_offset, pipelines[_].mbarriers, shared_bytes
    features::run(&cx, &mut s); // features
    verify::check(&cx.facts, &s).map_err(|e| e.into_error(kernel))?;
    Ok(s)
}
