//! `requires`: a kernel's launch-time conditions on shapes and constants (`requires N <= BN`).
//!
//! A kernel often computes the right thing only for some shapes (softmax.tsl's one-tile rows need
//! N ≤ BN); without a stated requirement, a call outside them runs and silently leaves results
//! unwritten. Each condition is a comparison of two launch-time integers (the language of grid
//! extents). One that folds to a constant is decided here, against the source; the rest go into
//! the Tile IR, and from there into the package manifest, where the interpreter and the runtime
//! check them before every launch.

use super::elaborate::{err, Elaborator, Res};
use crate::syntax::ast::{BinOp, ExprKind};
use crate::tir::{Cmp, ConstValue, Requirement};

/// How `shape_expr` names a requirement's sides in its errors.
const SIDE: (&str, &str) = ("requirements", "a requirement");

impl Elaborator<'_> {
    /// The kernel's requirements that depend on shapes; fails on one that the constants (`consts`,
    /// as bound) already decide against.
    pub(super) fn requirements(
        &mut self,
        consts: &[(String, ConstValue)],
    ) -> Res<Vec<Requirement>> {
        let mut out = Vec::new();
        for e in &self.kernel.requires {
            let ExprKind::Binary(op, a, b) = &e.kind else {
                return Err(not_a_comparison(e.span));
            };
            let cmp = match op {
                BinOp::Lt => Cmp::Lt,
                BinOp::Le => Cmp::Le,
                BinOp::Gt => Cmp::Gt,
                BinOp::Ge => Cmp::Ge,
                BinOp::Eq => Cmp::Eq,
                BinOp::Ne => Cmp::Ne,
                _ => return Err(not_a_comparison(e.span)),
            };
            let r = Requirement {
                lhs: self.shape_expr(a, SIDE)?,
                cmp,
                rhs: self.shape_expr(b, SIDE)?,
            };
            if !r.symbols().is_empty() {
                out.push(r);
                continue;
            }
            // Constants only: decided now, with the folded values in the message.
            match r.holds(&|_| None) {
                Some(true) => {}
                Some(false) => {
                    let consts: Vec<String> = consts
                        .iter()
                        .filter(|(n, _)| mentions(e, n))
                        .map(|(n, v)| format!("{n} = {v}"))
                        .collect();
                    let mut d = err(
                        e.span,
                        format!("this requirement is false: `{r}`"),
                        "does not hold",
                    );
                    if !consts.is_empty() {
                        d = d.with_note(format!("with {}", consts.join(", ")));
                    }
                    return Err(d);
                }
                None => {
                    return Err(err(
                        e.span,
                        format!("requirement `{r}` cannot be evaluated"),
                        "overflows or divides by zero",
                    ))
                }
            }
        }
        Ok(out)
    }
}

fn not_a_comparison(span: crate::syntax::ast::Span) -> crate::diag::Diagnostic {
    err(
        span,
        "a requirement must be a comparison",
        "expected `A < B`, `A <= B`, `A == B`, ...",
    )
    .with_note("write several requirements separated by commas, not with `&&`")
}

/// Whether `name` appears anywhere in `e`.
fn mentions(e: &crate::syntax::ast::Expr, name: &str) -> bool {
    match &e.kind {
        ExprKind::Name(id) => id.name == name,
        ExprKind::Unary(_, x) => mentions(x, name),
        ExprKind::Binary(_, a, b) => mentions(a, name) || mentions(b, name),
        ExprKind::Call { args, .. } => args.iter().any(|a| mentions(&a.value, name)),
        _ => false,
    }
}
