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
//!
//! The kernels cut the sequence into S segments of whole 64-token blocks so that many programs
//! share a head (one head of 64k tokens would otherwise be one program walking 1024 blocks), and
//! give each program a 64-wide tile of the state: a first pass writes each segment's own f32 state
//! (B, H, S, D, E), the second starts every segment from the sum of the earlier ones.
//! [`segments_for`] picks S; [`LightningOptions`] can fix it.

use tessel_package::DType;

use crate::operand::{bad, expect, expect_rank, same_dtype, variant};
use crate::spec::lightning as spec;
use crate::{Device, DeviceTensor, LoadedPackage, RuntimeError};

const OP_FWD: &str = "lightning_attention_forward";
const OP_BWD: &str = "lightning_attention_backward";
const OP_DECODE: &str = spec::DECODE;
pub use crate::spec::lightning::BLOCK;

/// How the operators split the sequence.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LightningOptions {
    /// Sequence segments per (batch, head); `None` takes [`segments_for`]'s choice. Any value
    /// from 1 up works (segments past the end of the sequence are empty and cost one program).
    pub segments: Option<usize>,
}

/// Segments per (batch, head) when one segment of every (batch, head) launches `per_segment`
/// programs (B·H times the kernel's state tiles) and the machine holds `slots` at once (SMs ×
/// programs resident per SM): as many as fill one wave, but at least 4 blocks of `n` tokens per
/// segment. Not more: every segment adds a state written and read back and a prologue over the
/// earlier states, and a second, partial wave leaves SMs idle. Measured on the H200 at D = E =
/// 128 (bench/lightning.py --sweep-segments, 2026-12-03): the count this picks was the fastest
/// measured at N = 4k, 16k and 64k, forward and backward; the previous rule (two waves) was 19 %
/// slower forward and 20 % forward+backward at B = 1, N = 64k.
pub fn segments_for(slots: usize, per_segment: usize, n: usize) -> usize {
    let blocks = n.div_ceil(BLOCK);
    (slots / per_segment.max(1)).min(blocks / 4).max(1)
}

/// S for a pass whose programs per segment and residency are those of `kernel` (the forward's
/// kernel; dV's for the backward), or the caller's.
fn segments(
    op: &'static str,
    dev: &Device,
    pkg: &LoadedPackage,
    kernel: &str,
    opts: &LightningOptions,
    q: &DeviceTensor,
) -> Result<usize, RuntimeError> {
    let [b, h, n] = [q.shape[0], q.shape[1], q.shape[2]];
    match opts.segments {
        Some(0) => Err(bad(op, "segments must be at least 1".to_string())),
        Some(s) => Ok(s),
        None => {
            let slots = dev.multiprocessors()? * pkg.resident_blocks(dev, kernel)? as usize;
            // The kernel's grid with one segment: its programs per segment.
            let entry = pkg.entry(kernel)?;
            let sym = |name: &str| match name {
                "B" => Some(b as i64),
                "H" => Some(h as i64),
                "N" => Some(n as i64),
                "S" => Some(1),
                _ => None,
            };
            let per_segment = entry
                .launch
                .grid
                .iter()
                .map(|g| g.eval(&sym).and_then(|v| usize::try_from(v).ok()))
                .product::<Option<usize>>()
                .ok_or_else(|| {
                    bad(
                        op,
                        format!("the grid of `{kernel}` depends on more than B, H, N, S"),
                    )
                })?;
            Ok(segments_for(slots, per_segment, n))
        }
    }
}

/// The segment-state pass: `kernel` (`lightning_attention_segment_state` over k, v or
/// `lightning_attention_segment_dstate` over q, dO) into a fresh (B, H, S, D, E) f32 tensor.
fn segment_pass(
    dev: &Device,
    pkg: &LoadedPackage,
    kernel: &str,
    [x, y]: [&DeviceTensor; 2],
    slopes: &DeviceTensor,
    dims: &Dims,
    s: usize,
) -> Result<DeviceTensor, RuntimeError> {
    let seg = DeviceTensor::empty(
        dev,
        DType::F32,
        &[x.shape[0], x.shape[1], s, dims.d, dims.e],
    )?;
    let name = entry(pkg, kernel, dims)?;
    pkg.launch_tensors(dev, name, &[x, y, slopes, &seg])?;
    Ok(seg)
}

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
    lightning_attention_forward_into(dev, pkg, q, k, v, slopes, &o, &LightningOptions::default())?;
    Ok(o)
}

/// [`lightning_attention_forward`] into a caller-owned O (like v).
#[allow(clippy::too_many_arguments)]
pub fn lightning_attention_forward_into(
    dev: &Device,
    pkg: &LoadedPackage,
    q: &DeviceTensor,
    k: &DeviceTensor,
    v: &DeviceTensor,
    slopes: &DeviceTensor,
    o: &DeviceTensor,
    opts: &LightningOptions,
) -> Result<(), RuntimeError> {
    forward(dev, pkg, q, k, v, slopes, o, opts).map(drop)
}

/// The forward; returns the segment states (what the prefill combines into the final state).
#[allow(clippy::too_many_arguments)]
fn forward(
    dev: &Device,
    pkg: &LoadedPackage,
    q: &DeviceTensor,
    k: &DeviceTensor,
    v: &DeviceTensor,
    slopes: &DeviceTensor,
    o: &DeviceTensor,
    opts: &LightningOptions,
) -> Result<DeviceTensor, RuntimeError> {
    let dims = check(OP_FWD, q, k, v, slopes, 3)?;
    expect(OP_FWD, "o", o, &v.shape, dims.dtype)?;
    let fwd = entry(pkg, spec::FWD, &dims)?;
    let s = segments(OP_FWD, dev, pkg, fwd, opts, q)?;
    let seg = segment_pass(dev, pkg, spec::SEGMENT_STATE, [k, v], slopes, &dims, s)?;
    pkg.launch_tensors(dev, fwd, &[q, k, v, slopes, &seg, o])?;
    Ok(seg)
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
    let state_kernel = entry(pkg, spec::STATE, &dims)?;
    let o = DeviceTensor::empty(dev, dims.dtype, &v.shape)?;
    let seg = forward(dev, pkg, q, k, v, slopes, &o, &LightningOptions::default())?;
    let state = DeviceTensor::empty(dev, DType::F32, &[q.shape[0], q.shape[1], dims.d, dims.e])?;
    pkg.launch_tensors(dev, state_kernel, &[k, slopes, &seg, &state])?;
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
    let step = entry(pkg, spec::DECODE, &dims)?;
    let o = DeviceTensor::empty(dev, dims.dtype, &v.shape)?;
    pkg.launch_tensors(dev, step, &[q, k, v, slopes, state, &o])?;
    Ok(o)
}

/// dQ, dK, dV of [`lightning_attention_forward`] given dO (B, H, N, E): a forward sweep for dQ
/// and reverse sweeps (the state carried backwards) for dK and dV, each over segments started
/// from their own segment-state pass.
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
    lightning_attention_backward_into(
        dev,
        pkg,
        q,
        k,
        v,
        slopes,
        d_o,
        &grads,
        &LightningOptions::default(),
    )?;
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
    opts: &LightningOptions,
) -> Result<(), RuntimeError> {
    let dims = check(OP_BWD, q, k, v, slopes, 3)?;
    expect(OP_BWD, "d_o", d_o, &v.shape, dims.dtype)?;
    expect(OP_BWD, "dq", &grads.dq, &q.shape, dims.dtype)?;
    expect(OP_BWD, "dk", &grads.dk, &k.shape, dims.dtype)?;
    expect(OP_BWD, "dv", &grads.dv, &v.shape, dims.dtype)?;
    let dq_kernel = entry(pkg, spec::BWD_DQ, &dims)?;
    let dk_kernel = entry(pkg, spec::BWD_DK, &dims)?;
    let dv_kernel = entry(pkg, spec::BWD_DV, &dims)?;
    let s = segments(OP_BWD, dev, pkg, dv_kernel, opts, q)?;
    let seg = segment_pass(dev, pkg, spec::SEGMENT_STATE, [k, v], slopes, &dims, s)?;
    let dseg = segment_pass(dev, pkg, spec::SEGMENT_DSTATE, [q, d_o], slopes, &dims, s)?;
    pkg.launch_tensors(dev, dq_kernel, &[k, v, d_o, slopes, &seg, &grads.dq])?;
    pkg.launch_tensors(dev, dk_kernel, &[q, v, d_o, slopes, &dseg, &grads.dk])?;
    pkg.launch_tensors(dev, dv_kernel, &[q, k, d_o, slopes, &dseg, &grads.dv])?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::segments_for;

    #[test]
    fn segment_counts_fill_one_wave_without_tiny_segments() {
        // 132 SMs × 2 programs; one head of 64k tokens in 2 state tiles × 16 heads: 8 segments
        // (256 programs), not 9 (288: a second wave of 24).
        assert_eq!(segments_for(264, 32, 65536), 8);
        assert_eq!(segments_for(264, 128, 16384), 2);
        // Enough heads already: one segment each.
        assert_eq!(segments_for(264, 512, 4096), 1);
        // Never fewer than 4 blocks a segment, never zero segments.
        assert_eq!(segments_for(264, 1, 64 * 7), 1);
        assert_eq!(segments_for(264, 1, 64 * 40), 10);
        assert_eq!(segments_for(264, 1, 1), 1);
        assert_eq!(segments_for(0, 0, 0), 1);
        for n in [1, 63, 64, 1000, 8192, 65536, 1 << 20] {
            for per in [1, 2, 16, 1024] {
                let s = segments_for(264, per, n);
                assert!(
                    s >= 1 && (s == 1 || (n.div_ceil(64) / s >= 4 && s * per <= 264)),
                    "n={n} per={per}: {s}"
                );
            }
        }
    }
}
