//! What users reach for: `interpret --out`, `inspect`, spill warnings from `compile`, and
//! `--timings` on a variant build.

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

fn example(name: &str) -> String {
    format!("{}/dsl-examples/{name}", env!("CARGO_MANIFEST_DIR"))
}

fn scratch(tag: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("tessel-tools-{tag}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[test]
fn interpret_writes_outputs_as_npy() {
    let dir = scratch("out");
    // bf16 inputs drawn from [1, 1.0000001) all round to 1, so c = a·b + c is exactly 2.
    let (ok, out, err) = tessel(&[
        "interpret",
        &example("elementwise.tsl"),
        "--kernel",
        "fma",
        "-D",
        "T=bf16",
        "--shape",
        "N=300",
        "--range",
        "a=1:1.0000001,b=1:1.0000001,c=1:1.0000001",
        "--out",
        dir.to_str().unwrap(),
    ]);
    assert!(ok, "{err}");
    assert!(out.contains("c.npy"), "{out}");
    // Only outputs are written: `a` and `b` are inputs.
    assert!(!dir.join("a.npy").exists());
    let bytes = std::fs::read(dir.join("c.npy")).unwrap();
    let npy = npyz::NpyFile::new(&bytes[..]).unwrap();
    assert_eq!(npy.shape(), &[300]);
    let values: Vec<f32> = npy.into_vec().unwrap();
    assert!(values.iter().all(|&v| v == 2.0), "{values:?}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[cfg(feature = "codegen")]
#[test]
fn inspect_lists_kernels_variants_parameters_and_requirements() {
    let dir = scratch("inspect");
    let pkg = dir.join("softmax.tpkg");
    let pkg = pkg.to_str().unwrap();
    let (ok, _, err) = tessel(&[
        "compile",
        &example("softmax.tsl"),
        "--package",
        pkg,
        "--variant",
        "BN=512,1024",
        "--timings",
    ]);
    assert!(ok, "{err}");
    // --timings covers every entry of a variant build.
    for entry in ["softmax[BN=512]", "softmax[BN=1024]"] {
        assert!(
            err.lines()
                .any(|l| l.starts_with(&format!("{entry}: ")) && l.contains(" ms")),
            "{err}"
        );
    }
    let (ok, out, err) = tessel(&["inspect", pkg]);
    assert!(ok, "{err}");
    assert!(out.contains("2 kernel(s) for sm_90a"), "{out}");
    for want in [
        "kernel softmax[BN=512]",
        "kernel softmax[BN=1024]",
        "  constants  BM=4 BN=512 T=f32",
        "  param      x: in f32[M, N]",
        "  param      y: out f32[M, N]",
        "  requires   N <= 512",
        "  requires   N <= 1024",
        "  launch     grid(cdiv(M, 4)) block(128, 1, 1)",
    ] {
        assert!(out.contains(want), "missing `{want}` in\n{out}");
    }
    let (ok, _, err) = tessel(&["inspect", "/nonexistent.tpkg"]);
    assert!(!ok && err.contains("/nonexistent.tpkg"), "{err}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[cfg(feature = "codegen")]
#[test]
fn compile_warns_when_ptxas_reports_spills() {
    if std::env::var_os("PTXAS").is_none() {
        eprintln!("SKIP compile_warns_when_ptxas_reports_spills: PTXAS is not set");
        return;
    }
    let fa = example("flash_attention.tsl");
    // The dK/dV kernel at D = 128 sits at 255 registers and spills on sm_90a; the forward at
    // D = 64 does not.
    let (ok, _, err) = tessel(&[
        "compile",
        &fa,
        "--kernel",
        "flash_attention_bwd_dkdv",
        "-D",
        "D=128",
        "-o",
        "/dev/null",
    ]);
    assert!(ok, "{err}");
    assert!(
        err.contains("warning: `flash_attention_bwd_dkdv` spills") && err.contains("registers"),
        "{err}"
    );
    let (ok, _, err) = tessel(&[
        "compile",
        &fa,
        "--kernel",
        "flash_attention_fwd",
        "-o",
        "/dev/null",
    ]);
    assert!(ok, "{err}");
    assert!(!err.contains("spills"), "{err}");
}
