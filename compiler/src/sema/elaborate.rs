//! Elaboration: one kernel's AST → specialised Tile IR (names resolved, constants folded, every
//! value typed).

use std::collections::{HashMap, HashSet};

use super::Overrides;
use crate::diag::Diagnostic;
use crate::syntax::ast::{self, BinOp, ExprKind, Span, Stmt, UnOp};
use crate::tir::{
    self, BinaryOp, CmpOp, ConstValue, DType, Inst, Literal, Op, ParamKind, ShapeExpr, TileType,
    UnaryOp, ValueId,
};

pub(super) type Res<T> = Result<T, Diagnostic>;

/// What an expression evaluates to before it is committed to IR. Literals and compile-time
/// arithmetic stay folded (`Int`, `Float`, `Bool`) until they meet a tile, which gives them a type.
#[derive(Debug, Clone)]
pub(super) enum Val {
    Tile(ValueId),
    Int(i64),
    Float(f64),
    Bool(bool),
    Dtype(DType),
    Tensor(usize),
}

#[derive(Debug, Clone)]
enum Binding {
    Value {
        v: ValueId,
        mutable: bool,
        span: Span,
    },
    Const(Val),
    Tensor(usize),
    /// A shape symbol: the run-time extent (or, with `stride`, the stride) of a tensor's `axis`.
    Dim {
        tensor: usize,
        axis: usize,
        stride: bool,
    },
    Scalar(usize),
}

pub(super) struct Elaborator<'a> {
    pub(super) kernel: &'a ast::Kernel,
    pub(super) types: Vec<TileType>,
    /// Open blocks, innermost last; index 0 is the kernel body.
    blocks: Vec<Vec<Inst>>,
    scopes: Vec<HashMap<String, Binding>>,
    pub(super) params: Vec<tir::Param>,
    /// Values hoisted into the entry block (shape reads, scalar params), by binding.
    hoisted: HashMap<String, ValueId>,
    pub(super) grid_rank: usize,
}

pub(super) fn err(span: Span, message: impl Into<String>, label: impl Into<String>) -> Diagnostic {
    Diagnostic::error(message, span, label)
}

/// Lowers one kernel, specialised with its defaults overridden by `overrides`.
pub fn elaborate_kernel(k: &ast::Kernel, overrides: &Overrides) -> Res<tir::Kernel> {
    let mut l = Elaborator {
        kernel: k,
        types: Vec::new(),
        blocks: vec![Vec::new()],
        scopes: vec![HashMap::new()],
        params: Vec::new(),
        hoisted: HashMap::new(),
        grid_rank: k.grid.len(),
    };
    let consts = l.bind_consts(overrides)?;
    let attrs = l.attributes()?;
    l.bind_params()?;
    let grid = l.grid()?;
    l.block(&k.body)?;
    let body = tir::Block {
        args: Vec::new(),
        insts: l.blocks.pop().unwrap_or_default(),
    };
    let kernel = tir::Kernel {
        name: k.name.name.clone(),
        consts,
        attrs,
        params: l.params,
        grid,
        body,
        types: l.types,
    };
    tir::verify(&kernel).map_err(|e| {
        err(
            k.span,
            "internal compiler error: invalid Tile IR",
            e.to_string(),
        )
        .with_note("this is a bug in tessel; please report it with this kernel")
    })?;
    Ok(kernel)
}

fn const_name(v: &Val) -> &'static str {
    match v {
        Val::Int(_) => "an int",
        Val::Float(_) => "a float",
        Val::Bool(_) => "a bool",
        Val::Dtype(_) => "a dtype",
        Val::Tensor(_) => "a tensor",
        Val::Tile(_) => "a tile",
    }
}

impl<'a> Elaborator<'a> {
    // ---- building -----------------------------------------------------------------------

    fn new_value(&mut self, ty: TileType) -> ValueId {
        self.types.push(ty);
        ValueId(self.types.len() as u32 - 1)
    }

    pub(super) fn emit(&mut self, op: Op, ty: TileType) -> ValueId {
        let v = self.new_value(ty);
        self.blocks.last_mut().expect("a block is open").push(Inst {
            results: vec![v],
            op,
        });
        v
    }

    pub(super) fn emit_store(
        &mut self,
        tensor: usize,
        starts: Vec<ValueId>,
        extents: Vec<Option<usize>>,
        value: ValueId,
        mask: Option<ValueId>,
    ) {
        self.emit_void(Op::Store {
            tensor,
            starts,
            extents,
            value,
            mask,
        });
    }

    fn emit_void(&mut self, op: Op) {
        self.blocks.last_mut().expect("a block is open").push(Inst {
            results: vec![],
            op,
        });
    }

    /// Emits into the entry block, so the value dominates every later use.
    fn emit_entry(&mut self, key: String, op: Op, ty: TileType) -> ValueId {
        if let Some(v) = self.hoisted.get(&key) {
            return *v;
        }
        let v = self.new_value(ty);
        self.blocks[0].push(Inst {
            results: vec![v],
            op,
        });
        self.hoisted.insert(key, v);
        v
    }

    pub(super) fn ty(&self, v: ValueId) -> &TileType {
        &self.types[v.0 as usize]
    }

    // ---- names --------------------------------------------------------------------------

    fn bind(&mut self, name: &str, b: Binding) {
        self.scopes
            .last_mut()
            .expect("a scope is open")
            .insert(name.to_string(), b);
    }

    fn lookup(&self, name: &str) -> Option<&Binding> {
        self.scopes.iter().rev().find_map(|s| s.get(name))
    }

    fn all_names(&self) -> Vec<String> {
        self.scopes.iter().flat_map(|s| s.keys().cloned()).collect()
    }

    fn unknown_name(&self, id: &ast::Ident) -> Diagnostic {
        let mut d = err(id.span, format!("unknown name `{id}`"), "not defined here");
        if let Some(near) = closest(&id.name, &self.all_names()) {
            d = d.with_note(format!("did you mean `{near}`?"));
        }
        d
    }

    fn name(&mut self, id: &ast::Ident) -> Res<Val> {
        let b = self
            .lookup(&id.name)
            .cloned()
            .ok_or_else(|| self.unknown_name(id))?;
        Ok(match b {
            Binding::Value { v, .. } => Val::Tile(v),
            Binding::Const(c) => c,
            Binding::Tensor(t) => Val::Tensor(t),
            Binding::Dim {
                tensor,
                axis,
                stride,
            } => Val::Tile(self.emit_entry(
                format!("dim:{}", id.name),
                if stride {
                    Op::StrideSize { tensor, axis }
                } else {
                    Op::DimSize { tensor, axis }
                },
                TileType::scalar(DType::I32),
            )),
            Binding::Scalar(p) => {
                let dtype = match self.params[p].kind {
                    ParamKind::Scalar { dtype } => dtype,
                    ParamKind::Tensor { .. } => DType::F32,
                };
                Val::Tile(self.emit_entry(
                    format!("param:{}", id.name),
                    Op::ScalarParam(p),
                    TileType::scalar(dtype),
                ))
            }
        })
    }

    // ---- kernel header --------------------------------------------------------------------

    fn bind_consts(&mut self, overrides: &Overrides) -> Res<Vec<(String, ConstValue)>> {
        let mut out = Vec::new();
        for c in &self.kernel.consts {
            if self.lookup(&c.name.name).is_some() {
                return Err(err(
                    c.name.span,
                    format!("`{}` is declared twice", c.name),
                    "declared again here",
                ));
            }
            let value = match overrides.get(&c.name.name) {
                Some(v) => *v,
                None => match &c.default {
                    Some(e) => {
                        let v = self.expr(e)?;
                        match (c.kind, v) {
                            (ast::ConstKind::Int, Val::Int(i)) => ConstValue::Int(i),
                            (ast::ConstKind::Bool, Val::Bool(b)) => ConstValue::Bool(b),
                            (ast::ConstKind::Dtype, Val::Dtype(d)) => ConstValue::Dtype(d),
                            (kind, v) => {
                                return Err(err(
                                    e.span,
                                    format!(
                                        "default of `{}` is {}, but it is declared `{kind}`",
                                        c.name,
                                        const_name(&v)
                                    ),
                                    "wrong kind of value",
                                ))
                            }
                        }
                    }
                    None => {
                        return Err(err(
                            c.name.span,
                            format!("compile-time parameter `{}` has no value", c.name),
                            "no default",
                        )
                        .with_note(format!("give it a default or pass -D {}=VALUE", c.name)))
                    }
                },
            };
            let ok = matches!(
                (c.kind, value),
                (ast::ConstKind::Int, ConstValue::Int(_))
                    | (ast::ConstKind::Bool, ConstValue::Bool(_))
                    | (ast::ConstKind::Dtype, ConstValue::Dtype(_))
            );
            if !ok {
                return Err(err(
                    c.span,
                    format!(
                        "`{}` is declared `{}` but was given `{value}`",
                        c.name, c.kind
                    ),
                    "declared here",
                ));
            }
            let val = match value {
                ConstValue::Int(i) => Val::Int(i),
                ConstValue::Bool(b) => Val::Bool(b),
                ConstValue::Dtype(d) => Val::Dtype(d),
            };
            self.bind(&c.name.name, Binding::Const(val));
            out.push((c.name.name.clone(), value));
        }
        Ok(out)
    }

    fn attributes(&mut self) -> Res<Vec<(String, Vec<i64>)>> {
        let mut checked = super::hints::Checked::default();
        for a in &self.kernel.attributes {
            let hint = checked.name(a)?;
            let mut args = Vec::new();
            for arg in &a.args {
                match self.expr(&arg.value)? {
                    Val::Int(i) => args.push(i),
                    _ => {
                        return Err(err(
                            arg.span,
                            "attribute arguments must be compile-time integers",
                            "not an integer",
                        ))
                    }
                }
            }
            checked.add(a, hint, args)?;
        }
        checked.finish()
    }

    pub(super) fn dtype_of(&self, id: &ast::Ident) -> Res<DType> {
        if let Some(d) = DType::parse(&id.name) {
            return Ok(d);
        }
        match self.lookup(&id.name) {
            Some(Binding::Const(Val::Dtype(d))) => Ok(*d),
            Some(_) => Err(err(
                id.span,
                format!("`{id}` is not a dtype"),
                "expected bf16, f16, f32, i32, bool or a dtype parameter",
            )),
            None => Err(err(
                id.span,
                format!("unknown type `{id}`"),
                "expected bf16, f16, f32, i32, bool or a dtype parameter",
            )),
        }
    }

    fn bind_params(&mut self) -> Res<()> {
        let mut dim_names: HashSet<String> = HashSet::new();
        for (i, p) in self.kernel.params.iter().enumerate() {
            if self.lookup(&p.name.name).is_some() {
                return Err(err(
                    p.name.span,
                    format!("`{}` is already defined", p.name),
                    "defined again here",
                ));
            }
            let kind = match &p.ty {
                ast::ParamType::Tensor {
                    io,
                    elem,
                    dims,
                    strides,
                } => {
                    let dtype = self.dtype_of(elem)?;
                    if dtype == DType::Bool {
                        return Err(err(
                            elem.span,
                            "tensors of bool are not supported",
                            "use i32",
                        ));
                    }
                    let mut out = Vec::new();
                    for (axis, d) in dims.iter().enumerate() {
                        out.push(self.shape_symbol(d, i, axis, false, &mut dim_names)?);
                    }
                    let strides = match strides {
                        Some(st) if st.len() != dims.len() => {
                            return Err(err(
                                p.span,
                                format!(
                                    "`{}` has {} dimensions but {} strides",
                                    p.name,
                                    dims.len(),
                                    st.len()
                                ),
                                "one stride per dimension",
                            ))
                        }
                        Some(st) => Some(
                            st.iter()
                                .enumerate()
                                .map(|(axis, d)| {
                                    self.shape_symbol(d, i, axis, true, &mut dim_names)
                                })
                                .collect::<Res<Vec<_>>>()?,
                        ),
                        None => None,
                    };
                    self.bind(&p.name.name, Binding::Tensor(i));
                    let io = match io {
                        ast::Io::In => tir::Io::In,
                        ast::Io::Out => tir::Io::Out,
                        ast::Io::InOut => tir::Io::InOut,
                    };
                    ParamKind::Tensor {
                        io,
                        dtype,
                        dims: out,
                        strides,
                    }
                }
                ast::ParamType::Scalar(t) => {
                    let dtype = self.dtype_of(t)?;
                    self.bind(&p.name.name, Binding::Scalar(i));
                    ParamKind::Scalar { dtype }
                }
            };
            self.params.push(tir::Param {
                name: p.name.name.clone(),
                kind,
            });
        }
        Ok(())
    }

    /// A tensor dimension or stride: a literal, a compile-time int, or a shape symbol (bound the
    /// first time it appears, to be read at run time).
    fn shape_symbol(
        &mut self,
        d: &ast::Dim,
        tensor: usize,
        axis: usize,
        stride: bool,
        seen: &mut HashSet<String>,
    ) -> Res<tir::Dim> {
        let what = if stride { "stride" } else { "dimension" };
        match d {
            ast::Dim::Const(v, span) => {
                let low = if stride { 0 } else { 1 };
                if *v < low || *v > i32::MAX as i64 {
                    return Err(err(
                        *span,
                        format!(
                            "tensor {what}s must be {} 32-bit integers",
                            if stride { "non-negative" } else { "positive" }
                        ),
                        format!("invalid {what}"),
                    ));
                }
                Ok(tir::Dim::Const(*v))
            }
            ast::Dim::Sym(id) => {
                match self.lookup(&id.name) {
                    Some(Binding::Const(Val::Int(v))) => return Ok(tir::Dim::Const(*v)),
                    Some(Binding::Dim { .. }) | None => {}
                    Some(_) => {
                        return Err(err(
                            id.span,
                            format!("`{id}` cannot name a {what}"),
                            "already means something else",
                        ))
                    }
                }
                if seen.insert(id.name.clone()) {
                    self.bind(
                        &id.name,
                        Binding::Dim {
                            tensor,
                            axis,
                            stride,
                        },
                    );
                }
                Ok(tir::Dim::Sym(id.name.clone()))
            }
        }
    }

    fn grid(&mut self) -> Res<Vec<ShapeExpr>> {
        let k = self.kernel;
        if k.grid.is_empty() || k.grid.len() > 3 {
            return Err(err(
                k.grid_span,
                format!(
                    "the grid has {} dimensions; it must have 1 to 3",
                    k.grid.len()
                ),
                "here",
            ));
        }
        k.grid.iter().map(|e| self.shape_expr(e)).collect()
    }

    /// A launch-grid extent: compile-time ints, shape symbols and integer arithmetic only.
    fn shape_expr(&mut self, e: &ast::Expr) -> Res<ShapeExpr> {
        let bad = |span| {
            err(span, "grid extents may only use shape symbols, compile-time integers, + - * / and cdiv, min, max", "not allowed in a grid extent")
        };
        let two =
            |l: &mut Self, a: &ast::Expr, b: &ast::Expr| -> Res<(Box<ShapeExpr>, Box<ShapeExpr>)> {
                Ok((Box::new(l.shape_expr(a)?), Box::new(l.shape_expr(b)?)))
            };
        Ok(match &e.kind {
            ExprKind::Int(v) => ShapeExpr::Int(*v),
            ExprKind::Name(id) => match self.lookup(&id.name) {
                Some(Binding::Const(Val::Int(v))) => ShapeExpr::Int(*v),
                Some(Binding::Dim { .. }) => ShapeExpr::Sym(id.name.clone()),
                None => return Err(self.unknown_name(id)),
                Some(_) => return Err(bad(e.span)),
            },
            ExprKind::Binary(op, a, b) => {
                let (a, b) = two(self, a, b)?;
                match op {
                    BinOp::Add => ShapeExpr::Add(a, b),
                    BinOp::Sub => ShapeExpr::Sub(a, b),
                    BinOp::Mul => ShapeExpr::Mul(a, b),
                    BinOp::Div => ShapeExpr::Div(a, b),
                    _ => return Err(bad(e.span)),
                }
            }
            ExprKind::Call {
                func,
                args,
                type_args,
            } if type_args.is_empty()
                && args.len() == 2
                && args.iter().all(|a| a.name.is_none()) =>
            {
                let (a, b) = two(self, &args[0].value, &args[1].value)?;
                match func.name.as_str() {
                    "cdiv" => ShapeExpr::CeilDiv(a, b),
                    "min" => ShapeExpr::Min(a, b),
                    "max" => ShapeExpr::Max(a, b),
                    _ => return Err(bad(e.span)),
                }
            }
            _ => return Err(bad(e.span)),
        })
    }

    // ---- statements -----------------------------------------------------------------------

    fn block(&mut self, b: &ast::Block) -> Res<()> {
        self.scopes.push(HashMap::new());
        let r = b.stmts.iter().try_for_each(|s| self.stmt(s));
        self.scopes.pop();
        r
    }

    fn stmt(&mut self, s: &Stmt) -> Res<()> {
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

    fn mutable_var(&self, name: &ast::Ident) -> Res<(ValueId, Span)> {
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

    fn set_var(&mut self, name: &str, v: ValueId) {
        for scope in self.scopes.iter_mut().rev() {
            if let Some(Binding::Value { v: slot, .. }) = scope.get_mut(name) {
                *slot = v;
                return;
            }
        }
    }

    /// Names assigned anywhere inside `b` (nested blocks included).
    fn assigned(b: &ast::Block, out: &mut Vec<String>) {
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

    fn for_loop(
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

    pub(super) fn expr(&mut self, e: &ast::Expr) -> Res<Val> {
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
    pub(super) fn materialize(&mut self, v: Val, hint: Option<DType>, span: Span) -> Res<ValueId> {
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
    pub(super) fn unify(
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

    pub(super) fn stretch(&mut self, v: ValueId, shape: &[usize]) -> ValueId {
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

    fn unary(&mut self, op: UnOp, v: Val, span: Span) -> Res<Val> {
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

    fn binary(&mut self, op: BinOp, a: Val, b: Val, sa: Span, sb: Span, whole: Span) -> Res<Val> {
        if let Some(v) = fold(op, &a, &b, whole)? {
            return Ok(v);
        }
        let (va, vb) = self.unify(a, b, sa, sb, whole)?;
        let t = self.ty(va).clone();
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

/// The known name closest to `name` by edit distance, if it is close enough to be a typo.
pub(super) fn closest(name: &str, candidates: &[String]) -> Option<String> {
    fn distance(a: &str, b: &str) -> usize {
        let b: Vec<char> = b.chars().collect();
        let mut prev: Vec<usize> = (0..=b.len()).collect();
        for (i, ca) in a.chars().enumerate() {
            let mut cur = vec![i + 1];
            for (j, cb) in b.iter().enumerate() {
                cur.push(
                    (prev[j] + usize::from(ca != *cb))
                        .min(prev[j + 1] + 1)
                        .min(cur[j] + 1),
                );
            }
            prev = cur;
        }
        prev[b.len()]
    }
    candidates
        .iter()
        .map(|c| (distance(name, c), c))
        .filter(|(d, c)| *d <= name.len().max(c.len()).div_ceil(3))
        .min()
        .map(|(_, c)| c.clone())
}
