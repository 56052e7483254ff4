//! Schedule hints: the kernel's `@` attributes and the command line's overrides, checked by one
//! set of rules into one typed [`Hints`].
//!
//! The rules live here only. Sema applies them to each attribute, so a bad one is a diagnostic on
//! its span; the scheduler applies them to the kernel it is given (Tile IR may come from text)
//! and to [`SchedOptions`], so a bad flag is an error naming the flag. What one hint cannot know
//! alone — whether the target holds `@occupancy` blocks, whether `@warps` tiles the block's warps —
//! is checked once the target is known ([`Hints::check_target`]), and whether `@warps` tiles the
//! kernel's dots by the pass that reads it. A hint is honoured or refused, never dropped.

use super::strategy::Strategy;
use crate::tir::Kernel;
use crate::Target;

/// A hint tessel reads. Every attribute the language accepts is one of these.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hint {
    Occupancy,
    NumWarps,
    Warps,
    Stages,
}

impl Hint {
    pub const ALL: [Hint; 4] = [Hint::Occupancy, Hint::NumWarps, Hint::Warps, Hint::Stages];

    pub fn attribute(self) -> &'static str {
        match self {
            Hint::Occupancy => "occupancy",
            Hint::NumWarps => "num_warps",
            Hint::Warps => "warps",
            Hint::Stages => "stages",
        }
    }

    pub fn flag(self) -> &'static str {
        match self {
            Hint::Occupancy => "--occupancy",
            Hint::NumWarps => "--num-warps",
            Hint::Warps => "--warps",
            Hint::Stages => "--stages",
        }
    }

    /// The hint as the user wrote it: `@warps` or `--warps`.
    pub fn spelled(self, origin: Origin) -> String {
        match origin {
            Origin::Attribute => format!("@{}", self.attribute()),
            Origin::Flag => self.flag().to_string(),
        }
    }

    pub fn named(attribute: &str) -> Option<Hint> {
        Hint::ALL.into_iter().find(|h| h.attribute() == attribute)
    }

    /// What the rule wants, and the label a diagnostic puts on an argument list that breaks it.
    fn rule(self) -> (&'static str, &'static str) {
        match self {
            Hint::Occupancy => ("takes one integer, at least 1", "invalid block count"),
            Hint::NumWarps => (
                "takes one power of two between 1 and 32",
                "invalid warp count",
            ),
            Hint::Warps => (
                "takes two integers, at least 1: warp rows, warp columns",
                "invalid warp grid",
            ),
            Hint::Stages => ("takes one integer, at least 1", "invalid stage count"),
        }
    }
}

/// Where a hint was given.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    Attribute,
    Flag,
}

/// A hint's value and where it came from, so that a refusal names what the user wrote.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Given<T> {
    pub value: T,
    pub origin: Origin,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{name}` {reason}")]
pub struct HintError {
    /// The attribute (`@warps`) or flag (`--warps`).
    pub name: String,
    pub reason: String,
    /// What a diagnostic says under the attribute.
    pub label: &'static str,
}

impl HintError {
    fn new(hint: Hint, origin: Origin, reason: String, label: &'static str) -> HintError {
        HintError {
            name: hint.spelled(origin),
            reason,
            label,
        }
    }
}

impl<T> Given<T> {
    fn new(value: T, origin: Origin) -> Given<T> {
        Given { value, origin }
    }
}

/// Options from the command line that override the kernel's attributes and the defaults.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SchedOptions {
    pub num_warps: Option<u32>,
    pub stages: Option<usize>,
    pub warps: Option<(usize, usize)>,
    pub occupancy: Option<u32>,
    /// Forces a code-generation strategy instead of the target's own (`--strategy`).
    pub strategy: Option<Strategy>,
    /// Lets the automatic choice take Hopper forms that no GPU run has checked yet
    /// (`--hopper-preview`; see `wgmma::unproven`).
    pub hopper_preview: bool,
}

impl SchedOptions {
    /// The options as hints, checked by the attributes' rules (and against each other).
    pub fn hints(&self) -> Result<Hints, HintError> {
        let mut h = Hints {
            strategy: self.strategy,
            hopper_preview: self.hopper_preview,
            ..Hints::default()
        };
        let flags: [(Hint, Option<Vec<i64>>); 4] = [
            (Hint::NumWarps, self.num_warps.map(|n| vec![n.into()])),
            (Hint::Stages, self.stages.map(|n| vec![n as i64])),
            (
                Hint::Warps,
                self.warps.map(|(m, n)| vec![m as i64, n as i64]),
            ),
            (Hint::Occupancy, self.occupancy.map(|n| vec![n.into()])),
        ];
        for (hint, args) in flags {
            if let Some(args) = args {
                h.set(hint, &args, Origin::Flag)?;
            }
        }
        h.agree()?;
        Ok(h)
    }
}

/// The hints one kernel is scheduled with.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Hints {
    pub num_warps: Option<Given<u32>>,
    pub warps: Option<Given<(usize, usize)>>,
    pub stages: Option<Given<usize>>,
    pub occupancy: Option<Given<u32>>,
    pub strategy: Option<Strategy>,
    pub hopper_preview: bool,
}

impl Hints {
    /// The kernel's attributes overridden by `options`, every one checked.
    pub fn of(kernel: &Kernel, options: &SchedOptions) -> Result<Hints, HintError> {
        let mut h = Hints::default();
        for (name, args) in &kernel.attrs {
            let hint = Hint::named(name).ok_or_else(|| HintError {
                name: format!("@{name}"),
                reason: "is not an attribute tessel knows".into(),
                label: "unknown attribute",
            })?;
            h.set(hint, args, Origin::Attribute)?;
        }
        h.agree()?;
        let flags = options.hints()?;
        h.num_warps = flags.num_warps.or(h.num_warps);
        h.warps = flags.warps.or(h.warps);
        h.stages = flags.stages.or(h.stages);
        h.occupancy = flags.occupancy.or(h.occupancy);
        h.strategy = flags.strategy;
        h.hopper_preview = flags.hopper_preview;
        h.agree()?;
        Ok(h)
    }

    /// Checks `args` by `hint`'s rule and records them.
    pub fn set(&mut self, hint: Hint, args: &[i64], origin: Origin) -> Result<(), HintError> {
        let (wants, label) = hint.rule();
        let refuse = || {
            let given: Vec<String> = args.iter().map(|a| a.to_string()).collect();
            let reason = match origin {
                Origin::Attribute => wants.to_string(),
                Origin::Flag => format!("{wants}, not {}", given.join("x")),
            };
            HintError::new(hint, origin, reason, label)
        };
        let count = |lo: i64, hi: i64| match args {
            [n] if (lo..=hi).contains(n) => Some(*n),
            _ => None,
        };
        match hint {
            Hint::NumWarps => {
                let n = count(1, 32).filter(|n| (*n as u64).is_power_of_two());
                self.num_warps = Some(Given::new(n.ok_or_else(refuse)? as u32, origin));
            }
            Hint::Stages => {
                let n = count(1, i64::MAX).ok_or_else(refuse)?;
                self.stages = Some(Given::new(n as usize, origin));
            }
            Hint::Occupancy => {
                let n = count(1, u32::MAX.into()).ok_or_else(refuse)?;
                self.occupancy = Some(Given::new(n as u32, origin));
            }
            Hint::Warps => match args {
                [m, n] if *m >= 1 && *n >= 1 => {
                    self.warps = Some(Given::new((*m as usize, *n as usize), origin))
                }
                _ => return Err(refuse()),
            },
        }
        Ok(())
    }

    /// The hints that constrain each other agree: `@warps` tiles exactly `@num_warps` warps.
    pub fn agree(&self) -> Result<(), HintError> {
        if let (Some(w), Some(n)) = (self.warps, self.num_warps) {
            let (wm, wn) = w.value;
            if wm * wn != n.value as usize {
                return Err(HintError::new(
                    Hint::Warps,
                    w.origin,
                    format!(
                        "tiles {wm} × {wn} = {} warps, but `{}` makes the block {} warps",
                        wm * wn,
                        Hint::NumWarps.spelled(n.origin),
                        n.value
                    ),
                    "does not tile the block's warps",
                ));
            }
        }
        Ok(())
    }

    pub fn num_warps(&self, target: &Target) -> u32 {
        self.num_warps.map_or(target.default_num_warps, |n| n.value)
    }

    pub fn stages(&self, target: &Target) -> usize {
        self.stages
            .map_or(target.default_stages as usize, |s| s.value)
    }

    /// What only the target can tell: whether the default block is the one `@warps` tiles, and
    /// whether an SM holds `@occupancy` blocks at once.
    pub fn check_target(&self, target: &Target) -> Result<(), HintError> {
        let warps = self.num_warps(target);
        if let (Some(w), None) = (self.warps, self.num_warps) {
            let (wm, wn) = w.value;
            if wm * wn != warps as usize {
                return Err(HintError::new(
                    Hint::Warps,
                    w.origin,
                    format!(
                        "tiles {wm} × {wn} = {} warps, but blocks on {} have {warps} unless \
                         `@num_warps` says otherwise",
                        wm * wn,
                        target.name
                    ),
                    "does not tile the block's warps",
                ));
            }
        }
        if let Some(o) = self.occupancy {
            let threads = 32 * warps;
            let most = target
                .max_blocks_per_sm
                .min(target.max_threads_per_sm / threads);
            if o.value > most {
                return Err(HintError::new(
                    Hint::Occupancy,
                    o.origin,
                    format!(
                        "asks for {} blocks per SM, but an SM of {} holds at most {most} of \
                         {threads} threads ({} threads and {} blocks in all)",
                        o.value, target.name, target.max_threads_per_sm, target.max_blocks_per_sm
                    ),
                    "more blocks than an SM holds",
                ));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_and_attributes_break_the_same_rules() {
        let flag = SchedOptions {
            stages: Some(0),
            ..Default::default()
        }
        .hints()
        .unwrap_err();
        assert_eq!(
            flag.to_string(),
            "`--stages` takes one integer, at least 1, not 0"
        );
        let mut h = Hints::default();
        let attr = h.set(Hint::Stages, &[0], Origin::Attribute).unwrap_err();
        assert_eq!(attr.to_string(), "`@stages` takes one integer, at least 1");
        assert_eq!(flag.label, attr.label);
    }

    #[test]
    fn a_warp_grid_must_tile_the_block() {
        let e = SchedOptions {
            num_warps: Some(8),
            warps: Some((3, 2)),
            ..Default::default()
        }
        .hints()
        .unwrap_err();
        assert!(e.reason.contains("6 warps"), "{e}");
        let t = crate::Target::lookup("sm_80").unwrap();
        let h = SchedOptions {
            warps: Some((2, 4)),
            ..Default::default()
        }
        .hints()
        .unwrap();
        assert!(h.check_target(&t).is_err());
    }

    #[test]
    fn occupancy_is_bounded_by_the_sm() {
        let t = crate::Target::lookup("sm_90a").unwrap();
        let h = |n| {
            SchedOptions {
                occupancy: Some(n),
                ..Default::default()
            }
            .hints()
        };
        assert!(h(0).is_err());
        assert!(h(64).unwrap().check_target(&t).is_err());
        // 4 warps: 16 blocks of 128 threads fill 2048.
        assert!(h(16).unwrap().check_target(&t).is_ok());
        assert!(h(17).unwrap().check_target(&t).is_err());
    }
}
