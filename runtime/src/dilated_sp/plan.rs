//! The partition and gather plan of sequence-parallel dilated attention (ALGORITHMS.md §4,
//! "Distributed"): which rows each rank sends, receives and attends to, per pattern.
//!
//! The sequence of N positions is split over P ranks in contiguous blocks of l = N/P. A pattern
//! (w, r) cuts the sequence into segments of w' = min(w, N):
//!
//! - w' ≤ l: every segment lies inside one rank (l must be a multiple of w', else a segment would
//!   straddle two ranks), so each rank runs the single-device kernels on its own block: **local**.
//! - w' > l: a segment spans g = w'/l whole ranks (w' must be a multiple of l; the last segment
//!   may hold fewer, P mod g, when w' ∤ N — the ragged case of one device). Each rank keeps the
//!   rows of its block the pattern keeps for a head (r must divide l, so a block starts at an
//!   in-segment index ≡ 0 mod r and the kept rows are the block's o_h, o_h + r, … : l/r rows
//!   for every head) and the ranks of one segment all-gather them: **gathered**. The rank's
//!   kept queries attend to the gathered keys of the ranks ≤ its own when causal (its own
//!   block included, bottom-right aligned: query i of member m sees gathered key j of member s
//!   iff s·l/r + j ≤ m·l/r + i — torchscale's `[:current_rank]`, which drops its own block, is
//!   not copied), of every member otherwise. A segment of one rank (the ragged last one) needs no
//!   collective: it is local with segment l.
//!
//! Per segment, the gathered keys are w'/r rows per head for K and as many for V, whatever N is:
//! the communication per rank is constant in N for a bounded w/r.

use std::fmt;

use super::super::dilated::Pattern;

/// Why a sequence split cannot be planned (typed, nothing is guessed or padded).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlanError {
    #[error("sequence parallelism needs at least one rank")]
    NoRanks,
    #[error(
        "sequence of {n} positions does not split over {ranks} ranks: N must be a multiple of P"
    )]
    Uneven { n: usize, ranks: usize },
    #[error("pattern (w = {w}, r = {r}): w and r must be positive")]
    Zero { w: usize, r: usize },
    #[error(
        "pattern (w = {w}, r = {r}): a segment of {segment} would straddle ranks of {local} positions \
         (a segment of at most l must divide l = N/P, a longer one must be a multiple of l)"
    )]
    Straddles {
        w: usize,
        r: usize,
        segment: usize,
        local: usize,
    },
    #[error(
        "pattern (w = {w}, r = {r}) spans ranks of {local} positions: r must divide l = N/P, \
         so that every rank keeps l/r rows per head"
    )]
    Dilation { w: usize, r: usize, local: usize },
}

/// How one pattern runs on the ranks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Placement {
    /// Each rank runs the single-device kernels on its block with segment `segment` (≤ l).
    Local { segment: usize },
    /// Segments of `group` ranks (the last one possibly fewer) all-gather `rows` = l/r kept rows
    /// per head and rank.
    Gathered { group: usize, rows: usize },
}

/// One pattern's placement.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PatternPlan {
    pub pattern: Pattern,
    /// w' = min(w, N).
    pub segment: usize,
    pub placement: Placement,
}

/// The whole split: N, P, l and every pattern's placement, in the caller's pattern order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    pub n: usize,
    pub ranks: usize,
    pub local: usize,
    pub patterns: Vec<PatternPlan>,
}

/// What one rank does for one pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RankPattern {
    /// Run the single-device kernels on the rank's block with this segment length.
    Local { segment: usize },
    /// All-gather the kept rows among `members` (global rank ids, in order; the rank is
    /// `members[me]`), then attend to `attend` (members' indices into `members`).
    Gathered {
        members: Vec<usize>,
        me: usize,
        rows: usize,
        attend: std::ops::Range<usize>,
    },
}

impl Plan {
    /// The plan of N positions over `ranks` ranks for `patterns`.
    pub fn new(n: usize, ranks: usize, patterns: &[Pattern]) -> Result<Plan, PlanError> {
        if ranks == 0 {
            return Err(PlanError::NoRanks);
        }
        if n == 0 || !n.is_multiple_of(ranks) {
            return Err(PlanError::Uneven { n, ranks });
        }
        let local = n / ranks;
        let patterns = patterns
            .iter()
            .map(|&pattern| place(n, ranks, local, pattern))
            .collect::<Result<_, _>>()?;
        Ok(Plan {
            n,
            ranks,
            local,
            patterns,
        })
    }

    /// What `rank` does for pattern `i`; `causal` picks the members it attends to.
    pub fn rank(&self, i: usize, rank: usize, causal: bool) -> RankPattern {
        assert!(rank < self.ranks, "rank {rank} of {}", self.ranks);
        let pp = self.patterns[i];
        match pp.placement {
            Placement::Local { segment } => RankPattern::Local { segment },
            Placement::Gathered { group, rows } => {
                let start = rank / group * group;
                let members: Vec<usize> = (start..(start + group).min(self.ranks)).collect();
                if members.len() == 1 {
                    // The ragged last segment of one rank: nothing to gather.
                    return RankPattern::Local {
                        segment: self.local,
                    };
                }
                let me = rank - start;
                let attend = if causal { 0..me + 1 } else { 0..members.len() };
                RankPattern::Gathered {
                    members,
                    me,
                    rows,
                    attend,
                }
            }
        }
    }

    /// The global positions `rank` sends for pattern `i` and a head of in-segment offset
    /// `offset` (< r): its block's kept rows, in order. Empty for a local pattern.
    pub fn sent_rows(&self, i: usize, rank: usize, offset: usize) -> Vec<usize> {
        match self.rank(i, rank, false) {
            RankPattern::Local { .. } => Vec::new(),
            RankPattern::Gathered { rows, .. } => {
                let r = self.patterns[i].pattern.r;
                (0..rows)
                    .map(|j| rank * self.local + offset + j * r)
                    .collect()
            }
        }
    }

    /// The global positions whose keys `rank`'s kept queries attend to under pattern `i` for a
    /// head of offset `offset`, in gathered order (for a local pattern: the keys of its own
    /// segments are its own block's, and this lists the block's kept rows).
    pub fn attended_rows(&self, i: usize, rank: usize, offset: usize, causal: bool) -> Vec<usize> {
        let r = self.patterns[i].pattern.r;
        match self.rank(i, rank, causal) {
            RankPattern::Local { segment } => (0..self.local)
                .filter(|j| (j % segment) % r == offset)
                .map(|j| rank * self.local + j)
                .collect(),
            RankPattern::Gathered {
                members, attend, ..
            } => members[attend]
                .iter()
                .flat_map(|&m| self.sent_rows(i, m, offset))
                .collect(),
        }
    }

    /// The keys query `t` (a global position) of a head of offset `offset` attends to under
    /// pattern `i`, as the plan runs it: empty when the pattern does not keep t; otherwise the
    /// kept rows of its own segment on its rank (local), or the gathered rows of the members it
    /// attends to, cut at t itself when causal (the diagonal block's mask).
    pub fn keys_of(&self, i: usize, offset: usize, t: usize, causal: bool) -> Vec<usize> {
        let rank = t / self.local;
        let r = self.patterns[i].pattern.r;
        let within = t - rank * self.local;
        match self.rank(i, rank, causal) {
            RankPattern::Local { segment } => {
                let seg = within / segment * segment;
                if (within - seg) % r != offset {
                    return Vec::new();
                }
                let base = rank * self.local + seg;
                let end = (seg + segment).min(self.local) - seg;
                (offset..end)
                    .step_by(r)
                    .map(|j| base + j)
                    .filter(|&s| !causal || s <= t)
                    .collect()
            }
            RankPattern::Gathered { .. } => {
                if within % r != offset {
                    return Vec::new();
                }
                self.attended_rows(i, rank, offset, causal)
                    .into_iter()
                    .filter(|&s| !causal || s <= t)
                    .collect()
            }
        }
    }

    /// Rows (per head, for K and for V each) `rank` receives from others for pattern `i`.
    pub fn received_rows(&self, i: usize, rank: usize) -> usize {
        match self.rank(i, rank, false) {
            RankPattern::Local { .. } => 0,
            RankPattern::Gathered { members, rows, .. } => (members.len() - 1) * rows,
        }
    }

    /// Rows per head of one segment's gathered K (= w'/r for a full segment), 0 when local.
    pub fn gathered_rows_per_segment(&self, i: usize) -> usize {
        match self.patterns[i].placement {
            Placement::Local { .. } => 0,
            Placement::Gathered { group, rows } => group * rows,
        }
    }

    /// Bytes each rank receives in the forward (K and V of every gathered pattern, all heads),
    /// `elem` bytes an element; the backward's reduce-scatter sends as many.
    pub fn bytes_received(
        &self,
        rank: usize,
        batch: usize,
        heads: usize,
        d: usize,
        elem: usize,
    ) -> usize {
        (0..self.patterns.len())
            .map(|i| 2 * self.received_rows(i, rank) * batch * heads * d * elem)
            .sum()
    }
}

fn place(n: usize, ranks: usize, local: usize, pattern: Pattern) -> Result<PatternPlan, PlanError> {
    let Pattern { w, r } = pattern;
    if w == 0 || r == 0 {
        return Err(PlanError::Zero { w, r });
    }
    let segment = w.min(n);
    let straddles = PlanError::Straddles {
        w,
        r,
        segment,
        local,
    };
    let placement = if ranks == 1 {
        // One rank holds every segment, ragged or not: the single-device operator.
        Placement::Local { segment }
    } else if segment <= local {
        if !local.is_multiple_of(segment) {
            return Err(straddles);
        }
        Placement::Local { segment }
    } else {
        if !segment.is_multiple_of(local) {
            return Err(straddles);
        }
        if !local.is_multiple_of(r) {
            return Err(PlanError::Dilation { w, r, local });
        }
        Placement::Gathered {
            group: segment / local,
            rows: local / r,
        }
    };
    Ok(PatternPlan {
        pattern,
        segment,
        placement,
    })
}

impl fmt::Display for Plan {
    /// One line per pattern, then per rank what it gathers with whom (non-causal and causal).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "sequence parallel: N = {}, P = {}, l = {}",
            self.n, self.ranks, self.local
        )?;
        for (i, pp) in self.patterns.iter().enumerate() {
            let Pattern { w, r } = pp.pattern;
            match pp.placement {
                Placement::Local { segment } => writeln!(
                    f,
                    "  pattern {i} (w = {w}, r = {r}): local, segments of {segment} inside each rank"
                )?,
                Placement::Gathered { group, rows } => {
                    writeln!(
                        f,
                        "  pattern {i} (w = {w}, r = {r}): gathered, segments of {group} ranks, \
                         {rows} rows per rank and head, {} per segment",
                        group * rows
                    )?;
                    for rank in 0..self.ranks {
                        write_rank(f, self, i, rank)?;
                    }
                }
            }
        }
        Ok(())
    }
}

fn write_rank(f: &mut fmt::Formatter<'_>, plan: &Plan, i: usize, rank: usize) -> fmt::Result {
    let r = plan.patterns[i].pattern.r;
    let sent = plan.sent_rows(i, rank, 0);
    match (plan.rank(i, rank, false), plan.rank(i, rank, true)) {
        (RankPattern::Local { segment }, _) => writeln!(
            f,
            "    rank {rank}: alone in its segment, local with segment {segment}"
        ),
        (RankPattern::Gathered { members, .. }, RankPattern::Gathered { attend, .. }) => writeln!(
            f,
            "    rank {rank}: sends rows {}..{} step {r} (+ o_h), gathers from ranks {members:?}, \
             causal attends to ranks {:?}",
            sent[0],
            sent[sent.len() - 1] + 1,
            &members[attend],
        ),
        _ => unreachable!("a rank's placement does not depend on the mask"),
    }
}
