//! The abstract syntax tree. Every node carries the byte span of the source it came from, so any
//! later stage can point at the text that caused an error.

use std::fmt;

/// A half-open byte range `[start, end)` in one source file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Span {
    pub start: usize,
    pub end: usize,
}

impl Span {
    pub fn new(start: usize, end: usize) -> Self {
        Self { start, end }
    }

    pub fn to(self, other: Span) -> Span {
        Span::new(self.start.min(other.start), self.end.max(other.end))
    }
}

impl From<pest::Span<'_>> for Span {
    fn from(s: pest::Span<'_>) -> Self {
        Span::new(s.start(), s.end())
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Ident {
    pub name: String,
    pub span: Span,
}

impl fmt::Display for Ident {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.name)
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct File {
    pub kernels: Vec<Kernel>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Kernel {
    pub attributes: Vec<Attribute>,
    pub name: Ident,
    pub consts: Vec<ConstParam>,
    pub params: Vec<Param>,
    pub grid: Vec<Expr>,
    pub grid_span: Span,
    /// `requires N <= BN, ...`: launch-time conditions on shapes and constants.
    pub requires: Vec<Expr>,
    pub body: Block,
    pub span: Span,
}

/// `@name(args)` before a kernel: schedule hints such as `@num_warps(4)`.
#[derive(Debug, Clone, PartialEq)]
pub struct Attribute {
    pub name: Ident,
    pub args: Vec<Arg>,
    pub span: Span,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConstKind {
    Int,
    Bool,
    Dtype,
}

impl fmt::Display for ConstKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ConstKind::Int => "int",
            ConstKind::Bool => "bool",
            ConstKind::Dtype => "dtype",
        })
    }
}

/// A compile-time parameter: `BM: int = 64`.
#[derive(Debug, Clone, PartialEq)]
pub struct ConstParam {
    pub name: Ident,
    pub kind: ConstKind,
    pub default: Option<Expr>,
    pub span: Span,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Io {
    In,
    Out,
    InOut,
}

impl fmt::Display for Io {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Io::In => "in",
            Io::Out => "out",
            Io::InOut => "inout",
        })
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum Dim {
    Sym(Ident),
    Const(i64, Span),
}

#[derive(Debug, Clone, PartialEq)]
pub enum ParamType {
    /// `in tensor<bf16>[M, K]`; the element type may name a dtype const parameter.
    Tensor {
        io: Io,
        elem: Ident,
        dims: Vec<Dim>,
        /// `strides[...]` in elements; None means dense row-major.
        strides: Option<Vec<Dim>>,
    },
    /// A run-time scalar: `scale: f32`.
    Scalar(Ident),
}

#[derive(Debug, Clone, PartialEq)]
pub struct Param {
    pub name: Ident,
    pub ty: ParamType,
    pub span: Span,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Block {
    pub stmts: Vec<Stmt>,
    pub span: Span,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Stmt {
    Let {
        name: Ident,
        value: Expr,
        span: Span,
    },
    Var {
        name: Ident,
        value: Expr,
        span: Span,
    },
    Assign {
        name: Ident,
        value: Expr,
        span: Span,
    },
    For {
        var: Ident,
        lo: Expr,
        hi: Expr,
        step: Option<Box<Expr>>,
        body: Block,
        span: Span,
    },
    If {
        cond: Expr,
        then: Block,
        otherwise: Option<Block>,
        span: Span,
    },
    Expr(Expr),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BinOp {
    Or,
    And,
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
    Add,
    Sub,
    Mul,
    Div,
    Rem,
}

impl BinOp {
    pub fn symbol(self) -> &'static str {
        match self {
            BinOp::Or => "||",
            BinOp::And => "&&",
            BinOp::Eq => "==",
            BinOp::Ne => "!=",
            BinOp::Lt => "<",
            BinOp::Le => "<=",
            BinOp::Gt => ">",
            BinOp::Ge => ">=",
            BinOp::Add => "+",
            BinOp::Sub => "-",
            BinOp::Mul => "*",
            BinOp::Div => "/",
            BinOp::Rem => "%",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UnOp {
    Neg,
    Not,
}

/// `start : +len` in a tensor slice: a tile of `len` elements from `start`; a bare `index`
/// (no length) selects one element and drops that dimension from the tile. `start : +len : step`
/// takes every `step`-th element: start, start + step, …, start + (len − 1)·step.
#[derive(Debug, Clone, PartialEq)]
pub struct Range {
    pub start: Expr,
    pub len: Option<Expr>,
    /// None is step 1.
    pub step: Option<Expr>,
    pub span: Span,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Arg {
    pub name: Option<Ident>,
    pub value: Expr,
    pub span: Span,
}

#[derive(Debug, Clone, PartialEq)]
pub enum ExprKind {
    Int(i64),
    Float(f64),
    Bool(bool),
    Name(Ident),
    Unary(UnOp, Box<Expr>),
    Binary(BinOp, Box<Expr>, Box<Expr>),
    Call {
        func: Ident,
        type_args: Vec<Ident>,
        args: Vec<Arg>,
    },
    /// `a[r0 : +BM, k : +BK]`: only meaningful as the first argument of `load`/`store`.
    Slice {
        tensor: Ident,
        ranges: Vec<Range>,
    },
}

#[derive(Debug, Clone, PartialEq)]
pub struct Expr {
    pub kind: ExprKind,
    pub span: Span,
}
