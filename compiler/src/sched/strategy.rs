//! The code-generation strategy: which hardware carries a kernel's dots and copies. Chosen once per
//! kernel from the target table (or forced by `--strategy`), printed in the schedule, and asked by
//! every pass that would otherwise test target features itself.
//!
//! Today there are two: `Ampere` (mma.sync.m16n8k16 with ldmatrix operands and cp.async copies:
//! every target in the table) and `Simt` (no matrix unit: dots as FMAs over shared memory, element
//! copies). A Hopper strategy (wgmma, TMA, mbarrier) is one more variant answering the same
//! questions, and the passes stay as they are.

use std::fmt;

use super::hints::HintError;
use super::{Copy, DotUnit, SmemTile};
use crate::tir::DType;
use crate::{Feature, Target};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Strategy {
    Ampere,
    Simt,
}

impl Strategy {
    /// In order of preference: a target gets the first whose features it has.
    pub const ALL: [Strategy; 2] = [Strategy::Ampere, Strategy::Simt];

    pub fn name(self) -> &'static str {
        match self {
            Strategy::Ampere => "ampere",
            Strategy::Simt => "simt",
        }
    }

    pub fn parse(name: &str) -> Option<Strategy> {
        Strategy::ALL.into_iter().find(|s| s.name() == name)
    }

    /// The target features the strategy's instructions need.
    pub fn needs(self) -> &'static [Feature] {
        match self {
            Strategy::Ampere => &[Feature::MmaSync, Feature::Ldmatrix, Feature::CpAsync],
            Strategy::Simt => &[],
        }
    }

    /// The strategy for `target`: `forced` if the target has what it needs, else the first the
    /// target supports.
    pub fn choose(target: &Target, forced: Option<Strategy>) -> Result<Strategy, HintError> {
        let fits = |s: Strategy| s.needs().iter().all(|f| target.has(*f));
        match forced {
            Some(s) if fits(s) => Ok(s),
            Some(s) => Err(HintError {
                name: "--strategy".into(),
                reason: format!(
                    "{} needs {}, which {} does not have",
                    s.name(),
                    s.needs()
                        .iter()
                        .filter(|f| !target.has(**f))
                        .map(|f| f.name())
                        .collect::<Vec<_>>()
                        .join(", "),
                    target.name
                ),
                label: "strategy the target cannot run",
            }),
            None => Ok(Strategy::ALL
                .into_iter()
                .find(|s| fits(*s))
                .unwrap_or(Strategy::Simt)),
        }
    }

    /// The unit for a dot whose operands are `a` and `b` with inner extent `k`, when the block's
    /// frame tiles its output (a dot the frame does not tile runs on FMAs whatever the strategy).
    pub fn dot_unit(self, a: DType, b: DType, k: usize) -> DotUnit {
        let sixteen = matches!(a, DType::Bf16 | DType::F16);
        match self {
            Strategy::Ampere if sixteen && a == b && k.is_multiple_of(16) => DotUnit::Mma,
            Strategy::Ampere | Strategy::Simt => DotUnit::Fma,
        }
    }

    /// How a staged load of `tile` is copied; `zero_filled` when the load reads whole rows of its
    /// tensor's innermost dimension with fill 0 and no mask, so that copying past the tensor's
    /// edge may write zeros.
    pub fn copy(self, tile: &SmemTile, zero_filled: bool) -> Copy {
        match self {
            Strategy::Ampere
                if tile.dtype.size() == 2 && zero_filled && tile.cols.is_multiple_of(8) =>
            {
                Copy::Async
            }
            Strategy::Ampere | Strategy::Simt => Copy::Sync,
        }
    }
}

impl fmt::Display for Strategy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Strategy::Ampere => f.write_str("ampere (mma.sync.m16n8k16, ldmatrix, cp.async)"),
            Strategy::Simt => f.write_str("simt (fma dots, element copies)"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_target_runs_ampere_and_may_be_forced_to_simt() {
        for t in crate::target::TARGETS {
            assert_eq!(Strategy::choose(t, None), Ok(Strategy::Ampere));
            assert_eq!(
                Strategy::choose(t, Some(Strategy::Simt)),
                Ok(Strategy::Simt)
            );
        }
        let tile = SmemTile::new(64, 64, DType::Bf16);
        assert_eq!(Strategy::Simt.copy(&tile, true), Copy::Sync);
        assert_eq!(Strategy::Ampere.copy(&tile, true), Copy::Async);
        assert_eq!(
            Strategy::Simt.dot_unit(DType::Bf16, DType::Bf16, 64),
            DotUnit::Fma
        );
    }
}
