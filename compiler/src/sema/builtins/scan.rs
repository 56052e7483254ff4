//! `cumsum(x, axis = k)` and `cumprod(x, axis = k)`: inclusive scans along one axis of a tile.

use crate::sema::elaborate::{Elaborator, Res, Val};
use crate::syntax::ast::{self, Span};
use crate::tir::{Op, ScanOp};

impl Elaborator<'_> {
    pub(super) fn scan(&mut self, func: &ast::Ident, args: &[ast::Arg], span: Span) -> Res<Val> {
        let (x, t, axis) = self.along_axis(func, args, span, ("scans", "cannot scan"))?;
        let op = if func.name == "cumsum" {
            ScanOp::Sum
        } else {
            ScanOp::Prod
        };
        Ok(Val::Tile(self.emit(Op::Scan { op, x, axis }, t)))
    }
}
