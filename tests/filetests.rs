//! File tests (in the manner of Cranelift's): each `tests/filetests/**/*.tsl` (language source)
//! or `*.tir` (Tile IR text, to test the stages after sema on IR written by hand) names in its
//! header the stages to run, and what they print is compared with a blessed insta snapshot, so
//! adding a test is adding a file.
//!
//! Header lines, before the first non-comment line:
//!   `// test: check`                      parse + check; prints "ok" lines or the diagnostics
//!   `// test: tir`                        prints the Tile IR and checks print → parse → print
//!   `// define: NAME=VALUE`               a compile-time value, as `-D` on the command line
//!   `// test: sched arch=sm_90a`          the schedule the compiler chose (or why it cannot)
//!   `// test: ptx arch=sm_80`             the PTX, after ptxas has accepted it
//!   `// test: sched arch=sm_90a strategy=ampere`  either, the strategy forced (`--strategy`)
//!   `// test: sched arch=sm_90a hopper=preview`  either, with Hopper forms not yet GPU-verified allowed
//!                                               (`--hopper-preview`)
//!   `// test: ptx arch=sm_90a kernel=K spills=0`  either, of kernel K only; `spills=0`: ptxas
//!                                         reports no spill stores or loads
//!   `// run: package=P kernel=K shape=A=1,B=2 [scalar=s=0.5] [range=x=0:1]`
//!                                         a GPU check: scripts/gpu-run-tests runs `tessel run`
//!                                         on package P (as `tessel demo` builds it) with these
//!                                         arguments; here each line is checked against the
//!                                         kernel's parameters, so a typo fails on CPU
//! A file that includes the examples directory's source uses `// source: dsl-examples/NAME.tsl`.

use std::path::{Path, PathBuf};

use tessel_compiler::diag::render_all;
use tessel_compiler::sema::{self, parse_const, Overrides};
use tessel_compiler::tir::{self, Kernel, ParamKind};

struct Header {
    stages: Vec<(String, Vec<(String, String)>)>,
    runs: Vec<Vec<(String, String)>>,
    overrides: Overrides,
    source_from: Option<String>,
}

/// `key=value` words; a value may hold `=` itself (`shape=M=1,N=2`).
fn key_values(words: &str) -> Vec<(String, String)> {
    words
        .split_whitespace()
        .map(|w| {
            let (k, v) = w.split_once('=').expect("arguments are key=value");
            (k.to_string(), v.to_string())
        })
        .collect()
}

fn header(text: &str) -> Header {
    let mut h = Header {
        stages: Vec::new(),
        runs: Vec::new(),
        overrides: Overrides::new(),
        source_from: None,
    };
    for line in text
        .lines()
        .take_while(|l| l.trim_start().starts_with("//") || l.trim().is_empty())
    {
        let line = line.trim_start().trim_start_matches("//").trim();
        if let Some(rest) = line.strip_prefix("test:") {
            let rest = rest.trim();
            let (stage, args) = rest.split_once(' ').unwrap_or((rest, ""));
            h.stages.push((stage.to_string(), key_values(args)));
        } else if let Some(rest) = line.strip_prefix("run:") {
            h.runs.push(key_values(rest));
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
    assert!(
        h.runs.is_empty() || !h.overrides.is_empty() || h.source_from.is_some(),
        "`// run:` lines check an example's package: give `// source:`"
    );
    h
}

mod common {
    include!("support/ptxas.rs");
}

/// The schedule options a stage names (`strategy=`, `hopper=preview`).
fn options(args: &[(String, String)]) -> tessel_compiler::sched::SchedOptions {
    let strategy = args
        .iter()
        .find(|(k, _)| k == "strategy")
        .map(|(_, v)| tessel_compiler::sched::Strategy::parse(v).expect("a known strategy"));
    let hopper_preview = args.iter().any(|(k, v)| k == "hopper" && v == "preview");
    tessel_compiler::sched::SchedOptions {
        strategy,
        hopper_preview,
        ..Default::default()
    }
}

fn arch(args: &[(String, String)]) -> tessel_compiler::Target {
    let name = args
        .iter()
        .find(|(k, _)| k == "arch")
        .map(|(_, v)| v.as_str())
        .unwrap_or("sm_90a");
    tessel_compiler::Target::lookup(name).expect("a known arch")
}

/// The kernels of a file test: elaborated from source, or parsed and verified from Tile IR text
/// (whose leading `//` header lines the IR parser does not take); the rendered diagnostics when
/// the source does not elaborate.
fn kernels_of(name: &str, source: &str, overrides: &Overrides) -> Result<Vec<Kernel>, String> {
    if name.ends_with(".tir") {
        let ir: String = source
            .lines()
            .skip_while(|l| l.trim_start().starts_with("//") || l.trim().is_empty())
            .map(|l| format!("{l}\n"))
            .collect();
        let k = tir::parse_kernel(&ir).unwrap_or_else(|e| panic!("{name}: {e}"));
        tir::verify(&k).unwrap_or_else(|e| panic!("{name}: invalid IR: {e}"));
        return Ok(vec![k]);
    }
    sema::compile_source(source, overrides).map_err(|diags| render_all(&diags, name, source))
}

/// A `// run:` line must name a kernel of the file and exactly its shape symbols, and only its
/// scalar (`scalar=`) and tensor (`range=`) parameters: what `tessel run` would refuse on the GPU
/// machine is refused here first.
fn check_run_line(name: &str, kernels: &[Kernel], run: &[(String, String)]) {
    let get = |key: &str| run.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str());
    for (k, _) in run {
        assert!(
            ["package", "kernel", "shape", "scalar", "range"].contains(&k.as_str()),
            "{name}: run line key `{k}`"
        );
    }
    get("package").unwrap_or_else(|| panic!("{name}: a run line names its package"));
    let wanted = get("kernel").unwrap_or_else(|| panic!("{name}: a run line names its kernel"));
    // `kernel[D=128,CAUSAL=true]` is a variant entry of an operator package.
    let base = wanted.split('[').next().unwrap();
    let k = kernels
        .iter()
        .find(|k| k.name == base)
        .unwrap_or_else(|| panic!("{name}: run line names kernel `{base}`, not in the file"));
    let names = |list: Option<&str>| -> Vec<String> {
        list.into_iter()
            .flat_map(|l| l.split(','))
            .filter(|w| !w.is_empty())
            .map(|w| w.split('=').next().unwrap().to_string())
            .collect()
    };
    // `tessel run` gives dense tensors of the shape named: stride symbols bind from them.
    let mut symbols: Vec<String> = Vec::new();
    for p in &k.params {
        if let ParamKind::Tensor { dims, .. } = &p.kind {
            for d in dims {
                if let tir::Dim::Sym(s) = d {
                    if !symbols.contains(s) {
                        symbols.push(s.clone());
                    }
                }
            }
        }
    }
    let mut shape = names(get("shape"));
    symbols.sort();
    shape.sort();
    assert_eq!(shape, symbols, "{name}: run line `{wanted}` shape symbols");
    for s in names(get("scalar")) {
        assert!(
            k.params
                .iter()
                .any(|p| p.name == s && matches!(p.kind, ParamKind::Scalar { .. })),
            "{name}: `{s}` is not a scalar parameter of {base}"
        );
    }
    for t in names(get("range")) {
        assert!(
            k.params
                .iter()
                .any(|p| p.name == t && matches!(p.kind, ParamKind::Tensor { .. })),
            "{name}: `{t}` is not a tensor parameter of {base}"
        );
    }
}

fn run_stage(
    stage: &str,
    args: &[(String, String)],
    name: &str,
    source: &str,
    overrides: &Overrides,
) -> String {
    let mut kernels = match kernels_of(name, source, overrides) {
        Ok(k) => k,
        Err(rendered) => return rendered,
    };
    let arg = |key: &str| args.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str());
    if let Some(only) = arg("kernel") {
        kernels.retain(|k| k.name == only);
        assert!(!kernels.is_empty(), "{name}: no kernel `{only}`");
    }
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
            .map(|k| {
                match tessel_compiler::driver::compile_kernel_with(k, arch(args), &options(args)) {
                    Ok(c) if stage == "sched" => c.schedule.to_string(),
                    Ok(c) => {
                        let log = common::Ptxas::find()
                            .assemble(&c.ptx, arch(args).name)
                            .unwrap_or_else(|e| panic!("{name}: {e}"));
                        // ptxas falls back to waiting after every wgmma (C7514..C7517) when it
                        // cannot prove the registers of a batch in flight untouched: the
                        // PTX is correct, but the overlap the schedule planned is gone.
                        let serialized = log.as_deref().unwrap_or("").lines().find(|l| {
                            l.contains("wgmma.mma_async instructions are serialized")
                                || l.contains("warpgroup.wait is injected")
                        });
                        assert!(serialized.is_none(), "{name}: {}", serialized.unwrap_or(""));
                        if arg("spills") == Some("0") {
                            let spilled = log.as_deref().unwrap_or("").lines().find(|l| {
                                l.contains("spill")
                                    && !l.contains("0 bytes spill stores, 0 bytes spill loads")
                            });
                            assert!(spilled.is_none(), "{name}: {}", spilled.unwrap_or(""));
                        }
                        c.ptx
                    }
                    Err(e) => format!("error: {e}\n"),
                }
            })
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
        } else if p.extension().is_some_and(|e| e == "tsl" || e == "tir") {
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
            if !h.runs.is_empty() {
                let kernels = kernels_of(&name, &source, &h.overrides)
                    .unwrap_or_else(|e| panic!("{rel}: run lines need a kernel that builds\n{e}"));
                for run in &h.runs {
                    check_run_line(&rel, &kernels, run);
                }
            }
            let mut out = String::new();
            for (stage, args) in &h.stages {
                out.push_str(&format!("== {stage}\n"));
                out.push_str(&run_stage(stage, args, &name, &source, &h.overrides));
            }
            let snap = rel
                .trim_end_matches(".tsl")
                .trim_end_matches(".tir")
                .replace('/', "__");
            insta::assert_snapshot!(snap, out);
        }
    });
}
