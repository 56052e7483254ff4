//! LongNet's dilated attention over (B, H, N, D) device tensors, from the kernels of
//! `dsl-examples/dilated_attention.tsl` (the `dilated_attention` package; runtime/src/spec.rs).
//!
//! One launch per (w, r) pattern and pass: each reads the rows its pattern keeps through strided
//! slices and merges its result into O and the combined log-sum-exp L in place, so nothing is
//! gathered or scattered. An r = 1 pattern keeps every row, so when there is one it runs first
//! and writes (O, L) outright; otherwise they start at O = 0, L = −∞ (a device memset). The
//! backward passes accumulate dQ, dK, dV the same way. Everything is checked before anything is
//! launched or allocated.

use tessel_package::DType;

use crate::attention::AttentionGrads;
use crate::operand::{bad, expect, expect_rank, flag, same_dtype, softmax_scale, variant};
use crate::spec::dilated as spec;
use crate::{Arg, Device, DeviceTensor, LoadedPackage, RuntimeError};

/// One (segment length, dilation) pair; the segment is min(w, N) for a sequence of N.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pattern {
    pub w: usize,
    pub r: usize,
}

/// Which in-segment offset head h uses for a pattern of dilation r.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum HeadOffsets {
    /// The paper's o_h = h mod r.
    #[default]
    Paper,
    /// torchscale's: ⌈H/r⌉ consecutive heads share an offset, o_h = ⌊h / ⌈H/r⌉⌋.
    Torchscale,
}

/// How the backward pass treats the patterns' combination weights.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum GradMode {
    /// The gradient of the combined output (the closed form of ALGORITHMS.md §4).
    #[default]
    Exact,
    /// torchscale's: the weights are constants (computed under `no_grad` there).
    Torchscale,
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct DilatedOptions {
    pub patterns: Vec<Pattern>,
    pub offsets: HeadOffsets,
    pub causal: bool,
    /// Softmax scale; `None` is 1/√D.
    pub scale: Option<f32>,
}

/// O like q, and the combined row log-sum-exp L, f32 (B, H, N): −∞ where no pattern keeps a row.
#[derive(Debug)]
pub struct DilatedOutput {
    pub o: DeviceTensor,
    pub lse: DeviceTensor,
}

const OP_FWD: &str = "dilated_attention_forward";
const OP_BWD: &str = "dilated_attention_backward";

struct Problem {
    dtype: DType,
    shape: Vec<usize>,
    scale: f32,
    /// The patterns in launch order, with their head groups: an r = 1 pattern first if any.
    launches: Vec<(Pattern, usize)>,
    /// The first launch writes rather than accumulates.
    first_writes: bool,
}

fn check(
    op: &'static str,
    q: &DeviceTensor,
    k: &DeviceTensor,
    v: &DeviceTensor,
    options: &DilatedOptions,
) -> Result<Problem, RuntimeError> {
    for (name, t) in [("q", q), ("k", k), ("v", v)] {
        expect_rank(op, name, t, 4, "(B, H, N, D)")?;
    }
    if k.shape != q.shape || v.shape != q.shape {
        return Err(bad(
            op,
            format!(
                "q {:?}, k {:?} and v {:?} must share one shape",
                q.shape, k.shape, v.shape
            ),
        ));
    }
    let dtype = same_dtype(op, &[("q", q), ("k", k), ("v", v)])?;
    if options.patterns.is_empty() {
        return Err(bad(op, "no (w, r) pattern given".into()));
    }
    let heads = q.shape[1];
    let mut launches = Vec::with_capacity(options.patterns.len());
    for &p in &options.patterns {
        if p.w == 0 || p.r == 0 || p.w > i32::MAX as usize || p.r > i32::MAX as usize {
            return Err(bad(
                op,
                format!(
                    "pattern (w = {}, r = {}): both must be in 1..=2^31-1",
                    p.w, p.r
                ),
            ));
        }
        let group = match options.offsets {
            HeadOffsets::Paper => 1,
            HeadOffsets::Torchscale => heads.div_ceil(p.r).max(1),
        };
        launches.push((p, group));
    }
    // A stable sort: an r = 1 pattern (if any) first, the others in the caller's order.
    launches.sort_by_key(|(p, _)| p.r != 1);
    let scale = softmax_scale(op, options.scale, q.shape[3])?;
    Ok(Problem {
        dtype,
        shape: q.shape.clone(),
        scale,
        first_writes: launches[0].0.r == 1,
        launches,
    })
}

/// The entry of `kernel` for this problem's head dim and dtype, the mask and FIRST where it has them.
fn entry<'p>(
    pkg: &'p LoadedPackage,
    kernel: &str,
    p: &Problem,
    causal: Option<bool>,
    first: Option<bool>,
) -> Result<&'p str, RuntimeError> {
    let d = p.shape[3].to_string();
    let mut consts = vec![("D", d.as_str()), ("T", p.dtype.name())];
    if let Some(c) = causal {
        consts.push(("CAUSAL", flag(c)));
    }
    if let Some(f) = first {
        consts.push(("FIRST", flag(f)));
    }
    variant(pkg, kernel, &consts)
}

/// The pattern scalars every per-pattern kernel takes after its tensors.
fn pattern_args(p: &Problem, (pat, group): (Pattern, usize)) -> [Arg<'static>; 4] {
    [
        Arg::Scalar(p.scale as f64),
        Arg::Scalar(pat.w as f64),
        Arg::Scalar(pat.r as f64),
        Arg::Scalar(group as f64),
    ]
}

/// Dilated attention's O and combined L for every pattern of `options`.
pub fn dilated_attention_forward(
    dev: &Device,
    pkg: &LoadedPackage,
    q: &DeviceTensor,
    k: &DeviceTensor,
    v: &DeviceTensor,
    options: &DilatedOptions,
) -> Result<DilatedOutput, RuntimeError> {
    let p = check(OP_FWD, q, k, v, options)?;
    // Every variant is looked up before the first allocation.
    for i in 0..p.launches.len() {
        entry(
            pkg,
            spec::FWD,
            &p,
            Some(options.causal),
            Some(i == 0 && p.first_writes),
        )?;
    }
    let out = DilatedOutput {
        o: DeviceTensor::empty(dev, p.dtype, &q.shape)?,
        lse: DeviceTensor::empty(dev, DType::F32, &q.shape[..3])?,
    };
    dilated_attention_forward_into(dev, pkg, q, k, v, &out, options)?;
    Ok(out)
}

/// [`dilated_attention_forward`] into caller-owned outputs (O like q, L f32 (B, H, N)).
pub fn dilated_attention_forward_into(
    dev: &Device,
    pkg: &LoadedPackage,
    q: &DeviceTensor,
    k: &DeviceTensor,
    v: &DeviceTensor,
    out: &DilatedOutput,
    options: &DilatedOptions,
) -> Result<(), RuntimeError> {
    let p = check(OP_FWD, q, k, v, options)?;
    expect(OP_FWD, "o", &out.o, &q.shape, p.dtype)?;
    expect(OP_FWD, "lse", &out.lse, &q.shape[..3], DType::F32)?;
    let kernels = (0..p.launches.len())
        .map(|i| {
            entry(
                pkg,
                spec::FWD,
                &p,
                Some(options.causal),
                Some(i == 0 && p.first_writes),
            )
        })
        .collect::<Result<Vec<_>, _>>()?;
    if !p.first_writes {
        out.o.fill(dev, 0.0)?;
        out.lse.fill(dev, f64::NEG_INFINITY)?;
    }
    for (&launch, kernel) in p.launches.iter().zip(kernels) {
        let mut args = vec![
            Arg::Tensor(q),
            Arg::Tensor(k),
            Arg::Tensor(v),
            Arg::Tensor(&out.o),
            Arg::Tensor(&out.lse),
        ];
        args.extend(pattern_args(&p, launch));
        pkg.launch(dev, kernel, &args)?;
    }
    Ok(())
}

/// dQ, dK, dV of [`dilated_attention_forward`] given dO, in `mode`.
#[allow(clippy::too_many_arguments)]
pub fn dilated_attention_backward(
    dev: &Device,
    pkg: &LoadedPackage,
    q: &DeviceTensor,
    k: &DeviceTensor,
    v: &DeviceTensor,
    forward: &DilatedOutput,
    d_o: &DeviceTensor,
    options: &DilatedOptions,
    mode: GradMode,
) -> Result<AttentionGrads, RuntimeError> {
    let p = check(OP_BWD, q, k, v, options)?;
    expect(OP_BWD, "o", &forward.o, &q.shape, p.dtype)?;
    expect(OP_BWD, "d_o", d_o, &q.shape, p.dtype)?;
    expect(OP_BWD, "lse", &forward.lse, &q.shape[..3], DType::F32)?;
    let c = Some(options.causal);
    let per_pattern = (0..p.launches.len())
        .map(|i| {
            let first = Some(i == 0 && p.first_writes);
            Ok((
                entry(pkg, spec::BWD_DKDV, &p, c, first)?,
                entry(pkg, spec::BWD_DQ, &p, c, first)?,
            ))
        })
        .collect::<Result<Vec<_>, RuntimeError>>()?;
    let pre = match mode {
        GradMode::Exact => entry(pkg, spec::BWD_PREPROCESS, &p, None, None)?,
        GradMode::Torchscale => entry(pkg, spec::BWD_DELTA, &p, c, None)?,
    };
    let grads = AttentionGrads {
        dq: DeviceTensor::empty(dev, p.dtype, &q.shape)?,
        dk: DeviceTensor::empty(dev, p.dtype, &q.shape)?,
        dv: DeviceTensor::empty(dev, p.dtype, &q.shape)?,
    };
    let delta = DeviceTensor::empty(dev, DType::F32, &q.shape[..3])?;
    if !p.first_writes {
        for g in [&grads.dq, &grads.dk, &grads.dv] {
            g.fill(dev, 0.0)?;
        }
    }
    if mode == GradMode::Exact {
        pkg.launch_tensors(dev, pre, &[&forward.o, d_o, &delta])?;
    }
    for (&launch, (dkdv, dq)) in p.launches.iter().zip(per_pattern) {
        if mode == GradMode::Torchscale {
            let mut args = vec![
                Arg::Tensor(q),
                Arg::Tensor(k),
                Arg::Tensor(v),
                Arg::Tensor(d_o),
                Arg::Tensor(&delta),
            ];
            args.extend(pattern_args(&p, launch));
            pkg.launch(dev, pre, &args)?;
        }
        let common = [
            Arg::Tensor(q),
            Arg::Tensor(k),
            Arg::Tensor(v),
            Arg::Tensor(d_o),
            Arg::Tensor(&forward.lse),
            Arg::Tensor(&delta),
        ];
        let mut args = common.to_vec();
        args.extend([Arg::Tensor(&grads.dk), Arg::Tensor(&grads.dv)]);
        args.extend(pattern_args(&p, launch));
        pkg.launch(dev, dkdv, &args)?;
        let mut args = common.to_vec();
        args.push(Arg::Tensor(&grads.dq));
        args.extend(pattern_args(&p, launch));
        pkg.launch(dev, dq, &args)?;
    }
    Ok(grads)
}
