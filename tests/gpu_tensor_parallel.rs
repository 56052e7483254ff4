//! Tensor-parallel TransNormerLLM on two GPUs (parallel::Ranks over NCCL, one process driving
//! both devices), on random weights in the released layout:
//! - tests/configs/tnl-small-h2.json: every position's logits of a ragged batch at TP = 2
//!   against TP = 1 on the same weights and against float64, and 32 greedy tokens;
//! - the 385M shape: prefill and decode tokens/s at TP = 1 and TP = 2, and the all-reduce time
//!   per decode step, printed (bench/tensor_parallel.py measures the 1B and 7B shapes).
//!
//! Needs two GPUs and libnccl; skips, saying why, otherwise. Packages:
//! TESSEL_KERNEL_DIR/transnormer_{tnl-small-h2,385m}.tp2.{arch}.tpkg (`tessel compile-model CONFIG
//! --tensor-parallel 2`: the TP = 1 and the rank kernels), built here when codegen is on.

use std::time::Instant;

use tessel_models::backend::Backend;
use tessel_models::backend_gpu::GpuBackend;
use tessel_models::parallel::{Nccl, Ranks};
use tessel_models::transnormer::config::ModelConfig;
use tessel_models::transnormer::tensor_parallel;
use tessel_models::transnormer::weights::Weights;
use tessel_models::transnormer::{Logits, Session, Tiles, Transnormer};
use tessel_reference::transnormer as reference;
use tessel_runtime::collective::{nccl_present, Group};
use tessel_runtime::format::Package;
use tessel_runtime::{device, Device, LoadedPackage};

include!("support/transnormer_fixture.rs");
use fixture::{err, ids, prompt};

/// As in models/tests/transnormer_tp.rs (the CPU run of the same split).
const TOL: f64 = 5e-2;
const MEAN_TOL: f64 = 1.2e-2;

fn two_gpus() -> bool {
    if !device::driver_present() {
        eprintln!("SKIP gpu_tensor_parallel: no CUDA driver on this machine");
        return false;
    }
    let n = device::device_count().unwrap();
    if n < 2 {
        eprintln!("SKIP gpu_tensor_parallel: {n} GPU(s), tensor parallelism needs 2");
        return false;
    }
    if !nccl_present() {
        eprintln!("SKIP gpu_tensor_parallel: no libnccl on this machine");
        return false;
    }
    true
}

fn package(name: &str) -> Package {
    let dev = Device::open(0).unwrap();
    let arch = if dev.compute_capability().unwrap() == (9, 0) {
        "sm_90a"
    } else {
        "sm_80"
    };
    let file = format!("transnormer_{name}.tp2.{arch}.tpkg");
    let path = match std::env::var_os("TESSEL_KERNEL_DIR") {
        Some(dir) => std::path::Path::new(&dir).join(file),
        None => build_package(name, arch, &file),
    };
    Package::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

#[cfg(feature = "codegen")]
fn build_package(name: &str, arch: &str, file: &str) -> std::path::PathBuf {
    let config = if ModelConfig::released(name).is_some() {
        name.to_string()
    } else {
        format!("{}/tests/configs/{name}.json", env!("CARGO_MANIFEST_DIR"))
    };
    let out = std::env::temp_dir().join(file);
    let status = std::process::Command::new(env!("CARGO_BIN_EXE_tessel"))
        .args([
            "compile-model",
            &config,
            "--tensor-parallel",
            "2",
            "--arch",
            arch,
            "-o",
        ])
        .arg(&out)
        .status()
        .unwrap();
    assert!(
        status.success(),
        "compile-model {config} --tensor-parallel 2"
    );
    out
}

#[cfg(not(feature = "codegen"))]
fn build_package(name: &str, _arch: &str, file: &str) -> std::path::PathBuf {
    panic!("no package for {name}: set TESSEL_KERNEL_DIR to a directory holding {file}")
}

/// The unsplit model on GPU 0 and the split one on GPUs 0 and 1, both loaded from `w`.
fn both(
    pkg: &Package,
    cfg: &ModelConfig,
    w: &Weights,
) -> (Transnormer, GpuBackend, Transnormer, Ranks<Nccl>) {
    let dev = Device::open(0).unwrap();
    let model = Transnormer::new(cfg.clone(), Tiles::gpu());
    let mut one = GpuBackend::new(dev.clone(), LoadedPackage::load(&dev, pkg.clone()).unwrap());
    model.load(&mut one, w).unwrap();
    let mut two = Ranks::gpu(Group::open(2).unwrap(), pkg).unwrap();
    let local = tensor_parallel::load(&model, &mut two, w).unwrap();
    (model, one, local, two)
}

#[test]
fn tp2_logits_and_greedy_tokens_match_tp1_and_float64() {
    if !two_gpus() {
        return;
    }
    let (cfg, weights, _dir) = fixture::random_model(&fixture::tiny("tnl-small-h2"), 0.08, 0.6);
    let reference = fixture::reference_model(&cfg, &weights);
    let (model, mut one, local, mut two) = both(&package("tnl-small-h2"), &cfg, &weights);
    let v = cfg.vocab;
    let prompts = vec![prompt(300, v), prompt(77, v)];
    let n = 300;
    let all = |m: &Transnormer, be: &mut dyn Backend| {
        let mut s = Session::new(m, be, 2).unwrap();
        s.prefill(&prompts, Logits::All).unwrap();
        s.all_logits(n).unwrap()
    };
    let (whole, split) = (all(&model, &mut one), all(&local, &mut two));
    let (mut vs_one, mut vs_ref) = (Vec::new(), Vec::new());
    for (b, p) in prompts.iter().enumerate() {
        for (t, w) in reference.forward(&ids(p)).iter().enumerate() {
            let at = n - p.len() + t;
            vs_one.push(err(&split[b][at], &whole[b][at]));
            vs_ref.push(err(&split[b][at], w));
        }
    }
    let worst = |e: &[f64]| e.iter().cloned().fold(0.0, f64::max);
    let mean = |e: &[f64]| e.iter().sum::<f64>() / e.len() as f64;
    eprintln!(
        "TP=2 logits: vs TP=1 worst {:.2e} mean {:.2e}; vs float64 worst {:.2e} mean {:.2e}",
        worst(&vs_one),
        mean(&vs_one),
        worst(&vs_ref),
        mean(&vs_ref)
    );
    assert!(worst(&vs_ref) < TOL && mean(&vs_ref) < MEAN_TOL);
    assert!(worst(&vs_one) < 2.0 * TOL && mean(&vs_one) < 2.0 * MEAN_TOL);

    // 32 greedy tokens at TP = 2, each the reference's or within rounding of it.
    let start = prompt(20, v);
    let mut s = Session::new(&local, &mut two, 1).unwrap();
    s.prefill(std::slice::from_ref(&start), Logits::Last)
        .unwrap();
    let mut dec = reference::Decoder::new(&reference);
    let mut want = Vec::new();
    for &t in &start {
        want = dec.step(t as usize);
    }
    let mut exact = 0;
    for i in 0..32 {
        let got = if i == 0 {
            s.next_tokens().unwrap()[0]
        } else {
            s.step().unwrap()[0]
        };
        let best = (0..v).max_by(|a, b| want[*a].total_cmp(&want[*b])).unwrap();
        let scale = want.iter().fold(0f64, |m, x| m.max(x.abs()));
        assert!(
            want[best] - want[got as usize] <= TOL * scale,
            "token {i}: {got} vs {best}"
        );
        exact += usize::from(got as usize == best);
        want = dec.step(got as usize);
    }
    eprintln!("TP=2 greedy: {exact} of 32 tokens equal float64's");
    assert!(exact >= 30);
}

/// Tokens/s of a prefill of `n` tokens and of `steps` decode steps after it (batch `b`), and the
/// all-reduce milliseconds per decode step where measured.
fn throughput(
    m: &Transnormer,
    be: &mut dyn Backend,
    n: usize,
    b: usize,
    steps: usize,
) -> (f64, f64, Option<f64>) {
    let prompts = vec![prompt(n, m.cfg.vocab); b];
    let mut s = Session::new(m, be, b).unwrap();
    let t0 = Instant::now();
    s.prefill(&prompts, Logits::Last).unwrap();
    s.next_tokens().unwrap();
    let prefill = (n * b) as f64 / t0.elapsed().as_secs_f64();
    s.step().unwrap(); // captures the step (per rank, between all-reduces)
    s.backend().take_collective_ms().unwrap();
    let t0 = Instant::now();
    for _ in 0..steps {
        s.step().unwrap();
    }
    let decode = (steps * b) as f64 / t0.elapsed().as_secs_f64();
    let ar = s
        .backend()
        .take_collective_ms()
        .unwrap()
        .map(|ms| ms / steps as f64);
    (prefill, decode, ar)
}

#[test]
fn tp2_throughput_at_the_385m_shape() {
    if !two_gpus() {
        return;
    }
    let cfg = ModelConfig::released("385m").unwrap();
    let (cfg, weights, _dir) = fixture::random_model(&cfg, 0.02, 0.02);
    let (model, mut one, local, mut two) = both(&package("385m"), &cfg, &weights);
    two.comm.timing = true;
    let (p1, _, _) = throughput(&model, &mut one, 2048, 1, 1);
    let (p2, _, _) = throughput(&local, &mut two, 2048, 1, 1);
    eprintln!(
        "385M prefill 2048: TP=1 {p1:.0} tokens/s, TP=2 {p2:.0} ({:.0}% scaling efficiency)",
        100.0 * p2 / (2.0 * p1)
    );
    for b in [1, 16] {
        let (_, d1, _) = throughput(&model, &mut one, 1024, b, 64);
        let (_, d2, ar) = throughput(&local, &mut two, 1024, b, 64);
        eprintln!(
            "385M decode batch {b} after 1024: TP=1 {d1:.1} tokens/s, TP=2 {d2:.1} ({:.0}% \
             scaling efficiency); all-reduce {:.1} µs/step",
            100.0 * d2 / (2.0 * d1),
            ar.unwrap_or(f64::NAN) * 1e3,
        );
        assert!(d2 > 0.0 && ar.is_some());
    }
}
