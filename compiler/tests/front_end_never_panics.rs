//! Property tests: no input makes the front end (parser, checker, Tile IR builder and verifier,
//! Tile IR text parser) panic, and nothing it accepts produces IR its own verifier rejects.

use proptest::prelude::*;
use tessel_compiler::sema::{self, Overrides};
use tessel_compiler::{interp, tir};

const EXAMPLES: [&str; 5] = [
    include_str!("../../dsl-examples/elementwise.tsl"),
    include_str!("../../dsl-examples/matmul.tsl"),
    include_str!("../../dsl-examples/softmax.tsl"),
    include_str!("../../dsl-examples/flash_attention.tsl"),
    include_str!("../../dsl-examples/lightning_attention.tsl"),
];

/// Fragments a mutation splices in: tokens of the language, so mutants get past the lexer often.
const TOKENS: [&str; 32] = [
    "let ",
    "var ",
    "for ",
    " in ",
    "..",
    "if ",
    "else ",
    "{",
    "}",
    "(",
    ")",
    "[",
    "]",
    ";",
    ",",
    ": +",
    "=",
    "==",
    "<",
    ">",
    "+",
    "-",
    "*",
    "/",
    "0",
    "1.5",
    "-1.0 / 0.0",
    "x",
    "BM",
    "dot(",
    "load(",
    "expand(",
];

fn front_end(source: &str) {
    match sema::compile_source(source, &Overrides::new()) {
        Ok(kernels) => {
            for k in kernels {
                tir::verify(&k).expect("accepted kernels verify");
                let text = k.to_string();
                let back = tir::parse_kernel(&text).expect("printed IR parses");
                assert_eq!(back.to_string(), text);
            }
        }
        Err(diags) => {
            for d in &diags {
                assert!(
                    !d.message.contains("internal compiler error"),
                    "{}",
                    d.render("input", source)
                );
                // Rendering must cope with any span the front end produced.
                let _ = d.render("input", source);
            }
        }
    }
}

#[derive(Debug, Clone)]
enum Edit {
    Delete { at: usize, len: usize },
    Insert { at: usize, token: usize },
    Duplicate { at: usize, len: usize },
    Truncate { at: usize },
}

fn edit() -> impl Strategy<Value = Edit> {
    prop_oneof![
        (any::<usize>(), 1usize..20).prop_map(|(at, len)| Edit::Delete { at, len }),
        (any::<usize>(), 0..TOKENS.len()).prop_map(|(at, token)| Edit::Insert { at, token }),
        (any::<usize>(), 1usize..40).prop_map(|(at, len)| Edit::Duplicate { at, len }),
        any::<usize>().prop_map(|at| Edit::Truncate { at }),
    ]
}

fn apply(source: &str, edits: &[Edit]) -> String {
    let mut s: Vec<char> = source.chars().collect();
    for e in edits {
        let n = s.len().max(1);
        match *e {
            Edit::Delete { at, len } => {
                let a = at % n;
                let b = (a + len).min(s.len());
                s.drain(a.min(s.len())..b);
            }
            Edit::Insert { at, token } => {
                let a = (at % n).min(s.len());
                for (i, c) in TOKENS[token].chars().enumerate() {
                    s.insert(a + i, c);
                }
            }
            Edit::Duplicate { at, len } => {
                let a = (at % n).min(s.len());
                let b = (a + len).min(s.len());
                let piece: Vec<char> = s[a..b].to_vec();
                for (i, c) in piece.into_iter().enumerate() {
                    s.insert(b + i, c);
                }
            }
            Edit::Truncate { at } => s.truncate(at % n),
        }
    }
    s.into_iter().collect()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 400, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_text_never_panics(source in "\\PC{0,300}") {
        front_end(&source);
    }

    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
        front_end(&String::from_utf8_lossy(&bytes));
    }

    #[test]
    fn mutated_examples_never_panic(which in 0..EXAMPLES.len(), edits in proptest::collection::vec(edit(), 1..6)) {
        front_end(&apply(EXAMPLES[which], &edits));
    }

    #[test]
    fn mutated_tile_ir_never_panics(which in 0..EXAMPLES.len(), edits in proptest::collection::vec(edit(), 1..6)) {
        let k = sema::compile_source(EXAMPLES[which], &Overrides::new()).unwrap().remove(0);
        let text = apply(&k.to_string(), &edits);
        if let Ok(parsed) = tir::parse_kernel(&text) {
            let _ = tir::verify(&parsed);
        }
    }
}

// ---- every stage, on a time budget ----------------------------------------------------------
//
// Mutants of the examples go through what a user would run them through: `check` (the front
// end), `ir` (print and parse back), `interpret` (on small random shapes) and `compile` (schedule,
// MLIR, LLVM, PTX). A panic at any stage fails the test, and so does one input taking longer than
// `PER_INPUT` (a hang: a huge tile once made `compile` run for minutes). `TESSEL_FUZZ_SECS` sets
// the budget (60 s in `make test`), `TESSEL_FUZZ_SEED` the first seed.

/// Longer than any example takes through every stage in a debug build (lightning_attention.tsl's
/// nine kernels, about 10 s on one core), far shorter than the hangs this is here to catch.
const PER_INPUT: std::time::Duration = std::time::Duration::from_secs(60);

/// A splitmix64 step: the fuzz's only source of randomness, so a seed replays a run.
fn next(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9e3779b97f4a7c15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58476d1ce4e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d049bb133111eb);
    z ^ (z >> 31)
}

fn random_edits(state: &mut u64) -> Vec<Edit> {
    // Mostly one edit: most mutants with several fail to parse, and only those that parse and
    // check reach the later stages.
    let n = if next(state).is_multiple_of(4) { 2 } else { 1 };
    (0..n)
        .map(|_| {
            let at = next(state) as usize;
            match next(state) % 4 {
                0 => Edit::Delete {
                    at,
                    len: 1 + (next(state) % 4) as usize,
                },
                1 => Edit::Insert {
                    at,
                    token: (next(state) % TOKENS.len() as u64) as usize,
                },
                2 => Edit::Duplicate {
                    at,
                    len: 1 + (next(state) % 30) as usize,
                },
                _ => Edit::Truncate { at },
            }
        })
        .collect()
}

/// Programs `interpret` may run per kernel: the interpreter (in a debug build) takes about a
/// millisecond per small-tile program, and this is about a kernel's robustness, not its speed.
const MAX_PROGRAMS: i64 = 8;

/// Arguments for `k` with every shape symbol between 1 and 17; None for strided tensors, or when
/// the grid for those shapes has more than `MAX_PROGRAMS` programs.
fn small_args(k: &tir::Kernel, state: &mut u64) -> Option<Vec<interp::HostArg>> {
    use interp::{HostArg, HostTensor};
    let mut dims = std::collections::HashMap::new();
    let mut args = Vec::new();
    for p in &k.params {
        args.push(match &p.kind {
            tir::ParamKind::Tensor {
                dtype,
                dims: pd,
                strides: None,
                ..
            } => {
                let shape: Vec<usize> = pd
                    .iter()
                    .map(|d| match d {
                        tir::Dim::Const(c) => (*c).clamp(0, 64) as usize,
                        tir::Dim::Sym(s) => {
                            // Small, with ragged edges against power-of-two tiles.
                            *dims
                                .entry(s.clone())
                                .or_insert([1, 2, 3, 5, 17][(next(state) % 5) as usize])
                        }
                    })
                    .collect();
                let n: usize = shape.iter().product();
                let data = (0..n)
                    .map(|_| (next(state) % 2000) as f64 / 1000.0 - 1.0)
                    .collect();
                HostArg::Tensor(HostTensor::new(*dtype, shape, data))
            }
            tir::ParamKind::Tensor { .. } => return None,
            tir::ParamKind::Scalar { .. } => HostArg::Scalar(0.5),
        });
    }
    let lookup = |s: &str| dims.get(s).map(|&v| v as i64);
    let mut programs = 1i64;
    for g in &k.grid {
        programs = programs.saturating_mul(g.eval(&lookup).unwrap_or(0).max(0));
    }
    (programs <= MAX_PROGRAMS).then_some(args)
}

#[derive(Default, Debug)]
struct Tally {
    inputs: usize,
    accepted: usize,
    interpreted: usize,
    compiled: usize,
}

/// Every stage on one source; what it reached is added to `tally`.
fn all_stages(source: &str, seed: u64) -> Tally {
    let mut t = Tally {
        inputs: 1,
        ..Tally::default()
    };
    front_end(source);
    let Ok(kernels) = sema::compile_source(source, &Overrides::new()) else {
        return t;
    };
    t.accepted = 1;
    let mut state = seed;
    for k in &kernels {
        if let Some(mut args) = small_args(k, &mut state) {
            if interp::run(k, &mut args).is_ok() {
                t.interpreted += 1;
            }
        }
        let target = tessel_compiler::Target::lookup("sm_90a").expect("a known target");
        if tessel_compiler::driver::compile_kernel(k, target).is_ok() {
            t.compiled += 1;
        }
    }
    t
}

#[test]
fn mutated_examples_survive_every_stage_on_a_budget() {
    let env = |name: &str, default: u64| {
        std::env::var(name)
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(default)
    };
    let budget = std::time::Duration::from_secs(env("TESSEL_FUZZ_SECS", 60));
    let mut state = env("TESSEL_FUZZ_SEED", 1);
    let start = std::time::Instant::now();
    let mut total = Tally::default();
    let mut slowest = std::time::Duration::ZERO;
    while start.elapsed() < budget {
        let which = (next(&mut state) % EXAMPLES.len() as u64) as usize;
        let source = apply(EXAMPLES[which], &random_edits(&mut state));
        let seed = next(&mut state);
        let (tx, rx) = std::sync::mpsc::channel();
        let input = source.clone();
        let began = std::time::Instant::now();
        // A thread per input, so that a hang is reported (with its input) rather than waited on.
        let worker = std::thread::spawn(move || {
            let _ = tx.send(all_stages(&input, seed));
        });
        match rx.recv_timeout(PER_INPUT) {
            Ok(t) => {
                total.inputs += t.inputs;
                total.accepted += t.accepted;
                total.interpreted += t.interpreted;
                total.compiled += t.compiled;
            }
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {
                let keep = std::env::temp_dir().join("tessel-fuzz-hang.tsl");
                let _ = std::fs::write(&keep, &source);
                panic!(
                    "hang: an input took over {PER_INPUT:?} (seed {seed}; kept in {}):\n{source}",
                    keep.display()
                )
            }
            Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => {
                let _ = worker.join();
                panic!("panic on this input (message above):\n{source}")
            }
        }
        let _ = worker.join();
        slowest = slowest.max(began.elapsed());
    }
    eprintln!(
        "fuzz: {} inputs in {:.0?} ({} accepted by check; {} kernel runs interpreted, {} compiled); \
         0 panics, 0 hangs; slowest input {slowest:.1?}",
        total.inputs,
        start.elapsed(),
        total.accepted,
        total.interpreted,
        total.compiled
    );
    assert!(total.inputs > 0, "the budget allowed no input");
}
