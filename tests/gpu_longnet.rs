//! LongNet on the GPU (GpuBackend: a `tessel compile-model` package, planned views into one
//! arena, the decode step replayed as a CUDA graph) on random weights under torchscale's names,
//! configuration tests/configs/longnet-small.json (4 layers, D = 512, H = 8, head dim 64,
//! patterns (256, 1), (512, 2), (1024, 4)):
//! - every position's logits of a 2 × 600 prefill against the float64 model (segment boundaries
//!   at 256 and 512, w = 1024 > N);
//! - prefill then teacher-forced decode across the 512 boundary against the GPU's own full
//!   forward of the longer sequence, and greedy tokens against float64;
//! - decode µs/step at batch 1 and 8 after 1k and 4k tokens.
//!
//! Package: TESSEL_KERNEL_DIR/longnet_longnet-small.{arch}.tpkg on the GPU machine (`tessel
//! compile-model tests/configs/longnet-small.json --arch ARCH -o ...`); built here through the
//! CLI when the codegen feature is on. Skips (printing why) without a CUDA driver.

use std::time::Instant;

use tessel_models::backend_gpu::GpuBackend;
use tessel_models::checkpoint::Checkpoint;
use tessel_models::longnet::{LongNet, LongNetSession, LongNetTiles};
use tessel_models::transnormer::Logits;
use tessel_runtime::format::Package;
use tessel_runtime::{device, Device, LoadedPackage};

include!("support/longnet_fixture.rs");
use fixture::{err, prompt};

const NAME: &str = "longnet-small";
/// bf16 weights and activations (the interpreter test's budget).
const TOL: f64 = 5e-2;
const MEAN_TOL: f64 = 1.2e-2;

fn open() -> Option<Device> {
    if !device::driver_present() {
        eprintln!("SKIP gpu_longnet: no CUDA driver on this machine");
        return None;
    }
    Some(Device::open(0).unwrap())
}

fn package(dev: &Device) -> LoadedPackage {
    let arch = if dev.compute_capability().unwrap() == (9, 0) {
        "sm_90a"
    } else {
        "sm_80"
    };
    let file = format!("longnet_{NAME}.{arch}.tpkg");
    let path = match std::env::var_os("TESSEL_KERNEL_DIR") {
        Some(dir) => std::path::Path::new(&dir).join(file),
        None => build_package(arch, &file),
    };
    let pkg = Package::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    LoadedPackage::load(dev, pkg).unwrap()
}

#[cfg(feature = "codegen")]
fn build_package(arch: &str, file: &str) -> std::path::PathBuf {
    let config = format!("{}/tests/configs/{NAME}.json", env!("CARGO_MANIFEST_DIR"));
    let out = std::env::temp_dir().join(file);
    let status = std::process::Command::new(env!("CARGO_BIN_EXE_tessel"))
        .args(["compile-model", &config, "--arch", arch, "-o"])
        .arg(&out)
        .status()
        .unwrap();
    assert!(status.success(), "compile-model {config}");
    out
}

#[cfg(not(feature = "codegen"))]
fn build_package(_arch: &str, file: &str) -> std::path::PathBuf {
    panic!("no package for {NAME}: set TESSEL_KERNEL_DIR to a directory holding {file}")
}

fn setup(dev: Device) -> (LongNet, GpuBackend, Checkpoint, fixture::Dir) {
    let (cfg, ck, dir) = fixture::random_model(&fixture::config(NAME), 0.04, 0.3, 2);
    let model = LongNet::new(cfg, LongNetTiles::gpu());
    let mut be = GpuBackend::new(dev.clone(), package(&dev));
    model.load(&mut be, &ck).unwrap();
    (model, be, ck, dir)
}

#[test]
fn gpu_longnet_matches_float64_and_decodes_like_the_full_forward() {
    let Some(dev) = open() else { return };
    let (model, mut be, ck, _dir) = setup(dev);
    let reference = fixture::reference_model(&model.cfg, &ck);
    let v = model.cfg.vocab;
    // Every position of a 2 × 600 prefill against float64.
    let n = 600;
    let prompts = vec![prompt(n, v), prompt(n, v)];
    {
        let mut s = LongNetSession::new(&model, &mut be, 2, n).unwrap();
        s.prefill(&prompts, Logits::All).unwrap();
        let all = s.all_logits(n).unwrap();
        let mut errs = Vec::new();
        for (b, p) in prompts.iter().enumerate() {
            let want = reference.forward(p);
            for (t, w) in want.iter().enumerate() {
                let e = err(&all[b][t], w);
                assert!(e < TOL, "seq {b} position {t}: {e}");
                errs.push(e);
            }
        }
        let mean = errs.iter().sum::<f64>() / errs.len() as f64;
        let worst = errs.iter().cloned().fold(0.0, f64::max);
        eprintln!("prefill 2×{n} vs float64: worst {worst:.2e}, mean {mean:.2e}");
        assert!(mean < MEAN_TOL, "mean {mean}");
    }
    // Prefill 500, teacher-forced decode to 540 (across 512), against the full forward of
    // the 540 tokens on the GPU.
    let seq = prompt(540, v);
    let full = {
        let mut s = LongNetSession::new(&model, &mut be, 1, 540).unwrap();
        s.prefill(std::slice::from_ref(&seq), Logits::All).unwrap();
        s.all_logits(540).unwrap().remove(0)
    };
    let mut s = LongNetSession::new(&model, &mut be, 1, 540).unwrap();
    s.prefill(&[seq[..500].to_vec()], Logits::Last).unwrap();
    for t in 500..540 {
        s.set_next_tokens(&[seq[t]]).unwrap();
        s.step().unwrap();
        let e = err(&s.logits().unwrap()[0], &full[t]);
        assert!(e < TOL, "decode at position {t} vs the full forward: {e}");
    }
    // Greedy tokens against float64 (20-token prompt, 24 new: across the 32-multiples).
    let p = prompt(20, v);
    let want = reference.generate(&p, 24);
    let mut s = LongNetSession::new(&model, &mut be, 1, 44).unwrap();
    s.prefill(std::slice::from_ref(&p), Logits::Last).unwrap();
    let mut got = s.next_tokens().unwrap();
    for _ in 1..24 {
        got.push(s.step().unwrap()[0]);
    }
    assert_eq!(got, want, "greedy tokens");
}

#[test]
fn gpu_longnet_decode_timings() {
    let Some(dev) = open() else { return };
    let (model, mut be, _ck, _dir) = setup(dev);
    let v = model.cfg.vocab;
    for batch in [1, 8] {
        for ctx in [1024, 4096] {
            let steps = 64;
            let mut s = LongNetSession::new(&model, &mut be, batch, ctx + steps + 2).unwrap();
            s.prefill(&vec![prompt(ctx, v); batch], Logits::Last)
                .unwrap();
            s.step().unwrap(); // captures the step
            let t0 = Instant::now();
            for _ in 0..steps {
                s.step().unwrap();
            }
            let us = t0.elapsed().as_secs_f64() / steps as f64 * 1e6;
            eprintln!(
                "decode batch {batch}, context {ctx}: {us:.0} µs/step ({:.0} tokens/s)",
                batch as f64 * 1e6 / us
            );
        }
    }
}
