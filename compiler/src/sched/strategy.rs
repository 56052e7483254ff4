//! The code-generation strategy: which hardware carries a kernel's dots and copies. Chosen once per
//! kernel from the target table (or forced by `--strategy`), printed in the schedule, and asked by
//! every pass that would otherwise test target features itself.
//!
//! There are three: `Hopper` (wgmma.mma_async with B, and A unless it is in registers, in
//! swizzled shared tiles, TMA
//! copies into mbarrier rings where they qualify ([`super::tma`]), cp.async otherwise: sm_90a,
//! for a kernel whose every dot qualifies, [`super::wgmma`]),
//! `Ampere` (mma.sync.m16n8k16 with ldmatrix operands and cp.async copies: every target in the
//! table) and `Simt` (no matrix unit: dots as FMAs over shared memory, element copies). Hopper is
//! chosen per kernel, the others per target; a kernel Hopper cannot carry stays on Ampere, and the
//! schedule says why.

use std::fmt;

use super::hints::HintError;
use super::wgmma::{Major, WgmmaPlan, ATOM_BYTES, PANEL};
use super::{Copy, DotUnit, Frame, SmemTile};
use crate::tir::DType;
use crate::{Feature, Target};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Strategy {
    Hopper,
    Ampere,
    Simt,
}

impl Strategy {
    /// In order of preference: a kernel gets the first whose features its target has (Hopper
    /// only when the kernel qualifies).
    pub const ALL: [Strategy; 3] = [Strategy::Hopper, Strategy::Ampere, Strategy::Simt];

    pub fn name(self) -> &'static str {
        match self {
            Strategy::Hopper => "hopper",
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
            Strategy::Hopper => &[
                Feature::Wgmma,
                Feature::CpAsync,
                Feature::Tma,
                Feature::Mbarrier,
            ],
            Strategy::Ampere => &[Feature::MmaSync, Feature::Ldmatrix, Feature::CpAsync],
            Strategy::Simt => &[],
        }
    }

    /// The strategy for a kernel on `target`: `forced` if the target has what it needs (and,
    /// for Hopper, the kernel qualifies), else the first the target supports, Hopper only when
    /// `hopper` (the kernel's qualification: its dots all fit, `Ok(false)` when it has none) is
    /// `Ok(true)`. With the choice comes why Hopper was passed over on a target that has it,
    /// for the schedule's strategy line.
    pub fn choose(
        target: &Target,
        forced: Option<Strategy>,
        hopper: Result<bool, String>,
    ) -> Result<(Strategy, Option<String>), HintError> {
        let fits = |s: Strategy| s.needs().iter().all(|f| target.has(*f));
        let refuse = |s: Strategy, reason: String| HintError {
            name: "--strategy".into(),
            reason: format!("{} {reason}", s.name()),
            label: "strategy the target cannot run",
        };
        match forced {
            Some(s) if !fits(s) => Err(refuse(
                s,
                format!(
                    "needs {}, which {} does not have",
                    s.needs()
                        .iter()
                        .filter(|f| !target.has(**f))
                        .map(|f| f.name())
                        .collect::<Vec<_>>()
                        .join(", "),
                    target.name
                ),
            )),
            Some(Strategy::Hopper) => match hopper {
                Ok(true) => Ok((Strategy::Hopper, None)),
                Ok(false) => Err(refuse(
                    Strategy::Hopper,
                    "runs dots, and the kernel has none".into(),
                )),
                Err(why) => Err(refuse(
                    Strategy::Hopper,
                    format!("cannot carry the kernel: {why}"),
                )),
            },
            Some(s) => Ok((s, None)),
            None => {
                let declined = match (&hopper, fits(Strategy::Hopper)) {
                    (Ok(true), true) => return Ok((Strategy::Hopper, None)),
                    (Err(why), true) => Some(why.clone()),
                    _ => None,
                };
                let s = Strategy::ALL[1..]
                    .iter()
                    .copied()
                    .find(|s| fits(*s))
                    .unwrap_or(Strategy::Simt);
                Ok((s, declined))
            }
        }
    }

    /// The frame the strategy's dots need, if it fixes one: a wgmma accumulator gives each warp
    /// 16 consecutive rows of the whole width.
    pub fn frame(self, warps: usize) -> Option<Frame> {
        match self {
            Strategy::Hopper => Some(Frame::Mma { wm: warps, wn: 1 }),
            Strategy::Ampere | Strategy::Simt => None,
        }
    }

    /// The unit for an `m × n × k` dot whose operands are `a` and `b`, when the block's frame
    /// tiles its output (a dot the frame does not tile runs on FMAs whatever the strategy); B
    /// stored `b_major`, A read from registers when `a_in_registers`.
    pub fn dot_unit(
        self,
        a: DType,
        b: DType,
        [m, n, k]: [usize; 3],
        b_major: Major,
        a_in_registers: bool,
    ) -> DotUnit {
        let sixteen = matches!(a, DType::Bf16 | DType::F16);
        match self {
            // Every dot of a Hopper kernel qualified before the strategy was chosen.
            Strategy::Hopper => DotUnit::Wgmma(WgmmaPlan::new(m, n, k, b_major, a_in_registers)),
            Strategy::Ampere if sixteen && a == b && k.is_multiple_of(16) => DotUnit::Mma,
            Strategy::Ampere | Strategy::Simt => DotUnit::Fma,
        }
    }

    /// The shared tile a staged dot operand of `rows × cols` is stored in: wgmma reads 64-column
    /// panels in the swizzle its descriptors name, the others row-major tiles.
    pub fn staged_tile(self, rows: usize, cols: usize, dtype: DType) -> SmemTile {
        match self {
            Strategy::Hopper => SmemTile::panelled(rows, cols, dtype, PANEL),
            Strategy::Ampere | Strategy::Simt => SmemTile::new(rows, cols, dtype),
        }
    }

    /// The alignment of staged buffers and of the shared array: a swizzle atom for wgmma (its
    /// descriptors carry no base offset), 16 bytes for 16-byte copies otherwise.
    pub fn shared_align(self) -> usize {
        match self {
            Strategy::Hopper => ATOM_BYTES,
            Strategy::Ampere | Strategy::Simt => 16,
        }
    }

    /// Dot batches the strategy keeps in flight while the next iteration's copies are issued:
    /// wgmma is asynchronous, so one batch may still read its slots when the next one is issued
    /// (`wgmma.wait_group 1`); mma.sync and FMAs finish before the next instruction.
    pub fn dots_in_flight(self) -> usize {
        match self {
            Strategy::Hopper => 1,
            Strategy::Ampere | Strategy::Simt => 0,
        }
    }

    /// Whether prefetched tiles may be copied by TMA (`cp.async.bulk.tensor`, completing on an
    /// mbarrier per ring slot): one thread issues a whole tile, the hardware computes its
    /// addresses and swizzle, and the other threads' registers stay free of copy addressing.
    pub fn tma_copies(self) -> bool {
        matches!(self, Strategy::Hopper)
    }

    /// Whether staged tiles are read by the async proxy (wgmma), so that the threads that wrote
    /// them through the generic proxy (cp.async, st.shared) fence before the barrier.
    pub fn async_proxy_reads(self) -> bool {
        matches!(self, Strategy::Hopper)
    }

    /// How a staged load of `tile` is copied; `zero_filled` when the load reads whole rows of its
    /// tensor's innermost dimension with fill 0 and no mask, so that copying past the tensor's
    /// edge may write zeros.
    pub fn copy(self, tile: &SmemTile, zero_filled: bool) -> Copy {
        match self {
            Strategy::Hopper | Strategy::Ampere
                if tile.dtype.size() == 2 && zero_filled && tile.cols.is_multiple_of(8) =>
            {
                Copy::Async
            }
            Strategy::Hopper | Strategy::Ampere | Strategy::Simt => Copy::Sync,
        }
    }
}

impl fmt::Display for Strategy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Strategy::Hopper => f.write_str(
                "hopper (wgmma.mma_async m64nNk16 from swizzled shared tiles, TMA or cp.async)",
            ),
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
        let no = || Err("dot %3: f32 × f32 operands".to_string());
        for t in crate::target::TARGETS {
            let (s, declined) = Strategy::choose(t, None, no()).unwrap();
            assert_eq!(s, Strategy::Ampere);
            // Only a target that could run Hopper says why it did not.
            assert_eq!(declined.is_some(), t.has(Feature::Wgmma), "{}", t.name);
            // A kernel without dots has nothing to say about wgmma.
            assert_eq!(
                Strategy::choose(t, None, Ok(false)),
                Ok((Strategy::Ampere, None))
            );
            assert_eq!(
                Strategy::choose(t, Some(Strategy::Simt), Ok(true)),
                Ok((Strategy::Simt, None))
            );
        }
        let tile = SmemTile::new(64, 64, DType::Bf16);
        assert_eq!(Strategy::Simt.copy(&tile, true), Copy::Sync);
        assert_eq!(Strategy::Ampere.copy(&tile, true), Copy::Async);
        assert_eq!(
            Strategy::Simt.dot_unit(DType::Bf16, DType::Bf16, [64, 64, 64], Major::MN, false),
            DotUnit::Fma
        );
    }

    #[test]
    fn hopper_is_chosen_per_kernel_on_sm_90a_only() {
        let [sm80, sm90, sm90a] = ["sm_80", "sm_90", "sm_90a"].map(|n| Target::lookup(n).unwrap());
        assert_eq!(
            Strategy::choose(&sm90a, None, Ok(true)),
            Ok((Strategy::Hopper, None))
        );
        for t in [sm80, sm90] {
            assert_eq!(
                Strategy::choose(&t, None, Ok(true)),
                Ok((Strategy::Ampere, None))
            );
            assert!(Strategy::choose(&t, Some(Strategy::Hopper), Ok(true)).is_err());
        }
        // A hint forces either way; forcing Hopper on a kernel it cannot carry is refused.
        assert_eq!(
            Strategy::choose(&sm90a, Some(Strategy::Ampere), Ok(true)),
            Ok((Strategy::Ampere, None))
        );
        assert!(Strategy::choose(&sm90a, Some(Strategy::Hopper), Ok(false)).is_err());
        let e = Strategy::choose(&sm90a, Some(Strategy::Hopper), Err("dot %3: f32".into()));
        assert!(e.unwrap_err().reason.contains("dot %3: f32"));
        assert_eq!(Strategy::parse("hopper"), Some(Strategy::Hopper));
        assert_eq!(Strategy::Hopper.shared_align(), 1024);
        assert_eq!(Strategy::Ampere.shared_align(), 16);
    }
}
