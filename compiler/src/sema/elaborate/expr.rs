//! Expressions: names, literals, unary and binary operators (folded while constant), and the
//! implicit splats and broadcasts that give operands one shape and dtype.

use crate::syntax::ast::{self, BinOp, ExprKind, Span, UnOp};
use crate::tir::{BinaryOp, CmpOp, DType, Literal, Op, TileType, UnaryOp, ValueId};

use super::{err, Elaborator, Res, Val};

impl Elaborator<'_> {
    /// An expression's value; a tile too large to hold is refused here, on its own span.
    pub(in crate::sema) fn expr(&mut self, e: &ast::Expr) -> Res<Val> {
        let v = self.expr_kind(e)?;
        self.check_tile_size(&v, e.span)?;
        Ok(v)
    }

    pub(in crate::sema) fn expr_kind(&mut self, e: &ast::Expr) -> Res<Val> {
        match &e.kind {
            ExprKind::Int(v) => {
                if *v > i32::MAX as i64 {
                    return Err(err(
                        e.span,
                        "integer literal does not fit in 32 bits",
                        "too large",
                    ));
                }
                Ok(Val::Int(*v))
            }
            ExprKind::Float(v) => {
                if !v.is_finite() {
                    return Err(err(
                        e.span,
                        "number literal out of range",
                        "not representable",
                    ));
                }
                Ok(Val::Float(*v))
            }
            ExprKind::Bool(b) => Ok(Val::Bool(*b)),
            ExprKind::Name(id) => {
                if let Some(d) = DType::parse(&id.name) {
                    if self.lookup(&id.name).is_none() {
                        return Ok(Val::Dtype(d));
                    }
                }
                self.name(id)
            }
            ExprKind::Unary(op, x) => {
                let v = self.expr(x)?;
                self.unary(*op, v, e.span)
            }
            ExprKind::Binary(op, a, b) => {
                let (va, vb) = (self.expr(a)?, self.expr(b)?);
                self.binary(*op, va, vb, a.span, b.span, e.span)
            }
            ExprKind::Call {
                func,
                type_args,
                args,
            } => self.call(func, type_args, args, e.span),
            ExprKind::Slice { tensor, .. } => Err(err(
                e.span,
                format!("a slice of `{tensor}` can only be loaded or stored"),
                "use load(...) or store(...)",
            )),
        }
    }

    /// Commits a value to IR. Folded constants become scalars of `hint` (or their natural type).
    pub(in crate::sema) fn materialize(
        &mut self,
        v: Val,
        hint: Option<DType>,
        span: Span,
    ) -> Res<ValueId> {
        let (lit, dtype) = match (v, hint) {
            (Val::Tile(v), _) => return Ok(v),
            (Val::Int(i), Some(d)) if d.is_float() => (Literal::Float(i as f64), d),
            (Val::Int(i), Some(DType::Bool)) => {
                return Err(err(
                    span,
                    format!("the integer {i} is used where a bool is expected"),
                    "not a bool",
                ))
            }
            (Val::Int(i), _) => (Literal::Int(i), DType::I32),
            (Val::Float(f), Some(d)) if d.is_float() => (Literal::Float(f), d),
            (Val::Float(f), Some(d)) => {
                return Err(err(
                    span,
                    format!("the number {f} is used where {d} is expected"),
                    format!("not {d}"),
                )
                .with_note("integers and floats do not mix implicitly; use cast<...>(...)"))
            }
            (Val::Float(f), None) => (Literal::Float(f), DType::F32),
            (Val::Bool(b), None | Some(DType::Bool)) => (Literal::Bool(b), DType::Bool),
            (Val::Bool(_), Some(d)) => {
                return Err(err(
                    span,
                    format!("a bool is used where {d} is expected"),
                    "bool here",
                ))
            }
            (Val::Dtype(d), _) => {
                return Err(err(
                    span,
                    format!("the type `{d}` is used as a value"),
                    "a type, not a value",
                ))
            }
            (Val::Tensor(t), _) => {
                return Err(err(
                    span,
                    format!("tensor `{}` is used as a value", self.params[t].name),
                    "a tensor",
                )
                .with_note("read it with load(t[start : +len, ...])"))
            }
        };
        Ok(self.emit(Op::Const(lit), TileType::scalar(dtype)))
    }

    /// Gives two operands one shape: scalars are splat, size-1 dimensions broadcast.
    pub(in crate::sema) fn unify(
        &mut self,
        a: Val,
        b: Val,
        sa: Span,
        sb: Span,
        whole: Span,
    ) -> Res<(ValueId, ValueId)> {
        let hint_of = |l: &Self, v: &Val| {
            if let Val::Tile(t) = v {
                Some(l.ty(*t).dtype)
            } else {
                None
            }
        };
        let ha = hint_of(self, &a);
        let hb = hint_of(self, &b);
        let va = self.materialize(a, hb, sa)?;
        let vb = self.materialize(b, ha.or(Some(self.ty(va).dtype)), sb)?;
        let (ta, tb) = (self.ty(va).clone(), self.ty(vb).clone());
        if ta.dtype != tb.dtype {
            return Err(err(
                whole,
                format!("mismatched element types: {} and {}", ta.dtype, tb.dtype),
                "operands differ",
            )
            .with_secondary(sa, format!("this is {ta}"))
            .with_secondary(sb, format!("this is {tb}"))
            .with_note("convert one side with cast<...>(...)"));
        }
        let shape = if ta.shape == tb.shape {
            return Ok((va, vb));
        } else if ta.is_scalar() {
            tb.shape.clone()
        } else if tb.is_scalar() {
            ta.shape.clone()
        } else if ta.shape.len() == tb.shape.len()
            && ta
                .shape
                .iter()
                .zip(&tb.shape)
                .all(|(x, y)| x == y || *x == 1 || *y == 1)
        {
            ta.shape
                .iter()
                .zip(&tb.shape)
                .map(|(x, y)| *x.max(y))
                .collect()
        } else {
            return Err(err(whole, format!("shapes {ta} and {tb} do not broadcast"), "incompatible shapes")
                .with_secondary(sa, format!("this is {ta}"))
                .with_secondary(sb, format!("this is {tb}"))
                .with_note("tiles of equal rank broadcast along size-1 dimensions; insert one with expand(x, axis)"));
        };
        let va = self.stretch(va, &shape);
        let vb = self.stretch(vb, &shape);
        Ok((va, vb))
    }

    pub(in crate::sema) fn stretch(&mut self, v: ValueId, shape: &[usize]) -> ValueId {
        let t = self.ty(v).clone();
        if t.shape == shape {
            v
        } else if t.is_scalar() {
            self.emit(
                Op::Splat {
                    x: v,
                    shape: shape.to_vec(),
                },
                TileType::new(t.dtype, shape.to_vec()),
            )
        } else {
            self.emit(
                Op::Broadcast {
                    x: v,
                    shape: shape.to_vec(),
                },
                TileType::new(t.dtype, shape.to_vec()),
            )
        }
    }

    pub(in crate::sema) fn unary(&mut self, op: UnOp, v: Val, span: Span) -> Res<Val> {
        match (op, v) {
            (UnOp::Neg, Val::Int(i)) => Ok(Val::Int(-i)),
            (UnOp::Neg, Val::Float(f)) => Ok(Val::Float(-f)),
            (UnOp::Not, Val::Bool(b)) => Ok(Val::Bool(!b)),
            (op, v) => {
                let x = self.materialize(v, None, span)?;
                let t = self.ty(x).clone();
                let (uop, ok) = match op {
                    UnOp::Neg => (UnaryOp::Neg, t.dtype != DType::Bool),
                    UnOp::Not => (UnaryOp::Not, t.dtype == DType::Bool),
                };
                if !ok {
                    let sym = if op == UnOp::Neg { "-" } else { "!" };
                    return Err(err(
                        span,
                        format!("`{sym}` does not apply to {t}"),
                        "wrong element type",
                    ));
                }
                Ok(Val::Tile(self.emit(Op::Unary { op: uop, x }, t)))
            }
        }
    }

    pub(in crate::sema) fn binary(
        &mut self,
        op: BinOp,
        a: Val,
        b: Val,
        sa: Span,
        sb: Span,
        whole: Span,
    ) -> Res<Val> {
        if let Some(v) = fold(op, &a, &b, whole)? {
            return Ok(v);
        }
        let zero_divisor = matches!(b, Val::Int(0));
        let (va, vb) = self.unify(a, b, sa, sb, whole)?;
        let t = self.ty(va).clone();
        if zero_divisor && t.dtype == DType::I32 && matches!(op, BinOp::Div | BinOp::Rem) {
            // Refused here so that the interpreter and the GPU cannot disagree on it at run time.
            return Err(err(
                sb,
                format!("integer `{}` by zero", op.symbol()),
                "this divisor is 0",
            ));
        }
        let cmp = |o| Some(o);
        let (bop, cop) = match op {
            BinOp::Add => (Some(BinaryOp::Add), None),
            BinOp::Sub => (Some(BinaryOp::Sub), None),
            BinOp::Mul => (Some(BinaryOp::Mul), None),
            BinOp::Div => (Some(BinaryOp::Div), None),
            BinOp::Rem => (Some(BinaryOp::Rem), None),
            BinOp::And => (Some(BinaryOp::And), None),
            BinOp::Or => (Some(BinaryOp::Or), None),
            BinOp::Eq => (None, cmp(CmpOp::Eq)),
            BinOp::Ne => (None, cmp(CmpOp::Ne)),
            BinOp::Lt => (None, cmp(CmpOp::Lt)),
            BinOp::Le => (None, cmp(CmpOp::Le)),
            BinOp::Gt => (None, cmp(CmpOp::Gt)),
            BinOp::Ge => (None, cmp(CmpOp::Ge)),
        };
        let logical = matches!(op, BinOp::And | BinOp::Or);
        let bad = if logical {
            t.dtype != DType::Bool
        } else {
            t.dtype == DType::Bool && cop.is_none()
        };
        if bad || (cop.is_some() && t.dtype == DType::Bool && !matches!(op, BinOp::Eq | BinOp::Ne))
        {
            return Err(err(
                whole,
                format!("`{}` does not apply to {}", op.symbol(), t.dtype),
                "wrong element type",
            ));
        }
        Ok(Val::Tile(match (bop, cop) {
            (Some(op), _) => self.emit(Op::Binary { op, a: va, b: vb }, t),
            (None, Some(op)) => self.emit(
                Op::Cmp { op, a: va, b: vb },
                TileType::new(DType::Bool, t.shape),
            ),
            (None, None) => unreachable!("every operator is arithmetic or a comparison"),
        }))
    }
}

/// Folds an operator over two compile-time operands; None when either is a tile.
fn fold(op: BinOp, a: &Val, b: &Val, span: Span) -> Res<Option<Val>> {
    let overflow = || {
        err(
            span,
            "compile-time integer arithmetic overflows",
            "overflows i32",
        )
    };
    Ok(Some(match (a, b) {
        (Val::Int(x), Val::Int(y)) => {
            let (x, y) = (*x, *y);
            let v = match op {
                BinOp::Add => x.checked_add(y),
                BinOp::Sub => x.checked_sub(y),
                BinOp::Mul => x.checked_mul(y),
                BinOp::Div | BinOp::Rem if y == 0 => {
                    return Err(err(
                        span,
                        "division by zero in a compile-time expression",
                        "divides by zero",
                    ))
                }
                BinOp::Div => x.checked_div(y),
                BinOp::Rem => x.checked_rem(y),
                BinOp::Eq => return Ok(Some(Val::Bool(x == y))),
                BinOp::Ne => return Ok(Some(Val::Bool(x != y))),
                BinOp::Lt => return Ok(Some(Val::Bool(x < y))),
                BinOp::Le => return Ok(Some(Val::Bool(x <= y))),
                BinOp::Gt => return Ok(Some(Val::Bool(x > y))),
                BinOp::Ge => return Ok(Some(Val::Bool(x >= y))),
                BinOp::And | BinOp::Or => {
                    return Err(err(
                        span,
                        format!("`{}` needs bools, not integers", op.symbol()),
                        "integers here",
                    ))
                }
            };
            match v {
                Some(v) if (i32::MIN as i64..=i32::MAX as i64).contains(&v) => Val::Int(v),
                _ => return Err(overflow()),
            }
        }
        (Val::Float(_), Val::Float(_))
        | (Val::Int(_), Val::Float(_))
        | (Val::Float(_), Val::Int(_)) => {
            let f = |v: &Val| match v {
                Val::Int(i) => *i as f64,
                Val::Float(f) => *f,
                _ => 0.0,
            };
            let (x, y) = (f(a), f(b));
            match op {
                BinOp::Add => Val::Float(x + y),
                BinOp::Sub => Val::Float(x - y),
                BinOp::Mul => Val::Float(x * y),
                BinOp::Div => Val::Float(x / y),
                BinOp::Rem => Val::Float(x % y),
                BinOp::Eq => Val::Bool(x == y),
                BinOp::Ne => Val::Bool(x != y),
                BinOp::Lt => Val::Bool(x < y),
                BinOp::Le => Val::Bool(x <= y),
                BinOp::Gt => Val::Bool(x > y),
                BinOp::Ge => Val::Bool(x >= y),
                BinOp::And | BinOp::Or => {
                    return Err(err(
                        span,
                        format!("`{}` needs bools, not numbers", op.symbol()),
                        "numbers here",
                    ))
                }
            }
        }
        (Val::Bool(x), Val::Bool(y)) => match op {
            BinOp::And => Val::Bool(*x && *y),
            BinOp::Or => Val::Bool(*x || *y),
            BinOp::Eq => Val::Bool(x == y),
            BinOp::Ne => Val::Bool(x != y),
            _ => {
                return Err(err(
                    span,
                    format!("`{}` does not apply to bools", op.symbol()),
                    "bools here",
                ))
            }
        },
        (Val::Dtype(x), Val::Dtype(y)) => match op {
            BinOp::Eq => Val::Bool(x == y),
            BinOp::Ne => Val::Bool(x != y),
            _ => {
                return Err(err(
                    span,
                    format!("`{}` does not apply to types", op.symbol()),
                    "types here",
                ))
            }
        },
        _ => return Ok(None),
    }))
}
