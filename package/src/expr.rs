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
