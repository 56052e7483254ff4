//! Statements: `let`, `var`, assignment, `if` on constants, `for` loops with carried values.

use crate::syntax::ast::{self, ExprKind, Span, Stmt};
use crate::tir::{self, DType, Inst, Literal, Op, TileType, ValueId};
use std::collections::HashMap;

use super::{err, Binding, Elaborator, Res, Val};

impl Elaborator<'_> {
    pub(in crate::sema) fn block(&mut self, b: &ast::Block) -> Res<()> {
        self.scopes.push(HashMap::new());
        let r = b.stmts.iter().try_for_each(|s| self.stmt(s));
        self.scopes.pop();
        r
    }

    pub(in crate::sema) fn stmt(&mut self, s: &Stmt) -> Res<()> {
        match s {
            Stmt::Let { name, value, .. } => {
                let v = self.expr(value)?;
                let b = match v {
                    Val::Tile(v) => Binding::Value {
                        v,
                        mutable: false,
                        span: name.span,
                    },
                    Val::Tensor(_) => {
                        return Err(err(
                            value.span,
                            "a tensor cannot be bound with `let`",
                            "use the parameter's name directly",
                        ))
                    }
                    c => Binding::Const(c),
                };
                self.bind(&name.name, b);
            }
            Stmt::Var { name, value, .. } => {
                let v = self.expr(value)?;
                let v = self.materialize(v, None, value.span)?;
                self.bind(
                    &name.name,
                    Binding::Value {
                        v,
                        mutable: true,
                        span: name.span,
                    },
                );
            }
            Stmt::Assign { name, value, span } => {
                let (old, _) = self.mutable_var(name)?;
                let v = self.expr(value)?;
                let want = self.ty(old).clone();
                let v = self.materialize(v, Some(want.dtype), value.span)?;
                if *self.ty(v) != want {
                    return Err(err(
                        *span,
                        format!("`{name}` holds {want}, but this assigns {}", self.ty(v)),
                        "type changes here",
                    )
                    .with_note("a variable keeps the type and shape it was declared with"));
                }
                self.set_var(&name.name, v);
            }
            Stmt::For {
                var,
                lo,
                hi,
                step,
                body,
                ..
            } => self.for_loop(var, lo, hi, step.as_deref(), body)?,
            Stmt::If {
                cond,
                then,
                otherwise,
                ..
            } => match self.expr(cond)? {
                Val::Bool(true) => self.block(then)?,
                Val::Bool(false) => {
                    if let Some(b) = otherwise {
                        self.block(b)?
                    }
                }
                _ => {
                    return Err(err(
                        cond.span,
                        "`if` needs a condition known at compile time",
                        "depends on run-time values",
                    )
                    .with_note(
                        "use `where(cond, a, b)` or a masked load/store for run-time choices",
                    ))
                }
            },
            Stmt::Expr(e) => {
                let is_store =
                    matches!(&e.kind, ExprKind::Call { func, .. } if func.name == "store");
                if !is_store {
                    return Err(err(
                        e.span,
                        "this expression's value is never used",
                        "unused value",
                    )
                    .with_note("bind it with `let`, or `store` it"));
                }
                self.expr(e)?;
            }
        }
        Ok(())
    }

    pub(in crate::sema) fn mutable_var(&self, name: &ast::Ident) -> Res<(ValueId, Span)> {
        match self.lookup(&name.name) {
            Some(Binding::Value {
                v,
                mutable: true,
                span,
            }) => Ok((*v, *span)),
            Some(Binding::Value { span, .. }) => Err(err(
                name.span,
                format!("`{name}` cannot be assigned"),
                "assigned here",
            )
            .with_secondary(
                *span,
                "declared with `let`; use `var` to make it assignable",
            )),
            Some(_) => Err(err(
                name.span,
                format!("`{name}` cannot be assigned"),
                "not a variable",
            )),
            None => Err(self.unknown_name(name)),
        }
    }

    pub(in crate::sema) fn set_var(&mut self, name: &str, v: ValueId) {
        for scope in self.scopes.iter_mut().rev() {
            if let Some(Binding::Value { v: slot, .. }) = scope.get_mut(name) {
                *slot = v;
                return;
            }
        }
    }

    /// Names assigned anywhere inside `b` (nested blocks included).
    pub(in crate::sema) fn assigned(b: &ast::Block, out: &mut Vec<String>) {
        for s in &b.stmts {
            match s {
                Stmt::Assign { name, .. } if !out.contains(&name.name) => {
                    out.push(name.name.clone())
                }
                Stmt::For { body, .. } => Self::assigned(body, out),
                Stmt::If {
                    then, otherwise, ..
                } => {
                    Self::assigned(then, out);
                    if let Some(o) = otherwise {
                        Self::assigned(o, out);
                    }
                }
                _ => {}
            }
        }
    }

    pub(in crate::sema) fn for_loop(
        &mut self,
        var: &ast::Ident,
        lo: &ast::Expr,
        hi: &ast::Expr,
        step: Option<&ast::Expr>,
        body: &ast::Block,
    ) -> Res<()> {
        let bound = |l: &mut Self, e: &ast::Expr| -> Res<ValueId> {
            let v = l.expr(e)?;
            let v = l.materialize(v, Some(DType::I32), e.span)?;
            if *l.ty(v) != TileType::scalar(DType::I32) {
                return Err(err(
                    e.span,
                    format!("loop bounds must be i32 scalars, this is {}", l.ty(v)),
                    "not an i32 scalar",
                ));
            }
            Ok(v)
        };
        if let Some(s) = step {
            if let Val::Int(i) = self.expr(s)? {
                if i <= 0 {
                    return Err(err(s.span, "a loop step must be positive", "not positive"));
                }
            }
        }
        let lo_v = bound(self, lo)?;
        let hi_v = bound(self, hi)?;
        let step_v = match step {
            Some(s) => bound(self, s)?,
            None => self.emit(Op::Const(Literal::Int(1)), TileType::scalar(DType::I32)),
        };
        // Variables of enclosing scopes assigned in the body are carried through the loop.
        let mut names = Vec::new();
        Self::assigned(body, &mut names);
        let carried: Vec<(String, ValueId)> = names
            .into_iter()
            .filter_map(|n| match self.lookup(&n) {
                Some(Binding::Value {
                    v, mutable: true, ..
                }) => Some((n, *v)),
                _ => None,
            })
            .collect();
        let iv = self.new_value(TileType::scalar(DType::I32));
        let mut args = vec![iv];
        self.scopes.push(HashMap::new());
        self.bind(
            &var.name,
            Binding::Value {
                v: iv,
                mutable: false,
                span: var.span,
            },
        );
        for (name, init) in &carried {
            let a = self.new_value(self.ty(*init).clone());
            args.push(a);
            let span = match self.scopes.iter().rev().skip(1).find_map(|s| s.get(name)) {
                Some(Binding::Value { span, .. }) => *span,
                _ => var.span,
            };
            self.bind(
                name,
                Binding::Value {
                    v: a,
                    mutable: true,
                    span,
                },
            );
        }
        self.blocks.push(Vec::new());
        let r = self.block(body);
        let yielded: Vec<ValueId> = carried
            .iter()
            .map(|(n, _)| match self.scopes.last().and_then(|s| s.get(n)) {
                Some(Binding::Value { v, .. }) => *v,
                _ => unreachable!("carried variables are bound in the loop scope"),
            })
            .collect();
        self.emit_void(Op::Yield(yielded));
        let insts = self.blocks.pop().expect("loop block pushed above");
        self.scopes.pop();
        r?;
        let results: Vec<ValueId> = carried
            .iter()
            .map(|(_, init)| self.new_value(self.ty(*init).clone()))
            .collect();
        self.blocks.last_mut().expect("a block is open").push(Inst {
            results: results.clone(),
            op: Op::For {
                lo: lo_v,
                hi: hi_v,
                step: step_v,
                inits: carried.iter().map(|(_, v)| *v).collect(),
                body: tir::Block { args, insts },
            },
        });
        for ((name, _), r) in carried.iter().zip(results) {
            self.set_var(name, r);
        }
        Ok(())
    }

    // ---- expressions ----------------------------------------------------------------------
}
