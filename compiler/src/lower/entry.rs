//! The kernel entry: the function, its parameters, and the state every other part of the
//! lowering reads.
//!
//! What depends only on the thread — lane and warp, a layout's base coordinates, which threads
//! own a replicated value, tensor strides — is computed here once, in the entry's prelude, so
//! loop bodies and unrolled tiles never recompute it. The parameters follow `crate::abi`, the
//! convention the package records for the runtime.

use std::collections::HashMap;

use super::emit::{Arith, Cast, Emitter, ICmp, KernelDecl, Sreg, Ty, Value};
use super::{err, R};
use crate::abi::{Arg, Signature};
use crate::sched::{Dist, Layout, Schedule};
use crate::tir::{DType, Dim, Kernel, ParamKind, ValueId};

/// The dynamic shared-memory array: staged tiles at their buffers' offsets, then one scratch
/// region for layout conversions, cross-warp reductions and register operands of `dot`.
const SMEM: &str = "tessel_smem";

/// The lowering of one kernel in progress.
pub(super) struct Lower<'a> {
    pub k: &'a Kernel,
    pub s: &'a Schedule,
    pub sig: Signature<'a>,
    pub e: Emitter,
    /// Every lowered Tile IR value: its registers in its scheduled layout.
    pub env: HashMap<ValueId, Vec<Value>>,
    /// Staged tiles: the i32 byte offset (from the shared base) of the slot now readable.
    pub smem_at: HashMap<ValueId, Value>,
    pub tid: Value,
    pub lane: Value,
    pub warp: Value,
    /// The shared array as a pointer and as a 32-bit shared address; absent when the schedule
    /// reserves no shared memory.
    pub smem: Option<(Value, Value)>,
    /// Per tensor parameter: its i64 strides (declared or dense).
    pub strides: HashMap<usize, Vec<Value>>,
}

/// The MLIR text of a scheduled kernel.
pub fn build_text(k: &Kernel, s: &Schedule) -> R<String> {
    let sig = Signature::scheduled(k, s);
    let params = sig
        .args()
        .map(|a| match a {
            Arg::Param(p) => match &p.kind {
                ParamKind::Tensor { .. } => Ty::GlobalPtr,
                ParamKind::Scalar { dtype } => Ty::of(*dtype),
            },
            Arg::Shape(_) => Ty::I32,
            Arg::TensorMap { .. } => Ty::TensorMap,
        })
        .collect();
    let mut e = Emitter::new(params);
    let tid = e.sreg(Sreg::Tid);
    let (c31, c5) = (e.i32(31), e.i32(5));
    let was = e.set_hoist(true);
    let lane = e.andi(&tid, &c31);
    let warp = e.arith(Arith::ShRUI, &tid, &c5);
    let smem = (s.shared_bytes > 0).then(|| {
        let p = e.addressof(SMEM, Ty::SharedPtr);
        let a = e.ptrtoint(&p, Ty::I32);
        (p, a)
    });
    e.set_hoist(was);
    let mut l = Lower {
        k,
        s,
        sig,
        e,
        env: HashMap::new(),
        smem_at: HashMap::new(),
        tid,
        lane,
        warp,
        smem,
        strides: HashMap::new(),
    };
    l.block(&k.body)?;
    Ok(l.e.finish(&KernelDecl {
        name: &k.name,
        shared: (s.shared_bytes > 0).then_some(SMEM),
        shared_align: s.strategy.shared_align(),
        max_threads: s.threads,
        min_blocks_per_sm: s.min_blocks_per_sm,
    }))
}

impl Lower<'_> {
    /// Runs `f` with every op that has results placed in the prelude: for index math that
    /// depends only on the thread (and unrolled constants).
    pub fn hoisted<T>(&mut self, f: impl FnOnce(&mut Self) -> T) -> T {
        let was = self.e.set_hoist(true);
        let r = f(self);
        self.e.set_hoist(was);
        r
    }

    /// `scf.if c` whose arms each produce the same number of values of the same types.
    pub fn if_values(
        &mut self,
        c: &Value,
        then: impl FnOnce(&mut Self) -> R<Vec<Value>>,
        els: impl FnOnce(&mut Self) -> R<Vec<Value>>,
    ) -> R<Vec<Value>> {
        self.e.open_region();
        let a = then(self)?;
        let then = self.e.close_region(&a);
        self.e.open_region();
        let b = els(self)?;
        let els = self.e.close_region(&b);
        self.e.scf_if(c, then, Some(els))
    }

    /// `scf.if c` without results or else arm.
    pub fn when(&mut self, c: &Value, f: impl FnOnce(&mut Self) -> R<()>) -> R<()> {
        self.e.open_region();
        f(self)?;
        let body = self.e.close_region(&[]);
        self.e.scf_if(c, body, None)?;
        Ok(())
    }

    pub fn get(&self, v: ValueId) -> R<Vec<Value>> {
        self.env
            .get(&v)
            .cloned()
            .ok_or_else(|| err(format!("{v} used before it was lowered")))
    }

    pub fn dtype(&self, v: ValueId) -> DType {
        self.k.ty(v).dtype
    }

    pub fn want(&self, v: ValueId) -> Layout {
        self.s.layout(v).clone()
    }

    // ---- parameters -----------------------------------------------------------------------

    pub fn tensor_dtype(&self, tensor: usize) -> DType {
        match &self.k.params[tensor].kind {
            ParamKind::Tensor { dtype, .. } => *dtype,
            ParamKind::Scalar { dtype } => *dtype,
        }
    }

    /// Extent `axis` of tensor parameter `tensor`: a constant, or its shape symbol's argument.
    pub fn dim(&mut self, tensor: usize, axis: usize) -> R<Value> {
        let ParamKind::Tensor { dims, .. } = &self.k.params[tensor].kind else {
            return Ok(self.e.i32(1));
        };
        let d = dims[axis].clone();
        self.symbol_value(&d)
    }

    /// Stride `axis` (in elements, i32) of tensor parameter `tensor` as declared: what a
    /// stride symbol reads as a value.
    pub fn declared_stride(&mut self, tensor: usize, axis: usize) -> R<Value> {
        let ParamKind::Tensor {
            strides: Some(st), ..
        } = &self.k.params[tensor].kind
        else {
            return Err(err("the stride of a tensor declared without strides"));
        };
        let d = st[axis].clone();
        self.symbol_value(&d)
    }

    /// A dimension or stride: a constant, or its shape symbol's i32 argument.
    fn symbol_value(&mut self, d: &Dim) -> R<Value> {
        match d {
            Dim::Const(c) => Ok(self.e.i32(*c)),
            Dim::Sym(s) => {
                let i = self
                    .sig
                    .shape_arg(s)
                    .ok_or_else(|| err(format!("shape symbol {s} is not an argument")))?;
                Ok(self.e.param(i))
            }
        }
    }

    /// Tensor `tensor`'s i64 strides, computed once at entry: its declared `strides[...]`, or
    /// dense row-major ones. Kept in i64 so that offsets past 2^31 elements stay exact.
    pub fn tensor_strides(&mut self, tensor: usize) -> R<Vec<Value>> {
        if let Some(s) = self.strides.get(&tensor) {
            return Ok(s.clone());
        }
        let (rank, declared) = match &self.k.params[tensor].kind {
            ParamKind::Tensor { dims, strides, .. } => (dims.len(), strides.clone()),
            _ => (0, None),
        };
        let st = self.hoisted(|me| -> R<Vec<Value>> {
            if let Some(declared) = &declared {
                return declared
                    .iter()
                    .map(|d| match d {
                        Dim::Const(c) => Ok(me.e.i64(*c)),
                        Dim::Sym(_) => {
                            let v = me.symbol_value(d)?;
                            Ok(me.e.cast(Cast::ExtSI, &v, Ty::I64))
                        }
                    })
                    .collect();
            }
            let one = me.e.i64(1);
            let mut st = vec![one; rank];
            for a in (0..rank.saturating_sub(1)).rev() {
                let d = me.dim(tensor, a + 1)?;
                let d64 = me.e.cast(Cast::ExtSI, &d, Ty::I64);
                st[a] = me.e.muli(&st[a + 1], &d64);
            }
            Ok(st)
        })?;
        self.strides.insert(tensor, st.clone());
        Ok(st)
    }

    /// Whether the last axis of `tensor` is contiguous whatever the call: dense, or declared
    /// with stride 1 there. Otherwise vector and cp.async accesses need a run-time check.
    pub fn last_stride_is_one(&self, tensor: usize) -> bool {
        match &self.k.params[tensor].kind {
            ParamKind::Tensor {
                strides: Some(st), ..
            } => st.last() == Some(&Dim::Const(1)),
            _ => true,
        }
    }

    /// `&tensor[off64]`, for an i64 element offset.
    pub fn gptr(&mut self, tensor: usize, off64: &Value) -> Value {
        let elem = Ty::of(self.tensor_dtype(tensor));
        let base = self.e.param(tensor);
        self.e.gep(&base, off64, elem)
    }

    // ---- thread coordinates ---------------------------------------------------------------

    /// The thread's base (row, column) in a layout.
    pub fn base(&mut self, d: &Dist) -> (Value, Value) {
        let (lane, warp) = (self.lane.clone(), self.warp.clone());
        self.hoisted(|me| {
            let mut out = Vec::new();
            for axis in 0..2 {
                let l = bitsum(&mut me.e, &lane, &d.lane, axis);
                let w = bitsum(&mut me.e, &warp, &d.warp, axis);
                out.push(me.e.addi(&l, &w));
            }
            (out[0].clone(), out[1].clone())
        })
    }

    /// True on the one thread of each group of replicas (the one whose replica bits are 0).
    pub fn owner(&mut self, d: &Dist) -> Value {
        let (lm, wm) = (d.lane_replicas(), d.warp_replicas());
        if lm == 0 && wm == 0 {
            return self.e.bool(true);
        }
        let (lane, warp) = (self.lane.clone(), self.warp.clone());
        self.hoisted(|me| {
            let lmv = me.e.i32(lm as i64);
            let wmv = me.e.i32(wm as i64);
            let z = me.e.i32(0);
            let a = me.e.andi(&lane, &lmv);
            let b = me.e.andi(&warp, &wmv);
            let o = me.e.arith(Arith::OrI, &a, &b);
            me.e.cmpi(ICmp::Eq, &o, &z)
        })
    }
}

/// Σ over the set bits b of `src` of `coords[b][axis]`: one coordinate of a bit-linear layout.
fn bitsum(e: &mut Emitter, src: &Value, coords: &[[usize; 2]], axis: usize) -> Value {
    let mut acc = e.i32(0);
    for (b, c) in coords.iter().enumerate() {
        if c[axis] == 0 {
            continue;
        }
        let sh = e.i32(b as i64);
        let one = e.i32(1);
        let bit = e.arith(Arith::ShRUI, src, &sh);
        let bit = e.andi(&bit, &one);
        let k = e.i32(c[axis] as i64);
        let term = e.muli(&bit, &k);
        acc = e.addi(&acc, &term);
    }
    acc
}
