//! The smoke kernel on a real GPU: PTX made by tessel's backend, loaded and launched through the
//! runtime, checked element by element against a float64 host computation.
//!
//! The kernel is dsl-examples/elementwise.tsl's `fma`, launched by hand (no manifest checks) to
//! test the driver path beneath the runtime. Without a CUDA driver it prints why it skips. On the
//! GPU machine it reads the packages compiled here (`$TESSEL_KERNEL_DIR/dsl_fma_<dtype>.<arch>.tpkg`,
//! see scripts/gpu-bundle); with the `codegen` feature and no such directory it compiles in-process.

use half::{bf16, f16};
use rand::Rng;
use tessel_runtime::cuda::{LaunchConfig, PushKernelArg};
use tessel_runtime::{device, Device};

const ARCHES: [&str; 3] = ["sm_80", "sm_90", "sm_90a"];
const DTYPES: [&str; 3] = ["f32", "bf16", "f16"];

include!("support/packages.rs");

/// The fma kernel of dsl-examples/elementwise.tsl for `dtype` on `arch`: its PTX, threads per
/// block and elements per program (the package manifest's launch rule and `BLOCK`).
fn fma_kernel(dtype: &str, arch: &str) -> (String, u32, usize) {
    let pkg = example_package(
        &format!("dsl_fma_{dtype}"),
        "elementwise.tsl",
        &[("T", dtype)],
        &[],
        arch,
    );
    let (entry, ptx) = pkg.kernel("fma").unwrap();
    let block = entry
        .consts
        .iter()
        .find(|(k, _)| k == "BLOCK")
        .map(|(_, v)| v.parse().unwrap())
        .expect("fma records BLOCK");
    (ptx.to_string(), entry.launch.block[0], block)
}

/// Storage conversions for the three dtypes, through f64.
fn encode(dtype: &str, x: f64) -> u32 {
    match dtype {
        "f32" => (x as f32).to_bits(),
        "bf16" => bf16::from_f64(x).to_bits() as u32,
        "f16" => f16::from_f64(x).to_bits() as u32,
        _ => unreachable!(),
    }
}

fn decode(dtype: &str, bits: u32) -> f64 {
    match dtype {
        "f32" => f32::from_bits(bits) as f64,
        "bf16" => bf16::from_bits(bits as u16).to_f64(),
        "f16" => f16::from_bits(bits as u16).to_f64(),
        _ => unreachable!(),
    }
}

/// One unit in the last place of `dtype` at magnitude `x`. Below the normal range the ulp stops
/// shrinking (subnormals are evenly spaced).
fn ulp(dtype: &str, x: f64) -> f64 {
    let (mantissa_bits, min_normal_exp) = match dtype {
        "f32" => (23, -126),
        "bf16" => (7, -126),
        "f16" => (10, -14),
        _ => unreachable!(),
    };
    let exp = x
        .abs()
        .max(f64::MIN_POSITIVE)
        .log2()
        .floor()
        .max(min_normal_exp as f64);
    (exp - mantissa_bits as f64).exp2()
}

fn run_case(dev: &Device, arch: &str, dtype: &str, n: usize, rng: &mut impl Rng) -> f64 {
    let kernel = "fma";
    let (ptx, threads, per_program) = fma_kernel(dtype, arch);
    let module = dev.load_ptx(&ptx).unwrap();
    let func = module.function(kernel).unwrap();
    let gen = |rng: &mut dyn rand::RngCore| -> Vec<f64> {
        (0..n)
            .map(|_| decode(dtype, encode(dtype, rng.random_range(-4.0..4.0))))
            .collect()
    };
    let (a, b, c) = (gen(rng), gen(rng), gen(rng));
    let stream = dev.stream();
    let wide = dtype == "f32";
    let upload = |v: &[f64]| {
        if wide {
            let bits: Vec<u32> = v.iter().map(|&x| encode(dtype, x)).collect();
            (Some(stream.clone_htod(&bits).unwrap()), None)
        } else {
            let bits: Vec<u16> = v.iter().map(|&x| encode(dtype, x) as u16).collect();
            (None, Some(stream.clone_htod(&bits).unwrap()))
        }
    };
    let (a32, a16) = upload(&a);
    let (b32, b16) = upload(&b);
    let (mut c32, mut c16) = upload(&c);
    let n32 = n as i32;
    let cfg = LaunchConfig {
        grid_dim: (n.div_ceil(per_program) as u32, 1, 1),
        block_dim: (threads, 1, 1),
        shared_mem_bytes: 0,
    };
    let mut launch = stream.launch_builder(&func);
    if wide {
        launch
            .arg(a32.as_ref().unwrap())
            .arg(b32.as_ref().unwrap())
            .arg(c32.as_mut().unwrap());
    } else {
        launch
            .arg(a16.as_ref().unwrap())
            .arg(b16.as_ref().unwrap())
            .arg(c16.as_mut().unwrap());
    }
    launch.arg(&n32);
    // SAFETY: the signature (three global pointers of n elements, then the shape symbol N: i32)
    // is elementwise.tsl's under tessel's calling convention, and every buffer holds n elements.
    unsafe { launch.launch(cfg) }.unwrap();
    let got: Vec<f64> = if wide {
        let h: Vec<u32> = stream.clone_dtoh(c32.as_ref().unwrap()).unwrap();
        h.into_iter().map(|x| decode(dtype, x)).collect()
    } else {
        let h: Vec<u16> = stream.clone_dtoh(c16.as_ref().unwrap()).unwrap();
        h.into_iter().map(|x| decode(dtype, x as u32)).collect()
    };
    let mut worst = 0.0f64;
    for i in 0..n {
        let exact = a[i] * b[i] + c[i];
        let err = (got[i] - exact).abs();
        // The kernel computes in f32 with the product and the sum rounded separately (no fma is
        // contracted: the Tile IR says mul then add). 16-bit products are exact in f32, so there
        // only the final rounding to storage counts (one ulp); f32 products add half an ulp of
        // the product, which under cancellation exceeds the result's own ulp.
        let product = if wide { ulp(dtype, a[i] * b[i]) } else { 0.0 };
        let bound = ulp(dtype, exact) + product + 1e-30;
        assert!(
            err <= bound,
            "{kernel} on {arch}, n={n}: element {i}: got {} want {exact} (a={} b={} c={})",
            got[i],
            a[i],
            b[i],
            c[i]
        );
        worst = worst.max(err / bound);
    }
    worst
}

#[test]
fn smoke_kernel_matches_host_on_gpu() {
    if !device::driver_present() {
        eprintln!("SKIP smoke_kernel_matches_host_on_gpu: no CUDA driver on this machine");
        return;
    }
    let dev = Device::open(0).unwrap();
    let (major, minor) = dev.compute_capability().unwrap();
    let sm = major * 10 + minor;
    let mut rng = rand::rng();
    println!("device: {} (sm_{sm})", dev.name().unwrap());
    println!(
        "{:<7} {:<5} {:>9} {:>12}",
        "arch", "dtype", "n", "max err/ulp"
    );
    for arch in ARCHES {
        let needed: u32 = arch[3..5].parse().unwrap();
        // sm_90a PTX runs only on sm_90 exactly; plain PTX runs on its arch and newer.
        if needed > sm || (arch.ends_with('a') && needed != sm) {
            println!("{arch:<7} skipped: device is sm_{sm}");
            continue;
        }
        for dtype in DTYPES {
            for n in [1usize, 1000, (1 << 20) + 3] {
                let worst = run_case(&dev, arch, dtype, n, &mut rng);
                println!("{arch:<7} {dtype:<5} {n:>9} {worst:>12.3}");
            }
        }
    }
}

#[test]
fn missing_kernel_and_bad_ptx_are_typed_errors() {
    if !device::driver_present() {
        eprintln!(
            "SKIP missing_kernel_and_bad_ptx_are_typed_errors: no CUDA driver on this machine"
        );
        return;
    }
    let dev = Device::open(0).unwrap();
    let module = dev.load_ptx(&fma_kernel("f32", "sm_80").0).unwrap();
    assert!(matches!(
        module.function("no_such_kernel"),
        Err(tessel_runtime::RuntimeError::KernelNotFound { .. })
    ));
    assert!(dev.load_ptx("this is not ptx").is_err());
    assert!(matches!(
        dev.load_ptx("nul\0inside"),
        Err(tessel_runtime::RuntimeError::InvalidPtx(_))
    ));
    assert!(matches!(
        Device::open(1 << 20),
        Err(tessel_runtime::RuntimeError::NoSuchDevice { .. })
    ));
}

#[test]
fn no_driver_is_a_typed_error_not_a_panic() {
    if device::driver_present() {
        eprintln!("SKIP no_driver_is_a_typed_error_not_a_panic: a driver is present");
        return;
    }
    assert!(matches!(
        Device::open(0),
        Err(tessel_runtime::RuntimeError::NoDriver)
    ));
}
