//! LongNet's prefill and decode graphs.

use super::model::*;
use super::weights::{layer, EMBED};
use crate::backend::Backend;
use crate::graph::{Buf, CallArg, Graph};
use crate::transnormer::model::Choice;
use crate::transnormer::Logits;
use crate::ModelError;

impl LongNet {
    fn embed(&self, g: &mut Graph, tokens: &str, x: &Buf, m: usize) {
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
                view(&p(EMBED), T, &[c.vocab, c.dim], R),
                view(x, F, &[m, c.dim], W),
                CallArg::Scalar(scale),
            ],
        );
    }

    /// x ← x + fc2(LN_ffn(GELU(fc1(LN(x))))) over m rows.
    fn ffn(&self, g: &mut Graph, l: usize, x: &Buf, m: usize, decode: bool) {
        let c = &self.cfg;
        let h = g.transient(format!("layer {l} ffn input"), T, m * c.dim);
        let prefix = layer(l, "final_layer_norm");
        self.layernorm(
            g,
            format!("layer {l} final_layer_norm"),
            &prefix,
            (x, F),
            &h,
            m,
            c.dim,
        );
        let f = g.transient(format!("layer {l} fc1"), T, m * c.ffn);
        let shape = [m, c.ffn, c.dim];
        self.linear(
            g,
            format!("layer {l} fc1 + gelu"),
            &h,
            &layer(l, "ffn.fc1"),
            &f,
            shape,
            (true, false, decode),
        );
        let f = if c.subln {
            let fl = g.transient(format!("layer {l} ffn_layernorm"), T, m * c.ffn);
            let prefix = layer(l, "ffn.ffn_layernorm");
            self.layernorm(
                g,
                format!("layer {l} ffn_layernorm"),
                &prefix,
                (&f, T),
                &fl,
                m,
                c.ffn,
            );
            fl
        } else {
            f
        };
        let shape = [m, c.dim, c.ffn];
        self.linear(
            g,
            format!("layer {l} fc2 + residual"),
            &f,
            &layer(l, "ffn.fc2"),
            x,
            shape,
            (false, true, decode),
        );
    }

    /// Causal dilated attention of q, k, v (b, H, n, hd) into o, every pattern merged by LSE.
    #[allow(clippy::too_many_arguments)]
    fn attention(
        &self,
        g: &mut Graph,
        l: usize,
        [q, k, v]: [&Buf; 3],
        o: &Buf,
        b: usize,
        n: usize,
    ) {
        let c = &self.cfg;
        let (h, hd) = (c.heads, c.head_dim);
        let shape = [b, h, n, hd];
        let lse = g.transient(format!("layer {l} lse"), F, b * h * n);
        let launches = self.launches();
        let first_writes = launches[0].0.r == 1;
        let [bm, bn] = self.tiles.attention;
        if !first_writes {
            g.call(
                format!("layer {l} attention init"),
                self.k("longnet", "attention_init", &[("BM", s(bm)), ("D", s(hd))]),
                vec![view(o, T, &shape, W), view(&lse, F, &[b, h, n], W)],
            );
        }
        for (i, &launch) in launches.iter().enumerate() {
            let first = i == 0 && first_writes;
            let consts = [
                ("BM", s(bm)),
                ("BN", s(bn)),
                ("D", s(hd)),
                ("CAUSAL", "true".to_string()),
                ("FIRST", first.to_string()),
            ];
            let mut args = vec![
                view(q, T, &shape, R),
                view(k, T, &shape, R),
                view(v, T, &shape, R),
                view(o, T, &shape, RW),
                view(&lse, F, &[b, h, n], RW),
            ];
            args.extend(self.pattern_args(launch));
            let (pat, _) = launch;
            g.call(
                format!("layer {l} dilated attention (w {}, r {})", pat.w, pat.r),
                self.k("dilated_attention", "dilated_attention_fwd", &consts),
                args,
            );
        }
    }

    /// The self-attention block of a prefill: x ← x + out_proj(LN_sub(attention(LN(x)))), with
    /// k and v also written into rows 0..n of the layer's KV cache (capacity `cap`).
    fn attention_prefill(&self, g: &mut Graph, l: usize, x: &Buf, b: usize, n: usize, cap: usize) {
        let c = &self.cfg;
        let (m, h, hd) = (b * n, c.heads, c.head_dim);
        let hn = g.transient(format!("layer {l} attention input"), T, m * c.dim);
        let prefix = layer(l, "self_attn_layer_norm");
        self.layernorm(
            g,
            format!("layer {l} self_attn_layer_norm"),
            &prefix,
            (x, F),
            &hn,
            m,
            c.dim,
        );
        let [bm, bk] = self.tiles.heads;
        let consts = [("BM", s(bm)), ("BK", s(bk)), ("HD", s(hd))];
        let mut qkv = Vec::new();
        for (proj, cache) in [("q", None), ("k", Some("k")), ("v", Some("v"))] {
            let y = g.transient(format!("layer {l} {proj}"), T, b * h * n * hd);
            let w = layer(l, &format!("self_attn.{proj}_proj"));
            let mut args = vec![
                view(&hn, T, &[b, n, c.dim], R),
                view(&p(&format!("{w}.weight")), T, &[h, hd, c.dim], R),
                view(&p(&format!("{w}.bias")), T, &[h, hd], R),
                view(&y, T, &[b, h, n, hd], W),
            ];
            let kernel = match cache {
                Some(kind) => {
                    let name = Names::cache(kind, l, b, cap);
                    args.push(view(&p(&name), T, &[b, h, cap, hd], RW));
                    self.k("longnet", "linear_heads_cached", &consts)
                }
                None => self.k("longnet", "linear_heads", &consts),
            };
            g.call(format!("layer {l} {proj}_proj"), kernel, args);
            qkv.push(y);
        }
        let o = g.transient(format!("layer {l} attention"), T, b * h * n * hd);
        self.attention(g, l, [&qkv[0], &qkv[1], &qkv[2]], &o, b, n);
        let a = g.transient(format!("layer {l} attention tokens"), T, m * c.dim);
        self.heads_norm(g, l, &o, &a, b, n);
        let shape = [m, c.dim, c.dim];
        let wo = layer(l, "self_attn.out_proj");
        self.linear(
            g,
            format!("layer {l} out_proj + residual"),
            &a,
            &wo,
            x,
            shape,
            (false, true, false),
        );
    }

    /// The self-attention block of one decode step over the KV caches.
    fn attention_decode(&self, g: &mut Graph, l: usize, x: &Buf, b: usize, cap: usize) {
        let c = &self.cfg;
        let (h, hd) = (c.heads, c.head_dim);
        let hn = g.transient(format!("layer {l} attention input"), T, b * c.dim);
        let prefix = layer(l, "self_attn_layer_norm");
        self.layernorm(
            g,
            format!("layer {l} self_attn_layer_norm"),
            &prefix,
            (x, F),
            &hn,
            b,
            c.dim,
        );
        let mut qkv = Vec::new();
        for proj in ["q", "k", "v"] {
            let y = g.transient(format!("layer {l} {proj}"), T, b * c.dim);
            let w = layer(l, &format!("self_attn.{proj}_proj"));
            let shape = [b, c.dim, c.dim];
            self.linear(
                g,
                format!("layer {l} {proj}_proj"),
                &hn,
                &w,
                &y,
                shape,
                (false, false, true),
            );
            qkv.push(y);
        }
        let o = g.transient(format!("layer {l} attention"), T, b * c.dim);
        let lse = g.transient(format!("layer {l} lse"), F, b * h);
        for (i, &launch) in self.launches().iter().enumerate() {
            let consts = [
                ("BN", s(self.tiles.decode_attention)),
                ("D", s(hd)),
                ("FIRST", (i == 0).to_string()),
            ];
            let mut args = vec![
                view(&qkv[0], T, &[b, h, hd], R),
                view(&qkv[1], T, &[b, h, hd], R),
                view(&qkv[2], T, &[b, h, hd], R),
                view(&p(&Names::cache("k", l, b, cap)), T, &[b, h, cap, hd], RW),
                view(&p(&Names::cache("v", l, b, cap)), T, &[b, h, cap, hd], RW),
                view(&p(&Names::pos(b)), I, &[b], R),
                view(&o, T, &[b, h, hd], RW),
                view(&lse, F, &[b, h], RW),
            ];
            args.extend(self.pattern_args(launch));
            g.call(
                format!(
                    "layer {l} dilated decode (w {}, r {})",
                    launch.0.w, launch.0.r
                ),
                self.k("dilated_attention", "dilated_attention_decode", &consts),
                args,
            );
        }
        let a = g.transient(format!("layer {l} attention tokens"), T, b * c.dim);
        self.heads_norm(g, l, &o, &a, b, 1);
        let shape = [b, c.dim, c.dim];
        let wo = layer(l, "self_attn.out_proj");
        self.linear(
            g,
            format!("layer {l} out_proj + residual"),
            &a,
            &wo,
            x,
            shape,
            (false, true, true),
        );
    }

    /// Creates the persistent buffers of a batch of `b` with a KV cache of `cap` positions.
    pub fn batch_buffers(
        &self,
        be: &mut dyn Backend,
        b: usize,
        cap: usize,
    ) -> Result<(), ModelError> {
        let c = &self.cfg;
        for l in 0..c.layers {
            for kind in ["k", "v"] {
                be.persistent(
                    &Names::cache(kind, l, b, cap),
                    T,
                    b * c.heads * cap * c.head_dim,
                )?;
            }
        }
        be.persistent(&Names::next(b), I, b)?;
        be.persistent(&Names::pos(b), I, b)?;
        be.persistent(&Names::logits(b), F, b * c.vocab)
    }

    /// The prefill of b prompts of n tokens each (`prompt.{b}x{n}`), filling the KV caches of
    /// capacity `cap` ≥ n.
    pub fn prefill_graph(&self, b: usize, n: usize, cap: usize, logits: Logits) -> Graph {
        let c = &self.cfg;
        let m = b * n;
        let mut g = Graph::default();
        let x = g.transient("x (residual)", F, m * c.dim);
        self.embed(&mut g, &Names::prompt(b, n), &x, m);
        for l in 0..c.layers {
            self.attention_prefill(&mut g, l, &x, b, n, cap);
            self.ffn(&mut g, l, &x, m, false);
        }
        match logits {
            Logits::Last => {
                let hl = g.transient("layer_norm (last positions)", T, b * c.dim);
                g.call(
                    "layer_norm",
                    self.k("layernorm", "layernorm_last", &[("BD", s(pow2(c.dim)))]),
                    vec![
                        view(&x, F, &[b, n, c.dim], R),
                        view(&p("layer_norm.weight"), T, &[c.dim], R),
                        view(&p("layer_norm.bias"), T, &[c.dim], R),
                        view(&hl, T, &[b, c.dim], W),
                        CallArg::Scalar(c.eps),
                    ],
                );
                self.head(&mut g, &hl, &p(&Names::logits(b)), b);
                self.choose(&mut g, b, &Names::pos(b), n - 1);
            }
            Logits::All => {
                let h = g.transient("layer_norm", T, m * c.dim);
                self.layernorm(
                    &mut g,
                    "layer_norm".into(),
                    "layer_norm",
                    (&x, F),
                    &h,
                    m,
                    c.dim,
                );
                self.head(&mut g, &h, &p(&Names::all_logits(b, n)), m);
            }
        }
        g
    }

    /// One decode step of b sequences: consumes `next.b{b}` at positions `pos.b{b}`, appends
    /// to the KV caches, writes `logits.b{b}`, the next tokens, and advances the positions.
    pub fn decode_graph(&self, b: usize, cap: usize) -> Graph {
        let c = &self.cfg;
        let mut g = Graph::default();
        let x = g.transient("x (residual)", F, b * c.dim);
        self.embed(&mut g, &Names::next(b), &x, b);
        for l in 0..c.layers {
            self.attention_decode(&mut g, l, &x, b, cap);
            self.ffn(&mut g, l, &x, b, true);
        }
        let h = g.transient("layer_norm", T, b * c.dim);
        self.layernorm(
            &mut g,
            "layer_norm".into(),
            "layer_norm",
            (&x, F),
            &h,
            b,
            c.dim,
        );
        self.head(&mut g, &h, &p(&Names::logits(b)), b);
        self.choose(&mut g, b, &Names::pos(b), 0);
        g.call(
            "advance positions",
            self.k("sampling", "positions_advance", &[]),
            vec![view(&p(&Names::pos(b)), I, &[b], RW)],
        );
        g
    }

    /// Every kernel variant the graphs call (both endings of a prefill, decode; greedy and
    /// sampling): what `tessel compile-model` builds.
    pub fn kernels(&self) -> Vec<crate::graph::KernelRef> {
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
            greedy.prefill_graph(1, 1, 2, Logits::Last),
            greedy.prefill_graph(1, 1, 2, Logits::All),
            greedy.decode_graph(1, 2),
            sampling.prefill_graph(1, 1, 2, Logits::Last),
        ];
        let mut set: Vec<_> = graphs
            .iter()
            .flat_map(|g| g.graph.node_weights().filter_map(|c| c.kernel().cloned()))
            .collect();
        set.sort();
        set.dedup();
        set
    }
}
