//! LongNet (torchscale's `LongNetDecoder`) as graphs of tessel kernel calls. Per layer, pre-norm:
//! x ← x + out_proj(LN_sub(DilatedAttention(LN(x)))); x ← x + fc2(LN_ffn(GELU(fc1(LN(x)))));
//! then the final `layer_norm` and the output projection (tied to the embedding or not). The
//! embedding is scaled by √D unless `no_scale_embedding` (torchscale's default: not scaled).
//!
//! The residual stream x is f32, activations and weights bf16, every product accumulated in f32.
//! Prefill runs the causal dilated attention of `dilated_attention.tsl` (one launch per pattern,
//! merged by LSE); k and v also go into a persistent per-layer KV cache, which each decode step
//! reads with `dilated_attention_decode` (and extends by one row).

use tessel_package::DType;
use tessel_runtime::dilated::{HeadOffsets, Pattern};

use super::config::LongNetConfig;
use super::weights::{expected, layer, EMBED, OUTPUT};
use crate::backend::Backend;
use crate::batch;
use crate::checkpoint::{Checkpoint, Stored};
use crate::graph::{Access, Buf, CallArg, Graph, KernelRef};
use crate::transnormer::model::Choice;
use crate::ModelError;

/// Tile sizes of each call.
#[derive(Debug, Clone)]
pub struct LongNetTiles {
    /// BM, BN, BK of the prefill projections and the LM head.
    pub linear: [usize; 3],
    /// BM, BN, BK of the decode projections (a few rows).
    pub decode: [usize; 3],
    /// BM, BK of the head-major q/k/v projections.
    pub heads: [usize; 2],
    /// BM, BN of the dilated attention forward.
    pub attention: [usize; 2],
    /// BN of the decode attention.
    pub decode_attention: usize,
    /// BV of `argmax` / `sample`.
    pub argmax: usize,
}

impl LongNetTiles {
    /// Small tiles that still cut the test shapes into several programs.
    pub fn interpreter() -> Self {
        Self {
            linear: [16, 32, 16],
            decode: [4, 32, 16],
            heads: [8, 16],
            attention: [8, 8],
            decode_attention: 4,
            argmax: 32,
        }
    }

    pub fn gpu() -> Self {
        Self {
            linear: [128, 128, 64],
            decode: [16, 64, 128],
            heads: [64, 64],
            attention: [64, 64],
            decode_attention: 64,
            argmax: 1024,
        }
    }
}

#[derive(Debug, Clone)]
pub struct LongNet {
    pub cfg: LongNetConfig,
    pub tiles: LongNetTiles,
    pub choice: Choice,
}

pub use crate::batch::Names;

pub(super) const T: DType = DType::Bf16;
pub(super) const F: DType = DType::F32;
pub(super) const I: DType = DType::I32;
pub(super) use crate::graph::{persistent as p, view};
pub(super) use Access::{Read as R, ReadWrite as RW, Write as W};

pub(super) fn s(v: usize) -> String {
    v.to_string()
}

pub(super) fn pow2(n: usize) -> usize {
    n.next_power_of_two()
}

impl LongNet {
    pub fn new(cfg: LongNetConfig, tiles: LongNetTiles) -> Self {
        Self {
            cfg,
            tiles,
            choice: Choice::Greedy,
        }
    }

    /// The output projection's weight (the embedding when tied).
    pub fn head_weight(&self) -> &'static str {
        if self.cfg.tied {
            EMBED
        } else {
            OUTPUT
        }
    }

    /// Uploads every weight (bf16 as stored; f16/f32 rounded to bf16). With tied embeddings, an
    /// `output_projection.weight` that is present must hold the embedding's values.
    pub fn load(&self, be: &mut dyn Backend, ck: &Checkpoint) -> Result<(), ModelError> {
        let want = expected(&self.cfg);
        for (name, shape) in &want.required {
            let t = ck
                .tensor(name)
                .ok_or_else(|| ModelError::Input(format!("weights lack `{name}`")))?;
            be.persistent(name, T, shape.iter().product())?;
            if t.dtype == Stored::Bf16 {
                be.write_bytes(name, t.bytes)?;
            } else {
                be.write(name, &t.to_f64())?;
            }
        }
        if let (true, Some(out)) = (self.cfg.tied, ck.tensor(OUTPUT)) {
            let embed = ck.tensor(EMBED).expect("required");
            if out.to_f64() != embed.to_f64() {
                return Err(ModelError::Input(format!(
                    "share_decoder_input_output_embed is true but `{OUTPUT}` differs from \
                     `{EMBED}`: the checkpoint is not tied"
                )));
            }
        }
        be.persistent(Names::NO_NORM, T, self.cfg.dim)
    }

    pub(super) fn k(
        &self,
        source: &'static str,
        name: &'static str,
        consts: &[(&str, String)],
    ) -> KernelRef {
        KernelRef::new(source, name, consts)
    }

    /// y (rows, width) bf16 = LayerNorm(x) with `{prefix}.weight` / `.bias`.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn layernorm(
        &self,
        g: &mut Graph,
        label: String,
        prefix: &str,
        (x, xt): (&Buf, DType),
        y: &Buf,
        rows: usize,
        width: usize,
    ) {
        let consts = [
            ("BM", s(1)),
            ("BD", s(pow2(width))),
            ("TX", xt.name().to_string()),
        ];
        g.call(
            label,
            self.k("layernorm", "layernorm", &consts),
            vec![
                view(x, xt, &[rows, width], R),
                view(&p(&format!("{prefix}.weight")), T, &[width], R),
                view(&p(&format!("{prefix}.bias")), T, &[width], R),
                view(y, T, &[rows, width], W),
                CallArg::Scalar(self.cfg.eps),
            ],
        );
    }

    /// A biased projection y = x·Wᵀ + b of `w` (`{w}.weight`, `{w}.bias`): into a bf16 y
    /// (GELU'd when `gelu`), or added into the f32 residual stream when `residual`.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn linear(
        &self,
        g: &mut Graph,
        label: String,
        x: &Buf,
        w: &str,
        y: &Buf,
        [m, n, k]: [usize; 3],
        (gelu, residual, decode): (bool, bool, bool),
    ) {
        let [bm, bn, bk] = if decode {
            self.tiles.decode
        } else {
            self.tiles.linear
        };
        let tiles = [("BM", s(bm)), ("BN", s(bn)), ("BK", s(bk))];
        let mut args = vec![
            view(x, T, &[m, k], R),
            view(&p(&format!("{w}.weight")), T, &[n, k], R),
            view(&p(&format!("{w}.bias")), T, &[n], R),
        ];
        let kernel = if residual {
            args.push(view(y, F, &[m, n], RW));
            self.k("longnet", "linear_bias_residual", &tiles)
        } else {
            args.push(view(y, T, &[m, n], W));
            let mut c = tiles.to_vec();
            c.push(("GELU", gelu.to_string()));
            self.k("longnet", "linear_bias", &c)
        };
        g.call(label, kernel, args);
    }

    /// The output projection (no bias): f32 logits (m, vocab) of h (m, D).
    pub(super) fn head(&self, g: &mut Graph, h: &Buf, out: &Buf, m: usize) {
        let c = &self.cfg;
        let [bm, bn, bk] = self.tiles.linear;
        let consts = [
            ("BM", s(bm)),
            ("BN", s(bn)),
            ("BK", s(bk)),
            ("TO", "f32".to_string()),
        ];
        g.call(
            "output_projection",
            self.k("linear", "linear", &consts),
            vec![
                view(h, T, &[m, c.dim], R),
                view(&p(self.head_weight()), T, &[c.vocab, c.dim], R),
                view(out, F, &[m, c.vocab], W),
            ],
        );
    }

    /// The patterns in launch order with their head groups: an r = 1 pattern first when there
    /// is one (it keeps every row, so it can write (O, L) outright).
    pub fn launches(&self) -> Vec<(Pattern, usize)> {
        let mut l: Vec<(Pattern, usize)> = self
            .cfg
            .patterns
            .iter()
            .map(|&pat| {
                let group = match self.cfg.offsets {
                    HeadOffsets::Paper => 1,
                    HeadOffsets::Torchscale => self.cfg.heads.div_ceil(pat.r).max(1),
                };
                (pat, group)
            })
            .collect();
        l.sort_by_key(|(pat, _)| pat.r != 1);
        l
    }

    pub(super) fn scale(&self) -> f64 {
        1.0 / (self.cfg.head_dim as f64).sqrt()
    }

    pub(super) fn pattern_args(&self, (pat, group): (Pattern, usize)) -> [CallArg; 4] {
        [
            CallArg::Scalar(self.scale()),
            CallArg::Scalar(pat.w as f64),
            CallArg::Scalar(pat.r as f64),
            CallArg::Scalar(group as f64),
        ]
    }

    /// Attention's per-head output (b, H, n, hd) to tokens (b·n, D), through `inner_attn_ln`
    /// when subln.
    pub(super) fn heads_norm(&self, g: &mut Graph, l: usize, o: &Buf, a: &Buf, b: usize, n: usize) {
        let c = &self.cfg;
        let (h, hd) = (c.heads, c.head_dim);
        let (wt, bs) = if c.subln {
            (
                layer(l, "self_attn.inner_attn_ln.weight"),
                layer(l, "self_attn.inner_attn_ln.bias"),
            )
        } else {
            (Names::NO_NORM.to_string(), Names::NO_NORM.to_string())
        };
        let consts = [
            ("BH", s(pow2(h))),
            ("HD", s(hd)),
            ("NORM", c.subln.to_string()),
        ];
        g.call(
            format!("layer {l} inner_attn_ln"),
            self.k("layernorm", "heads_layernorm", &consts),
            vec![
                view(o, T, &[b, h, n, hd], R),
                view(&p(&wt), T, &[h, hd], R),
                view(&p(&bs), T, &[h, hd], R),
                view(a, T, &[b, n, h, hd], W),
                CallArg::Scalar(c.eps),
            ],
        );
    }

    /// The next tokens from `logits.b{b}` into `next.b{b}` ([`batch::choose`]).
    pub(super) fn choose(&self, g: &mut Graph, b: usize, pos: &str, offset: usize) {
        batch::choose(
            g,
            self.choice,
            self.tiles.argmax,
            b,
            self.cfg.vocab,
            pos,
            offset,
        );
    }
}
