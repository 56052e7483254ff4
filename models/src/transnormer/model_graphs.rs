//! The two graphs of a model: prefill (b prompts of n tokens, left-padded) and a decode step.

use super::model::Choice;
use super::model::*;
use crate::backend::Backend;
use crate::batch;
use crate::graph::{Buf, CallArg, Collective, Graph, KernelRef};
use crate::ModelError;

/// What a prefill ends with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Logits {
    /// Only the last position of each sequence (what generation needs), into `logits.b{b}`,
    /// and its argmax into `next.b{b}`.
    Last,
    /// Every position, into `logits.{b}x{n}` (tests and scoring).
    All,
}

/// The intermediates one layer of a step uses.
struct LayerBufs {
    x: Buf,
    h: Buf,
    qkvu: Buf,
    y: Buf,
    g: Buf,
}

impl Transnormer {
    pub(super) fn embed(&self, g: &mut Graph, tokens: &str, x: &Buf, m: usize) {
        let c = &self.cfg;
        let scale = if c.scale_embedding {
            (c.dim as f64).sqrt()
        } else {
            1.0
        };
        g.call(
            "embedding",
            self.k("embedding", "embedding", &[("BD", s(pow2(c.dim)))]),
            vec![
                view(&p(tokens), I, &[m], R),
                view(&p("model.embed_tokens.weight"), T, &[c.vocab, c.dim], R),
                view(x, F, &[m, c.dim], W),
                CallArg::Scalar(scale),
            ],
        );
    }

    /// Layer l's intermediates: its own, so that the plan can place each by its lifetime; the
    /// residual stream x is one buffer through the whole step.
    fn layer_bufs(&self, g: &mut Graph, x: &Buf, l: usize, m: usize) -> LayerBufs {
        let c = &self.cfg;
        LayerBufs {
            x: x.clone(),
            h: g.transient(format!("layer {l} normed"), T, m * c.dim),
            qkvu: g.transient(format!("layer {l} qkvu"), T, m * 4 * c.hidden),
            y: g.transient(format!("layer {l} gated attention"), T, m * c.hidden),
            g: g.transient(format!("layer {l} sglu gate"), T, m * c.glu),
        }
    }

    /// The channel mixer of a prefill: x ← x + ((h W1ᵀ) ⊙ (h W2ᵀ)) W3ᵀ, h = SRMSNorm(x).
    fn channel_mixer(&self, g: &mut Graph, l: usize, bufs: &LayerBufs, m: usize) {
        let c = &self.cfg;
        let w = |n: &str| format!("model.layers.{l}.channel_mixer.{n}.weight");
        self.srmsnorm(g, format!("layer {l} channel norm"), &bufs.x, &bufs.h, m);
        let [bm, bn, bk] = self.tiles.linear;
        let tiles = [("BM", s(bm)), ("BN", s(bn / 2)), ("BK", s(bk))];
        g.call(
            format!("layer {l} sglu"),
            self.k("sglu", "sglu", &tiles),
            vec![
                view(&bufs.h, T, &[m, c.dim], R),
                view(&p(&w("l1")), T, &[c.glu, c.dim], R),
                view(&p(&w("l2")), T, &[c.glu, c.dim], R),
                view(&bufs.g, T, &[m, c.glu], W),
            ],
        );
        let shape = [m, c.dim, c.glu];
        if self.tp.ranks > 1 {
            let z = g.transient(format!("layer {l} l3 partial"), F, m * c.dim);
            let label = format!("layer {l} l3 (partial)");
            self.linear(g, label, &bufs.g, &w("l3"), &z, shape, F, false);
            self.all_reduce_add(g, l, &bufs.x, &z, None, m);
            return;
        }
        let label = format!("layer {l} l3 + residual");
        self.linear(g, label, &bufs.g, &w("l3"), &bufs.x, shape, F, true);
    }

    /// The token mixer of a prefill: Lightning over the (left-padded) prompts; the final state
    /// of each (sequence, head) goes to the persistent decode state.
    fn token_mixer_prefill(&self, g: &mut Graph, l: usize, bufs: &LayerBufs, b: usize, n: usize) {
        let c = &self.cfg;
        let m = b * n;
        let (h, hd, kd) = (c.heads, c.head_dim, c.key_dim(l));
        let wq = format!("model.layers.{l}.token_mixer.qkvu_proj.weight");
        let wo = format!("model.layers.{l}.token_mixer.out_proj.weight");
        self.srmsnorm(g, format!("layer {l} token norm"), &bufs.x, &bufs.h, m);
        let shape = [m, 4 * c.hidden, c.dim];
        self.linear(
            g,
            format!("layer {l} qkvu"),
            &bufs.h,
            &wq,
            &bufs.qkvu,
            shape,
            T,
            false,
        );
        let q = g.transient(format!("layer {l} q"), T, b * h * n * kd);
        let k = g.transient(format!("layer {l} k"), T, b * h * n * kd);
        let v = g.transient(format!("layer {l} v"), T, b * h * n * hd);
        let o = g.transient(format!("layer {l} o"), T, b * h * n * hd);
        self.mixer_qkv(g, l, &bufs.qkvu, &Names::pos0(b, n), [&q, &k, &v], b, n);
        let segs = (self.tiles.lightning_segments)(b * h * hd.div_ceil(64), n);
        let seg = g.transient(
            format!("layer {l} segment states"),
            F,
            b * h * segs * kd * hd,
        );
        let slope = p(&Names::slope(l));
        let seg_shape = [b, h, segs, kd, hd];
        g.call(
            format!("layer {l} lightning segment states"),
            self.lightning("lightning_attention_segment_state", l, &[]),
            vec![
                view(&k, T, &[b, h, n, kd], R),
                view(&v, T, &[b, h, n, hd], R),
                view(&slope, F, &[h], R),
                view(&seg, F, &seg_shape, W),
            ],
        );
        g.call(
            format!("layer {l} lightning"),
            self.lightning("lightning_attention_fwd", l, &[]),
            vec![
                view(&q, T, &[b, h, n, kd], R),
                view(&k, T, &[b, h, n, kd], R),
                view(&v, T, &[b, h, n, hd], R),
                view(&slope, F, &[h], R),
                view(&seg, F, &seg_shape, R),
                view(&o, T, &[b, h, n, hd], W),
            ],
        );
        g.call(
            format!("layer {l} lightning final state"),
            self.lightning("lightning_attention_state", l, &[]),
            vec![
                view(&k, T, &[b, h, n, kd], R),
                view(&slope, F, &[h], R),
                view(&seg, F, &seg_shape, R),
                view(&p(&Names::state(l, b)), F, &[b, h, kd, hd], W),
            ],
        );
        let shape = [m, c.dim, c.hidden];
        if self.tp.ranks > 1 {
            let ss = g.transient(format!("layer {l} partial Σo²"), F, m);
            g.call(
                format!("layer {l} gate (unnormalised) + Σo²"),
                self.k(
                    "transnormer_tp",
                    "mixer_gate_partial",
                    &[("BH", s(pow2(h))), ("HD", s(hd))],
                ),
                vec![
                    view(&o, T, &[b, h, n, hd], R),
                    view(&bufs.qkvu, T, &[b, n, 4 * h, hd], R),
                    view(&bufs.y, T, &[b, n, h, hd], W),
                    view(&ss, F, &[b, n], W),
                ],
            );
            let z = g.transient(format!("layer {l} out_proj partial"), F, m * c.dim);
            let label = format!("layer {l} out_proj (partial)");
            self.linear(g, label, &bufs.y, &wo, &z, shape, F, false);
            self.all_reduce_add(g, l, &bufs.x, &z, Some(&ss), m);
            return;
        }
        self.mixer_gate(g, l, &o, &bufs.qkvu, &bufs.y, b, n);
        let label = format!("layer {l} out_proj + residual");
        self.linear(g, label, &bufs.y, &wo, &bufs.x, shape, F, true);
    }

    /// The end of a tensor-parallel mixer: the all-reduce of the partial product z (m, D) and,
    /// for the token mixer, of its partial Σo² (m), then x ← x + z (scaled by the norm factor).
    pub(super) fn all_reduce_add(
        &self,
        g: &mut Graph,
        l: usize,
        x: &Buf,
        z: &Buf,
        ss: Option<&Buf>,
        m: usize,
    ) {
        let d = self.cfg.dim;
        let zv = |a| match view(z, F, &[m, d], a) {
            CallArg::Tensor(v) => v,
            CallArg::Scalar(_) => unreachable!(),
        };
        let mut bufs = vec![zv(RW)];
        let which = if ss.is_some() { "out_proj" } else { "l3" };
        if let Some(ss) = ss {
            if let CallArg::Tensor(v) = view(ss, F, &[m], RW) {
                bufs.push(v);
            }
        }
        g.collective(
            format!("layer {l} all-reduce {which}"),
            Collective::AllReduceSum,
            self.tp.ranks,
            bufs,
        );
        let bd = ("BD", s(pow2(d)));
        let (x, z) = (view(x, F, &[m, d], RW), view(z, F, &[m, d], R));
        match ss {
            Some(ss) => g.call(
                format!("layer {l} norm factor + residual"),
                self.k("transnormer_tp", "residual_add_rms", &[("BM", s(1)), bd]),
                vec![
                    x,
                    z,
                    view(ss, F, &[m], R),
                    CallArg::Scalar(self.tp.hidden as f64),
                ],
            ),
            None => g.call(
                format!("layer {l} residual"),
                self.k("transnormer_tp", "residual_add", &[("BM", s(1)), bd]),
                vec![x, z],
            ),
        }
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

    /// Creates the persistent buffers a batch of `b` needs (states, tokens, positions, logits).
    pub fn batch_buffers(&self, be: &mut dyn Backend, b: usize) -> Result<(), ModelError> {
        let c = &self.cfg;
        for l in 0..c.layers {
            be.persistent(
                &Names::state(l, b),
                F,
                b * c.heads * c.key_dim(l) * c.head_dim,
            )?;
        }
        be.persistent(&Names::next(b), I, b)?;
        be.persistent(&Names::pos(b), I, b)?;
        be.persistent(&Names::logits(b), F, b * c.vocab)
    }

    /// The prefill of b prompts of n tokens (`prompt.{b}x{n}`, left-padded, with row 0 of
    /// sequence i at position `pos0.{b}x{n}`[i] ≤ 0).
    pub fn prefill_graph(&self, b: usize, n: usize, logits: Logits) -> Graph {
        let c = &self.cfg;
        let m = b * n;
        let mut g = Graph::default();
        let x = g.transient("x (residual)", F, m * c.dim);
        self.embed(&mut g, &Names::prompt(b, n), &x, m);
        for l in 0..c.layers {
            let bufs = self.layer_bufs(&mut g, &x, l, m);
            self.token_mixer_prefill(&mut g, l, &bufs, b, n);
            self.channel_mixer(&mut g, l, &bufs, m);
        }
        match logits {
            Logits::Last => {
                let hl = g.transient("final norm (last positions)", T, b * c.dim);
                g.call(
                    "final norm",
                    self.k("srmsnorm", "srmsnorm_last", &[("BD", s(pow2(c.dim)))]),
                    vec![view(&x, F, &[b, n, c.dim], R), view(&hl, T, &[b, c.dim], W)],
                );
                let out = p(&Names::logits(b));
                let shape = [b, c.vocab, c.dim];
                self.linear(
                    &mut g,
                    "lm_head".into(),
                    &hl,
                    "lm_head.weight",
                    &out,
                    shape,
                    F,
                    false,
                );
                self.choose(&mut g, b, &Names::pos0(b, n), n - 1);
            }
            Logits::All => {
                let h = g.transient("final norm", T, m * c.dim);
                self.srmsnorm(&mut g, "final norm".into(), &x, &h, m);
                let out = p(&Names::all_logits(b, n));
                let shape = [m, c.vocab, c.dim];
                self.linear(
                    &mut g,
                    "lm_head".into(),
                    &h,
                    "lm_head.weight",
                    &out,
                    shape,
                    F,
                    false,
                );
            }
        }
        g
    }
}

impl Transnormer {
    /// Every kernel variant the model's graphs call (prefill with either ending, decode), in
    /// order: what `tessel compile-model` builds. Batch and sequence sizes, split and segment
    /// counts are run-time shape symbols, so one graph of each kind names them all.
    /// Both ways of choosing tokens are included, so one package serves greedy and sampling.
    pub fn kernels(&self) -> Vec<KernelRef> {
        let mut greedy = self.clone();
        greedy.choice = Choice::Greedy;
        let mut sampling = self.clone();
        sampling.choice = Choice::Sample {
            temperature: 1.0,
            top_k: 0,
            top_p: 1.0,
            seed: 0,
        };
        let graphs = [
            greedy.prefill_graph(1, 1, Logits::Last),
            greedy.prefill_graph(1, 1, Logits::All),
            greedy.decode_graph(1),
            sampling.prefill_graph(1, 1, Logits::Last),
        ];
        let mut set: Vec<KernelRef> = graphs
            .iter()
            .flat_map(|g| g.graph.node_weights().filter_map(|c| c.kernel().cloned()))
            .collect();
        set.sort();
        set.dedup();
        set
    }
}
