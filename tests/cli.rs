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
    let src = concat!(env!("CARGO_MANIFEST_DIR"), "/dsl-examples/elementwise.tsl");
    let (ok, _, err) = tessel(&[
        "compile",
        src,
        "-D",
        "T=bf16",
        "--arch",
        "sm_80",
        "-o",
        file.to_str().unwrap(),
    ]);
    assert!(ok, "{err}");
    let ptx = std::fs::read_to_string(&file).unwrap();
    assert!(ptx.contains(".target sm_80"));
    assert!(ptx.contains(".visible .entry fma("));
    assert!(ptx.contains("cvt.rn.bf16.f32"));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[cfg(feature = "codegen")]
#[test]
fn impossible_requests_fail_with_a_message_not_an_abort() {
    let src = concat!(env!("CARGO_MANIFEST_DIR"), "/dsl-examples/elementwise.tsl");
    let (ok, _, err) = tessel(&["compile", src, "--arch", "sm_100a"]);
    assert!(!ok);
    assert!(err.contains("unknown GPU architecture `sm_100a`"), "{err}");
    assert!(err.contains("sm_80, sm_90, sm_90a"), "{err}");
    let (ok, _, err) = tessel(&["compile", src, "-D", "T=f64"]);
    assert!(!ok);
    assert!(err.contains("f64"), "{err}");
}

#[test]
fn bench_decode_refuses_bad_requests_before_touching_a_device() {
    let (ok, _, err) = tessel(&[
        "bench-decode",
        "missing.tpkg",
        "--context",
        "100",
        "--window",
        "512",
    ]);
    assert!(!ok);
    assert!(
        err.contains("every context must be at least the window (512 steps)"),
        "{err}"
    );
    let (ok, _, err) = tessel(&["bench-decode", "/nonexistent/lightning.tpkg"]);
    assert!(!ok);
    assert!(
        err.contains("/nonexistent/lightning.tpkg") || err.contains("No such file"),
        "{err}"
    );
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
        out.contains("kernel matmul<BM = 64, BN = 256, BK = 64, T = f16>"),
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

/// A .npy file written by hand (format 1.0), independently of the reader under test.
fn write_npy(path: &std::path::Path, descr: &str, shape: &[usize], payload: &[u8]) {
    let dims: Vec<String> = shape.iter().map(|d| d.to_string()).collect();
    let tuple = if dims.len() == 1 {
        format!("({},)", dims[0])
    } else {
        format!("({})", dims.join(", "))
    };
    let mut header = format!("{{'descr': '{descr}', 'fortran_order': False, 'shape': {tuple}, }}");
    while (10 + header.len() + 1) % 64 != 0 {
        header.push(' ');
    }
    header.push('\n');
    let mut bytes = b"\x93NUMPY\x01\x00".to_vec();
    bytes.extend_from_slice(&(header.len() as u16).to_le_bytes());
    bytes.extend_from_slice(header.as_bytes());
    bytes.extend_from_slice(payload);
    std::fs::write(path, bytes).unwrap();
}

#[test]
fn interpret_reads_npy_inputs_and_binds_shapes_from_them() {
    let dir = std::env::temp_dir().join(format!("tessel-npy-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let (a, b, bad) = (dir.join("a.npy"), dir.join("b.npy"), dir.join("bad.npy"));
    let a_vals: Vec<u8> = (0..12).flat_map(|i| (i as f32).to_le_bytes()).collect();
    write_npy(&a, "<f4", &[3, 4], &a_vals);
    let b_vals: Vec<u8> = (0..20).flat_map(|_| 1.0f64.to_le_bytes()).collect();
    write_npy(&b, "<f8", &[4, 5], &b_vals);
    write_npy(&bad, "<i8", &[4, 5], &[0u8; 160]);
    let mm = format!("{}/dsl-examples/matmul.tsl", env!("CARGO_MANIFEST_DIR"));
    let arg = |n: &str, p: &std::path::Path| format!("{n}={}", p.display());
    // No --shape: M, K and N all come from the files. C[i, :] = Σ_k a[i, k] = 16 i + 6.
    let (ok, out, err) = tessel(&[
        "interpret",
        &mm,
        "--kernel",
        "matmul",
        "--npy",
        &arg("a", &a),
        "--npy",
        &arg("b", &b),
        "-D",
        "BM=16",
        "-D",
        "BN=16",
        "-D",
        "BK=8",
    ]);
    assert!(ok, "{err}");
    let row = out.lines().find(|l| l.starts_with("c ")).unwrap();
    assert!(
        row.contains("[3, 5]")
            && row.contains("6.0000e0")
            && row.contains("3.8000e1")
            && row.contains("2.2000e1"),
        "{row}"
    );
    let (ok, _, err) = tessel(&[
        "interpret",
        &mm,
        "--kernel",
        "matmul",
        "--npy",
        &arg("a", &a),
        "--npy",
        &arg("b", &bad),
    ]);
    assert!(
        !ok && err.contains("element type `i8` is not supported"),
        "{err}"
    );
    let (ok, _, err) = tessel(&[
        "interpret",
        &mm,
        "--kernel",
        "matmul",
        "--npy",
        &arg("a", &a),
        "--npy",
        &arg("b", &a),
    ]);
    assert!(!ok && err.contains("`K` is 4 elsewhere but 3"), "{err}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[cfg(feature = "codegen")]
#[test]
fn demo_writes_every_kernel_for_every_target() {
    let dir = std::env::temp_dir().join(format!("tessel-demo-{}", std::process::id()));
    // Run from another directory: the examples are built into the binary.
    let out = Command::new(env!("CARGO_BIN_EXE_tessel"))
        .args(["demo", "--out-dir", dir.to_str().unwrap()])
        .current_dir(std::env::temp_dir())
        .env_remove("PTXAS")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let table = String::from_utf8_lossy(&out.stdout);
    for kernel in [
        "dsl_fma_f32",
        "dsl_fma_bf16",
        "dsl_fma_f16",
        "dsl_matmul",
        "dsl_gated_silu",
    ] {
        for arch in ["sm_80", "sm_90", "sm_90a"] {
            assert!(
                table
                    .lines()
                    .any(|l| l.starts_with(kernel) && l.contains(arch)),
                "{kernel} {arch}:\n{table}"
            );
            let pkg =
                tessel_runtime::format::Package::read(&dir.join(format!("{kernel}.{arch}.tpkg")))
                    .unwrap();
            let ptx = std::fs::read_to_string(dir.join(format!("{kernel}.{arch}.ptx"))).unwrap();
            assert_eq!(
                pkg.kernels().next().unwrap().1,
                ptx,
                "{kernel} {arch}: package and PTX file differ"
            );
        }
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn interpret_draws_named_inputs_from_their_range() {
    let root = env!("CARGO_MANIFEST_DIR");
    let src = format!("{root}/dsl-examples/elementwise.tsl");
    let args = |extra: &[&str]| {
        let mut a = vec![
            "interpret",
            src.as_str(),
            "--kernel",
            "fma",
            "--shape",
            "N=1000",
        ];
        a.extend_from_slice(extra);
        a.iter().map(|s| s.to_string()).collect::<Vec<_>>()
    };
    let run = |extra: &[&str]| {
        let a = args(extra);
        let refs: Vec<&str> = a.iter().map(String::as_str).collect();
        tessel(&refs)
    };
    // c = a·b + c with a, b in [2, 3) and c in [5, 6): every result in [9, 15).
    let (ok, out, err) = run(&["--range", "a=2:3,b=2:3,c=5:6", "--seed", "3"]);
    assert!(ok, "{err}");
    let row: Vec<f64> = out
        .lines()
        .find(|l| l.starts_with("c "))
        .expect("a summary row for c")
        .split_whitespace()
        .filter_map(|w| w.parse().ok())
        .collect();
    // N, then min, max, mean, unset.
    let (min, max) = (row[row.len() - 4], row[row.len() - 3]);
    assert!(
        (9.0..15.0).contains(&min) && (9.0..15.0).contains(&max),
        "{out}"
    );
    let (ok, _, err) = run(&["--range", "nosuch=0:1"]);
    assert!(!ok && err.contains("no input tensor `nosuch`"), "{err}");
    let (ok, _, err) = run(&["--range", "a=1:0"]);
    assert!(!ok && err.contains("not LO:HI"), "{err}");
}

#[cfg(feature = "codegen")]
#[test]
fn schedule_flags_follow_the_attributes_rules() {
    let mm = format!("{}/dsl-examples/matmul.tsl", env!("CARGO_MANIFEST_DIR"));
    let compile = |extra: &[&str]| {
        let mut a = vec!["compile", &mm, "--arch", "sm_80", "--emit", "sched"];
        a.extend_from_slice(extra);
        tessel(&a)
    };
    // `.minnctapersm 0` would be PTX that ptxas rejects; 64 blocks would be dropped by it.
    let (ok, _, err) = compile(&["--occupancy", "0"]);
    assert!(!ok);
    assert!(
        err.contains("`--occupancy` takes one integer, at least 1, not 0"),
        "{err}"
    );
    let (ok, _, err) = compile(&["--occupancy", "64"]);
    assert!(!ok);
    assert!(
        err.contains("`--occupancy`: asks for 64 blocks per SM"),
        "{err}"
    );
    let (ok, out, err) = compile(&["--occupancy", "1"]);
    assert!(ok, "{err}");
    assert!(out.contains("occupancy: at least 1 blocks per SM"), "{out}");
    // `@stages(0)` is refused by the same rule.
    let (ok, _, err) = compile(&["--stages", "0"]);
    assert!(!ok);
    assert!(
        err.contains("`--stages` takes one integer, at least 1, not 0"),
        "{err}"
    );
    // Whether a flag fits the kernel or the target is the scheduler's to say: matmul has 8 warps.
    let (ok, _, err) = compile(&["--warps", "3x2"]);
    assert!(!ok);
    assert!(err.contains("`--warps`: tiles 3 × 2 = 6 warps"), "{err}");
    // A strategy may be forced; the schedule says which it runs.
    let (ok, out, err) = compile(&["--strategy", "simt"]);
    assert!(ok, "{err}");
    assert!(out.contains("strategy: simt"), "{out}");
    assert!(
        out.contains("on fma;") && !out.contains("cp.async"),
        "{out}"
    );
}
