//! TMA tensor maps on the device side: the driver's `cuTensorMapEncodeTiled`, called with what
//! the manifest check computed ([`tessel_package::tensor_map::encoding`], where every refusal
//! happens, before the GPU is touched), and the 128 bytes it fills, passed by value at launch.

use cudarc::driver::sys;
use tessel_package::{DType, TensorMapEncoding};

use crate::RuntimeError;

/// An encoded tensor map: the kernel parameter `.param .align 64 .b8 [128]`.
#[repr(C, align(64))]
#[derive(Clone, Copy)]
pub struct TensorMapParam(pub [u64; 16]);

// SAFETY: 128 plain bytes, 64-aligned: the layout of the PTX parameter it is copied into.
unsafe impl cudarc::driver::DeviceRepr for TensorMapParam {}

/// The driver's element type for `d` (only 16-bit operands go by TMA today; the others are
/// listed so that a manifest naming them is encoded, not refused).
fn data_type(d: DType) -> sys::CUtensorMapDataType {
    use sys::CUtensorMapDataType::*;
    match d {
        DType::Bf16 => CU_TENSOR_MAP_DATA_TYPE_BFLOAT16,
        DType::F16 => CU_TENSOR_MAP_DATA_TYPE_FLOAT16,
        DType::F32 => CU_TENSOR_MAP_DATA_TYPE_FLOAT32,
        DType::I32 => CU_TENSOR_MAP_DATA_TYPE_INT32,
        DType::Bool => CU_TENSOR_MAP_DATA_TYPE_UINT8,
    }
}

fn swizzle(bytes: u32) -> sys::CUtensorMapSwizzle {
    use sys::CUtensorMapSwizzle::*;
    match bytes {
        128 => CU_TENSOR_MAP_SWIZZLE_128B,
        64 => CU_TENSOR_MAP_SWIZZLE_64B,
        32 => CU_TENSOR_MAP_SWIZZLE_32B,
        _ => CU_TENSOR_MAP_SWIZZLE_NONE,
    }
}

/// Encodes `e` with the driver: tiled, no interleave, L2 promotion of 128 bytes, and
/// out-of-bounds elements read as zeros (`FLOAT_OOB_FILL_NONE`), which is what a load means
/// past a tensor's edge.
pub fn encode(e: &TensorMapEncoding) -> Result<TensorMapParam, RuntimeError> {
    let mut map = std::mem::MaybeUninit::<sys::CUtensorMap>::zeroed();
    let element_strides = [1u32; 5];
    // SAFETY: the arrays hold `rank` valid entries each (the check bounded rank by 5 and every
    // entry by the driver's limits); `map` is a writable CUtensorMap.
    let r = unsafe {
        sys::cuTensorMapEncodeTiled(
            map.as_mut_ptr(),
            data_type(e.dtype),
            e.rank,
            e.address as *mut std::ffi::c_void,
            e.dims.as_ptr(),
            e.strides.as_ptr(),
            e.box_dims.as_ptr(),
            element_strides.as_ptr(),
            sys::CUtensorMapInterleave::CU_TENSOR_MAP_INTERLEAVE_NONE,
            swizzle(e.swizzle),
            sys::CUtensorMapL2promotion::CU_TENSOR_MAP_L2_PROMOTION_L2_128B,
            sys::CUtensorMapFloatOOBfill::CU_TENSOR_MAP_FLOAT_OOB_FILL_NONE,
        )
    };
    r.result()
        .map_err(RuntimeError::driver("cuTensorMapEncodeTiled"))?;
    // SAFETY: the driver filled it.
    let map = unsafe { map.assume_init() };
    let mut out = TensorMapParam([0; 16]);
    // The driver's struct is 128 opaque bytes (its alignment differs between CUDA versions).
    // SAFETY: both are 128 bytes of plain data.
    unsafe {
        std::ptr::copy_nonoverlapping(
            (&map as *const sys::CUtensorMap).cast::<u8>(),
            out.0.as_mut_ptr().cast::<u8>(),
            128,
        );
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_parameter_is_the_ptx_parameter_and_the_driver_struct() {
        assert_eq!(std::mem::size_of::<TensorMapParam>(), 128);
        assert_eq!(std::mem::align_of::<TensorMapParam>(), 64);
        assert_eq!(std::mem::size_of::<sys::CUtensorMap>(), 128);
        assert_eq!(
            swizzle(64),
            sys::CUtensorMapSwizzle::CU_TENSOR_MAP_SWIZZLE_64B
        );
        assert_eq!(
            data_type(DType::Bf16),
            sys::CUtensorMapDataType::CU_TENSOR_MAP_DATA_TYPE_BFLOAT16
        );
    }
}
