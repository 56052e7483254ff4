//! Attention operators over device tensors, built from the kernels of a package compiled from
//! `dsl-examples/flash_attention.tsl` over its variants (`tessel compile ... --variant D=64,128
//! --variant CAUSAL=false,true --package`; `tessel demo` builds it as `flash_attention.<arch>.tpkg`).
//!
//! Tensors are (B, H, N, D), dense row-major. Grouped-query attention: q has H_q heads, k and v
//! H_kv, with H_q a multiple of H_kv. Everything is checked before anything is launched, so a
//! refused call leaves the device untouched.

use tessel_package::DType;

use crate::operand::{bad, expect, expect_rank, flag, same_dtype, softmax_scale};
use crate::spec::flash as spec;
use crate::{Arg, Device, DeviceTensor, LoadedPackage, RuntimeError};

/// How attention is computed.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct AttentionOptions {
    /// Bottom-right aligned causal mask: key j is visible to query i iff j ≤ i + N_k − N_q.
    pub causal: bool,
    /// Softmax scale τ in softmax(τ·QKᵀ); `None` is 1/√D.
    pub scale: Option<f32>,
}

/// Forward results: O, and the row log-sum-exp L (natural log, f32, (B, H_q, N_q)) the
/// backward pass recomputes P from. Rows that see no key have O = 0 and L = +inf.
#[derive(Debug)]
pub struct AttentionOutput {
    pub o: DeviceTensor,
    pub lse: DeviceTensor,
}

/// Gradients with respect to q, k and v, in their shapes and dtype.
#[derive(Debug)]
pub struct AttentionGrads {
    pub dq: DeviceTensor,
    pub dk: DeviceTensor,
    pub dv: DeviceTensor,
}

const OP_FWD: &str = "flash_attention_forward";
const OP_BWD: &str = "flash_attention_backward";

/// The problem a call describes, after checking q, k and v against each other.
struct Problem {
    dtype: DType,
    d: usize,
    scale: f32,
}

fn check_qkv(
    op: &'static str,
    q: &DeviceTensor,
    k: &DeviceTensor,
    v: &DeviceTensor,
    options: &AttentionOptions,
) -> Result<Problem, RuntimeError> {
    for (name, t) in [("q", q), ("k", k), ("v", v)] {
        expect_rank(op, name, t, 4, "(B, H, N, D)")?;
    }
    if k.shape != v.shape {
        return Err(bad(
            op,
            format!("k {:?} and v {:?} differ in shape", k.shape, v.shape),
        ));
    }
    same_dtype(op, &[("q", q), ("k", k), ("v", v)])?;
    let (b, hq, d) = (q.shape[0], q.shape[1], q.shape[3]);
    let (bk, hkv, dk) = (k.shape[0], k.shape[1], k.shape[3]);
    if b != bk {
        return Err(bad(op, format!("q has batch {b}, k and v have {bk}")));
    }
    if d != dk {
        return Err(bad(op, format!("q has head dim {d}, k and v have {dk}")));
    }
    if hkv == 0 || hq % hkv != 0 {
        return Err(bad(
            op,
            format!("{hq} query heads is not a multiple of {hkv} key/value heads"),
        ));
    }
    let scale = softmax_scale(op, options.scale, d)?;
    Ok(Problem {
        dtype: q.dtype,
        d,
        scale,
    })
}

/// The package entry of `kernel` for this problem (head dim, dtype and, where the kernel has
/// one, the mask).
fn variant<'p>(
    pkg: &'p LoadedPackage,
    kernel: &str,
    p: &Problem,
    causal: Option<bool>,
) -> Result<&'p str, RuntimeError> {
    let d = p.d.to_string();
    let mut consts = vec![("D", d.as_str()), ("T", p.dtype.name())];
    if let Some(c) = causal {
        consts.push(("CAUSAL", flag(c)));
    }
    crate::operand::variant(pkg, kernel, &consts)
}

/// softmax(τ·QKᵀ (masked))·V and its row log-sum-exp.
pub fn flash_attention_forward(
    dev: &Device,
    pkg: &LoadedPackage,
    q: &DeviceTensor,
    k: &DeviceTensor,
    v: &DeviceTensor,
    options: &AttentionOptions,
) -> Result<AttentionOutput, RuntimeError> {
    let p = check_qkv(OP_FWD, q, k, v, options)?;
    let out = AttentionOutput {
        o: DeviceTensor::empty(dev, p.dtype, &q.shape)?,
        lse: DeviceTensor::empty(dev, DType::F32, &q.shape[..3])?,
    };
    flash_attention_forward_into(dev, pkg, q, k, v, &out, options)?;
    Ok(out)
}

/// [`flash_attention_forward`] into caller-owned outputs (O like q, L f32 (B, H_q, N_q)), for
/// callers that reuse buffers across steps; they are checked like the inputs.
pub fn flash_attention_forward_into(
    dev: &Device,
    pkg: &LoadedPackage,
    q: &DeviceTensor,
    k: &DeviceTensor,
    v: &DeviceTensor,
    out: &AttentionOutput,
    options: &AttentionOptions,
) -> Result<(), RuntimeError> {
    let p = check_qkv(OP_FWD, q, k, v, options)?;
    expect(OP_FWD, "o", &out.o, &q.shape, p.dtype)?;
    expect(OP_FWD, "lse", &out.lse, &q.shape[..3], DType::F32)?;
    let fwd = variant(pkg, spec::FWD, &p, Some(options.causal))?;
    pkg.launch(
        dev,
        fwd,
        &[
            Arg::Tensor(q),
            Arg::Tensor(k),
            Arg::Tensor(v),
            Arg::Tensor(&out.o),
            Arg::Tensor(&out.lse),
            Arg::Scalar(p.scale as f64),
        ],
    )?;
    Ok(())
}

/// dQ, dK, dV of [`flash_attention_forward`] given dO, from the forward's O and L (P is
/// recomputed; no N×N matrix is stored). Three launches: Δ = rowsum(dO∘O), then dK/dV per key
/// block (summed over the query heads sharing it), then dQ per query block.
#[allow(clippy::too_many_arguments)]
pub fn flash_attention_backward(
    dev: &Device,
    pkg: &LoadedPackage,
    q: &DeviceTensor,
    k: &DeviceTensor,
    v: &DeviceTensor,
    forward: &AttentionOutput,
    d_o: &DeviceTensor,
    options: &AttentionOptions,
) -> Result<AttentionGrads, RuntimeError> {
    let p = check_qkv(OP_BWD, q, k, v, options)?;
    let grads = AttentionGrads {
        dq: DeviceTensor::empty(dev, p.dtype, &q.shape)?,
        dk: DeviceTensor::empty(dev, p.dtype, &k.shape)?,
        dv: DeviceTensor::empty(dev, p.dtype, &v.shape)?,
    };
    flash_attention_backward_into(dev, pkg, q, k, v, forward, d_o, &grads, options)?;
    Ok(grads)
}

/// [`flash_attention_backward`] into caller-owned gradients (each like its input).
#[allow(clippy::too_many_arguments)]
pub fn flash_attention_backward_into(
    dev: &Device,
    pkg: &LoadedPackage,
    q: &DeviceTensor,
    k: &DeviceTensor,
    v: &DeviceTensor,
    forward: &AttentionOutput,
    d_o: &DeviceTensor,
    grads: &AttentionGrads,
    options: &AttentionOptions,
) -> Result<(), RuntimeError> {
    let p = check_qkv(OP_BWD, q, k, v, options)?;
    expect(OP_BWD, "o", &forward.o, &q.shape, p.dtype)?;
    expect(OP_BWD, "d_o", d_o, &q.shape, p.dtype)?;
    expect(OP_BWD, "lse", &forward.lse, &q.shape[..3], DType::F32)?;
    expect(OP_BWD, "dq", &grads.dq, &q.shape, p.dtype)?;
    expect(OP_BWD, "dk", &grads.dk, &k.shape, p.dtype)?;
    expect(OP_BWD, "dv", &grads.dv, &v.shape, p.dtype)?;
    let pre = variant(pkg, spec::BWD_PREPROCESS, &p, None)?;
    let dkdv = variant(pkg, spec::BWD_DKDV, &p, Some(options.causal))?;
    let dq_k = variant(pkg, spec::BWD_DQ, &p, Some(options.causal))?;
    let delta = DeviceTensor::empty(dev, DType::F32, &q.shape[..3])?;
    let scale = Arg::Scalar(p.scale as f64);
    pkg.launch_tensors(dev, pre, &[&forward.o, d_o, &delta])?;
    let common = [
        Arg::Tensor(q),
        Arg::Tensor(k),
        Arg::Tensor(v),
        Arg::Tensor(d_o),
        Arg::Tensor(&forward.lse),
        Arg::Tensor(&delta),
    ];
    let mut args = common.to_vec();
    args.extend([Arg::Tensor(&grads.dk), Arg::Tensor(&grads.dv), scale]);
    pkg.launch(dev, dkdv, &args)?;
    let mut args = common.to_vec();
    args.extend([Arg::Tensor(&grads.dq), scale]);
    pkg.launch(dev, dq_k, &args)?;
    Ok(())
}
