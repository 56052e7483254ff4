//! Integer expressions over shape symbols: launch grids, FLOP and byte counts.

use std::fmt;

/// A launch-grid extent or any other integer known once tensor shapes are: constants, shape
/// symbols and integer arithmetic. The runtime evaluates these from the shapes of a call.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ShapeExpr {
    Int(i64),
    Sym(String),
    Add(Box<ShapeExpr>, Box<ShapeExpr>),
    Sub(Box<ShapeExpr>, Box<ShapeExpr>),
    Mul(Box<ShapeExpr>, Box<ShapeExpr>),
    Div(Box<ShapeExpr>, Box<ShapeExpr>),
    CeilDiv(Box<ShapeExpr>, Box<ShapeExpr>),
    Min(Box<ShapeExpr>, Box<ShapeExpr>),
    Max(Box<ShapeExpr>, Box<ShapeExpr>),
}

impl ShapeExpr {
    /// Evaluates with `lookup` giving each symbol's value; None on a missing symbol, overflow or
    /// division by zero.
    pub fn eval(&self, lookup: &dyn Fn(&str) -> Option<i64>) -> Option<i64> {
        use ShapeExpr::*;
        let bin = |a: &ShapeExpr, b: &ShapeExpr| Some((a.eval(lookup)?, b.eval(lookup)?));
        match self {
            Int(v) => Some(*v),
            Sym(s) => lookup(s),
            Add(a, b) => bin(a, b).and_then(|(x, y)| x.checked_add(y)),
            Sub(a, b) => bin(a, b).and_then(|(x, y)| x.checked_sub(y)),
            Mul(a, b) => bin(a, b).and_then(|(x, y)| x.checked_mul(y)),
            Div(a, b) => bin(a, b).and_then(|(x, y)| x.checked_div(y)),
            CeilDiv(a, b) => bin(a, b).and_then(|(x, y)| {
                if y <= 0 || x < 0 {
                    None
                } else {
                    Some(x / y + i64::from(x % y != 0))
                }
            }),
            Min(a, b) => bin(a, b).map(|(x, y)| x.min(y)),
            Max(a, b) => bin(a, b).map(|(x, y)| x.max(y)),
        }
    }
}

impl fmt::Display for ShapeExpr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use ShapeExpr::*;
        match self {
            Int(v) => write!(f, "{v}"),
            Sym(s) => f.write_str(s),
            Add(a, b) => write!(f, "({a} + {b})"),
            Sub(a, b) => write!(f, "({a} - {b})"),
            Mul(a, b) => write!(f, "({a} * {b})"),
            Div(a, b) => write!(f, "({a} / {b})"),
            CeilDiv(a, b) => write!(f, "cdiv({a}, {b})"),
            Min(a, b) => write!(f, "min({a}, {b})"),
            Max(a, b) => write!(f, "max({a}, {b})"),
        }
    }
}

/// How a launch-time requirement compares its two sides.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Cmp {
    Lt,
    Le,
    Gt,
    Ge,
    Eq,
    Ne,
}

impl Cmp {
    pub fn symbol(self) -> &'static str {
        match self {
            Cmp::Lt => "<",
            Cmp::Le => "<=",
            Cmp::Gt => ">",
            Cmp::Ge => ">=",
            Cmp::Eq => "==",
            Cmp::Ne => "!=",
        }
    }

    pub fn holds(self, a: i64, b: i64) -> bool {
        match self {
            Cmp::Lt => a < b,
            Cmp::Le => a <= b,
            Cmp::Gt => a > b,
            Cmp::Ge => a >= b,
            Cmp::Eq => a == b,
            Cmp::Ne => a != b,
        }
    }
}

/// A kernel's launch-time requirement on its shapes (`requires N <= BN` in the source, with the
/// constants folded): the runtime and the interpreter refuse a call for which it does not hold,
/// because the kernel would silently compute something else (e.g. leave elements unwritten).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Requirement {
    pub lhs: ShapeExpr,
    pub cmp: Cmp,
    pub rhs: ShapeExpr,
}

impl Requirement {
    /// Whether it holds for these symbol values; None when a side cannot be evaluated (a missing
    /// symbol, overflow, division by zero), which callers treat as not holding.
    pub fn holds(&self, lookup: &dyn Fn(&str) -> Option<i64>) -> Option<bool> {
        Some(
            self.cmp
                .holds(self.lhs.eval(lookup)?, self.rhs.eval(lookup)?),
        )
    }

    /// The symbols it reads, each once, in order of appearance: what an error should show.
    pub fn symbols(&self) -> Vec<String> {
        fn walk(e: &ShapeExpr, out: &mut Vec<String>) {
            use ShapeExpr::*;
            match e {
                Int(_) => {}
                Sym(s) => {
                    if !out.contains(s) {
                        out.push(s.clone())
                    }
                }
                Add(a, b)
                | Sub(a, b)
                | Mul(a, b)
                | Div(a, b)
                | CeilDiv(a, b)
                | Min(a, b)
                | Max(a, b) => {
                    walk(a, out);
                    walk(b, out);
                }
            }
        }
        let mut out = Vec::new();
        walk(&self.lhs, &mut out);
        walk(&self.rhs, &mut out);
        out
    }
}

impl fmt::Display for Requirement {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {} {}", self.lhs, self.cmp.symbol(), self.rhs)
    }
}
