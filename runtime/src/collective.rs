//! Collectives over several GPUs of one process, through NCCL (cudarc's bindings, loaded
//! dynamically like the driver: a machine without libnccl gets [`RuntimeError::NoNccl`], never
//! a panic).
//!
//! A [`Group`] holds one NCCL communicator per [`Device`], each bound to that device's stream,
//! so a collective is ordered after the kernels already queued there and before those queued
//! next, with no host synchronisation. Every operation takes one tensor per rank (rank r's on
//! device r) and issues all ranks' calls inside one `ncclGroupStart`/`ncclGroupEnd`: that is what
//! lets a single thread drive every GPU (outside a group, rank 0's blocking call would wait for
//! ranks that were never called). Shapes, dtypes and the rank count are checked before anything
//! is enqueued, so a refused call leaves every stream untouched.
//!
//! No reduction is written here: NCCL does them all.

use std::sync::Arc;

use cudarc::driver::{CudaStream, DevicePtr, DevicePtrMut, DeviceSlice, SyncOnDrop};
use cudarc::nccl::{self, Comm, Id, NcclType, ReduceOp};
use half::{bf16, f16};
use tessel_package::DType;

use crate::{Device, DeviceTensor, RuntimeError, TensorView};

/// Whether libnccl can be loaded. cudarc panics on the first NCCL call when it cannot, so every
/// entry into NCCL goes through this check first (as [`crate::device::driver_present`] guards
/// the driver).
pub fn nccl_present() -> bool {
    // SAFETY: only tries to dlopen libnccl; no NCCL call is made.
    unsafe { nccl::sys::is_culib_present() }
}

/// NVLink SHARP (multicast) stays off unless the user chose otherwise: the device machines
/// require it off, and a TP all-reduce of a few MiB gains nothing from it.
fn default_nvls_off() {
    if std::env::var_os("NCCL_NVLS_ENABLE").is_none() {
        // NCCL reads its environment at communicator creation, which follows; this runs before
        // any NCCL thread exists.
        std::env::set_var("NCCL_NVLS_ENABLE", "0");
    }
}

/// One rank's buffer as cudarc's NCCL calls want it: a typed device range on the rank's stream.
/// The memory belongs to a [`DeviceTensor`] that the caller's borrow keeps alive until the
/// collective is enqueued (the pool frees on the same stream, after it).
struct Span<T> {
    ptr: u64,
    len: usize,
    stream: Arc<CudaStream>,
    _t: std::marker::PhantomData<T>,
}

impl<T> DeviceSlice<T> for Span<T> {
    fn len(&self) -> usize {
        self.len
    }
    fn stream(&self) -> &Arc<CudaStream> {
        &self.stream
    }
}

impl<T> DevicePtr<T> for Span<T> {
    fn device_ptr<'a>(&'a self, _: &'a CudaStream) -> (u64, SyncOnDrop<'a>) {
        // The runtime keeps one stream per device and no event tracking: nothing to wait for.
        (self.ptr, SyncOnDrop::Sync(None))
    }
}

impl<T> DevicePtrMut<T> for Span<T> {
    fn device_ptr_mut<'a>(&'a mut self, _: &'a CudaStream) -> (u64, SyncOnDrop<'a>) {
        (self.ptr, SyncOnDrop::Sync(None))
    }
}

/// What the checks need of a buffer: its element type, element count, and whether it is dense.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Operand {
    pub dtype: DType,
    pub numel: usize,
    pub dense: bool,
}

impl From<&TensorView<'_>> for Operand {
    fn from(v: &TensorView<'_>) -> Self {
        Self {
            dtype: v.dtype,
            numel: v.shape.iter().product(),
            // A strided view may be dense in fact, but NCCL takes a flat range: refuse it.
            dense: v.strides.is_none(),
        }
    }
}

/// Which collective, with what each rank's receive buffer holds relative to its send buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// In place: every rank ends with the elementwise sum.
    AllReduceSum,
    /// Rank r's `s` elements land at [r·s, (r+1)·s) of every rank's `n·s`.
    AllGather,
    /// Rank r ends with block r (of `s` elements) of the sum of every rank's `n·s`.
    ReduceScatterSum,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::AllReduceSum => "all_reduce_sum",
            Kind::AllGather => "all_gather",
            Kind::ReduceScatterSum => "reduce_scatter_sum",
        }
    }
}

/// Checks one collective over `ranks` ranks: `send[r]` (and `recv[r]`, except in place) is rank
/// r's buffer. Every rank's buffers must be dense and of one float dtype NCCL reduces (f32,
/// bf16, f16), the send sizes equal, and the receive sizes what `kind` makes of them.
pub fn check(
    kind: Kind,
    ranks: usize,
    send: &[Operand],
    recv: &[Operand],
) -> Result<(), RuntimeError> {
    let op = kind.name();
    let bad = |reason: String| RuntimeError::BadOperand { op, reason };
    let want_recv = if kind == Kind::AllReduceSum { 0 } else { ranks };
    if send.len() != ranks || recv.len() != want_recv {
        return Err(bad(format!(
            "{} send and {} receive buffers for a group of {ranks} ranks (wanted {ranks} and \
             {want_recv})",
            send.len(),
            recv.len()
        )));
    }
    let first = send[0];
    for (what, list) in [("send", send), ("receive", recv)] {
        for (r, o) in list.iter().enumerate() {
            if !matches!(o.dtype, DType::F32 | DType::Bf16 | DType::F16) {
                return Err(bad(format!(
                    "rank {r}'s {what} buffer is {}; collectives take f32, bf16 or f16",
                    o.dtype.name()
                )));
            }
            if o.dtype != first.dtype {
                return Err(bad(format!(
                    "rank {r}'s {what} buffer is {}, rank 0's send buffer {}",
                    o.dtype.name(),
                    first.dtype.name()
                )));
            }
            if !o.dense {
                return Err(bad(format!("rank {r}'s {what} buffer is strided")));
            }
        }
    }
    if let Some(r) = send.iter().position(|o| o.numel != first.numel) {
        return Err(bad(format!(
            "rank {r} sends {} elements, rank 0 {}",
            send[r].numel, first.numel
        )));
    }
    let want = match kind {
        Kind::AllReduceSum => return Ok(()),
        Kind::AllGather => first.numel * ranks,
        Kind::ReduceScatterSum => {
            if !first.numel.is_multiple_of(ranks) {
                return Err(bad(format!(
                    "{} elements do not split into {ranks} equal blocks",
                    first.numel
                )));
            }
            first.numel / ranks
        }
    };
    if let Some(r) = recv.iter().position(|o| o.numel != want) {
        return Err(bad(format!(
            "rank {r}'s receive buffer holds {} elements, {op} of {} per rank over {ranks} ranks \
             needs {want}",
            recv[r].numel, first.numel
        )));
    }
    Ok(())
}

/// Communicators over several devices of this process, one rank per device.
pub struct Group {
    devices: Vec<Device>,
    comms: Vec<Comm>,
}

impl std::fmt::Debug for Group {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Group")
            .field("ranks", &self.devices.len())
            .finish()
    }
}

impl Group {
    /// A group of GPUs 0..n.
    pub fn open(n: usize) -> Result<Group, RuntimeError> {
        let devices = (0..n).map(Device::open).collect::<Result<Vec<_>, _>>()?;
        Group::new(devices)
    }

    /// A group over `devices` (rank r is `devices[r]`), its communicators built from one NCCL
    /// unique id — the way a launch of one process per GPU builds them too, so the two share
    /// this path. Typed errors when there is no driver, no NCCL, or no device.
    pub fn new(devices: Vec<Device>) -> Result<Group, RuntimeError> {
        if !crate::device::driver_present() {
            return Err(RuntimeError::NoDriver);
        }
        if !nccl_present() {
            return Err(RuntimeError::NoNccl);
        }
        if devices.is_empty() {
            return Err(RuntimeError::NoDevice);
        }
        default_nvls_off();
        let n = devices.len();
        let id = Id::new().map_err(RuntimeError::nccl("ncclGetUniqueId"))?;
        // One thread initialises every rank: ncclCommInitRank blocks until all ranks joined,
        // so the calls go inside a group; each on its device's context (NCCL takes the device
        // from the current context).
        nccl::group_start().map_err(RuntimeError::nccl("ncclGroupStart"))?;
        let mut comms = Vec::with_capacity(n);
        let mut failed = None;
        for (rank, dev) in devices.iter().enumerate() {
            if let Err(e) = dev.context().bind_to_thread() {
                failed = Some(RuntimeError::Driver {
                    during: "context bind",
                    source: e,
                });
                break;
            }
            match Comm::from_rank(dev.stream().clone(), rank, n, id) {
                Ok(c) => comms.push(c),
                Err(e) => {
                    failed = Some(RuntimeError::nccl("ncclCommInitRank")(e));
                    break;
                }
            }
        }
        let end = nccl::group_end().map_err(RuntimeError::nccl("ncclGroupEnd (init)"));
        if let Some(e) = failed {
            return Err(e);
        }
        end?;
        Ok(Group { devices, comms })
    }

    pub fn size(&self) -> usize {
        self.devices.len()
    }

    /// Rank r's device.
    pub fn device(&self, rank: usize) -> &Device {
        &self.devices[rank]
    }

    pub fn devices(&self) -> &[Device] {
        &self.devices
    }

    /// Waits for every rank's stream.
    pub fn synchronize(&self) -> Result<(), RuntimeError> {
        self.devices.iter().try_for_each(Device::synchronize)
    }

    /// Sums each buffer over the ranks, in place: `bufs[r]` are rank r's buffers (the same
    /// number on every rank, the j-th of each of one dtype and size). All of them go in one
    /// NCCL group, which NCCL fuses into one operation — how a graph reduces several small
    /// buffers for the price of one.
    pub fn all_reduce_sum(&self, bufs: &[Vec<TensorView<'_>>]) -> Result<(), RuntimeError> {
        let per_rank = bufs.first().map_or(0, Vec::len);
        if bufs.len() != self.size() || bufs.iter().any(|b| b.len() != per_rank) {
            return Err(RuntimeError::BadOperand {
                op: "all_reduce_sum",
                reason: format!(
                    "buffers for {} ranks ({:?} each) in a group of {}",
                    bufs.len(),
                    bufs.iter().map(Vec::len).collect::<Vec<_>>(),
                    self.size()
                ),
            });
        }
        for j in 0..per_rank {
            let send: Vec<Operand> = bufs.iter().map(|b| Operand::from(&b[j])).collect();
            check(Kind::AllReduceSum, self.size(), &send, &[])?;
        }
        self.grouped(|| {
            for (r, b) in bufs.iter().enumerate() {
                for v in b {
                    self.enqueue(Kind::AllReduceSum, r, v, v)?;
                }
            }
            Ok(())
        })
    }

    /// [`Group::all_reduce_sum`] of one tensor per rank.
    pub fn all_reduce_sum_tensors(&self, ts: &mut [DeviceTensor]) -> Result<(), RuntimeError> {
        let views = self.whole(ts)?;
        self.all_reduce_sum(&views.into_iter().map(|v| vec![v]).collect::<Vec<_>>())
    }

    /// Every rank's `send` (s elements) concatenated in rank order into every rank's `recv`
    /// (n·s elements).
    pub fn all_gather(
        &self,
        send: &[DeviceTensor],
        recv: &mut [DeviceTensor],
    ) -> Result<(), RuntimeError> {
        self.two_sided(Kind::AllGather, send, recv)
    }

    /// Rank r gets block r of the elementwise sum of every rank's `send` (n·s elements) into its
    /// `recv` (s elements).
    pub fn reduce_scatter_sum(
        &self,
        send: &[DeviceTensor],
        recv: &mut [DeviceTensor],
    ) -> Result<(), RuntimeError> {
        self.two_sided(Kind::ReduceScatterSum, send, recv)
    }

    /// The view versions of [`Group::all_gather`] and [`Group::reduce_scatter_sum`] (buffers in
    /// a graph's arena are views at offsets).
    pub fn two_sided_views(
        &self,
        kind: Kind,
        send: &[TensorView<'_>],
        recv: &[TensorView<'_>],
    ) -> Result<(), RuntimeError> {
        let s: Vec<Operand> = send.iter().map(Operand::from).collect();
        let r: Vec<Operand> = recv.iter().map(Operand::from).collect();
        check(kind, self.size(), &s, &r)?;
        if kind == Kind::AllReduceSum {
            return self.all_reduce_sum(&send.iter().map(|v| vec![*v]).collect::<Vec<_>>());
        }
        self.grouped(|| {
            for (rank, (s, r)) in send.iter().zip(recv).enumerate() {
                self.enqueue(kind, rank, s, r)?;
            }
            Ok(())
        })
    }

    fn two_sided(
        &self,
        kind: Kind,
        send: &[DeviceTensor],
        recv: &mut [DeviceTensor],
    ) -> Result<(), RuntimeError> {
        let s = self.whole(send)?;
        let r = self.whole(recv)?;
        self.two_sided_views(kind, &s, &r)
    }

    /// Each rank's tensor as one dense view on its device.
    fn whole<'t>(&self, ts: &'t [DeviceTensor]) -> Result<Vec<TensorView<'t>>, RuntimeError> {
        if ts.len() != self.size() {
            return Err(RuntimeError::BadOperand {
                op: "collective",
                reason: format!("{} tensors for a group of {}", ts.len(), self.size()),
            });
        }
        ts.iter()
            .zip(&self.devices)
            .map(|(t, d)| t.view(d, 0, t.dtype, &t.shape))
            .collect()
    }

    /// Runs `enqueue` between ncclGroupStart and ncclGroupEnd; the group is ended whatever
    /// happened, so a failed call does not leave this thread inside a group.
    fn grouped(
        &self,
        enqueue: impl FnOnce() -> Result<(), RuntimeError>,
    ) -> Result<(), RuntimeError> {
        nccl::group_start().map_err(RuntimeError::nccl("ncclGroupStart"))?;
        let result = enqueue();
        let end = nccl::group_end().map_err(RuntimeError::nccl("ncclGroupEnd"));
        result?;
        end.map(|_| ())
    }

    /// Queues rank `rank`'s part of a checked collective on its stream.
    fn enqueue(
        &self,
        kind: Kind,
        rank: usize,
        send: &TensorView<'_>,
        recv: &TensorView<'_>,
    ) -> Result<(), RuntimeError> {
        match send.dtype {
            DType::F32 => self.typed::<f32>(kind, rank, send, recv),
            DType::Bf16 => self.typed::<bf16>(kind, rank, send, recv),
            DType::F16 => self.typed::<f16>(kind, rank, send, recv),
            d => unreachable!("checked: {} is not a collective dtype", d.name()),
        }
    }

    fn typed<T: NcclType>(
        &self,
        kind: Kind,
        rank: usize,
        send: &TensorView<'_>,
        recv: &TensorView<'_>,
    ) -> Result<(), RuntimeError> {
        let comm = &self.comms[rank];
        let span = |v: &TensorView<'_>| Span::<T> {
            ptr: v.ptr,
            len: v.shape.iter().product(),
            stream: comm.stream(),
            _t: std::marker::PhantomData,
        };
        let (s, mut r) = (span(send), span(recv));
        let status = match kind {
            Kind::AllReduceSum => comm.all_reduce_in_place(&mut r, &ReduceOp::Sum),
            Kind::AllGather => comm.all_gather(&s, &mut r),
            Kind::ReduceScatterSum => comm.reduce_scatter(&s, &mut r, &ReduceOp::Sum),
        };
        status.map(|_| ()).map_err(RuntimeError::nccl(kind.name()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn o(dtype: DType, numel: usize) -> Operand {
        Operand {
            dtype,
            numel,
            dense: true,
        }
    }

    #[test]
    fn matching_buffers_pass_the_checks() {
        let f = |n| o(DType::Bf16, n);
        check(Kind::AllReduceSum, 2, &[f(6), f(6)], &[]).unwrap();
        check(Kind::AllGather, 3, &[f(2); 3], &[f(6); 3]).unwrap();
        check(Kind::ReduceScatterSum, 2, &[f(8); 2], &[f(4); 2]).unwrap();
        check(Kind::AllReduceSum, 1, &[o(DType::F16, 1)], &[]).unwrap();
    }

    #[test]
    fn mismatches_are_refused_with_what_is_wrong() {
        let msg = |r: Result<(), RuntimeError>| r.unwrap_err().to_string();
        let f = |n| o(DType::F32, n);
        let m = msg(check(Kind::AllReduceSum, 2, &[f(4)], &[]));
        assert!(m.contains("1 send") && m.contains("group of 2"), "{m}");
        let m = msg(check(Kind::AllReduceSum, 2, &[f(4), f(5)], &[]));
        assert!(m.contains("rank 1 sends 5"), "{m}");
        let m = msg(check(
            Kind::AllReduceSum,
            2,
            &[f(4), o(DType::Bf16, 4)],
            &[],
        ));
        assert!(m.contains("bf16") && m.contains("f32"), "{m}");
        let m = msg(check(Kind::AllReduceSum, 1, &[o(DType::I32, 4)], &[]));
        assert!(m.contains("f32, bf16 or f16"), "{m}");
        let m = msg(check(Kind::AllGather, 2, &[f(3); 2], &[f(6), f(5)]));
        assert!(
            m.contains("rank 1's receive") && m.contains("needs 6"),
            "{m}"
        );
        let m = msg(check(Kind::ReduceScatterSum, 2, &[f(5); 2], &[f(2); 2]));
        assert!(m.contains("do not split"), "{m}");
        let strided = Operand {
            dense: false,
            ..f(4)
        };
        let m = msg(check(Kind::AllReduceSum, 2, &[f(4), strided], &[]));
        assert!(m.contains("strided"), "{m}");
        let m = msg(check(Kind::AllGather, 2, &[f(3); 2], &[]));
        assert!(m.contains("0 receive"), "{m}");
    }

    /// Without a driver or without NCCL a group is a typed error, never a panic (CI has neither).
    #[test]
    fn a_group_without_driver_or_nccl_is_a_typed_error() {
        match Group::open(2) {
            Ok(g) => assert_eq!(g.size(), 2),
            Err(e) => assert!(
                matches!(
                    e,
                    RuntimeError::NoDriver
                        | RuntimeError::NoNccl
                        | RuntimeError::NoDevice
                        | RuntimeError::NoSuchDevice { .. }
                ),
                "{e}"
            ),
        }
        if !crate::device::driver_present() {
            assert!(matches!(
                Group::new(Vec::new()),
                Err(RuntimeError::NoDriver)
            ));
        }
    }
}
