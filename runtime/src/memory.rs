//! Device memory: a caching allocator.
//!
//! Freed buffers go back to a pool keyed by size class (powers of two from 512 bytes), and the
//! next request of that class reuses one instead of calling the driver: allocation is off the hot
//! path of repeated launches, as in PyTorch's caching allocator. The price is up to 2× rounding
//! per buffer, held until `release_cached`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use cudarc::driver::{CudaSlice, CudaStream, DevicePtr};

use crate::RuntimeError;

const MIN_CLASS: usize = 512;

/// Counters of the allocator, for tests and diagnostics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PoolStats {
    /// Buffers obtained from the driver.
    pub driver_allocations: u64,
    /// Requests served from the cache.
    pub reuses: u64,
    /// Bytes sitting in the cache.
    pub cached_bytes: usize,
    /// Bytes handed out and not yet returned.
    pub live_bytes: usize,
}

#[derive(Default)]
struct Inner {
    free: HashMap<usize, Vec<CudaSlice<u8>>>,
    stats: PoolStats,
}

/// The caching allocator of one device (cheap to clone: a shared handle).
#[derive(Clone, Default)]
pub struct Pool {
    inner: Arc<Mutex<Inner>>,
}

impl std::fmt::Debug for Pool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pool")
            .field("stats", &self.stats())
            .finish()
    }
}

/// The size class a request of `bytes` is served from.
pub fn size_class(bytes: usize) -> usize {
    bytes.max(MIN_CLASS).next_power_of_two()
}

impl Pool {
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // A panic while holding the lock cannot leave the maps inconsistent: recover the guard.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn stats(&self) -> PoolStats {
        self.lock().stats
    }

    /// A buffer of at least `bytes` bytes, uninitialised.
    pub fn alloc(&self, stream: &Arc<CudaStream>, bytes: usize) -> Result<Buffer, RuntimeError> {
        let class = size_class(bytes);
        let cached = {
            let mut inner = self.lock();
            let hit = inner.free.get_mut(&class).and_then(Vec::pop);
            if hit.is_some() {
                inner.stats.reuses += 1;
                inner.stats.cached_bytes -= class;
            }
            inner.stats.live_bytes += class;
            hit
        };
        let slice = match cached {
            Some(s) => s,
            None => {
                // SAFETY: uninitialised device memory is fine: every user writes it before reading.
                let s = unsafe { stream.alloc::<u8>(class) };
                let mut inner = self.lock();
                match s {
                    Ok(s) => {
                        inner.stats.driver_allocations += 1;
                        s
                    }
                    Err(e) => {
                        inner.stats.live_bytes -= class;
                        return Err(RuntimeError::Driver {
                            during: "device allocation",
                            source: e,
                        });
                    }
                }
            }
        };
        Ok(Buffer {
            slice: Some(slice),
            len: bytes,
            class,
            pool: self.clone(),
        })
    }

    /// Returns every cached buffer to the driver.
    pub fn release_cached(&self) {
        let mut inner = self.lock();
        inner.free.clear();
        inner.stats.cached_bytes = 0;
    }
}

/// Device memory from the pool; returned to it on drop.
pub struct Buffer {
    slice: Option<CudaSlice<u8>>,
    len: usize,
    class: usize,
    pool: Pool,
}

impl std::fmt::Debug for Buffer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Buffer")
            .field("len", &self.len)
            .field("class", &self.class)
            .finish()
    }
}

impl Buffer {
    /// Bytes requested (the allocation may be larger).
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub(crate) fn slice(&self) -> &CudaSlice<u8> {
        self.slice.as_ref().expect("a live buffer holds its slice")
    }

    pub(crate) fn slice_mut(&mut self) -> &mut CudaSlice<u8> {
        self.slice.as_mut().expect("a live buffer holds its slice")
    }

    /// The device address.
    pub fn device_ptr(&self, stream: &CudaStream) -> u64 {
        let (ptr, _sync) = self.slice().device_ptr(stream);
        ptr
    }
}

impl Drop for Buffer {
    fn drop(&mut self) {
        if let Some(s) = self.slice.take() {
            let mut inner = self.pool.lock();
            inner.stats.live_bytes -= self.class;
            inner.stats.cached_bytes += self.class;
            inner.free.entry(self.class).or_default().push(s);
        }
    }
}
