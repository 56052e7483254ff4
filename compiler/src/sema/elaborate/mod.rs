//! Elaboration: one kernel's AST → specialised Tile IR (names resolved, constants folded, every
//! value typed).

use std::collections::{HashMap, HashSet};

use super::Overrides;
use crate::diag::Diagnostic;
use crate::syntax::ast::{self, BinOp, ExprKind, Span};
use crate::tir::{self, ConstValue, DType, Inst, Op, ParamKind, ShapeExpr, TileType, ValueId};

mod expr;
mod stmt;

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
    let requires = l.requirements(&consts)?;
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
        requires,
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

/// How `shape_expr` names a grid extent in its errors.
const GRID_EXTENT: (&str, &str) = ("grid extents", "a grid extent");

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

    pub(in crate::sema) fn emit_void(&mut self, op: Op) {
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
        if let Some(near) = crate::diag::closest(&id.name, &self.all_names()) {
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
        k.grid
            .iter()
            .map(|e| self.shape_expr(e, GRID_EXTENT))
            .collect()
    }

    /// A launch-time integer (a grid extent, a side of a requirement; `what` names them, plural
    /// and singular): compile-time ints, shape symbols and integer arithmetic only.
    pub(super) fn shape_expr(&mut self, e: &ast::Expr, what: (&str, &str)) -> Res<ShapeExpr> {
        let bad = |span| {
            err(span, format!("{} may only use shape symbols, compile-time integers, i32 scalar parameters, + - * / and cdiv, min, max", what.0), format!("not allowed in {}", what.1))
        };
        let two =
            |l: &mut Self, a: &ast::Expr, b: &ast::Expr| -> Res<(Box<ShapeExpr>, Box<ShapeExpr>)> {
                Ok((
                    Box::new(l.shape_expr(a, what)?),
                    Box::new(l.shape_expr(b, what)?),
                ))
            };
        Ok(match &e.kind {
            ExprKind::Int(v) => ShapeExpr::Int(*v),
            ExprKind::Name(id) => match self.lookup(&id.name) {
                Some(Binding::Const(Val::Int(v))) => ShapeExpr::Int(*v),
                Some(Binding::Dim { .. }) => ShapeExpr::Sym(id.name.clone()),
                Some(Binding::Scalar(p))
                    if matches!(
                        self.params[*p].kind,
                        ParamKind::Scalar { dtype: DType::I32 }
                    ) =>
                {
                    ShapeExpr::Sym(id.name.clone())
                }
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
}
