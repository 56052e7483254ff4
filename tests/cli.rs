//! The `tessel` binary as a user meets it: outputs, exit codes, error messages.

use std::process::Command;

fn tessel(args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_tessel"))
        .args(args)
        .output()
        .expect("tessel runs");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn targets_lists_the_table() {
    let (ok, out, _) = tessel(&["targets"]);
    assert!(ok);
    for arch in ["sm_80", "sm_90", "sm_90a"] {
        assert!(out.contains(arch), "{out}");
    }
    let sm90a = out.lines().find(|l| l.starts_with("sm_90a")).unwrap();
    assert!(sm90a.contains("wgmma"), "{sm90a}");
    let sm90 = out.lines().find(|l| l.starts_with("sm_90 ")).unwrap();
    assert!(!sm90.contains("wgmma"), "{sm90}");
}

#[cfg(feature = "codegen")]
#[test]
fn compile_writes_ptx_for_the_requested_target() {
    let dir = std::env::temp_dir().join(format!("tessel-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("fma.ptx");
    let (ok, _, err) = tessel(&[
        "compile",
        "--builtin",
        "fma",
        "--dtype",
        "bf16",
        "--arch",
        "sm_80",
        "-o",
        file.to_str().unwrap(),
    ]);
    assert!(ok, "{err}");
    let ptx = std::fs::read_to_string(&file).unwrap();
    assert!(ptx.contains(".target sm_80"));
    assert!(ptx.contains(".visible .entry fma_bf16("));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[cfg(feature = "codegen")]
#[test]
fn impossible_requests_fail_with_a_message_not_an_abort() {
    let (ok, _, err) = tessel(&["compile", "--builtin", "fma", "--arch", "sm_100a"]);
    assert!(!ok);
    assert!(err.contains("unknown GPU architecture `sm_100a`"), "{err}");
    assert!(err.contains("sm_80, sm_90, sm_90a"), "{err}");
    let (ok, _, err) = tessel(&["compile", "--builtin", "fma", "--dtype", "f64"]);
    assert!(!ok);
    assert!(err.contains("unknown dtype `f64`"), "{err}");
}

#[test]
fn devices_without_a_driver_is_a_clear_error() {
    if tessel_runtime::device::driver_present() {
        eprintln!("SKIP devices_without_a_driver_is_a_clear_error: a driver is present");
        return;
    }
    let (ok, _, err) = tessel(&["devices"]);
    assert!(!ok);
    assert!(err.contains("no CUDA driver found"), "{err}");
}

#[test]
fn check_reports_rendered_diagnostics_and_fails() {
    let dir = std::env::temp_dir().join(format!("tessel-check-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("bad.tsl");
    std::fs::write(
        &file,
        "kernel k(a: in tensor<f32>[N]) grid(N) {\n    let x = lod(a[0 : +4]);\n}\n",
    )
    .unwrap();
    let (ok, _, err) = tessel(&["check", file.to_str().unwrap()]);
    assert!(!ok);
    assert!(err.contains("unknown function `lod`"), "{err}");
    assert!(err.contains("bad.tsl:2:13"), "{err}");
    assert!(err.contains("did you mean `load`?"), "{err}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn ir_and_interpret_run_the_examples() {
    let root = env!("CARGO_MANIFEST_DIR");
    let mm = format!("{root}/dsl-examples/matmul.tsl");
    let (ok, out, err) = tessel(&["ir", &mm, "-D", "BM=64", "-D", "T=f16"]);
    assert!(ok, "{err}");
    assert!(
        out.contains("kernel matmul<BM = 64, BN = 128, BK = 32, T = f16>"),
        "{out}"
    );
    assert!(out.contains("dot %"), "{out}");
    let (ok, out, err) = tessel(&[
        "interpret",
        &mm,
        "--kernel",
        "matmul",
        "--shape",
        "M=33,N=20,K=17",
        "-D",
        "BM=16",
        "-D",
        "BN=16",
        "-D",
        "BK=8",
        "--seed",
        "7",
    ]);
    assert!(ok, "{err}");
    let line = out
        .lines()
        .find(|l| l.starts_with("c "))
        .expect("a summary row for c");
    // Every element written: the last column counts elements still poisoned.
    assert!(line.trim_end().ends_with(" 0"), "{line}");
    let (ok, _, err) = tessel(&["interpret", &mm, "--kernel", "matmul", "--shape", "M=4"]);
    assert!(!ok);
    assert!(err.contains("give the size of `K`"), "{err}");
}
