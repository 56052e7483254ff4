//! The whole TransNormerLLM through the interpreter backend (every kernel's Tile IR run on host
//! arrays) against the float64 model of tessel-reference, on tiny configurations with random
//! weights written in the released layout and read back by the loader.

use tessel_models::backend::InterpBackend;
use tessel_models::transnormer::{Choice, Logits, Session, Tiles, Transnormer};
use tessel_reference::transnormer as reference;

include!("../../tests/support/transnormer_fixture.rs");
use fixture::{err, prompt};

fn usize_ids(p: &[u32]) -> Vec<usize> {
    fixture::ids(p)
}

struct Fixture {
    model: Transnormer,
    reference: reference::Model,
    backend: InterpBackend,
}

/// tests/configs/tnl-tiny-h{heads}.json: two layers, LRPE in layer 0, head dim 32, 61 tokens;
/// H = 3 exercises the non-power-of-two slope list.
fn fixture(heads: usize) -> Fixture {
    // Wide weights: activations far from zero, logits far apart.
    let (cfg, weights, _dir) =
        fixture::random_model(&fixture::tiny(&format!("tnl-tiny-h{heads}")), 0.08, 0.6);
    let model = Transnormer::new(cfg.clone(), Tiles::interpreter());
    let mut backend = InterpBackend::new();
    model.load(&mut backend, &weights).unwrap();
    Fixture {
        reference: fixture::reference_model(&cfg, &weights),
        model,
        backend,
    }
}

/// bf16 weights and activations (about eight roundings to 8 bits in sequence per layer), f32
/// accumulation: against float64 the logits' error is typically 6e-3 of their scale, 2e-2 at
/// worst over a few hundred positions, and up to 5e-2 at a position whose attention sum
/// cancels (at position 0 it is one q·k, which SRMSNorm then scales up). MEAN_TOL bounds the
/// average, which a systematic error (a wrong slope, an LRPE angle off) pushes far past.
const TOL: f64 = 5e-2;
const MEAN_TOL: f64 = 1.2e-2;

#[test]
fn full_forward_logits_match_float64_for_a_ragged_batch() {
    for heads in [2, 3] {
        let mut f = fixture(heads);
        let v = f.model.cfg.vocab;
        // Lengths across block (16) and segment boundaries; the shorter is left-padded.
        let prompts = vec![prompt(37, v), prompt(11, v)];
        let mut s = Session::new(&f.model, &mut f.backend, 2).unwrap();
        let plan = s.prefill(&prompts, Logits::All).unwrap();
        assert!(plan.arena_bytes < plan.unshared_bytes, "{plan:?}");
        let n = 37;
        let all = s.all_logits(n).unwrap();
        let mut errs = Vec::new();
        for (b, p) in prompts.iter().enumerate() {
            let want = f.reference.forward(&usize_ids(p));
            for (t, w) in want.iter().enumerate() {
                let got = &all[b][n - p.len() + t];
                let e = err(got, w);
                assert!(e < TOL, "H={heads} seq {b} position {t}: {e}");
                errs.push(e);
            }
        }
        let mean = errs.iter().sum::<f64>() / errs.len() as f64;
        assert!(mean < MEAN_TOL, "H={heads}: mean error {mean}");
    }
}

#[test]
fn prefill_then_decode_equals_the_full_forward() {
    let mut f = fixture(3);
    let v = f.model.cfg.vocab;
    let whole = [prompt(30, v), prompt(24, v)];
    let split = 19;
    let want: Vec<_> = whole
        .iter()
        .map(|p| f.reference.forward(&usize_ids(p)))
        .collect();
    let mut s = Session::new(&f.model, &mut f.backend, 2).unwrap();
    let heads: Vec<Vec<u32>> = vec![whole[0][..split].to_vec(), whole[1][..split - 6].to_vec()];
    s.prefill(&heads, Logits::Last).unwrap();
    for (b, l) in s.logits().unwrap().iter().enumerate() {
        let e = err(l, &want[b][heads[b].len() - 1]);
        assert!(e < TOL, "prefill seq {b}: {e}");
    }
    // Feed the rest of each sequence one token at a time (teacher forcing).
    for step in 0..(24 - (split - 6)) {
        let toks: Vec<u32> = (0..2).map(|b| whole[b][heads[b].len() + step]).collect();
        s.set_next_tokens(&toks).unwrap();
        s.step().unwrap();
        for (b, l) in s.logits().unwrap().iter().enumerate() {
            let pos = heads[b].len() + step;
            let e = err(l, &want[b][pos]);
            assert!(e < TOL, "decode seq {b} position {pos}: {e}");
        }
    }
    assert_eq!(s.lengths(), &[30, 24]);
    let plan = s.decode_plan().unwrap();
    assert!(plan.arena_bytes < plan.unshared_bytes);
}

#[test]
fn greedy_generation_follows_the_float64_model() {
    let mut f = fixture(2);
    let v = f.model.cfg.vocab;
    let start = prompt(9, v);
    let mut s = Session::new(&f.model, &mut f.backend, 1).unwrap();
    s.prefill(std::slice::from_ref(&start), Logits::Last)
        .unwrap();
    let mut dec = reference::Decoder::new(&f.reference);
    let mut want = Vec::new();
    for &t in &start {
        want = dec.step(t as usize);
    }
    let (mut exact, mut generated) = (0, Vec::new());
    for i in 0..32 {
        let got = if i == 0 {
            s.next_tokens().unwrap()[0]
        } else {
            s.step().unwrap()[0]
        };
        let best = (0..v).max_by(|a, b| want[*a].total_cmp(&want[*b])).unwrap();
        let scale = want.iter().fold(0f64, |m, x| m.max(x.abs()));
        // The kernels' choice is the reference's, or within rounding of it (a near-tie).
        let gap = want[best] - want[got as usize];
        assert!(
            gap <= TOL * scale,
            "token {i}: chose {got}, the reference {best} (gap {gap})"
        );
        exact += usize::from(got as usize == best);
        generated.push(got);
        // The reference continues from the kernels' token, so the two stay on one sequence.
        want = dec.step(got as usize);
    }
    assert!(
        exact >= 30,
        "only {exact} of 32 greedy tokens equal the reference's: {generated:?}"
    );
}

#[test]
fn padding_never_changes_a_sequences_result() {
    let mut f = fixture(2);
    let v = f.model.cfg.vocab;
    let short = prompt(7, v);
    let long = prompt(26, v);
    let mut alone = Session::new(&f.model, &mut f.backend, 1).unwrap();
    alone
        .prefill(std::slice::from_ref(&short), Logits::Last)
        .unwrap();
    let mut alone_logits = vec![alone.logits().unwrap().remove(0)];
    let mut alone_tokens = vec![alone.next_tokens().unwrap()[0]];
    for _ in 0..4 {
        alone_tokens.push(alone.step().unwrap()[0]);
        alone_logits.push(alone.logits().unwrap().remove(0));
    }
    let mut batch = Session::new(&f.model, &mut f.backend, 2).unwrap();
    batch.prefill(&[long, short], Logits::Last).unwrap();
    let mut tokens = vec![batch.next_tokens().unwrap()[1]];
    let mut logits = vec![batch.logits().unwrap().remove(1)];
    for _ in 0..4 {
        tokens.push(batch.step().unwrap()[1]);
        logits.push(batch.logits().unwrap().remove(1));
    }
    assert_eq!(tokens, alone_tokens);
    for (i, (a, b)) in logits.iter().zip(&alone_logits).enumerate() {
        // 19 pad rows move the block boundaries, so roundings differ; nothing else may.
        let e = err(a, b);
        assert!(e < 5e-3, "step {i}: {e}");
    }
}

#[test]
fn bad_inputs_are_refused_before_anything_runs() {
    let mut f = fixture(2);
    let mut s = Session::new(&f.model, &mut f.backend, 2).unwrap();
    assert!(s.step().is_err(), "decode before prefill");
    assert!(
        s.prefill(&[vec![1]], Logits::Last).is_err(),
        "one prompt for two"
    );
    assert!(
        s.prefill(&[vec![1], vec![]], Logits::Last).is_err(),
        "empty prompt"
    );
    assert!(
        s.prefill(&[vec![1], vec![61]], Logits::Last).is_err(),
        "id ≥ vocab"
    );
}

/// Generates `steps` tokens from `start` with `choice`.
fn generate(f: &mut Fixture, choice: Choice, start: &[Vec<u32>], steps: usize) -> Vec<Vec<u32>> {
    let mut model = f.model.clone();
    model.choice = choice;
    let mut s = Session::new(&model, &mut f.backend, start.len()).unwrap();
    s.prefill(start, Logits::Last).unwrap();
    let mut out = vec![s.next_tokens().unwrap()];
    for _ in 1..steps {
        out.push(s.step().unwrap());
    }
    out
}

#[test]
fn sampling_is_seeded_and_top_k_one_is_greedy() {
    let mut f = fixture(2);
    let v = f.model.cfg.vocab;
    let start = vec![prompt(6, v), prompt(10, v)];
    let sample = |seed| Choice::Sample {
        temperature: 1.5,
        top_k: 0,
        top_p: 0.95,
        seed,
    };
    let seed = rand::random::<u32>();
    let a = generate(&mut f, sample(seed), &start, 12);
    assert_eq!(
        a,
        generate(&mut f, sample(seed), &start, 12),
        "same seed, same tokens"
    );
    assert_ne!(
        a,
        generate(&mut f, sample(seed ^ 1), &start, 12),
        "another seed"
    );
    let greedy = generate(&mut f, Choice::Greedy, &start, 12);
    assert_ne!(
        a, greedy,
        "temperature 1.5 over 61 tokens never follows greedy for 24 draws"
    );
    let one = Choice::Sample {
        temperature: 0.8,
        top_k: 1,
        top_p: 1.0,
        seed,
    };
    assert_eq!(generate(&mut f, one, &start, 12), greedy);
}

/// The constants the GPU backend launches with (Tiles::gpu(): 128-wide matmul tiles, 64-token
/// Lightning blocks, the 16×16 decode GEMV tiles, 1024-wide argmax) on the
/// head-dim-64 configuration the GPU tests use: the graph and every variant it calls are
/// checked here, before any GPU runs them.
#[test]
fn the_gpu_tiling_computes_the_same_model() {
    let (cfg, weights, _dir) = fixture::random_model(&fixture::tiny("tnl-small-h3"), 0.08, 0.6);
    let model = Transnormer::new(cfg.clone(), Tiles::gpu());
    let mut be = InterpBackend::new();
    model.load(&mut be, &weights).unwrap();
    let reference = fixture::reference_model(&cfg, &weights);
    let v = cfg.vocab;
    let prompts = vec![prompt(40, v), prompt(9, v)];
    let mut s = Session::new(&model, &mut be, 2).unwrap();
    s.prefill(&prompts, Logits::Last).unwrap();
    let mut decoders: Vec<_> = prompts
        .iter()
        .map(|p| {
            let mut d = reference::Decoder::new(&reference);
            let mut last = Vec::new();
            for &t in p {
                last = d.step(t as usize);
            }
            (d, last)
        })
        .collect();
    for step in 0..2 {
        let logits = s.logits().unwrap();
        let next = s.next_tokens().unwrap();
        for (b, (d, want)) in decoders.iter_mut().enumerate() {
            let e = err(&logits[b], want);
            assert!(e < TOL, "step {step} seq {b}: {e}");
            *want = d.step(next[b] as usize);
        }
        s.step().unwrap();
    }
}
