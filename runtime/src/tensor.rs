//! Tensors in device memory: element type, shape, strides, and a pooled buffer.

use half::{bf16, f16};
use tessel_package::{dense_strides, DType};

use crate::memory::Buffer;
use crate::{Device, RuntimeError};

#[derive(Debug)]
pub struct DeviceTensor {
    pub dtype: DType,
    pub shape: Vec<usize>,
    /// Element strides (dense row-major for tensors the runtime creates).
    pub strides: Vec<usize>,
    buffer: Buffer,
}

/// A view into a [`DeviceTensor`]'s memory ([`DeviceTensor::view`], dense;
/// [`DeviceTensor::strided_view`]); it borrows the tensor, so the memory outlives every launch
/// made with it.
#[derive(Debug, Clone, Copy)]
pub struct TensorView<'t> {
    pub dtype: DType,
    pub shape: &'t [usize],
    /// Element strides; None is dense row-major.
    pub strides: Option<&'t [usize]>,
    pub(crate) ptr: u64,
    _tensor: std::marker::PhantomData<&'t DeviceTensor>,
}

/// One past the last byte a view of `shape` and `strides` at `byte_offset` reaches (None on
/// overflow): what must lie inside the buffer.
fn strided_view_end(
    byte_offset: usize,
    dtype: DType,
    shape: &[usize],
    strides: &[usize],
) -> Option<usize> {
    let mut last = 0usize;
    for (&n, &s) in shape.iter().zip(strides) {
        if n == 0 {
            return Some(byte_offset);
        }
        last = last.checked_add((n - 1).checked_mul(s)?)?;
    }
    last.checked_add(1)?
        .checked_mul(dtype.size())?
        .checked_add(byte_offset)
}

/// Bit pattern of one element of `dtype` holding `x` (rounded to nearest even for 16-bit floats).
fn encode(dtype: DType, x: f64, out: &mut Vec<u8>) {
    match dtype {
        DType::F32 => out.extend_from_slice(&(x as f32).to_le_bytes()),
        DType::I32 => out.extend_from_slice(&(x as i32).to_le_bytes()),
        DType::Bf16 => out.extend_from_slice(&bf16::from_f64(x).to_le_bytes()),
        DType::F16 => out.extend_from_slice(&f16::from_f64(x).to_le_bytes()),
        DType::Bool => out.push(u8::from(x != 0.0)),
    }
}

fn decode(dtype: DType, bytes: &[u8]) -> f64 {
    match dtype {
        DType::F32 => f32::from_le_bytes(bytes.try_into().expect("4 bytes")) as f64,
        DType::I32 => i32::from_le_bytes(bytes.try_into().expect("4 bytes")) as f64,
        DType::Bf16 => bf16::from_le_bytes(bytes.try_into().expect("2 bytes")).to_f64(),
        DType::F16 => f16::from_le_bytes(bytes.try_into().expect("2 bytes")).to_f64(),
        DType::Bool => f64::from(bytes[0] != 0),
    }
}

impl DeviceTensor {
    /// An uninitialised tensor from the device's pool.
    pub fn empty(dev: &Device, dtype: DType, shape: &[usize]) -> Result<Self, RuntimeError> {
        let numel: usize = shape.iter().product();
        let buffer = dev.pool().alloc(dev.stream(), numel * dtype.size())?;
        Ok(Self {
            dtype,
            shape: shape.to_vec(),
            strides: dense_strides(shape),
            buffer,
        })
    }

    /// A tensor holding `data` (row-major) converted to `dtype`.
    pub fn from_f64(
        dev: &Device,
        dtype: DType,
        shape: &[usize],
        data: &[f64],
    ) -> Result<Self, RuntimeError> {
        let mut t = Self::empty(dev, dtype, shape)?;
        t.write_f64(dev, data)?;
        Ok(t)
    }

    /// A tensor whose every element is NaN (i32::MIN for integers): any element a kernel fails to
    /// write stays visibly wrong.
    pub fn poisoned(dev: &Device, dtype: DType, shape: &[usize]) -> Result<Self, RuntimeError> {
        let n = shape.iter().product();
        let v = if dtype == DType::I32 {
            i32::MIN as f64
        } else {
            f64::NAN
        };
        Self::from_f64(dev, dtype, shape, &vec![v; n])
    }

    /// The same buffer viewed as dense `shape`; refused unless the element count is unchanged.
    pub fn reshape(&mut self, shape: &[usize]) -> Result<(), RuntimeError> {
        let numel: usize = shape.iter().product();
        if numel != self.numel() {
            return Err(RuntimeError::HostLength {
                want: self.numel(),
                got: numel,
            });
        }
        self.shape = shape.to_vec();
        self.strides = dense_strides(shape);
        Ok(())
    }

    pub fn numel(&self) -> usize {
        self.shape.iter().product()
    }

    pub fn bytes(&self) -> usize {
        self.numel() * self.dtype.size()
    }

    /// Overwrites the contents with `data`, converted to the tensor's dtype.
    pub fn write_f64(&mut self, dev: &Device, data: &[f64]) -> Result<(), RuntimeError> {
        if data.len() != self.numel() {
            return Err(RuntimeError::HostLength {
                want: self.numel(),
                got: data.len(),
            });
        }
        if data.is_empty() {
            return Ok(());
        }
        let mut bytes = Vec::with_capacity(self.bytes());
        for &x in data {
            encode(self.dtype, x, &mut bytes);
        }
        let n = bytes.len();
        let mut view = self.buffer.slice_mut().slice_mut(0..n);
        dev.stream()
            .memcpy_htod(&bytes, &mut view)
            .map_err(RuntimeError::driver("host to device copy"))
    }

    /// Overwrites the contents with `bytes`, already in the tensor's element type (little-endian):
    /// weights read from a checkpoint go up without a round trip through f64.
    pub fn write_bytes(&mut self, dev: &Device, bytes: &[u8]) -> Result<(), RuntimeError> {
        if bytes.len() != self.bytes() {
            return Err(RuntimeError::HostLength {
                want: self.bytes(),
                got: bytes.len(),
            });
        }
        if bytes.is_empty() {
            return Ok(());
        }
        let mut view = self.buffer.slice_mut().slice_mut(0..bytes.len());
        dev.stream()
            .memcpy_htod(bytes, &mut view)
            .map_err(RuntimeError::driver("host to device copy"))
    }

    /// Part of this tensor's memory seen as a dense tensor of `dtype` and `shape`, starting
    /// `byte_offset` bytes in: how a memory plan places many intermediates in one allocation.
    /// Refused unless it lies inside the buffer and is aligned for `dtype`.
    pub fn view<'t>(
        &'t self,
        dev: &Device,
        byte_offset: usize,
        dtype: DType,
        shape: &'t [usize],
    ) -> Result<TensorView<'t>, RuntimeError> {
        let numel: usize = shape.iter().product();
        let end = byte_offset + numel * dtype.size();
        if end > self.bytes() || !byte_offset.is_multiple_of(dtype.size()) {
            return Err(RuntimeError::HostLength {
                want: self.bytes(),
                got: end,
            });
        }
        Ok(TensorView {
            dtype,
            shape,
            strides: None,
            ptr: self.device_ptr(dev) + byte_offset as u64,
            _tensor: std::marker::PhantomData,
        })
    }

    /// Part of this tensor's memory seen as `shape` with element `strides`, starting
    /// `byte_offset` bytes in (every r-th row of a sequence, a column block of a wider matrix):
    /// for kernels that declare `strides[...]`. Refused unless every element it reaches lies
    /// inside the buffer and it is aligned for `dtype`.
    pub fn strided_view<'t>(
        &'t self,
        dev: &Device,
        byte_offset: usize,
        dtype: DType,
        shape: &'t [usize],
        strides: &'t [usize],
    ) -> Result<TensorView<'t>, RuntimeError> {
        let end = strided_view_end(byte_offset, dtype, shape, strides);
        if strides.len() != shape.len()
            || end.is_none_or(|e| e > self.bytes())
            || !byte_offset.is_multiple_of(dtype.size())
        {
            return Err(RuntimeError::HostLength {
                want: self.bytes(),
                got: end.unwrap_or(usize::MAX),
            });
        }
        Ok(TensorView {
            dtype,
            shape,
            strides: Some(strides),
            ptr: self.device_ptr(dev) + byte_offset as u64,
            _tensor: std::marker::PhantomData,
        })
    }

    /// The contents as f64, after the stream's pending work.
    pub fn to_f64(&self, dev: &Device) -> Result<Vec<f64>, RuntimeError> {
        if self.numel() == 0 {
            return Ok(Vec::new());
        }
        let mut bytes = vec![0u8; self.bytes()];
        let view = self.buffer.slice().slice(0..bytes.len());
        dev.stream()
            .memcpy_dtoh(&view, &mut bytes)
            .map_err(RuntimeError::driver("device to host copy"))?;
        dev.synchronize()?;
        Ok(bytes
            .chunks_exact(self.dtype.size())
            .map(|c| decode(self.dtype, c))
            .collect())
    }

    /// Sets every element to `x` (rounded to the dtype) on the device's stream, without a host
    /// copy: how an operator starts an accumulator at 0 or a log-sum-exp at −∞.
    pub fn fill(&self, dev: &Device, x: f64) -> Result<(), RuntimeError> {
        let n = self.numel();
        if n == 0 {
            return Ok(());
        }
        let mut bits = Vec::with_capacity(4);
        encode(self.dtype, x, &mut bits);
        let (ptr, stream) = (self.device_ptr(dev), dev.stream().cu_stream());
        use cudarc::driver::sys;
        // SAFETY: the range [ptr, ptr + n · size) is this tensor's buffer, which outlives the
        // stream's work (the pool frees on the same stream); the value is one element's bits.
        let status = unsafe {
            match bits.len() {
                4 => sys::cuMemsetD32Async(
                    ptr,
                    u32::from_le_bytes(bits[..4].try_into().expect("4 bytes")),
                    n,
                    stream,
                ),
                2 => sys::cuMemsetD16Async(ptr, u16::from_le_bytes([bits[0], bits[1]]), n, stream),
                _ => sys::cuMemsetD8Async(ptr, bits[0], n, stream),
            }
        };
        status
            .result()
            .map_err(RuntimeError::driver("device memset"))
    }

    /// The device address of the first element.
    pub fn device_ptr(&self, dev: &Device) -> u64 {
        self.buffer.device_ptr(dev.stream())
    }
}
