//! Property tests: no input makes the front end (parser, checker, Tile IR builder and verifier,
//! Tile IR text parser) panic, and nothing it accepts produces IR its own verifier rejects.

use proptest::prelude::*;
use tessel_compiler::sema::{self, Overrides};
use tessel_compiler::tir;

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
