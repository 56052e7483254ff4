//! The built-ins that move or multiply whole tiles: `dot`, `trans`, `expand`, `broadcast`.

use super::{err, Args, Elaborator, Res, Val};
use crate::syntax::ast::{self, Span};
use crate::tir::{DType, Op, TileType};

impl Elaborator<'_> {
    /// `dot(a, b, acc?, trans_a, trans_b)`: a matrix product accumulated in f32.
    pub(super) fn dot_call(
        &mut self,
        func: &ast::Ident,
        args: &[ast::Arg],
        span: Span,
    ) -> Res<Val> {
        let a = Args::new(func, args, &["trans_a", "trans_b"], 2..=3, span)?;
        let x = self.tile(&a.positional[0].value)?;
        let y = self.tile(&a.positional[1].value)?;
        let trans_a = match a.named("trans_a") {
            Some(t) => self.const_bool(&t.value, "trans_a")?,
            None => false,
        };
        let trans_b = match a.named("trans_b") {
            Some(t) => self.const_bool(&t.value, "trans_b")?,
            None => false,
        };
        let (tx, ty) = (self.ty(x).clone(), self.ty(y).clone());
        for (t, p) in [(&tx, a.positional[0]), (&ty, a.positional[1])] {
            if t.shape.len() != 2 || !t.dtype.is_float() {
                return Err(err(
                    p.span,
                    format!("`dot` multiplies 2-D float tiles, this is {t}"),
                    "not a 2-D float tile",
                ));
            }
        }
        if tx.dtype != ty.dtype {
            return Err(err(
                span,
                format!(
                    "`dot` operands must have one element type: {} and {}",
                    tx.dtype, ty.dtype
                ),
                "mixed element types",
            )
            .with_note("cast one operand, e.g. cast<bf16>(p)"));
        }
        let (m, k1) = if trans_a {
            (tx.shape[1], tx.shape[0])
        } else {
            (tx.shape[0], tx.shape[1])
        };
        let (k2, n) = if trans_b {
            (ty.shape[1], ty.shape[0])
        } else {
            (ty.shape[0], ty.shape[1])
        };
        if k1 != k2 {
            return Err(err(
                span,
                format!(
                    "`dot` of {}×{} by {}×{}: inner dimensions {k1} and {k2} differ",
                    m, k1, k2, n
                ),
                "shape mismatch",
            )
            .with_secondary(
                a.positional[0].span,
                format!("this is {tx}{}", if trans_a { ", transposed" } else { "" }),
            )
            .with_secondary(
                a.positional[1].span,
                format!("this is {ty}{}", if trans_b { ", transposed" } else { "" }),
            ));
        }
        let out = TileType::new(DType::F32, vec![m, n]);
        let acc = match a.positional.get(2) {
            Some(p) => {
                let acc = self.tile(&p.value)?;
                if *self.ty(acc) != out {
                    return Err(err(
                        p.span,
                        format!("the accumulator must be {out}, this is {}", self.ty(acc)),
                        "wrong accumulator",
                    ));
                }
                Some(acc)
            }
            None => None,
        };
        Ok(Val::Tile(self.emit(
            Op::Dot {
                a: x,
                b: y,
                acc,
                trans_a,
                trans_b,
            },
            out,
        )))
    }

    /// `trans(x)`: the 2-D transpose.
    pub(super) fn trans_call(
        &mut self,
        func: &ast::Ident,
        args: &[ast::Arg],
        span: Span,
    ) -> Res<Val> {
        let a = Args::new(func, args, &[], 1..=1, span)?;
        let x = self.tile(&a.positional[0].value)?;
        let t = self.ty(x).clone();
        if t.shape.len() != 2 {
            return Err(err(
                a.positional[0].span,
                format!("`trans` needs a 2-D tile, this is {t}"),
                "not 2-D",
            ));
        }
        Ok(Val::Tile(self.emit(
            Op::Trans { x },
            TileType::new(t.dtype, vec![t.shape[1], t.shape[0]]),
        )))
    }

    /// `expand(x, axis)`: a size-1 dimension inserted before `axis`.
    pub(super) fn expand_call(
        &mut self,
        func: &ast::Ident,
        args: &[ast::Arg],
        span: Span,
    ) -> Res<Val> {
        let a = Args::new(func, args, &[], 2..=2, span)?;
        let x = self.tile(&a.positional[0].value)?;
        let t = self.ty(x).clone();
        let axis = self.axis(&a.positional[1].value, t.shape.len(), 1)?;
        let mut shape = t.shape.clone();
        shape.insert(axis, 1);
        Ok(Val::Tile(self.emit(
            Op::ExpandDims { x, axis },
            TileType::new(t.dtype, shape),
        )))
    }

    /// `broadcast(x, d0, d1, ...)`: size-1 dimensions stretched.
    pub(super) fn broadcast_call(
        &mut self,
        func: &ast::Ident,
        args: &[ast::Arg],
        span: Span,
    ) -> Res<Val> {
        let a = Args::new(func, args, &[], 2..=9, span)?;
        let x = self.tile(&a.positional[0].value)?;
        let shape = a.positional[1..]
            .iter()
            .map(|p| self.extent(&p.value))
            .collect::<Res<Vec<_>>>()?;
        let t = self.ty(x).clone();
        let ok = t.is_scalar()
            || (t.shape.len() == shape.len()
                && t.shape.iter().zip(&shape).all(|(a, b)| a == b || *a == 1));
        if !ok {
            return Err(err(
                span,
                format!(
                    "{t} cannot broadcast to [{}]",
                    shape
                        .iter()
                        .map(|d| d.to_string())
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
                "incompatible shape",
            ));
        }
        Ok(Val::Tile(self.stretch(x, &shape)))
    }
}
