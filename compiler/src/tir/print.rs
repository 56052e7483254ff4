//! Tile IR → text. The format is documented in docs/tile-ir.md and parsed back by `parse`.

use std::fmt::{self, Write};

use super::*;

fn lit(l: &Literal) -> String {
    match l {
        Literal::Int(v) => v.to_string(),
        Literal::Float(v) => float(*v),
        Literal::Bool(b) => b.to_string(),
    }
}

/// Shortest text that parses back to the same f64 (Rust's `{:?}` has that property).
pub(crate) fn float(v: f64) -> String {
    if v.is_nan() {
        "nan".into()
    } else {
        format!("{v:?}")
    }
}

fn slice(starts: &[ValueId], extents: &[Option<usize>], steps: &[Option<ValueId>]) -> String {
    starts
        .iter()
        .zip(extents)
        .zip(steps)
        .map(|((s, e), st)| match (e, st) {
            (Some(n), Some(st)) => format!("{s} +{n} step {st}"),
            (Some(n), None) => format!("{s} +{n}"),
            (None, _) => s.to_string(),
        })
        .collect::<Vec<_>>()
        .join(", ")
}

fn list(vs: &[ValueId]) -> String {
    vs.iter()
        .map(|v| v.to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

impl fmt::Display for Kernel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "kernel {}", self.name)?;
        if !self.consts.is_empty() {
            let cs: Vec<String> = self
                .consts
                .iter()
                .map(|(n, v)| format!("{n} = {v}"))
                .collect();
            write!(f, "<{}>", cs.join(", "))?;
        }
        for (name, args) in &self.attrs {
            let a: Vec<String> = args.iter().map(|v| v.to_string()).collect();
            write!(f, " @{name}({})", a.join(", "))?;
        }
        writeln!(f)?;
        let params: Vec<String> = self
            .params
            .iter()
            .map(|p| match &p.kind {
                ParamKind::Tensor {
                    io,
                    dtype,
                    dims,
                    strides,
                } => {
                    let list = |ds: &[Dim]| {
                        ds.iter()
                            .map(|d| d.to_string())
                            .collect::<Vec<_>>()
                            .join(", ")
                    };
                    let mut s = format!("{}: {} {}[{}]", p.name, io.name(), dtype, list(dims));
                    if let Some(st) = strides {
                        s.push_str(&format!(" strides[{}]", list(st)));
                    }
                    s
                }
                ParamKind::Scalar { dtype } => format!("{}: {}", p.name, dtype),
            })
            .collect();
        writeln!(f, "  ({})", params.join(", "))?;
        let grid: Vec<String> = self.grid.iter().map(|g| g.to_string()).collect();
        writeln!(f, "  grid({})", grid.join(", "))?;
        if !self.requires.is_empty() {
            let rs: Vec<String> = self.requires.iter().map(|r| r.to_string()).collect();
            writeln!(f, "  requires({})", rs.join(", "))?;
        }
        writeln!(f, "{{")?;
        let mut out = String::new();
        self.print_block(&mut out, &self.body, 1)?;
        f.write_str(&out)?;
        writeln!(f, "}}")
    }
}

impl Kernel {
    fn print_block(&self, out: &mut String, block: &Block, depth: usize) -> fmt::Result {
        for inst in &block.insts {
            self.print_inst(out, inst, depth)?;
        }
        Ok(())
    }

    fn print_inst(&self, out: &mut String, inst: &Inst, depth: usize) -> fmt::Result {
        let pad = "  ".repeat(depth);
        out.push_str(&pad);
        if !inst.results.is_empty() {
            write!(out, "{} = ", list(&inst.results))?;
        }
        let ty = |v: &ValueId| self.ty(*v).to_string();
        let result_ty = || inst.results.first().map(ty).unwrap_or_default();
        let pname = |i: usize| self.params.get(i).map(|p| p.name.as_str()).unwrap_or("?");
        match &inst.op {
            Op::Const(l) => write!(out, "const {} : {}", lit(l), result_ty())?,
            Op::ProgramId(a) => write!(out, "program_id {a} : {}", result_ty())?,
            Op::NumPrograms(a) => write!(out, "num_programs {a} : {}", result_ty())?,
            Op::DimSize { tensor, axis } => {
                write!(out, "dim {} {axis} : {}", pname(*tensor), result_ty())?
            }
            Op::StrideSize { tensor, axis } => {
                write!(out, "stride {} {axis} : {}", pname(*tensor), result_ty())?
            }
            Op::ScalarParam(p) => write!(out, "param {} : {}", pname(*p), result_ty())?,
            Op::Iota(n) => write!(out, "iota {n} : {}", result_ty())?,
            Op::Splat { x, .. } => write!(out, "splat {x} : {}", result_ty())?,
            Op::Broadcast { x, .. } => write!(out, "broadcast {x} : {}", result_ty())?,
            Op::ExpandDims { x, axis } => write!(out, "expand_dims {x}, {axis} : {}", result_ty())?,
            Op::Trans { x } => write!(out, "trans {x} : {}", result_ty())?,
            Op::Unary { op, x } => write!(out, "{} {x} : {}", op.name(), result_ty())?,
            Op::Binary { op, a, b } => write!(out, "{} {a}, {b} : {}", op.name(), result_ty())?,
            Op::Cmp { op, a, b } => write!(out, "cmp {} {a}, {b} : {}", op.name(), result_ty())?,
            Op::Select { cond, a, b } => write!(out, "select {cond}, {a}, {b} : {}", result_ty())?,
            Op::Cast { x, .. } => write!(out, "cast {x} : {}", result_ty())?,
            Op::Reduce { op, x, axis } => {
                write!(out, "reduce {} {x}, {axis} : {}", op.name(), result_ty())?
            }
            Op::Scan { op, x, axis } => {
                write!(out, "scan {} {x}, {axis} : {}", op.name(), result_ty())?
            }
            Op::Dot {
                a,
                b,
                acc,
                trans_a,
                trans_b,
            } => {
                write!(out, "dot {a}, {b}")?;
                if let Some(acc) = acc {
                    write!(out, ", {acc}")?;
                }
                if *trans_a {
                    out.push_str(" trans_a");
                }
                if *trans_b {
                    out.push_str(" trans_b");
                }
                write!(out, " : {}", result_ty())?;
            }
            Op::Load {
                tensor,
                starts,
                extents,
                steps,
                mask,
                fill,
            } => {
                let sl = slice(starts, extents, steps);
                write!(out, "load {}[{sl}]", pname(*tensor))?;
                if let Some(m) = mask {
                    write!(out, " mask {m}")?;
                }
                write!(out, " fill {} : {}", float(*fill), result_ty())?;
            }
            Op::Store {
                tensor,
                starts,
                extents,
                steps,
                value,
                mask,
            } => {
                let sl = slice(starts, extents, steps);
                write!(out, "store {}[{sl}], {value}", pname(*tensor))?;
                if let Some(m) = mask {
                    write!(out, " mask {m}")?;
                }
            }
            Op::For {
                lo,
                hi,
                step,
                inits,
                body,
            } => {
                let iv = body.args.first().copied().unwrap_or(ValueId(u32::MAX));
                write!(out, "for {iv} = {lo} to {hi} step {step}")?;
                if !inits.is_empty() {
                    let carried: Vec<String> = body.args[1..]
                        .iter()
                        .zip(inits)
                        .map(|(arg, init)| format!("{arg}: {} = {init}", ty(arg)))
                        .collect();
                    write!(out, " iter({})", carried.join(", "))?;
                }
                out.push_str(" {\n");
                self.print_block(out, body, depth + 1)?;
                write!(out, "{pad}}}")?;
            }
            Op::Yield(vs) => {
                out.push_str("yield");
                if !vs.is_empty() {
                    write!(out, " {}", list(vs))?;
                }
            }
        }
        out.push('\n');
        Ok(())
    }
}
