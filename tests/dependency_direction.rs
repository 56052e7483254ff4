//! The architecture's promises about who links what, checked against cargo's own resolution.

use std::process::Command;

fn normal_deps(package: &str, features: &[&str]) -> Vec<String> {
    let out = Command::new(env!("CARGO"))
        .args([
            "tree",
            "--offline",
            "-e",
            "normal",
            "--prefix",
            "none",
            "-p",
            package,
        ])
        .args(features)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("cargo tree runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split_whitespace().next().map(str::to_string))
        .collect()
}

const BACKEND: [&str; 4] = ["melior", "inkwell", "llvm-sys", "mlir-sys"];

#[test]
fn runtime_links_neither_llvm_nor_mlir_nor_the_compiler() {
    let deps = normal_deps("tessel-runtime", &[]);
    assert!(deps.iter().any(|d| d == "cudarc"), "{deps:?}");
    for banned in BACKEND.iter().chain(&["tessel-compiler"]) {
        assert!(
            !deps.iter().any(|d| d == banned),
            "tessel-runtime depends on {banned}"
        );
    }
}

#[test]
fn slim_cli_build_links_no_backend() {
    let deps = normal_deps("tessel", &["--no-default-features"]);
    assert!(deps.iter().any(|d| d == "tessel-runtime"), "{deps:?}");
    for banned in BACKEND {
        assert!(
            !deps.iter().any(|d| d == banned),
            "slim tessel depends on {banned}"
        );
    }
}

#[test]
fn package_crate_is_leaf_of_the_project() {
    let deps = normal_deps("tessel-package", &[]);
    for banned in BACKEND
        .iter()
        .chain(&["cudarc", "tessel-compiler", "tessel-runtime"])
    {
        assert!(
            !deps.iter().any(|d| d == banned),
            "tessel-package depends on {banned}"
        );
    }
}

#[test]
fn models_link_the_front_end_and_interpreter_but_no_backend() {
    let deps = normal_deps("tessel-models", &[]);
    for needed in [
        "tessel-compiler",
        "tessel-runtime",
        "safetensors",
        "memmap2",
        "petgraph",
    ] {
        assert!(deps.iter().any(|d| d == needed), "{needed}: {deps:?}");
    }
    for banned in BACKEND {
        assert!(
            !deps.iter().any(|d| d == banned),
            "tessel-models depends on {banned}"
        );
    }
}
