//! File tests (in the manner of Cranelift's): each `tests/filetests/**/*.tsl` names in its header
//! the stages to run, and what they print is compared with a blessed insta snapshot, so adding a
//! test is adding a file.
//!
//! Header lines, before the first non-comment line:
//!   `// test: check`                      parse + check; prints "ok" lines or the diagnostics
//!   `// test: tir`                        prints the Tile IR and checks print → parse → print
//!   `// define: NAME=VALUE`               a compile-time value, as `-D` on the command line
//!   `// test: sched arch=sm_90a`          the schedule the compiler chose (or why it cannot)
//!   `// test: ptx arch=sm_80`             the PTX, after ptxas has accepted it
//! A file that includes the examples directory's source uses `// source: dsl-examples/NAME.tsl`.

use std::path::{Path, PathBuf};

use tessel_compiler::diag::render_all;
use tessel_compiler::sema::{self, parse_const, Overrides};
use tessel_compiler::tir;

struct Header {
    stages: Vec<(String, Vec<(String, String)>)>,
    overrides: Overrides,
    source_from: Option<String>,
}

fn header(text: &str) -> Header {
    let mut h = Header {
        stages: Vec::new(),
        overrides: Overrides::new(),
        source_from: None,
    };
    for line in text
        .lines()
        .take_while(|l| l.trim_start().starts_with("//") || l.trim().is_empty())
    {
        let line = line.trim_start().trim_start_matches("//").trim();
        if let Some(rest) = line.strip_prefix("test:") {
            let mut words = rest.split_whitespace();
            let stage = words.next().expect("`// test:` names a stage").to_string();
            let args = words
                .map(|w| {
                    let (k, v) = w.split_once('=').expect("stage arguments are key=value");
                    (k.to_string(), v.to_string())
                })
                .collect();
            h.stages.push((stage, args));
        } else if let Some(rest) = line.strip_prefix("define:") {
            let (k, v) = rest
                .trim()
                .split_once('=')
                .expect("`// define: NAME=VALUE`");
            h.overrides
                .insert(k.to_string(), parse_const(v).expect("a valid -D value"));
        } else if let Some(rest) = line.strip_prefix("source:") {
            h.source_from = Some(rest.trim().to_string());
        }
    }
    assert!(
        !h.stages.is_empty(),
        "a file test needs at least one `// test:` line"
    );
    h
}

mod common {
    include!("support/ptxas.rs");
}

fn arch(args: &[(String, String)]) -> tessel_compiler::Target {
    let name = args
        .iter()
        .find(|(k, _)| k == "arch")
        .map(|(_, v)| v.as_str())
        .unwrap_or("sm_90a");
    tessel_compiler::Target::lookup(name).expect("a known arch")
}

fn run_stage(
    stage: &str,
    args: &[(String, String)],
    name: &str,
    source: &str,
    overrides: &Overrides,
) -> String {
    let kernels = match sema::compile_source(source, overrides) {
        Ok(k) => k,
        Err(diags) => return render_all(&diags, name, source),
    };
    match stage {
        "check" => kernels
            .iter()
            .map(|k| format!("ok: kernel {}\n", k.name))
            .collect(),
        "tir" => kernels
            .iter()
            .map(|k| {
                let text = k.to_string();
                let reparsed =
                    tir::parse_kernel(&text).unwrap_or_else(|e| panic!("{name}: {e}\n{text}"));
                tir::verify(&reparsed)
                    .unwrap_or_else(|e| panic!("{name}: reparsed IR invalid: {e}"));
                assert_eq!(
                    reparsed.to_string(),
                    text,
                    "{name}: print → parse → print changed the IR"
                );
                assert_eq!(
                    &reparsed, k,
                    "{name}: the parsed IR differs from the original"
                );
                text
            })
            .collect(),
        "sched" | "ptx" => kernels
            .iter()
            .map(
                |k| match tessel_compiler::driver::compile_kernel(k, arch(args)) {
                    Ok(c) if stage == "sched" => c.schedule.to_string(),
                    Ok(c) => {
                        common::Ptxas::find()
                            .assemble(&c.ptx, arch(args).name)
                            .unwrap_or_else(|e| panic!("{name}: {e}"));
                        c.ptx
                    }
                    Err(e) => format!("error: {e}\n"),
                },
            )
            .collect(),
        other => panic!("{name}: unknown stage `{other}`"),
    }
}

fn files(dir: &Path, out: &mut Vec<PathBuf>) {
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .collect();
    entries.sort();
    for p in entries {
        if p.is_dir() && p.file_name().is_some_and(|n| n != "snapshots") {
            files(&p, out);
        } else if p.extension().is_some_and(|e| e == "tsl") {
            out.push(p);
        }
    }
}

#[test]
fn filetests() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let dir = root.join("tests/filetests");
    let mut all = Vec::new();
    files(&dir, &mut all);
    assert!(
        all.len() >= 30,
        "expected the file tests to be found, got {}",
        all.len()
    );
    let mut settings = insta::Settings::clone_current();
    settings.set_snapshot_path(dir.join("snapshots"));
    settings.set_prepend_module_to_snapshot(false);
    settings.set_omit_expression(true);
    settings.bind(|| {
        for path in &all {
            let rel = path
                .strip_prefix(&dir)
                .unwrap()
                .to_string_lossy()
                .replace('\\', "/");
            let text = std::fs::read_to_string(path).unwrap();
            let h = header(&text);
            let (name, source) = match &h.source_from {
                Some(src) => (
                    src.clone(),
                    std::fs::read_to_string(root.join(src)).unwrap(),
                ),
                None => (format!("tests/filetests/{rel}"), text.clone()),
            };
            let mut out = String::new();
            for (stage, args) in &h.stages {
                out.push_str(&format!("== {stage}\n"));
                out.push_str(&run_stage(stage, args, &name, &source, &h.overrides));
            }
            let snap = rel.trim_end_matches(".tsl").replace('/', "__");
            insta::assert_snapshot!(snap, out);
        }
    });
}
