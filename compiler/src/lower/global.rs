//! Tiles to and from global memory.
//!
//! A tile access takes one of two paths, chosen at run time. The interior path (the whole tile
//! inside the tensor) checks once per tile and addresses every register as the thread's one
//! 64-bit offset plus a constant, which folds into the instruction's immediate when the tensor's
//! inner dims are compile-time constants; register pairs along the last axis move as one
//! 2-element access when the tile's origin and row stride are 2-element aligned. The guarded
//! path (edge tiles, masks) checks every element and clamps a refused address to the tensor's
//! start, so no thread ever forms an out-of-bounds address.
//!
//! A range with a step (`s : +n : r`) addresses tile element i at tensor coordinate s + i·r,
//! computed in i64 (i·r may pass 2^31 where the coordinate would not); its interior test is
//! 0 ≤ s and s + (n−1)·r < dim, and a step that is not positive at run time makes every element
//! of the slice out of range (fill on loads, no write on stores). Register pairs only ever move
//! along a unit-step last axis whose stride is 1. Unit-step ranges emit what they always did.

use super::emit::{Arith, Cast, ICmp, Ty, Value};
use super::entry::Lower;
use super::R;
use crate::sched::{Dist, Layout};
use crate::tir::{DType, Literal, ValueId};

/// One ranged axis of a tensor slice.
#[derive(Clone)]
pub(super) struct Range {
    pub start: Value,
    /// i64, in elements: the tensor's stride along the axis.
    pub stride: Value,
    pub dim: Value,
    /// The i32 step between tile elements; None is 1.
    pub step: Option<Value>,
    /// i64 elements between consecutive tile elements: step · stride.
    pub estride: Value,
}

/// A slice of a tensor: the tile's 1 or 2 ranged axes, the other (fixed) axes folded in.
pub(super) struct Slice {
    /// The fixed axes' indices are in range.
    pub inside: Value,
    /// i64 element offset of the fixed axes.
    pub off: Value,
    pub ranges: Vec<Range>,
}

/// A tile access's interior path (see the module docs).
struct Interior {
    /// The whole tile lies inside the tensor (and, when `paired`, its pairs are aligned).
    cond: Value,
    /// i64 offset of the fixed dims.
    off: Value,
    /// Per range: the thread's coordinate, the range's stride, and the stride between tile
    /// elements (`Range::estride`).
    thread: Vec<(Value, Value, Value)>,
    /// Two ranges (rows, columns) rather than one.
    two: bool,
    /// Register pairs move as one 2-element access.
    paired: bool,
}

/// The tile of global memory a load or store names: `tensor` sliced at `starts`, each axis
/// ranged over its extent or fixed (`None`).
pub(super) struct Access<'s> {
    pub tensor: usize,
    pub starts: &'s [ValueId],
    pub extents: &'s [Option<usize>],
    pub steps: &'s [Option<ValueId>],
}

impl Access<'_> {
    /// The last axis is a range of step 1 (contiguous elements when its stride is 1).
    pub fn last_unit_range(&self) -> bool {
        matches!(self.extents.last(), Some(Some(_))) && matches!(self.steps.last(), Some(None))
    }
}

impl Lower<'_> {
    /// `a` as i64.
    pub fn ext64(&mut self, a: &Value) -> Value {
        if a.ty() == Ty::I64 {
            return a.clone();
        }
        self.e.cast(Cast::ExtSI, a, Ty::I64)
    }

    /// `a += x · stride`, in i64.
    pub fn add_scaled(&mut self, a: &Value, x: &Value, stride: &Value) -> Value {
        let x64 = self.ext64(x);
        let t = self.e.muli(&x64, stride);
        self.e.addi(a, &t)
    }

    /// `ok && 0 <= c < dim`, given the i32 zero `z`.
    pub fn in_range(&mut self, ok: &Value, c: &Value, z: &Value, dim: &Value) -> Value {
        let ge = self.e.cmpi(ICmp::Sge, c, z);
        let lt = self.e.cmpi(ICmp::Slt, c, dim);
        let ok = self.e.andi(ok, &ge);
        self.e.andi(&ok, &lt)
    }

    pub fn slice(&mut self, a: &Access) -> R<Slice> {
        let strides = self.tensor_strides(a.tensor)?;
        let mut ok = self.e.bool(true);
        let mut off = self.e.i64(0);
        let mut ranges = Vec::new();
        let z = self.e.i32(0);
        for (i, e) in a.extents.iter().enumerate() {
            let start = self.get(a.starts[i])?[0].clone();
            let dim = self.dim(a.tensor, i)?;
            if e.is_some() {
                let step = match a.steps.get(i).copied().flatten() {
                    Some(st) => Some(self.get(st)?[0].clone()),
                    None => None,
                };
                let estride = match &step {
                    Some(st) => {
                        let gt = self.e.cmpi(ICmp::Sgt, st, &z);
                        ok = self.e.andi(&ok, &gt);
                        let s64 = self.ext64(st);
                        self.e.muli(&s64, &strides[i])
                    }
                    None => strides[i].clone(),
                };
                ranges.push(Range {
                    start,
                    stride: strides[i].clone(),
                    dim,
                    step,
                    estride,
                });
            } else {
                ok = self.in_range(&ok, &start, &z, &dim);
                off = self.add_scaled(&off, &start, &strides[i]);
            }
        }
        Ok(Slice {
            inside: ok,
            off,
            ranges,
        })
    }

    /// The tensor coordinate of tile index `idx` (i32) along `r`: i32 `start + idx` at step 1,
    /// else i64 `start + idx·step`.
    pub fn coord(&mut self, r: &Range, idx: &Value) -> Value {
        match &r.step {
            None => self.e.addi(&r.start, idx),
            Some(st) => {
                let (s64, i64, st64) = (self.ext64(&r.start), self.ext64(idx), self.ext64(st));
                let t = self.e.muli(&i64, &st64);
                self.e.addi(&s64, &t)
            }
        }
    }

    /// Coordinate `c` (of `r`) moved `delta` tile elements on.
    fn coord_plus(&mut self, r: &Range, c: &Value, delta: usize) -> Value {
        match &r.step {
            None => self.e.add_const(c, delta as i64),
            Some(st) => {
                let (dv, st64) = (self.e.i64(delta as i64), self.ext64(st));
                let t = self.e.muli(&dv, &st64);
                self.e.addi(c, &t)
            }
        }
    }

    /// `ok && 0 <= c < r.dim` for a coordinate of `r` (i32 at step 1, given the i32 zero `z`;
    /// i64 otherwise).
    pub fn coord_in_range(&mut self, ok: &Value, c: &Value, z: &Value, r: &Range) -> Value {
        if c.ty() == Ty::I64 {
            let (z64, d64) = (self.e.i64(0), self.ext64(&r.dim));
            self.in_range(ok, c, &z64, &d64)
        } else {
            self.in_range(ok, c, z, &r.dim)
        }
    }

    /// Per range of a slice, the thread's coordinate in it (at the thread's base element of
    /// `d`): the tile's element (r, c) indexes two ranges as (r, c), one as r·cols + c.
    fn thread_coords(&mut self, d: &Dist, ranges: &[Range]) -> Vec<Value> {
        let (br, bc) = self.base(d);
        let bases = if ranges.len() == 2 {
            vec![br, bc]
        } else {
            let cv = self.e.i32(d.shape[1] as i64);
            let l = self.e.muli(&br, &cv);
            vec![self.e.addi(&l, &bc)]
        };
        ranges
            .iter()
            .zip(&bases)
            .map(|(r, b)| self.coord(r, b))
            .collect()
    }

    /// For each register of `d`: (in range, clamped element pointer) of the guarded access.
    fn accesses(&mut self, a: &Access, d: &Dist, mask: Option<&[Value]>) -> R<Vec<(Value, Value)>> {
        let sl = self.slice(a)?;
        let two = sl.ranges.len() == 2;
        let z = self.e.i32(0);
        let z64 = self.e.i64(0);
        let mut out = Vec::new();
        let cols = d.shape[1];
        let thread = self.thread_coords(d, &sl.ranges);
        for (ri, r) in d.regs.iter().enumerate() {
            let mut okr = sl.inside.clone();
            let mut o = sl.off.clone();
            for (i, range) in sl.ranges.iter().enumerate() {
                let delta = if two { r[i] } else { r[0] * cols + r[1] };
                let coord = self.coord_plus(range, &thread[i], delta);
                okr = self.coord_in_range(&okr, &coord, &z, range);
                o = self.add_scaled(&o, &coord, &range.stride);
            }
            if let Some(m) = mask {
                okr = self.e.andi(&okr, &m[ri]);
            }
            let safe = self.e.select(&okr, &o, &z64);
            let p = self.gptr(a.tensor, &safe);
            out.push((okr, p));
        }
        Ok(out)
    }

    /// The interior path's condition and thread offsets for `d`'s registers of a slice; pairs
    /// (`Dist::pairs_columns`) along the tensor's last axis are checked for alignment here too.
    fn interior(&mut self, a: &Access, d: &Dist, dt: DType) -> R<Interior> {
        let sl = self.slice(a)?;
        let two = sl.ranges.len() == 2;
        let (br, bc) = self.base(d);
        let cols = d.shape[1];
        let z = self.e.i32(0);
        let mut cond = sl.inside.clone();
        let mut thread = Vec::new();
        for (i, r) in sl.ranges.iter().enumerate() {
            let (ext, b) = if two {
                (d.shape[i], if i == 0 { br.clone() } else { bc.clone() })
            } else {
                let cv = self.e.i32(cols as i64);
                let l = self.e.muli(&br, &cv);
                (d.shape[0] * cols, self.e.addi(&l, &bc))
            };
            let ge = self.e.cmpi(ICmp::Sge, &r.start, &z);
            let le = if r.step.is_some() {
                // The last element, start + (ext − 1)·step, is inside (step > 0 is in `inside`).
                let idx = self.e.i32(ext as i64 - 1);
                let last = self.coord(r, &idx);
                let d64 = self.ext64(&r.dim);
                self.e.cmpi(ICmp::Slt, &last, &d64)
            } else {
                let end = self.e.add_const(&r.start, ext as i64);
                self.e.cmpi(ICmp::Sle, &end, &r.dim)
            };
            cond = self.e.andi(&cond, &ge);
            cond = self.e.andi(&cond, &le);
            let coord = self.coord(r, &b);
            thread.push((coord, r.stride.clone(), r.estride.clone()));
        }
        // One range (a 1-D slice) indexes r·cols + c: pairs stay even when cols is.
        let paired = (two || cols.is_multiple_of(2))
            && d.pairs_columns()
            && a.last_unit_range()
            && Ty::of(dt).pair().is_some();
        if paired {
            let aligned = self.pairs_aligned(a.tensor, &sl, dt);
            cond = self.e.andi(&cond, &aligned);
        }
        Ok(Interior {
            cond,
            off: sl.off,
            thread,
            two,
            paired,
        })
    }

    /// The slice's origin is 2-element aligned, and so is its row stride when it has rows.
    fn pairs_aligned(&mut self, tensor: usize, sl: &Slice, dt: DType) -> Value {
        let mut o = sl.off.clone();
        for r in &sl.ranges {
            o = self.add_scaled(&o, &r.start, &r.stride);
        }
        let p = self.gptr(tensor, &o);
        let a = self.e.ptrtoint(&p, Ty::I64);
        let low = self.e.i64(2 * dt.size() as i64 - 1);
        let mut bad = self.e.andi(&a, &low);
        if sl.ranges.len() == 2 {
            let one = self.e.i64(1);
            let odd_rows = self.e.andi(&sl.ranges[0].estride, &one);
            bad = self.e.arith(Arith::OrI, &bad, &odd_rows);
        }
        let z64 = self.e.i64(0);
        let ok = self.e.cmpi(ICmp::Eq, &bad, &z64);
        if self.last_stride_is_one(tensor) {
            return ok;
        }
        // A declared last stride is only known at run time: a pair is adjacent only at 1.
        let one = self.e.i64(1);
        let last = sl
            .ranges
            .last()
            .expect("paired slices have a range")
            .stride
            .clone();
        let unit = self.e.cmpi(ICmp::Eq, &last, &one);
        self.e.andi(&ok, &unit)
    }

    /// The interior path's pointer of every register (to be called inside its region).
    fn interior_ptrs(&mut self, tensor: usize, it: &Interior, d: &Dist) -> Vec<Value> {
        let mut base = it.off.clone();
        for (coord, stride, _) in &it.thread {
            base = self.add_scaled(&base, coord, stride);
        }
        let cols = d.shape[1];
        d.regs
            .iter()
            .map(|r| {
                let mut o = base.clone();
                for (i, (_, _, stride)) in it.thread.iter().enumerate() {
                    let delta = if it.two { r[i] } else { r[0] * cols + r[1] };
                    if delta != 0 {
                        let dv = self.e.i64(delta as i64);
                        let t = self.e.muli(&dv, stride);
                        o = self.e.addi(&o, &t);
                    }
                }
                self.gptr(tensor, &o)
            })
            .collect()
    }

    /// Value `v`'s registers in layout `d`, loaded from global memory (`fill` where out of range
    /// or masked off).
    pub fn load_regs(
        &mut self,
        v: ValueId,
        d: &Dist,
        a: &Access,
        mask: Option<ValueId>,
        fill: f64,
    ) -> R<Vec<Value>> {
        let m = match mask {
            Some(m) => Some(self.regs_in(m, &Layout::Dist(d.clone()))?),
            None => None,
        };
        let dt = self.dtype(v);
        let t = Ty::of(dt);
        let guarded = |me: &mut Self| -> R<Vec<Value>> {
            let acc = me.accesses(a, d, m.as_deref())?;
            let fillv = me.constant(Literal::Float(fill), dt);
            let mut out = Vec::new();
            for (ok, p) in acc {
                let x = me.e.load(&p, t);
                out.push(me.e.select(&ok, &x, &fillv));
            }
            Ok(out)
        };
        if mask.is_some() || d.regs.len() < 2 {
            return guarded(self);
        }
        let it = self.interior(a, d, dt)?;
        let cond = it.cond.clone();
        let fast = |me: &mut Self| -> R<Vec<Value>> {
            let ptrs = me.interior_ptrs(a.tensor, &it, d);
            let mut out = Vec::new();
            if it.paired {
                let vt = t.pair().expect("paired types have a vector type");
                for p in ptrs.iter().step_by(2) {
                    let x = me.e.load(p, vt);
                    out.extend(me.e.unpack2(&x));
                }
            } else {
                for p in &ptrs {
                    out.push(me.e.load(p, t));
                }
            }
            Ok(out)
        };
        self.if_values(&cond, fast, guarded)
    }

    /// Stores `value` (in layout `d`) to global memory; replicas do not store.
    pub fn store_regs(
        &mut self,
        value: ValueId,
        d: &Dist,
        a: &Access,
        mask: Option<ValueId>,
    ) -> R<()> {
        let vals = self.get(value)?;
        let m = match mask {
            Some(m) => Some(self.regs_in(m, &Layout::Dist(d.clone()))?),
            None => None,
        };
        let owner = self.owner(d);
        let guarded = |me: &mut Self| -> R<Vec<Value>> {
            let acc = me.accesses(a, d, m.as_deref())?;
            for (i, (ok, p)) in acc.into_iter().enumerate() {
                let c = me.e.andi(&ok, &owner);
                me.when(&c, |me| {
                    me.e.store(&vals[i], &p);
                    Ok(())
                })?;
            }
            Ok(vec![])
        };
        if mask.is_some() || d.regs.len() < 2 {
            guarded(self)?;
            return Ok(());
        }
        let dt = self.dtype(value);
        let it = self.interior(a, d, dt)?;
        let cond = it.cond.clone();
        let fast = |me: &mut Self| -> R<Vec<Value>> {
            me.when(&owner, |me| {
                let ptrs = me.interior_ptrs(a.tensor, &it, d);
                let step = if it.paired { 2 } else { 1 };
                for i in (0..ptrs.len()).step_by(step) {
                    let x = if it.paired {
                        me.e.pack2(&vals[i], &vals[i + 1])
                    } else {
                        vals[i].clone()
                    };
                    me.e.store(&x, &ptrs[i]);
                }
                Ok(())
            })?;
            Ok(vec![])
        };
        self.if_values(&cond, fast, guarded)?;
        Ok(())
    }

    /// Stores a uniform value: one thread writes it.
    pub fn store_uniform(&mut self, value: ValueId, a: &Access, mask: Option<ValueId>) -> R<()> {
        let v = self.get(value)?[0].clone();
        let one = Dist::blocked(1, 1, 1);
        let m = match mask {
            Some(m) => Some(vec![self.get(m)?[0].clone()]),
            None => None,
        };
        let acc = self.accesses(a, &one, m.as_deref())?;
        let z = self.e.i32(0);
        let tid = self.tid.clone();
        let first = self.e.cmpi(ICmp::Eq, &tid, &z);
        for (ok, p) in acc {
            let c = self.e.andi(&ok, &first);
            self.when(&c, |me| {
                me.e.store(&v, &p);
                Ok(())
            })?;
        }
        Ok(())
    }
}
