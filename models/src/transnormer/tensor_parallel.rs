//! Megatron-style tensor parallelism of TransNormerLLM over n ranks (docs/models/tensor_parallel.md).
//!
//! Each rank holds H/n heads of every token mixer and F/n of every channel mixer's inner width:
//! qkvu_proj is split by heads in each of its q, k, v, u blocks (column-parallel), with the
//! heads' decay slopes, LRPE angles and Lightning states; out_proj by its input columns
//! (row-parallel); l1 and l2 by rows (column-parallel), l3 by columns (row-parallel). The
//! residual stream, the embedding and the LM head are replicated. Each row-parallel product is
//! a partial sum, added by one all-reduce per mixer; the token mixer's all-reduce carries the
//! partial sums of squares of its SRMSNorm too (see dsl-examples/transnormer_tp.tsl).
//!
//! A [`ShardPlan`] says which slice of which checkpoint tensor each rank holds; the rank's model
//! is the same [`Transnormer`] on the rank's local widths, whose graphs place the collectives.
//! Weights are sharded at load: a rank copies only its slices' bytes out of the memory-mapped
//! safetensors, so the pages of the other ranks' slices are never read for it.

use std::ops::Range;

use super::config::ModelConfig;
use super::decay::{layer_slopes, Schedule};
use super::model::{Names, Transnormer, F, T};
use super::weights::{expected, Stored, TensorRef, Weights};
use crate::backend::Backend;
use crate::parallel::{Communicator, Ranks};
use crate::ModelError;

/// Why a configuration cannot be split n ways.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TpError {
    #[error("a tensor-parallel degree of 0")]
    Zero,
    #[error(
        "tensor parallel {ranks}: {what} = {value} is not a multiple of {ranks} (each rank \
         holds an equal share of the {what})"
    )]
    Indivisible {
        ranks: usize,
        what: &'static str,
        value: usize,
    },
}

/// How a tensor is cut among the ranks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Split {
    /// Every rank holds all of it.
    Replicated,
    /// Dim 0 is `blocks` equal blocks (qkvu: q, k, v, u), each cut into n equal row ranges;
    /// rank r holds range r of every block.
    Rows { blocks: usize },
    /// Dim 1 (of a matrix) cut into n equal column ranges; rank r holds range r of every row.
    Columns,
}

/// One checkpoint tensor's split.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Shard {
    pub tensor: String,
    /// The full tensor's shape, as stored.
    pub shape: Vec<usize>,
    pub split: Split,
}

impl Shard {
    /// The shape each of `ranks` ranks holds.
    pub fn local_shape(&self, ranks: usize) -> Vec<usize> {
        let mut s = self.shape.clone();
        match self.split {
            Split::Replicated => {}
            Split::Rows { .. } => s[0] /= ranks,
            Split::Columns => s[1] /= ranks,
        }
        s
    }

    /// The element ranges of the full row-major tensor that rank `rank` of `ranks` holds, in
    /// the order its local tensor stores them.
    pub fn ranges(&self, ranks: usize, rank: usize) -> Vec<Range<usize>> {
        let numel: usize = self.shape.iter().product();
        let row: usize = self.shape[1..].iter().product();
        match self.split {
            Split::Replicated => std::iter::once(0..numel).collect(),
            Split::Rows { blocks } => {
                let per_block = self.shape[0] / blocks;
                let take = per_block / ranks;
                (0..blocks)
                    .map(|b| {
                        let r0 = b * per_block + rank * take;
                        r0 * row..(r0 + take) * row
                    })
                    .collect()
            }
            Split::Columns => {
                let cols = self.shape[1] / ranks;
                (0..self.shape[0])
                    .map(|i| {
                        let c0 = i * self.shape[1] + rank * cols;
                        c0..c0 + cols
                    })
                    .collect()
            }
        }
    }

    fn describe(&self, ranks: usize) -> String {
        let local = self.local_shape(ranks);
        match self.split {
            Split::Replicated => "replicated".into(),
            Split::Rows { blocks: 1 } => {
                let take = local[0];
                format!("rows: rank r holds [r·{take}, (r+1)·{take}) → {local:?}")
            }
            Split::Rows { blocks } => {
                let (per, take) = (self.shape[0] / blocks, local[0] / blocks);
                format!(
                    "rows of each of {blocks} blocks of {per}: rank r holds [b·{per} + r·{take}, \
                     +{take}) of each → {local:?}"
                )
            }
            Split::Columns => {
                let take = local[1];
                format!("columns: rank r holds [r·{take}, (r+1)·{take}) of every row → {local:?}")
            }
        }
    }
}

/// Which slice of which tensor goes to which rank.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShardPlan {
    pub ranks: usize,
    pub shards: Vec<Shard>,
    /// Heads per rank (with their slopes, LRPE angles and Lightning states).
    pub heads: usize,
}

/// Checks that `cfg` splits `ranks` ways.
pub fn check(cfg: &ModelConfig, ranks: usize) -> Result<(), TpError> {
    if ranks == 0 {
        return Err(TpError::Zero);
    }
    for (what, value) in [("decoder_attention_heads", cfg.heads), ("glu_dim", cfg.glu)] {
        if !value.is_multiple_of(ranks) {
            return Err(TpError::Indivisible { ranks, what, value });
        }
    }
    Ok(())
}

impl ShardPlan {
    pub fn new(cfg: &ModelConfig, ranks: usize) -> Result<Self, TpError> {
        check(cfg, ranks)?;
        let shards = expected(cfg)
            .into_iter()
            .map(|(tensor, shape)| {
                let split = if tensor.ends_with("qkvu_proj.weight") {
                    Split::Rows { blocks: 4 }
                } else if tensor.ends_with("lrpe.theta")
                    || tensor.ends_with("l1.weight")
                    || tensor.ends_with("l2.weight")
                {
                    Split::Rows { blocks: 1 }
                } else if tensor.ends_with("out_proj.weight") || tensor.ends_with("l3.weight") {
                    Split::Columns
                } else {
                    // The embedding and the LM head (docs/models/tensor_parallel.md says why).
                    Split::Replicated
                };
                Shard {
                    tensor,
                    shape,
                    split,
                }
            })
            .collect();
        Ok(Self {
            ranks,
            shards,
            heads: cfg.heads / ranks,
        })
    }

    /// Bytes of bf16 weights one rank holds, and the unsplit model's.
    pub fn bytes_per_rank(&self) -> (usize, usize) {
        let n = |s: &[usize]| s.iter().product::<usize>() * 2;
        self.shards.iter().fold((0, 0), |(r, full), s| {
            (r + n(&s.local_shape(self.ranks)), full + n(&s.shape))
        })
    }

    /// The plan as `tessel model plan --tensor-parallel N` prints it.
    pub fn render(&self) -> String {
        let mut out = format!(
            "tensor parallel over {} ranks: {} heads per rank (their decay slopes, LRPE angles \
             and Lightning states with them)\n",
            self.ranks, self.heads
        );
        for s in &self.shards {
            out += &format!(
                "  {:<46} {:>14} {}\n",
                s.tensor,
                format!("{:?}", s.shape),
                s.describe(self.ranks)
            );
        }
        let (rank, full) = self.bytes_per_rank();
        let gib = |b: usize| b as f64 / (1u64 << 30) as f64;
        out += &format!(
            "weights per rank {:.3} GiB of {:.3} GiB (bf16)\n\
             collectives per layer: one all-reduce after out_proj (with the token mixer's Σo²), \
             one after l3\n",
            gib(rank),
            gib(full)
        );
        out
    }
}

/// The local model's configuration: a rank's share of the heads and widths.
fn local_config(cfg: &ModelConfig, ranks: usize) -> ModelConfig {
    let mut c = cfg.clone();
    c.heads /= ranks;
    c.hidden /= ranks;
    c.glu /= ranks;
    c
}

/// The bytes of `t` that `ranges` (element ranges) name, in order: only those pages of the
/// memory-mapped file are touched.
pub fn slice_bytes(t: &TensorRef<'_>, ranges: &[Range<usize>]) -> Vec<u8> {
    let e = t.dtype.size();
    let mut out = Vec::with_capacity(ranges.iter().map(|r| r.len() * e).sum());
    for r in ranges {
        out.extend_from_slice(&t.bytes[r.start * e..r.end * e]);
    }
    out
}

impl Transnormer {
    /// The model one rank of `ranks` runs: this model on the rank's local widths, its graphs
    /// with the collectives of a group of `ranks`.
    pub fn rank_model(&self, ranks: usize) -> Result<Transnormer, TpError> {
        check(&self.cfg, ranks)?;
        let mut m = self.clone();
        m.cfg = local_config(&self.cfg, ranks);
        m.tp = super::model::Tp {
            ranks,
            hidden: self.cfg.hidden,
        };
        Ok(m)
    }

    /// Uploads rank `rank`'s shards (self is the rank's model, `plan` the full model's plan):
    /// the same buffers [`Transnormer::load`] makes, at the local shapes.
    pub fn load_shard(
        &self,
        be: &mut dyn Backend,
        weights: &Weights,
        plan: &ShardPlan,
        rank: usize,
    ) -> Result<(), ModelError> {
        let c = &self.cfg;
        for s in &plan.shards {
            let t = weights
                .tensor(&s.tensor)
                .ok_or_else(|| ModelError::Input(format!("weights lack `{}`", s.tensor)))?;
            if t.shape != s.shape.as_slice() {
                return Err(ModelError::Input(format!(
                    "`{}` is {:?}, the plan splits {:?}",
                    s.tensor, t.shape, s.shape
                )));
            }
            let local = s.local_shape(plan.ranks);
            let bytes = slice_bytes(&t, &s.ranges(plan.ranks, rank));
            let numel: usize = local.iter().product();
            let dtype = if s.tensor.ends_with("lrpe.theta") {
                F
            } else {
                T
            };
            be.persistent(&s.tensor, dtype, numel)?;
            if dtype == T && t.dtype == Stored::Bf16 {
                be.write_bytes(&s.tensor, &bytes)?;
            } else {
                let part = TensorRef {
                    dtype: t.dtype,
                    shape: &local,
                    bytes: &bytes,
                };
                be.write(&s.tensor, &part.to_f64())?;
            }
        }
        let full_heads = c.heads * plan.ranks;
        for l in 0..c.layers {
            let slopes = layer_slopes(Schedule::Released, full_heads, l, c.layers);
            be.persistent(&Names::slope(l), F, c.heads)?;
            be.write(
                &Names::slope(l),
                &slopes[rank * c.heads..(rank + 1) * c.heads],
            )?;
        }
        be.persistent(Names::NO_THETA, F, c.heads * c.head_dim)
    }
}

/// Loads `model` (the unsplit one) onto a group: each rank its shards. Returns the rank model
/// that a [`crate::transnormer::Session`] over `ranks` runs.
pub fn load<C: Communicator>(
    model: &Transnormer,
    ranks: &mut Ranks<C>,
    weights: &Weights,
) -> Result<Transnormer, ModelError> {
    let n = ranks.size();
    let plan = ShardPlan::new(&model.cfg, n)?;
    let local = model.rank_model(n)?;
    for r in 0..n {
        local.load_shard(ranks.rank_mut(r), weights, &plan, r)?;
    }
    Ok(local)
}
