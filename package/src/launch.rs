//! Checking a call against a kernel's manifest entry, before anything touches the GPU.
//!
//! `plan` binds every shape symbol from the tensors passed (extents, and the strides of tensors
//! declared with `strides[...]`), checks each argument (kind, dtype, rank, fixed dimensions and
//! strides, agreement of symbols across tensors, density where no strides are declared, outputs
//! whose elements are distinct, pointer alignment, outputs not overlapping other tensors),
//! evaluates the launch grid, and returns the exact parameter values to launch with. It is a pure
//! function, so every refusal is testable without a GPU.

use std::collections::BTreeMap;

use crate::manifest::{dense_strides, DType, DimSpec, Io, KernelEntry, ParamSpec};

/// Alignment every tensor pointer must have: kernels use 16-byte vector accesses.
pub const POINTER_ALIGN: u64 = 16;

/// What the caller passes for one non-shape parameter.
#[derive(Debug, Clone, PartialEq)]
pub enum ArgInfo {
    Tensor {
        dtype: DType,
        shape: Vec<usize>,
        /// Element strides.
        strides: Vec<usize>,
        ptr: u64,
    },
    Scalar(f64),
}

/// One launch parameter value, in PTX order.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum ParamValue {
    Ptr(u64),
    I32(i32),
    F32(f32),
    /// A 16-bit float scalar's bits.
    B16(u16),
    /// A TMA tensor map, to be encoded by the driver and passed by value.
    TensorMap(crate::tensor_map::TensorMapEncoding),
}

#[derive(Debug, Clone, PartialEq)]
pub struct LaunchPlan {
    pub grid: [u32; 3],
    pub block: [u32; 3],
    pub shared_bytes: u32,
    pub params: Vec<ParamValue>,
    /// The value of every shape symbol, as bound from the arguments.
    pub symbols: BTreeMap<String, i64>,
}

impl LaunchPlan {
    /// True when the grid is empty (a zero-sized problem): nothing to launch.
    pub fn is_empty(&self) -> bool {
        self.grid.contains(&0)
    }
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum LaunchError {
    #[error("`{kernel}` takes {want} arguments, {got} given")]
    ArgCount {
        kernel: String,
        want: usize,
        got: usize,
    },
    #[error("argument `{param}` must be a tensor")]
    NotATensor { param: String },
    #[error("argument `{param}` must be a scalar")]
    NotAScalar { param: String },
    #[error("parameter `{param}` is declared bool, which no kernel takes")]
    BoolParameter { param: String },
    #[error("argument `{param}` must be {want}, got {got}")]
    Dtype {
        param: String,
        want: DType,
        got: DType,
    },
    #[error("argument `{param}` must have rank {want}, got shape {got:?}")]
    Rank {
        param: String,
        want: usize,
        got: Vec<usize>,
    },
    #[error("argument `{param}` dimension {axis} must be {want}, got {got}")]
    FixedDim {
        param: String,
        axis: usize,
        want: i64,
        got: usize,
    },
    #[error("shape symbol `{symbol}` is {first} from `{first_param}` but {value} from `{param}`")]
    SymbolMismatch {
        symbol: String,
        first_param: String,
        first: i64,
        param: String,
        value: i64,
    },
    #[error(
        "argument `{param}` dimension {axis} is {value}, beyond the i32 range kernels index with"
    )]
    DimTooLarge {
        param: String,
        axis: usize,
        value: usize,
    },
    #[error("argument `{param}` stride {axis} must be {want}, got {got}")]
    FixedStride {
        param: String,
        axis: usize,
        want: i64,
        got: usize,
    },
    #[error(
        "argument `{param}` stride {axis} is {value}, beyond the i32 range strides are passed in"
    )]
    StrideTooLarge {
        param: String,
        axis: usize,
        value: usize,
    },
    #[error("output `{param}` has elements at one address (strides {strides:?} for shape {shape:?}): its stores would race")]
    OverlappingElements {
        param: String,
        shape: Vec<usize>,
        strides: Vec<usize>,
    },
    #[error("argument `{param}` is not dense row-major (strides {strides:?} for shape {shape:?})")]
    NotContiguous {
        param: String,
        shape: Vec<usize>,
        strides: Vec<usize>,
    },
    #[error("argument `{param}` is at {ptr:#x}, not {align}-byte aligned")]
    Misaligned { param: String, ptr: u64, align: u64 },
    #[error("output `{output}` overlaps `{other}` in memory")]
    Aliasing { output: String, other: String },
    #[error("scalar `{param}` = {value} does not fit {dtype}")]
    ScalarRange {
        param: String,
        value: f64,
        dtype: DType,
    },
    #[error("shape symbol `{symbol}` is not bound by any tensor argument")]
    UnboundSymbol { symbol: String },
    #[error("grid extent {index} ({expr}) is invalid for these shapes")]
    Grid { index: usize, expr: String },
    #[error(
        "tensor map `{param}` cannot describe `{tensor}`: {reason} (TMA needs: {requirement})"
    )]
    TensorMap {
        param: String,
        tensor: String,
        reason: String,
        requirement: &'static str,
    },
    #[error("the kernel requires `{requirement}`, which does not hold for {values}")]
    Requirement { requirement: String, values: String },
}

/// Checks `args` against `entry` and computes the launch.
pub fn plan(entry: &KernelEntry, args: &[ArgInfo]) -> Result<LaunchPlan, LaunchError> {
    let given: Vec<&ParamSpec> = entry.params.iter().filter(|p| p.is_passed()).collect();
    if given.len() != args.len() {
        return Err(LaunchError::ArgCount {
            kernel: entry.name.clone(),
            want: given.len(),
            got: args.len(),
        });
    }
    let mut symbols: Symbols = BTreeMap::new();
    let mut scalars: BTreeMap<String, i64> = BTreeMap::new();
    // (name, io, byte range) of every tensor, for the overlap check.
    let mut ranges: Vec<(String, Io, u64, u64)> = Vec::new();
    for (spec, arg) in given.iter().zip(args) {
        match (spec, arg) {
            (ParamSpec::Tensor { .. }, ArgInfo::Tensor { .. }) => {
                if let Some(r) = bind_tensor(spec, arg, &mut symbols)? {
                    ranges.push(r);
                }
            }
            (ParamSpec::Tensor { name, .. }, ArgInfo::Scalar(_)) => {
                return Err(LaunchError::NotATensor {
                    param: name.clone(),
                })
            }
            (ParamSpec::Scalar { name, .. }, ArgInfo::Tensor { .. }) => {
                return Err(LaunchError::NotAScalar {
                    param: name.clone(),
                })
            }
            (ParamSpec::Scalar { name, dtype }, ArgInfo::Scalar(v)) => {
                // An integer scalar may size the grid or appear in a requirement; its range is
                // checked with its conversion below.
                if *dtype == DType::I32 && v.fract() == 0.0 {
                    scalars.insert(name.clone(), *v as i64);
                }
            }
            (ParamSpec::Shape { .. } | ParamSpec::TensorMap { .. }, _) => {
                unreachable!("shape parameters and tensor maps are not passed")
            }
        }
    }
    check_overlaps(&ranges)?;
    let lookup = |s: &str| {
        symbols
            .get(s)
            .map(|(v, _)| *v)
            .or_else(|| scalars.get(s).copied())
    };
    if let Some((requirement, values)) = failed_requirement(&entry.requires, &lookup) {
        return Err(LaunchError::Requirement {
            requirement,
            values,
        });
    }
    let grid = eval_grid(entry, &lookup)?;
    let params = launch_params(entry, args, &lookup)?;
    Ok(LaunchPlan {
        grid,
        block: entry.launch.block,
        shared_bytes: entry.launch.shared_bytes,
        params,
        symbols: symbols.into_iter().map(|(k, (v, _))| (k, v)).collect(),
    })
}

/// The symbols bound so far: each one's value and the parameter that bound it.
type Symbols = BTreeMap<String, (i64, String)>;

/// Checks one tensor argument against its declaration, binding its dimensions' and strides'
/// symbols; returns (name, io, first byte, end byte) of the memory it spans, if any.
fn bind_tensor(
    spec: &ParamSpec,
    arg: &ArgInfo,
    symbols: &mut Symbols,
) -> Result<Option<(String, Io, u64, u64)>, LaunchError> {
    let (
        ParamSpec::Tensor {
            name,
            dtype,
            dims,
            io,
            strides: declared,
        },
        ArgInfo::Tensor {
            dtype: got,
            shape,
            strides,
            ptr,
        },
    ) = (spec, arg)
    else {
        unreachable!("called for tensor arguments of tensor parameters")
    };
    if got != dtype {
        return Err(LaunchError::Dtype {
            param: name.clone(),
            want: *dtype,
            got: *got,
        });
    }
    if shape.len() != dims.len() || strides.len() != dims.len() {
        return Err(LaunchError::Rank {
            param: name.clone(),
            want: dims.len(),
            got: shape.clone(),
        });
    }
    for (axis, (d, &n)) in dims.iter().zip(shape).enumerate() {
        bind(symbols, name, axis, d, n, false)?;
    }
    let numel: usize = shape.iter().product();
    match declared {
        // A dense tensor passed where strides are declared binds its dense strides, which is
        // what `strides` holds for one.
        Some(declared) => {
            for (axis, (d, &n)) in declared.iter().zip(strides).enumerate() {
                bind(symbols, name, axis, d, n, true)?;
            }
            if *io != Io::In && numel > 1 && !distinct_elements(shape, strides) {
                return Err(LaunchError::OverlappingElements {
                    param: name.clone(),
                    shape: shape.clone(),
                    strides: strides.clone(),
                });
            }
        }
        None => {
            if numel > 1 && *strides != dense_strides(shape) {
                return Err(LaunchError::NotContiguous {
                    param: name.clone(),
                    shape: shape.clone(),
                    strides: strides.clone(),
                });
            }
        }
    }
    if ptr % POINTER_ALIGN != 0 {
        return Err(LaunchError::Misaligned {
            param: name.clone(),
            ptr: *ptr,
            align: POINTER_ALIGN,
        });
    }
    let bytes = (strided_span(shape, strides) * dtype.size()) as u64;
    Ok((bytes > 0).then(|| (name.clone(), *io, *ptr, ptr + bytes)))
}

/// Binds (or checks) the symbol or constant `d` of `param`'s `axis` to the value `n` passed: an
/// extent, or with `stride`, a stride.
fn bind(
    symbols: &mut Symbols,
    param: &str,
    axis: usize,
    d: &DimSpec,
    n: usize,
    stride: bool,
) -> Result<(), LaunchError> {
    if n > i32::MAX as usize {
        let param = param.to_string();
        return Err(if stride {
            LaunchError::StrideTooLarge {
                param,
                axis,
                value: n,
            }
        } else {
            LaunchError::DimTooLarge {
                param,
                axis,
                value: n,
            }
        });
    }
    match d {
        DimSpec::Const(c) if *c != n as i64 => Err(if stride {
            LaunchError::FixedStride {
                param: param.to_string(),
                axis,
                want: *c,
                got: n,
            }
        } else {
            LaunchError::FixedDim {
                param: param.to_string(),
                axis,
                want: *c,
                got: n,
            }
        }),
        DimSpec::Const(_) => Ok(()),
        DimSpec::Sym(s) => match symbols.get(s) {
            Some((first, first_param)) if *first != n as i64 => Err(LaunchError::SymbolMismatch {
                symbol: s.clone(),
                first_param: first_param.clone(),
                first: *first,
                param: param.to_string(),
                value: n as i64,
            }),
            Some(_) => Ok(()),
            None => {
                symbols.insert(s.clone(), (n as i64, param.to_string()));
                Ok(())
            }
        },
    }
}

/// Elements from the first to one past the last that `shape` and `strides` reach (0 when empty).
fn strided_span(shape: &[usize], strides: &[usize]) -> usize {
    if shape.contains(&0) {
        return 0;
    }
    1 + shape
        .iter()
        .zip(strides)
        .map(|(&n, &s)| (n - 1) * s)
        .sum::<usize>()
}

/// Whether no two elements of the view share an address: with the axes of extent > 1 ordered by
/// stride, each stride reaches past everything the smaller ones span. Stores to an output view
/// that fails this would race.
fn distinct_elements(shape: &[usize], strides: &[usize]) -> bool {
    let mut axes: Vec<(usize, usize)> = strides
        .iter()
        .zip(shape)
        .filter(|(_, &n)| n > 1)
        .map(|(&s, &n)| (s, n))
        .collect();
    axes.sort_unstable();
    let mut reach = 0usize;
    for (s, n) in axes {
        if s <= reach {
            return false;
        }
        reach += (n - 1) * s;
    }
    true
}

/// Fails when an output's bytes overlap another tensor's: `ranges` is (name, io, start, end) of
/// every tensor.
fn check_overlaps(ranges: &[(String, Io, u64, u64)]) -> Result<(), LaunchError> {
    for (i, (out, io, a0, a1)) in ranges.iter().enumerate() {
        if *io == Io::In {
            continue;
        }
        for (j, (other, _, b0, b1)) in ranges.iter().enumerate() {
            if i != j && a0 < b1 && b0 < a1 {
                return Err(LaunchError::Aliasing {
                    output: out.clone(),
                    other: other.clone(),
                });
            }
        }
    }
    Ok(())
}

/// The launch grid for symbols and integer scalars bound by `lookup`.
fn eval_grid(
    entry: &KernelEntry,
    lookup: &dyn Fn(&str) -> Option<i64>,
) -> Result<[u32; 3], LaunchError> {
    let mut grid = [1u32; 3];
    for (i, g) in entry.launch.grid.iter().enumerate().take(3) {
        let v = g
            .eval(lookup)
            .filter(|v| (0..=u32::MAX as i64).contains(v))
            .ok_or_else(|| LaunchError::Grid {
                index: i,
                expr: g.to_string(),
            })?;
        grid[i] = v as u32;
    }
    Ok(grid)
}

/// The launch parameters in PTX order: pointers, scalars converted to their dtype, and the bound
/// shape symbols. Kinds were checked by `plan` before.
fn launch_params(
    entry: &KernelEntry,
    args: &[ArgInfo],
    lookup: &dyn Fn(&str) -> Option<i64>,
) -> Result<Vec<ParamValue>, LaunchError> {
    let mut params = Vec::with_capacity(entry.params.len());
    // Tensor maps describe tensors passed by name.
    let tensors: BTreeMap<&str, &ArgInfo> = entry
        .params
        .iter()
        .filter(|p| p.is_passed())
        .zip(args)
        .map(|(p, a)| (p.name(), a))
        .collect();
    let mut args = args.iter();
    for spec in &entry.params {
        params.push(match spec {
            ParamSpec::Tensor { .. } => match args.next() {
                Some(ArgInfo::Tensor { ptr, .. }) => ParamValue::Ptr(*ptr),
                _ => unreachable!("kinds were checked above"),
            },
            ParamSpec::Scalar { name, dtype } => {
                let Some(ArgInfo::Scalar(v)) = args.next() else {
                    unreachable!("kinds were checked above")
                };
                match dtype {
                    DType::F32 => ParamValue::F32(*v as f32),
                    DType::I32 => {
                        if v.fract() != 0.0 || *v < i32::MIN as f64 || *v > i32::MAX as f64 {
                            return Err(LaunchError::ScalarRange {
                                param: name.clone(),
                                value: *v,
                                dtype: *dtype,
                            });
                        }
                        ParamValue::I32(*v as i32)
                    }
                    DType::Bf16 => ParamValue::B16(bf16_bits(*v)),
                    DType::F16 => ParamValue::B16(f16_bits(*v)),
                    // The compiler never declares one (sema has no bool parameters); a manifest
                    // edited to say so is refused rather than guessed at.
                    DType::Bool => {
                        return Err(LaunchError::BoolParameter {
                            param: name.clone(),
                        })
                    }
                }
            }
            ParamSpec::Shape { symbol } => {
                let v = lookup(symbol).ok_or_else(|| LaunchError::UnboundSymbol {
                    symbol: symbol.clone(),
                })?;
                ParamValue::I32(v as i32)
            }
            ParamSpec::TensorMap { tensor, .. } => match tensors.get(tensor.as_str()) {
                Some(ArgInfo::Tensor {
                    dtype,
                    shape,
                    strides,
                    ptr,
                }) => ParamValue::TensorMap(crate::tensor_map::encoding(
                    spec, *dtype, shape, strides, *ptr,
                )?),
                _ => {
                    return Err(LaunchError::TensorMap {
                        param: spec.name().into(),
                        tensor: tensor.clone(),
                        reason: "no such tensor parameter".into(),
                        requirement: crate::tensor_map::REQUIREMENT,
                    })
                }
            },
        });
    }
    Ok(params)
}

/// The first requirement that does not hold (or cannot be evaluated) for these symbol values, as
/// its text and the values it read (`("N <= 1024", "N = 4097")`): what both the runtime and the
/// interpreter report.
pub fn failed_requirement(
    requires: &[crate::Requirement],
    lookup: &dyn Fn(&str) -> Option<i64>,
) -> Option<(String, String)> {
    let r = requires.iter().find(|r| r.holds(lookup) != Some(true))?;
    let values: Vec<String> = r
        .symbols()
        .iter()
        .map(|s| match lookup(s) {
            Some(v) => format!("{s} = {v}"),
            None => format!("{s} unbound"),
        })
        .collect();
    Some((r.to_string(), values.join(", ")))
}

/// bf16 bits of `v`, rounded to nearest even.
fn bf16_bits(v: f64) -> u16 {
    let bits = (v as f32).to_bits();
    if (v as f32).is_nan() {
        return 0x7fc0;
    }
    let round = 0x7fff + ((bits >> 16) & 1);
    ((bits.wrapping_add(round)) >> 16) as u16
}

/// f16 bits of `v` (via f32; scalars are rarely at f16's edges, but overflow saturates to inf).
fn f16_bits(v: f64) -> u16 {
    let f = v as f32;
    let bits = f.to_bits();
    let sign = ((bits >> 16) & 0x8000) as u16;
    if f.is_nan() {
        return 0x7e00;
    }
    let a = f.abs();
    if a >= 65520.0 {
        return sign | 0x7c00;
    }
    if a < 6.1e-5 {
        // Subnormal range: scale into the 10-bit mantissa.
        return sign | (a / 5.960_464_5e-8).round() as u16;
    }
    let exp = ((bits >> 23) & 0xff) as i32 - 127 + 15;
    let mant = bits & 0x7f_ffff;
    let mut h = ((exp as u32) << 10) | (mant >> 13);
    let rest = mant & 0x1fff;
    if rest > 0x1000 || (rest == 0x1000 && (h & 1) == 1) {
        h += 1;
    }
    sign | h as u16
}
