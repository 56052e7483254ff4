//! Bad requests to the `tessel` binary: each refused early, with a message naming what is wrong,
//! never a panic (exit 101), an abort (134) or a run that quietly ignores part of the request.

use std::process::Command;

fn tessel(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_tessel"))
        .args(args)
        .output()
        .expect("tessel runs");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Runs and expects a plain failure (exit 1) whose message contains `want`.
fn refused(args: &[&str], want: &str) {
    let (code, _, err) = tessel(args);
    assert_eq!(code, 1, "{args:?}: exit {code}\n{err}");
    assert!(err.contains(want), "{args:?}: wanted `{want}` in\n{err}");
}

fn example(name: &str) -> String {
    format!("{}/dsl-examples/{name}", env!("CARGO_MANIFEST_DIR"))
}

fn scratch(tag: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("tessel-bad-{tag}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[test]
fn interpret_takes_only_whole_sizes_it_can_index_and_hold() {
    let mm = example("matmul.tsl");
    let run = |shape: &str, want: &str| {
        refused(
            &["interpret", &mm, "--kernel", "matmul", "--shape", shape],
            want,
        )
    };
    for bad in ["-5", "2.5", "nan", "1e10"] {
        run(&format!("M={bad},N=4,K=4"), "not a size");
    }
    run(
        "M=1000000000000,N=4,K=4",
        "the largest extent a kernel indexes (i32)",
    );
    // Each dimension fits i32, the tensors do not fit any machine: refused before allocating.
    let max = i32::MAX;
    run(&format!("M={max},N={max},K={max}"), "of host memory");
}

#[test]
fn names_that_match_nothing_are_refused_with_a_suggestion() {
    let mm = example("matmul.tsl");
    refused(
        &[
            "interpret",
            &mm,
            "--kernel",
            "matmul",
            "--shape",
            "M=3,N=4,K=4,Q=3",
        ],
        "--shape Q: there is no shape symbol `Q`",
    );
    refused(
        &["ir", &mm, "-D", "Bm=8"],
        "-D Bm: there is no compile-time parameter `Bm`; did you mean `BM`?",
    );
    let act = example("activation.tsl");
    refused(
        &[
            "interpret",
            &act,
            "--kernel",
            "gated_silu",
            "--shape",
            "N=64",
            "--scalar",
            "limitt=0.5",
        ],
        "--scalar limitt: there is no scalar parameter `limitt`; did you mean `limit`?",
    );
    refused(
        &[
            "interpret",
            &mm,
            "--kernel",
            "matmull",
            "--shape",
            "M=3,N=4,K=4",
        ],
        "no kernel named `matmull`",
    );
    refused(
        &["ir", &mm, "--kernel", "matmull"],
        "did you mean `matmul`?",
    );
    // The right names still run.
    let (code, _, err) = tessel(&[
        "interpret",
        &act,
        "--kernel",
        "gated_silu",
        "--shape",
        "N=64",
        "--scalar",
        "limit=0.5",
    ]);
    assert_eq!(code, 0, "{err}");
}

#[cfg(feature = "codegen")]
#[test]
fn variants_must_name_a_constant_once() {
    let dir = scratch("variant");
    let pkg = dir.join("mm.tpkg");
    let pkg = pkg.to_str().unwrap();
    let mm = example("matmul.tsl");
    refused(
        &["compile", &mm, "--package", pkg, "--variant", "X=1,2"],
        "--variant X: there is no compile-time parameter `X`",
    );
    refused(
        &[
            "compile",
            &mm,
            "--package",
            pkg,
            "--variant",
            "BN=64",
            "--variant",
            "BN=128",
        ],
        "--variant BN is given twice",
    );
    refused(
        &[
            "compile",
            &mm,
            "--package",
            pkg,
            "--variant",
            "BN=64",
            "-D",
            "BKK=16",
        ],
        "did you mean `BK`?",
    );
    assert!(!dir.join("mm.tpkg").exists(), "nothing is written");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[cfg(feature = "codegen")]
#[test]
fn run_checks_the_request_before_the_device() {
    // These refusals come before the device is opened, so they read the same with or without a
    // GPU.
    let dir = scratch("run");
    let pkg = dir.join("fma.tpkg");
    let pkg = pkg.to_str().unwrap();
    let (code, _, err) = tessel(&[
        "compile",
        &example("elementwise.tsl"),
        "--package",
        pkg,
        "-o",
        dir.join("fma.ptx").to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{err}");
    let run = |extra: &[&str], want: &str| {
        let mut a = vec!["run", pkg, "--kernel", "fma"];
        a.extend_from_slice(extra);
        refused(&a, want)
    };
    run(&["--shape", "N=1e10"], "not a size");
    run(&["--shape", "N=-1"], "not a size");
    run(&["--shape", "N=64,Q=3"], "there is no shape symbol `Q`");
    run(
        &["--shape", "N=64", "--scalar", "eps=1"],
        "no scalar parameter `eps`",
    );
    run(&["--shape", "N=2147483648"], "the largest extent");
    // `bench` checks every case the same way before it opens the device.
    refused(
        &["bench", pkg, "--kernel", "fma", "--shape", "N=4.5"],
        "--shape N=4.5: not a size",
    );
    refused(
        &[
            "bench", pkg, "--kernel", "fma", "--shape", "N=64", "--scalar", "alpha=2",
        ],
        "no scalar parameter `alpha`",
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_broken_requirement_is_an_error_not_unwritten_output() {
    // softmax.tsl keeps a row in one tile: N = 4097 > BN = 1024 used to leave 15,365 elements
    // unwritten and report success.
    refused(
        &[
            "interpret",
            &example("softmax.tsl"),
            "--kernel",
            "softmax",
            "--shape",
            "M=4,N=4097",
        ],
        "the kernel requires `N <= 1024`, which does not hold for N = 4097",
    );
    let (code, out, err) = tessel(&[
        "interpret",
        &example("softmax.tsl"),
        "--kernel",
        "softmax",
        "--shape",
        "M=4,N=1024",
    ]);
    assert_eq!(code, 0, "{err}");
    assert!(
        out.lines()
            .any(|l| l.starts_with("y ") && l.trim_end().ends_with(" 0")),
        "{out}"
    );
}

#[test]
fn an_empty_file_and_a_bad_extent_fail_check() {
    let dir = scratch("empty");
    let empty = dir.join("empty.tsl");
    std::fs::write(&empty, "// nothing here\n").unwrap();
    refused(
        &["check", empty.to_str().unwrap()],
        "the file defines no kernel",
    );
    // Caught by the front end, so `check` and `interpret` fail as `compile` does.
    refused(
        &["check", &example("softmax.tsl"), "-D", "BN=1000"],
        "tile dimension 1000 is not a power of two",
    );
    std::fs::remove_dir_all(&dir).unwrap();
}
