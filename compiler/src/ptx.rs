//! Reading PTX text back: instruction statistics for `tessel demo`, and for tests that check the
//! PTX really contains the instructions the schedule chose instead of trusting it.

use std::collections::BTreeMap;

/// Counts of the instruction classes tessel cares about, per kernel entry.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PtxStats {
    pub entries: Vec<String>,
    pub version: Option<String>,
    pub target: Option<String>,
    /// Instruction lines (not directives, labels or comments).
    pub instructions: usize,
    /// Instruction class (e.g. `mma.sync`, `ld.global`) → count.
    pub classes: BTreeMap<&'static str, usize>,
}

/// The classes counted, matched as prefixes of the opcode (after any `@%p` guard).
pub const CLASSES: &[&str] = &[
    "wgmma.mma_async",
    "mma.sync",
    "ldmatrix",
    "cp.async.bulk",
    "cp.async",
    "ld.global",
    "st.global",
    "ld.shared",
    "st.shared",
    "shfl.sync",
    "bar.sync",
    "fma.rn",
    "ex2.approx",
];

impl PtxStats {
    pub fn of(ptx: &str) -> PtxStats {
        let mut stats = PtxStats::default();
        for raw in ptx.lines() {
            let line = raw.trim();
            if line.is_empty() || line.starts_with("//") {
                continue;
            }
            if let Some(rest) = line.strip_prefix(".version ") {
                stats.version = Some(rest.trim().to_string());
            } else if let Some(rest) = line.strip_prefix(".target ") {
                stats.target = Some(rest.trim().to_string());
            } else if let Some(rest) = line
                .strip_prefix(".visible .entry ")
                .or_else(|| line.strip_prefix(".entry "))
            {
                let name = rest.split(['(', ' ']).next().unwrap_or("").to_string();
                stats.entries.push(name);
            }
            if line.starts_with('.')
                || line.starts_with('$')
                || line.starts_with('{')
                || line.starts_with('}')
                || line.starts_with(')')
            {
                continue;
            }
            let op = match line.strip_prefix('@') {
                Some(guarded) => guarded.split_whitespace().nth(1).unwrap_or(""),
                None => line.split_whitespace().next().unwrap_or(""),
            };
            if op.is_empty() {
                continue;
            }
            stats.instructions += 1;
            if let Some(class) = CLASSES.iter().find(|c| op.starts_with(*c)) {
                *stats.classes.entry(class).or_default() += 1;
            }
        }
        stats
    }

    pub fn count(&self, class: &str) -> usize {
        self.classes.get(class).copied().unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_guarded_and_plain_instructions() {
        let ptx = ".version 8.0\n.target sm_90a\n.visible .entry k(\n.param .u64 p\n)\n{\n\
                   \tld.global.b32 %r1, [%rd1];\n\t@%p1 bra $L;\n\tfma.rn.f32 %r2, %r1, %r1, %r1;\n\
                   \tmma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {..};\n$L:\n\tret;\n}\n";
        let s = PtxStats::of(ptx);
        assert_eq!(s.entries, vec!["k"]);
        assert_eq!(s.version.as_deref(), Some("8.0"));
        assert_eq!(s.target.as_deref(), Some("sm_90a"));
        assert_eq!(s.instructions, 5);
        assert_eq!(s.count("ld.global"), 1);
        assert_eq!(s.count("mma.sync"), 1);
        assert_eq!(s.count("fma.rn"), 1);
        assert_eq!(s.count("ldmatrix"), 0);
    }
}
