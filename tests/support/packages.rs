// Shared by the GPU test crates through `include!`: the packages they run.
//
// On the GPU machine the packages come compiled (TESSEL_KERNEL_DIR, filled by scripts/gpu-bundle
// through `tessel demo`); on a machine with the codegen feature they are compiled here, from the
// same dsl-examples source with the same variants, so both paths test the same kernels.

/// The package `name` (`dsl_matmul`, `flash_attention`, ...) for `arch`: every kernel of
/// dsl-examples/`file` with `defines`, over `variants` (`NAME=V1,V2` each).
#[allow(dead_code)]
fn example_package(
    name: &str,
    file: &str,
    defines: &[(&str, &str)],
    variants: &[&str],
    arch: &str,
) -> tessel_runtime::format::Package {
    if let Some(dir) = std::env::var_os("TESSEL_KERNEL_DIR") {
        let path = std::path::Path::new(&dir).join(format!("{name}.{arch}.tpkg"));
        return tessel_runtime::format::Package::read(&path)
            .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    }
    compile_example(file, defines, variants, arch)
}

/// The package of the runtime operator `spec` for `arch`, over the variants its spec declares
/// (what `tessel demo` builds for the GPU machine).
#[allow(dead_code)]
fn operator_package(
    spec: &tessel_runtime::OperatorSpec,
    arch: &str,
) -> tessel_runtime::format::Package {
    let flags = spec.variant_flags();
    let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
    let file = spec
        .source
        .strip_prefix("dsl-examples/")
        .expect("operator sources live in dsl-examples/");
    example_package(spec.package, file, &[], &flags, arch)
}

#[cfg(feature = "codegen")]
fn compile_example(
    file: &str,
    defines: &[(&str, &str)],
    variants: &[&str],
    arch: &str,
) -> tessel_runtime::format::Package {
    use tessel_compiler::sema::parse_const;
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("dsl-examples").join(file);
    let source = std::fs::read_to_string(&path).unwrap();
    let fixed = defines
        .iter()
        .map(|(k, v)| (k.to_string(), parse_const(v).unwrap()))
        .collect();
    let variants: Vec<tessel_compiler::package::Variant> = variants
        .iter()
        .map(|v| tessel_compiler::package::parse_variant(v).unwrap())
        .collect();
    let target = tessel_compiler::Target::lookup(arch).unwrap();
    let b = tessel_compiler::package::source_package(
        &source,
        file,
        &fixed,
        &variants,
        target,
        &Default::default(),
    )
    .unwrap_or_else(|e| panic!("{file} for {arch}: {e}"));
    tessel_runtime::format::Package::from_bytes(&b.package.to_bytes()).unwrap()
}

#[cfg(not(feature = "codegen"))]
fn compile_example(
    file: &str,
    _defines: &[(&str, &str)],
    _variants: &[&str],
    arch: &str,
) -> tessel_runtime::format::Package {
    panic!("no TESSEL_KERNEL_DIR and no codegen feature: cannot build {file} for {arch}")
}

/// `n` fresh standard-normal values (Box–Muller).
#[allow(dead_code)]
fn randn(n: usize) -> Vec<f64> {
    use rand::Rng;
    let mut rng = rand::rng();
    (0..n)
        .map(|_| {
            let u: f64 = rng.random_range(f64::EPSILON..1.0);
            let v: f64 = rng.random_range(0.0..1.0);
            (-2.0 * u.ln()).sqrt() * (std::f64::consts::TAU * v).cos()
        })
        .collect()
}

/// max |got − want| / max |want|: the error of a whole tensor against its reference's scale
/// (NaN, from an unwritten element, counts as infinite). A reference that is exactly zero
/// everywhere (attention's dQ and dK when every row sees one key: dS = P(dP − Δ) = 0) has no
/// scale of its own; there the error is absolute, in units of the unit-variance inputs.
#[allow(dead_code)]
fn scaled_err(got: &[f64], want: &[f64]) -> f64 {
    assert_eq!(got.len(), want.len());
    let scale = want.iter().fold(0.0f64, |s, x| s.max(x.abs()));
    let scale = if scale > 0.0 { scale } else { 1.0 };
    got.iter()
        .zip(want)
        .map(|(g, w)| if g.is_nan() { f64::INFINITY } else { (g - w).abs() })
        .fold(0.0, f64::max)
        / scale
}

/// The GPU architectures of the packages to test on this device, newest arch-specific first.
#[allow(dead_code)]
fn archs_for(dev: &tessel_runtime::Device) -> Vec<&'static str> {
    let (major, minor) = dev.compute_capability().unwrap();
    if (major, minor) == (9, 0) {
        vec!["sm_90a", "sm_80"]
    } else {
        vec!["sm_80"]
    }
}

/// Writes `values` as an f32 .npy array of `shape` (for the Python cross-checks in bench/).
#[allow(dead_code)]
fn write_npy(path: &std::path::Path, shape: &[usize], values: &[f64]) {
    use npyz::WriterBuilder;
    let file = std::io::BufWriter::new(std::fs::File::create(path).unwrap());
    let shape: Vec<u64> = shape.iter().map(|&s| s as u64).collect();
    let mut w = npyz::WriteOptions::<f32>::new()
        .default_dtype()
        .shape(&shape)
        .writer(file)
        .begin_nd()
        .unwrap();
    w.extend(values.iter().map(|&x| x as f32)).unwrap();
    w.finish().unwrap();
}
