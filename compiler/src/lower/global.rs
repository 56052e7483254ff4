//! Tiles to and from global memory.
//!
//! A tile access takes one of two paths, chosen at run time. The interior path (the whole tile
//! inside the tensor) checks once per tile and addresses every register as the thread's one
//! 64-bit offset plus a constant, which folds into the instruction's immediate when the tensor's
//! inner dims are compile-time constants; register pairs along the last axis move as one
//! 2-element access when the tile's origin and row stride are 2-element aligned. The guarded
//! path (edge tiles, masks) checks every element and clamps a refused address to the tensor's
//! start, so no thread ever forms an out-of-bounds address.

use super::emit::{Arith, Cast, ICmp, Ty, Value};
use super::entry::Lower;
use super::R;
use crate::sched::{Dist, Layout};
use crate::tir::{DType, Literal, ValueId};

/// One ranged axis of a tensor slice.
#[derive(Clone)]
pub(super) struct Range {
    pub start: Value,
    /// i64, in elements.
    pub stride: Value,
    pub dim: Value,
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
    /// Per range: the thread's coordinate and the range's stride.
    thread: Vec<(Value, Value)>,
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
                ranges.push(Range {
                    start,
                    stride: strides[i].clone(),
                    dim,
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

    /// Per range of a slice, the thread's coordinate in it (range start + the thread's base
    /// element of `d`): the tile's element (r, c) indexes two ranges as (r, c), one as r·cols + c.
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
            .map(|(r, b)| self.e.addi(&r.start, b))
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
                let coord = self.e.add_const(&thread[i], delta as i64);
                okr = self.in_range(&okr, &coord, &z, &range.dim);
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
            let end = self.e.add_const(&r.start, ext as i64);
            let le = self.e.cmpi(ICmp::Sle, &end, &r.dim);
            cond = self.e.andi(&cond, &ge);
            cond = self.e.andi(&cond, &le);
            let coord = self.e.addi(&r.start, &b);
            thread.push((coord, r.stride.clone()));
        }
        // One range (a 1-D slice) indexes r·cols + c: pairs stay even when cols is.
        let paired = (two || cols.is_multiple_of(2))
            && d.pairs_columns()
            && matches!(a.extents.last(), Some(Some(_)))
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
            let odd_rows = self.e.andi(&sl.ranges[0].stride, &one);
            bad = self.e.arith(Arith::OrI, &bad, &odd_rows);
        }
        let z64 = self.e.i64(0);
        self.e.cmpi(ICmp::Eq, &bad, &z64)
    }

    /// The interior path's pointer of every register (to be called inside its region).
    fn interior_ptrs(&mut self, tensor: usize, it: &Interior, d: &Dist) -> Vec<Value> {
        let mut base = it.off.clone();
        for (coord, stride) in &it.thread {
            base = self.add_scaled(&base, coord, stride);
        }
        let cols = d.shape[1];
        d.regs
            .iter()
            .map(|r| {
                let mut o = base.clone();
                for (i, (_, stride)) in it.thread.iter().enumerate() {
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
