//! Text → Tile IR: the inverse of `print`. Used to write IR tests by hand and to check that the
//! printed form loses nothing (print → parse → print is the identity).

use std::collections::HashMap;

use super::*;

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("Tile IR line {line}: {message}")]
pub struct TirParseError {
    pub line: usize,
    pub message: String,
}

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Value(u32),
    Word(String),
    Int(i64),
    Float(f64),
    Punct(char),
}

struct Lexer {
    toks: Vec<(Tok, usize)>,
    pos: usize,
}

fn lex(src: &str) -> Result<Vec<(Tok, usize)>, TirParseError> {
    let mut out = Vec::new();
    for (lineno, line) in src.lines().enumerate() {
        let line_no = lineno + 1;
        let chars: Vec<char> = line.chars().collect();
        let mut i = 0;
        while i < chars.len() {
            let c = chars[i];
            if c.is_whitespace() {
                i += 1;
            } else if c == '%' {
                let start = i + 1;
                i += 1;
                while i < chars.len() && chars[i].is_ascii_digit() {
                    i += 1;
                }
                let n: String = chars[start..i].iter().collect();
                let v = n.parse().map_err(|_| TirParseError {
                    line: line_no,
                    message: format!("bad value name `%{n}`"),
                })?;
                out.push((Tok::Value(v), line_no));
            } else if c.is_ascii_digit()
                || (c == '-' && i + 1 < chars.len() && (chars[i + 1].is_ascii_alphanumeric()))
            {
                let start = i;
                i += 1;
                while i < chars.len()
                    && (chars[i].is_ascii_alphanumeric()
                        || chars[i] == '.'
                        || ((chars[i] == '-' || chars[i] == '+')
                            && matches!(chars[i - 1], 'e' | 'E')))
                {
                    i += 1;
                }
                let text: String = chars[start..i].iter().collect();
                let tok = if let Ok(v) = text.parse::<i64>() {
                    Tok::Int(v)
                } else if let Ok(v) = text.parse::<f64>() {
                    Tok::Float(v)
                } else {
                    return Err(TirParseError {
                        line: line_no,
                        message: format!("bad number `{text}`"),
                    });
                };
                out.push((tok, line_no));
            } else if c.is_ascii_alphabetic() || c == '_' {
                let start = i;
                while i < chars.len() && (chars[i].is_ascii_alphanumeric() || chars[i] == '_') {
                    i += 1;
                }
                out.push((Tok::Word(chars[start..i].iter().collect()), line_no));
            } else if "()[]{}<>,:=@+-*/!".contains(c) {
                out.push((Tok::Punct(c), line_no));
                i += 1;
            } else {
                return Err(TirParseError {
                    line: line_no,
                    message: format!("unexpected character `{c}`"),
                });
            }
        }
    }
    Ok(out)
}

impl Lexer {
    fn line(&self) -> usize {
        self.toks
            .get(self.pos)
            .or(self.toks.last())
            .map(|t| t.1)
            .unwrap_or(0)
    }

    fn err<T>(&self, message: impl Into<String>) -> Result<T, TirParseError> {
        Err(TirParseError {
            line: self.line(),
            message: message.into(),
        })
    }

    fn peek(&self) -> Option<&Tok> {
        self.toks.get(self.pos).map(|t| &t.0)
    }

    fn next(&mut self) -> Result<Tok, TirParseError> {
        match self.toks.get(self.pos) {
            Some((t, _)) => {
                self.pos += 1;
                Ok(t.clone())
            }
            None => self.err("unexpected end of input"),
        }
    }

    fn is_punct(&self, c: char) -> bool {
        self.peek() == Some(&Tok::Punct(c))
    }

    fn eat_punct(&mut self, c: char) -> bool {
        if self.is_punct(c) {
            self.pos += 1;
            true
        } else {
            false
        }
    }

    fn punct(&mut self, c: char) -> Result<(), TirParseError> {
        if self.eat_punct(c) {
            Ok(())
        } else {
            self.err(format!("expected `{c}`, found {:?}", self.peek()))
        }
    }

    fn is_word(&self, w: &str) -> bool {
        matches!(self.peek(), Some(Tok::Word(x)) if x == w)
    }

    fn eat_word(&mut self, w: &str) -> bool {
        if self.is_word(w) {
            self.pos += 1;
            true
        } else {
            false
        }
    }

    fn word(&mut self) -> Result<String, TirParseError> {
        match self.next()? {
            Tok::Word(w) => Ok(w),
            other => self.err(format!("expected a name, found {other:?}")),
        }
    }

    fn keyword(&mut self, w: &str) -> Result<(), TirParseError> {
        if self.eat_word(w) {
            Ok(())
        } else {
            self.err(format!("expected `{w}`, found {:?}", self.peek()))
        }
    }

    fn value(&mut self) -> Result<ValueId, TirParseError> {
        match self.next()? {
            Tok::Value(v) => Ok(ValueId(v)),
            other => self.err(format!("expected a value `%N`, found {other:?}")),
        }
    }

    fn int(&mut self) -> Result<i64, TirParseError> {
        match self.next()? {
            Tok::Int(v) => Ok(v),
            other => self.err(format!("expected an integer, found {other:?}")),
        }
    }

    fn usize(&mut self) -> Result<usize, TirParseError> {
        let v = self.int()?;
        usize::try_from(v)
            .or_else(|_| self.err(format!("expected a non-negative integer, found {v}")))
    }

    fn float(&mut self) -> Result<f64, TirParseError> {
        match self.next()? {
            Tok::Int(v) => Ok(v as f64),
            Tok::Float(v) => Ok(v),
            Tok::Word(w) if w == "inf" => Ok(f64::INFINITY),
            Tok::Word(w) if w == "nan" => Ok(f64::NAN),
            Tok::Punct('-') if self.eat_word("inf") => Ok(f64::NEG_INFINITY),
            other => self.err(format!("expected a number, found {other:?}")),
        }
    }

    fn values(&mut self) -> Result<Vec<ValueId>, TirParseError> {
        let mut vs = vec![self.value()?];
        while self.eat_punct(',') {
            vs.push(self.value()?);
        }
        Ok(vs)
    }

    fn dtype(&mut self) -> Result<DType, TirParseError> {
        let w = self.word()?;
        DType::parse(&w).map_or_else(|| self.err(format!("unknown dtype `{w}`")), Ok)
    }

    fn tile_type(&mut self) -> Result<TileType, TirParseError> {
        let dtype = self.dtype()?;
        let mut shape = Vec::new();
        if self.eat_punct('[') {
            shape.push(self.usize()?);
            while self.eat_punct(',') {
                shape.push(self.usize()?);
            }
            self.punct(']')?;
        }
        Ok(TileType { dtype, shape })
    }

    fn dim_list(&mut self) -> Result<Vec<Dim>, TirParseError> {
        self.punct('[')?;
        let mut dims = Vec::new();
        loop {
            dims.push(match self.next()? {
                Tok::Int(v) => Dim::Const(v),
                Tok::Word(w) => Dim::Sym(w),
                other => return self.err(format!("bad dimension {other:?}")),
            });
            if !self.eat_punct(',') {
                break;
            }
        }
        self.punct(']')?;
        Ok(dims)
    }

    fn shape_expr(&mut self) -> Result<ShapeExpr, TirParseError> {
        let lhs = self.shape_atom()?;
        Ok(lhs)
    }

    /// `LHS OP RHS`, OP one of `< <= > >= == !=` (two punctuation tokens for the last four).
    fn requirement(&mut self) -> Result<Requirement, TirParseError> {
        let lhs = self.shape_expr()?;
        let first = match self.next()? {
            Tok::Punct(c @ ('<' | '>' | '=' | '!')) => c,
            other => return self.err(format!("expected a comparison, found {other:?}")),
        };
        let eq = self.eat_punct('=');
        let cmp = match (first, eq) {
            ('<', false) => Cmp::Lt,
            ('<', true) => Cmp::Le,
            ('>', false) => Cmp::Gt,
            ('>', true) => Cmp::Ge,
            ('=', true) => Cmp::Eq,
            ('!', true) => Cmp::Ne,
            _ => return self.err(format!("`{first}` is not a comparison")),
        };
        let rhs = self.shape_expr()?;
        Ok(Requirement { lhs, cmp, rhs })
    }

    fn shape_atom(&mut self) -> Result<ShapeExpr, TirParseError> {
        match self.next()? {
            Tok::Int(v) => Ok(ShapeExpr::Int(v)),
            Tok::Punct('(') => {
                let a = self.shape_expr()?;
                let op = self.next()?;
                let b = self.shape_expr()?;
                self.punct(')')?;
                let (a, b) = (Box::new(a), Box::new(b));
                match op {
                    Tok::Punct('+') => Ok(ShapeExpr::Add(a, b)),
                    Tok::Punct('-') => Ok(ShapeExpr::Sub(a, b)),
                    Tok::Punct('*') => Ok(ShapeExpr::Mul(a, b)),
                    Tok::Punct('/') => Ok(ShapeExpr::Div(a, b)),
                    other => self.err(format!("expected an operator, found {other:?}")),
                }
            }
            Tok::Word(w) if matches!(w.as_str(), "cdiv" | "min" | "max") && self.is_punct('(') => {
                self.punct('(')?;
                let a = Box::new(self.shape_expr()?);
                self.punct(',')?;
                let b = Box::new(self.shape_expr()?);
                self.punct(')')?;
                Ok(match w.as_str() {
                    "cdiv" => ShapeExpr::CeilDiv(a, b),
                    "min" => ShapeExpr::Min(a, b),
                    _ => ShapeExpr::Max(a, b),
                })
            }
            Tok::Word(w) => Ok(ShapeExpr::Sym(w)),
            other => self.err(format!("expected a grid expression, found {other:?}")),
        }
    }
}

struct Ctx {
    lx: Lexer,
    types: HashMap<u32, TileType>,
    params: Vec<Param>,
}

impl Ctx {
    fn param_index(&self, name: &str) -> Result<usize, TirParseError> {
        self.params
            .iter()
            .position(|p| p.name == name)
            .map_or_else(|| self.lx.err(format!("unknown parameter `{name}`")), Ok)
    }

    fn define(&mut self, v: ValueId, ty: TileType) -> Result<(), TirParseError> {
        if self.types.insert(v.0, ty).is_some() {
            return self.lx.err(format!("{v} defined twice"));
        }
        Ok(())
    }

    fn block(&mut self, args: Vec<ValueId>) -> Result<Block, TirParseError> {
        let mut insts = Vec::new();
        while !self.lx.is_punct('}') {
            insts.push(self.inst()?);
        }
        self.lx.punct('}')?;
        Ok(Block { args, insts })
    }

    /// `load t[s +e [step st], ...] [mask m] fill f` or `store t[s +e [step st], ...], v [mask m]`.
    fn memory(&mut self, store: bool) -> Result<Op, TirParseError> {
        let lx = &mut self.lx;
        let name = lx.word()?;
        lx.punct('[')?;
        let mut starts = Vec::new();
        let mut extents = Vec::new();
        let mut steps = Vec::new();
        while !lx.is_punct(']') {
            starts.push(lx.value()?);
            let ext = if lx.eat_punct('+') {
                Some(lx.usize()?)
            } else {
                None
            };
            // Only a range has a step; `s step x` on a bare index is left to fail as text.
            steps.push(if ext.is_some() && lx.eat_word("step") {
                Some(lx.value()?)
            } else {
                None
            });
            extents.push(ext);
            if !lx.eat_punct(',') {
                break;
            }
        }
        lx.punct(']')?;
        let value = if store {
            lx.punct(',')?;
            Some(lx.value()?)
        } else {
            None
        };
        let mask = if lx.eat_word("mask") {
            Some(lx.value()?)
        } else {
            None
        };
        let tensor = self.param_index(&name)?;
        Ok(match value {
            Some(value) => Op::Store {
                tensor,
                starts,
                extents,
                steps,
                value,
                mask,
            },
            None => {
                self.lx.keyword("fill")?;
                Op::Load {
                    tensor,
                    starts,
                    extents,
                    steps,
                    mask,
                    fill: self.lx.float()?,
                }
            }
        })
    }

    /// `for %iv = %lo to %hi step %s [iter(%a: T = %init, ...)] { ... }`.
    fn for_loop(&mut self, results: Vec<ValueId>) -> Result<Inst, TirParseError> {
        let lx = &mut self.lx;
        let iv = lx.value()?;
        lx.punct('=')?;
        let lo = lx.value()?;
        lx.keyword("to")?;
        let hi = lx.value()?;
        lx.keyword("step")?;
        let step = lx.value()?;
        let mut args = vec![iv];
        let mut inits = Vec::new();
        let mut arg_types = Vec::new();
        if lx.eat_word("iter") {
            lx.punct('(')?;
            loop {
                let arg = lx.value()?;
                lx.punct(':')?;
                let ty = lx.tile_type()?;
                lx.punct('=')?;
                inits.push(lx.value()?);
                args.push(arg);
                arg_types.push(ty);
                if !lx.eat_punct(',') {
                    break;
                }
            }
            lx.punct(')')?;
        }
        lx.punct('{')?;
        self.define(iv, TileType::scalar(DType::I32))?;
        for (a, t) in args[1..].iter().zip(&arg_types) {
            self.define(*a, t.clone())?;
        }
        if results.len() != arg_types.len() {
            return self.lx.err("a for loop has one result per carried value");
        }
        for (r, t) in results.iter().zip(arg_types) {
            self.define(*r, t)?;
        }
        let body = self.block(args)?;
        Ok(Inst {
            results,
            op: Op::For {
                lo,
                hi,
                step,
                inits,
                body,
            },
        })
    }

    /// `scan cumsum %x, 1`, after the word `scan`.
    fn scan(&mut self) -> Result<Op, TirParseError> {
        let lx = &mut self.lx;
        let w = lx.word()?;
        let op = ScanOp::parse(&w).map_or_else(|| lx.err(format!("unknown scan `{w}`")), Ok)?;
        let x = lx.value()?;
        lx.punct(',')?;
        Ok(Op::Scan {
            op,
            x,
            axis: lx.usize()?,
        })
    }

    /// A unary or binary elementwise op, by Tile IR's op tables.
    fn elementwise(&mut self, name: &str) -> Result<Op, TirParseError> {
        let lx = &mut self.lx;
        Ok(if let Some(u) = UnaryOp::parse(name) {
            Op::Unary {
                op: u,
                x: lx.value()?,
            }
        } else if let Some(b) = BinaryOp::parse(name) {
            let a = lx.value()?;
            lx.punct(',')?;
            Op::Binary {
                op: b,
                a,
                b: lx.value()?,
            }
        } else {
            return lx.err(format!("unknown operation `{name}`"));
        })
    }

    fn inst(&mut self) -> Result<Inst, TirParseError> {
        let results = if matches!(self.lx.peek(), Some(Tok::Value(_))) {
            let r = self.lx.values()?;
            self.lx.punct('=')?;
            r
        } else {
            Vec::new()
        };
        let opname = self.lx.word()?;
        let lx = &mut self.lx;
        let op = match opname.as_str() {
            "const" => {
                let l = match lx.next()? {
                    Tok::Int(v) => Literal::Int(v),
                    Tok::Float(v) => Literal::Float(v),
                    Tok::Word(w) if w == "true" => Literal::Bool(true),
                    Tok::Word(w) if w == "false" => Literal::Bool(false),
                    Tok::Word(w) if w == "inf" => Literal::Float(f64::INFINITY),
                    Tok::Word(w) if w == "nan" => Literal::Float(f64::NAN),
                    Tok::Punct('-') if lx.eat_word("inf") => Literal::Float(f64::NEG_INFINITY),
                    other => return lx.err(format!("bad constant {other:?}")),
                };
                Op::Const(l)
            }
            "program_id" => Op::ProgramId(lx.usize()?),
            "num_programs" => Op::NumPrograms(lx.usize()?),
            "dim" => {
                let name = lx.word()?;
                let axis = self.lx.usize()?;
                Op::DimSize {
                    tensor: self.param_index(&name)?,
                    axis,
                }
            }
            "stride" => {
                let name = lx.word()?;
                let axis = self.lx.usize()?;
                Op::StrideSize {
                    tensor: self.param_index(&name)?,
                    axis,
                }
            }
            "param" => {
                let name = lx.word()?;
                Op::ScalarParam(self.param_index(&name)?)
            }
            "iota" => Op::Iota(lx.usize()?),
            "splat" | "broadcast" | "trans" | "cast" => {
                let x = lx.value()?;
                match opname.as_str() {
                    "splat" => Op::Splat { x, shape: vec![] },
                    "broadcast" => Op::Broadcast { x, shape: vec![] },
                    "trans" => Op::Trans { x },
                    _ => Op::Cast { x, to: DType::F32 },
                }
            }
            "expand_dims" => {
                let x = lx.value()?;
                lx.punct(',')?;
                Op::ExpandDims {
                    x,
                    axis: lx.usize()?,
                }
            }
            "cmp" => {
                let w = lx.word()?;
                let op = CmpOp::parse(&w)
                    .map_or_else(|| lx.err(format!("unknown comparison `{w}`")), Ok)?;
                let a = lx.value()?;
                lx.punct(',')?;
                Op::Cmp {
                    op,
                    a,
                    b: lx.value()?,
                }
            }
            "select" => {
                let v = lx.values()?;
                if v.len() != 3 {
                    return lx.err("select takes three operands");
                }
                Op::Select {
                    cond: v[0],
                    a: v[1],
                    b: v[2],
                }
            }
            "reduce" => {
                let w = lx.word()?;
                let op = ReduceOp::parse(&w)
                    .map_or_else(|| lx.err(format!("unknown reduction `{w}`")), Ok)?;
                let x = lx.value()?;
                lx.punct(',')?;
                Op::Reduce {
                    op,
                    x,
                    axis: lx.usize()?,
                }
            }
            "scan" => self.scan()?,
            "dot" => {
                let v = lx.values()?;
                if !(2..=3).contains(&v.len()) {
                    return lx.err("dot takes two or three operands");
                }
                let trans_a = lx.eat_word("trans_a");
                let trans_b = lx.eat_word("trans_b");
                Op::Dot {
                    a: v[0],
                    b: v[1],
                    acc: v.get(2).copied(),
                    trans_a,
                    trans_b,
                }
            }
            "load" | "store" => self.memory(opname == "store")?,
            "for" => return self.for_loop(results),
            "yield" => {
                let vs = if matches!(lx.peek(), Some(Tok::Value(_))) {
                    lx.values()?
                } else {
                    vec![]
                };
                Op::Yield(vs)
            }
            other => self.elementwise(other)?,
        };
        let mut op = op;
        if !results.is_empty() {
            self.lx.punct(':')?;
            let ty = self.lx.tile_type()?;
            // Ops whose attributes the printer leaves to the result type.
            match &mut op {
                Op::Splat { shape, .. } | Op::Broadcast { shape, .. } => *shape = ty.shape.clone(),
                Op::Cast { to, .. } => *to = ty.dtype,
                _ => {}
            }
            if results.len() != 1 {
                return self.lx.err("only `for` has several results");
            }
            self.define(results[0], ty)?;
        }
        Ok(Inst { results, op })
    }
}

/// Parses one kernel in the printed form.
pub fn parse_kernel(src: &str) -> Result<Kernel, TirParseError> {
    let mut lx = Lexer {
        toks: lex(src)?,
        pos: 0,
    };
    lx.keyword("kernel")?;
    let name = lx.word()?;
    let mut consts = Vec::new();
    if lx.eat_punct('<') {
        loop {
            let n = lx.word()?;
            lx.punct('=')?;
            let v = match lx.next()? {
                Tok::Int(v) => ConstValue::Int(v),
                Tok::Word(w) if w == "true" => ConstValue::Bool(true),
                Tok::Word(w) if w == "false" => ConstValue::Bool(false),
                Tok::Word(w) => match DType::parse(&w) {
                    Some(d) => ConstValue::Dtype(d),
                    None => return lx.err(format!("bad constant `{w}`")),
                },
                other => return lx.err(format!("bad constant {other:?}")),
            };
            consts.push((n, v));
            if !lx.eat_punct(',') {
                break;
            }
        }
        lx.punct('>')?;
    }
    let mut attrs = Vec::new();
    while lx.eat_punct('@') {
        let n = lx.word()?;
        lx.punct('(')?;
        let mut args = Vec::new();
        if !lx.is_punct(')') {
            args.push(lx.int()?);
            while lx.eat_punct(',') {
                args.push(lx.int()?);
            }
        }
        lx.punct(')')?;
        attrs.push((n, args));
    }
    lx.punct('(')?;
    let mut params = Vec::new();
    while !lx.is_punct(')') {
        let pname = lx.word()?;
        lx.punct(':')?;
        let kind = if lx.is_word("in") || lx.is_word("out") || lx.is_word("inout") {
            let io = match lx.word()?.as_str() {
                "in" => Io::In,
                "out" => Io::Out,
                _ => Io::InOut,
            };
            let dtype = lx.dtype()?;
            let dims = lx.dim_list()?;
            let strides = if lx.eat_word("strides") {
                Some(lx.dim_list()?)
            } else {
                None
            };
            ParamKind::Tensor {
                io,
                dtype,
                dims,
                strides,
            }
        } else {
            ParamKind::Scalar { dtype: lx.dtype()? }
        };
        params.push(Param { name: pname, kind });
        if !lx.eat_punct(',') {
            break;
        }
    }
    lx.punct(')')?;
    lx.keyword("grid")?;
    lx.punct('(')?;
    let mut grid = vec![lx.shape_expr()?];
    while lx.eat_punct(',') {
        grid.push(lx.shape_expr()?);
    }
    lx.punct(')')?;
    let mut requires = Vec::new();
    if lx.eat_word("requires") {
        lx.punct('(')?;
        requires.push(lx.requirement()?);
        while lx.eat_punct(',') {
            requires.push(lx.requirement()?);
        }
        lx.punct(')')?;
    }
    lx.punct('{')?;
    let mut ctx = Ctx {
        lx,
        types: HashMap::new(),
        params,
    };
    let body = ctx.block(Vec::new())?;
    if ctx.lx.peek().is_some() {
        return ctx.lx.err("text after the kernel's closing `}`");
    }
    let count = ctx.types.keys().map(|k| *k as usize + 1).max().unwrap_or(0);
    let mut types = Vec::with_capacity(count);
    for i in 0..count {
        match ctx.types.remove(&(i as u32)) {
            Some(t) => types.push(t),
            None => {
                return ctx.lx.err(format!(
                    "value %{i} is never defined (values must be numbered densely)"
                ))
            }
        }
    }
    Ok(Kernel {
        name,
        consts,
        attrs,
        params: ctx.params,
        grid,
        requires,
        body,
        types,
    })
}
