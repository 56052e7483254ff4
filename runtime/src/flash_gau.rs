//! FLASH mixed-chunk attention with GAU's output gate (Hua et al. 2022), forward, over device
//! tensors, from the kernels of the `flash_gau` package (dsl-examples/flash_gau.tsl built over
//! `--variant E=64,128 --variant CAUSAL=false,true`; `tessel demo` builds it).
//!
//! z is (B, N, 128) (the shared Z of the four offset/scale heads), γ and β f32 (4, 128) (quad
//! query, quad key, lin query, lin key), v and u (B, N, E) with E 64 or 128; o = u ⊙ (quad + lin)
//! (B, N, E), chunks of 256 tokens, the last one ragged. A first pass writes the linear part's
//! state before every chunk and over the whole sequence (f32); the second computes every query
//! block's output from it.

use tessel_package::DType;

use crate::operand::{bad, expect, expect_rank, same_dtype, variant};
use crate::spec::flash_gau as spec;
use crate::{Device, DeviceTensor, LoadedPackage, RuntimeError};

const OP: &str = "flash_gau_forward";

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
    expect_rank(OP, "z", z, 3, "(B, N, S)")?;
    expect_rank(OP, "v", v, 3, "(B, N, E)")?;
    let [b, n, s] = [z.shape[0], z.shape[1], z.shape[2]];
    if s != spec::S {
        return Err(bad(
            OP,
            format!("z's width S is {s}; the kernels take {}", spec::S),
        ));
    }
    if n == 0 || b == 0 {
        return Err(bad(OP, format!("z {:?} is empty", z.shape)));
    }
    let e = v.shape[2];
    if v.shape[..2] != z.shape[..2] || (e != 64 && e != 128) {
        let why = format!(
            "v {:?} must be (B, N, 64 or 128) with z {:?}",
            v.shape, z.shape
        );
        return Err(bad(OP, why));
    }
    expect(OP, "u", u, &v.shape, v.dtype)?;
    let dtype = same_dtype(OP, &[("z", z), ("v", v), ("u", u)])?;
    expect(OP, "gamma", gamma, &[4, s], DType::F32)?;
    expect(OP, "beta", beta, &[4, s], DType::F32)?;
    let (es, c) = (e.to_string(), causal.to_string());
    let state = variant(pkg, spec::LIN_STATE, &[("E", &es), ("T", dtype.name())])?;
    let consts = [
        ("E", es.as_str()),
        ("CAUSAL", c.as_str()),
        ("T", dtype.name()),
    ];
    let fwd = variant(pkg, spec::FWD, &consts)?;
    let prefix = DeviceTensor::empty(dev, DType::F32, &[b, n.div_ceil(spec::CHUNK), s, e])?;
    let total = DeviceTensor::empty(dev, DType::F32, &[b, s, e])?;
    let o = DeviceTensor::empty(dev, dtype, &v.shape)?;
    pkg.launch_tensors(dev, state, &[z, gamma, beta, v, &prefix, &total])?;
    pkg.launch_tensors(dev, fwd, &[z, gamma, beta, v, u, &prefix, &total, &o])?;
    Ok(o)
}
