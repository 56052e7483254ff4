//! The runtime on a GPU: packages loaded and launched through the manifest-checked API, typed
//! refusals that launch nothing, the caching allocator, event timing and CUDA-graph replay.
//!
//! Without a CUDA driver each test prints why it skips. On the GPU machine the packages come from
//! `$TESSEL_KERNEL_DIR/dsl_fma_<dtype>.<arch>.tpkg` (elementwise.tsl, compiled on the build
//! machine); with the `codegen` feature and no such directory they are compiled in-process.

use rand::Rng;
use tessel_runtime::format::{DType, LaunchError, Package};
use tessel_runtime::{device, Arg, Device, DeviceTensor, LoadedPackage, RuntimeError};

fn skip(test: &str) -> bool {
    if !device::driver_present() {
        eprintln!("SKIP {test}: no CUDA driver on this machine");
        return true;
    }
    false
}

include!("support/packages.rs");

/// The package of dsl-examples/elementwise.tsl's `fma` (c = a*b + c) for `dtype` on `arch`.
fn package(dtype: &str, arch: &str) -> Package {
    example_package(
        &format!("dsl_fma_{dtype}"),
        "elementwise.tsl",
        &[("T", dtype)],
        &[],
        arch,
    )
}

/// The target whose PTX makes the most of this device, by the target table.
fn arch_for(dev: &Device) -> &'static str {
    let (major, minor) = dev.compute_capability().unwrap();
    tessel_runtime::format::Target::best_for(major * 10 + minor)
        .expect("a GPU tessel targets")
        .name
}

fn random(n: usize, rng: &mut impl Rng) -> Vec<f64> {
    (0..n).map(|_| rng.random_range(-2.0..2.0)).collect()
}

fn dt(name: &str) -> DType {
    DType::parse(name).unwrap()
}

#[test]
fn package_launch_matches_host_for_every_dtype() {
    if skip("package_launch_matches_host_for_every_dtype") {
        return;
    }
    let dev = Device::open(0).unwrap();
    let arch = arch_for(&dev);
    let mut rng = rand::rng();
    println!("{:<5} {:>8} {:>12}", "dtype", "n", "max err/ulp");
    for dtype in ["f32", "bf16", "f16"] {
        let pkg = LoadedPackage::load(&dev, package(dtype, arch)).unwrap();
        for n in [1usize, 255, 256, 100_003] {
            let (a, b, c) = (
                random(n, &mut rng),
                random(n, &mut rng),
                random(n, &mut rng),
            );
            let ta = DeviceTensor::from_f64(&dev, dt(dtype), &[n], &a).unwrap();
            let tb = DeviceTensor::from_f64(&dev, dt(dtype), &[n], &b).unwrap();
            let mut tc = DeviceTensor::from_f64(&dev, dt(dtype), &[n], &c).unwrap();
            // The values as stored, so the reference starts from the same rounded inputs.
            let (a, b, c) = (
                ta.to_f64(&dev).unwrap(),
                tb.to_f64(&dev).unwrap(),
                tc.to_f64(&dev).unwrap(),
            );
            let plan = pkg
                .launch(
                    &dev,
                    "fma",
                    &[Arg::Tensor(&ta), Arg::Tensor(&tb), Arg::Tensor(&tc)],
                )
                .unwrap();
            let block: usize = pkg
                .package()
                .kernel("fma")
                .unwrap()
                .0
                .consts
                .iter()
                .find(|(k, _)| k == "BLOCK")
                .map(|(_, v)| v.parse().unwrap())
                .unwrap();
            assert_eq!(plan.grid[0] as usize, n.div_ceil(block));
            let got = tc.to_f64(&dev).unwrap();
            // (mantissa bits, smallest normal exponent): subnormals are evenly spaced.
            let (bits, min_exp) = match dtype {
                "f32" => (23, -126),
                "bf16" => (7, -126),
                _ => (10, -14),
            };
            let mut worst = 0.0f64;
            for i in 0..n {
                let exact = a[i] * b[i] + c[i];
                let e2 = exact
                    .abs()
                    .max(f64::MIN_POSITIVE)
                    .log2()
                    .floor()
                    .max(min_exp as f64);
                let ulp = (e2 - bits as f64).exp2();
                // f32 rounds the product before the add (the Tile IR says mul, then add: no
                // fma is contracted), which costs up to half an ulp of the product; 16-bit
                // products are exact in f32.
                let product = if dtype == "f32" {
                    (a[i] * b[i])
                        .abs()
                        .max(f64::MIN_POSITIVE)
                        .log2()
                        .floor()
                        .max(-126.0)
                } else {
                    f64::NEG_INFINITY
                };
                let ulp = ulp + (product - 23.0).exp2();
                let e = (got[i] - exact).abs() / ulp;
                assert!(e <= 1.0, "{dtype} n={n} [{i}]: {} vs {exact}", got[i]);
                worst = worst.max(e);
            }
            tc.write_f64(&dev, &c).unwrap();
            println!("{dtype:<5} {n:>8} {worst:>12.3}");
        }
    }
}

#[test]
fn refused_launches_are_typed_and_touch_nothing() {
    if skip("refused_launches_are_typed_and_touch_nothing") {
        return;
    }
    let dev = Device::open(0).unwrap();
    let pkg = LoadedPackage::load(&dev, package("f32", arch_for(&dev))).unwrap();
    let t = |n: usize, v: f64| DeviceTensor::from_f64(&dev, DType::F32, &[n], &vec![v; n]).unwrap();
    let (a, b, c) = (t(64, 1.0), t(64, 2.0), t(64, 3.0));
    let short = t(32, 1.0);
    let wrong = DeviceTensor::from_f64(&dev, DType::Bf16, &[64], &[1.0; 64]).unwrap();
    let two_d = DeviceTensor::from_f64(&dev, DType::F32, &[8, 8], &[1.0; 64]).unwrap();
    let refuse = |args: &[Arg]| match pkg.launch(&dev, "fma", args) {
        Err(RuntimeError::Launch { source, .. }) => source,
        other => panic!("expected a refusal, got {other:?}"),
    };
    assert!(matches!(
        refuse(&[Arg::Tensor(&a), Arg::Tensor(&b)]),
        LaunchError::ArgCount { .. }
    ));
    assert!(matches!(
        refuse(&[Arg::Tensor(&wrong), Arg::Tensor(&b), Arg::Tensor(&c)]),
        LaunchError::Dtype { .. }
    ));
    assert!(matches!(
        refuse(&[Arg::Tensor(&two_d), Arg::Tensor(&b), Arg::Tensor(&c)]),
        LaunchError::Rank { .. }
    ));
    assert!(matches!(
        refuse(&[Arg::Tensor(&a), Arg::Tensor(&short), Arg::Tensor(&c)]),
        LaunchError::SymbolMismatch { .. }
    ));
    assert!(matches!(
        refuse(&[Arg::Tensor(&a), Arg::Tensor(&b), Arg::Tensor(&a)]),
        LaunchError::Aliasing { .. }
    ));
    assert!(matches!(
        refuse(&[Arg::Scalar(1.0), Arg::Tensor(&b), Arg::Tensor(&c)]),
        LaunchError::NotATensor { .. }
    ));
    assert!(matches!(
        pkg.launch(&dev, "nope", &[]),
        Err(RuntimeError::Package(_))
    ));
    // None of those launched: c still holds its initial value everywhere.
    assert!(c.to_f64(&dev).unwrap().iter().all(|&x| x == 3.0));
    // And a correct call does launch.
    pkg.launch(
        &dev,
        "fma",
        &[Arg::Tensor(&a), Arg::Tensor(&b), Arg::Tensor(&c)],
    )
    .unwrap();
    assert!(c.to_f64(&dev).unwrap().iter().all(|&x| x == 5.0));
}

#[test]
fn packages_for_another_arch_are_refused() {
    if skip("packages_for_another_arch_are_refused") {
        return;
    }
    let dev = Device::open(0).unwrap();
    let mut p = package("f32", "sm_80");
    p.manifest.target.arch = "sm_120a".into();
    assert!(matches!(
        LoadedPackage::load(&dev, p),
        Err(RuntimeError::ArchMismatch { .. })
    ));
    assert!(tessel_runtime::package::arch_runs_on("sm_80", 90));
    assert!(!tessel_runtime::package::arch_runs_on("sm_90a", 100));
}

#[test]
fn graph_replays_captured_launches() {
    if skip("graph_replays_captured_launches") {
        return;
    }
    let dev = Device::open(0).unwrap();
    let pkg = LoadedPackage::load(&dev, package("f32", arch_for(&dev))).unwrap();
    let n = 10_000;
    let mut rng = rand::rng();
    // Small integers keep every f32 sum exact.
    let ints = |rng: &mut rand::rngs::ThreadRng| {
        (0..n)
            .map(|_| rng.random_range(-8..8) as f64)
            .collect::<Vec<f64>>()
    };
    let (a, b, c0) = (ints(&mut rng), ints(&mut rng), ints(&mut rng));
    let ta = DeviceTensor::from_f64(&dev, DType::F32, &[n], &a).unwrap();
    let tb = DeviceTensor::from_f64(&dev, DType::F32, &[n], &b).unwrap();
    let tc = DeviceTensor::from_f64(&dev, DType::F32, &[n], &c0).unwrap();
    let args = [Arg::Tensor(&ta), Arg::Tensor(&tb), Arg::Tensor(&tc)];
    let graph = dev
        .capture(|| {
            for _ in 0..3 {
                pkg.launch(&dev, "fma", &args)?;
            }
            Ok(())
        })
        .unwrap();
    dev.synchronize().unwrap();
    // Capturing runs nothing.
    assert_eq!(tc.to_f64(&dev).unwrap(), c0);
    graph.replay().unwrap();
    graph.replay().unwrap();
    let got = tc.to_f64(&dev).unwrap();
    for i in 0..n {
        assert_eq!(got[i], c0[i] + 6.0 * a[i] * b[i], "element {i}");
    }
    // A refusal inside a capture ends the capture and surfaces the error.
    let bad = dev.capture(|| pkg.launch(&dev, "fma", &args[..2]).map(|_| ()));
    assert!(matches!(bad, Err(RuntimeError::Launch { .. })));
    pkg.launch(&dev, "fma", &args).unwrap();
    dev.synchronize().unwrap();
    println!("graph of 3 launches replayed twice on {n} elements: exact");
}

#[test]
fn allocator_reuses_freed_buffers_and_events_time() {
    if skip("allocator_reuses_freed_buffers_and_events_time") {
        return;
    }
    let dev = Device::open(0).unwrap();
    let before = dev.pool().stats();
    let first = DeviceTensor::empty(&dev, DType::F32, &[1000]).unwrap();
    let ptr = first.device_ptr(&dev);
    drop(first);
    let second = DeviceTensor::empty(&dev, DType::F32, &[900]).unwrap();
    let after = dev.pool().stats();
    assert_eq!(second.device_ptr(&dev), ptr, "same size class, same buffer");
    assert_eq!(after.driver_allocations, before.driver_allocations + 1);
    assert_eq!(after.reuses, before.reuses + 1);
    assert_eq!(after.live_bytes, before.live_bytes + 4096);
    let pkg = LoadedPackage::load(&dev, package("f32", arch_for(&dev))).unwrap();
    let n = 1 << 22;
    let t = |v: f64| DeviceTensor::from_f64(&dev, DType::F32, &[n], &vec![v; n]).unwrap();
    let (a, b, c) = (t(1.0), t(1.0), t(0.0));
    let ms = dev
        .time_ms(|| {
            pkg.launch(
                &dev,
                "fma",
                &[Arg::Tensor(&a), Arg::Tensor(&b), Arg::Tensor(&c)],
            )
            .map(|_| ())
        })
        .unwrap();
    assert!(ms > 0.0 && ms < 1000.0, "{ms} ms");
    println!(
        "fma_f32 on {n} elements: {ms:.4} ms ({:.0} GB/s)",
        16.0 * n as f64 / (ms as f64 * 1e6)
    );
}

#[test]
fn streams_overlap_and_events_order_them() {
    if skip("streams_overlap_and_events_order_them") {
        return;
    }
    let dev = Device::open(0).unwrap();
    let pkg = LoadedPackage::load(&dev, package("f32", arch_for(&dev))).unwrap();
    let n = 1 << 20;
    let t = |v: f64| DeviceTensor::from_f64(&dev, DType::F32, &[n], &vec![v; n]).unwrap();
    let (a, b, c1, c2) = (t(2.0), t(3.0), t(1.0), t(0.0));
    dev.synchronize().unwrap(); // the tensors exist before other streams touch them
    let (s1, s2) = (dev.new_stream().unwrap(), dev.new_stream().unwrap());
    // s1: c1 = a*b + c1 = 7. s2 waits for it, then c2 = c1*b + c2 = 21: only right if ordered.
    pkg.launch_on(
        &dev,
        &s1,
        "fma",
        &[Arg::Tensor(&a), Arg::Tensor(&b), Arg::Tensor(&c1)],
    )
    .unwrap();
    let done = dev.record(&s1).unwrap();
    dev.wait(&s2, &done).unwrap();
    pkg.launch_on(
        &dev,
        &s2,
        "fma",
        &[Arg::Tensor(&c1), Arg::Tensor(&b), Arg::Tensor(&c2)],
    )
    .unwrap();
    s2.synchronize().unwrap();
    assert!(c2.to_f64(&dev).unwrap().iter().all(|&x| x == 21.0));
    assert!(c1.to_f64(&dev).unwrap().iter().all(|&x| x == 7.0));
    // A refusal on another stream is still checked first.
    assert!(matches!(
        pkg.launch_on(&dev, &s2, "fma", &[Arg::Tensor(&a), Arg::Tensor(&b)]),
        Err(RuntimeError::Launch { .. })
    ));
    println!("two streams ordered by an event: exact");
}
