//! Gated linear attention (fla's `chunk_gla` and `fused_recurrent_gla` decoding) over device
//! tensors, from the kernels of the `gla` package (dsl-examples/gla.tsl built over its head dims:
//! `--variant D=64,128 --variant E=64,128`; `tessel demo` builds it).
//!
//! S_t = diag(e^{g_t}) S_{t−1} + k_tᵀ v_t, o_t = τ q_t S_t. fla's layout: q, k and the log-space
//! forget gates g (≤ 0) are (B, N, H, D), v and o (B, N, H, E); states are f32 (B, H, D, E). q, k
//! and v share a dtype (the package's T, bf16); g is f32. The forward writes the state before
//! every 64-token chunk (f32, (B, H, ⌈N/64⌉, D, E)) in one pass over the chunks, then computes
//! every chunk's output in parallel from it, and returns the final state for decoding. The
//! backward (dq, dk, dv, dg, dh0, given dO and optionally the final state's gradient) is chunked
//! too: the chunk states again, their gradients in one pass backwards over the chunks, then every
//! chunk's dq, dk, dg and its dv in parallel (docs/kernels/gla.md).

use tessel_package::DType;

use crate::operand::{bad, expect, expect_rank, same_dtype, variant};
use crate::spec::gla as spec;
use crate::{Arg, Device, DeviceTensor, LoadedPackage, RuntimeError};

const OP_FWD: &str = "gla_forward";
const OP_DECODE: &str = spec::DECODE;
const OP_BWD: &str = "gla_backward";

/// The forward's outputs.
#[derive(Debug)]
pub struct GlaOutput {
    /// (B, N, H, E), like v.
    pub o: DeviceTensor,
    /// S_N, f32 (B, H, D, E): what [`gla_decode`] continues from.
    pub final_state: DeviceTensor,
}

struct Dims {
    dtype: DType,
    d: usize,
    e: usize,
}

/// Checks q, k, g (lead…, H, D) and v (lead…, H, E) against each other: `lead` is 2 for the
/// forward's (B, N) and 1 for decoding's (B). Head dims the package is not built for are refused
/// here, by name, rather than as a missing variant.
fn check(
    op: &'static str,
    [q, k, v, g]: [&DeviceTensor; 4],
    lead: usize,
) -> Result<Dims, RuntimeError> {
    let layout = if lead == 2 {
        "(B, N, H, dim)"
    } else {
        "(B, H, dim)"
    };
    for (name, t) in [("q", q), ("k", k), ("v", v), ("g", g)] {
        expect_rank(op, name, t, lead + 2, layout)?;
    }
    if q.shape != k.shape {
        let why = format!("q {:?} and k {:?} differ in shape", q.shape, k.shape);
        return Err(bad(op, why));
    }
    expect(op, "g", g, &q.shape, DType::F32)?;
    if v.shape[..=lead] != q.shape[..=lead] {
        let why = format!("v {:?} does not match q {:?}", v.shape, q.shape);
        return Err(bad(op, why));
    }
    let dtype = same_dtype(op, &[("q", q), ("k", k), ("v", v)])?;
    let (d, e) = (q.shape[lead + 1], v.shape[lead + 1]);
    for (name, dim) in [("D (q's last dimension)", d), ("E (v's last dimension)", e)] {
        if dim != 64 && dim != 128 {
            return Err(bad(
                op,
                format!("{name} is {dim}; the kernels take 64 or 128"),
            ));
        }
    }
    if q.shape.contains(&0) {
        return Err(bad(op, format!("q {:?} is empty", q.shape)));
    }
    Ok(Dims { dtype, d, e })
}

fn entry<'p>(pkg: &'p LoadedPackage, kernel: &str, dims: &Dims) -> Result<&'p str, RuntimeError> {
    let (d, e) = (dims.d.to_string(), dims.e.to_string());
    let consts = [
        ("D", d.as_str()),
        ("E", e.as_str()),
        ("T", dims.dtype.name()),
    ];
    variant(pkg, kernel, &consts)
}

/// τ: the caller's, or fla's default D^{−1/2}.
fn scale_for(scale: Option<f64>, d: usize) -> f64 {
    scale.unwrap_or(1.0 / (d as f64).sqrt())
}

/// O and the final state, from an optional initial state `h0` (f32 (B, H, D, E); `None` is
/// zero) and the scale τ (`None`: D^{−1/2}).
#[allow(clippy::too_many_arguments)]
pub fn gla_forward(
    dev: &Device,
    pkg: &LoadedPackage,
    q: &DeviceTensor,
    k: &DeviceTensor,
    v: &DeviceTensor,
    g: &DeviceTensor,
    h0: Option<&DeviceTensor>,
    scale: Option<f64>,
) -> Result<GlaOutput, RuntimeError> {
    let dims = check(OP_FWD, [q, k, v, g], 2)?;
    let [b, n, h] = [q.shape[0], q.shape[1], q.shape[2]];
    let state_shape = [b, h, dims.d, dims.e];
    let zeros;
    let h0 = match h0 {
        Some(t) => {
            expect(OP_FWD, "h0", t, &state_shape, DType::F32)?;
            t
        }
        None => {
            let data = vec![0.0; state_shape.iter().product()];
            zeros = DeviceTensor::from_f64(dev, DType::F32, &state_shape, &data)?;
            &zeros
        }
    };
    let state_kernel = entry(pkg, spec::FWD_STATE, &dims)?;
    let o_kernel = entry(pkg, spec::FWD_O, &dims)?;
    let chunks = n.div_ceil(spec::CHUNK);
    let hs = DeviceTensor::empty(dev, DType::F32, &[b, h, chunks, dims.d, dims.e])?;
    let final_state = DeviceTensor::empty(dev, DType::F32, &state_shape)?;
    let o = DeviceTensor::empty(dev, dims.dtype, &v.shape)?;
    pkg.launch_tensors(dev, state_kernel, &[k, v, g, h0, &hs, &final_state])?;
    let tau = scale_for(scale, dims.d);
    let args = [q, k, v, g, &hs, &o].map(Arg::Tensor);
    pkg.launch(dev, o_kernel, &[&args[..], &[Arg::Scalar(tau)]].concat())?;
    Ok(GlaOutput { o, final_state })
}

/// One generated token for every (sequence, head): q, k, g (B, H, D), v (B, H, E); advances
/// `state` (f32 (B, H, D, E)) in place, S ← diag(e^g) S + kᵀ v, and returns o = τ q S (B, H, E).
#[allow(clippy::too_many_arguments)]
pub fn gla_decode(
    dev: &Device,
    pkg: &LoadedPackage,
    q: &DeviceTensor,
    k: &DeviceTensor,
    v: &DeviceTensor,
    g: &DeviceTensor,
    state: &mut DeviceTensor,
    scale: Option<f64>,
) -> Result<DeviceTensor, RuntimeError> {
    let dims = check(OP_DECODE, [q, k, v, g], 1)?;
    let state_shape = [q.shape[0], q.shape[1], dims.d, dims.e];
    expect(OP_DECODE, "state", state, &state_shape, DType::F32)?;
    let step = entry(pkg, spec::DECODE, &dims)?;
    let o = DeviceTensor::empty(dev, dims.dtype, &v.shape)?;
    let tau = scale_for(scale, dims.d);
    let args = [
        Arg::Tensor(q),
        Arg::Tensor(k),
        Arg::Tensor(v),
        Arg::Tensor(g),
        Arg::Tensor(state),
        Arg::Tensor(&o),
        Arg::Scalar(tau),
    ];
    pkg.launch(dev, step, &args)?;
    Ok(o)
}

/// Launch arguments: `tensors` in order, then the scalar τ.
fn tensors_then<'t>(tensors: &[&'t DeviceTensor], tau: f64) -> Vec<Arg<'t>> {
    let mut args: Vec<Arg<'t>> = tensors.iter().map(|t| Arg::Tensor(t)).collect();
    args.push(Arg::Scalar(tau));
    args
}

/// Gradients of [`gla_forward`]'s inputs.
#[derive(Debug)]
pub struct GlaGrads {
    pub dq: DeviceTensor,
    pub dk: DeviceTensor,
    pub dv: DeviceTensor,
    /// f32, like g.
    pub dg: DeviceTensor,
    /// f32 (B, H, D, E).
    pub dh0: DeviceTensor,
}

/// A zero f32 state, for an initial state or a final-state gradient the caller leaves out.
fn zero_state(dev: &Device, shape: &[usize]) -> Result<DeviceTensor, RuntimeError> {
    let data = vec![0.0; shape.iter().product()];
    DeviceTensor::from_f64(dev, DType::F32, shape, &data)
}

/// The gradients given dO (like v) and `dht`, the gradient of the final state (`None`: zero).
/// `final_state` is the forward's (its [`GlaOutput::final_state`]; checked for shape, the
/// backward recomputes it with the chunk states); `h0` and `scale` as there.
#[allow(clippy::too_many_arguments)]
pub fn gla_backward(
    dev: &Device,
    pkg: &LoadedPackage,
    [q, k, v, g]: [&DeviceTensor; 4],
    h0: Option<&DeviceTensor>,
    final_state: &DeviceTensor,
    d_o: &DeviceTensor,
    dht: Option<&DeviceTensor>,
    scale: Option<f64>,
) -> Result<GlaGrads, RuntimeError> {
    let dims = check(OP_BWD, [q, k, v, g], 2)?;
    let [b, h] = [q.shape[0], q.shape[2]];
    let st = [b, h, dims.d, dims.e];
    expect(OP_BWD, "d_o", d_o, &v.shape, dims.dtype)?;
    expect(OP_BWD, "final_state", final_state, &st, DType::F32)?;
    let (zero_h0, zero_dht);
    let h0 = match h0 {
        Some(t) => {
            expect(OP_BWD, "h0", t, &st, DType::F32)?;
            t
        }
        None => {
            zero_h0 = zero_state(dev, &st)?;
            &zero_h0
        }
    };
    let dht = match dht {
        Some(t) => {
            expect(OP_BWD, "dht", t, &st, DType::F32)?;
            t
        }
        None => {
            zero_dht = zero_state(dev, &st)?;
            &zero_dht
        }
    };
    let kernels = [
        spec::FWD_STATE,
        spec::BWD_DSTATE,
        spec::BWD_DQK,
        spec::BWD_DV,
    ];
    let [state_k, dstate_k, dqk_k, dv_k] = kernels.map(|name| entry(pkg, name, &dims));
    let (state_k, dstate_k, dqk_k, dv_k) = (state_k?, dstate_k?, dqk_k?, dv_k?);
    let grads = GlaGrads {
        dq: DeviceTensor::empty(dev, dims.dtype, &q.shape)?,
        dk: DeviceTensor::empty(dev, dims.dtype, &k.shape)?,
        dv: DeviceTensor::empty(dev, dims.dtype, &v.shape)?,
        dg: DeviceTensor::empty(dev, DType::F32, &g.shape)?,
        dh0: DeviceTensor::empty(dev, DType::F32, &st)?,
    };
    // The chunk states again (and S_N with them, consistent with them), their gradients from
    // the end, then every chunk on its own.
    let chunks = [b, h, q.shape[1].div_ceil(spec::CHUNK), dims.d, dims.e];
    let hs = DeviceTensor::empty(dev, DType::F32, &chunks)?;
    let ht = DeviceTensor::empty(dev, DType::F32, &st)?;
    let dhs = DeviceTensor::empty(dev, DType::F32, &chunks)?;
    pkg.launch_tensors(dev, state_k, &[k, v, g, h0, &hs, &ht])?;
    let tau = scale_for(scale, dims.d);
    let dstate_tensors = [q, g, d_o, dht, &dhs, &grads.dh0];
    pkg.launch(dev, dstate_k, &tensors_then(&dstate_tensors, tau))?;
    let dqk_tensors = [
        q, k, v, g, &hs, &ht, d_o, &dhs, &grads.dq, &grads.dk, &grads.dg,
    ];
    pkg.launch(dev, dqk_k, &tensors_then(&dqk_tensors, tau))?;
    let dv_tensors = [q, k, g, d_o, &dhs, &grads.dv];
    pkg.launch(dev, dv_k, &tensors_then(&dv_tensors, tau))?;
    Ok(grads)
}
