//! `cumsum(x, axis = k)` and `cumprod(x, axis = k)`: inclusive scans along one axis of a tile.

use super::Args;
use crate::sema::elaborate::{err, Elaborator, Res, Val};
use crate::syntax::ast::{self, Span};
use crate::tir::{DType, Op, ScanOp};

impl Elaborator<'_> {
    pub(super) fn scan(&mut self, func: &ast::Ident, args: &[ast::Arg], span: Span) -> Res<Val> {
        let a = Args::new(func, args, &["axis"], 1..=1, span)?;
        let x = self.tile(&a.positional[0].value)?;
        let t = self.ty(x).clone();
        if t.dtype == DType::Bool || t.is_scalar() {
            return Err(err(
                a.positional[0].span,
                format!("`{func}` scans a numeric tile, this is {t}"),
                "cannot scan",
            ));
        }
        // The axis is required even for 1-D tiles, as for `sum`, so a scan always says which way
        // it runs.
        let axis_arg = a.named("axis").ok_or_else(|| {
            err(
                span,
                format!("`{func}` of a tile needs `axis = k`"),
                "which axis?",
            )
        })?;
        let axis = self.axis(&axis_arg.value, t.shape.len(), 0)?;
        let op = if func.name == "cumsum" {
            ScanOp::Sum
        } else {
            ScanOp::Prod
        };
        Ok(Val::Tile(self.emit(Op::Scan { op, x, axis }, t)))
    }
}
