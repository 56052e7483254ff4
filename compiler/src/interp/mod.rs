//! The Tile IR interpreter: runs a kernel over its whole grid on host arrays. It is the reference
//! every kernel is checked against first, and how CI tests numerics without a GPU.
//!
//! Every value is held as f64 but rounded to its element type after every operation, as the
//! hardware would: f32 through `as f32`, bf16/f16 with round-to-nearest-even from the exact
//! result (the `half` crate), i32 with two's-complement wrapping. `dot` sums exact products and
//! rounds once to f32, like a tensor core's wide accumulation.

use std::collections::HashMap;

mod scan;

use half::{bf16, f16};
use tessel_package::dense_strides as strides;

use crate::tir::{
    slice_shape, BinaryOp, Block, CmpOp, DType, Dim, Inst, Kernel, Literal, Op, ParamKind,
    ReduceOp, TileType, UnaryOp, ValueId,
};

/// A host tensor; every element is exactly representable in `dtype`. Element (i, j, ...) is at
/// `data[i * strides[0] + j * strides[1] + ...]` (dense row-major unless built with `strided`).
#[derive(Debug, Clone, PartialEq)]
pub struct HostTensor {
    pub dtype: DType,
    pub shape: Vec<usize>,
    pub strides: Vec<usize>,
    pub data: Vec<f64>,
}

impl HostTensor {
    /// A tensor whose elements are `data` rounded to `dtype`.
    pub fn new(dtype: DType, shape: Vec<usize>, data: Vec<f64>) -> Self {
        assert_eq!(
            shape.iter().product::<usize>(),
            data.len(),
            "data does not fill the shape"
        );
        let data = data.into_iter().map(|x| round(dtype, x)).collect();
        let strides = strides(&shape);
        Self {
            dtype,
            shape,
            strides,
            data,
        }
    }

    /// A strided view over `data`, which must hold every element the strides reach.
    pub fn strided(dtype: DType, shape: Vec<usize>, strides: Vec<usize>, data: Vec<f64>) -> Self {
        let mut t = Self::new(dtype, vec![data.len()], data);
        t.shape = shape;
        t.strides = strides;
        t
    }

    /// One past the largest flat index the shape and strides reach (0 when empty).
    pub fn span(&self) -> usize {
        if self.shape.contains(&0) {
            return 0;
        }
        1 + self
            .shape
            .iter()
            .zip(&self.strides)
            .map(|(d, s)| (d - 1) * s)
            .sum::<usize>()
    }

    /// A tensor of NaN (or i32::MIN for integers): an element the kernel fails to write stays
    /// visibly wrong.
    pub fn poisoned(dtype: DType, shape: Vec<usize>) -> Self {
        let n = shape.iter().product();
        let p = if dtype.is_float() {
            f64::NAN
        } else {
            i32::MIN as f64
        };
        Self::new(dtype, shape, vec![p; n])
    }
}

/// An argument of a kernel call, in parameter order.
#[derive(Debug, Clone, PartialEq)]
pub enum HostArg {
    Tensor(HostTensor),
    Scalar(f64),
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum InterpError {
    #[error("`{kernel}` takes {want} arguments, {got} given")]
    ArgCount {
        kernel: String,
        want: usize,
        got: usize,
    },
    #[error("argument `{param}`: {message}")]
    BadArg { param: String, message: String },
    #[error("shape symbol `{symbol}` is {first} in one tensor and {second} in another")]
    InconsistentDim {
        symbol: String,
        first: usize,
        second: usize,
    },
    #[error("grid extent {index} ({expr}) cannot be evaluated for these shapes")]
    BadGrid { index: usize, expr: String },
    #[error("the kernel requires `{requirement}`, which does not hold for {values}")]
    Requirement { requirement: String, values: String },
    #[error("integer division by zero in program {program:?}")]
    DivisionByZero { program: [usize; 3] },
}

/// Rounds an exact value to what `dtype` can hold.
pub fn round(dtype: DType, x: f64) -> f64 {
    match dtype {
        DType::F32 => x as f32 as f64,
        DType::Bf16 => bf16::from_f64(x).to_f64(),
        DType::F16 => f16::from_f64(x).to_f64(),
        DType::I32 => {
            if x.is_nan() {
                0.0
            } else {
                (x as i64 as i32) as f64
            }
        }
        DType::Bool => f64::from(x != 0.0),
    }
}

#[derive(Debug, Clone)]
struct Tile {
    ty: TileType,
    data: Vec<f64>,
}

/// Runs `kernel` over its grid; output tensors in `args` are written in place.
pub fn run(kernel: &Kernel, args: &mut [HostArg]) -> Result<(), InterpError> {
    if args.len() != kernel.params.len() {
        return Err(InterpError::ArgCount {
            kernel: kernel.name.clone(),
            want: kernel.params.len(),
            got: args.len(),
        });
    }
    let mut dims: HashMap<String, usize> = HashMap::new();
    let mut scalars: HashMap<String, i64> = HashMap::new();
    for (p, a) in kernel.params.iter().zip(args.iter()) {
        let bad = |message: String| InterpError::BadArg {
            param: p.name.clone(),
            message,
        };
        match (&p.kind, a) {
            (
                ParamKind::Tensor {
                    dtype,
                    dims: pd,
                    strides: ps,
                    ..
                },
                HostArg::Tensor(t),
            ) => {
                if t.dtype != *dtype {
                    return Err(bad(format!("expected {dtype}, got {}", t.dtype)));
                }
                if t.shape.len() != pd.len() {
                    return Err(bad(format!(
                        "expected rank {}, got shape {:?}",
                        pd.len(),
                        t.shape
                    )));
                }
                let declared: Vec<(&Dim, usize, &str)> = match ps {
                    Some(st) => pd
                        .iter()
                        .zip(&t.shape)
                        .map(|(d, &n)| (d, n, "dimension"))
                        .chain(st.iter().zip(&t.strides).map(|(d, &n)| (d, n, "stride")))
                        .collect(),
                    None => {
                        if t.strides != strides(&t.shape) && t.span() > 1 {
                            return Err(bad("the kernel takes a dense row-major tensor".into()));
                        }
                        pd.iter()
                            .zip(&t.shape)
                            .map(|(d, &n)| (d, n, "dimension"))
                            .collect()
                    }
                };
                if t.strides.len() != t.shape.len() || t.span() > t.data.len() {
                    return Err(bad(format!(
                        "shape {:?} with strides {:?} reaches past its {} elements",
                        t.shape,
                        t.strides,
                        t.data.len()
                    )));
                }
                for (d, n, what) in declared {
                    match d {
                        Dim::Const(c) if *c as usize != n => {
                            return Err(bad(format!("{what} must be {c}, got {n}")))
                        }
                        Dim::Sym(s) => {
                            if n > i32::MAX as usize {
                                return Err(bad(format!("{what} {n} exceeds i32")));
                            }
                            if let Some(&first) = dims.get(s) {
                                if first != n {
                                    return Err(InterpError::InconsistentDim {
                                        symbol: s.clone(),
                                        first,
                                        second: n,
                                    });
                                }
                            }
                            dims.insert(s.clone(), n);
                        }
                        _ => {}
                    }
                }
            }
            (ParamKind::Scalar { dtype }, HostArg::Scalar(v)) => {
                // An integer scalar may size the grid or appear in a requirement.
                if !dtype.is_float() && *dtype != DType::Bool {
                    scalars.insert(p.name.clone(), *v as i64);
                }
            }
            (ParamKind::Tensor { .. }, HostArg::Scalar(_)) => {
                return Err(bad("expected a tensor, got a scalar".into()))
            }
            (ParamKind::Scalar { .. }, HostArg::Tensor(_)) => {
                return Err(bad("expected a scalar, got a tensor".into()))
            }
        }
    }
    // The same check, and the same words, as the runtime's before a launch.
    let lookup = |s: &str| {
        dims.get(s)
            .map(|&n| n as i64)
            .or_else(|| scalars.get(s).copied())
    };
    if let Some((requirement, values)) =
        tessel_package::failed_requirement(&kernel.requires, &lookup)
    {
        return Err(InterpError::Requirement {
            requirement,
            values,
        });
    }
    let mut grid = [1usize; 3];
    for (i, g) in kernel.grid.iter().enumerate() {
        let v = g
            .eval(&lookup)
            .filter(|v| *v >= 0)
            .ok_or_else(|| InterpError::BadGrid {
                index: i,
                expr: g.to_string(),
            })?;
        grid[i] = v as usize;
    }
    let mut m = Machine {
        k: kernel,
        vals: vec![None; kernel.types.len()],
        args,
        grid,
        pid: [0; 3],
    };
    for z in 0..grid[2] {
        for y in 0..grid[1] {
            for x in 0..grid[0] {
                m.pid = [x, y, z];
                m.block(&kernel.body)?;
            }
        }
    }
    Ok(())
}

/// A load's or store's slice: tensor, starts, extents, steps.
type SliceRef<'o> = (
    usize,
    &'o [ValueId],
    &'o [Option<usize>],
    &'o [Option<ValueId>],
);

struct Machine<'k, 'a> {
    k: &'k Kernel,
    vals: Vec<Option<Tile>>,
    args: &'a mut [HostArg],
    grid: [usize; 3],
    pid: [usize; 3],
}

/// Multi-index of flat position `i` in a row-major `shape`.
fn unflatten(mut i: usize, shape: &[usize], out: &mut [usize]) {
    for d in (0..shape.len()).rev() {
        out[d] = i % shape[d];
        i /= shape[d];
    }
}

impl Machine<'_, '_> {
    fn get(&self, v: ValueId) -> &Tile {
        self.vals[v.0 as usize]
            .as_ref()
            .expect("verified IR defines values before use")
    }

    fn scalar(&self, v: ValueId) -> f64 {
        self.get(v).data[0]
    }

    fn set(&mut self, v: ValueId, data: Vec<f64>) {
        let ty = self.k.ty(v).clone();
        self.vals[v.0 as usize] = Some(Tile { ty, data });
    }

    fn block(&mut self, b: &Block) -> Result<(), InterpError> {
        b.insts.iter().try_for_each(|inst| self.inst(inst))
    }

    fn tensor_dims(&self, t: usize) -> Vec<usize> {
        match &self.args[t] {
            HostArg::Tensor(h) => h.shape.clone(),
            HostArg::Scalar(_) => Vec::new(),
        }
    }

    /// Flat offsets (None = out of bounds, or along an axis whose step is not positive) of every
    /// element of a slice.
    fn slice_offsets(
        &self,
        tensor: usize,
        starts: &[ValueId],
        extents: &[Option<usize>],
        steps: &[Option<ValueId>],
    ) -> Vec<Option<usize>> {
        let dims = self.tensor_dims(tensor);
        let st = match &self.args[tensor] {
            HostArg::Tensor(h) => h.strides.clone(),
            HostArg::Scalar(_) => Vec::new(),
        };
        let start: Vec<i64> = starts.iter().map(|s| self.scalar(*s) as i64).collect();
        let step: Vec<i64> = steps
            .iter()
            .map(|s| s.map_or(1, |s| self.scalar(s) as i64))
            .collect();
        let shape = slice_shape(extents);
        let n: usize = shape.iter().product();
        let mut idx = vec![0; shape.len()];
        (0..n)
            .map(|i| {
                unflatten(i, &shape, &mut idx);
                let mut off = 0usize;
                let mut k = 0;
                for (d, e) in extents.iter().enumerate() {
                    let pos = start[d]
                        + if e.is_some() {
                            let p = idx[k] as i64;
                            k += 1;
                            p * step[d]
                        } else {
                            0
                        };
                    if pos < 0 || pos >= dims[d] as i64 || step[d] <= 0 {
                        return None;
                    }
                    off += pos as usize * st[d];
                }
                Some(off)
            })
            .collect()
    }

    fn broadcast(&self, x: ValueId, shape: &[usize]) -> Vec<f64> {
        let src = self.get(x);
        let sst = strides(&src.ty.shape);
        let n: usize = shape.iter().product();
        let mut idx = vec![0; shape.len()];
        (0..n)
            .map(|i| {
                unflatten(i, shape, &mut idx);
                let off: usize = idx
                    .iter()
                    .zip(&src.ty.shape)
                    .zip(&sst)
                    .map(|((i, d), s)| if *d == 1 { 0 } else { i * s })
                    .sum();
                src.data[off]
            })
            .collect()
    }

    fn reduce(&self, op: ReduceOp, x: ValueId, axis: usize, dtype: DType) -> Vec<f64> {
        let t = self.get(x);
        let shape = &t.ty.shape;
        let (outer, len, inner) = (
            shape[..axis].iter().product::<usize>(),
            shape[axis],
            shape[axis + 1..].iter().product::<usize>(),
        );
        let mut out = Vec::with_capacity(outer * inner);
        for o in 0..outer {
            for i in 0..inner {
                let vals = (0..len).map(|r| t.data[(o * len + r) * inner + i]);
                out.push(round(
                    dtype,
                    match op {
                        ReduceOp::Sum => vals.sum(),
                        ReduceOp::Max => vals.fold(f64::NEG_INFINITY, f64::max),
                    },
                ));
            }
        }
        out
    }

    fn dot(
        &self,
        a: ValueId,
        b: ValueId,
        acc: Option<ValueId>,
        trans_a: bool,
        trans_b: bool,
    ) -> Vec<f64> {
        let (ta, tb) = (self.get(a), self.get(b));
        let (sa, sb) = (&ta.ty.shape, &tb.ty.shape);
        let (m, k) = if trans_a {
            (sa[1], sa[0])
        } else {
            (sa[0], sa[1])
        };
        let n = if trans_b { sb[0] } else { sb[1] };
        let at = |i: usize, kk: usize| {
            if trans_a {
                ta.data[kk * sa[1] + i]
            } else {
                ta.data[i * sa[1] + kk]
            }
        };
        let bt = |kk: usize, j: usize| {
            if trans_b {
                tb.data[j * sb[1] + kk]
            } else {
                tb.data[kk * sb[1] + j]
            }
        };
        let accd = acc.map(|c| self.get(c).data.clone());
        let mut out = vec![0.0; m * n];
        for i in 0..m {
            for j in 0..n {
                let s: f64 = (0..k).map(|kk| at(i, kk) * bt(kk, j)).sum();
                let base = accd.as_ref().map_or(0.0, |c| c[i * n + j]);
                out[i * n + j] = round(DType::F32, s + base);
            }
        }
        out
    }

    fn load(&self, slice: SliceRef<'_>, mask: Option<ValueId>, fill: f64) -> Vec<f64> {
        let (tensor, starts, extents, steps) = slice;
        let offs = self.slice_offsets(tensor, starts, extents, steps);
        let maskd = mask.map(|m| self.get(m).data.clone());
        let HostArg::Tensor(t) = &self.args[tensor] else {
            unreachable!("checked")
        };
        let fill = round(t.dtype, fill);
        offs.iter()
            .enumerate()
            .map(|(i, o)| match (o, &maskd) {
                (Some(_), Some(m)) if m[i] == 0.0 => fill,
                (Some(o), _) => t.data[*o],
                (None, _) => fill,
            })
            .collect()
    }

    fn store(&mut self, slice: SliceRef<'_>, value: ValueId, mask: Option<ValueId>) {
        let (tensor, starts, extents, steps) = slice;
        let offs = self.slice_offsets(tensor, starts, extents, steps);
        let maskd = mask.map(|m| self.get(m).data.clone());
        let vals = self.get(value).data.clone();
        let HostArg::Tensor(t) = &mut self.args[tensor] else {
            unreachable!("checked")
        };
        for (i, o) in offs.iter().enumerate() {
            if let Some(o) = o {
                if maskd.as_ref().is_none_or(|m| m[i] != 0.0) {
                    t.data[*o] = vals[i];
                }
            }
        }
    }

    fn for_loop(
        &mut self,
        inst: &Inst,
        (lo, hi, step): (ValueId, ValueId, ValueId),
        inits: &[ValueId],
        body: &Block,
    ) -> Result<(), InterpError> {
        let (lo, hi, step) = (
            self.scalar(lo) as i64,
            self.scalar(hi) as i64,
            self.scalar(step) as i64,
        );
        let mut carried: Vec<Vec<f64>> = inits.iter().map(|v| self.get(*v).data.clone()).collect();
        let mut iv = lo;
        while iv < hi && step > 0 {
            self.set(body.args[0], vec![iv as f64]);
            for (a, d) in body.args[1..].iter().zip(&carried) {
                self.set(*a, d.clone());
            }
            self.block(body)?;
            if let Some(Inst {
                op: Op::Yield(ys), ..
            }) = body.insts.last()
            {
                carried = ys.iter().map(|y| self.get(*y).data.clone()).collect();
            }
            iv += step;
        }
        for (r, d) in inst.results.iter().zip(carried) {
            self.set(*r, d);
        }
        Ok(())
    }

    fn inst(&mut self, inst: &Inst) -> Result<(), InterpError> {
        let out_ty = inst.results.first().map(|r| self.k.ty(*r).clone());
        let dtype = out_ty.as_ref().map(|t| t.dtype).unwrap_or(DType::F32);
        let data: Vec<f64> = match &inst.op {
            Op::Const(l) => vec![round(
                dtype,
                match l {
                    Literal::Int(i) => *i as f64,
                    Literal::Float(f) => *f,
                    Literal::Bool(b) => f64::from(*b),
                },
            )],
            Op::ProgramId(a) => vec![self.pid[*a] as f64],
            Op::NumPrograms(a) => vec![self.grid[*a] as f64],
            Op::DimSize { tensor, axis } => vec![self.tensor_dims(*tensor)[*axis] as f64],
            Op::StrideSize { tensor, axis } => match &self.args[*tensor] {
                HostArg::Tensor(h) => vec![h.strides[*axis] as f64],
                HostArg::Scalar(_) => unreachable!("argument kinds were checked"),
            },
            Op::ScalarParam(p) => match &self.args[*p] {
                HostArg::Scalar(s) => vec![round(dtype, *s)],
                HostArg::Tensor(_) => unreachable!("argument kinds were checked"),
            },
            Op::Iota(n) => (0..*n).map(|i| i as f64).collect(),
            Op::Splat { x, shape } => vec![self.scalar(*x); shape.iter().product()],
            Op::Broadcast { x, shape } => self.broadcast(*x, shape),
            Op::ExpandDims { x, .. } => self.get(*x).data.clone(),
            Op::Trans { x } => {
                let t = self.get(*x);
                let (r, c) = (t.ty.shape[0], t.ty.shape[1]);
                (0..r * c).map(|i| t.data[(i % r) * c + i / r]).collect()
            }
            Op::Unary { op, x } => {
                let t = self.get(*x);
                t.data
                    .iter()
                    .map(|&v| round(dtype, unary(*op, v, dtype)))
                    .collect()
            }
            Op::Binary { op, a, b } => {
                let (ta, tb) = (self.get(*a), self.get(*b));
                let mut out = Vec::with_capacity(ta.data.len());
                for (&x, &y) in ta.data.iter().zip(&tb.data) {
                    out.push(match binary(*op, x, y, dtype) {
                        Some(v) => round(dtype, v),
                        None => return Err(InterpError::DivisionByZero { program: self.pid }),
                    });
                }
                out
            }
            Op::Cmp { op, a, b } => {
                let (ta, tb) = (self.get(*a), self.get(*b));
                ta.data
                    .iter()
                    .zip(&tb.data)
                    .map(|(&x, &y)| {
                        f64::from(match op {
                            CmpOp::Eq => x == y,
                            CmpOp::Ne => x != y,
                            CmpOp::Lt => x < y,
                            CmpOp::Le => x <= y,
                            CmpOp::Gt => x > y,
                            CmpOp::Ge => x >= y,
                        })
                    })
                    .collect()
            }
            Op::Select { cond, a, b } => {
                let (c, ta, tb) = (self.get(*cond), self.get(*a), self.get(*b));
                c.data
                    .iter()
                    .zip(ta.data.iter().zip(&tb.data))
                    .map(|(&c, (&x, &y))| if c != 0.0 { x } else { y })
                    .collect()
            }
            Op::Cast { x, to } => {
                let t = self.get(*x);
                t.data
                    .iter()
                    .map(|&v| {
                        if *to == DType::I32 && t.ty.dtype.is_float() {
                            // Truncation toward zero, saturating; NaN becomes 0 (PTX cvt.rzi.s32).
                            if v.is_nan() {
                                0.0
                            } else {
                                v.trunc().clamp(i32::MIN as f64, i32::MAX as f64)
                            }
                        } else {
                            round(*to, v)
                        }
                    })
                    .collect()
            }
            Op::Reduce { op, x, axis } => self.reduce(*op, *x, *axis, dtype),
            Op::Scan { op, x, axis } => {
                let t = self.get(*x);
                scan::scan(*op, &t.data, &t.ty.shape, *axis, dtype)
            }
            Op::Dot {
                a,
                b,
                acc,
                trans_a,
                trans_b,
            } => self.dot(*a, *b, *acc, *trans_a, *trans_b),
            Op::Load {
                tensor,
                starts,
                extents,
                steps,
                mask,
                fill,
            } => self.load((*tensor, starts, extents, steps), *mask, *fill),
            Op::Store {
                tensor,
                starts,
                extents,
                steps,
                value,
                mask,
            } => {
                self.store((*tensor, starts, extents, steps), *value, *mask);
                return Ok(());
            }
            Op::For {
                lo,
                hi,
                step,
                inits,
                body,
            } => return self.for_loop(inst, (*lo, *hi, *step), inits, body),
            Op::Yield(_) => return Ok(()),
        };
        if let Some(r) = inst.results.first() {
            self.set(*r, data);
        }
        Ok(())
    }
}

fn unary(op: UnaryOp, v: f64, dtype: DType) -> f64 {
    match op {
        UnaryOp::Neg => -v,
        UnaryOp::Not => f64::from(v == 0.0),
        UnaryOp::Exp => v.exp(),
        UnaryOp::Exp2 => v.exp2(),
        UnaryOp::Log => v.ln(),
        UnaryOp::Sqrt => v.sqrt(),
        UnaryOp::Rsqrt => 1.0 / v.sqrt(),
        UnaryOp::Sigmoid => 1.0 / (1.0 + (-v).exp()),
        UnaryOp::Silu => v / (1.0 + (-v).exp()),
        UnaryOp::Abs => {
            if dtype == DType::I32 {
                (v as i64).abs() as f64
            } else {
                v.abs()
            }
        }
    }
}

/// None on integer division by zero.
fn binary(op: BinaryOp, x: f64, y: f64, dtype: DType) -> Option<f64> {
    let int = dtype == DType::I32;
    Some(match op {
        BinaryOp::Add => x + y,
        BinaryOp::Sub => x - y,
        BinaryOp::Mul => x * y,
        BinaryOp::Div if int => {
            if y == 0.0 {
                return None;
            }
            ((x as i64) / (y as i64)) as f64
        }
        BinaryOp::Rem if int => {
            if y == 0.0 {
                return None;
            }
            ((x as i64) % (y as i64)) as f64
        }
        BinaryOp::Div => x / y,
        BinaryOp::Rem => x % y,
        BinaryOp::Max => {
            if x.is_nan() || y.is_nan() {
                f64::NAN
            } else {
                x.max(y)
            }
        }
        BinaryOp::Min => {
            if x.is_nan() || y.is_nan() {
                f64::NAN
            } else {
                x.min(y)
            }
        }
        BinaryOp::And => f64::from(x != 0.0 && y != 0.0),
        BinaryOp::Or => f64::from(x != 0.0 || y != 0.0),
    })
}
