//! The smoke kernel on a real GPU: PTX made by tessel's backend, loaded and launched through the
//! runtime, checked element by element against a float64 host computation.
//!
//! Without a CUDA driver it prints why it skips. On the GPU machine it reads PTX compiled here
//! from `$TESSEL_KERNEL_DIR/<kernel>.<arch>.ptx` (see scripts/gpu-bundle); with the `codegen`
//! feature and no such directory it compiles in-process.

use half::{bf16, f16};
use rand::Rng;
use tessel_runtime::cuda::{LaunchConfig, PushKernelArg};
use tessel_runtime::{device, Device};

const ARCHES: [&str; 3] = ["sm_80", "sm_90", "sm_90a"];
const DTYPES: [&str; 3] = ["f32", "bf16", "f16"];

fn ptx_for(kernel: &str, arch: &str) -> String {
    if let Some(dir) = std::env::var_os("TESSEL_KERNEL_DIR") {
        let path = std::path::Path::new(&dir).join(format!("{kernel}.{arch}.ptx"));
        return std::fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    }
    compile_here(kernel, arch)
}

#[cfg(feature = "codegen")]
fn compile_here(kernel: &str, arch: &str) -> String {
    use tessel_compiler::lower::elementwise::ElemType;
    let dtype = ElemType::parse(kernel.trim_start_matches("fma_")).unwrap();
    let target = tessel_compiler::Target::lookup(arch).unwrap();
    tessel_compiler::codegen::compile_elementwise(dtype, target).unwrap()
}

#[cfg(not(feature = "codegen"))]
fn compile_here(kernel: &str, arch: &str) -> String {
    panic!("no TESSEL_KERNEL_DIR and no codegen feature: cannot get {kernel}.{arch}.ptx")
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

/// One unit in the last place of `dtype` at magnitude `x`: the kernel rounds an f32 fma once to
/// the storage type, the reference rounds the exact value once, so they may differ by one ulp.
/// Below the normal range the ulp stops shrinking (subnormals are evenly spaced).
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
    let kernel = format!("fma_{dtype}");
    let module = dev.load_ptx(&ptx_for(&kernel, arch)).unwrap();
    let func = module.function(&kernel).unwrap();
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
        grid_dim: (n.div_ceil(256) as u32, 1, 1),
        block_dim: (256, 1, 1),
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
    // SAFETY: the signature (three global pointers of n elements, then n: i32) is the one the
    // smoke kernel is built with, and every buffer holds n elements.
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
        let bound = ulp(dtype, exact) + 1e-30;
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
    let module = dev.load_ptx(&ptx_for("fma_f32", "sm_80")).unwrap();
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
