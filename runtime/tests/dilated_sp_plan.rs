//! The sequence-parallel plan (runtime::dilated_sp::plan) against the single-device definition:
//! for every query, head, pattern and mask, the keys the plan lets a rank's query attend to are
//! exactly those of the float64 closed form's `Problem::keys` (reference/src/dilated.rs), over
//! P ∈ {1, 2, 3, 4}, local and gathered patterns, a ragged last segment of ranks, both head
//! offsets. Also: what is refused, the communication constant in N, the printed plan.

use tessel_reference::dilated::{Offsets, Pattern as RefPattern, Problem};
use tessel_reference::Dims;
use tessel_runtime::dilated::Pattern;
use tessel_runtime::dilated_sp::{Placement, Plan, PlanError, RankPattern};

fn offset(offsets: Offsets, heads: usize, h: usize, r: usize) -> usize {
    match offsets {
        Offsets::Paper => h % r,
        Offsets::Torchscale => h / heads.div_ceil(r),
    }
}

/// Every query's key list under the plan equals the single-device one.
fn check_equivalent(n: usize, ranks: usize, pats: &[(usize, usize)]) {
    let patterns: Vec<Pattern> = pats.iter().map(|&(w, r)| Pattern { w, r }).collect();
    let plan = Plan::new(n, ranks, &patterns).unwrap();
    let heads = 5;
    let ref_pats: Vec<RefPattern> = pats.iter().map(|&(w, r)| RefPattern { w, r }).collect();
    for causal in [false, true] {
        for offsets in [Offsets::Paper, Offsets::Torchscale] {
            let p = Problem::new(Dims::new(1, heads, n, 8), &ref_pats, offsets, causal);
            for (i, &(_, r)) in pats.iter().enumerate() {
                for h in 0..heads {
                    let o = offset(offsets, heads, h, r);
                    for t in 0..n {
                        let want: Vec<usize> = p.keys(i, h, t).collect();
                        let got = plan.keys_of(i, o, t, causal);
                        assert_eq!(
                            got, want,
                            "N {n} P {ranks} pattern {i} {pats:?} h {h} t {t} causal {causal}"
                        );
                    }
                }
            }
        }
    }
}

#[test]
fn keys_equal_the_single_device_definition() {
    // Local only; mixed; w > N (one segment of all ranks); a ragged last segment of ranks
    // (P = 3, segments of 2 ranks: ranks {0, 1} and {2} alone).
    check_equivalent(48, 2, &[(8, 1), (12, 2), (24, 4)]);
    check_equivalent(48, 2, &[(8, 1), (48, 2), (96, 4)]);
    check_equivalent(48, 3, &[(8, 1), (32, 2), (48, 4)]);
    check_equivalent(48, 4, &[(4, 1), (24, 2), (48, 3), (64, 6)]);
    check_equivalent(60, 3, &[(20, 1), (40, 4), (60, 5)]);
    // P = 1 takes ragged segments like the single-device operator.
    check_equivalent(50, 1, &[(16, 1), (32, 3)]);
}

#[test]
fn placements_and_members() {
    let pats = [Pattern { w: 8, r: 1 }, Pattern { w: 32, r: 2 }];
    let plan = Plan::new(48, 3, &pats).unwrap();
    assert_eq!(plan.local, 16);
    assert_eq!(plan.patterns[0].placement, Placement::Local { segment: 8 });
    assert_eq!(
        plan.patterns[1].placement,
        Placement::Gathered { group: 2, rows: 8 }
    );
    assert_eq!(
        plan.rank(1, 1, true),
        RankPattern::Gathered {
            members: vec![0, 1],
            me: 1,
            rows: 8,
            // Its own block included (torchscale's [:current_rank] would give 0..1).
            attend: 0..2,
        }
    );
    assert_eq!(
        plan.rank(1, 0, true),
        RankPattern::Gathered {
            members: vec![0, 1],
            me: 0,
            rows: 8,
            attend: 0..1,
        }
    );
    // Rank 2 is alone in the ragged last segment: local with segment l.
    assert_eq!(plan.rank(1, 2, true), RankPattern::Local { segment: 16 });
    assert_eq!(
        plan.sent_rows(1, 1, 1),
        (17..32).step_by(2).collect::<Vec<_>>()
    );
    assert_eq!(plan.received_rows(1, 0), 8);
    assert_eq!(plan.received_rows(1, 2), 0);
}

#[test]
fn communication_is_constant_in_n() {
    // One pattern longer than a rank's block: a segment gathers w/r rows per head, and a rank
    // receives (g − 1)·l/r of them, whatever N (and with it P at a fixed l) is.
    let pats = [Pattern { w: 4096, r: 1 }, Pattern { w: 1 << 16, r: 16 }];
    let mut seen = Vec::new();
    for n in [1 << 16, 1 << 17, 1 << 18, 1 << 20] {
        let plan = Plan::new(n, n / 4096, &pats).unwrap();
        assert_eq!(plan.gathered_rows_per_segment(1), (1 << 16) / 16);
        seen.push(plan.bytes_received(0, 1, 8, 64, 2));
    }
    assert!(seen.windows(2).all(|w| w[0] == w[1]), "{seen:?}");
    // 2 (K, V) · 15 other ranks · 256 rows · 8 heads · 64 · 2 bytes.
    assert_eq!(seen[0], 2 * 15 * 256 * 8 * 64 * 2);
}

#[test]
fn refusals_are_typed() {
    let p = |w, r| Pattern { w, r };
    assert_eq!(Plan::new(10, 0, &[p(2, 1)]), Err(PlanError::NoRanks));
    assert_eq!(
        Plan::new(10, 3, &[p(2, 1)]),
        Err(PlanError::Uneven { n: 10, ranks: 3 })
    );
    // l = 16: a segment of 12 straddles, so does one of 24 at l = 16 (P = 3); r = 3 ∤ 16.
    assert!(matches!(
        Plan::new(32, 2, &[p(12, 1)]),
        Err(PlanError::Straddles { segment: 12, .. })
    ));
    assert!(matches!(
        Plan::new(48, 3, &[p(24, 1)]),
        Err(PlanError::Straddles { segment: 24, .. })
    ));
    assert_eq!(
        Plan::new(32, 2, &[p(32, 3)]),
        Err(PlanError::Dilation {
            w: 32,
            r: 3,
            local: 16
        })
    );
    assert_eq!(
        Plan::new(32, 2, &[p(0, 1)]),
        Err(PlanError::Zero { w: 0, r: 1 })
    );
}

#[test]
fn printed_plan() {
    let pats = [Pattern { w: 8, r: 1 }, Pattern { w: 32, r: 2 }];
    let text = Plan::new(48, 3, &pats).unwrap().to_string();
    let want = "\
sequence parallel: N = 48, P = 3, l = 16
  pattern 0 (w = 8, r = 1): local, segments of 8 inside each rank
  pattern 1 (w = 32, r = 2): gathered, segments of 2 ranks, 8 rows per rank and head, 16 per segment
    rank 0: sends rows 0..15 step 2 (+ o_h), gathers from ranks [0, 1], causal attends to ranks [0]
    rank 1: sends rows 16..31 step 2 (+ o_h), gathers from ranks [0, 1], causal attends to ranks [0, 1]
    rank 2: alone in its segment, local with segment 16
";
    assert_eq!(text, want);
}
