//! Tile IR: SSA over whole tiles.
//!
//! A value is a tile with a static element type and a concrete shape (a scalar is a rank-0
//! tile); kernels are specialised, so every compile-time parameter is already folded in. Global
//! tensors keep symbolic shapes, read at run time. Instructions live in blocks; a `for` owns a
//! nested block whose arguments are the induction variable and the loop-carried tiles, and which
//! ends in `yield`. The text form (see `print` and `parse`) round-trips exactly.

pub mod facts;
mod parse;
mod print;
mod verify;

pub use parse::parse_kernel;
pub use verify::verify;

use std::fmt;

/// Element types and tensor directions are the package format's, so the compiler, the manifest
/// and the runtime share one definition and convert nothing.
pub use tessel_package::{DType, Io};

/// The type of a tile: element type and shape (empty shape = scalar).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct TileType {
    pub dtype: DType,
    pub shape: Vec<usize>,
}

impl TileType {
    pub fn scalar(dtype: DType) -> Self {
        Self {
            dtype,
            shape: Vec::new(),
        }
    }

    pub fn new(dtype: DType, shape: Vec<usize>) -> Self {
        Self { dtype, shape }
    }

    pub fn is_scalar(&self) -> bool {
        self.shape.is_empty()
    }

    pub fn numel(&self) -> usize {
        self.shape.iter().product()
    }
}

impl fmt::Display for TileType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.dtype)?;
        if !self.shape.is_empty() {
            let dims: Vec<String> = self.shape.iter().map(|d| d.to_string()).collect();
            write!(f, "[{}]", dims.join(", "))?;
        }
        Ok(())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ValueId(pub u32);

impl fmt::Display for ValueId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "%{}", self.0)
    }
}

/// Launch-grid extents: shared with the package format, which the runtime evaluates.
pub use tessel_package::ShapeExpr;
/// Launch-time requirements on shapes: shared with the package format, which the runtime checks.
pub use tessel_package::{Cmp, Requirement};

/// One dimension of a global tensor: a shape symbol bound at launch, or a fixed size (the
/// manifest's own type).
pub use tessel_package::DimSpec as Dim;

#[derive(Debug, Clone, PartialEq)]
pub enum ParamKind {
    /// A tensor in global memory; `strides` (in elements) None means dense row-major.
    Tensor {
        io: Io,
        dtype: DType,
        dims: Vec<Dim>,
        strides: Option<Vec<Dim>>,
    },
    Scalar {
        dtype: DType,
    },
}

#[derive(Debug, Clone, PartialEq)]
pub struct Param {
    pub name: String,
    pub kind: ParamKind,
}

/// A compile-time value a kernel was specialised with.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum ConstValue {
    Int(i64),
    Bool(bool),
    Dtype(DType),
}

impl fmt::Display for ConstValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConstValue::Int(v) => write!(f, "{v}"),
            ConstValue::Bool(b) => write!(f, "{b}"),
            ConstValue::Dtype(d) => write!(f, "{d}"),
        }
    }
}

/// A scalar literal.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Literal {
    Int(i64),
    Float(f64),
    Bool(bool),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UnaryOp {
    Neg,
    Not,
    Exp,
    Exp2,
    Log,
    Sqrt,
    Rsqrt,
    Sigmoid,
    Silu,
    Abs,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BinaryOp {
    Add,
    Sub,
    Mul,
    Div,
    Rem,
    Max,
    Min,
    And,
    Or,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CmpOp {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReduceOp {
    Sum,
    Max,
}

/// An inclusive scan along one axis: element i is the combination of elements 0..=i.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ScanOp {
    Sum,
    Prod,
}

macro_rules! names {
    ($ty:ty { $($v:ident => $s:literal),* $(,)? }) => {
        impl $ty {
            /// Every operation of the kind, in its table's order: the one list of them.
            pub const ALL: &'static [Self] = &[$(Self::$v),*];
            pub fn name(self) -> &'static str { match self { $(Self::$v => $s),* } }
            pub fn parse(s: &str) -> Option<Self> { match s { $($s => Some(Self::$v),)* _ => None } }
        }
    };
}
names!(UnaryOp { Neg => "neg", Not => "not", Exp => "exp", Exp2 => "exp2", Log => "log",
    Sqrt => "sqrt", Rsqrt => "rsqrt", Sigmoid => "sigmoid", Silu => "silu", Abs => "abs" });
names!(BinaryOp { Add => "add", Sub => "sub", Mul => "mul", Div => "div", Rem => "rem",
    Max => "max", Min => "min", And => "and", Or => "or" });
names!(CmpOp { Eq => "eq", Ne => "ne", Lt => "lt", Le => "le", Gt => "gt", Ge => "ge" });
names!(ReduceOp { Sum => "sum", Max => "max" });
names!(ScanOp { Sum => "cumsum", Prod => "cumprod" });

impl UnaryOp {
    /// Whether the language spells it as a function, `exp(x)`; `neg` and `not` are the
    /// operators `-x` and `!x`.
    pub fn is_function(self) -> bool {
        !matches!(self, UnaryOp::Neg | UnaryOp::Not)
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum Op {
    Const(Literal),
    ProgramId(usize),
    NumPrograms(usize),
    /// Run-time extent of tensor parameter `tensor` along `axis`, as an i32.
    DimSize {
        tensor: usize,
        axis: usize,
    },
    /// Run-time stride (in elements) of tensor parameter `tensor` along `axis`, as an i32.
    StrideSize {
        tensor: usize,
        axis: usize,
    },
    /// Value of scalar parameter `param`.
    ScalarParam(usize),
    /// The 1-D i32 tile 0, 1, …, n−1.
    Iota(usize),
    /// A scalar repeated over `shape`.
    Splat {
        x: ValueId,
        shape: Vec<usize>,
    },
    /// Size-1 dimensions of `x` stretched to `shape` (same rank).
    Broadcast {
        x: ValueId,
        shape: Vec<usize>,
    },
    /// A size-1 dimension inserted before `axis`.
    ExpandDims {
        x: ValueId,
        axis: usize,
    },
    /// 2-D transpose.
    Trans {
        x: ValueId,
    },
    Unary {
        op: UnaryOp,
        x: ValueId,
    },
    Binary {
        op: BinaryOp,
        a: ValueId,
        b: ValueId,
    },
    Cmp {
        op: CmpOp,
        a: ValueId,
        b: ValueId,
    },
    Select {
        cond: ValueId,
        a: ValueId,
        b: ValueId,
    },
    Cast {
        x: ValueId,
        to: DType,
    },
    Reduce {
        op: ReduceOp,
        x: ValueId,
        axis: usize,
    },
    /// The inclusive scan of `x` along `axis`: the same type as `x`. Floats accumulate in f32
    /// and round once per element.
    Scan {
        op: ScanOp,
        x: ValueId,
        axis: usize,
    },
    /// a·b (+ acc), operands optionally transposed, accumulated in f32.
    Dot {
        a: ValueId,
        b: ValueId,
        acc: Option<ValueId>,
        trans_a: bool,
        trans_b: bool,
    },
    /// The tile of a tensor parameter starting at `starts`, with `extents[d]` elements along
    /// dimension d, or, where it is None, the single index `starts[d]` with that dimension
    /// dropped from the tile. Element i of a ranged dimension is at `starts[d] + i·steps[d]`
    /// (`steps[d]` None: step 1; only ranged dimensions have steps). Elements outside the tensor,
    /// where `mask` is false, or along a dimension whose run-time step is not positive read as
    /// `fill`.
    Load {
        tensor: usize,
        starts: Vec<ValueId>,
        extents: Vec<Option<usize>>,
        steps: Vec<Option<ValueId>>,
        mask: Option<ValueId>,
        fill: f64,
    },
    /// Writes `value` (shaped like the load of the same slice); elements outside the tensor,
    /// masked off, or along a dimension whose run-time step is not positive are not written.
    Store {
        tensor: usize,
        starts: Vec<ValueId>,
        extents: Vec<Option<usize>>,
        steps: Vec<Option<ValueId>>,
        value: ValueId,
        mask: Option<ValueId>,
    },
    /// for iv = lo; iv < hi; iv += step, carrying `inits` through the body's block arguments.
    For {
        lo: ValueId,
        hi: ValueId,
        step: ValueId,
        inits: Vec<ValueId>,
        body: Block,
    },
    Yield(Vec<ValueId>),
}

#[derive(Debug, Clone, PartialEq)]
pub struct Inst {
    pub results: Vec<ValueId>,
    pub op: Op,
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct Block {
    /// For a loop body: the induction variable, then one per carried value.
    pub args: Vec<ValueId>,
    pub insts: Vec<Inst>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Kernel {
    pub name: String,
    /// The compile-time values this kernel was specialised with, in declaration order.
    pub consts: Vec<(String, ConstValue)>,
    /// Schedule hints from the source (`@num_warps(4)`), read by the scheduler.
    pub attrs: Vec<(String, Vec<i64>)>,
    pub params: Vec<Param>,
    pub grid: Vec<ShapeExpr>,
    /// What a call's shapes must satisfy (`requires`); the interpreter and runtime check them.
    pub requires: Vec<Requirement>,
    pub body: Block,
    /// The type of every value, indexed by `ValueId`.
    pub types: Vec<TileType>,
}

impl Kernel {
    pub fn ty(&self, v: ValueId) -> &TileType {
        &self.types[v.0 as usize]
    }

    pub fn attr(&self, name: &str) -> Option<&[i64]> {
        self.attrs
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_slice())
    }

    pub fn tensor_params(&self) -> impl Iterator<Item = (usize, &Param)> {
        self.params
            .iter()
            .enumerate()
            .filter(|(_, p)| matches!(p.kind, ParamKind::Tensor { .. }))
    }
}

/// Whether every ranged axis of a slice has step 1.
pub fn unit_steps(steps: &[Option<ValueId>]) -> bool {
    steps.iter().all(Option::is_none)
}

/// The tile shape of a slice: the extents that are ranges.
pub fn slice_shape(extents: &[Option<usize>]) -> Vec<usize> {
    extents.iter().flatten().copied().collect()
}

impl Op {
    /// Every value this op reads (not counting the values defined inside a loop body).
    pub fn operands(&self) -> Vec<ValueId> {
        use Op::*;
        match self {
            Const(_)
            | ProgramId(_)
            | NumPrograms(_)
            | DimSize { .. }
            | StrideSize { .. }
            | ScalarParam(_)
            | Iota(_) => {
                vec![]
            }
            Splat { x, .. } | Broadcast { x, .. } | ExpandDims { x, .. } | Trans { x } => vec![*x],
            Unary { x, .. } | Cast { x, .. } | Reduce { x, .. } | Scan { x, .. } => vec![*x],
            Binary { a, b, .. } | Cmp { a, b, .. } => vec![*a, *b],
            Select { cond, a, b } => vec![*cond, *a, *b],
            Dot { a, b, acc, .. } => [*a, *b].into_iter().chain(*acc).collect(),
            Load {
                starts,
                steps,
                mask,
                ..
            } => starts
                .iter()
                .copied()
                .chain(steps.iter().flatten().copied())
                .chain(*mask)
                .collect(),
            Store {
                starts,
                steps,
                value,
                mask,
                ..
            } => starts
                .iter()
                .copied()
                .chain(steps.iter().flatten().copied())
                .chain([*value])
                .chain(*mask)
                .collect(),
            For {
                lo,
                hi,
                step,
                inits,
                ..
            } => [*lo, *hi, *step]
                .into_iter()
                .chain(inits.iter().copied())
                .collect(),
            Yield(vs) => vs.clone(),
        }
    }
}
