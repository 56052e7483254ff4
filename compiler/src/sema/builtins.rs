//! The built-in functions of the language: each checks its arguments and emits Tile IR.

use super::elaborate::{err, Elaborator, Res, Val};
use crate::syntax::ast::{self, ExprKind, Span};
use crate::tir::{BinaryOp, DType, Literal, Op, ParamKind, ReduceOp, TileType, UnaryOp, ValueId};

/// Every built-in besides the elementwise math functions (which are Tile IR's unary ops, listed
/// once there: see [`unary_function`]), with its signature as users write it.
pub const BUILTINS: &[(&str, &str)] = &[
    ("program_id", "program_id(axis)"),
    ("num_programs", "num_programs(axis)"),
    ("zeros", "zeros<T>(d0, d1, ...)"),
    ("full", "full<T>(value, d0, d1, ...)"),
    ("iota", "iota(n)"),
    ("cast", "cast<T>(x)"),
    ("max", "max(a, b) or max(x, axis = k)"),
    ("min", "min(a, b)"),
    ("sum", "sum(x, axis = k)"),
    ("cumsum", "cumsum(x, axis = k)"),
    ("cumprod", "cumprod(x, axis = k)"),
    ("where", "where(cond, a, b)"),
    ("dot", "dot(a, b, acc?, trans_a = false, trans_b = false)"),
    ("trans", "trans(x)"),
    ("expand", "expand(x, axis)"),
    ("broadcast", "broadcast(x, d0, d1, ...)"),
    ("cdiv", "cdiv(a, b)"),
    ("load", "load(t[start : +len, ...], fill = 0.0, mask = m)"),
    ("store", "store(t[start : +len, ...], value, mask = m)"),
];

/// The unary op a function name denotes (`exp`, `rsqrt`, ...), by Tile IR's op table.
fn unary_function(name: &str) -> Option<UnaryOp> {
    UnaryOp::parse(name).filter(|op| op.is_function())
}

/// The signature users write for the built-in `name` (for argument-count messages).
fn signature(name: &str) -> String {
    match BUILTINS.iter().find(|(n, _)| *n == name) {
        Some((_, sig)) => sig.to_string(),
        None if unary_function(name).is_some() => format!("{name}(x)"),
        None => String::new(),
    }
}

/// Every function name the language knows, for "did you mean" notes.
fn function_names() -> Vec<String> {
    let unary = UnaryOp::ALL.iter().filter(|op| op.is_function());
    BUILTINS
        .iter()
        .map(|(n, _)| n.to_string())
        .chain(unary.map(|op| op.name().to_string()))
        .collect()
}

/// A call's arguments, split into positional and named, checked against what the function takes.
pub(super) struct Args<'e> {
    pub(super) positional: Vec<&'e ast::Arg>,
    named: Vec<&'e ast::Arg>,
}

impl<'e> Args<'e> {
    pub(super) fn new(
        func: &ast::Ident,
        args: &'e [ast::Arg],
        allowed_named: &[&str],
        arity: std::ops::RangeInclusive<usize>,
        call: Span,
    ) -> Res<Self> {
        let mut positional = Vec::new();
        let mut named: Vec<&ast::Arg> = Vec::new();
        for a in args {
            match &a.name {
                None if !named.is_empty() => {
                    return Err(err(
                        a.span,
                        "positional arguments must come before named ones",
                        "positional after named",
                    ))
                }
                None => positional.push(a),
                Some(n) => {
                    if !allowed_named.contains(&n.name.as_str()) {
                        let mut d = err(
                            n.span,
                            format!("`{func}` has no argument named `{n}`"),
                            "unknown argument",
                        );
                        if !allowed_named.is_empty() {
                            d = d.with_note(format!(
                                "its named arguments: {}",
                                allowed_named.join(", ")
                            ));
                        }
                        return Err(d);
                    }
                    if named
                        .iter()
                        .any(|m| m.name.as_ref().map(|x| &x.name) == Some(&n.name))
                    {
                        return Err(err(
                            n.span,
                            format!("argument `{n}` is given twice"),
                            "repeated",
                        ));
                    }
                    named.push(a);
                }
            }
        }
        if !arity.contains(&positional.len()) {
            let want = if arity.start() == arity.end() {
                arity.start().to_string()
            } else if *arity.end() == usize::MAX {
                format!("at least {}", arity.start())
            } else {
                format!("{} to {}", arity.start(), arity.end())
            };
            let sig = signature(&func.name);
            return Err(err(
                call,
                format!(
                    "`{func}` takes {want} positional argument(s), {} given",
                    positional.len()
                ),
                "wrong number of arguments",
            )
            .with_note(format!("usage: {sig}")));
        }
        Ok(Self { positional, named })
    }

    pub(super) fn named(&self, name: &str) -> Option<&'e ast::Arg> {
        self.named
            .iter()
            .copied()
            .find(|a| a.name.as_ref().map(|n| n.name.as_str()) == Some(name))
    }
}

impl Elaborator<'_> {
    fn const_int(&mut self, e: &ast::Expr, what: &str) -> Res<i64> {
        match self.expr(e)? {
            Val::Int(i) => Ok(i),
            _ => Err(err(
                e.span,
                format!("{what} must be a compile-time integer"),
                "not known at compile time",
            )),
        }
    }

    fn const_bool(&mut self, e: &ast::Expr, what: &str) -> Res<bool> {
        match self.expr(e)? {
            Val::Bool(b) => Ok(b),
            _ => Err(err(
                e.span,
                format!("{what} must be a compile-time bool"),
                "not known at compile time",
            )),
        }
    }

    fn extent(&mut self, e: &ast::Expr) -> Res<usize> {
        let v = self.const_int(e, "a tile dimension")?;
        if !(1..=1 << 20).contains(&v) {
            return Err(err(
                e.span,
                format!("tile dimension {v} is out of range"),
                "must be between 1 and 2^20",
            ));
        }
        Ok(v as usize)
    }

    pub(super) fn tile(&mut self, e: &ast::Expr) -> Res<ValueId> {
        let v = self.expr(e)?;
        self.materialize(v, None, e.span)
    }

    fn type_arg(&self, func: &ast::Ident, type_args: &[ast::Ident], call: Span) -> Res<DType> {
        match type_args {
            [t] => self.dtype_of(t),
            _ => Err(err(
                call,
                format!("`{func}` needs one element type, as in {func}<f32>(...)"),
                "missing or extra type argument",
            )),
        }
    }

    fn float_tile(&mut self, e: &ast::Expr, func: &ast::Ident) -> Res<ValueId> {
        let x = self.tile(e)?;
        if !self.ty(x).dtype.is_float() {
            return Err(err(
                e.span,
                format!("`{func}` needs a float tile, this is {}", self.ty(x)),
                "not a float",
            )
            .with_note("convert with cast<f32>(...)"));
        }
        Ok(x)
    }

    pub(super) fn axis(&mut self, e: &ast::Expr, rank: usize, extra: usize) -> Res<usize> {
        let a = self.const_int(e, "an axis")?;
        if a < 0 || a as usize >= rank + extra {
            return Err(err(
                e.span,
                format!("axis {a} is out of range for a rank-{rank} tile"),
                format!("must be 0..{}", rank + extra),
            ));
        }
        Ok(a as usize)
    }

    pub(super) fn call(
        &mut self,
        func: &ast::Ident,
        type_args: &[ast::Ident],
        args: &[ast::Arg],
        span: Span,
    ) -> Res<Val> {
        let name = func.name.as_str();
        if !type_args.is_empty() && !matches!(name, "zeros" | "full" | "cast") {
            return Err(err(
                span,
                format!("`{func}` takes no type argument"),
                "unexpected <...>",
            ));
        }
        match name {
            "program_id" | "num_programs" => {
                let a = Args::new(func, args, &[], 1..=1, span)?;
                let axis = self.const_int(&a.positional[0].value, "the grid axis")?;
                if axis < 0 || axis as usize >= self.grid_rank {
                    return Err(err(
                        a.positional[0].span,
                        format!(
                            "grid axis {axis} does not exist: the grid has {} dimension(s)",
                            self.grid_rank
                        ),
                        "no such axis",
                    ));
                }
                let op = if name == "program_id" {
                    Op::ProgramId(axis as usize)
                } else {
                    Op::NumPrograms(axis as usize)
                };
                Ok(Val::Tile(self.emit(op, TileType::scalar(DType::I32))))
            }
            "zeros" | "full" => {
                let dtype = self.type_arg(func, type_args, span)?;
                let first = usize::from(name == "full");
                let a = Args::new(func, args, &[], first + 1..=first + 8, span)?;
                let value = if name == "full" {
                    self.expr(&a.positional[0].value)?
                } else if dtype == DType::Bool {
                    Val::Bool(false)
                } else {
                    Val::Int(0)
                };
                let shape = a.positional[first..]
                    .iter()
                    .map(|p| self.extent(&p.value))
                    .collect::<Res<Vec<_>>>()?;
                let vspan = a.positional[0].span;
                let scalar = self.materialize(value, Some(dtype), vspan)?;
                let t = self.ty(scalar).clone();
                if !t.is_scalar() || t.dtype != dtype {
                    return Err(err(
                        vspan,
                        format!("the fill value must be a {dtype} scalar, this is {t}"),
                        "wrong fill value",
                    ));
                }
                Ok(Val::Tile(self.stretch(scalar, &shape)))
            }
            "iota" => {
                let a = Args::new(func, args, &[], 1..=1, span)?;
                let n = self.extent(&a.positional[0].value)?;
                Ok(Val::Tile(
                    self.emit(Op::Iota(n), TileType::new(DType::I32, vec![n])),
                ))
            }
            "cast" => {
                let to = self.type_arg(func, type_args, span)?;
                let a = Args::new(func, args, &[], 1..=1, span)?;
                let x = self.tile(&a.positional[0].value)?;
                let t = self.ty(x).clone();
                if t.dtype == to {
                    return Ok(Val::Tile(x));
                }
                Ok(Val::Tile(
                    self.emit(Op::Cast { x, to }, TileType::new(to, t.shape)),
                ))
            }
            _ if unary_function(name).is_some() => {
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
            "cumsum" | "cumprod" => self.scan(func, args, span),
            "sum" | "max" | "min" => {
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
                    let a = Args::new(func, args, &["axis"], 1..=1, span)?;
                    let x = self.tile(&a.positional[0].value)?;
                    let t = self.ty(x).clone();
                    if t.dtype == DType::Bool || t.is_scalar() {
                        return Err(err(
                            a.positional[0].span,
                            format!("`{func}` reduces a numeric tile, this is {t}"),
                            "cannot reduce",
                        ));
                    }
                    let axis_arg = a.named("axis").ok_or_else(|| {
                        err(
                            span,
                            format!("`{func}` of a tile needs `axis = k`"),
                            "which axis?",
                        )
                    })?;
                    let axis = self.axis(&axis_arg.value, t.shape.len(), 0)?;
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
            "where" => {
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
                let (x, y) =
                    self.unify(va, vb, a.positional[1].span, a.positional[2].span, span)?;
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
            "dot" => {
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
            "trans" => {
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
            "expand" => {
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
            "broadcast" => {
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
            "cdiv" => {
                let a = Args::new(func, args, &[], 2..=2, span)?;
                let (va, vb) = (
                    self.expr(&a.positional[0].value)?,
                    self.expr(&a.positional[1].value)?,
                );
                if let (Val::Int(x), Val::Int(y)) = (&va, &vb) {
                    if *y <= 0 {
                        return Err(err(
                            a.positional[1].span,
                            "cdiv by a non-positive number",
                            "must be positive",
                        ));
                    }
                    return Ok(Val::Int(
                        x.div_euclid(*y) + i64::from(x.rem_euclid(*y) != 0),
                    ));
                }
                let (x, y) =
                    self.unify(va, vb, a.positional[0].span, a.positional[1].span, span)?;
                let t = self.ty(x).clone();
                if t.dtype != DType::I32 {
                    return Err(err(
                        span,
                        format!("`cdiv` needs integers, these are {t}"),
                        "not i32",
                    ));
                }
                let one = self.emit(Op::Const(Literal::Int(1)), TileType::scalar(DType::I32));
                let one = self.stretch(one, &t.shape);
                let s = self.emit(
                    Op::Binary {
                        op: BinaryOp::Add,
                        a: x,
                        b: y,
                    },
                    t.clone(),
                );
                let s = self.emit(
                    Op::Binary {
                        op: BinaryOp::Sub,
                        a: s,
                        b: one,
                    },
                    t.clone(),
                );
                Ok(Val::Tile(self.emit(
                    Op::Binary {
                        op: BinaryOp::Div,
                        a: s,
                        b: y,
                    },
                    t,
                )))
            }
            "load" | "store" => self.memory(func, args, span),
            _ => {
                let names = function_names();
                let mut d = err(
                    func.span,
                    format!("unknown function `{func}`"),
                    "not a built-in function",
                );
                if let Some(near) = super::elaborate::closest(&func.name, &names) {
                    d = d.with_note(format!("did you mean `{near}`?"));
                }
                Err(d)
            }
        }
    }

    /// Broadcasts a bool condition against a value tile.
    fn unify_shapes(
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

    fn memory(&mut self, func: &ast::Ident, args: &[ast::Arg], span: Span) -> Res<Val> {
        let is_load = func.name == "load";
        let a = if is_load {
            Args::new(func, args, &["fill", "mask"], 1..=1, span)?
        } else {
            Args::new(func, args, &["mask"], 2..=2, span)?
        };
        let target = &a.positional[0].value;
        let ExprKind::Slice { tensor, ranges } = &target.kind else {
            return Err(err(
                target.span,
                format!("`{func}` needs a tensor slice such as t[i : +BM, j : +BN]"),
                "not a slice",
            ));
        };
        let t = match self.expr(&ast::Expr {
            kind: ExprKind::Name(tensor.clone()),
            span: tensor.span,
        })? {
            Val::Tensor(t) => t,
            _ => {
                return Err(err(
                    tensor.span,
                    format!("`{tensor}` is not a tensor parameter"),
                    "not a tensor",
                ))
            }
        };
        let (dtype, rank, io) = match &self.params[t].kind {
            ParamKind::Tensor {
                dtype, dims, io, ..
            } => (*dtype, dims.len(), *io),
            ParamKind::Scalar { .. } => unreachable!("tensor bindings name tensor parameters"),
        };
        if ranges.len() != rank {
            return Err(err(
                target.span,
                format!(
                    "`{tensor}` has {rank} dimension(s) but the slice gives {}",
                    ranges.len()
                ),
                "wrong number of ranges",
            ));
        }
        let mut starts = Vec::new();
        let mut extents = Vec::new();
        for r in ranges {
            let s = self.expr(&r.start)?;
            let s = self.materialize(s, Some(DType::I32), r.start.span)?;
            if *self.ty(s) != TileType::scalar(DType::I32) {
                return Err(err(
                    r.start.span,
                    format!(
                        "a slice start must be an i32 scalar, this is {}",
                        self.ty(s)
                    ),
                    "not an i32 scalar",
                ));
            }
            starts.push(s);
            extents.push(match &r.len {
                Some(len) => Some(self.extent(len)?),
                None => None,
            });
        }
        let shape = crate::tir::slice_shape(&extents);
        let mask = match a.named("mask") {
            Some(m) => {
                let v = self.expr(&m.value)?;
                let mv = self.materialize(v, Some(DType::Bool), m.value.span)?;
                let tm = self.ty(mv).clone();
                let ok = tm.dtype == DType::Bool
                    && (tm.is_scalar()
                        || (tm.shape.len() == shape.len()
                            && tm.shape.iter().zip(&shape).all(|(a, b)| a == b || *a == 1)));
                if !ok {
                    return Err(err(m.value.span, format!("the mask must be a bool tile broadcastable to the slice's shape, this is {tm}"), "wrong mask"));
                }
                Some(self.stretch(mv, &shape))
            }
            None => None,
        };
        let tname = self.params[t].name.clone();
        if is_load {
            if io == crate::tir::Io::Out {
                return Err(err(
                    tensor.span,
                    format!("`{tname}` is an output: it cannot be read"),
                    "declared `out`",
                )
                .with_note("declare it `inout` to read and write it"));
            }
            let fill = match a.named("fill") {
                Some(f) => match self.expr(&f.value)? {
                    Val::Int(i) => i as f64,
                    Val::Float(x) => x,
                    _ => {
                        return Err(err(
                            f.value.span,
                            "the fill value must be a compile-time number",
                            "not a constant",
                        ))
                    }
                },
                None => 0.0,
            };
            Ok(Val::Tile(self.emit(
                Op::Load {
                    tensor: t,
                    starts,
                    extents,
                    mask,
                    fill,
                },
                TileType::new(dtype, shape),
            )))
        } else {
            if io == crate::tir::Io::In {
                return Err(err(
                    tensor.span,
                    format!("`{tname}` is an input: it cannot be stored to"),
                    "declared `in`",
                )
                .with_note("declare it `out` or `inout` to write it"));
            }
            let vexpr = &a.positional[1];
            let v = self.expr(&vexpr.value)?;
            let v = self.materialize(v, Some(dtype), vexpr.span)?;
            let tv = self.ty(v).clone();
            if tv.dtype != dtype {
                return Err(err(
                    vexpr.span,
                    format!("storing {} into `{tname}`, a tensor of {dtype}", tv.dtype),
                    "element type differs",
                )
                .with_note(format!("convert with cast<{dtype}>(...)")));
            }
            let v = if tv.is_scalar() {
                self.stretch(v, &shape)
            } else {
                v
            };
            if self.ty(v).shape != shape {
                return Err(err(
                    vexpr.span,
                    format!(
                        "storing a {} tile into a [{}] slice",
                        self.ty(v),
                        shape
                            .iter()
                            .map(|d| d.to_string())
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                    "shape differs",
                ));
            }
            self.emit_store(t, starts, extents, v, mask);
            Ok(Val::Bool(true))
        }
    }
}
