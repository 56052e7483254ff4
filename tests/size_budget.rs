//! The size budget: no Rust source file of the workspace over 800 lines, no function (free,
//! associated or nested, closures aside) over 150. A file or function past it is a seam that was
//! not cut: the failure lists every offender with its size, largest first, so the fix starts
//! from the worst. Functions are measured on a real parse (syn), first line of the signature to
//! the closing brace, doc comments excluded.

use std::path::{Path, PathBuf};

use syn::visit::Visit;

const MAX_FILE_LINES: usize = 800;
const MAX_FN_LINES: usize = 150;
/// The crates' source trees, relative to the workspace root (tests and benches are not code the
/// budget governs: a test of many cases is long by nature).
const ROOTS: &[&str] = &[
    "compiler/src",
    "runtime/src",
    "package/src",
    "models/src",
    "reference/src",
    "src",
];

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let p = entry.path();
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|e| e == "rs") {
            out.push(p);
        }
    }
}

/// Every function with its line count.
struct Functions<'a> {
    file: &'a str,
    found: Vec<(usize, String)>,
}

impl Functions<'_> {
    fn record(&mut self, name: &syn::Ident, sig: proc_macro2::Span, body: proc_macro2::Span) {
        let lines = body.end().line + 1 - sig.start().line;
        let at = sig.start().line;
        self.found
            .push((lines, format!("{}:{at} fn {name}", self.file)));
    }
}

impl<'ast> Visit<'ast> for Functions<'_> {
    fn visit_item_fn(&mut self, f: &'ast syn::ItemFn) {
        use syn::spanned::Spanned;
        self.record(&f.sig.ident, f.sig.span(), f.block.span());
        syn::visit::visit_item_fn(self, f);
    }

    fn visit_impl_item_fn(&mut self, f: &'ast syn::ImplItemFn) {
        use syn::spanned::Spanned;
        self.record(&f.sig.ident, f.sig.span(), f.block.span());
        syn::visit::visit_impl_item_fn(self, f);
    }

    fn visit_trait_item_fn(&mut self, f: &'ast syn::TraitItemFn) {
        use syn::spanned::Spanned;
        if let Some(body) = &f.default {
            self.record(&f.sig.ident, f.sig.span(), body.span());
        }
        syn::visit::visit_trait_item_fn(self, f);
    }
}

#[test]
fn files_and_functions_stay_within_the_size_budget() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut files = Vec::new();
    for r in ROOTS {
        rust_files(&root.join(r), &mut files);
    }
    assert!(files.len() > 40, "found only {} source files", files.len());
    let mut long_files = Vec::new();
    let mut long_fns = Vec::new();
    for path in &files {
        let rel = path
            .strip_prefix(root)
            .unwrap()
            .to_string_lossy()
            .to_string();
        let text = std::fs::read_to_string(path).unwrap();
        let lines = text.lines().count();
        if lines > MAX_FILE_LINES {
            long_files.push((lines, rel.clone()));
        }
        let ast = syn::parse_file(&text).unwrap_or_else(|e| panic!("{rel}: {e}"));
        let mut v = Functions {
            file: &rel,
            found: Vec::new(),
        };
        v.visit_file(&ast);
        long_fns.extend(v.found.into_iter().filter(|(n, _)| *n > MAX_FN_LINES));
    }
    long_files.sort_by(|a, b| b.cmp(a));
    long_fns.sort_by(|a, b| b.cmp(a));
    let mut report = String::new();
    for (n, f) in &long_files {
        report += &format!("  file {f}: {n} lines (budget {MAX_FILE_LINES})\n");
    }
    for (n, f) in &long_fns {
        report += &format!("  {f}: {n} lines (budget {MAX_FN_LINES})\n");
    }
    assert!(report.is_empty(), "over the size budget:\n{report}");
}

/// The measure itself: a function's lines run from its signature to its closing brace.
#[test]
fn a_function_is_measured_from_signature_to_closing_brace() {
    let text = "/// doc\nfn f(\n    x: i32,\n) -> i32 {\n    x\n}\n";
    let ast = syn::parse_file(text).unwrap();
    let mut v = Functions {
        file: "t.rs",
        found: Vec::new(),
    };
    v.visit_file(&ast);
    assert_eq!(v.found, vec![(5, "t.rs:2 fn f".to_string())]);
}
