//! The supported-targets table.
//!
//! LLVM's NVPTX backend aborts the whole process (not an error value) when asked for an arch/PTX
//! pair or an instruction it cannot select, e.g. wgmma on plain sm_90. Every request is therefore
//! checked against this table first, and the code generator only asks LLVM for what the table
//! allows.

use std::fmt;
use std::str::FromStr;

/// A PTX ISA version, e.g. 8.0 is `PtxVersion { major: 8, minor: 0 }`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PtxVersion {
    pub major: u8,
    pub minor: u8,
}

impl PtxVersion {
    pub const fn new(major: u8, minor: u8) -> Self {
        Self { major, minor }
    }

    /// The LLVM NVPTX subtarget feature selecting this ISA, e.g. `+ptx80`.
    pub fn llvm_feature(self) -> String {
        format!("+ptx{}{}", self.major, self.minor)
    }
}

impl fmt::Display for PtxVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.major, self.minor)
    }
}

/// Hardware features a kernel may need. The scheduler asks for them; the table says yes or no.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Feature {
    /// Native bf16 arithmetic and conversions (`cvt.rn.bf16.f32`).
    Bf16,
    /// `mma.sync.aligned.m16n8k16` with bf16/f16 inputs and f32 accumulation.
    MmaSync,
    /// `ldmatrix.sync.aligned.m8n8`.
    Ldmatrix,
    /// `cp.async` global→shared copies with commit/wait groups.
    CpAsync,
    /// Thread-block clusters and distributed shared memory.
    Clusters,
    /// `mbarrier` transaction barriers.
    Mbarrier,
    /// `cp.async.bulk.tensor` (TMA).
    Tma,
    /// Warpgroup MMA (`wgmma.mma_async`): arch-specific sm_90a only.
    Wgmma,
    /// `setmaxnreg` register reallocation between warpgroups: sm_90a only.
    SetMaxNReg,
}

impl Feature {
    pub const ALL: [Feature; 9] = [
        Feature::Bf16,
        Feature::MmaSync,
        Feature::Ldmatrix,
        Feature::CpAsync,
        Feature::Clusters,
        Feature::Mbarrier,
        Feature::Tma,
        Feature::Wgmma,
        Feature::SetMaxNReg,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Feature::Bf16 => "bf16",
            Feature::MmaSync => "mma.sync",
            Feature::Ldmatrix => "ldmatrix",
            Feature::CpAsync => "cp.async",
            Feature::Clusters => "clusters",
            Feature::Mbarrier => "mbarrier",
            Feature::Tma => "tma",
            Feature::Wgmma => "wgmma",
            Feature::SetMaxNReg => "setmaxnreg",
        }
    }
}

impl fmt::Display for Feature {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// One row of the table: a GPU architecture tessel can generate code for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Target {
    /// The name users write and ptxas takes, e.g. `sm_90a`.
    pub name: &'static str,
    /// Compute capability times ten, e.g. 90.
    pub sm: u32,
    /// Arch-specific variant (`a` suffix): enables instructions that do not carry forward.
    pub arch_specific: bool,
    /// The PTX ISA tessel emits for this target: the lowest that has every feature below, so the
    /// PTX loads on the oldest driver that can run the GPU at all.
    pub ptx: PtxVersion,
    /// Features available on this target.
    features: &'static [Feature],
    /// Shared memory a block may opt into, in bytes.
    pub max_shared_bytes: u32,
    /// Registers per thread.
    pub max_regs_per_thread: u32,
    /// Blocks one SM holds at once, and the threads they may have in all: `@occupancy` beyond
    /// these cannot be met (ptxas does not say so).
    pub max_blocks_per_sm: u32,
    pub max_threads_per_sm: u32,
    /// Scheduling defaults for kernels that set neither `@num_warps` nor `--num-warps`.
    pub default_num_warps: u32,
    /// Depth of the global→shared copy pipeline when neither `@stages` nor `--stages` says.
    pub default_stages: u32,
}

use Feature::*;

/// Every target tessel supports, oldest first.
pub const TARGETS: &[Target] = &[
    Target {
        name: "sm_80",
        sm: 80,
        arch_specific: false,
        ptx: PtxVersion::new(7, 8),
        features: &[Bf16, MmaSync, Ldmatrix, CpAsync],
        max_shared_bytes: 163 * 1024,
        max_regs_per_thread: 255,
        max_blocks_per_sm: 32,
        max_threads_per_sm: 2048,
        default_num_warps: 4,
        default_stages: 2,
    },
    Target {
        name: "sm_90",
        sm: 90,
        arch_specific: false,
        ptx: PtxVersion::new(8, 0),
        features: &[Bf16, MmaSync, Ldmatrix, CpAsync, Clusters, Mbarrier, Tma],
        max_shared_bytes: 227 * 1024,
        max_regs_per_thread: 255,
        max_blocks_per_sm: 32,
        max_threads_per_sm: 2048,
        default_num_warps: 4,
        default_stages: 2,
    },
    Target {
        name: "sm_90a",
        sm: 90,
        arch_specific: true,
        ptx: PtxVersion::new(8, 0),
        features: &[
            Bf16, MmaSync, Ldmatrix, CpAsync, Clusters, Mbarrier, Tma, Wgmma, SetMaxNReg,
        ],
        max_shared_bytes: 227 * 1024,
        max_regs_per_thread: 255,
        max_blocks_per_sm: 32,
        max_threads_per_sm: 2048,
        default_num_warps: 4,
        default_stages: 2,
    },
];

/// Why a target request was refused. Returned before any LLVM call is made.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TargetError {
    #[error("unknown GPU architecture `{name}`; supported: {}", supported_names())]
    UnknownArch { name: String },
    #[error("`{arch}` does not support {feature}; targets that do: {}", targets_with(*.feature))]
    MissingFeature {
        arch: &'static str,
        feature: Feature,
    },
    #[error("`{arch}` needs PTX ISA {minimum} at least, {requested} was asked for")]
    PtxTooOld {
        arch: &'static str,
        requested: PtxVersion,
        minimum: PtxVersion,
    },
    #[error("PTX ISA {requested} is newer than tessel's backend can emit (at most {newest})")]
    PtxTooNew {
        requested: PtxVersion,
        newest: PtxVersion,
    },
}

/// The newest PTX ISA LLVM 22's NVPTX backend can print.
pub const NEWEST_PTX: PtxVersion = PtxVersion::new(9, 0);

fn supported_names() -> String {
    TARGETS
        .iter()
        .map(|t| t.name)
        .collect::<Vec<_>>()
        .join(", ")
}

fn targets_with(feature: Feature) -> String {
    let names: Vec<_> = TARGETS
        .iter()
        .filter(|t| t.has(feature))
        .map(|t| t.name)
        .collect();
    if names.is_empty() {
        "none".into()
    } else {
        names.join(", ")
    }
}

impl Target {
    /// Looks a target up by name (`sm_80`, `sm_90`, `sm_90a`).
    pub fn lookup(name: &str) -> Result<Target, TargetError> {
        TARGETS
            .iter()
            .copied()
            .find(|t| t.name == name)
            .ok_or_else(|| TargetError::UnknownArch { name: name.into() })
    }

    pub fn has(&self, feature: Feature) -> bool {
        self.features.contains(&feature)
    }

    /// Whether PTX built for this target runs on a GPU of compute capability `sm` (e.g. 90):
    /// plain targets run on their architecture and newer ones, arch-specific ones (`sm_90a`)
    /// on exactly theirs.
    pub fn runs_on(&self, sm: u32) -> bool {
        if self.arch_specific {
            self.sm == sm
        } else {
            self.sm <= sm
        }
    }

    /// The target whose PTX makes the most of a GPU of compute capability `sm`: its
    /// arch-specific target if tessel has one, else the newest plain target that runs there.
    pub fn best_for(sm: u32) -> Option<Target> {
        TARGETS
            .iter()
            .filter(|t| t.runs_on(sm))
            .max_by_key(|t| (t.sm, t.arch_specific))
            .copied()
    }

    pub fn features(&self) -> &'static [Feature] {
        self.features
    }

    /// Fails unless every feature in `needed` exists on this target.
    pub fn require(&self, needed: &[Feature]) -> Result<(), TargetError> {
        match needed.iter().find(|f| !self.has(**f)) {
            Some(&feature) => Err(TargetError::MissingFeature {
                arch: self.name,
                feature,
            }),
            None => Ok(()),
        }
    }

    /// Fails unless `ptx` can express this target and the backend can print it.
    pub fn check_ptx(&self, ptx: PtxVersion) -> Result<(), TargetError> {
        if ptx > NEWEST_PTX {
            return Err(TargetError::PtxTooNew {
                requested: ptx,
                newest: NEWEST_PTX,
            });
        }
        if ptx < self.ptx {
            return Err(TargetError::PtxTooOld {
                arch: self.name,
                requested: ptx,
                minimum: self.ptx,
            });
        }
        Ok(())
    }

    /// The CPU name LLVM's NVPTX backend takes for this target.
    pub fn llvm_cpu(&self) -> &'static str {
        self.name
    }
}

impl FromStr for Target {
    type Err = TargetError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Target::lookup(s)
    }
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_listed_target_is_found_by_name() {
        for t in TARGETS {
            assert_eq!(Target::lookup(t.name).unwrap(), *t);
        }
    }

    #[test]
    fn unknown_arch_is_a_typed_error_naming_the_choices() {
        let err = Target::lookup("sm_100a").unwrap_err();
        assert_eq!(
            err,
            TargetError::UnknownArch {
                name: "sm_100a".into()
            }
        );
        assert!(err.to_string().contains("sm_80, sm_90, sm_90a"), "{err}");
    }

    #[test]
    fn which_gpus_run_which_ptx() {
        let t = |n| Target::lookup(n).unwrap();
        assert!(t("sm_80").runs_on(80) && t("sm_80").runs_on(90) && !t("sm_80").runs_on(75));
        assert!(t("sm_90a").runs_on(90) && !t("sm_90a").runs_on(100));
        assert_eq!(Target::best_for(90).unwrap().name, "sm_90a");
        assert_eq!(Target::best_for(89).unwrap().name, "sm_80");
        assert_eq!(Target::best_for(120).unwrap().name, "sm_90");
        assert!(Target::best_for(75).is_none());
    }

    #[test]
    fn wgmma_only_on_sm90a() {
        assert!(Target::lookup("sm_90a")
            .unwrap()
            .require(&[Feature::Wgmma])
            .is_ok());
        let err = Target::lookup("sm_90")
            .unwrap()
            .require(&[Feature::MmaSync, Feature::Wgmma]);
        assert_eq!(
            err,
            Err(TargetError::MissingFeature {
                arch: "sm_90",
                feature: Feature::Wgmma
            })
        );
        assert!(err
            .unwrap_err()
            .to_string()
            .contains("targets that do: sm_90a"));
        assert!(Target::lookup("sm_80")
            .unwrap()
            .require(&[Feature::Tma])
            .is_err());
    }

    #[test]
    fn ptx_versions_are_bounded_both_ways() {
        let h = Target::lookup("sm_90a").unwrap();
        assert!(h.check_ptx(h.ptx).is_ok());
        assert!(matches!(
            h.check_ptx(PtxVersion::new(7, 8)),
            Err(TargetError::PtxTooOld { .. })
        ));
        assert!(matches!(
            h.check_ptx(PtxVersion::new(9, 1)),
            Err(TargetError::PtxTooNew { .. })
        ));
    }

    #[test]
    fn matrix_path_features_exist_on_every_target() {
        for t in TARGETS {
            t.require(&[
                Feature::Bf16,
                Feature::MmaSync,
                Feature::Ldmatrix,
                Feature::CpAsync,
            ])
            .unwrap();
        }
    }
}
