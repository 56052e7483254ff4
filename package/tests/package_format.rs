//! The package file: a round trip, and every way a file can be damaged, each its own error.

use tessel_package::format::{FORMAT_VERSION, MAGIC};
use tessel_package::manifest::Blob;
use tessel_package::*;

fn entry(name: &str) -> KernelEntry {
    KernelEntry {
        name: name.into(),
        entry: name.into(),
        params: vec![
            ParamSpec::Tensor {
                name: "a".into(),
                dtype: DType::F32,
                dims: vec![DimSpec::Sym("N".into())],
                io: Io::In,
                strides: None,
            },
            ParamSpec::Tensor {
                name: "c".into(),
                dtype: DType::F32,
                dims: vec![DimSpec::Sym("N".into())],
                io: Io::InOut,
                strides: None,
            },
            ParamSpec::Shape { symbol: "N".into() },
        ],
        consts: vec![("BLOCK".into(), "256".into())],
        requires: vec![Requirement {
            lhs: ShapeExpr::Sym("N".into()),
            cmp: Cmp::Ge,
            rhs: ShapeExpr::Int(1),
        }],
        launch: LaunchRule {
            grid: vec![ShapeExpr::CeilDiv(
                Box::new(ShapeExpr::Sym("N".into())),
                Box::new(ShapeExpr::Int(256)),
            )],
            block: [256, 1, 1],
            shared_bytes: 0,
        },
        flops: Some(ShapeExpr::Mul(
            Box::new(ShapeExpr::Int(2)),
            Box::new(ShapeExpr::Sym("N".into())),
        )),
        bytes: None,
        ptx: Blob {
            offset: 0,
            len: 0,
            sha256: String::new(),
        },
        tile_ir: Some("kernel k ...".into()),
    }
}

fn two_kernel_package() -> Vec<u8> {
    let mut b = PackageBuilder::new("sm_90a", "8.0");
    b.add(entry("first"), ".version 8.0\n.target sm_90a\n// first\n")
        .unwrap();
    b.add(
        entry("second"),
        ".version 8.0\n.target sm_90a\n// second kernel\n",
    )
    .unwrap();
    b.to_bytes()
}

/// Where the manifest JSON ends and the blob section starts.
fn blob_start(bytes: &[u8]) -> usize {
    20 + u64::from_le_bytes(bytes[12..20].try_into().unwrap()) as usize
}

#[test]
fn round_trip_keeps_everything() {
    let bytes = two_kernel_package();
    let p = Package::from_bytes(&bytes).unwrap();
    assert_eq!(p.manifest.format_version, FORMAT_VERSION);
    assert_eq!(p.manifest.target.arch, "sm_90a");
    let (e, ptx) = p.kernel("second").unwrap();
    assert_eq!(ptx, ".version 8.0\n.target sm_90a\n// second kernel\n");
    assert_eq!(e.params, entry("second").params);
    assert_eq!(e.launch, entry("second").launch);
    assert_eq!(e.flops, entry("second").flops);
    assert_eq!(e.tile_ir.as_deref(), Some("kernel k ..."));
    assert_eq!(p.kernels().count(), 2);
    // Writing the parsed package again gives the same bytes.
    let mut b = PackageBuilder::new("sm_90a", "8.0");
    for (e, ptx) in p.kernels() {
        b.add(e.clone(), ptx).unwrap();
    }
    assert_eq!(b.to_bytes(), bytes);
}

#[test]
fn written_file_reads_back() {
    let path = std::env::temp_dir().join(format!("tessel-pkg-{}.tpkg", std::process::id()));
    let mut b = PackageBuilder::new("sm_80", "7.8");
    b.add(entry("k"), "ptx text").unwrap();
    b.write(&path).unwrap();
    assert_eq!(
        Package::read(&path).unwrap().kernel("k").unwrap().1,
        "ptx text"
    );
    std::fs::remove_file(&path).unwrap();
    assert!(matches!(Package::read(&path), Err(PackageError::Io { .. })));
}

#[test]
fn bad_magic() {
    let mut bytes = two_kernel_package();
    bytes[0] = b'X';
    assert!(matches!(
        Package::from_bytes(&bytes),
        Err(PackageError::BadMagic)
    ));
    assert!(matches!(
        Package::from_bytes(b"TESS"),
        Err(PackageError::BadMagic)
    ));
    assert!(matches!(
        Package::from_bytes(&[]),
        Err(PackageError::BadMagic)
    ));
}

#[test]
fn unsupported_version() {
    let mut bytes = two_kernel_package();
    bytes[8..12].copy_from_slice(&(FORMAT_VERSION + 1).to_le_bytes());
    match Package::from_bytes(&bytes) {
        Err(PackageError::UnsupportedVersion { found, supported }) => {
            assert_eq!((found, supported), (FORMAT_VERSION + 1, FORMAT_VERSION))
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn truncated_anywhere() {
    let bytes = two_kernel_package();
    // Every proper prefix is refused, and never with a panic.
    for cut in 0..bytes.len() {
        let r = Package::from_bytes(&bytes[..cut]);
        assert!(r.is_err(), "prefix of {cut} bytes accepted");
        if cut >= MAGIC.len() && cut >= blob_start(&bytes) {
            assert!(
                matches!(r, Err(PackageError::Truncated { .. })),
                "cut {cut}: {r:?}"
            );
        }
    }
    // A manifest length pointing past the end.
    let mut long = bytes.clone();
    long[12..20].copy_from_slice(&u64::MAX.to_le_bytes());
    assert!(matches!(
        Package::from_bytes(&long),
        Err(PackageError::Truncated { .. })
    ));
}

#[test]
fn checksum_mismatch_names_the_kernel() {
    let mut bytes = two_kernel_package();
    let last = bytes.len() - 3;
    bytes[last] ^= 0x20;
    match Package::from_bytes(&bytes) {
        Err(PackageError::ChecksumMismatch { kernel }) => assert_eq!(kernel, "second"),
        other => panic!("{other:?}"),
    }
}

#[test]
fn malformed_manifest() {
    let mut bytes = two_kernel_package();
    bytes[21] = b'#';
    assert!(matches!(
        Package::from_bytes(&bytes),
        Err(PackageError::Manifest(_))
    ));
}

#[test]
fn duplicate_and_missing_kernels() {
    let mut b = PackageBuilder::new("sm_90a", "8.0");
    b.add(entry("k"), "x").unwrap();
    assert!(matches!(
        b.add(entry("k"), "y"),
        Err(PackageError::DuplicateKernel { .. })
    ));
    // A hand-edited manifest with the same kernel twice is refused on read.
    let bytes = two_kernel_package();
    let start = blob_start(&bytes);
    let json = String::from_utf8(bytes[20..start].to_vec())
        .unwrap()
        .replace("\"second\"", "\"first\"");
    let mut edited = bytes[..12].to_vec();
    edited.extend_from_slice(&(json.len() as u64).to_le_bytes());
    edited.extend_from_slice(json.as_bytes());
    edited.extend_from_slice(&bytes[start..]);
    assert!(matches!(
        Package::from_bytes(&edited),
        Err(PackageError::DuplicateKernel { .. })
    ));
    let p = Package::from_bytes(&two_kernel_package()).unwrap();
    match p.kernel("third") {
        Err(e @ PackageError::MissingKernel { .. }) => {
            assert!(e.to_string().contains("first, second"), "{e}")
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_fixed_dimension_that_is_not_a_size_is_refused_on_read() {
    // A hand-edited manifest with dimension -1 once reached `tessel run` as usize::MAX.
    for bad in [-1i64, 1 << 40] {
        let mut e = entry("k");
        if let ParamSpec::Tensor { dims, .. } = &mut e.params[0] {
            dims[0] = DimSpec::Const(bad);
        }
        let mut b = PackageBuilder::new("sm_90a", "8.0");
        b.add(e, "x").unwrap();
        match Package::from_bytes(&b.to_bytes()) {
            Err(e @ PackageError::Manifest(_)) => {
                assert!(
                    e.to_string().contains(&format!("is {bad}, not a size")),
                    "{e}"
                )
            }
            other => panic!("{other:?}"),
        }
    }
}
