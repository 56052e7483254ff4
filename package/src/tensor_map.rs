//! TMA tensor maps: what `cuTensorMapEncodeTiled` is called with for one launch, computed from a
//! manifest's tensor-map parameter and the tensor passed, and checked before any driver call.
//!
//! A pure function, so every refusal is testable without a GPU; the runtime hands the result to
//! the driver unchanged. The map's dimensions are the tensor's true extents (so boxes past an
//! edge are zero-filled by the hardware), innermost first, as TMA numbers them; its strides are
//! the byte strides of every dimension but the innermost, which must be contiguous.

use crate::launch::LaunchError;
use crate::manifest::{DType, ParamSpec};

/// Most dimensions of a tensor map.
pub const MAX_RANK: usize = 5;
/// Most elements of a box along one dimension.
pub const MAX_BOX: u32 = 256;
/// Alignment of a tensor map's base address and of each of its byte strides.
pub const ALIGN: u64 = 16;
/// Strides and extents must stay below these (the driver's limits).
pub const MAX_STRIDE: u64 = 1 << 40;
pub const MAX_DIM: u64 = 1 << 32;

/// What a tensor passed through a TMA tensor map must satisfy: recorded in the manifest with
/// each tensor-map parameter and quoted by every refusal.
pub const REQUIREMENT: &str = "base address 16-byte aligned, unit stride along the last \
    dimension, every other stride a multiple of 16 bytes (below 2^40), every dimension from 1 \
    to 2^32, at most 5 dimensions, each box at most 256 elements per dimension";

/// The arguments of `cuTensorMapEncodeTiled` for one launch (entries past `rank` are unused).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TensorMapEncoding {
    pub dtype: DType,
    pub rank: u32,
    pub address: u64,
    /// Extents, innermost first.
    pub dims: [u64; MAX_RANK],
    /// Byte strides of dimensions 1.. (innermost first; dimension 0 is contiguous).
    pub strides: [u64; MAX_RANK - 1],
    pub box_dims: [u32; MAX_RANK],
    /// Swizzle span in bytes: 0 (none), 32, 64 or 128.
    pub swizzle: u32,
}

/// The encoding of tensor-map parameter `spec` for tensor `shape` / `strides` (in elements) at
/// `address`, or why that tensor cannot be copied through it.
pub fn encoding(
    spec: &ParamSpec,
    dtype: DType,
    shape: &[usize],
    strides: &[usize],
    address: u64,
) -> Result<TensorMapEncoding, LaunchError> {
    let ParamSpec::TensorMap {
        name,
        tensor,
        dtype: want,
        box_dims,
        swizzle,
        ..
    } = spec
    else {
        unreachable!("called for tensor-map parameters")
    };
    let refuse = |reason: String| LaunchError::TensorMap {
        param: name.clone(),
        tensor: tensor.clone(),
        reason,
        requirement: REQUIREMENT,
    };
    let rank = shape.len();
    if dtype != *want {
        return Err(refuse(format!("the tensor is {dtype}, the map {want}")));
    }
    if rank == 0 || rank > MAX_RANK || strides.len() != rank || box_dims.len() != rank {
        return Err(refuse(format!(
            "{rank} dimensions for a box of {}",
            box_dims.len()
        )));
    }
    if !address.is_multiple_of(ALIGN) {
        return Err(refuse(format!(
            "its address {address:#x} is not 16-byte aligned"
        )));
    }
    if strides[rank - 1] != 1 && shape[rank - 1] > 1 {
        return Err(refuse(format!(
            "its last dimension has stride {}, not 1",
            strides[rank - 1]
        )));
    }
    if !matches!(swizzle, 0 | 32 | 64 | 128) {
        return Err(refuse(format!("a {swizzle}-byte swizzle")));
    }
    let mut e = TensorMapEncoding {
        dtype,
        rank: rank as u32,
        address,
        dims: [1; MAX_RANK],
        strides: [0; MAX_RANK - 1],
        box_dims: [1; MAX_RANK],
        swizzle: *swizzle,
    };
    for (i, &b) in box_dims.iter().enumerate() {
        // TMA's dimension i is the tensor's axis rank - 1 - i.
        let axis = rank - 1 - i;
        let n = shape[axis] as u64;
        if n == 0 || n > MAX_DIM {
            return Err(refuse(format!("dimension {axis} is {n}")));
        }
        e.dims[i] = n;
        if b == 0 || b > MAX_BOX {
            return Err(refuse(format!("a box of {b} along dimension {axis}")));
        }
        e.box_dims[i] = b;
        if i > 0 {
            let bytes = (strides[axis] * dtype.size()) as u64;
            if !bytes.is_multiple_of(ALIGN) || bytes >= MAX_STRIDE {
                return Err(refuse(format!(
                    "stride {axis} is {bytes} bytes, not a multiple of 16"
                )));
            }
            e.strides[i - 1] = bytes;
        }
    }
    // The innermost box row is what the swizzle permutes: it must be the swizzle span or less.
    let row = box_dims[0] as usize * dtype.size();
    if *swizzle != 0 && row > *swizzle as usize {
        return Err(refuse(format!(
            "box rows of {row} bytes under a {swizzle}-byte swizzle"
        )));
    }
    Ok(e)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(box_dims: &[u32], swizzle: u32) -> ParamSpec {
        ParamSpec::TensorMap {
            name: "a_tmap".into(),
            tensor: "a".into(),
            dtype: DType::Bf16,
            box_dims: box_dims.to_vec(),
            swizzle,
            requires: REQUIREMENT.into(),
        }
    }

    #[test]
    fn a_row_major_matrix_is_described_innermost_first_in_bytes() {
        // A 300 x 136 bf16 matrix, boxes of 64 columns x 128 rows: dims {136, 300}, the row
        // stride 272 bytes, the box as given.
        let e = encoding(
            &spec(&[64, 128], 128),
            DType::Bf16,
            &[300, 136],
            &[136, 1],
            0x1000,
        )
        .unwrap();
        assert_eq!(e.rank, 2);
        assert_eq!(&e.dims[..2], &[136, 300]);
        assert_eq!(e.strides[0], 272);
        assert_eq!(&e.box_dims[..2], &[64, 128]);
        assert_eq!(e.swizzle, 128);
        assert_eq!(e.address, 0x1000);
        // A strided view (rows 512 elements apart) keeps its true extents: TMA zero-fills past
        // them, and the stride is the view's.
        let e = encoding(
            &spec(&[64, 128], 128),
            DType::Bf16,
            &[300, 136],
            &[512, 1],
            0x1000,
        )
        .unwrap();
        assert_eq!((e.dims[0], e.strides[0]), (136, 1024));
    }

    #[test]
    fn indexed_axes_are_unit_boxes_and_every_stride_is_carried() {
        // [B, M, H, K] with box {64, 1, 128, 1}: K, H, M, B innermost first.
        let shape = [2, 100, 3, 64];
        let strides = crate::dense_strides(&shape);
        let e = encoding(
            &spec(&[64, 1, 128, 1], 128),
            DType::Bf16,
            &shape,
            &strides,
            0,
        )
        .unwrap();
        assert_eq!(&e.dims[..4], &[64, 3, 100, 2]);
        assert_eq!(&e.strides[..3], &[128, 384, 38400]);
        assert_eq!(&e.box_dims[..4], &[64, 1, 128, 1]);
    }

    #[test]
    fn tensors_tma_cannot_read_are_refused_with_the_requirement() {
        let s = spec(&[64, 128], 128);
        let refused = |shape: &[usize], strides: &[usize], addr: u64, why: &str| {
            let e = encoding(&s, DType::Bf16, shape, strides, addr).unwrap_err();
            let text = e.to_string();
            assert!(text.contains(why), "{text}");
            assert!(text.contains("16-byte aligned"), "{text}");
        };
        // K = 100: rows 200 bytes apart.
        refused(&[64, 100], &[100, 1], 0, "stride 0 is 200 bytes");
        refused(&[64, 128], &[128, 1], 8, "not 16-byte aligned");
        refused(&[64, 128], &[1, 64], 0, "stride 64, not 1");
        refused(&[0, 128], &[128, 1], 0, "dimension 0 is 0");
        refused(&[64, 128, 1], &[128, 1, 1], 0, "3 dimensions");
        let e = encoding(&s, DType::F16, &[64, 128], &[128, 1], 0).unwrap_err();
        assert!(e.to_string().contains("the tensor is f16"));
        // Boxes past the limits, or wider than the swizzle span, are a broken manifest.
        let big = spec(&[64, 512], 128);
        assert!(encoding(&big, DType::Bf16, &[64, 128], &[128, 1], 0).is_err());
        let wide = spec(&[128, 64], 128);
        assert!(encoding(&wide, DType::Bf16, &[64, 128], &[128, 1], 0).is_err());
    }
}
