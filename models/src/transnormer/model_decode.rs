//! The decode step: one token per sequence through every layer, five launches a layer.
//!
//! Decoding has a few rows (the batch), so every projection costs its weight read, and at
//! batch 1 the step's other fixed cost is the number of launches. Every pointwise operation
//! therefore rides on a projection: each norm is taken by the projection that consumes it (every
//! program recomputes the norm of its rows from the few-KiB f32 residual row), the q/k SiLU and
//! LRPE are the qkvu projection's epilogue, the output gate is out_proj's prologue, and the
//! residual adds are the epilogues of out_proj and l3. The projections are GEMV schedules over
//! the whole of K (one program per small tile of the output), so no partial sum reaches memory
//! and no reduction launches. Per layer:
//!
//! 1. `mixer_qkvu_norm`: h = SRMSNorm(x); [q,k,v,u] = h·W_qkvuᵀ; q,k ← SiLU (+ LRPE).
//! 2. `lightning_attention_decode`: S ← λS + kᵀv, o = qS (per sequence and head).
//! 3. `mixer_gate_out`: x ← x + (SRMSNorm(o) ⊙ u)·W_oᵀ.
//! 4. `sglu_norm`: h = SRMSNorm(x); g = (h W1ᵀ) ⊙ (h W2ᵀ).
//! 5. `linear_residual_gemv`: x ← x + g W3ᵀ.
//!
//! Each boundary is a true all-to-all dependence (a projection needs the whole row it reads, and
//! attention needs a head's whole q, k, v): without a grid-wide barrier or atomics in the
//! language, fewer launches would mean recomputing across programs.

use super::model::*;
use crate::graph::{Buf, Graph};

impl Transnormer {
    /// One layer of a decode step of b sequences on the residual stream x (f32, (b, D)).
    fn decode_layer(&self, g: &mut Graph, l: usize, x: &Buf, b: usize) {
        let c = &self.cfg;
        let (h, hd, kd) = (c.heads, c.head_dim, c.key_dim(l));
        let hidden = c.hidden;
        let lw = |n: &str| format!("model.layers.{l}.{n}.weight");
        let q = g.transient(format!("layer {l} q"), T, b * h * kd);
        let k = g.transient(format!("layer {l} k"), T, b * h * kd);
        let v = g.transient(format!("layer {l} v"), T, b * h * hd);
        let u = g.transient(format!("layer {l} u"), T, b * hidden);
        let o = g.transient(format!("layer {l} o"), T, b * hidden);
        let gate = g.transient(format!("layer {l} sglu gate"), T, b * c.glu);
        let mut consts = self.gemv_tiles(self.tiles.gemv);
        consts.push(("HD", s(hd)));
        consts.push(("LRPE", c.lrpe[l].to_string()));
        g.call(
            format!(
                "layer {l} norm + qkvu + SiLU{}",
                if c.lrpe[l] { " + LRPE" } else { "" }
            ),
            self.k("transnormer_mixer", "mixer_qkvu_norm", &consts),
            vec![
                view(x, F, &[b, c.dim], R),
                view(&p(&lw("token_mixer.qkvu_proj")), T, &[4 * hidden, c.dim], R),
                view(&p(&self.theta(l)), F, &[h, hd], R),
                view(&p(&Names::pos(b)), I, &[b], R),
                view(&q, T, &[b, h, kd], W),
                view(&k, T, &[b, h, kd], W),
                view(&v, T, &[b, h, hd], W),
                view(&u, T, &[b, h, hd], W),
            ],
        );
        g.call(
            format!("layer {l} lightning decode"),
            self.lightning("lightning_attention_decode", l, &[]),
            vec![
                view(&q, T, &[b, h, kd], R),
                view(&k, T, &[b, h, kd], R),
                view(&v, T, &[b, h, hd], R),
                view(&p(&Names::slope(l)), F, &[h], R),
                view(&p(&Names::state(l, b)), F, &[b, h, kd, hd], RW),
                view(&o, T, &[b, h, hd], W),
            ],
        );
        let tiles = self.gemv_tiles(self.tiles.gemv);
        if self.tp.ranks > 1 {
            self.decode_out_partial(g, l, x, [&o, &u], b);
        } else {
            g.call(
                format!("layer {l} norm ⊙ u + out_proj + residual"),
                self.k("transnormer_mixer", "mixer_gate_out", &tiles),
                vec![
                    view(&o, T, &[b, hidden], R),
                    view(&u, T, &[b, hidden], R),
                    view(&p(&lw("token_mixer.out_proj")), T, &[c.dim, hidden], R),
                    view(x, F, &[b, c.dim], RW),
                ],
            );
        }
        g.call(
            format!("layer {l} norm + sglu"),
            self.k("sglu", "sglu_norm", &tiles),
            vec![
                view(x, F, &[b, c.dim], R),
                view(&p(&lw("channel_mixer.l1")), T, &[c.glu, c.dim], R),
                view(&p(&lw("channel_mixer.l2")), T, &[c.glu, c.dim], R),
                view(&gate, T, &[b, c.glu], W),
            ],
        );
        let l3 = p(&lw("channel_mixer.l3"));
        if self.tp.ranks > 1 {
            let z = g.transient(format!("layer {l} l3 partial"), F, b * c.dim);
            g.call(
                format!("layer {l} l3 (partial)"),
                self.k("transnormer_tp", "linear_gemv", &tiles),
                vec![
                    view(&gate, T, &[b, c.glu], R),
                    view(&l3, T, &[c.dim, c.glu], R),
                    view(&z, F, &[b, c.dim], W),
                ],
            );
            self.all_reduce_add(g, l, x, &z, None, b);
            return;
        }
        g.call(
            format!("layer {l} l3 + residual"),
            self.k("linear", "linear_residual_gemv", &tiles),
            vec![
                view(&gate, T, &[b, c.glu], R),
                view(&l3, T, &[c.dim, c.glu], R),
                view(x, F, &[b, c.dim], RW),
            ],
        );
    }

    /// A tensor-parallel rank's decode token-mixer output: y = o ⊙ u with its partial Σo², the
    /// partial out_proj product, then the all-reduce and the normed residual add.
    fn decode_out_partial(&self, g: &mut Graph, l: usize, x: &Buf, [o, u]: [&Buf; 2], b: usize) {
        let c = &self.cfg;
        let hidden = c.hidden;
        let y = g.transient(format!("layer {l} gate (unnormalised)"), T, b * hidden);
        let ss = g.transient(format!("layer {l} partial Σo²"), F, b);
        let z = g.transient(format!("layer {l} out_proj partial"), F, b * c.dim);
        let [bm, _, bk, _] = self.tiles.gemv;
        g.call(
            format!("layer {l} gate (unnormalised) + Σo²"),
            self.k(
                "transnormer_tp",
                "gate_partial_rows",
                &[("BM", s(bm)), ("BK", s(bk))],
            ),
            vec![
                view(o, T, &[b, hidden], R),
                view(u, T, &[b, hidden], R),
                view(&y, T, &[b, hidden], W),
                view(&ss, F, &[b], W),
            ],
        );
        let wo = p(&format!("model.layers.{l}.token_mixer.out_proj.weight"));
        g.call(
            format!("layer {l} out_proj (partial)"),
            self.k(
                "transnormer_tp",
                "linear_gemv",
                &self.gemv_tiles(self.tiles.gemv),
            ),
            vec![
                view(&y, T, &[b, hidden], R),
                view(&wo, T, &[c.dim, hidden], R),
                view(&z, F, &[b, c.dim], W),
            ],
        );
        self.all_reduce_add(g, l, x, &z, Some(&ss), b);
    }

    /// One decode step of b sequences: consumes `next.b{b}` at positions `pos.b{b}`, advances
    /// the states and positions, writes `logits.b{b}` and the greedy choice into `next.b{b}`.
    /// Nothing in it depends on the host between steps, so it can be captured and replayed.
    pub fn decode_graph(&self, b: usize) -> Graph {
        let c = &self.cfg;
        let mut g = Graph::default();
        let x = g.transient("x (residual)", F, b * c.dim);
        self.embed(&mut g, &Names::next(b), &x, b);
        for l in 0..c.layers {
            self.decode_layer(&mut g, l, &x, b);
        }
        let mut consts = self.gemv_tiles(self.tiles.head);
        consts.push(("TO", "f32".to_string()));
        g.call(
            "final norm + lm_head",
            self.k("linear", "linear_norm", &consts),
            vec![
                view(&x, F, &[b, c.dim], R),
                view(&p("lm_head.weight"), T, &[c.vocab, c.dim], R),
                view(&p(&Names::logits(b)), F, &[b, c.vocab], W),
            ],
        );
        self.choose(&mut g, b, &Names::pos(b), 0);
        g.call(
            "advance positions",
            self.k("sampling", "positions_advance", &[]),
            vec![view(&p(&Names::pos(b)), I, &[b], RW)],
        );
        g
    }

    /// Kernel launches of a decode step: what one replay of the captured step costs in fixed
    /// overhead. 5 per layer, and 4 more: embedding, final norm + LM head, the choice, the
    /// positions.
    pub fn decode_launches(&self) -> usize {
        if self.tp.ranks > 1 {
            // The tensor-parallel layer: qkvu, Lightning, gate + Σo², out_proj, residual;
            // sglu, l3, residual (docs/models/tensor_parallel.md); its 2 all-reduces are not
            // kernel launches.
            return 8 * self.cfg.layers + 4;
        }
        5 * self.cfg.layers + 4
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::transnormer::config::ModelConfig;
    use crate::transnormer::Tiles;

    /// The 385M decode step's launch count stays where the fusions put it (it was 246 with
    /// split-K and separate reductions, norms and gates): CI fails if a change adds launches.
    #[test]
    fn decode_launches_stay_fused() {
        for (name, layers) in [("385m", 24), ("1b", 16)] {
            let cfg = ModelConfig::released(name).unwrap();
            let model = Transnormer::new(cfg, Tiles::gpu());
            for b in [1, 16, 64] {
                let g = model.decode_graph(b);
                assert_eq!(g.len(), model.decode_launches(), "{name} batch {b}");
            }
            assert!(model.decode_launches() <= 5 * layers + 4);
        }
        let cfg = ModelConfig::released("385m").unwrap();
        assert!(Transnormer::new(cfg, Tiles::gpu()).decode_graph(1).len() <= 124);
    }
}
