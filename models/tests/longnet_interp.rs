//! LongNet through the interpreter backend (every kernel's Tile IR run on host arrays) against
//! the float64 model of tessel-reference, on tiny configurations with fresh random weights
//! written under torchscale's names and read back by the loader; and the decode kernel against
//! the causal forward's rows.

use tessel_models::backend::{Backend, InterpBackend};
use tessel_models::graph::{Buf, CallArg, Graph, KernelRef, View};
use tessel_models::longnet::{LongNet, LongNetSession, LongNetTiles};
use tessel_models::transnormer::Logits;
use tessel_package::DType;
use tessel_reference::longnet as reference;

include!("../../tests/support/longnet_fixture.rs");
use fixture::{err, prompt};

/// bf16 weights and activations, f32 accumulation and residual stream: the same budget as the
/// TransNormerLLM model test (worst position < 5e-2 of the logits' scale, mean < 1.2e-2).
const TOL: f64 = 5e-2;
const MEAN_TOL: f64 = 1.2e-2;

struct Fixture {
    model: LongNet,
    reference: reference::Model,
    backend: InterpBackend,
    _dir: fixture::Dir,
}

fn fixture(name: &str, shards: usize) -> Fixture {
    let (cfg, ck, dir) = fixture::random_model(&fixture::config(name), 0.08, 0.6, shards);
    let model = LongNet::new(cfg.clone(), LongNetTiles::interpreter());
    let mut backend = InterpBackend::new();
    model.load(&mut backend, &ck).unwrap();
    Fixture {
        reference: fixture::reference_model(&cfg, &ck),
        model,
        backend,
        _dir: dir,
    }
}

#[test]
fn full_forward_logits_match_float64() {
    // longnet-tiny: (16, 1), (32, 2), torchscale offsets, subln, separate head;
    // longnet-tiny-h3: (8, 2), (16, 4) — no r = 1 pattern, rows no pattern keeps — paper
    // offsets, no subln, tied, √D embedding scale, F = 160 (not a power of two).
    for (name, shards) in [("longnet-tiny", 1), ("longnet-tiny-h3", 3)] {
        let mut f = fixture(name, shards);
        let v = f.model.cfg.vocab;
        let n = 41; // crosses every segment boundary, a ragged last segment
        let prompts = vec![prompt(n, v), prompt(n, v)];
        let mut s = LongNetSession::new(&f.model, &mut f.backend, 2, n).unwrap();
        s.backend()
            .persistent(&format!("logits.2x{n}"), DType::F32, 2 * n * v)
            .unwrap();
        s.backend()
            .write(&format!("logits.2x{n}"), &vec![f64::NAN; 2 * n * v])
            .unwrap();
        let plan = s.prefill(&prompts, Logits::All).unwrap();
        assert!(plan.arena_bytes < plan.unshared_bytes, "{plan:?}");
        let all = s.all_logits(n).unwrap();
        let mut errs = Vec::new();
        for (b, p) in prompts.iter().enumerate() {
            let want = f.reference.forward(p);
            for (t, w) in want.iter().enumerate() {
                let e = err(&all[b][t], w);
                assert!(e < TOL, "{name} seq {b} position {t}: {e}");
                errs.push(e);
            }
        }
        let mean = errs.iter().sum::<f64>() / errs.len() as f64;
        assert!(mean < MEAN_TOL, "{name}: mean error {mean}");
        eprintln!(
            "{name}: worst {:.2e}, mean {mean:.2e}",
            errs.iter().cloned().fold(0.0, f64::max)
        );
    }
}

#[test]
fn prefill_then_decode_follows_the_float64_model() {
    for name in ["longnet-tiny", "longnet-tiny-h3"] {
        let mut f = fixture(name, 1);
        let v = f.model.cfg.vocab;
        let (n, steps) = (13, 22); // decode positions 13..35 cross the 16- and 32-boundaries
        let p = prompt(n, v);
        let want_tokens = f.reference.generate(&p, steps);
        let mut s = LongNetSession::new(&f.model, &mut f.backend, 1, n + steps).unwrap();
        s.backend().write("logits.b1", &vec![f64::NAN; v]).unwrap();
        s.prefill(std::slice::from_ref(&p), Logits::Last).unwrap();
        let mut seq = p.clone();
        let mut got = vec![s.next_tokens().unwrap()[0]];
        let mut refs = vec![f.reference.forward(&seq).last().unwrap().clone()];
        // Teacher-forced: each step consumes the float64 model's token, so one near-tie
        // cannot derail the rest; the logits of each step are checked against the full
        // forward's last row.
        for i in 1..steps {
            seq.push(want_tokens[i - 1]);
            s.set_next_tokens(&[want_tokens[i - 1]]).unwrap();
            got.push(s.step().unwrap()[0]);
            let logits = s.logits().unwrap();
            let want = f.reference.forward(&seq);
            let e = err(&logits[0], want.last().unwrap());
            assert!(
                e < TOL,
                "{name} decode step at position {}: {e}",
                seq.len() - 1
            );
            refs.push(want.last().unwrap().clone());
        }
        // Each choice is the float64 model's, or within rounding of it (a near-tie of two
        // logits that bf16 cannot order); nearly all are exact.
        let mut exact = 0;
        for (i, (&t, r)) in got.iter().zip(&refs).enumerate() {
            let best = (0..v).max_by(|a, b| r[*a].total_cmp(&r[*b])).unwrap();
            let scale = r.iter().fold(0f64, |m, x| m.max(x.abs()));
            let gap = r[best] - r[t as usize];
            assert!(
                gap <= TOL * scale,
                "{name} token {i}: chose {t}, float64 {best} (gap {gap})"
            );
            exact += usize::from(t as usize == best);
        }
        assert_eq!(refs.len(), want_tokens.len());
        assert!(
            exact + 2 >= steps,
            "{name}: only {exact} of {steps} greedy tokens exact: {got:?}"
        );
    }
}

fn buf(name: &str, dtype: DType, shape: &[usize], access: tessel_models::graph::Access) -> CallArg {
    CallArg::Tensor(View {
        buf: Buf::Persistent(name.into()),
        dtype,
        shape: shape.to_vec(),
        access,
    })
}

/// dilated_attention_decode at position t, with the cache's rows ≥ t poisoned, gives row t of
/// the causal forward over N > t tokens (and of float64's closed form), for every t.
#[test]
fn decode_step_is_the_causal_forwards_row() {
    use tessel_models::graph::Access::{Read as R, ReadWrite as RW};
    use tessel_reference::dilated::{self, Offsets, Pattern, Problem};
    let (b, h, n, d) = (2, 3, 37, 32);
    for (pats, torchscale) in [
        (vec![(16, 1), (32, 2)], true),
        (vec![(8, 2), (12, 3), (64, 4)], false),
    ] {
        let mut be = InterpBackend::new();
        let bf = |x: f64| half::bf16::from_f64(x).to_f64();
        let rnd = |len: usize| {
            (0..len)
                .map(|_| bf(rand::random_range(-1.0..1.0)))
                .collect::<Vec<f64>>()
        };
        let (q, k, v) = (rnd(b * h * n * d), rnd(b * h * n * d), rnd(b * h * n * d));
        let group = |r: usize| if torchscale { h.div_ceil(r) } else { 1 };
        let offsets = if torchscale {
            Offsets::Torchscale
        } else {
            Offsets::Paper
        };
        let patterns: Vec<Pattern> = pats.iter().map(|&(w, r)| Pattern { w, r }).collect();
        let prob = Problem::new(
            tessel_reference::Dims::new(b, h, n, d),
            &patterns,
            offsets,
            true,
        );
        let (want, _) = dilated::forward(&prob, &q, &k, &v);
        for (name, len) in [
            ("q", b * h * d),
            ("k", b * h * d),
            ("v", b * h * d),
            ("o", b * h * d),
        ] {
            be.persistent(name, DType::Bf16, len).unwrap();
        }
        be.persistent("lse", DType::F32, b * h).unwrap();
        be.persistent("pos", DType::I32, b).unwrap();
        be.persistent("kc", DType::Bf16, b * h * n * d).unwrap();
        be.persistent("vc", DType::Bf16, b * h * n * d).unwrap();
        let mut worst: f64 = 0.0;
        for t in [0, 1, 5, 15, 16, 17, 31, 32, 33, 36] {
            let row = |x: &[f64]| -> Vec<f64> {
                (0..b * h)
                    .flat_map(|bh| x[(bh * n + t) * d..][..d].to_vec())
                    .collect()
            };
            // Rows ≥ t of the cache are NaN: the step may read only rows before t.
            let poisoned = |x: &[f64]| -> Vec<f64> {
                x.iter()
                    .enumerate()
                    .map(|(i, v)| if (i / d) % n < t { *v } else { f64::NAN })
                    .collect()
            };
            be.write("q", &row(&q)).unwrap();
            be.write("k", &row(&k)).unwrap();
            be.write("v", &row(&v)).unwrap();
            be.write("kc", &poisoned(&k)).unwrap();
            be.write("vc", &poisoned(&v)).unwrap();
            be.write("o", &vec![f64::NAN; b * h * d]).unwrap();
            be.write("lse", &vec![f64::NAN; b * h]).unwrap();
            be.write("pos", &vec![t as f64; b]).unwrap();
            let mut g = Graph::default();
            for (i, &(w, r)) in pats.iter().enumerate() {
                let consts = [
                    ("BN", "4".to_string()),
                    ("D", d.to_string()),
                    ("FIRST", (i == 0).to_string()),
                ];
                g.call(
                    format!("pattern {i}"),
                    KernelRef::new("dilated_attention", "dilated_attention_decode", &consts),
                    vec![
                        buf("q", DType::Bf16, &[b, h, d], R),
                        buf("k", DType::Bf16, &[b, h, d], R),
                        buf("v", DType::Bf16, &[b, h, d], R),
                        buf("kc", DType::Bf16, &[b, h, n, d], RW),
                        buf("vc", DType::Bf16, &[b, h, n, d], RW),
                        buf("pos", DType::I32, &[b], R),
                        buf("o", DType::Bf16, &[b, h, d], RW),
                        buf("lse", DType::F32, &[b, h], RW),
                        CallArg::Scalar(1.0 / (d as f64).sqrt()),
                        CallArg::Scalar(w as f64),
                        CallArg::Scalar(r as f64),
                        CallArg::Scalar(group(r) as f64),
                    ],
                );
            }
            let plan = g.plan();
            be.run(&g, &plan).unwrap();
            let got = be.read("o").unwrap();
            let want_row = row(&want);
            // bf16 output: one rounding of values ≤ 1 in size.
            let e = tessel_reference::max_rel_err(&got, &want_row, 1.0);
            assert!(e < 1e-2, "patterns {pats:?}, t = {t}: {e}");
            worst = worst.max(e);
            // The step wrote its own key and value into row t of the cache.
            let kc = be.read("kc").unwrap();
            for bh in 0..b * h {
                assert_eq!(kc[(bh * n + t) * d..][..d], k[(bh * n + t) * d..][..d]);
            }
        }
        eprintln!("patterns {pats:?}: worst {worst:.2e}");
    }
}

#[test]
fn sessions_of_different_capacities_share_a_backend() {
    // Each capacity has caches of its own: a second session with room for more tokens on the
    // same backend (as a benchmark sweeping contexts makes) neither fails nor reads the first's.
    let mut f = fixture("longnet-tiny", 1);
    let p = prompt(8, f.model.cfg.vocab);
    let mut after_one_step = Vec::new();
    for cap in [12, 40] {
        let mut s = LongNetSession::new(&f.model, &mut f.backend, 1, cap).unwrap();
        s.prefill(std::slice::from_ref(&p), Logits::Last).unwrap();
        s.step().unwrap();
        after_one_step.push(s.logits().unwrap().remove(0));
    }
    let e = err(&after_one_step[1], &after_one_step[0]);
    assert!(e < 1e-6, "the two capacities disagree: {e}");
}
