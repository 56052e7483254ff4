//! The sharding plan: which slice of which tensor each rank holds.

use super::config::ModelConfig;
use super::tensor_parallel::{Shard, ShardPlan, Split};

fn shard<'p>(plan: &'p ShardPlan, name: &str) -> &'p Shard {
    plan.shards.iter().find(|s| s.tensor == name).unwrap()
}

#[test]
fn the_1b_plan_splits_heads_and_widths_and_replicates_the_vocabulary() {
    let cfg = ModelConfig::released("1b").unwrap();
    let plan = ShardPlan::new(&cfg, 2).unwrap();
    assert_eq!(plan.heads, 8);
    assert_eq!(plan.shards.len(), super::weights::expected(&cfg).len());
    let qkvu = shard(&plan, "model.layers.3.token_mixer.qkvu_proj.weight");
    assert_eq!(qkvu.split, Split::Rows { blocks: 4 });
    assert_eq!(qkvu.local_shape(2), vec![4096, 2048]);
    // Rank 1: heads 8..16 of each of q, k, v, u (rows of 2048 elements).
    let d = 2048;
    assert_eq!(
        qkvu.ranges(2, 1),
        (0..4)
            .map(|b| (b * 2048 + 1024) * d..(b * 2048 + 2048) * d)
            .collect::<Vec<_>>()
    );
    let out = shard(&plan, "model.layers.3.token_mixer.out_proj.weight");
    assert_eq!(out.split, Split::Columns);
    let r = out.ranges(2, 1);
    assert_eq!(r.len(), 2048);
    assert_eq!(r[0], 1024..2048);
    assert_eq!(r[5], 5 * 2048 + 1024..6 * 2048);
    let l3 = shard(&plan, "model.layers.0.channel_mixer.l3.weight");
    assert_eq!(l3.local_shape(2), vec![2048, 2816]);
    assert_eq!(l3.ranges(2, 0)[1], 5632..5632 + 2816);
    let l1 = shard(&plan, "model.layers.0.channel_mixer.l1.weight");
    assert_eq!(l1.ranges(2, 1), std::slice::from_ref(&(2816 * d..5632 * d)));
    let theta = shard(&plan, "model.layers.0.token_mixer.lrpe.theta");
    assert_eq!(theta.local_shape(2), vec![8, 1, 128]);
    assert_eq!(
        theta.ranges(2, 1),
        std::slice::from_ref(&(8 * 128..16 * 128))
    );
    for name in ["model.embed_tokens.weight", "lm_head.weight"] {
        assert_eq!(shard(&plan, name).split, Split::Replicated);
        let whole = 0..64000 * d;
        assert_eq!(
            shard(&plan, name).ranges(2, 1),
            std::slice::from_ref(&whole)
        );
    }
    // Every element of a split tensor goes to exactly one rank.
    for s in plan.shards.iter().filter(|s| s.split != Split::Replicated) {
        let mut all: Vec<_> = (0..2).flat_map(|r| s.ranges(2, r)).collect();
        all.sort_by_key(|r| r.start);
        assert_eq!(all[0].start, 0, "{}", s.tensor);
        assert!(
            all.windows(2).all(|w| w[0].end == w[1].start),
            "{}",
            s.tensor
        );
        assert_eq!(all.last().unwrap().end, s.shape.iter().product::<usize>());
    }
    let (rank, full) = plan.bytes_per_rank();
    let vocab = 2 * 64000 * d * 2;
    assert_eq!(rank - vocab, (full - vocab) / 2);
    let text = plan.render();
    assert!(
        text.contains("8 heads per rank") && text.contains("replicated"),
        "{text}"
    );
}
