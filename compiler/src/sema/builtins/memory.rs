//! `load` and `store`: tensor slices, their masks and fill values.

use super::{err, Args, Elaborator, Res, Val};
use crate::syntax::ast::{self, ExprKind, Span};
use crate::tir::{DType, Op, ParamKind, TileType, ValueId};

impl Elaborator<'_> {
    pub(super) fn memory(&mut self, func: &ast::Ident, args: &[ast::Arg], span: Span) -> Res<Val> {
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
        let mut steps = Vec::new();
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
            steps.push(match &r.step {
                Some(step) => self.step(r, step)?,
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
                    steps,
                    mask,
                    fill,
                },
                TileType::new(dtype, shape),
            )))
        } else {
            let slice = Slice {
                t,
                name: tname,
                dtype,
                io,
                starts,
                extents,
                steps,
                shape,
                mask,
            };
            self.store_into(slice, tensor.span, a.positional[1])
        }
    }

    /// A range's step: None for a constant 1 (today's contiguous range, so its code is
    /// unchanged), else an i32 scalar. A constant step must be positive; a run-time one that is
    /// not makes the range select nothing (see `Op::Load`), which only the run can tell.
    fn step(&mut self, r: &ast::Range, step: &ast::Expr) -> Res<Option<ValueId>> {
        if r.len.is_none() {
            return Err(err(
                step.span,
                "a step needs a range: a bare index selects one element",
                "step of a single index",
            )
            .with_note("write `start : +LEN : step` for LEN elements `step` apart"));
        }
        let v = self.expr(step)?;
        match v {
            Val::Int(k) if k <= 0 => Err(err(
                step.span,
                format!("a slice step must be positive, this is {k}"),
                "not positive",
            )),
            Val::Int(1) => Ok(None),
            Val::Int(k) if k > i32::MAX as i64 => Err(err(
                step.span,
                format!("slice step {k} does not fit i32"),
                "too large",
            )),
            Val::Int(_) => Ok(Some(self.materialize(v, Some(DType::I32), step.span)?)),
            Val::Tile(id) if *self.ty(id) == TileType::scalar(DType::I32) => Ok(Some(id)),
            _ => {
                let what = match v {
                    Val::Tile(id) => self.ty(id).to_string(),
                    Val::Float(_) => "a float".into(),
                    Val::Bool(_) => "a bool".into(),
                    Val::Dtype(_) => "a type".into(),
                    Val::Tensor(_) => "a tensor".into(),
                    Val::Int(_) => unreachable!("ints are handled above"),
                };
                Err(err(
                    step.span,
                    format!("a slice step must be an i32 scalar, this is {what}"),
                    "not an i32 scalar",
                ))
            }
        }
    }

    /// The `store` half: the value, converted and stretched to the slice it is written to.
    fn store_into(&mut self, slice: Slice, tensor_span: Span, vexpr: &ast::Arg) -> Res<Val> {
        if slice.io == crate::tir::Io::In {
            return Err(err(
                tensor_span,
                format!("`{}` is an input: it cannot be stored to", slice.name),
                "declared `in`",
            )
            .with_note("declare it `out` or `inout` to write it"));
        }
        let v = self.expr(&vexpr.value)?;
        let v = self.materialize(v, Some(slice.dtype), vexpr.span)?;
        let tv = self.ty(v).clone();
        if tv.dtype != slice.dtype {
            return Err(err(
                vexpr.span,
                format!(
                    "storing {} into `{}`, a tensor of {}",
                    tv.dtype, slice.name, slice.dtype
                ),
                "element type differs",
            )
            .with_note(format!("convert with cast<{}>(...)", slice.dtype)));
        }
        let v = if tv.is_scalar() {
            self.stretch(v, &slice.shape)
        } else {
            v
        };
        if self.ty(v).shape != slice.shape {
            return Err(err(
                vexpr.span,
                format!(
                    "storing a {} tile into a [{}] slice",
                    self.ty(v),
                    slice
                        .shape
                        .iter()
                        .map(|d| d.to_string())
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
                "shape differs",
            ));
        }
        self.emit_void(Op::Store {
            tensor: slice.t,
            starts: slice.starts,
            extents: slice.extents,
            steps: slice.steps,
            value: v,
            mask: slice.mask,
        });
        Ok(Val::Bool(true))
    }
}

/// A checked tensor slice, as `store` writes it.
struct Slice {
    t: usize,
    name: String,
    dtype: DType,
    io: crate::tir::Io,
    starts: Vec<ValueId>,
    extents: Vec<Option<usize>>,
    steps: Vec<Option<ValueId>>,
    shape: Vec<usize>,
    mask: Option<ValueId>,
}
