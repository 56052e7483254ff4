//! Lightning Attention (TransNormerLLM's token mixer) over device tensors, from the kernels of the
//! `lightning_attention` package (dsl-examples/lightning_attention.tsl built over its head dims:
//! `--variant D=64,128 --variant E=64,128`; `tessel demo` builds it).
//!
//! o_t = Σ_{s≤t} λ_h^{t−s} (q_t·k_s) v_s with λ_h = e^{−slope_h}: causal, no softmax, no scale.
//! q and k are (B, H, N, D), v and o (B, H, N, E); `slopes` is f32 (H) — the per-head decay
//! magnitudes (0 = no decay), e.g. TransNormerLLM's LRPE-d schedule from
//! `tessel_models::transnormer::decay`. Generation: [`lightning_attention_prefill`] returns the
//! f32 state S = Σ_s λ^{N−1−s} k_sᵀ v_s (B, H, D, E) that [`lightning_attention_decode`] advances
//! one token at a time at a cost independent of the context length.

use tessel_package::DType;

use crate::operand::{bad, expect, expect_rank, same_dtype, variant};
use crate::{Arg, Device, DeviceTensor, LoadedPackage, RuntimeError};

const OP_FWD: &str = "lightning_attention_forward";
const OP_BWD: &str = "lightning_attention_backward";
const OP_DECODE: &str = "lightning_attention_decode";

/// Gradients with respect to q, k and v.
#[derive(Debug)]
pub struct LightningGrads {
    pub dq: DeviceTensor,
    pub dk: DeviceTensor,
    pub dv: DeviceTensor,
}

/// A prefill's outputs: O, and the state decoding continues from.
#[derive(Debug)]
pub struct Prefill {
    pub o: DeviceTensor,
    pub state: DeviceTensor,
}

struct Dims {
    dtype: DType,
    d: usize,
    e: usize,
}

impl Dims {
    fn consts(&self) -> (String, String) {
        (self.d.to_string(), self.e.to_string())
    }
}

/// Checks q, k (B, H, N, D), v (B, H, N, E) and slopes (H) against each other; `lead` is the
/// number of leading (B, H[, N]) dimensions.
fn check(
    op: &'static str,
    q: &DeviceTensor,
    k: &DeviceTensor,
    v: &DeviceTensor,
    slopes: &DeviceTensor,
    lead: usize,
) -> Result<Dims, RuntimeError> {
    let layout = if lead == 3 {
        "(B, H, N, dim)"
    } else {
        "(B, H, dim)"
    };
    for (name, t) in [("q", q), ("k", k), ("v", v)] {
        expect_rank(op, name, t, lead + 1, layout)?;
    }
    if q.shape != k.shape {
        return Err(bad(
            op,
            format!("q {:?} and k {:?} differ in shape", q.shape, k.shape),
        ));
    }
    if v.shape[..lead] != q.shape[..lead] {
        return Err(bad(
            op,
            format!("v {:?} does not match q {:?}", v.shape, q.shape),
        ));
    }
    same_dtype(op, &[("q", q), ("k", k), ("v", v)])?;
    expect(op, "slopes", slopes, &q.shape[1..2], DType::F32)?;
    Ok(Dims {
        dtype: q.dtype,
        d: q.shape[lead],
        e: v.shape[lead],
    })
}

fn entry<'p>(pkg: &'p LoadedPackage, kernel: &str, dims: &Dims) -> Result<&'p str, RuntimeError> {
    let (d, e) = dims.consts();
    variant(
        pkg,
        kernel,
        &[
            ("D", d.as_str()),
            ("E", e.as_str()),
            ("T", dims.dtype.name()),
        ],
    )
}

/// O (B, H, N, E).
pub fn lightning_attention_forward(
    dev: &Device,
    pkg: &LoadedPackage,
    q: &DeviceTensor,
    k: &DeviceTensor,
    v: &DeviceTensor,
    slopes: &DeviceTensor,
) -> Result<DeviceTensor, RuntimeError> {
    let dims = check(OP_FWD, q, k, v, slopes, 3)?;
    let o = DeviceTensor::empty(dev, dims.dtype, &v.shape)?;
    lightning_attention_forward_into(dev, pkg, q, k, v, slopes, &o)?;
    Ok(o)
}

/// [`lightning_attention_forward`] into a caller-owned O (like v).
pub fn lightning_attention_forward_into(
    dev: &Device,
    pkg: &LoadedPackage,
    q: &DeviceTensor,
    k: &DeviceTensor,
    v: &DeviceTensor,
    slopes: &DeviceTensor,
    o: &DeviceTensor,
) -> Result<(), RuntimeError> {
    let dims = check(OP_FWD, q, k, v, slopes, 3)?;
    expect(OP_FWD, "o", o, &v.shape, dims.dtype)?;
    let fwd = entry(pkg, "lightning_attention_fwd", &dims)?;
    pkg.launch(
        dev,
        fwd,
        &[
            Arg::Tensor(q),
            Arg::Tensor(k),
            Arg::Tensor(v),
            Arg::Tensor(slopes),
            Arg::Tensor(o),
        ],
    )?;
    Ok(())
}

/// The forward, plus the final state for [`lightning_attention_decode`].
pub fn lightning_attention_prefill(
    dev: &Device,
    pkg: &LoadedPackage,
    q: &DeviceTensor,
    k: &DeviceTensor,
    v: &DeviceTensor,
    slopes: &DeviceTensor,
) -> Result<Prefill, RuntimeError> {
    let dims = check(OP_FWD, q, k, v, slopes, 3)?;
    let state_kernel = entry(pkg, "lightning_attention_state", &dims)?;
    let o = lightning_attention_forward(dev, pkg, q, k, v, slopes)?;
    let state = DeviceTensor::empty(dev, DType::F32, &[q.shape[0], q.shape[1], dims.d, dims.e])?;
    pkg.launch(
        dev,
        state_kernel,
        &[
            Arg::Tensor(k),
            Arg::Tensor(v),
            Arg::Tensor(slopes),
            Arg::Tensor(&state),
        ],
    )?;
    Ok(Prefill { o, state })
}

/// One generated token for every (sequence, head): q, k (B, H, D), v (B, H, E); advances
/// `state` (f32, (B, H, D, E)) in place by the robust recurrence S ← λS + kᵀv and returns
/// o = qS (B, H, E). A zero state starts a sequence from nothing.
pub fn lightning_attention_decode(
    dev: &Device,
    pkg: &LoadedPackage,
    q: &DeviceTensor,
    k: &DeviceTensor,
    v: &DeviceTensor,
    slopes: &DeviceTensor,
    state: &mut DeviceTensor,
) -> Result<DeviceTensor, RuntimeError> {
    let dims = check(OP_DECODE, q, k, v, slopes, 2)?;
    expect(
        OP_DECODE,
        "state",
        state,
        &[q.shape[0], q.shape[1], dims.d, dims.e],
        DType::F32,
    )?;
    let step = entry(pkg, "lightning_attention_decode", &dims)?;
    let o = DeviceTensor::empty(dev, dims.dtype, &v.shape)?;
    pkg.launch(
        dev,
        step,
        &[
            Arg::Tensor(q),
            Arg::Tensor(k),
            Arg::Tensor(v),
            Arg::Tensor(slopes),
            Arg::Tensor(state),
            Arg::Tensor(&o),
        ],
    )?;
    Ok(o)
}

/// dQ, dK, dV of [`lightning_attention_forward`] given dO (B, H, N, E): a forward sweep for dQ
/// and a reverse sweep (the state carried backwards) for dK and dV.
#[allow(clippy::too_many_arguments)]
pub fn lightning_attention_backward(
    dev: &Device,
    pkg: &LoadedPackage,
    q: &DeviceTensor,
    k: &DeviceTensor,
    v: &DeviceTensor,
    slopes: &DeviceTensor,
    d_o: &DeviceTensor,
) -> Result<LightningGrads, RuntimeError> {
    let dims = check(OP_BWD, q, k, v, slopes, 3)?;
    let grads = LightningGrads {
        dq: DeviceTensor::empty(dev, dims.dtype, &q.shape)?,
        dk: DeviceTensor::empty(dev, dims.dtype, &k.shape)?,
        dv: DeviceTensor::empty(dev, dims.dtype, &v.shape)?,
    };
    lightning_attention_backward_into(dev, pkg, q, k, v, slopes, d_o, &grads)?;
    Ok(grads)
}

/// [`lightning_attention_backward`] into caller-owned gradients (each like its input).
#[allow(clippy::too_many_arguments)]
pub fn lightning_attention_backward_into(
    dev: &Device,
    pkg: &LoadedPackage,
    q: &DeviceTensor,
    k: &DeviceTensor,
    v: &DeviceTensor,
    slopes: &DeviceTensor,
    d_o: &DeviceTensor,
    grads: &LightningGrads,
) -> Result<(), RuntimeError> {
    let dims = check(OP_BWD, q, k, v, slopes, 3)?;
    expect(OP_BWD, "d_o", d_o, &v.shape, dims.dtype)?;
    expect(OP_BWD, "dq", &grads.dq, &q.shape, dims.dtype)?;
    expect(OP_BWD, "dk", &grads.dk, &k.shape, dims.dtype)?;
    expect(OP_BWD, "dv", &grads.dv, &v.shape, dims.dtype)?;
    let dq_kernel = entry(pkg, "lightning_attention_bwd_dq", &dims)?;
    let dkdv_kernel = entry(pkg, "lightning_attention_bwd_dkdv", &dims)?;
    pkg.launch(
        dev,
        dq_kernel,
        &[
            Arg::Tensor(k),
            Arg::Tensor(v),
            Arg::Tensor(d_o),
            Arg::Tensor(slopes),
            Arg::Tensor(&grads.dq),
        ],
    )?;
    pkg.launch(
        dev,
        dkdv_kernel,
        &[
            Arg::Tensor(q),
            Arg::Tensor(k),
            Arg::Tensor(v),
            Arg::Tensor(d_o),
            Arg::Tensor(slopes),
            Arg::Tensor(&grads.dk),
            Arg::Tensor(&grads.dv),
        ],
    )?;
    Ok(())
}
