//! pest grammar (tessel.pest) → AST.

use pest::iterators::{Pair, Pairs};
use pest::pratt_parser::{Assoc, Op, PrattParser};
use pest::Parser;
use pest_derive::Parser;
use std::sync::OnceLock;

use super::ast::*;
use crate::diag::Diagnostic;

#[derive(Parser)]
#[grammar = "syntax/tessel.pest"]
struct TesselParser;

use super::errors::syntax_error;

/// Deepest bracket nesting accepted. The parser and later passes recurse on nesting, so an
/// adversarial input could otherwise exhaust the stack.
const MAX_NESTING: usize = 200;

/// Parses a whole file.
pub fn parse(source: &str) -> Result<File, Diagnostic> {
    check_nesting(source)?;
    // Records the literal tokens (`)`, `;`) the parser tried at the failure, so the error can name
    // the missing one; without it pest reports only grammar rules.
    pest::set_error_detail(true);
    let mut pairs = TesselParser::parse(Rule::file, source).map_err(|e| syntax_error(e, source))?;
    let file = pairs
        .next()
        .expect("the file rule always produces one pair");
    let kernels = file
        .into_inner()
        .filter(|p| p.as_rule() == Rule::kernel)
        .map(kernel)
        .collect();
    Ok(File { kernels })
}

fn check_nesting(source: &str) -> Result<(), Diagnostic> {
    let mut depth = 0usize;
    let mut prefix_run = 0usize;
    for (i, c) in source.char_indices() {
        match c {
            '(' | '[' | '{' => depth += 1,
            ')' | ']' | '}' => depth = depth.saturating_sub(1),
            _ => {}
        }
        match c {
            '-' | '!' => prefix_run += 1,
            ' ' | '\t' | '\n' | '\r' => {}
            _ => prefix_run = 0,
        }
        if depth > MAX_NESTING || prefix_run > MAX_NESTING {
            return Err(Diagnostic::error(
                "expression nested too deeply",
                Span::new(i, i + c.len_utf8()),
                format!("more than {MAX_NESTING} levels deep here"),
            ));
        }
    }
    Ok(())
}

fn span(p: &Pair<Rule>) -> Span {
    p.as_span().into()
}

fn ident(p: Pair<Rule>) -> Ident {
    Ident {
        name: p.as_str().to_string(),
        span: span(&p),
    }
}

fn kernel(p: Pair<Rule>) -> Kernel {
    let sp = span(&p);
    let mut attributes = Vec::new();
    let mut name = None;
    let mut consts = Vec::new();
    let mut params = Vec::new();
    let mut grid = Vec::new();
    let mut grid_span = Span::default();
    let mut requires = Vec::new();
    let mut body = None;
    for item in p.into_inner() {
        match item.as_rule() {
            Rule::attribute => attributes.push(attribute(item)),
            Rule::ident => name = Some(ident(item)),
            Rule::const_params => consts = item.into_inner().map(const_param).collect(),
            Rule::params => params = item.into_inner().map(param).collect(),
            Rule::grid => {
                grid_span = span(&item);
                grid = item.into_inner().map(expr).collect();
            }
            Rule::requires => {
                requires = item
                    .into_inner()
                    .filter(|q| q.as_rule() == Rule::expr)
                    .map(expr)
                    .collect()
            }
            Rule::block => body = Some(block(item)),
            _ => {}
        }
    }
    Kernel {
        attributes,
        name: name.expect("grammar: kernel has a name"),
        consts,
        params,
        grid,
        grid_span,
        requires,
        body: body.expect("grammar: kernel has a body"),
        span: sp,
    }
}

fn attribute(p: Pair<Rule>) -> Attribute {
    let sp = span(&p);
    let mut inner = p.into_inner();
    let name = ident(inner.next().expect("grammar: attribute name"));
    let args = inner.next().map(args).unwrap_or_default();
    Attribute {
        name,
        args,
        span: sp,
    }
}

fn const_param(p: Pair<Rule>) -> ConstParam {
    let sp = span(&p);
    let mut inner = p.into_inner();
    let name = ident(inner.next().expect("grammar: const name"));
    let kind = match inner.next().expect("grammar: const kind").as_str() {
        "int" => ConstKind::Int,
        "bool" => ConstKind::Bool,
        _ => ConstKind::Dtype,
    };
    let default = inner.next().map(expr);
    ConstParam {
        name,
        kind,
        default,
        span: sp,
    }
}

fn param(p: Pair<Rule>) -> Param {
    let sp = span(&p);
    let mut inner = p.into_inner();
    let name = ident(inner.next().expect("grammar: param name"));
    let ty_pair = inner.next().expect("grammar: param type");
    let ty = match ty_pair.as_rule() {
        Rule::tensor_type => {
            let mut t = ty_pair.into_inner();
            let io = match t.next().expect("grammar: io").as_str() {
                "in" => Io::In,
                "out" => Io::Out,
                _ => Io::InOut,
            };
            let elem = ident(t.next().expect("grammar: element type"));
            let dim = |d: Pair<Rule>| {
                let d = d.into_inner().next().expect("grammar: dim");
                match d.as_rule() {
                    Rule::int => Dim::Const(d.as_str().parse().unwrap_or(i64::MAX), span(&d)),
                    _ => Dim::Sym(ident(d)),
                }
            };
            let mut dims = Vec::new();
            let mut strides = None;
            for d in t {
                match d.as_rule() {
                    Rule::strides => strides = Some(d.into_inner().map(dim).collect()),
                    _ => dims.push(dim(d)),
                }
            }
            ParamType::Tensor {
                io,
                elem,
                dims,
                strides,
            }
        }
        _ => ParamType::Scalar(ident(ty_pair)),
    };
    Param { name, ty, span: sp }
}

fn block(p: Pair<Rule>) -> Block {
    let sp = span(&p);
    Block {
        stmts: p
            .into_inner()
            .filter(|q| q.as_rule() != Rule::rbrace)
            .map(stmt)
            .collect(),
        span: sp,
    }
}

fn stmt(p: Pair<Rule>) -> Stmt {
    let sp = span(&p);
    let rule = p.as_rule();
    let mut inner = p
        .into_inner()
        .filter(|q| !is_keyword(q.as_rule()) && !matches!(q.as_rule(), Rule::semi));
    match rule {
        Rule::let_stmt | Rule::var_stmt | Rule::assign_stmt => {
            let name = ident(inner.next().expect("grammar: binding name"));
            let value = expr(inner.next().expect("grammar: binding value"));
            match rule {
                Rule::let_stmt => Stmt::Let {
                    name,
                    value,
                    span: sp,
                },
                Rule::var_stmt => Stmt::Var {
                    name,
                    value,
                    span: sp,
                },
                _ => Stmt::Assign {
                    name,
                    value,
                    span: sp,
                },
            }
        }
        Rule::for_stmt => {
            let var = ident(inner.next().expect("grammar: loop variable"));
            let lo = expr(inner.next().expect("grammar: loop start"));
            let hi = expr(inner.next().expect("grammar: loop end"));
            let mut rest: Vec<Pair<Rule>> = inner.collect();
            let body = block(rest.pop().expect("grammar: loop body"));
            let step = rest.pop().map(|e| Box::new(expr(e)));
            Stmt::For {
                var,
                lo,
                hi,
                step,
                body,
                span: sp,
            }
        }
        Rule::if_stmt => {
            let cond = expr(inner.next().expect("grammar: condition"));
            let then = block(inner.next().expect("grammar: then block"));
            let otherwise = inner.next().map(|e| match e.as_rule() {
                Rule::if_stmt => {
                    let s = span(&e);
                    Block {
                        stmts: vec![stmt(e)],
                        span: s,
                    }
                }
                _ => block(e),
            });
            Stmt::If {
                cond,
                then,
                otherwise,
                span: sp,
            }
        }
        _ => Stmt::Expr(expr(inner.next().expect("grammar: expression statement"))),
    }
}

fn is_keyword(rule: Rule) -> bool {
    matches!(
        rule,
        Rule::kw_let
            | Rule::kw_var
            | Rule::kw_for
            | Rule::kw_in
            | Rule::kw_if
            | Rule::kw_else
            | Rule::kw_step
    )
}

fn pratt() -> &'static PrattParser<Rule> {
    static PRATT: OnceLock<PrattParser<Rule>> = OnceLock::new();
    PRATT.get_or_init(|| {
        PrattParser::new()
            .op(Op::infix(Rule::or, Assoc::Left))
            .op(Op::infix(Rule::and, Assoc::Left))
            .op(Op::infix(Rule::eq, Assoc::Left) | Op::infix(Rule::ne, Assoc::Left))
            .op(Op::infix(Rule::lt, Assoc::Left)
                | Op::infix(Rule::le, Assoc::Left)
                | Op::infix(Rule::gt, Assoc::Left)
                | Op::infix(Rule::ge, Assoc::Left))
            .op(Op::infix(Rule::add, Assoc::Left) | Op::infix(Rule::sub, Assoc::Left))
            .op(Op::infix(Rule::mul, Assoc::Left)
                | Op::infix(Rule::div, Assoc::Left)
                | Op::infix(Rule::rem, Assoc::Left))
            .op(Op::prefix(Rule::neg) | Op::prefix(Rule::not))
    })
}

fn expr(p: Pair<Rule>) -> Expr {
    pratt_expr(p.into_inner())
}

fn pratt_expr(pairs: Pairs<Rule>) -> Expr {
    pratt()
        .map_primary(primary)
        .map_prefix(|op, rhs| {
            let sp = span(&op).to(rhs.span);
            let op = if op.as_rule() == Rule::neg {
                UnOp::Neg
            } else {
                UnOp::Not
            };
            Expr {
                kind: ExprKind::Unary(op, Box::new(rhs)),
                span: sp,
            }
        })
        .map_infix(|lhs, op, rhs| {
            let bin = match op.as_rule() {
                Rule::or => BinOp::Or,
                Rule::and => BinOp::And,
                Rule::eq => BinOp::Eq,
                Rule::ne => BinOp::Ne,
                Rule::lt => BinOp::Lt,
                Rule::le => BinOp::Le,
                Rule::gt => BinOp::Gt,
                Rule::ge => BinOp::Ge,
                Rule::add => BinOp::Add,
                Rule::sub => BinOp::Sub,
                Rule::mul => BinOp::Mul,
                Rule::div => BinOp::Div,
                _ => BinOp::Rem,
            };
            let sp = lhs.span.to(rhs.span);
            Expr {
                kind: ExprKind::Binary(bin, Box::new(lhs), Box::new(rhs)),
                span: sp,
            }
        })
        .parse(pairs)
}

fn primary(p: Pair<Rule>) -> Expr {
    let sp = span(&p);
    let kind = match p.as_rule() {
        // Out-of-range literals become an error later (sema), not a panic here.
        Rule::int => match p.as_str().parse::<i64>() {
            Ok(v) => ExprKind::Int(v),
            Err(_) => ExprKind::Float(f64::INFINITY),
        },
        Rule::float => ExprKind::Float(p.as_str().parse().unwrap_or(f64::NAN)),
        Rule::boolean => ExprKind::Bool(p.as_str().trim() == "true"),
        Rule::ident => ExprKind::Name(ident(p)),
        Rule::expr => return expr(p),
        Rule::call => {
            let mut inner = p.into_inner();
            let func = ident(inner.next().expect("grammar: callee"));
            let mut type_args = Vec::new();
            let mut arguments = Vec::new();
            for q in inner {
                match q.as_rule() {
                    Rule::type_args => type_args = q.into_inner().map(ident).collect(),
                    _ => arguments = args(q),
                }
            }
            ExprKind::Call {
                func,
                type_args,
                args: arguments,
            }
        }
        Rule::slice => {
            let mut inner = p.into_inner();
            let tensor = ident(inner.next().expect("grammar: sliced tensor"));
            let ranges = inner
                .map(|r| {
                    let rs = span(&r);
                    let mut q = r.into_inner();
                    let start = expr(q.next().expect("grammar: range start"));
                    let (mut len, mut step) = (None, None);
                    for part in q {
                        let rule = part.as_rule();
                        let e = expr(part.into_inner().next().expect("grammar: range part"));
                        match rule {
                            Rule::range_len => len = Some(e),
                            _ => step = Some(e),
                        }
                    }
                    Range {
                        start,
                        len,
                        step,
                        span: rs,
                    }
                })
                .collect();
            ExprKind::Slice { tensor, ranges }
        }
        other => unreachable!("grammar: unexpected primary {other:?}"),
    };
    Expr { kind, span: sp }
}

fn args(p: Pair<Rule>) -> Vec<Arg> {
    p.into_inner()
        .map(|a| {
            let sp = span(&a);
            let inner = a.into_inner().next().expect("grammar: argument");
            match inner.as_rule() {
                Rule::named_arg => {
                    let mut q = inner.into_inner();
                    Arg {
                        name: Some(ident(q.next().expect("grammar: argument name"))),
                        value: expr(q.next().expect("grammar: argument value")),
                        span: sp,
                    }
                }
                _ => Arg {
                    name: None,
                    value: expr(inner),
                    span: sp,
                },
            }
        })
        .collect()
}
