//! Scheduled Tile IR → MLIR, for the kernels the current scheduler places (scalars and 1-D tiles).
//!
//! Each value becomes one SSA value per slot a thread holds (one for uniform values); element i of
//! a 1-D tile is slot ⌊i / T⌋ of thread i mod T. Loads and stores address the tensor with i64
//! offsets from run-time extents, read `fill` (and write nothing) outside the tensor, past the
//! tile's length, or where the mask is false; the address of a refused element is clamped to the
//! tensor's first element so no access ever leaves it.
//!
//! The kernel's parameters are, in order: one per Tile IR parameter (a global pointer per tensor,
//! the value of a scalar), then one i32 per shape symbol in order of first appearance.

use melior::dialect::llvm::{self, LoadStoreOptions};
use melior::dialect::{arith, scf};
use melior::ir::attribute::{
    DenseI32ArrayAttribute, FloatAttribute, IntegerAttribute, StringAttribute, TypeAttribute,
};
use melior::ir::operation::OperationBuilder;
use melior::ir::r#type::IntegerType;
use melior::ir::{
    Attribute, Block, BlockLike, Identifier, Location, Module, Region, RegionLike, Type, Value,
};
use melior::Context;

use super::{build_op, gep, result, special_register, MlirSession};
use crate::sched::{Layout, Schedule};
use crate::tir::{BinaryOp, CmpOp, DType, Dim, Kernel, Literal, Op, ParamKind, UnaryOp, ValueId};
use crate::CompileError;

/// The shape symbols a kernel receives as trailing i32 parameters, in order.
pub fn shape_symbols(k: &Kernel) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for p in &k.params {
        if let ParamKind::Tensor { dims, .. } = &p.kind {
            for d in dims {
                if let Dim::Sym(s) = d {
                    if !out.contains(s) {
                        out.push(s.clone());
                    }
                }
            }
        }
    }
    out
}

fn mlir_type(ctx: &Context, d: DType) -> Type<'_> {
    match d {
        DType::Bf16 => Type::bfloat16(ctx),
        DType::F16 => Type::float16(ctx),
        DType::F32 => Type::float32(ctx),
        DType::I32 => IntegerType::new(ctx, 32).into(),
        DType::Bool => IntegerType::new(ctx, 1).into(),
    }
}

struct Lower<'c, 'b> {
    ctx: &'c Context,
    loc: Location<'c>,
    block: &'b Block<'c>,
    k: &'b Kernel,
    s: &'b Schedule,
    /// Per value: its SSA value in each slot this thread holds.
    vals: Vec<Option<Vec<Value<'c, 'b>>>>,
    args: Vec<Value<'c, 'b>>,
    symbols: Vec<String>,
    tid: Value<'c, 'b>,
}

type R<T> = Result<T, CompileError>;

impl<'c, 'b> Lower<'c, 'b> {
    fn push(&self, op: melior::ir::Operation<'c>) -> R<Value<'c, 'b>> {
        result(self.block.append_operation(op))
    }

    fn named(&self, name: &str, operands: &[Value<'c, '_>], ty: Type<'c>) -> R<Value<'c, 'b>> {
        self.push(build_op(
            OperationBuilder::new(name, self.loc)
                .add_operands(operands)
                .add_results(&[ty]),
        )?)
    }

    fn ci32(&self, v: i64) -> R<Value<'c, 'b>> {
        self.push(arith::constant(
            self.ctx,
            IntegerAttribute::new(IntegerType::new(self.ctx, 32).into(), v).into(),
            self.loc,
        ))
    }

    fn ci64(&self, v: i64) -> R<Value<'c, 'b>> {
        self.push(arith::constant(
            self.ctx,
            IntegerAttribute::new(IntegerType::new(self.ctx, 64).into(), v).into(),
            self.loc,
        ))
    }

    fn constant(&self, l: Literal, d: DType) -> R<Value<'c, 'b>> {
        let t = mlir_type(self.ctx, d);
        let attr: Attribute = match l {
            Literal::Float(f) => FloatAttribute::new(self.ctx, t, f).into(),
            Literal::Int(i) if d.is_float() => FloatAttribute::new(self.ctx, t, i as f64).into(),
            Literal::Int(i) => IntegerAttribute::new(t, i).into(),
            Literal::Bool(b) => IntegerAttribute::new(t, b as i64).into(),
        };
        self.push(arith::constant(self.ctx, attr, self.loc))
    }

    fn get(&self, v: ValueId) -> &[Value<'c, 'b>] {
        self.vals[v.0 as usize]
            .as_deref()
            .expect("verified IR defines values before use")
    }

    fn slots(&self, v: ValueId) -> usize {
        match self.s.layout(v) {
            Layout::Uniform => 1,
            Layout::Strided { slots, .. } => slots,
        }
    }

    /// The element index this thread holds in `slot`: slot·T + tid.
    fn element(&self, slot: usize) -> R<Value<'c, 'b>> {
        let base = self.ci32((slot as i64) * self.s.threads as i64)?;
        self.push(arith::addi(base, self.tid, self.loc))
    }

    fn dim(&self, tensor: usize, axis: usize) -> R<Value<'c, 'b>> {
        let ParamKind::Tensor { dims, .. } = &self.k.params[tensor].kind else {
            return Err(CompileError::mlir("dim", "not a tensor"));
        };
        match &dims[axis] {
            Dim::Const(c) => self.ci32(*c),
            Dim::Sym(s) => {
                let i = self
                    .symbols
                    .iter()
                    .position(|x| x == s)
                    .expect("every symbol is a parameter");
                Ok(self.args[self.k.params.len() + i])
            }
        }
    }

    /// f32 math on a float of any width: widen, apply, round back.
    fn via_f32(
        &self,
        x: Value<'c, 'b>,
        d: DType,
        f: impl Fn(Value<'c, 'b>) -> R<Value<'c, 'b>>,
    ) -> R<Value<'c, 'b>> {
        let f32t = Type::float32(self.ctx);
        let wide = if d == DType::F32 {
            x
        } else {
            self.push(arith::extf(x, f32t, self.loc))?
        };
        let r = f(wide)?;
        if d == DType::F32 {
            Ok(r)
        } else {
            self.push(arith::truncf(r, mlir_type(self.ctx, d), self.loc))
        }
    }

    fn fconst32(&self, v: f64) -> R<Value<'c, 'b>> {
        self.push(arith::constant(
            self.ctx,
            FloatAttribute::new(self.ctx, Type::float32(self.ctx), v).into(),
            self.loc,
        ))
    }

    fn unary(&self, op: UnaryOp, x: Value<'c, 'b>, d: DType) -> R<Value<'c, 'b>> {
        let f32t = Type::float32(self.ctx);
        let exp = |v: Value<'c, 'b>| -> R<Value<'c, 'b>> {
            let s = self.push(arith::mulf(
                v,
                self.fconst32(std::f64::consts::LOG2_E)?,
                self.loc,
            ))?;
            self.named("llvm.intr.exp2", &[s], f32t)
        };
        Ok(match op {
            UnaryOp::Neg if d.is_float() => self.push(arith::negf(x, self.loc))?,
            UnaryOp::Neg => self.push(arith::subi(self.ci32(0)?, x, self.loc))?,
            UnaryOp::Not => {
                let t = self.constant(Literal::Bool(true), DType::Bool)?;
                self.push(arith::xori(x, t, self.loc))?
            }
            UnaryOp::Abs if d == DType::I32 => {
                let neg = self.push(arith::subi(self.ci32(0)?, x, self.loc))?;
                self.push(arith::maxsi(x, neg, self.loc))?
            }
            UnaryOp::Abs => self.named("llvm.intr.fabs", &[x], mlir_type(self.ctx, d))?,
            UnaryOp::Exp => self.via_f32(x, d, exp)?,
            UnaryOp::Exp2 => self.via_f32(x, d, |v| self.named("llvm.intr.exp2", &[v], f32t))?,
            UnaryOp::Log => self.via_f32(x, d, |v| {
                let l2 = self.named("llvm.intr.log2", &[v], f32t)?;
                self.push(arith::mulf(
                    l2,
                    self.fconst32(std::f64::consts::LN_2)?,
                    self.loc,
                ))
            })?,
            UnaryOp::Sqrt => self.via_f32(x, d, |v| self.named("llvm.intr.sqrt", &[v], f32t))?,
            UnaryOp::Rsqrt => self.via_f32(x, d, |v| {
                let s = self.named("llvm.intr.sqrt", &[v], f32t)?;
                self.push(arith::divf(self.fconst32(1.0)?, s, self.loc))
            })?,
            UnaryOp::Sigmoid | UnaryOp::Silu => self.via_f32(x, d, |v| {
                let e = exp(self.push(arith::negf(v, self.loc))?)?;
                let one = self.fconst32(1.0)?;
                let den = self.push(arith::addf(one, e, self.loc))?;
                let num = if op == UnaryOp::Silu { v } else { one };
                self.push(arith::divf(num, den, self.loc))
            })?,
        })
    }

    fn binary(
        &self,
        op: BinaryOp,
        a: Value<'c, 'b>,
        b: Value<'c, 'b>,
        d: DType,
    ) -> R<Value<'c, 'b>> {
        let l = self.loc;
        let t = mlir_type(self.ctx, d);
        Ok(match (op, d.is_float()) {
            (BinaryOp::Add, true) => self.push(arith::addf(a, b, l))?,
            (BinaryOp::Sub, true) => self.push(arith::subf(a, b, l))?,
            (BinaryOp::Mul, true) => self.push(arith::mulf(a, b, l))?,
            (BinaryOp::Div, true) => self.push(arith::divf(a, b, l))?,
            (BinaryOp::Rem, true) => self.push(arith::remf(a, b, l))?,
            (BinaryOp::Max, true) => self.named("arith.maximumf", &[a, b], t)?,
            (BinaryOp::Min, true) => self.named("arith.minimumf", &[a, b], t)?,
            (BinaryOp::Add, false) => self.push(arith::addi(a, b, l))?,
            (BinaryOp::Sub, false) => self.push(arith::subi(a, b, l))?,
            (BinaryOp::Mul, false) => self.push(arith::muli(a, b, l))?,
            (BinaryOp::Div, false) => self.push(arith::divsi(a, b, l))?,
            (BinaryOp::Rem, false) => self.push(arith::remsi(a, b, l))?,
            (BinaryOp::Max, false) => self.push(arith::maxsi(a, b, l))?,
            (BinaryOp::Min, false) => self.push(arith::minsi(a, b, l))?,
            (BinaryOp::And, _) => self.push(arith::andi(a, b, l))?,
            (BinaryOp::Or, _) => self.push(arith::ori(a, b, l))?,
        })
    }

    fn cmp(&self, op: CmpOp, a: Value<'c, 'b>, b: Value<'c, 'b>, d: DType) -> R<Value<'c, 'b>> {
        if d.is_float() {
            use arith::CmpfPredicate as P;
            // Ordered except `!=`, so NaN compares as the interpreter's f64 comparisons do.
            let p = match op {
                CmpOp::Eq => P::Oeq,
                CmpOp::Ne => P::Une,
                CmpOp::Lt => P::Olt,
                CmpOp::Le => P::Ole,
                CmpOp::Gt => P::Ogt,
                CmpOp::Ge => P::Oge,
            };
            self.push(arith::cmpf(self.ctx, p, a, b, self.loc))
        } else {
            use arith::CmpiPredicate as P;
            let p = match op {
                CmpOp::Eq => P::Eq,
                CmpOp::Ne => P::Ne,
                CmpOp::Lt => P::Slt,
                CmpOp::Le => P::Sle,
                CmpOp::Gt => P::Sgt,
                CmpOp::Ge => P::Sge,
            };
            self.push(arith::cmpi(self.ctx, p, a, b, self.loc))
        }
    }

    fn cast(&self, x: Value<'c, 'b>, from: DType, to: DType) -> R<Value<'c, 'b>> {
        let l = self.loc;
        let tt = mlir_type(self.ctx, to);
        let width = |d: DType| match d {
            DType::F32 => 32,
            _ => 16,
        };
        Ok(match (from.is_float(), to.is_float()) {
            _ if from == to => x,
            (true, true) if width(from) < width(to) => self.push(arith::extf(x, tt, l))?,
            (true, true) if width(from) > width(to) => self.push(arith::truncf(x, tt, l))?,
            (true, true) => {
                // bf16 ↔ f16: through f32.
                let w = self.push(arith::extf(x, Type::float32(self.ctx), l))?;
                self.push(arith::truncf(w, tt, l))?
            }
            (true, false) if to == DType::Bool => {
                let z = self.constant(Literal::Float(0.0), from)?;
                self.push(arith::cmpf(self.ctx, arith::CmpfPredicate::Une, x, z, l))?
            }
            (true, false) => self.push(arith::fptosi(x, tt, l))?,
            (false, true) if from == DType::Bool => self.push(arith::uitofp(x, tt, l))?,
            (false, true) => self.push(arith::sitofp(x, tt, l))?,
            (false, false) if to == DType::Bool => {
                let z = self.ci32(0)?;
                self.push(arith::cmpi(self.ctx, arith::CmpiPredicate::Ne, x, z, l))?
            }
            (false, false) => self.push(arith::extui(x, tt, l))?,
        })
    }

    /// For each slot: (in-range, clamped element address) of a slice access.
    fn addresses(
        &self,
        tensor: usize,
        starts: &[ValueId],
        extents: &[Option<usize>],
        slots: usize,
        len: usize,
        mask: Option<ValueId>,
    ) -> R<Vec<(Value<'c, 'b>, Value<'c, 'b>)>> {
        let ParamKind::Tensor { dtype, dims, .. } = &self.k.params[tensor].kind else {
            return Err(CompileError::mlir("load/store", "not a tensor"));
        };
        let i64t: Type = IntegerType::new(self.ctx, 64).into();
        let rank = dims.len();
        let extents_i32: Vec<Value> = (0..rank).map(|a| self.dim(tensor, a)).collect::<R<_>>()?;
        // Dense row-major strides, in i64.
        let mut strides = vec![self.ci64(1)?; rank];
        for a in (0..rank.saturating_sub(1)).rev() {
            let e = self.push(arith::extsi(extents_i32[a + 1], i64t, self.loc))?;
            strides[a] = self.push(arith::muli(strides[a + 1], e, self.loc))?;
        }
        let zero = self.ci32(0)?;
        let mut out = Vec::with_capacity(slots);
        for slot in 0..slots {
            let elem = if len > 1 {
                Some(self.element(slot)?)
            } else {
                None
            };
            let mut ok = self.constant(Literal::Bool(true), DType::Bool)?;
            if let Some(e) = elem {
                if slots * self.s.threads as usize != len {
                    let n = self.ci32(len as i64)?;
                    let inside = self.push(arith::cmpi(
                        self.ctx,
                        arith::CmpiPredicate::Slt,
                        e,
                        n,
                        self.loc,
                    ))?;
                    ok = self.push(arith::andi(ok, inside, self.loc))?;
                }
            }
            let mut offset = self.ci64(0)?;
            for a in 0..rank {
                let start = self.get(starts[a])[0];
                let coord = match (extents[a], elem) {
                    (Some(n), Some(e)) if n > 1 => self.push(arith::addi(start, e, self.loc))?,
                    _ => start,
                };
                let ge = self.push(arith::cmpi(
                    self.ctx,
                    arith::CmpiPredicate::Sge,
                    coord,
                    zero,
                    self.loc,
                ))?;
                let lt = self.push(arith::cmpi(
                    self.ctx,
                    arith::CmpiPredicate::Slt,
                    coord,
                    extents_i32[a],
                    self.loc,
                ))?;
                ok = self.push(arith::andi(ok, ge, self.loc))?;
                ok = self.push(arith::andi(ok, lt, self.loc))?;
                let c64 = self.push(arith::extsi(coord, i64t, self.loc))?;
                let term = self.push(arith::muli(c64, strides[a], self.loc))?;
                offset = self.push(arith::addi(offset, term, self.loc))?;
            }
            if let Some(m) = mask {
                let mv = self.get(m);
                ok = self.push(arith::andi(ok, mv[slot.min(mv.len() - 1)], self.loc))?;
            }
            let zero64 = self.ci64(0)?;
            let safe = self.push(arith::select(ok, offset, zero64, self.loc))?;
            let ptr = self.push(gep(
                self.ctx,
                self.loc,
                self.args[tensor],
                safe,
                mlir_type(self.ctx, *dtype),
                llvm::r#type::pointer(self.ctx, 1),
            )?)?;
            out.push((ok, ptr));
        }
        Ok(out)
    }

    fn inst(&mut self, inst: &crate::tir::Inst) -> R<()> {
        let result_ty = inst.results.first().map(|r| self.k.ty(*r).clone());
        let d = result_ty.as_ref().map(|t| t.dtype).unwrap_or(DType::F32);
        let n_out = inst.results.first().map(|r| self.slots(*r)).unwrap_or(1);
        let per_slot = |me: &Self, v: ValueId, i: usize| {
            let xs = me.get(v);
            xs[i.min(xs.len() - 1)]
        };
        let vals: Vec<Value<'c, 'b>> = match &inst.op {
            Op::Const(l) => vec![self.constant(*l, d)?],
            Op::ProgramId(a) | Op::NumPrograms(a) => {
                let axis = ["x", "y", "z"][*a];
                let reg = if matches!(inst.op, Op::ProgramId(_)) {
                    format!("ctaid.{axis}")
                } else {
                    format!("nctaid.{axis}")
                };
                vec![self.push(special_register(self.ctx, &reg, self.loc)?)?]
            }
            Op::DimSize { tensor, axis } => vec![self.dim(*tensor, *axis)?],
            Op::ScalarParam(p) => vec![self.args[*p]],
            Op::Iota(_) => (0..n_out).map(|s| self.element(s)).collect::<R<_>>()?,
            Op::Splat { x, .. } => vec![self.get(*x)[0]; n_out],
            Op::Unary { op, x } => (0..n_out)
                .map(|i| self.unary(*op, per_slot(self, *x, i), d))
                .collect::<R<_>>()?,
            Op::Binary { op, a, b } => (0..n_out)
                .map(|i| self.binary(*op, per_slot(self, *a, i), per_slot(self, *b, i), d))
                .collect::<R<_>>()?,
            Op::Cmp { op, a, b } => {
                let ad = self.k.ty(*a).dtype;
                (0..n_out)
                    .map(|i| self.cmp(*op, per_slot(self, *a, i), per_slot(self, *b, i), ad))
                    .collect::<R<_>>()?
            }
            Op::Select { cond, a, b } => (0..n_out)
                .map(|i| {
                    self.push(arith::select(
                        per_slot(self, *cond, i),
                        per_slot(self, *a, i),
                        per_slot(self, *b, i),
                        self.loc,
                    ))
                })
                .collect::<R<_>>()?,
            Op::Cast { x, to } => {
                let from = self.k.ty(*x).dtype;
                (0..n_out)
                    .map(|i| self.cast(per_slot(self, *x, i), from, *to))
                    .collect::<R<_>>()?
            }
            Op::Load {
                tensor,
                starts,
                extents,
                mask,
                fill,
            } => {
                let len = result_ty.as_ref().map(|t| t.numel()).unwrap_or(1);
                let addrs = self.addresses(*tensor, starts, extents, n_out, len, *mask)?;
                let fillv = self
                    .constant(Literal::Float(*fill), d)
                    .or_else(|_| self.constant(Literal::Int(*fill as i64), d))?;
                let t = mlir_type(self.ctx, d);
                let mut out = Vec::new();
                for (ok, ptr) in addrs {
                    let v = self.push(llvm::load(
                        self.ctx,
                        ptr,
                        t,
                        self.loc,
                        LoadStoreOptions::new(),
                    ))?;
                    out.push(self.push(arith::select(ok, v, fillv, self.loc))?);
                }
                out
            }
            Op::Store {
                tensor,
                starts,
                extents,
                value,
                mask,
            } => {
                let len = self.k.ty(*value).numel();
                let slots = self.slots(*value);
                let addrs = self.addresses(*tensor, starts, extents, slots, len, *mask)?;
                for (i, (ok, ptr)) in addrs.into_iter().enumerate() {
                    let v = per_slot(self, *value, i);
                    let then = Block::new(&[]);
                    then.append_operation(llvm::store(
                        self.ctx,
                        v,
                        ptr,
                        self.loc,
                        LoadStoreOptions::new(),
                    ));
                    then.append_operation(scf::r#yield(&[], self.loc));
                    let region = Region::new();
                    region.append_block(then);
                    self.block.append_operation(scf::r#if(
                        ok,
                        &[],
                        region,
                        Region::new(),
                        self.loc,
                    ));
                }
                return Ok(());
            }
            other => {
                return Err(CompileError::mlir(
                    "tile lowering",
                    format!("{other:?} reached lowering unscheduled"),
                ))
            }
        };
        if let Some(r) = inst.results.first() {
            self.vals[r.0 as usize] = Some(vals);
        }
        Ok(())
    }
}

/// Builds the MLIR module of a scheduled kernel.
pub fn build<'c>(session: &'c MlirSession, k: &Kernel, s: &Schedule) -> R<Module<'c>> {
    let ctx = &session.context;
    let loc = Location::unknown(ctx);
    let module = Module::new(loc);
    let gptr = llvm::r#type::pointer(ctx, 1);
    let i32t: Type = IntegerType::new(ctx, 32).into();
    let symbols = shape_symbols(k);
    let mut arg_types: Vec<Type> = k
        .params
        .iter()
        .map(|p| match &p.kind {
            ParamKind::Tensor { .. } => gptr,
            ParamKind::Scalar { dtype } => mlir_type(ctx, *dtype),
        })
        .collect();
    arg_types.extend(std::iter::repeat_n(i32t, symbols.len()));
    let entry = Block::new(&arg_types.iter().map(|t| (*t, loc)).collect::<Vec<_>>());
    {
        let args: Vec<Value> = (0..arg_types.len())
            .map(|i| entry.argument(i).map(Value::from))
            .collect::<Result<_, _>>()
            .map_err(|e| CompileError::mlir("arguments", e.to_string()))?;
        let tid = result(entry.append_operation(special_register(ctx, "tid.x", loc)?))?;
        let mut l = Lower {
            ctx,
            loc,
            block: &entry,
            k,
            s,
            vals: vec![None; k.types.len()],
            args,
            symbols,
            tid,
        };
        for inst in &k.body.insts {
            l.inst(inst)?;
        }
    }
    entry.append_operation(llvm::r#return(None, loc));
    let body = Region::new();
    body.append_block(entry);
    let fn_type = llvm::r#type::function(llvm::r#type::void(ctx), &arg_types, false);
    module.body().append_operation(llvm::func(
        ctx,
        StringAttribute::new(ctx, &k.name),
        TypeAttribute::new(fn_type),
        body,
        &[
            (Identifier::new(ctx, "nvvm.kernel"), Attribute::unit(ctx)),
            (
                Identifier::new(ctx, "nvvm.maxntid"),
                DenseI32ArrayAttribute::new(ctx, &[s.threads as i32, 1, 1]).into(),
            ),
        ],
        loc,
    ));
    Ok(module)
}
