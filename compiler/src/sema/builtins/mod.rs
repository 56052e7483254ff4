//! The built-in functions of the language: each checks its arguments and emits Tile IR.

mod math;
mod matrix;
mod memory;
mod scan;

use super::elaborate::{err, Elaborator, Res, Val};
use crate::syntax::ast::{self, Span};
use crate::tir::{BinaryOp, DType, Literal, Op, TileType, UnaryOp, ValueId};

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
    ("where", "where(cond, a, b)"),
    ("dot", "dot(a, b, acc?, trans_a = false, trans_b = false)"),
    ("trans", "trans(x)"),
    ("cumsum", "cumsum(x, axis = k)"),
    ("cumprod", "cumprod(x, axis = k)"),
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
struct Args<'e> {
    positional: Vec<&'e ast::Arg>,
    named: Vec<&'e ast::Arg>,
}

impl<'e> Args<'e> {
    fn new(
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

    fn named(&self, name: &str) -> Option<&'e ast::Arg> {
        self.named
            .iter()
            .copied()
            .find(|a| a.name.as_ref().map(|n| n.name.as_str()) == Some(name))
    }
}

impl Elaborator<'_> {
    pub(super) fn const_int(&mut self, e: &ast::Expr, what: &str) -> Res<i64> {
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

    fn tile(&mut self, e: &ast::Expr) -> Res<ValueId> {
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

    /// The operand and axis of `f(x, axis = k)` (a reduction or a scan): a numeric tile and one
    /// of its axes, the axis required even for 1-D tiles so the call always says which way it
    /// runs. `what` is the verb and label of the "not a numeric tile" error.
    fn along_axis(
        &mut self,
        func: &ast::Ident,
        args: &[ast::Arg],
        span: Span,
        (verb, label): (&str, &str),
    ) -> Res<(ValueId, TileType, usize)> {
        let a = Args::new(func, args, &["axis"], 1..=1, span)?;
        let x = self.tile(&a.positional[0].value)?;
        let t = self.ty(x).clone();
        if t.dtype == DType::Bool || t.is_scalar() {
            return Err(err(
                a.positional[0].span,
                format!("`{func}` {verb} a numeric tile, this is {t}"),
                label,
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
        Ok((x, t, axis))
    }

    fn axis(&mut self, e: &ast::Expr, rank: usize, extra: usize) -> Res<usize> {
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

    /// `cdiv(a, b)`: ceiling division, of constants while both are known.
    fn cdiv_call(&mut self, func: &ast::Ident, args: &[ast::Arg], span: Span) -> Res<Val> {
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
        let (x, y) = self.unify(va, vb, a.positional[0].span, a.positional[1].span, span)?;
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
            _ if unary_function(name).is_some() => self.unary_call(func, args, span),
            "sum" | "max" | "min" => self.reduce_call(func, args, span),
            "where" => self.where_call(func, args, span),
            "dot" => self.dot_call(func, args, span),
            "trans" => self.trans_call(func, args, span),
            "expand" => self.expand_call(func, args, span),
            "broadcast" => self.broadcast_call(func, args, span),
            "cdiv" => self.cdiv_call(func, args, span),
            "cumsum" | "cumprod" => self.scan(func, args, span),
            "load" | "store" => self.memory(func, args, span),
            _ => {
                let names = function_names();
                let mut d = err(
                    func.span,
                    format!("unknown function `{func}`"),
                    "not a built-in function",
                );
                if let Some(near) = crate::diag::closest(&func.name, &names) {
                    d = d.with_note(format!("did you mean `{near}`?"));
                }
                Err(d)
            }
        }
    }
}
