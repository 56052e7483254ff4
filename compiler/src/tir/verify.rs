//! The Tile IR verifier: run after building IR from source and after parsing it from text, so a
//! broken invariant is caught where it is introduced rather than in a later stage.
//!
//! It checks that every value is defined once, before its uses, in an enclosing scope; that every
//! op's operand and result types agree with the op; and that loops yield what they carry.

use std::collections::HashSet;

use super::*;

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("Tile IR of `{kernel}` is invalid: {message}")]
pub struct VerifyError {
    pub kernel: String,
    pub message: String,
}

pub fn verify(k: &Kernel) -> Result<(), VerifyError> {
    let mut v = Verifier {
        k,
        defined: HashSet::new(),
        scopes: vec![Vec::new()],
    };
    v.block(&k.body, None).map_err(|message| VerifyError {
        kernel: k.name.clone(),
        message,
    })
}

struct Verifier<'k> {
    k: &'k Kernel,
    defined: HashSet<ValueId>,
    /// Values defined per open scope, removed from `defined` when the scope closes.
    scopes: Vec<Vec<ValueId>>,
}

type R = Result<(), String>;

impl Verifier<'_> {
    fn ty(&self, v: ValueId) -> Result<&TileType, String> {
        self.k
            .types
            .get(v.0 as usize)
            .ok_or_else(|| format!("{v} has no type"))
    }

    fn define(&mut self, v: ValueId) -> R {
        self.ty(v)?;
        if !self.defined.insert(v) {
            return Err(format!("{v} is defined twice"));
        }
        self.scopes.last_mut().expect("a scope is open").push(v);
        Ok(())
    }

    fn used(&self, v: ValueId) -> R {
        if self.defined.contains(&v) {
            Ok(())
        } else {
            Err(format!("{v} is used where it is not defined"))
        }
    }

    /// `carried`: for a loop body, the types its `yield` must produce.
    fn block(&mut self, b: &Block, carried: Option<&[TileType]>) -> R {
        self.scopes.push(Vec::new());
        for a in &b.args {
            self.define(*a)?;
        }
        for (i, inst) in b.insts.iter().enumerate() {
            let last = i + 1 == b.insts.len();
            if let Op::Yield(vs) = &inst.op {
                let want = carried.ok_or("`yield` outside a loop body")?;
                if !last {
                    return Err("`yield` must end its block".into());
                }
                let got: Vec<TileType> = vs
                    .iter()
                    .map(|v| self.ty(*v).cloned())
                    .collect::<Result<_, _>>()?;
                if got != want {
                    return Err(format!("loop yields {got:?} but carries {want:?}"));
                }
            }
            self.inst(inst)?;
        }
        if carried.is_some() && !matches!(b.insts.last().map(|i| &i.op), Some(Op::Yield(_))) {
            return Err("a loop body must end in `yield`".into());
        }
        for v in self.scopes.pop().expect("scope pushed above") {
            self.defined.remove(&v);
        }
        Ok(())
    }

    fn inst(&mut self, inst: &Inst) -> R {
        for v in inst.op.operands() {
            self.used(v)?;
        }
        let expect_results = match inst.op {
            Op::Store { .. } | Op::Yield(_) => 0,
            Op::For { ref inits, .. } => inits.len(),
            _ => 1,
        };
        if inst.results.len() != expect_results {
            return Err(format!(
                "{:?} has {} results, expected {expect_results}",
                inst.op,
                inst.results.len()
            ));
        }
        if let Op::For {
            lo,
            hi,
            step,
            inits,
            body,
        } = &inst.op
        {
            for b in [lo, hi, step] {
                if *self.ty(*b)? != TileType::scalar(DType::I32) {
                    return Err(format!("loop bound {b} must be an i32 scalar"));
                }
            }
            if body.args.len() != inits.len() + 1 {
                return Err(
                    "a loop body has the induction variable and one argument per carried value"
                        .into(),
                );
            }
            if *self.ty(body.args[0])? != TileType::scalar(DType::I32) {
                return Err("the induction variable must be an i32 scalar".into());
            }
            let mut carried = Vec::new();
            for ((init, arg), res) in inits.iter().zip(&body.args[1..]).zip(&inst.results) {
                let t = self.ty(*init)?.clone();
                if *self.ty(*arg)? != t || *self.ty(*res)? != t {
                    return Err(format!(
                        "carried value {init} changes type through the loop"
                    ));
                }
                carried.push(t);
            }
            self.block(body, Some(&carried))?;
            for r in &inst.results {
                self.define(*r)?;
            }
            return Ok(());
        }
        if let Some(&r) = inst.results.first() {
            let out = self.ty(r)?.clone();
            self.check_types(&inst.op, &out)?;
            self.define(r)?;
        } else {
            self.check_types(&inst.op, &TileType::scalar(DType::Bool))?;
        }
        Ok(())
    }

    fn tensor(&self, t: usize) -> Result<(DType, usize, Io), String> {
        match self.k.params.get(t).map(|p| &p.kind) {
            Some(ParamKind::Tensor {
                dtype,
                dims,
                io,
                strides,
            }) => {
                if strides.as_ref().is_some_and(|s| s.len() != dims.len()) {
                    return Err(format!(
                        "parameter {t}: {} dims but another number of strides",
                        dims.len()
                    ));
                }
                Ok((*dtype, dims.len(), *io))
            }
            _ => Err(format!("parameter {t} is not a tensor")),
        }
    }

    fn scalar_i32(&self, v: ValueId) -> R {
        if *self.ty(v)? == TileType::scalar(DType::I32) {
            Ok(())
        } else {
            Err(format!("{v} must be an i32 scalar"))
        }
    }

    /// A scan keeps its operand's type and runs along one of its axes; bools have no sum.
    fn check_scan(&self, out: &TileType, x: ValueId, axis: usize) -> Result<(), String> {
        let t = self.ty(x)?;
        if axis >= t.shape.len() || t.dtype == DType::Bool {
            return Err(format!("scan axis {axis} of {t}"));
        }
        same(out, t, "scan")
    }

    fn check_dot(
        &self,
        out: &TileType,
        a: ValueId,
        b: ValueId,
        acc: Option<ValueId>,
        (trans_a, trans_b): (bool, bool),
    ) -> R {
        let (ta, tb) = (self.ty(a)?, self.ty(b)?);
        if ta.shape.len() != 2
            || tb.shape.len() != 2
            || ta.dtype != tb.dtype
            || !ta.dtype.is_float()
        {
            return Err(format!("dot of {ta} and {tb}"));
        }
        let (m, ka) = if trans_a {
            (ta.shape[1], ta.shape[0])
        } else {
            (ta.shape[0], ta.shape[1])
        };
        let (kb, n) = if trans_b {
            (tb.shape[1], tb.shape[0])
        } else {
            (tb.shape[0], tb.shape[1])
        };
        if ka != kb {
            return Err(format!("dot inner dimensions {ka} and {kb}"));
        }
        let want = TileType::new(DType::F32, vec![m, n]);
        same(out, &want, "dot result")?;
        if let Some(acc) = acc {
            same(self.ty(acc)?, &want, "dot accumulator")?;
        }

        Ok(())
    }

    /// One i32 step per ranged axis at most: a fixed index has no step.
    fn check_steps(&self, extents: &[Option<usize>], steps: &[Option<ValueId>]) -> R {
        if steps.len() != extents.len() {
            return Err(format!(
                "{} steps for a slice of {} axes",
                steps.len(),
                extents.len()
            ));
        }
        for (d, (e, st)) in extents.iter().zip(steps).enumerate() {
            if let Some(st) = st {
                if e.is_none() {
                    return Err(format!("axis {d} is a fixed index but has step {st}"));
                }
                self.scalar_i32(*st)?;
            }
        }
        Ok(())
    }

    fn check_load(
        &self,
        out: &TileType,
        tensor: usize,
        starts: &[ValueId],
        extents: &[Option<usize>],
        steps: &[Option<ValueId>],
        mask: Option<ValueId>,
    ) -> R {
        let (dtype, rank, _) = self.tensor(tensor)?;
        let shape = &slice_shape(extents);
        if starts.len() != rank || extents.len() != rank {
            return Err(format!(
                "load of a rank-{rank} tensor with {} starts",
                starts.len()
            ));
        }
        starts.iter().try_for_each(|s| self.scalar_i32(*s))?;
        self.check_steps(extents, steps)?;
        same(out, &TileType::new(dtype, shape.clone()), "load")?;
        if let Some(m) = mask {
            same(
                self.ty(m)?,
                &TileType::new(DType::Bool, shape.clone()),
                "load mask",
            )?;
        }

        Ok(())
    }

    fn check_store(
        &self,
        tensor: usize,
        starts: &[ValueId],
        extents: &[Option<usize>],
        steps: &[Option<ValueId>],
        value: ValueId,
        mask: Option<ValueId>,
    ) -> R {
        let (dtype, rank, io) = self.tensor(tensor)?;
        if io == Io::In {
            return Err("store to an input tensor".into());
        }
        if starts.len() != rank || extents.len() != rank {
            return Err(format!(
                "store to a rank-{rank} tensor with {} starts",
                starts.len()
            ));
        }
        starts.iter().try_for_each(|s| self.scalar_i32(*s))?;
        self.check_steps(extents, steps)?;
        let t = self.ty(value)?;
        if t.dtype != dtype || t.shape != slice_shape(extents) {
            return Err(format!(
                "store of {t} into a {dtype} slice of shape {:?}",
                slice_shape(extents)
            ));
        }
        if let Some(m) = mask {
            same(
                self.ty(m)?,
                &TileType::new(DType::Bool, t.shape.clone()),
                "store mask",
            )?;
        }

        Ok(())
    }

    fn check_types(&self, op: &Op, out: &TileType) -> R {
        match op {
            Op::Const(l) => check_const(l, out)?,
            Op::ProgramId(a) | Op::NumPrograms(a) => {
                if *a >= self.k.grid.len() {
                    return Err(format!(
                        "program axis {a} outside a {}-D grid",
                        self.k.grid.len()
                    ));
                }
                same(out, &TileType::scalar(DType::I32), "program id")?;
            }
            Op::DimSize { tensor, axis } => {
                let (_, rank, _) = self.tensor(*tensor)?;
                if *axis >= rank {
                    return Err(format!("axis {axis} of a rank-{rank} tensor"));
                }
                same(out, &TileType::scalar(DType::I32), "dim")?;
            }
            Op::StrideSize { tensor, axis } => {
                let (_, rank, _) = self.tensor(*tensor)?;
                if *axis >= rank {
                    return Err(format!("stride axis {axis} of a rank-{rank} tensor"));
                }
                same(out, &TileType::scalar(DType::I32), "stride")?;
            }
            Op::ScalarParam(p) => match self.k.params.get(*p).map(|p| &p.kind) {
                Some(ParamKind::Scalar { dtype }) => same(out, &TileType::scalar(*dtype), "param")?,
                _ => return Err(format!("parameter {p} is not a scalar")),
            },
            Op::Iota(n) => same(out, &TileType::new(DType::I32, vec![*n]), "iota")?,
            Op::Splat { x, shape } => {
                let t = self.ty(*x)?;
                if !t.is_scalar() || t.dtype != out.dtype || &out.shape != shape {
                    return Err(format!("splat of {t} to {out}"));
                }
            }
            Op::Broadcast { x, shape } => {
                let t = self.ty(*x)?;
                let ok = t.dtype == out.dtype
                    && &out.shape == shape
                    && t.shape.len() == shape.len()
                    && t.shape.iter().zip(shape).all(|(a, b)| a == b || *a == 1);
                if !ok {
                    return Err(format!("broadcast of {t} to {out}"));
                }
            }
            Op::ExpandDims { x, axis } => {
                let t = self.ty(*x)?;
                let mut s = t.shape.clone();
                if *axis > s.len() {
                    return Err(format!("expand_dims axis {axis} of {t}"));
                }
                s.insert(*axis, 1);
                same(out, &TileType::new(t.dtype, s), "expand_dims")?;
            }
            Op::Trans { x } => {
                let t = self.ty(*x)?;
                if t.shape.len() != 2 {
                    return Err(format!("trans of {t}"));
                }
                same(
                    out,
                    &TileType::new(t.dtype, vec![t.shape[1], t.shape[0]]),
                    "trans",
                )?;
            }
            Op::Unary { op, x } => {
                let t = self.ty(*x)?;
                same(out, t, "unary result")?;
                let ok = match op {
                    UnaryOp::Not => t.dtype == DType::Bool,
                    UnaryOp::Neg | UnaryOp::Abs => t.dtype != DType::Bool,
                    _ => t.dtype.is_float(),
                };
                if !ok {
                    return Err(format!("{} of {t}", op.name()));
                }
            }
            Op::Binary { op, a, b } => {
                let (ta, tb) = (self.ty(*a)?, self.ty(*b)?);
                same(ta, tb, "binary operands")?;
                same(out, ta, "binary result")?;
                let logical = matches!(op, BinaryOp::And | BinaryOp::Or);
                if logical != (ta.dtype == DType::Bool) {
                    return Err(format!("{} of {ta}", op.name()));
                }
            }
            Op::Cmp { a, b, .. } => {
                let (ta, tb) = (self.ty(*a)?, self.ty(*b)?);
                same(ta, tb, "comparison operands")?;
                same(
                    out,
                    &TileType::new(DType::Bool, ta.shape.clone()),
                    "comparison result",
                )?;
            }
            Op::Select { cond, a, b } => {
                let (tc, ta, tb) = (self.ty(*cond)?, self.ty(*a)?, self.ty(*b)?);
                same(ta, tb, "select operands")?;
                same(out, ta, "select result")?;
                same(
                    tc,
                    &TileType::new(DType::Bool, ta.shape.clone()),
                    "select condition",
                )?;
            }
            Op::Cast { x, to } => {
                let t = self.ty(*x)?;
                same(out, &TileType::new(*to, t.shape.clone()), "cast")?;
            }
            Op::Reduce { x, axis, .. } => {
                let t = self.ty(*x)?;
                if *axis >= t.shape.len() {
                    return Err(format!("reduce axis {axis} of {t}"));
                }
                let mut s = t.shape.clone();
                s.remove(*axis);
                same(out, &TileType::new(t.dtype, s), "reduce")?;
            }
            Op::Scan { x, axis, .. } => self.check_scan(out, *x, *axis)?,
            Op::Dot {
                a,
                b,
                acc,
                trans_a,
                trans_b,
            } => self.check_dot(out, *a, *b, *acc, (*trans_a, *trans_b))?,
            Op::Load {
                tensor,
                starts,
                extents,
                steps,
                mask,
                ..
            } => self.check_load(out, *tensor, starts, extents, steps, *mask)?,
            Op::Store {
                tensor,
                starts,
                extents,
                steps,
                value,
                mask,
            } => self.check_store(*tensor, starts, extents, steps, *value, *mask)?,
            Op::For { .. } | Op::Yield(_) => {}
        }
        Ok(())
    }
}

/// Two types that must be equal, or the error saying what differed.
fn same(a: &TileType, b: &TileType, what: &str) -> R {
    if a == b {
        Ok(())
    } else {
        Err(format!("{what}: {a} vs {b}"))
    }
}

/// A literal must fit its result type.
fn check_const(l: &Literal, out: &TileType) -> R {
    let ok = match l {
        Literal::Int(_) => out.dtype == DType::I32,
        Literal::Float(_) => out.dtype.is_float(),
        Literal::Bool(_) => out.dtype == DType::Bool,
    };
    if !ok || !out.is_scalar() {
        return Err(format!("constant {l:?} typed {out}"));
    }
    Ok(())
}
