//! Every refusal of `plan`, and the launch it computes when the call is right: no GPU needed.

use tessel_package::manifest::Blob;
use tessel_package::*;

fn sym(s: &str) -> ShapeExpr {
    ShapeExpr::Sym(s.into())
}

/// attention-like: q [B, H, N, 64] in, o [B, H, N, 64] out, scale: f32, then N as i32.
fn entry() -> KernelEntry {
    let t = |name: &str, io| ParamSpec::Tensor {
        name: name.into(),
        dtype: DType::Bf16,
        dims: vec![
            DimSpec::Sym("B".into()),
            DimSpec::Sym("H".into()),
            DimSpec::Sym("N".into()),
            DimSpec::Const(64),
        ],
        io,
        strides: None,
    };
    KernelEntry {
        name: "attn".into(),
        entry: "attn".into(),
        params: vec![
            t("q", Io::In),
            t("o", Io::Out),
            ParamSpec::Scalar {
                name: "scale".into(),
                dtype: DType::F32,
            },
            ParamSpec::Shape { symbol: "N".into() },
        ],
        consts: vec![],
        requires: vec![],
        launch: LaunchRule {
            grid: vec![
                ShapeExpr::CeilDiv(Box::new(sym("N")), Box::new(ShapeExpr::Int(128))),
                ShapeExpr::Mul(Box::new(sym("B")), Box::new(sym("H"))),
            ],
            block: [128, 1, 1],
            shared_bytes: 49152,
        },
        flops: None,
        bytes: None,
        ptx: Blob {
            offset: 0,
            len: 0,
            sha256: String::new(),
        },
        tile_ir: None,
    }
}

fn tensor(shape: &[usize], ptr: u64) -> ArgInfo {
    let mut strides = vec![1; shape.len()];
    for i in (0..shape.len() - 1).rev() {
        strides[i] = strides[i + 1] * shape[i + 1];
    }
    ArgInfo::Tensor {
        dtype: DType::Bf16,
        shape: shape.to_vec(),
        strides,
        ptr,
    }
}

const Q: u64 = 0x1000_0000;
const O: u64 = 0x2000_0000;

#[test]
fn a_correct_call_binds_symbols_and_evaluates_the_grid() {
    let p = plan(
        &entry(),
        &[
            tensor(&[2, 3, 1000, 64], Q),
            tensor(&[2, 3, 1000, 64], O),
            ArgInfo::Scalar(0.125),
        ],
    )
    .unwrap();
    assert_eq!(p.grid, [8, 6, 1]);
    assert_eq!(p.block, [128, 1, 1]);
    assert_eq!(p.shared_bytes, 49152);
    assert_eq!(
        p.params,
        vec![
            ParamValue::Ptr(Q),
            ParamValue::Ptr(O),
            ParamValue::F32(0.125),
            ParamValue::I32(1000)
        ]
    );
    assert_eq!(p.symbols.get("B"), Some(&2));
    assert!(!p.is_empty());
    let empty = plan(
        &entry(),
        &[
            tensor(&[2, 3, 0, 64], Q),
            tensor(&[2, 3, 0, 64], O),
            ArgInfo::Scalar(1.0),
        ],
    )
    .unwrap();
    assert!(empty.is_empty());
}

fn refuse(args: &[ArgInfo]) -> LaunchError {
    plan(&entry(), args).unwrap_err()
}

#[test]
fn wrong_count_kind_dtype_rank() {
    let ok_q = tensor(&[1, 1, 8, 64], Q);
    let ok_o = tensor(&[1, 1, 8, 64], O);
    assert!(matches!(
        refuse(&[ok_q.clone(), ok_o.clone()]),
        LaunchError::ArgCount {
            want: 3,
            got: 2,
            ..
        }
    ));
    assert!(matches!(
        refuse(&[ArgInfo::Scalar(1.0), ok_o.clone(), ArgInfo::Scalar(1.0)]),
        LaunchError::NotATensor { .. }
    ));
    assert!(matches!(
        refuse(&[ok_q.clone(), ok_o.clone(), ok_q.clone()]),
        LaunchError::NotAScalar { .. }
    ));
    let f32_q = ArgInfo::Tensor {
        dtype: DType::F32,
        shape: vec![1, 1, 8, 64],
        strides: vec![512, 512, 64, 1],
        ptr: Q,
    };
    assert!(matches!(
        refuse(&[f32_q, ok_o.clone(), ArgInfo::Scalar(1.0)]),
        LaunchError::Dtype {
            want: DType::Bf16,
            got: DType::F32,
            ..
        }
    ));
    assert!(matches!(
        refuse(&[tensor(&[8, 64], Q), ok_o.clone(), ArgInfo::Scalar(1.0)]),
        LaunchError::Rank { want: 4, .. }
    ));
}

#[test]
fn shape_relations() {
    let e = refuse(&[
        tensor(&[1, 1, 8, 64], Q),
        tensor(&[1, 1, 9, 64], O),
        ArgInfo::Scalar(1.0),
    ]);
    assert_eq!(
        e,
        LaunchError::SymbolMismatch {
            symbol: "N".into(),
            first_param: "q".into(),
            first: 8,
            param: "o".into(),
            value: 9
        }
    );
    assert!(matches!(
        refuse(&[
            tensor(&[1, 1, 8, 32], Q),
            tensor(&[1, 1, 8, 32], O),
            ArgInfo::Scalar(1.0)
        ]),
        LaunchError::FixedDim {
            axis: 3,
            want: 64,
            got: 32,
            ..
        }
    ));
    assert!(matches!(
        refuse(&[
            tensor(&[1, 1, 1 << 31, 64], Q),
            tensor(&[1, 1, 1 << 31, 64], O),
            ArgInfo::Scalar(1.0)
        ]),
        LaunchError::DimTooLarge { .. }
    ));
}

#[test]
fn layout_alignment_and_aliasing() {
    let strided = ArgInfo::Tensor {
        dtype: DType::Bf16,
        shape: vec![1, 1, 8, 64],
        strides: vec![1024, 1024, 128, 1],
        ptr: Q,
    };
    assert!(matches!(
        refuse(&[strided, tensor(&[1, 1, 8, 64], O), ArgInfo::Scalar(1.0)]),
        LaunchError::NotContiguous { .. }
    ));
    assert!(matches!(
        refuse(&[
            tensor(&[1, 1, 8, 64], Q + 8),
            tensor(&[1, 1, 8, 64], O),
            ArgInfo::Scalar(1.0)
        ]),
        LaunchError::Misaligned { align: 16, .. }
    ));
    // The output starts inside the input's 1 KiB.
    let e = refuse(&[
        tensor(&[1, 1, 8, 64], Q),
        tensor(&[1, 1, 8, 64], Q + 512),
        ArgInfo::Scalar(1.0),
    ]);
    assert_eq!(
        e,
        LaunchError::Aliasing {
            output: "o".into(),
            other: "q".into()
        }
    );
    // Adjacent buffers are fine.
    assert!(plan(
        &entry(),
        &[
            tensor(&[1, 1, 8, 64], Q),
            tensor(&[1, 1, 8, 64], Q + 1024),
            ArgInfo::Scalar(1.0)
        ]
    )
    .is_ok());
}

#[test]
fn grid_that_cannot_be_evaluated_is_an_error() {
    let mut e = entry();
    e.launch.grid[0] = ShapeExpr::Div(
        Box::new(sym("N")),
        Box::new(ShapeExpr::Sub(Box::new(sym("H")), Box::new(sym("H")))),
    );
    let r = plan(
        &e,
        &[
            tensor(&[1, 1, 8, 64], Q),
            tensor(&[1, 1, 8, 64], O),
            ArgInfo::Scalar(1.0),
        ],
    );
    assert!(
        matches!(r, Err(LaunchError::Grid { index: 0, .. })),
        "{r:?}"
    );
    e.launch.grid[0] = sym("M");
    let r = plan(
        &e,
        &[
            tensor(&[1, 1, 8, 64], Q),
            tensor(&[1, 1, 8, 64], O),
            ArgInfo::Scalar(1.0),
        ],
    );
    assert!(matches!(r, Err(LaunchError::Grid { .. })), "{r:?}");
}

#[test]
fn a_requirement_that_does_not_hold_refuses_the_call_naming_it() {
    // As softmax.tsl's `requires N <= BN` with BN = 1024, folded into the manifest.
    let mut e = entry();
    e.requires = vec![Requirement {
        lhs: sym("N"),
        cmp: Cmp::Le,
        rhs: ShapeExpr::Int(1024),
    }];
    let call = |e: &KernelEntry, n| {
        plan(
            e,
            &[
                tensor(&[1, 2, n, 64], Q),
                tensor(&[1, 2, n, 64], O),
                ArgInfo::Scalar(1.0),
            ],
        )
    };
    assert!(call(&e, 1024).is_ok());
    let r = call(&e, 1025).unwrap_err();
    assert_eq!(
        r,
        LaunchError::Requirement {
            requirement: "N <= 1024".into(),
            values: "N = 1025".into(),
        }
    );
    assert_eq!(
        r.to_string(),
        "the kernel requires `N <= 1024`, which does not hold for N = 1025"
    );
    // One that cannot be evaluated (a symbol no tensor binds) refuses too, rather than passing.
    e.requires[0].lhs = sym("Q");
    let r = call(&e, 8).unwrap_err();
    assert!(
        matches!(&r, LaunchError::Requirement { values, .. } if values == "Q unbound"),
        "{r:?}"
    );
}

#[test]
fn integer_and_half_scalars() {
    let mut e = entry();
    e.params[2] = ParamSpec::Scalar {
        name: "k".into(),
        dtype: DType::I32,
    };
    let args = |v| {
        [
            tensor(&[1, 1, 8, 64], Q),
            tensor(&[1, 1, 8, 64], O),
            ArgInfo::Scalar(v),
        ]
    };
    assert_eq!(plan(&e, &args(7.0)).unwrap().params[2], ParamValue::I32(7));
    assert!(matches!(
        plan(&e, &args(7.5)),
        Err(LaunchError::ScalarRange { .. })
    ));
    assert!(matches!(
        plan(&e, &args(1e10)),
        Err(LaunchError::ScalarRange { .. })
    ));
    e.params[2] = ParamSpec::Scalar {
        name: "s".into(),
        dtype: DType::Bf16,
    };
    assert_eq!(
        plan(&e, &args(1.0)).unwrap().params[2],
        ParamValue::B16(0x3f80)
    );
    assert_eq!(
        plan(&e, &args(-2.5)).unwrap().params[2],
        ParamValue::B16(0xc020)
    );
    e.params[2] = ParamSpec::Scalar {
        name: "s".into(),
        dtype: DType::F16,
    };
    assert_eq!(
        plan(&e, &args(1.0)).unwrap().params[2],
        ParamValue::B16(0x3c00)
    );
    assert_eq!(
        plan(&e, &args(0.1)).unwrap().params[2],
        ParamValue::B16(0x2e66)
    );
    assert_eq!(
        plan(&e, &args(1e6)).unwrap().params[2],
        ParamValue::B16(0x7c00)
    );
}

#[test]
fn an_integer_scalar_sizes_the_grid_and_a_float_one_cannot() {
    let mut e = entry();
    e.params.insert(
        2,
        ParamSpec::Scalar {
            name: "r".into(),
            dtype: DType::I32,
        },
    );
    e.launch.grid[0] = ShapeExpr::CeilDiv(Box::new(sym("N")), Box::new(sym("r")));
    let args = |r: f64| {
        [
            tensor(&[1, 2, 1000, 64], Q),
            tensor(&[1, 2, 1000, 64], O),
            ArgInfo::Scalar(r),
            ArgInfo::Scalar(0.125),
        ]
    };
    assert_eq!(plan(&e, &args(3.0)).unwrap().grid, [334, 2, 1]);
    assert_eq!(plan(&e, &args(7.0)).unwrap().grid, [143, 2, 1]);
    // r = 0 divides by zero: the grid cannot be evaluated, and nothing launches.
    let r = plan(&e, &args(0.0));
    assert!(
        matches!(r, Err(LaunchError::Grid { index: 0, .. })),
        "{r:?}"
    );
    // A fractional value is not an integer: the grid does not see it, and the conversion refuses it.
    assert!(plan(&e, &args(2.5)).is_err());
    // The f32 scale is not a launch-time integer.
    e.launch.grid[0] = sym("scale");
    let r = plan(&e, &args(3.0));
    assert!(matches!(r, Err(LaunchError::Grid { .. })), "{r:?}");
}

/// A dilated-attention-like entry: q [N, D] every SQ elements a row (a head of a wider
/// sequence), o [N, D] strides [SO, 1], then N, SQ, SO as i32 (stride symbols follow the
/// dimensions' symbols).
fn strided_entry() -> KernelEntry {
    let mut e = entry();
    let t = |name: &str, io, row: &str| ParamSpec::Tensor {
        name: name.into(),
        dtype: DType::Bf16,
        dims: vec![DimSpec::Sym("N".into()), DimSpec::Const(64)],
        io,
        strides: Some(vec![DimSpec::Sym(row.into()), DimSpec::Const(1)]),
    };
    e.params = vec![
        t("q", Io::In, "SQ"),
        t("o", Io::Out, "SO"),
        ParamSpec::Scalar {
            name: "scale".into(),
            dtype: DType::F32,
        },
        ParamSpec::Shape { symbol: "N".into() },
        ParamSpec::Shape {
            symbol: "SQ".into(),
        },
        ParamSpec::Shape {
            symbol: "SO".into(),
        },
    ];
    e.launch.grid = vec![sym("N")];
    e
}

fn view(shape: &[usize], strides: &[usize], ptr: u64) -> ArgInfo {
    ArgInfo::Tensor {
        dtype: DType::Bf16,
        shape: shape.to_vec(),
        strides: strides.to_vec(),
        ptr,
    }
}

#[test]
fn stride_symbols_bind_from_the_views_and_travel_as_i32() {
    let e = strided_entry();
    // q: one head of [N, 16 heads, 64]; o: dense, which binds its dense row stride.
    let p = plan(
        &e,
        &[
            view(&[1000, 64], &[1024, 1], Q),
            tensor(&[1000, 64], O),
            ArgInfo::Scalar(0.5),
        ],
    )
    .unwrap();
    assert_eq!(
        p.params[3..],
        [
            ParamValue::I32(1000),
            ParamValue::I32(1024),
            ParamValue::I32(64)
        ]
    );
    assert_eq!(p.symbols.get("SQ"), Some(&1024));
    // The overlap check spans what a view reaches, not its element count: o placed inside
    // q's strided span aliases it.
    let inside = Q + 2 * 64 * 4;
    let e2 = plan(
        &e,
        &[
            view(&[1000, 64], &[1024, 1], Q),
            view(&[1000, 64], &[1024, 1], inside),
            ArgInfo::Scalar(0.5),
        ],
    );
    assert!(matches!(e2, Err(LaunchError::Aliasing { .. })), "{e2:?}");
}

#[test]
fn inconsistent_strides_are_refused_before_launch() {
    let e = strided_entry();
    let o = tensor(&[8, 64], O);
    let call = |q: ArgInfo, o: ArgInfo| plan(&e, &[q, o, ArgInfo::Scalar(1.0)]).unwrap_err();
    // A declared constant stride that the view does not have.
    assert!(matches!(
        call(view(&[8, 64], &[128, 2], Q), o.clone()),
        LaunchError::FixedStride {
            axis: 1,
            want: 1,
            got: 2,
            ..
        }
    ));
    // A stride past what an i32 argument carries.
    assert!(matches!(
        call(view(&[8, 64], &[1 << 31, 1], Q), o.clone()),
        LaunchError::StrideTooLarge { axis: 0, .. }
    ));
    // An output whose rows overlap (its stores would race); an input may (a broadcast).
    assert!(matches!(
        call(view(&[8, 64], &[32, 1], Q), view(&[8, 64], &[32, 1], O)),
        LaunchError::OverlappingElements { .. }
    ));
    assert!(plan(
        &e,
        &[view(&[8, 64], &[0, 1], Q), o.clone(), ArgInfo::Scalar(1.0)]
    )
    .is_ok());
    // One symbol, two values: a stride symbol shared with a dimension must agree with it.
    let mut shared = strided_entry();
    if let ParamSpec::Tensor { strides, .. } = &mut shared.params[0] {
        *strides = Some(vec![DimSpec::Sym("N".into()), DimSpec::Const(1)]);
    }
    let r = plan(
        &shared,
        &[view(&[8, 64], &[64, 1], Q), o, ArgInfo::Scalar(1.0)],
    );
    assert!(
        matches!(r, Err(LaunchError::SymbolMismatch { ref symbol, .. }) if symbol == "N"),
        "{r:?}"
    );
}

#[test]
fn a_tensor_map_is_encoded_from_its_tensor_or_the_launch_is_refused() {
    // q's TMA map, after the shape parameter: boxes of 64 columns x 128 rows of N.
    let mut e = entry();
    e.params.push(ParamSpec::TensorMap {
        name: "q_tmap0".into(),
        tensor: "q".into(),
        dtype: DType::Bf16,
        box_dims: vec![64, 128, 1, 1],
        swizzle: 128,
        requires: tessel_package::tensor_map::REQUIREMENT.into(),
    });
    let o = Q + 0x100_0000;
    let args = |q: ArgInfo| vec![q, tensor(&[2, 3, 200, 64], o), ArgInfo::Scalar(0.5)];
    let p = plan(&e, &args(tensor(&[2, 3, 200, 64], Q))).unwrap();
    // Not passed by the caller, but launched last, innermost dimension first.
    assert_eq!(p.params.len(), 5);
    let ParamValue::TensorMap(m) = p.params[4] else {
        panic!("{:?}", p.params[4]);
    };
    assert_eq!((m.rank, m.address, m.swizzle), (4, Q, 128));
    assert_eq!(m.dims[..4], [64, 200, 3, 2]);
    assert_eq!(m.strides[..3], [128, 128 * 200, 128 * 200 * 3]);
    assert_eq!(m.box_dims[..4], [64, 128, 1, 1]);
    // A view whose rows are 8 bytes out of step with 16: refused before any launch, with the
    // requirement named. (q's own checks pass: it is 16-byte aligned and dense-declared
    // strides are not checked here, so only the tensor map can refuse it.)
    let mut e2 = e.clone();
    if let ParamSpec::Tensor { strides, dims, .. } = &mut e2.params[0] {
        *strides = Some(vec![
            DimSpec::Sym("S0".into()),
            DimSpec::Sym("S1".into()),
            DimSpec::Sym("S2".into()),
            DimSpec::Const(1),
        ]);
        dims[3] = DimSpec::Sym("D".into());
    }
    let q = ArgInfo::Tensor {
        dtype: DType::Bf16,
        shape: vec![2, 3, 200, 60],
        strides: vec![3 * 200 * 68, 200 * 68, 68, 1],
        ptr: Q,
    };
    let err = plan(&e2, &args(q)).unwrap_err();
    assert!(
        matches!(&err, LaunchError::TensorMap { param, reason, .. }
            if param == "q_tmap0" && reason.contains("136 bytes")),
        "{err}"
    );
    assert!(err.to_string().contains("multiple of 16 bytes"), "{err}");
}
