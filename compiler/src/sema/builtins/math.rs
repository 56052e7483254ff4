//! The elementwise and reducing built-ins: math functions, `sum`/`max`/`min`, `where`.

use super::{err, Args, Elaborator, Res, Val};
use crate::syntax::ast::{self, Span};
use crate::tir::{BinaryOp, DType, Op, ReduceOp, TileType, ValueId};

use super::unary_function;

impl Elaborator<'_> {
    /// `exp(x)`, `rsqrt(x)`, ...: the unary ops of Tile IR's table that the language spells as functions.
    pub(super) fn unary_call(
        &mut self,
        func: &ast::Ident,
        args: &[ast::Arg],
        span: Span,
    ) -> Res<Val> {
        let name = func.name.as_str();
        let a = Args::new(func, args, &[], 1..=1, span)?;
        let x = if name == "abs" {
            self.tile(&a.positional[0].value)?
        } else {
            self.float_tile(&a.positional[0].value, func)?
        };
        let t = self.ty(x).clone();
        if name == "abs" && t.dtype == DType::Bool {
            return Err(err(
                span,
                "`abs` does not apply to bool",
                "wrong element type",
            ));
        }
        let op = unary_function(name).expect("matched by the arm's guard");
        Ok(Val::Tile(self.emit(Op::Unary { op, x }, t)))
    }

    /// `sum(x, axis = k)`, `max(x, axis = k)`, and the elementwise `max(a, b)` / `min(a, b)`.
    pub(super) fn reduce_call(
        &mut self,
        func: &ast::Ident,
        args: &[ast::Arg],
        span: Span,
    ) -> Res<Val> {
        let name = func.name.as_str();
        let reduce = args
            .iter()
            .any(|a| a.name.as_ref().is_some_and(|n| n.name == "axis"));
        if reduce || name == "sum" {
            if name == "min" {
                return Err(err(
                    span,
                    "`min` has no reduction form; use -max(-x, axis = k)",
                    "not a reduction",
                ));
            }
            let (x, t, axis) = self.along_axis(func, args, span, ("reduces", "cannot reduce"))?;
            let mut shape = t.shape.clone();
            shape.remove(axis);
            let op = if name == "sum" {
                ReduceOp::Sum
            } else {
                ReduceOp::Max
            };
            return Ok(Val::Tile(
                self.emit(Op::Reduce { op, x, axis }, TileType::new(t.dtype, shape)),
            ));
        }
        let a = Args::new(func, args, &[], 2..=2, span)?;
        let (pa, pb) = (&a.positional[0], &a.positional[1]);
        let (va, vb) = (self.expr(&pa.value)?, self.expr(&pb.value)?);
        match (&va, &vb) {
            (Val::Int(x), Val::Int(y)) => {
                return Ok(Val::Int(if name == "max" { *x.max(y) } else { *x.min(y) }))
            }
            (Val::Float(x), Val::Float(y)) => {
                return Ok(Val::Float(if name == "max" {
                    x.max(*y)
                } else {
                    x.min(*y)
                }))
            }
            _ => {}
        }
        let (x, y) = self.unify(va, vb, pa.span, pb.span, span)?;
        if self.ty(x).dtype == DType::Bool {
            return Err(err(
                span,
                format!("`{func}` does not apply to bool"),
                "wrong element type",
            ));
        }
        let op = if name == "max" {
            BinaryOp::Max
        } else {
            BinaryOp::Min
        };
        let t = self.ty(x).clone();
        Ok(Val::Tile(self.emit(Op::Binary { op, a: x, b: y }, t)))
    }

    /// `where(cond, a, b)`: an elementwise select, operands broadcast to one shape.
    pub(super) fn where_call(
        &mut self,
        func: &ast::Ident,
        args: &[ast::Arg],
        span: Span,
    ) -> Res<Val> {
        let a = Args::new(func, args, &[], 3..=3, span)?;
        let c = self.tile(&a.positional[0].value)?;
        if self.ty(c).dtype != DType::Bool {
            return Err(err(
                a.positional[0].span,
                format!(
                    "the condition of `where` must be bool, this is {}",
                    self.ty(c)
                ),
                "not bool",
            ));
        }
        let (va, vb) = (
            self.expr(&a.positional[1].value)?,
            self.expr(&a.positional[2].value)?,
        );
        let (x, y) = self.unify(va, vb, a.positional[1].span, a.positional[2].span, span)?;
        // The condition and both values broadcast together.
        let cv = Val::Tile(c);
        let (c2, x2) = self.unify_shapes(cv, x, a.positional[0].span, span)?;
        let (c3, y2) = self.unify_shapes(Val::Tile(c2), y, a.positional[0].span, span)?;
        let (x3, _) = self.unify(Val::Tile(x2), Val::Tile(y2), span, span, span)?;
        let t = self.ty(x3).clone();
        let cond = self.stretch(c3, &t.shape);
        let y3 = self.stretch(y2, &t.shape);
        Ok(Val::Tile(self.emit(Op::Select { cond, a: x3, b: y3 }, t)))
    }

    /// Broadcasts a bool condition against a value tile.
    pub(super) fn unify_shapes(
        &mut self,
        c: Val,
        x: ValueId,
        cspan: Span,
        span: Span,
    ) -> Res<(ValueId, ValueId)> {
        let c = self.materialize(c, Some(DType::Bool), cspan)?;
        let (tc, tx) = (self.ty(c).clone(), self.ty(x).clone());
        if tc.shape == tx.shape {
            return Ok((c, x));
        }
        let shape: Vec<usize> = if tc.is_scalar() {
            tx.shape.clone()
        } else if tx.is_scalar() {
            tc.shape.clone()
        } else if tc.shape.len() == tx.shape.len()
            && tc
                .shape
                .iter()
                .zip(&tx.shape)
                .all(|(a, b)| a == b || *a == 1 || *b == 1)
        {
            tc.shape
                .iter()
                .zip(&tx.shape)
                .map(|(a, b)| *a.max(b))
                .collect()
        } else {
            return Err(err(
                span,
                format!("condition {tc} and value {tx} do not broadcast"),
                "incompatible shapes",
            ));
        };
        Ok((self.stretch(c, &shape), self.stretch(x, &shape)))
    }
}
