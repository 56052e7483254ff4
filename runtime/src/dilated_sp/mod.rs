//! Sequence-parallel dilated attention (LongNet's distributed algorithm, ALGORITHMS.md §4): the
//! sequence split over P ranks, local patterns on each rank's block, longer ones over keys
//! all-gathered among the ranks of a segment. [`plan`] says who sends, receives and attends to
//! what; it is pure (no device), shared by the GPU operator and the models' interpreter.

pub mod plan;

pub use plan::{Placement, Plan, PlanError, RankPattern};
pub mod ops;

pub use ops::{sp_backward, sp_forward, RankPackages, SequenceParallel, SpOutput};
