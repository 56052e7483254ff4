//! TransNormerLLM as graphs of tessel kernel calls: the prefill of a batch of (left-padded)
//! prompts, and one decode step. Per layer: x ← x + GLA(SRMSNorm(x)); x ← x + SGLU(SRMSNorm(x));
//! then a final SRMSNorm and the LM head (ALGORITHMS.md §2).
//!
//! The residual stream x is f32; activations and weights are bf16; every product accumulates
//! in f32. Buffers named here are persistent (the backend keeps them between graphs: weights,
//! per-layer decode states, token ids, positions, logits); everything else is an intermediate
//! of the step, placed by the graph's memory plan.

use tessel_package::DType;

use super::config::ModelConfig;
use super::decay::{layer_slopes, Schedule};
use super::weights::{expected, Stored, Weights};
use crate::backend::Backend;
use crate::graph::{Access, Buf, Graph, KernelRef};
use crate::ModelError;

/// Tile sizes and split factors: the constants each call is specialised with. The interpreter
/// wants small tiles (it is O(tile) per program); the GPU the swept ones.
#[derive(Debug, Clone)]
pub struct Tiles {
    /// BM, BN, BK of the prefill projections (`linear`, `linear_residual`) and of `sglu` (BN/2).
    pub linear: [usize; 3],
    /// BM, BN, BK and warps of the decode projections (`mixer_qkvu_norm`, `mixer_gate_out`,
    /// `sglu_norm`, `linear_residual_gemv`): GEMV schedules over the whole of K, so BN is small
    /// enough for N/BN programs to fill the GPU. BN divides the head dim.
    pub gemv: [usize; 4],
    /// The same for the decode step's LM head (`linear_norm`; N is the vocabulary).
    pub head: [usize; 4],
    /// Tokens per `mixer_qkv` program.
    pub qkv: usize,
    /// Lightning's block (None: the kernels' default, 64, the runtime's `BLOCK`).
    pub lightning_block: Option<usize>,
    /// Lightning segments per (sequence, head) for a prefill of n tokens whose one segment
    /// launches `programs` programs (B·H·⌈E/64⌉).
    pub lightning_segments: fn(usize, usize) -> usize,
    /// BV of `argmax`.
    pub argmax: usize,
}

impl Tiles {
    /// Small tiles that still cut every test shape into several programs and blocks.
    pub fn interpreter() -> Self {
        Self {
            linear: [16, 32, 16],
            gemv: [4, 8, 16, 1],
            head: [4, 16, 16, 1],
            qkv: 8,
            lightning_block: Some(16),
            lightning_segments: |_, n| n.div_ceil(16).clamp(1, 2),
            argmax: 32,
        }
    }

    /// The GPU's: the swept matmul tiles; decoding, one-warp 16×16 GEMV tiles (the smallest
    /// that mma.sync carries; the 385M projections launch 64 to 256 programs) and a 16×64 LM
    /// head tile (1000 programs at a 64k vocabulary).
    pub fn gpu() -> Self {
        Self {
            linear: [128, 128, 64],
            gemv: [16, 16, 128, 1],
            head: [16, 64, 128, 4],
            qkv: 16,
            lightning_block: None,
            // The runtime's rule for an H100/H200: 132 SMs × 2 resident programs.
            lightning_segments: |programs, n| {
                tessel_runtime::lightning::segments_for(264, programs, n)
            },
            argmax: 1024,
        }
    }
}

pub use crate::batch::Choice;

/// Which share of a tensor-parallel group a model is ([`Transnormer::rank_model`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tp {
    /// Ranks of the group (1: the unsplit model, no collectives).
    pub ranks: usize,
    /// The token mixer's full inner width H·HD, over which its SRMSNorm is taken.
    pub hidden: usize,
}

/// A model: its configuration, decay slopes and how its calls are tiled.
#[derive(Debug, Clone)]
pub struct Transnormer {
    /// The widths this model computes: a tensor-parallel rank's are its share.
    pub cfg: ModelConfig,
    pub tiles: Tiles,
    pub choice: Choice,
    pub tp: Tp,
}

pub(super) fn pow2(n: usize) -> usize {
    n.next_power_of_two()
}

pub(super) fn s(v: usize) -> String {
    v.to_string()
}

pub use crate::batch::Names;
pub(super) use crate::graph::{persistent as p, view};

pub(super) const T: DType = DType::Bf16;
pub(super) const F: DType = DType::F32;
pub(super) const I: DType = DType::I32;
pub(super) use Access::{Read as R, ReadWrite as RW, Write as W};

impl Transnormer {
    pub fn new(cfg: ModelConfig, tiles: Tiles) -> Self {
        let tp = Tp {
            ranks: 1,
            hidden: cfg.hidden,
        };
        Self {
            cfg,
            tiles,
            choice: Choice::Greedy,
            tp,
        }
    }

    /// Uploads the weights (bf16 kept as stored; f16/f32 converted) and the decay slopes.
    pub fn load(&self, be: &mut dyn Backend, weights: &Weights) -> Result<(), ModelError> {
        let c = &self.cfg;
        for (name, shape) in expected(c) {
            let t = weights
                .tensor(&name)
                .ok_or_else(|| ModelError::Input(format!("weights lack `{name}`")))?;
            let numel: usize = shape.iter().product();
            // θ multiplies positions in the thousands: keep it f32.
            let dtype = if name.ends_with("lrpe.theta") { F } else { T };
            be.persistent(&name, dtype, numel)?;
            if dtype == T && t.dtype == Stored::Bf16 {
                be.write_bytes(&name, t.bytes)?;
            } else {
                be.write(&name, &t.to_f64())?;
            }
        }
        for l in 0..c.layers {
            let slopes = layer_slopes(Schedule::Released, c.heads, l, c.layers);
            be.persistent(&Names::slope(l), F, c.heads)?;
            be.write(&Names::slope(l), &slopes)?;
        }
        be.persistent(Names::NO_THETA, F, c.heads * c.head_dim)?;
        Ok(())
    }

    pub(super) fn k(
        &self,
        source: &'static str,
        name: &'static str,
        consts: &[(&str, String)],
    ) -> KernelRef {
        KernelRef::new(source, name, consts)
    }

    pub(super) fn lightning(
        &self,
        name: &'static str,
        layer: usize,
        extra: &[(&str, String)],
    ) -> KernelRef {
        let mut c = vec![
            ("D", s(self.cfg.key_dim(layer))),
            ("E", s(self.cfg.head_dim)),
            ("T", "bf16".to_string()),
        ];
        if let Some(b) = self.tiles.lightning_block {
            if name != "lightning_attention_decode" {
                c.push(("BLK", s(b)));
            }
        }
        c.extend(extra.iter().cloned());
        self.k("lightning_attention", name, &c)
    }

    pub(super) fn srmsnorm(&self, g: &mut Graph, label: String, x: &Buf, y: &Buf, rows: usize) {
        let d = self.cfg.dim;
        let k = self.k("srmsnorm", "srmsnorm", &[("BM", s(1)), ("BD", s(pow2(d)))]);
        g.call(
            label,
            k,
            vec![view(x, F, &[rows, d], R), view(y, T, &[rows, d], W)],
        );
    }

    /// y (M, N) = x (M, K) · wᵀ; `residual`: y is the f32 stream and the product is added.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn linear(
        &self,
        g: &mut Graph,
        label: String,
        x: &Buf,
        w: &str,
        y: &Buf,
        [m, n, k]: [usize; 3],
        out: DType,
        residual: bool,
    ) {
        let [bm, bn, bk] = self.tiles.linear;
        let tiles = [("BM", s(bm)), ("BN", s(bn)), ("BK", s(bk))];
        let args = vec![
            view(x, T, &[m, k], R),
            view(&p(w), T, &[n, k], R),
            view(y, out, &[m, n], if residual { RW } else { W }),
        ];
        let kernel = if residual {
            self.k("linear", "linear_residual", &tiles)
        } else {
            let mut c = tiles.to_vec();
            c.push(("TO", out.name().to_string()));
            self.k("linear", "linear", &c)
        };
        g.call(label, kernel, args);
    }

    /// The constants of a decode projection's GEMV tile.
    pub(super) fn gemv_tiles(&self, [bm, bn, bk, nw]: [usize; 4]) -> Vec<(&'static str, String)> {
        vec![("BM", s(bm)), ("BN", s(bn)), ("BK", s(bk)), ("NW", s(nw))]
    }

    pub(super) fn theta(&self, layer: usize) -> String {
        if self.cfg.lrpe[layer] {
            format!("model.layers.{layer}.token_mixer.lrpe.theta")
        } else {
            Names::NO_THETA.to_string()
        }
    }

    /// q, k, v of a layer from qkvu, for b sequences of n tokens at positions pos0[b] + t.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn mixer_qkv(
        &self,
        g: &mut Graph,
        l: usize,
        qkvu: &Buf,
        pos0: &str,
        [q, k, v]: [&Buf; 3],
        b: usize,
        n: usize,
    ) {
        let c = &self.cfg;
        let (h, hd, kd) = (c.heads, c.head_dim, c.key_dim(l));
        let consts = [
            ("BN", s(self.tiles.qkv)),
            ("HD", s(hd)),
            ("LRPE", c.lrpe[l].to_string()),
        ];
        g.call(
            format!(
                "layer {l} q k v (SiLU{})",
                if c.lrpe[l] { ", LRPE" } else { "" }
            ),
            self.k("transnormer_mixer", "mixer_qkv", &consts),
            vec![
                view(qkvu, T, &[b, n, 4 * h, hd], R),
                view(&p(&self.theta(l)), F, &[h, hd], R),
                view(&p(pos0), I, &[b], R),
                view(q, T, &[b, h, n, kd], W),
                view(k, T, &[b, h, n, kd], W),
                view(v, T, &[b, h, n, hd], W),
            ],
        );
    }

    #[allow(clippy::too_many_arguments)]
    pub(super) fn mixer_gate(
        &self,
        g: &mut Graph,
        l: usize,
        o: &Buf,
        qkvu: &Buf,
        y: &Buf,
        b: usize,
        n: usize,
    ) {
        let (h, hd) = (self.cfg.heads, self.cfg.head_dim);
        g.call(
            format!("layer {l} norm and gate"),
            self.k(
                "transnormer_mixer",
                "mixer_gate",
                &[("BH", s(pow2(h))), ("HD", s(hd))],
            ),
            vec![
                view(o, T, &[b, h, n, hd], R),
                view(qkvu, T, &[b, n, 4 * h, hd], R),
                view(y, T, &[b, n, h, hd], W),
            ],
        );
    }
}
