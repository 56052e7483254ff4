//! FLASH mixed-chunk attention with GAU's output gate (Hua et al. 2022), forward, over device
//! tensors, from the kernels of the `flash_gau` package (dsl-examples/flash_gau.tsl built over
//! `--variant E=64,128 --variant CAUSAL=false,true`; `tessel demo` builds it).
//!
//! z is (B, N, 128) (the shared Z of the four offset/scale heads), γ and β f32 (4, 128) (quad
//! query, quad key, lin query, lin key), v and u (B, N, E) with E 64 or 128; o = u ⊙ (quad + lin)
//! (B, N, E), chunks of 256 tokens, the last one ragged. A first pass writes the linear part's
//! state before every chunk and over the whole sequence (f32); the second computes every query
//! block's output from it. The backward (dz, dγ, dβ, dv, du given dO) runs five passes.

use tessel_package::DType;

use crate::operand::{bad, expect, expect_rank, same_dtype, variant};
use crate::spec::flash_gau as spec;
use crate::{Arg, Device, DeviceTensor, LoadedPackage, RuntimeError};

const OP: &str = "flash_gau_forward";
const OP_BWD: &str = "flash_gau_backward";

/// Checks z, γ, β, v, u against each other; returns (dtype, E).
fn check(
    op: &'static str,
    [z, gamma, beta, v, u]: [&DeviceTensor; 5],
) -> Result<(DType, usize), RuntimeError> {
    expect_rank(op, "z", z, 3, "(B, N, S)")?;
    expect_rank(op, "v", v, 3, "(B, N, E)")?;
    let [b, n, s] = [z.shape[0], z.shape[1], z.shape[2]];
    if s != spec::S {
        return Err(bad(
            op,
            format!("z's width S is {s}; the kernels take {}", spec::S),
        ));
    }
    if n == 0 || b == 0 {
        return Err(bad(op, format!("z {:?} is empty", z.shape)));
    }
    let e = v.shape[2];
    if v.shape[..2] != z.shape[..2] || (e != 64 && e != 128) {
        let why = format!(
            "v {:?} must be (B, N, 64 or 128) with z {:?}",
            v.shape, z.shape
        );
        return Err(bad(op, why));
    }
    expect(op, "u", u, &v.shape, v.dtype)?;
    let dtype = same_dtype(op, &[("z", z), ("v", v), ("u", u)])?;
    expect(op, "gamma", gamma, &[4, s], DType::F32)?;
    expect(op, "beta", beta, &[4, s], DType::F32)?;
    Ok((dtype, e))
}

/// Linear-part states over the chunks: `chunk` (the forward's or the backward's per-chunk state
/// kernel, already looked up) writes each chunk's own state, then the scan makes them exclusive
/// sums over the chunks before (`reverse` false) or after each, in place, and adds the total.
fn chunk_states(
    dev: &Device,
    pkg: &LoadedPackage,
    (chunk, scan): (&str, &str),
    inputs: &[&DeviceTensor],
    [b, n, s, e]: [usize; 4],
    reverse: bool,
) -> Result<(DeviceTensor, DeviceTensor), RuntimeError> {
    let states = DeviceTensor::empty(dev, DType::F32, &[b, n.div_ceil(spec::CHUNK), s, e])?;
    let total = DeviceTensor::empty(dev, DType::F32, &[b, s, e])?;
    let mut args: Vec<Arg> = inputs.iter().map(|t| Arg::Tensor(t)).collect();
    args.push(Arg::Tensor(&states));
    pkg.launch(dev, chunk, &args)?;
    let scan_args = [
        Arg::Tensor(&states),
        Arg::Tensor(&total),
        Arg::Scalar(f64::from(u8::from(reverse))),
    ];
    pkg.launch(dev, scan, &scan_args)?;
    Ok((states, total))
}

/// The package entries of a state pass (`chunk`: the forward's or the backward's per-chunk
/// kernel) and of the scan that follows it, for head width `e`.
fn state_kernels<'p>(
    pkg: &'p LoadedPackage,
    chunk: &str,
    e: &str,
    dtype: DType,
) -> Result<(&'p str, &'p str), RuntimeError> {
    Ok((
        variant(pkg, chunk, &[("E", e), ("T", dtype.name())])?,
        variant(pkg, spec::STATE_SCAN, &[("E", e)])?,
    ))
}

/// O (B, N, E).
#[allow(clippy::too_many_arguments)]
pub fn flash_gau_forward(
    dev: &Device,
    pkg: &LoadedPackage,
    z: &DeviceTensor,
    gamma: &DeviceTensor,
    beta: &DeviceTensor,
    v: &DeviceTensor,
    u: &DeviceTensor,
    causal: bool,
) -> Result<DeviceTensor, RuntimeError> {
    let (dtype, e) = check(OP, [z, gamma, beta, v, u])?;
    let (es, c) = (e.to_string(), causal.to_string());
    let consts = [
        ("E", es.as_str()),
        ("CAUSAL", c.as_str()),
        ("T", dtype.name()),
    ];
    let fwd = variant(pkg, spec::FWD, &consts)?;
    let passes = state_kernels(pkg, spec::CHUNK_STATE, &es, dtype)?;
    let dims = [z.shape[0], z.shape[1], z.shape[2], e];
    let (prefix, total) = chunk_states(dev, pkg, passes, &[z, gamma, beta, v], dims, false)?;
    let o = DeviceTensor::empty(dev, dtype, &v.shape)?;
    pkg.launch_tensors(dev, fwd, &[z, gamma, beta, v, u, &prefix, &total, &o])?;
    Ok(o)
}

/// Gradients of [`flash_gau_forward`]'s inputs.
#[derive(Debug)]
pub struct FlashGauGrads {
    pub dz: DeviceTensor,
    /// f32 (4, S).
    pub dgamma: DeviceTensor,
    /// f32 (4, S).
    pub dbeta: DeviceTensor,
    pub dv: DeviceTensor,
    pub du: DeviceTensor,
}

/// The gradients given dO (like v).
#[allow(clippy::too_many_arguments)]
pub fn flash_gau_backward(
    dev: &Device,
    pkg: &LoadedPackage,
    [z, gamma, beta, v, u]: [&DeviceTensor; 5],
    d_o: &DeviceTensor,
    causal: bool,
) -> Result<FlashGauGrads, RuntimeError> {
    let (dtype, e) = check(OP_BWD, [z, gamma, beta, v, u])?;
    expect(OP_BWD, "d_o", d_o, &v.shape, dtype)?;
    let [b, n, s] = [z.shape[0], z.shape[1], z.shape[2]];
    let (es, c) = (e.to_string(), causal.to_string());
    let t = dtype.name();
    let with_causal = [("E", es.as_str()), ("CAUSAL", c.as_str()), ("T", t)];
    let fwd_passes = state_kernels(pkg, spec::CHUNK_STATE, &es, dtype)?;
    let bwd_passes = state_kernels(pkg, spec::BWD_CHUNK_STATE, &es, dtype)?;
    let kv = variant(pkg, spec::BWD_KV, &with_causal)?;
    let q = variant(pkg, spec::BWD_Q, &with_causal)?;
    let zk = variant(pkg, spec::BWD_Z, &[("T", t)])?;
    let params = variant(pkg, spec::BWD_PARAMS, &[])?;
    let dims = [b, n, s, e];
    let (prefix, total) = chunk_states(dev, pkg, fwd_passes, &[z, gamma, beta, v], dims, false)?;
    let bwd_inputs = [z, gamma, beta, u, d_o];
    let (dsuffix, dtotal) = chunk_states(dev, pkg, bwd_passes, &bwd_inputs, dims, true)?;
    let f32_bns = || DeviceTensor::empty(dev, DType::F32, &[b, n, s]);
    let (dkq, dkl, dqq, dql) = (f32_bns()?, f32_bns()?, f32_bns()?, f32_bns()?);
    let grads = FlashGauGrads {
        dz: DeviceTensor::empty(dev, dtype, &z.shape)?,
        dgamma: DeviceTensor::empty(dev, DType::F32, &[4, s])?,
        dbeta: DeviceTensor::empty(dev, DType::F32, &[4, s])?,
        dv: DeviceTensor::empty(dev, dtype, &v.shape)?,
        du: DeviceTensor::empty(dev, dtype, &u.shape)?,
    };
    let common = [z, gamma, beta, v, u, d_o];
    let kv_args = [&dsuffix, &dtotal, &grads.dv, &dkq, &dkl];
    let args: Vec<&DeviceTensor> = common.iter().copied().chain(kv_args).collect();
    pkg.launch_tensors(dev, kv, &args)?;
    let q_args = [&prefix, &total, &grads.du, &dqq, &dql];
    let args: Vec<&DeviceTensor> = common.iter().copied().chain(q_args).collect();
    pkg.launch_tensors(dev, q, &args)?;
    let nb = n.div_ceil(spec::BLOCK);
    let dgp = DeviceTensor::empty(dev, DType::F32, &[b, nb, 4, s])?;
    let dbp = DeviceTensor::empty(dev, DType::F32, &[b, nb, 4, s])?;
    let z_args = [z, gamma, &dqq, &dkq, &dql, &dkl, &grads.dz, &dgp, &dbp];
    pkg.launch_tensors(dev, zk, &z_args)?;
    pkg.launch_tensors(dev, params, &[&dgp, &dbp, &grads.dgamma, &grads.dbeta])?;
    Ok(grads)
}
