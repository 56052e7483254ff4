//! The target features the schedule's instructions need, for the backend to ask of the target
//! table before LLVM is called.
//!
//! Writes `features`.

use super::{Copy, Ctx, DotUnit, Schedule};
use crate::tir::DType;
use crate::Feature;

pub fn run(cx: &Ctx, s: &mut Schedule) {
    let mut features = Vec::new();
    if cx.facts.kernel.types.iter().any(|t| t.dtype == DType::Bf16) {
        features.push(Feature::Bf16);
    }
    if s.dots.values().any(|d| matches!(d.unit, DotUnit::Wgmma(_))) {
        features.push(Feature::Wgmma);
    }
    if s.dots.values().any(|d| d.unit == DotUnit::Mma) {
        features.push(Feature::MmaSync);
        features.push(Feature::Ldmatrix);
    }
    if s.staged.values().any(|st| st.copy == Copy::Async) {
        features.push(Feature::CpAsync);
    }
    if !s.tensor_maps.is_empty() {
        features.push(Feature::Mbarrier);
        features.push(Feature::Tma);
    }
    s.features = features;
}
