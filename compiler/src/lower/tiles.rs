//! Scheduled Tile IR → MLIR (as text, parsed by melior into the session's context).
//!
//! Every tile is unrolled into the registers its layout gives a thread: a value becomes one SSA
//! name per register (one for uniform values). Thread-invariant index math (lane and warp
//! coordinates, tensor strides, shared-memory addresses) is emitted once at function entry.
//! Loops become `scf.for` carrying every register of every loop-carried tile; loops the schedule
//! pipelines prefetch their staged tiles `stages - 1` iterations ahead with `cp.async` groups.
//!
//! Shared memory is one dynamic `@tessel_smem` array: staged tiles at their buffers' offsets, and
//! one scratch region for layout conversions, cross-warp reductions and register operands of
//! `dot`. Every transient use of scratch begins with a barrier, so consecutive uses never race.
//!
//! The kernel's parameters are, in order: one per Tile IR parameter (a global pointer per tensor,
//! the value of a scalar), then one i32 per shape symbol in order of first appearance.

use std::collections::HashMap;
use std::fmt::Write;

use crate::sched::{Copy, Dist, DotUnit, Layout, Operand, Schedule, SmemTile};
use crate::tir::{
    BinaryOp, Block, CmpOp, DType, Dim, Inst, Kernel, Literal, Op, ParamKind, ReduceOp, UnaryOp,
    ValueId,
};
use crate::CompileError;

type R<T> = Result<T, CompileError>;

fn err(what: impl Into<String>) -> CompileError {
    CompileError::mlir("tile lowering", what.into())
}

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

fn ty(d: DType) -> &'static str {
    match d {
        DType::Bf16 => "bf16",
        DType::F16 => "f16",
        DType::F32 => "f32",
        DType::I32 => "i32",
        DType::Bool => "i1",
    }
}

/// The 2-element vector of a register type, for accesses that move a pair of registers at once.
fn vec2_ty(t: &str) -> Option<&'static str> {
    match t {
        "bf16" => Some("vector<2xbf16>"),
        "f16" => Some("vector<2xf16>"),
        "f32" => Some("vector<2xf32>"),
        "i32" => Some("vector<2xi32>"),
        _ => None,
    }
}

/// A float constant of type `d` as its exact bit pattern (MLIR's hex float form), rounded to
/// nearest as the interpreter rounds.
fn float_lit_of(v: f64, d: DType) -> String {
    match d {
        DType::Bf16 => format!("0x{:04X}", half::bf16::from_f64(v).to_bits()),
        DType::F16 => format!("0x{:04X}", half::f16::from_f64(v).to_bits()),
        _ => format!("0x{:08X}", (v as f32).to_bits()),
    }
}

fn float_lit(v: f64) -> String {
    float_lit_of(v, DType::F32)
}

/// A named SSA value and its MLIR type.
#[derive(Clone, Debug)]
struct V {
    n: String,
    t: &'static str,
}

struct Emitter {
    /// Thread-invariant values, placed at function entry.
    prelude: String,
    /// The body being emitted (a stack: nested regions push).
    bodies: Vec<String>,
    next: usize,
    cache: HashMap<String, V>,
    /// While set, `op` emits into the prelude: for index math that depends only on the thread.
    hoist: bool,
}

impl Emitter {
    fn fresh(&mut self) -> String {
        self.next += 1;
        format!("%v{}", self.next)
    }

    fn line(&mut self, s: &str) {
        let b = self.bodies.last_mut().expect("a body is open");
        b.push_str("    ");
        b.push_str(s);
        b.push('\n');
    }

    /// `name = <rhs>` in the current body, returning the value.
    fn op(&mut self, t: &'static str, rhs: &str) -> V {
        if self.hoist {
            return self.pre(t, rhs.to_string());
        }
        let n = self.fresh();
        self.line(&format!("{n} = {rhs}"));
        V { n, t }
    }

    /// A thread-invariant value in the prelude, computed once per distinct `rhs`.
    fn pre(&mut self, t: &'static str, rhs: String) -> V {
        if let Some(v) = self.cache.get(&rhs) {
            return v.clone();
        }
        let n = self.fresh();
        let _ = writeln!(self.prelude, "    {n} = {rhs}");
        let v = V { n, t };
        self.cache.insert(rhs, v.clone());
        v
    }

    fn ci32_pre(&mut self, c: i64) -> V {
        self.pre("i32", format!("arith.constant {c} : i32"))
    }
}

/// (fixed dims in range, i64 offset of the fixed dims, per range: (start, stride, extent)).
type SliceAccess = (V, V, Vec<(V, V, V)>);

/// A tile access's fast path (see `Lower::interior`).
struct Interior {
    /// The whole tile lies inside the tensor (and, when `paired`, its pairs are aligned).
    cond: V,
    /// i64 offset of the fixed dims.
    off: V,
    /// Per range: the thread's coordinate and the range's stride.
    thread: Vec<(V, V)>,
    /// Two ranges (rows, columns) rather than one.
    two: bool,
    /// Register pairs move as one 2-element access.
    paired: bool,
}

struct Lower<'a> {
    k: &'a Kernel,
    s: &'a Schedule,
    e: Emitter,
    env: HashMap<ValueId, Vec<V>>,
    /// Staged tiles: the i32 byte offset (from the shared base) of the slot now readable.
    smem_at: HashMap<ValueId, V>,
    args: Vec<V>,
    symbols: Vec<String>,
    tid: V,
    lane: V,
    warp: V,
    smem: V,
    smem32: V,
    /// Per tensor parameter: dense i64 strides.
    strides: HashMap<usize, Vec<V>>,
}

impl<'a> Lower<'a> {
    // ---- scalar helpers -------------------------------------------------------------------

    fn c32(&mut self, c: i64) -> V {
        self.e.ci32_pre(c)
    }

    fn c64(&mut self, c: i64) -> V {
        self.e.pre("i64", format!("arith.constant {c} : i64"))
    }

    fn cf32(&mut self, v: f64) -> V {
        self.e
            .pre("f32", format!("arith.constant {} : f32", float_lit(v)))
    }

    fn ctrue(&mut self) -> V {
        self.e.pre("i1", "arith.constant true".into())
    }

    fn bin(&mut self, op: &str, a: &V, b: &V) -> V {
        let t = a.t;
        self.e.op(t, &format!("arith.{op} {}, {} : {t}", a.n, b.n))
    }

    fn add(&mut self, a: &V, b: &V) -> V {
        self.bin("addi", a, b)
    }

    fn addc(&mut self, a: &V, c: i64) -> V {
        if c == 0 {
            return a.clone();
        }
        let cv = if a.t == "i64" {
            self.c64(c)
        } else {
            self.c32(c)
        };
        self.add(a, &cv)
    }

    fn mul(&mut self, a: &V, b: &V) -> V {
        self.bin("muli", a, b)
    }

    fn and(&mut self, a: &V, b: &V) -> V {
        self.bin("andi", a, b)
    }

    fn icmp(&mut self, p: &str, a: &V, b: &V) -> V {
        self.e
            .op("i1", &format!("arith.cmpi {p}, {}, {} : {}", a.n, b.n, a.t))
    }

    fn select(&mut self, c: &V, a: &V, b: &V) -> V {
        let t = a.t;
        self.e
            .op(t, &format!("arith.select {}, {}, {} : {t}", c.n, a.n, b.n))
    }

    fn ext64(&mut self, a: &V) -> V {
        if a.t == "i64" {
            return a.clone();
        }
        self.e
            .op("i64", &format!("arith.extsi {} : i32 to i64", a.n))
    }

    fn constant(&mut self, l: Literal, d: DType) -> V {
        let t = ty(d);
        let rhs = match (l, d.is_float()) {
            (Literal::Float(f), true) => format!("arith.constant {} : {t}", float_lit_of(f, d)),
            (Literal::Int(i), true) => {
                format!("arith.constant {} : {t}", float_lit_of(i as f64, d))
            }
            (Literal::Float(f), false) if d == DType::Bool => {
                format!("arith.constant {}", f != 0.0)
            }
            (Literal::Float(f), false) => format!("arith.constant {} : {t}", f as i64),
            (Literal::Int(i), false) if d == DType::Bool => format!("arith.constant {}", i != 0),
            (Literal::Int(i), false) => format!("arith.constant {i} : {t}"),
            (Literal::Bool(b), _) if d == DType::Bool => format!("arith.constant {b}"),
            (Literal::Bool(b), true) => {
                format!("arith.constant {} : {t}", float_lit_of(b as u8 as f64, d))
            }
            (Literal::Bool(b), false) => format!("arith.constant {} : {t}", b as i64),
        };
        self.e.pre(t, rhs)
    }

    fn widen(&mut self, x: &V) -> V {
        match x.t {
            "f32" => x.clone(),
            t => self
                .e
                .op("f32", &format!("arith.extf {} : {t} to f32", x.n)),
        }
    }

    fn narrow(&mut self, x: &V, d: DType) -> V {
        match d {
            DType::F32 => x.clone(),
            _ => self
                .e
                .op(ty(d), &format!("arith.truncf {} : f32 to {}", x.n, ty(d))),
        }
    }

    fn intr(&mut self, name: &str, x: &V) -> V {
        self.e
            .op("f32", &format!("llvm.intr.{name}({}) : (f32) -> f32", x.n))
    }

    fn unary(&mut self, op: UnaryOp, x: &V, d: DType) -> V {
        if !d.is_float() {
            return match op {
                UnaryOp::Neg => {
                    let z = self.c32(0);
                    self.bin("subi", &z, x)
                }
                UnaryOp::Not => {
                    let t = self.ctrue();
                    self.bin("xori", x, &t)
                }
                UnaryOp::Abs => {
                    let z = self.c32(0);
                    let n = self.bin("subi", &z, x);
                    self.bin("maxsi", x, &n)
                }
                _ => x.clone(),
            };
        }
        if op == UnaryOp::Neg {
            return self.e.op(x.t, &format!("arith.negf {} : {}", x.n, x.t));
        }
        let w = self.widen(x);
        let r = match op {
            UnaryOp::Exp => {
                let c = self.cf32(std::f64::consts::LOG2_E);
                let s = self.bin("mulf", &w, &c);
                self.intr("exp2", &s)
            }
            UnaryOp::Exp2 => self.intr("exp2", &w),
            UnaryOp::Log => {
                // NVPTX has no lowering for llvm.log2.f32: the hardware's lg2.approx.
                let l = self.e.op(
                    "f32",
                    &format!(
                        "llvm.call_intrinsic \"llvm.nvvm.lg2.approx.f\"({}) : (f32) -> f32",
                        w.n
                    ),
                );
                let c = self.cf32(std::f64::consts::LN_2);
                self.bin("mulf", &l, &c)
            }
            UnaryOp::Sqrt => self.intr("sqrt", &w),
            UnaryOp::Rsqrt => {
                let s = self.intr("sqrt", &w);
                let one = self.cf32(1.0);
                self.bin("divf", &one, &s)
            }
            UnaryOp::Abs => self.intr("fabs", &w),
            UnaryOp::Sigmoid | UnaryOp::Silu => {
                let n = self.e.op("f32", &format!("arith.negf {} : f32", w.n));
                let c = self.cf32(std::f64::consts::LOG2_E);
                let s = self.bin("mulf", &n, &c);
                let ex = self.intr("exp2", &s);
                let one = self.cf32(1.0);
                let den = self.bin("addf", &one, &ex);
                let num = if op == UnaryOp::Silu { w.clone() } else { one };
                self.bin("divf", &num, &den)
            }
            UnaryOp::Neg | UnaryOp::Not => w.clone(),
        };
        self.narrow(&r, d)
    }

    fn binary(&mut self, op: BinaryOp, a: &V, b: &V, d: DType) -> V {
        let f = d.is_float();
        let name = match (op, f) {
            (BinaryOp::Add, true) => "addf",
            (BinaryOp::Sub, true) => "subf",
            (BinaryOp::Mul, true) => "mulf",
            (BinaryOp::Div, true) => "divf",
            (BinaryOp::Rem, true) => "remf",
            (BinaryOp::Max, true) => "maximumf",
            (BinaryOp::Min, true) => "minimumf",
            (BinaryOp::Add, false) => "addi",
            (BinaryOp::Sub, false) => "subi",
            (BinaryOp::Mul, false) => "muli",
            (BinaryOp::Div, false) => "divsi",
            (BinaryOp::Rem, false) => "remsi",
            (BinaryOp::Max, false) => "maxsi",
            (BinaryOp::Min, false) => "minsi",
            (BinaryOp::And, _) => "andi",
            (BinaryOp::Or, _) => "ori",
        };
        self.bin(name, a, b)
    }

    fn cmp(&mut self, op: CmpOp, a: &V, b: &V, d: DType) -> V {
        if d.is_float() {
            // Ordered except `!=`, as the interpreter's f64 comparisons are.
            let p = match op {
                CmpOp::Eq => "oeq",
                CmpOp::Ne => "une",
                CmpOp::Lt => "olt",
                CmpOp::Le => "ole",
                CmpOp::Gt => "ogt",
                CmpOp::Ge => "oge",
            };
            self.e
                .op("i1", &format!("arith.cmpf {p}, {}, {} : {}", a.n, b.n, a.t))
        } else {
            let p = match op {
                CmpOp::Eq => "eq",
                CmpOp::Ne => "ne",
                CmpOp::Lt => "slt",
                CmpOp::Le => "sle",
                CmpOp::Gt => "sgt",
                CmpOp::Ge => "sge",
            };
            self.icmp(p, a, b)
        }
    }

    fn cast(&mut self, x: &V, from: DType, to: DType) -> V {
        let tt = ty(to);
        let w = |d: DType| if d == DType::F32 { 32 } else { 16 };
        match (from.is_float(), to.is_float()) {
            _ if from == to => x.clone(),
            (true, true) if w(from) < w(to) => self
                .e
                .op(tt, &format!("arith.extf {} : {} to {tt}", x.n, x.t)),
            (true, true) if w(from) > w(to) => self
                .e
                .op(tt, &format!("arith.truncf {} : {} to {tt}", x.n, x.t)),
            (true, true) => {
                let f = self.widen(x);
                self.narrow(&f, to)
            }
            (true, false) if to == DType::Bool => {
                let z = self.constant(Literal::Float(0.0), from);
                self.cmp(CmpOp::Ne, x, &z, from)
            }
            (true, false) => self
                .e
                .op(tt, &format!("arith.fptosi {} : {} to {tt}", x.n, x.t)),
            (false, true) if from == DType::Bool => {
                self.e.op(tt, &format!("arith.uitofp {} : i1 to {tt}", x.n))
            }
            (false, true) => self
                .e
                .op(tt, &format!("arith.sitofp {} : i32 to {tt}", x.n)),
            (false, false) if to == DType::Bool => {
                let z = self.c32(0);
                self.icmp("ne", x, &z)
            }
            (false, false) => self.e.op(tt, &format!("arith.extui {} : i1 to i32", x.n)),
        }
    }

    /// The value as 32 bits (for shared-memory exchange and shuffles).
    fn as_b32(&mut self, x: &V) -> V {
        match x.t {
            "i32" => x.clone(),
            "f32" => self
                .e
                .op("i32", &format!("arith.bitcast {} : f32 to i32", x.n)),
            "i1" => self
                .e
                .op("i32", &format!("arith.extui {} : i1 to i32", x.n)),
            t => {
                let h = self
                    .e
                    .op("i16", &format!("arith.bitcast {} : {t} to i16", x.n));
                self.e
                    .op("i32", &format!("arith.extui {} : i16 to i32", h.n))
            }
        }
    }

    fn of_b32(&mut self, x: &V, t: &'static str) -> V {
        match t {
            "i32" => x.clone(),
            "f32" => self
                .e
                .op("f32", &format!("arith.bitcast {} : i32 to f32", x.n)),
            "i1" => self
                .e
                .op("i1", &format!("arith.trunci {} : i32 to i1", x.n)),
            t => {
                let h = self
                    .e
                    .op("i16", &format!("arith.trunci {} : i32 to i16", x.n));
                self.e.op(t, &format!("arith.bitcast {} : i16 to {t}", h.n))
            }
        }
    }

    // ---- asm and memory -------------------------------------------------------------------

    fn asm(
        &mut self,
        text: &str,
        cons: &str,
        ins: &[&V],
        outs: usize,
        out_t: &str,
        side: bool,
    ) -> Vec<V> {
        let names: Vec<&str> = ins.iter().map(|v| v.n.as_str()).collect();
        let types: Vec<&str> = ins.iter().map(|v| v.t).collect();
        let eff = if side { "has_side_effects " } else { "" };
        let rt = match outs {
            0 => "()".to_string(),
            1 => out_t.to_string(),
            n => format!("!llvm.struct<({})>", vec![out_t; n].join(", ")),
        };
        let call = format!(
            "llvm.inline_asm {eff}asm_dialect = att \"{text}\", \"{cons}\" {} : ({}) -> {rt}",
            names.join(", "),
            types.join(", ")
        );
        match outs {
            0 => {
                self.e.line(&call);
                vec![]
            }
            1 => {
                let t: &'static str = if out_t == "f32" { "f32" } else { "i32" };
                vec![self.e.op(t, &call)]
            }
            n => {
                let s = self.e.op("struct", &call);
                let t: &'static str = if out_t == "f32" { "f32" } else { "i32" };
                (0..n)
                    .map(|i| {
                        self.e
                            .op(t, &format!("llvm.extractvalue {}[{i}] : {rt}", s.n))
                    })
                    .collect()
            }
        }
    }

    fn barrier(&mut self) {
        self.asm("bar.sync 0;", "", &[], 0, "", true);
    }

    fn smem_ptr(&mut self, off: &V) -> V {
        self.e.op(
            "!llvm.ptr<3>",
            &format!(
                "llvm.getelementptr {}[{}] : (!llvm.ptr<3>, i32) -> !llvm.ptr<3>, i8",
                self.smem.n, off.n
            ),
        )
    }

    fn st_shared(&mut self, off: &V, v: &V) {
        let p = self.smem_ptr(off);
        self.e.line(&format!(
            "llvm.store {}, {} : {}, !llvm.ptr<3>",
            v.n, p.n, v.t
        ));
    }

    fn ld_shared(&mut self, off: &V, t: &'static str) -> V {
        let p = self.smem_ptr(off);
        self.e
            .op(t, &format!("llvm.load {} : !llvm.ptr<3> -> {t}", p.n))
    }

    /// Two registers of one type as a 2-element vector (`vec2_ty` must know the type).
    fn pack2(&mut self, a: &V, b: &V) -> V {
        let vt = vec2_ty(a.t).expect("a pairable register type");
        let u = self.e.op(vt, &format!("llvm.mlir.undef : {vt}"));
        let (z, o) = (self.c32(0), self.c32(1));
        let v = self.e.op(
            vt,
            &format!("llvm.insertelement {}, {}[{} : i32] : {vt}", a.n, u.n, z.n),
        );
        self.e.op(
            vt,
            &format!("llvm.insertelement {}, {}[{} : i32] : {vt}", b.n, v.n, o.n),
        )
    }

    fn unpack2(&mut self, v: &V, t: &'static str) -> [V; 2] {
        let (z, o) = (self.c32(0), self.c32(1));
        [z, o].map(|i| {
            self.e.op(
                t,
                &format!("llvm.extractelement {}[{} : i32] : {}", v.n, i.n, v.t),
            )
        })
    }

    /// `scf.if c` whose arms each produce the same number of values of the same types.
    fn if_values(
        &mut self,
        c: &V,
        then: impl FnOnce(&mut Self) -> R<Vec<V>>,
        els: impl FnOnce(&mut Self) -> R<Vec<V>>,
    ) -> R<Vec<V>> {
        self.e.bodies.push(String::new());
        let a = then(self)?;
        self.yield_values(&a);
        let ta = self.e.bodies.pop().unwrap_or_default();
        self.e.bodies.push(String::new());
        let b = els(self)?;
        self.yield_values(&b);
        let tb = self.e.bodies.pop().unwrap_or_default();
        let tys: Vec<&str> = a.iter().map(|v| v.t).collect();
        if b.iter().map(|v| v.t).ne(tys.iter().copied()) {
            return Err(err("the arms of a conditional produce different types"));
        }
        let res = if a.is_empty() {
            String::new()
        } else {
            self.e.fresh()
        };
        if a.is_empty() {
            self.e.line(&format!("scf.if {} {{", c.n));
        } else {
            self.e.line(&format!(
                "{res}:{} = scf.if {} -> ({}) {{",
                a.len(),
                c.n,
                tys.join(", ")
            ));
        }
        let body = self.e.bodies.last_mut().expect("a body is open");
        for (i, text) in [ta, tb].iter().enumerate() {
            if i == 1 {
                body.push_str("    } else {\n");
            }
            for l in text.lines() {
                body.push_str("  ");
                body.push_str(l);
                body.push('\n');
            }
        }
        self.e.line("}");
        Ok((0..a.len())
            .map(|i| V {
                n: format!("{res}#{i}"),
                t: tys[i],
            })
            .collect())
    }

    fn yield_values(&mut self, vals: &[V]) {
        if vals.is_empty() {
            return;
        }
        let names: Vec<&str> = vals.iter().map(|v| v.n.as_str()).collect();
        let tys: Vec<&str> = vals.iter().map(|v| v.t).collect();
        self.e.line(&format!(
            "scf.yield {} : {}",
            names.join(", "),
            tys.join(", ")
        ));
    }

    fn gptr(&mut self, tensor: usize, off64: &V) -> V {
        let d = self.tensor_dtype(tensor);
        let base = self.args[tensor].n.clone();
        self.e.op(
            "!llvm.ptr<1>",
            &format!(
                "llvm.getelementptr {base}[{}] : (!llvm.ptr<1>, i64) -> !llvm.ptr<1>, {}",
                off64.n,
                ty(d)
            ),
        )
    }

    fn tensor_dtype(&self, tensor: usize) -> DType {
        match &self.k.params[tensor].kind {
            ParamKind::Tensor { dtype, .. } => *dtype,
            ParamKind::Scalar { dtype } => *dtype,
        }
    }

    fn dim(&mut self, tensor: usize, axis: usize) -> V {
        let ParamKind::Tensor { dims, .. } = &self.k.params[tensor].kind else {
            return self.c32(1);
        };
        match &dims[axis] {
            Dim::Const(c) => self.c32(*c),
            Dim::Sym(s) => {
                let i = self.symbols.iter().position(|x| x == s).unwrap_or(0);
                self.args[self.k.params.len() + i].clone()
            }
        }
    }

    fn tensor_strides(&mut self, tensor: usize) -> Vec<V> {
        if let Some(s) = self.strides.get(&tensor) {
            return s.clone();
        }
        let rank = match &self.k.params[tensor].kind {
            ParamKind::Tensor { dims, .. } => dims.len(),
            _ => 0,
        };
        let mut st = vec![self.c64(1); rank];
        for a in (0..rank.saturating_sub(1)).rev() {
            let d = self.dim(tensor, a + 1);
            let d64 = self
                .e
                .pre("i64", format!("arith.extsi {} : i32 to i64", d.n));
            st[a] = self.e.pre(
                "i64",
                format!("arith.muli {}, {} : i64", st[a + 1].n, d64.n),
            );
        }
        self.strides.insert(tensor, st.clone());
        st
    }

    // ---- thread coordinates ---------------------------------------------------------------

    fn bitsum(&mut self, src: &V, coords: &[[usize; 2]], axis: usize) -> V {
        let mut acc = self.c32(0);
        for (b, c) in coords.iter().enumerate() {
            if c[axis] == 0 {
                continue;
            }
            let sh = self.c32(b as i64);
            let one = self.c32(1);
            let bit = self
                .e
                .pre("i32", format!("arith.shrui {}, {} : i32", src.n, sh.n));
            let bit = self
                .e
                .pre("i32", format!("arith.andi {}, {} : i32", bit.n, one.n));
            let k = self.c32(c[axis] as i64);
            let term = self
                .e
                .pre("i32", format!("arith.muli {}, {} : i32", bit.n, k.n));
            acc = self
                .e
                .pre("i32", format!("arith.addi {}, {} : i32", acc.n, term.n));
        }
        acc
    }

    /// The thread's base (row, column) in a layout.
    fn base(&mut self, d: &Dist) -> (V, V) {
        let (lane, warp) = (self.lane.clone(), self.warp.clone());
        let mut out = Vec::new();
        for axis in 0..2 {
            let l = self.bitsum(&lane, &d.lane, axis);
            let w = self.bitsum(&warp, &d.warp, axis);
            out.push(
                self.e
                    .pre("i32", format!("arith.addi {}, {} : i32", l.n, w.n)),
            );
        }
        (out[0].clone(), out[1].clone())
    }

    /// True on the one thread of each group of replicas (the one whose replica bits are 0).
    fn owner(&mut self, d: &Dist) -> V {
        let (lm, wm) = (d.lane_replicas(), d.warp_replicas());
        if lm == 0 && wm == 0 {
            return self.ctrue();
        }
        let (lane, warp) = (self.lane.clone(), self.warp.clone());
        let lmv = self.c32(lm as i64);
        let wmv = self.c32(wm as i64);
        let z = self.c32(0);
        let a = self
            .e
            .pre("i32", format!("arith.andi {}, {} : i32", lane.n, lmv.n));
        let b = self
            .e
            .pre("i32", format!("arith.andi {}, {} : i32", warp.n, wmv.n));
        let o = self
            .e
            .pre("i32", format!("arith.ori {}, {} : i32", a.n, b.n));
        self.e
            .pre("i1", format!("arith.cmpi eq, {}, {} : i32", o.n, z.n))
    }

    // ---- values and layouts ---------------------------------------------------------------

    fn get(&self, v: ValueId) -> R<Vec<V>> {
        self.env
            .get(&v)
            .cloned()
            .ok_or_else(|| err(format!("{v} used before it was lowered")))
    }

    fn dtype(&self, v: ValueId) -> DType {
        self.k.ty(v).dtype
    }

    /// `v`'s registers in layout `want` (converting through scratch when they differ).
    fn regs_in(&mut self, v: ValueId, want: &Layout) -> R<Vec<V>> {
        let have = self.s.layout(v).clone();
        let vals = self.get(v)?;
        match (&have, want) {
            (Layout::Uniform, Layout::Dist(d)) => Ok(vec![vals[0].clone(); d.regs.len()]),
            (Layout::Dist(a), Layout::Dist(b)) if a.same_placement(b) => Ok(vals),
            (Layout::Dist(a), Layout::Dist(b)) => self.convert(&vals, a, b),
            _ => Ok(vals),
        }
    }

    /// The scratch byte offset of this thread's base element of `d`, one 32-bit word per element in
    /// row-major order.
    fn scratch_word(&mut self, d: &Dist) -> V {
        let (br, bc) = self.base(d);
        let so = self.c32(self.s.scratch_offset as i64);
        let four = self.c32(4);
        let cv = self.c32(d.shape[1] as i64);
        let lin = self
            .e
            .pre("i32", format!("arith.muli {}, {} : i32", br.n, cv.n));
        let lin = self
            .e
            .pre("i32", format!("arith.addi {}, {} : i32", lin.n, bc.n));
        let lin = self
            .e
            .pre("i32", format!("arith.muli {}, {} : i32", lin.n, four.n));
        self.e
            .pre("i32", format!("arith.addi {}, {} : i32", lin.n, so.n))
    }

    /// Moves a tile between layouts through the scratch region, as 32-bit words at the
    /// row-major element index.
    fn convert(&mut self, vals: &[V], from: &Dist, to: &Dist) -> R<Vec<V>> {
        let n = from.shape[0] * from.shape[1];
        if n * 4 > self.s.scratch_bytes {
            return Err(err(format!(
                "a layout conversion needs {} scratch bytes, the schedule has {}",
                n * 4,
                self.s.scratch_bytes
            )));
        }
        let t = vals[0].t;
        self.barrier();
        let owner = self.owner(from);
        let cols = from.shape[1] as i64;
        let lin = self.scratch_word(from);
        self.open_if(&owner);
        for (i, r) in from.regs.iter().enumerate() {
            let off = self.addc(&lin, 4 * (r[0] as i64 * cols + r[1] as i64));
            let w = self.as_b32(&vals[i]);
            self.st_shared(&off, &w);
        }
        self.close_if();
        self.barrier();
        let lin = self.scratch_word(to);
        let mut out = Vec::new();
        for r in &to.regs {
            let off = self.addc(&lin, 4 * (r[0] as i64 * cols + r[1] as i64));
            let w = self.ld_shared(&off, "i32");
            out.push(self.of_b32(&w, t));
        }
        Ok(out)
    }

    fn open_if(&mut self, c: &V) {
        self.e.line(&format!("scf.if {} {{", c.n));
        self.e.bodies.push(String::new());
    }

    fn close_if(&mut self) {
        let inner = self.e.bodies.pop().unwrap_or_default();
        let b = self.e.bodies.last_mut().expect("a body is open");
        for l in inner.lines() {
            b.push_str("  ");
            b.push_str(l);
            b.push('\n');
        }
        self.e.line("}");
    }

    // ---- global memory --------------------------------------------------------------------

    /// For the slice of `tensor` at `starts`/`extents`: (fixed-dims in range, i64 offset of the
    /// fixed dims, [(row start, row stride, row extent)], [(col …)]) — the tile's 1 or 2 ranges.
    fn slice(
        &mut self,
        tensor: usize,
        starts: &[ValueId],
        extents: &[Option<usize>],
    ) -> R<SliceAccess> {
        let strides = self.tensor_strides(tensor);
        let mut ok = self.ctrue();
        let mut off = self.c64(0);
        let mut ranges = Vec::new();
        let z = self.c32(0);
        for (a, e) in extents.iter().enumerate() {
            let st = self.get(starts[a])?[0].clone();
            let dim = self.dim(tensor, a);
            if e.is_some() {
                ranges.push((st, strides[a].clone(), dim));
            } else {
                let ge = self.icmp("sge", &st, &z);
                let lt = self.icmp("slt", &st, &dim);
                ok = self.and(&ok, &ge);
                ok = self.and(&ok, &lt);
                let s64 = self.ext64(&st);
                let t = self.mul(&s64, &strides[a]);
                off = self.add(&off, &t);
            }
        }
        Ok((ok, off, ranges))
    }

    /// Per range of a slice, the thread's coordinate in it (range start + the thread's base
    /// element of `d`): the tile's element (r, c) indexes two ranges as (r, c), one as r·cols + c.
    fn thread_coords(&mut self, d: &Dist, ranges: &[(V, V, V)]) -> Vec<V> {
        let (br, bc) = self.base(d);
        let bases = if ranges.len() == 2 {
            vec![br, bc]
        } else {
            let cv = self.c32(d.shape[1] as i64);
            let l = self.mul(&br, &cv);
            vec![self.add(&l, &bc)]
        };
        ranges
            .iter()
            .zip(&bases)
            .map(|((st, _, _), b)| self.add(st, b))
            .collect()
    }

    /// For each register of `d`: (in range, clamped element pointer) of the access.
    fn accesses(
        &mut self,
        tensor: usize,
        starts: &[ValueId],
        extents: &[Option<usize>],
        d: &Dist,
        mask: Option<&[V]>,
    ) -> R<Vec<(V, V)>> {
        let (ok, off, ranges) = self.slice(tensor, starts, extents)?;
        let two = ranges.len() == 2;
        let z = self.c32(0);
        let z64 = self.c64(0);
        let mut out = Vec::new();
        let cols = d.shape[1];
        let thread = self.thread_coords(d, &ranges);
        for (ri, r) in d.regs.iter().enumerate() {
            let mut okr = ok.clone();
            let mut o = off.clone();
            for (i, (_, stride, dim)) in ranges.clone().iter().enumerate() {
                let delta = if two { r[i] } else { r[0] * cols + r[1] };
                let coord = self.addc(&thread[i], delta as i64);
                let ge = self.icmp("sge", &coord, &z);
                let lt = self.icmp("slt", &coord, dim);
                okr = self.and(&okr, &ge);
                okr = self.and(&okr, &lt);
                let c64 = self.ext64(&coord);
                let t = self.mul(&c64, stride);
                o = self.add(&o, &t);
            }
            if let Some(m) = mask {
                okr = self.and(&okr, &m[ri]);
            }
            let safe = self.select(&okr, &o, &z64);
            let p = self.gptr(tensor, &safe);
            out.push((okr, p));
        }
        Ok(out)
    }

    /// The fast path of accessing `d`'s registers of a slice: when the whole tile lies inside the
    /// tensor (one check per tile instead of one per element), every register's pointer is the
    /// thread's one 64-bit offset plus a constant, which folds into the instruction's immediate
    /// when the tensor's inner dims are compile-time constants; and register pairs
    /// (`Dist::pairs_columns`) along the tensor's last axis move as one 2-element access when
    /// the tile's origin is 2-element aligned and so is the row stride (checked at run time,
    /// with the tile check).
    fn interior(
        &mut self,
        tensor: usize,
        starts: &[ValueId],
        extents: &[Option<usize>],
        d: &Dist,
        dt: DType,
    ) -> R<Interior> {
        let (ok, off, ranges) = self.slice(tensor, starts, extents)?;
        let two = ranges.len() == 2;
        let (br, bc) = self.base(d);
        let cols = d.shape[1];
        let z = self.c32(0);
        let mut cond = ok;
        let mut thread = Vec::new();
        for (i, (st, stride, dim)) in ranges.iter().enumerate() {
            let (ext, b) = if two {
                (d.shape[i], if i == 0 { br.clone() } else { bc.clone() })
            } else {
                let cv = self.c32(cols as i64);
                let l = self.mul(&br, &cv);
                (d.shape[0] * cols, self.add(&l, &bc))
            };
            let ge = self.icmp("sge", st, &z);
            let end = self.addc(st, ext as i64);
            let le = self.icmp("sle", &end, dim);
            cond = self.and(&cond, &ge);
            cond = self.and(&cond, &le);
            let coord = self.add(st, &b);
            thread.push((coord, stride.clone()));
        }
        // One range (a 1-D slice) indexes r·cols + c: pairs stay even when cols is.
        let paired = (two || cols.is_multiple_of(2))
            && d.pairs_columns()
            && matches!(extents.last(), Some(Some(_)))
            && vec2_ty(ty(dt)).is_some();
        if paired {
            let mut o = off.clone();
            for (st, stride, _) in &ranges {
                let s64 = self.ext64(st);
                let t = self.mul(&s64, stride);
                o = self.add(&o, &t);
            }
            let p = self.gptr(tensor, &o);
            let a = self.e.op(
                "i64",
                &format!("llvm.ptrtoint {} : !llvm.ptr<1> to i64", p.n),
            );
            let low = self.c64(2 * dt.size() as i64 - 1);
            let mut bad = self.and(&a, &low);
            if two {
                let one = self.c64(1);
                let odd_rows = self.and(&ranges[0].1, &one);
                bad = self.bin("ori", &bad, &odd_rows);
            }
            let z64 = self.c64(0);
            let aligned = self.icmp("eq", &bad, &z64);
            cond = self.and(&cond, &aligned);
        }
        Ok(Interior {
            cond,
            off,
            thread,
            two,
            paired,
        })
    }

    /// The fast path's pointer of every register (to be called inside the fast-path region).
    fn interior_ptrs(&mut self, tensor: usize, it: &Interior, d: &Dist) -> Vec<V> {
        let mut base = it.off.clone();
        for (coord, stride) in &it.thread {
            let c64 = self.ext64(coord);
            let t = self.mul(&c64, stride);
            base = self.add(&base, &t);
        }
        let cols = d.shape[1];
        d.regs
            .iter()
            .map(|r| {
                let mut o = base.clone();
                for (i, (_, stride)) in it.thread.iter().enumerate() {
                    let delta = if it.two { r[i] } else { r[0] * cols + r[1] };
                    if delta != 0 {
                        let dv = self.c64(delta as i64);
                        let t = self.mul(&dv, stride);
                        o = self.add(&o, &t);
                    }
                }
                self.gptr(tensor, &o)
            })
            .collect()
    }

    #[allow(clippy::too_many_arguments)]
    fn load_regs(
        &mut self,
        v: ValueId,
        d: &Dist,
        tensor: usize,
        starts: &[ValueId],
        extents: &[Option<usize>],
        mask: Option<ValueId>,
        fill: f64,
    ) -> R<Vec<V>> {
        let m = match mask {
            Some(m) => Some(self.regs_in(m, &Layout::Dist(d.clone()))?),
            None => None,
        };
        let dt = self.dtype(v);
        let t = ty(dt);
        let guarded = |me: &mut Self| -> R<Vec<V>> {
            let acc = me.accesses(tensor, starts, extents, d, m.as_deref())?;
            let fillv = me.constant(Literal::Float(fill), dt);
            let mut out = Vec::new();
            for (ok, p) in acc {
                let x =
                    me.e.op(t, &format!("llvm.load {} : !llvm.ptr<1> -> {t}", p.n));
                out.push(me.select(&ok, &x, &fillv));
            }
            Ok(out)
        };
        if mask.is_some() || d.regs.len() < 2 {
            return guarded(self);
        }
        let it = self.interior(tensor, starts, extents, d, dt)?;
        let cond = it.cond.clone();
        let fast = |me: &mut Self| -> R<Vec<V>> {
            let ptrs = me.interior_ptrs(tensor, &it, d);
            let mut out = Vec::new();
            if it.paired {
                let vt = vec2_ty(t).expect("paired types have a vector type");
                for p in ptrs.iter().step_by(2) {
                    let x =
                        me.e.op(vt, &format!("llvm.load {} : !llvm.ptr<1> -> {vt}", p.n));
                    out.extend(me.unpack2(&x, t));
                }
            } else {
                for p in &ptrs {
                    out.push(me.e.op(t, &format!("llvm.load {} : !llvm.ptr<1> -> {t}", p.n)));
                }
            }
            Ok(out)
        };
        self.if_values(&cond, fast, guarded)
    }

    // ---- shared tiles ---------------------------------------------------------------------

    /// Byte offset of element (row, col) of `tile` whose slot starts at byte `base`.
    fn tile_offset(&mut self, tile: &SmemTile, base: &V, row: &V, col: &V) -> V {
        let es = tile.dtype.size() as i64;
        let rb = self.c32(tile.cols as i64 * es);
        let ro = self.mul(row, &rb);
        let co = if tile.swizzle {
            let (pp, mp) = tile.swizzle_params();
            let three = self.c32(3);
            let chunk = self.bin("shrui", col, &three);
            let sh = self.c32(pp.trailing_zeros() as i64);
            let ph = self.bin("shrui", row, &sh);
            let mk = self.c32(mp as i64 - 1);
            let ph = self.bin("andi", &ph, &mk);
            let sw = self.bin("xori", &chunk, &ph);
            let sixteen = self.c32(16);
            let cb = self.mul(&sw, &sixteen);
            let seven = self.c32(7);
            let within = self.bin("andi", col, &seven);
            let esv = self.c32(es);
            let wb = self.mul(&within, &esv);
            self.add(&cb, &wb)
        } else {
            let esv = self.c32(es);
            self.mul(col, &esv)
        };
        let o = self.add(&ro, &co);
        self.add(base, &o)
    }

    /// Whether `d`'s register pairs are each one 2-element access of `tile`: side by side at an
    /// even column, which a 16-byte swizzle chunk never splits.
    fn tile_pairs(d: &Dist, tile: &SmemTile) -> bool {
        d.pairs_columns() && vec2_ty(ty(tile.dtype)).is_some() && tile.cols.is_multiple_of(2)
    }

    /// Writes registers in layout `d` into `tile` at slot `base`.
    fn store_tile(&mut self, vals: &[V], d: &Dist, tile: &SmemTile, base: &V) {
        let owner = self.owner(d);
        let (br, bc) = self.base(d);
        self.open_if(&owner);
        let xs: Vec<V> = vals
            .iter()
            .map(|v| {
                if v.t == ty(tile.dtype) {
                    v.clone()
                } else {
                    let from = match v.t {
                        "f32" => DType::F32,
                        "bf16" => DType::Bf16,
                        "f16" => DType::F16,
                        "i1" => DType::Bool,
                        _ => DType::I32,
                    };
                    self.cast(v, from, tile.dtype)
                }
            })
            .collect();
        let step = if Self::tile_pairs(d, tile) { 2 } else { 1 };
        for i in (0..d.regs.len()).step_by(step) {
            let r = d.regs[i];
            let row = self.addc(&br, r[0] as i64);
            let col = self.addc(&bc, r[1] as i64);
            let off = self.tile_offset(tile, base, &row, &col);
            let x = if step == 2 {
                self.pack2(&xs[i], &xs[i + 1])
            } else {
                xs[i].clone()
            };
            self.st_shared(&off, &x);
        }
        self.close_if();
    }

    /// A staged tile's registers in layout `d`, read back from its slot at `base` (the copy has
    /// landed): a second read of the same global tile would cost a 64-bit address and a bounds
    /// check per element, and the slot already holds the fill and the mask.
    fn read_tile(&mut self, d: &Dist, tile: &SmemTile, base: &V) -> Vec<V> {
        let (br, bc) = self.base(d);
        let t = ty(tile.dtype);
        let paired = Self::tile_pairs(d, tile);
        let step = if paired { 2 } else { 1 };
        let mut out = Vec::new();
        for i in (0..d.regs.len()).step_by(step) {
            let r = d.regs[i];
            let row = self.addc(&br, r[0] as i64);
            let col = self.addc(&bc, r[1] as i64);
            let off = self.tile_offset(tile, base, &row, &col);
            if paired {
                let vt = vec2_ty(t).expect("paired types have a vector type");
                let x = self.ld_shared(&off, vt);
                out.extend(self.unpack2(&x, t));
            } else {
                out.push(self.ld_shared(&off, t));
            }
        }
        out
    }

    /// Issues the copy of staged load `v` (for starts already lowered) into slot `base`.
    fn copy_in(&mut self, v: ValueId, base: &V) -> R<()> {
        let inst_op = find_def(&self.k.body, v).ok_or_else(|| err(format!("{v} has no def")))?;
        let Op::Load {
            tensor,
            starts,
            extents,
            mask,
            fill,
        } = inst_op
        else {
            return Err(err(format!("{v} is not a load")));
        };
        let st = self.s.staged[&v].clone();
        let tile = st.tile;
        let blocked = Dist::blocked(tile.rows, tile.cols, self.s.num_warps as usize);
        let sync = |me: &mut Self| -> R<()> {
            let regs = me.load_regs(v, &blocked, tensor, &starts, &extents, mask, fill)?;
            me.store_tile(&regs, &blocked, &tile, base);
            Ok(())
        };
        if st.copy == Copy::Sync {
            return sync(self);
        }
        // 16-byte copies need every row of the tensor to start 16-byte aligned.
        let rank = extents.len();
        let inner = self.dim(tensor, rank - 1);
        let seven = self.c32(7);
        let z = self.c32(0);
        let low = self.and(&inner, &seven);
        let aligned = self.icmp("eq", &low, &z);
        let copies = |me: &mut Self| -> R<Vec<V>> {
            let (ok, off, ranges) = me.slice(tensor, &starts, &extents)?;
            let chunks_per_row = tile.cols / 8;
            let total = tile.rows * chunks_per_row;
            let threads = me.s.threads as usize;
            let z64 = me.c64(0);
            let zero = me.c32(0);
            let sixteen = me.c32(16);
            let tid = me.tid.clone();
            for it in 0..total.div_ceil(threads) {
                // Which chunk this thread copies depends only on the thread: computed once.
                me.e.hoist = true;
                let q = me.addc(&tid, (it * threads) as i64);
                let cpr = me.c32(chunks_per_row as i64);
                let row = me.bin("divui", &q, &cpr);
                let cc = me.bin("remui", &q, &cpr);
                let eight = me.c32(8);
                let col = me.mul(&cc, &eight);
                let zero_base = me.c32(0);
                let rel = me.tile_offset(&tile, &zero_base, &row, &col);
                me.e.hoist = false;
                let mut okq = ok.clone();
                if !total.is_multiple_of(threads) {
                    let tot = me.c32(total as i64);
                    let inside = me.icmp("slt", &q, &tot);
                    okq = me.and(&okq, &inside);
                }
                let mut o = off.clone();
                let coords = if ranges.len() == 2 {
                    vec![row.clone(), col.clone()]
                } else {
                    let cv = me.c32(tile.cols as i64);
                    let l = me.mul(&row, &cv);
                    vec![me.add(&l, &col)]
                };
                for (i, (s0, stride, dim)) in ranges.clone().iter().enumerate() {
                    let c = me.add(s0, &coords[i]);
                    let ge = me.icmp("sge", &c, &zero);
                    let lt = me.icmp("slt", &c, dim);
                    okq = me.and(&okq, &ge);
                    okq = me.and(&okq, &lt);
                    let c64 = me.ext64(&c);
                    let t = me.mul(&c64, stride);
                    o = me.add(&o, &t);
                }
                let safe = me.select(&okq, &o, &z64);
                let gp = me.gptr(tensor, &safe);
                let bytes = me.select(&okq, &sixteen, &zero);
                let so = me.add(base, &rel);
                let s32 = me.smem32.clone();
                let sa = me.add(&s32, &so);
                let partial = !total.is_multiple_of(threads);
                if partial {
                    let tot = me.c32(total as i64);
                    let inside = me.icmp("slt", &q, &tot);
                    me.open_if(&inside);
                }
                me.asm(
                    "cp.async.cg.shared.global [$0], [$1], 16, $2;",
                    "r,l,r",
                    &[&sa, &gp, &bytes],
                    0,
                    "",
                    true,
                );
                if partial {
                    me.close_if();
                }
            }
            Ok(vec![])
        };
        let fallback = |me: &mut Self| -> R<Vec<V>> {
            sync(me)?;
            Ok(vec![])
        };
        self.if_values(&aligned, copies, fallback)?;
        Ok(())
    }

    fn commit(&mut self) {
        self.asm("cp.async.commit_group;", "", &[], 0, "", true);
    }

    fn wait(&mut self, n: usize) {
        self.asm(&format!("cp.async.wait_group {n};"), "", &[], 0, "", true);
    }

    // ---- dot ------------------------------------------------------------------------------

    /// Where a shared operand lives: its tile and the byte offset of its slot.
    fn operand_tile(
        &mut self,
        value: ValueId,
        staged: bool,
        scratch_at: usize,
        unit: DotUnit,
    ) -> R<(SmemTile, V)> {
        if staged {
            let tile = self.s.staged[&value].tile;
            let at = self
                .smem_at
                .get(&value)
                .cloned()
                .ok_or_else(|| err(format!("staged {value} read before it was copied")))?;
            return Ok((tile, at));
        }
        let t = self.k.ty(value).clone();
        let _ = unit;
        let tile = SmemTile::new(t.shape[0], t.shape[1], t.dtype);
        let base = self.c32((self.s.scratch_offset + scratch_at) as i64);
        let vals = self.get(value)?;
        let d = self
            .s
            .dist(value)
            .cloned()
            .ok_or_else(|| err(format!("{value} is not in registers")))?;
        self.store_tile(&vals, &d, &tile, &base);
        Ok((tile, base))
    }

    fn ldmatrix(&mut self, tile: &SmemTile, base: &V, row: &V, col: &V, trans: bool) -> Vec<V> {
        // row and col depend only on the thread (and the unrolled step): so does their offset.
        self.e.hoist = true;
        let zero = self.c32(0);
        let rel = self.tile_offset(tile, &zero, row, col);
        self.e.hoist = false;
        let off = self.add(base, &rel);
        let p = self.smem_ptr(&off);
        let a = self.e.op(
            "i32",
            &format!("llvm.ptrtoint {} : !llvm.ptr<3> to i32", p.n),
        );
        let t = if trans { ".trans" } else { "" };
        self.asm(
            &format!("ldmatrix.sync.aligned.m8n8.x4{t}.shared.b16 {{$0,$1,$2,$3}}, [$4];"),
            "=r,=r,=r,=r,r",
            &[&a],
            4,
            "i32",
            true,
        )
    }

    /// Two 16-bit registers as one 32-bit operand register, low half first. Built as a vector so
    /// that two f32 → bf16 rounds feeding it become one `cvt.rn.bf16x2.f32`.
    fn pack(&mut self, lo: &V, hi: &V) -> V {
        let v = self.pack2(lo, hi);
        self.e
            .op("i32", &format!("llvm.bitcast {} : {} to i32", v.n, v.t))
    }

    fn dot(&mut self, inst: &Inst) -> R<Vec<V>> {
        let r = inst.results[0];
        let Op::Dot { acc, .. } = &inst.op else {
            return Err(err("not a dot"));
        };
        let plan = self.s.dots[&r].clone();
        let out_layout = self.s.layout(r).clone();
        let Layout::Dist(od) = &out_layout else {
            return Err(err("a dot result must be distributed"));
        };
        let mut c = match acc {
            Some(a) => {
                let v = self.regs_in(*a, &out_layout)?;
                v.iter().map(|x| self.widen(x)).collect::<Vec<_>>()
            }
            None => {
                let z = self.cf32(0.0);
                vec![z; od.regs.len()]
            }
        };
        // Register operands go to scratch first (one barrier before them).
        let needs_scratch = [&plan.a, &plan.b]
            .iter()
            .any(|o| matches!(o, Operand::Smem { staged: false, .. }));
        if needs_scratch {
            self.barrier();
        }
        let mut at = 0;
        let mut tiles = Vec::new();
        for o in [&plan.a, &plan.b] {
            match o {
                Operand::Smem {
                    value,
                    trans,
                    staged,
                } => {
                    let (tile, base) = self.operand_tile(*value, *staged, at, plan.unit)?;
                    if !staged {
                        at += tile.bytes().div_ceil(16) * 16;
                    }
                    tiles.push(Some((tile, base, *trans)));
                }
                Operand::RegA { .. } => tiles.push(None),
            }
        }
        if at > self.s.scratch_bytes {
            return Err(err("dot operands exceed the scheduled scratch"));
        }
        if needs_scratch {
            self.barrier();
        }
        match plan.unit {
            DotUnit::Mma => self.mma(&plan, od, &mut c, &tiles)?,
            DotUnit::Fma => c = self.fma_dot(&plan, od, c, &tiles)?,
        }
        Ok(c)
    }

    fn mma(
        &mut self,
        plan: &crate::sched::DotPlan,
        od: &Dist,
        c: &mut [V],
        tiles: &[Option<(SmemTile, V, bool)>],
    ) -> R<()> {
        let crate::sched::DistKind::Mma { wm, wn } = od.kind else {
            return Err(err("an mma dot needs the mma layout"));
        };
        let (m, n, kdim) = (plan.m, plan.n, plan.k);
        let (wr, wc) = (m / wm, n / wn);
        let (fm, fnn) = (wr / 16, wc / 8);
        let wnv = self.c32(wn as i64);
        let warp = self.warp.clone();
        let wi_m = self
            .e
            .pre("i32", format!("arith.divui {}, {} : i32", warp.n, wnv.n));
        let wi_n = self
            .e
            .pre("i32", format!("arith.remui {}, {} : i32", warp.n, wnv.n));
        let wrv = self.c32(wr as i64);
        let wcv = self.c32(wc as i64);
        let row0 = self
            .e
            .pre("i32", format!("arith.muli {}, {} : i32", wi_m.n, wrv.n));
        let col0 = self
            .e
            .pre("i32", format!("arith.muli {}, {} : i32", wi_n.n, wcv.n));
        let lane = self.lane.clone();
        let c7 = self.c32(7);
        let c8 = self.c32(8);
        let c1 = self.c32(1);
        let c3 = self.c32(3);
        let c4 = self.c32(4);
        let l8 = self
            .e
            .pre("i32", format!("arith.andi {}, {} : i32", lane.n, c7.n));
        let q = self
            .e
            .pre("i32", format!("arith.shrui {}, {} : i32", lane.n, c3.n));
        let q_lo = self
            .e
            .pre("i32", format!("arith.andi {}, {} : i32", q.n, c1.n));
        let q_hi = self
            .e
            .pre("i32", format!("arith.shrui {}, {} : i32", lane.n, c4.n));
        let q_lo8 = self
            .e
            .pre("i32", format!("arith.muli {}, {} : i32", q_lo.n, c8.n));
        let q_hi8 = self
            .e
            .pre("i32", format!("arith.muli {}, {} : i32", q_hi.n, c8.n));
        // Non-trans A / trans B pattern: row = lane%8 + 8·((lane/8)%2), col chunk = 8·(lane/16).
        let pat_row = self
            .e
            .pre("i32", format!("arith.addi {}, {} : i32", l8.n, q_lo8.n));
        // Non-trans B / trans A pattern: row = lane%8 + 8·(lane/16), col = 8·((lane/8)%2).
        let pat_row2 = self
            .e
            .pre("i32", format!("arith.addi {}, {} : i32", l8.n, q_hi8.n));
        let dtype_name = match tiles
            .iter()
            .flatten()
            .next()
            .map(|t| t.0.dtype)
            .unwrap_or(DType::Bf16)
        {
            DType::F16 => "f16",
            _ => "bf16",
        };
        let areg = match &plan.a {
            Operand::RegA { value } => Some(self.get(*value)?),
            _ => None,
        };
        for kk in 0..kdim / 16 {
            // A fragments.
            let mut afr: Vec<Vec<V>> = Vec::new();
            for i in 0..fm {
                if let Some(regs) = &areg {
                    // The operand is itself an mma-layout tile [m, kdim] over wm×1 warps:
                    // fragments (i, 2kk) and (i, 2kk+1) are this k-step's A fragment.
                    let fn_op = kdim / 8;
                    let f0 = (i * fn_op + 2 * kk) * 4;
                    let f1 = (i * fn_op + 2 * kk + 1) * 4;
                    afr.push(vec![
                        self.pack(&regs[f0], &regs[f0 + 1]),
                        self.pack(&regs[f0 + 2], &regs[f0 + 3]),
                        self.pack(&regs[f1], &regs[f1 + 1]),
                        self.pack(&regs[f1 + 2], &regs[f1 + 3]),
                    ]);
                    continue;
                }
                let (tile, base, trans) = tiles[0].clone().ok_or_else(|| err("A operand"))?;
                self.e.hoist = true;
                let mrow = self.addc(&row0, 16 * i as i64);
                let (row, col) = if !trans {
                    (self.add(&mrow, &pat_row), self.addc(&q_hi8, 16 * kk as i64))
                } else {
                    // Stored [K, M]: row k = 16kk + lane%8 + 8·(lane/16), col m = 8·((lane/8)%2).
                    (
                        self.addc(&pat_row2, 16 * kk as i64),
                        self.add(&mrow, &q_lo8),
                    )
                };
                self.e.hoist = false;
                afr.push(self.ldmatrix(&tile, &base, &row, &col, trans));
            }
            // B fragments, two n8 tiles per ldmatrix.x4.
            let mut bfr: Vec<[V; 2]> = Vec::new();
            let (tile, base, trans) = tiles[1].clone().ok_or_else(|| err("B operand"))?;
            for jj in 0..fnn / 2 {
                self.e.hoist = true;
                let n0 = self.addc(&col0, 16 * jj as i64);
                let (row, col) = if trans {
                    // Stored [N, K]: row n = n0 + lane%8 + 8·(lane/16), col k = 16kk + 8·((lane/8)%2).
                    (self.add(&n0, &pat_row2), self.addc(&q_lo8, 16 * kk as i64))
                } else {
                    // Stored [K, N]: row k = 16kk + lane%8 + 8·((lane/8)%2), col n = n0 + 8·(lane/16).
                    (self.addc(&pat_row, 16 * kk as i64), self.add(&n0, &q_hi8))
                };
                self.e.hoist = false;
                let r = self.ldmatrix(&tile, &base, &row, &col, !trans);
                bfr.push([r[0].clone(), r[1].clone()]);
                bfr.push([r[2].clone(), r[3].clone()]);
            }
            for (i, a) in afr.iter().enumerate() {
                for (j, b) in bfr.iter().enumerate() {
                    let f = (i * fnn + j) * 4;
                    let out = self.asm(
                        &format!(
                            "mma.sync.aligned.m16n8k16.row.col.f32.{dtype_name}.{dtype_name}.f32 {{$0,$1,$2,$3}}, {{$4,$5,$6,$7}}, {{$8,$9}}, {{$10,$11,$12,$13}};"
                        ),
                        "=f,=f,=f,=f,r,r,r,r,r,r,f,f,f,f",
                        &[&a[0], &a[1], &a[2], &a[3], &b[0], &b[1], &c[f], &c[f + 1], &c[f + 2], &c[f + 3]],
                        4,
                        "f32",
                        false,
                    );
                    c[f..f + 4].clone_from_slice(&out);
                }
            }
        }
        Ok(())
    }

    fn fma_dot(
        &mut self,
        plan: &crate::sched::DotPlan,
        od: &Dist,
        c: Vec<V>,
        tiles: &[Option<(SmemTile, V, bool)>],
    ) -> R<Vec<V>> {
        let (ta, base_a, tra) = tiles[0].clone().ok_or_else(|| err("A operand"))?;
        let (tb, base_b, trb) = tiles[1].clone().ok_or_else(|| err("B operand"))?;
        let (br, bc) = self.base(od);
        let lo = self.c32(0);
        let hi = self.c32(plan.k as i64);
        let one = self.c32(1);
        let names: Vec<String> = (0..c.len()).map(|_| self.e.fresh()).collect();
        let res = self.e.fresh();
        let kv = self.e.fresh();
        let inits: Vec<String> = names
            .iter()
            .zip(&c)
            .map(|(n, v)| format!("{n} = {}", v.n))
            .collect();
        let tys = vec!["f32"; c.len()].join(", ");
        self.e.line(&format!(
            "{res}:{} = scf.for {kv} = {} to {} step {} iter_args({}) -> ({tys}) : i32 {{",
            c.len(),
            lo.n,
            hi.n,
            one.n,
            inits.join(", ")
        ));
        self.e.bodies.push(String::new());
        let k = V { n: kv, t: "i32" };
        let mut rows: Vec<usize> = od.regs.iter().map(|r| r[0]).collect();
        rows.sort();
        rows.dedup();
        let mut cols: Vec<usize> = od.regs.iter().map(|r| r[1]).collect();
        cols.sort();
        cols.dedup();
        let mut av = HashMap::new();
        for &r in &rows {
            let row = self.addc(&br, r as i64);
            let (sr, sc) = if tra { (&k, &row) } else { (&row, &k) };
            let (sr, sc) = (sr.clone(), sc.clone());
            let off = self.tile_offset(&ta, &base_a, &sr, &sc);
            let x = self.ld_shared(&off, ty(ta.dtype));
            av.insert(r, self.widen(&x));
        }
        let mut bv = HashMap::new();
        for &cc in &cols {
            let col = self.addc(&bc, cc as i64);
            let (sr, sc) = if trb { (&col, &k) } else { (&k, &col) };
            let (sr, sc) = (sr.clone(), sc.clone());
            let off = self.tile_offset(&tb, &base_b, &sr, &sc);
            let x = self.ld_shared(&off, ty(tb.dtype));
            bv.insert(cc, self.widen(&x));
        }
        let mut outs = Vec::new();
        for (i, r) in od.regs.iter().enumerate() {
            let accv = V {
                n: names[i].clone(),
                t: "f32",
            };
            let a = av[&r[0]].clone();
            let b = bv[&r[1]].clone();
            let f = self.e.op(
                "f32",
                &format!(
                    "llvm.intr.fma({}, {}, {}) : (f32, f32, f32) -> f32",
                    a.n, b.n, accv.n
                ),
            );
            outs.push(f);
        }
        let ys: Vec<&str> = outs.iter().map(|v| v.n.as_str()).collect();
        self.e.line(&format!("scf.yield {} : {tys}", ys.join(", ")));
        self.close_region();
        Ok((0..c.len())
            .map(|i| V {
                n: format!("{res}#{i}"),
                t: "f32",
            })
            .collect())
    }

    fn close_region(&mut self) {
        let inner = self.e.bodies.pop().unwrap_or_default();
        let b = self.e.bodies.last_mut().expect("a body is open");
        for l in inner.lines() {
            b.push_str("  ");
            b.push_str(l);
            b.push('\n');
        }
        b.push_str("    }\n");
    }

    // ---- reductions -----------------------------------------------------------------------

    fn combine(&mut self, op: ReduceOp, a: &V, b: &V) -> V {
        match (op, a.t) {
            (ReduceOp::Sum, "f32") => self.bin("addf", a, b),
            (ReduceOp::Max, "f32") => self.bin("maximumf", a, b),
            (ReduceOp::Sum, _) => self.bin("addi", a, b),
            (ReduceOp::Max, _) => self.bin("maxsi", a, b),
        }
    }

    fn reduce(&mut self, inst: &Inst) -> R<Vec<V>> {
        let Op::Reduce { op, x, axis } = &inst.op else {
            return Err(err("not a reduce"));
        };
        let r = inst.results[0];
        let Layout::Dist(d) = self.s.layout(*x).clone() else {
            return self.get(*x);
        };
        let src = self.get(*x)?;
        let dt = self.dtype(r);
        let src: Vec<V> = src
            .iter()
            .map(|v| {
                if dt.is_float() {
                    self.widen(v)
                } else {
                    v.clone()
                }
            })
            .collect();
        let p = d.project(*axis);
        // In-thread: fold registers that land on the same projected coordinate.
        let mut acc: Vec<Option<V>> = vec![None; p.regs.len()];
        for (i, reg) in d.regs.iter().enumerate() {
            let mut pc = *reg;
            pc[*axis] = 0;
            let j = p.regs.iter().position(|q| *q == pc).unwrap_or(0);
            acc[j] = Some(match &acc[j] {
                None => src[i].clone(),
                Some(a) => self.combine(*op, a, &src[i]),
            });
        }
        let mut acc: Vec<V> = acc.into_iter().flatten().collect();
        let plan = self
            .s
            .reduces
            .get(&r)
            .cloned()
            .unwrap_or(crate::sched::ReducePlan {
                shuffles: vec![],
                warp_bits: vec![],
            });
        for b in &plan.shuffles {
            let m = self.c32(1 << b);
            for a in acc.iter_mut() {
                let w = self.as_b32(a);
                let o = self.asm(
                    "shfl.sync.bfly.b32 $0, $1, $2, 0x1f, 0xffffffff;",
                    "=r,r,r",
                    &[&w, &m],
                    1,
                    "i32",
                    true,
                );
                let o = self.of_b32(&o[0], a.t);
                *a = self.combine(*op, a, &o);
            }
        }
        if !plan.warp_bits.is_empty() {
            let n = acc.len();
            let warps = 1usize << d.warp.len();
            if warps * 32 * n * 4 > self.s.scratch_bytes {
                return Err(err("a cross-warp reduction exceeds the scheduled scratch"));
            }
            self.barrier();
            let so = self.c32(self.s.scratch_offset as i64);
            let tid = self.tid.clone();
            let stride = self.c32((n * 4) as i64);
            let mine = self.mul(&tid, &stride);
            let mine = self.add(&mine, &so);
            for (j, a) in acc.iter().enumerate() {
                let off = self.addc(&mine, (j * 4) as i64);
                let w = self.as_b32(a);
                self.st_shared(&off, &w);
            }
            self.barrier();
            let axis_mask: usize = plan.warp_bits.iter().map(|b| 1 << b).sum();
            let keep = self.c32(!(axis_mask as i64) & (warps as i64 - 1));
            let warp = self.warp.clone();
            let wbase = self.and(&warp, &keep);
            let lane = self.lane.clone();
            let t = acc[0].t;
            let mut out: Vec<Option<V>> = vec![None; n];
            for combo in 0..(1usize << plan.warp_bits.len()) {
                let mut w = 0usize;
                for (i, b) in plan.warp_bits.iter().enumerate() {
                    if combo >> i & 1 == 1 {
                        w |= 1 << b;
                    }
                }
                let wv = self.addc(&wbase, w as i64);
                let c32 = self.c32(32);
                let th = self.mul(&wv, &c32);
                let th = self.add(&th, &lane);
                let o = self.mul(&th, &stride);
                let o = self.add(&o, &so);
                for (j, slot) in out.iter_mut().enumerate() {
                    let off = self.addc(&o, (j * 4) as i64);
                    let word = self.ld_shared(&off, "i32");
                    let v = self.of_b32(&word, t);
                    *slot = Some(match slot.take() {
                        None => v,
                        Some(a) => self.combine(*op, &a, &v),
                    });
                }
            }
            acc = out.into_iter().flatten().collect();
        }
        let acc: Vec<V> = acc
            .iter()
            .map(|v| {
                if dt.is_float() {
                    self.narrow(v, dt)
                } else {
                    v.clone()
                }
            })
            .collect();
        // The result's registers are the projection's, possibly seen under a 1-D shape.
        Ok(match self.s.layout(r) {
            Layout::Uniform => vec![acc[0].clone()],
            _ => acc,
        })
    }

    // ---- instructions ---------------------------------------------------------------------

    fn want(&self, v: ValueId) -> Layout {
        self.s.layout(v).clone()
    }

    fn n_regs(&self, v: ValueId) -> usize {
        match self.s.layout(v) {
            Layout::Dist(d) => d.regs.len(),
            _ => 1,
        }
    }

    fn operands_in(&mut self, ops: &[ValueId], want: &Layout) -> R<Vec<Vec<V>>> {
        let n = match want {
            Layout::Dist(d) => d.regs.len(),
            _ => 1,
        };
        ops.iter()
            .map(|o| {
                let v = self.regs_in(*o, want)?;
                Ok(if v.len() == 1 && n > 1 {
                    vec![v[0].clone(); n]
                } else {
                    v
                })
            })
            .collect()
    }

    fn inst(&mut self, inst: &Inst) -> R<()> {
        let res = inst.results.first().copied();
        let d = res.map(|r| self.dtype(r)).unwrap_or(DType::F32);
        let vals: Vec<V> = match &inst.op {
            Op::Const(l) => vec![self.constant(*l, d)],
            Op::ProgramId(a) | Op::NumPrograms(a) => {
                let axis = ["x", "y", "z"][*a];
                let reg = if matches!(inst.op, Op::ProgramId(_)) {
                    format!("ctaid.{axis}")
                } else {
                    format!("nctaid.{axis}")
                };
                vec![self.e.pre("i32", format!("nvvm.read.ptx.sreg.{reg} : i32"))]
            }
            Op::DimSize { tensor, axis } => vec![self.dim(*tensor, *axis)],
            Op::StrideSize { .. } => return Err(err("strided tensors are not lowered")),
            Op::ScalarParam(p) => vec![self.args[*p].clone()],
            Op::Iota(_) => {
                let r = res.ok_or_else(|| err("iota"))?;
                match self.want(r) {
                    Layout::Dist(dd) => {
                        let (br, bc) = self.base(&dd);
                        let cols = self.c32(dd.shape[1] as i64);
                        let l = self.mul(&br, &cols);
                        let l = self.add(&l, &bc);
                        dd.regs
                            .iter()
                            .map(|c| self.addc(&l, (c[0] * dd.shape[1] + c[1]) as i64))
                            .collect()
                    }
                    _ => vec![self.c32(0)],
                }
            }
            Op::Splat { x, .. } => {
                let v = self.get(*x)?[0].clone();
                vec![v; self.n_regs(res.unwrap_or(*x))]
            }
            Op::ExpandDims { x, .. } => {
                let r = res.ok_or_else(|| err("expand"))?;
                match (self.s.layout(*x).clone(), self.want(r)) {
                    (Layout::Dist(a), Layout::Dist(b)) => {
                        let vals = self.get(*x)?;
                        let a2 = a.reshaped(b.shape);
                        if a2.same_placement(&b) {
                            vals
                        } else {
                            self.convert(&vals, &a2, &b)?
                        }
                    }
                    _ => self.get(*x)?,
                }
            }
            Op::Trans { x } => match self.s.layout(*x) {
                Layout::Shared => vec![],
                _ => self.get(*x)?,
            },
            Op::Broadcast { x, .. } => {
                let r = res.ok_or_else(|| err("broadcast"))?;
                match (self.s.layout(*x).clone(), self.want(r)) {
                    (Layout::Dist(src), Layout::Dist(out)) => {
                        let axis = if src.shape[0] == 1 { 0 } else { 1 };
                        let proj = out.project(axis);
                        let vals = self.regs_in(*x, &Layout::Dist(proj.clone()))?;
                        out.regs
                            .iter()
                            .map(|c| {
                                let mut p = *c;
                                p[axis] = 0;
                                let i = proj.regs.iter().position(|q| *q == p).unwrap_or(0);
                                vals[i].clone()
                            })
                            .collect()
                    }
                    (_, Layout::Dist(out)) => vec![self.get(*x)?[0].clone(); out.regs.len()],
                    _ => self.get(*x)?,
                }
            }
            Op::Unary { op, x } => {
                let w = self.want(res.unwrap_or(*x));
                let xs = self.operands_in(&[*x], &w)?;
                xs[0].iter().map(|v| self.unary(*op, v, d)).collect()
            }
            Op::Binary { op, a, b } => {
                let w = self.want(res.unwrap_or(*a));
                let xs = self.operands_in(&[*a, *b], &w)?;
                (0..xs[0].len())
                    .map(|i| self.binary(*op, &xs[0][i], &xs[1][i], d))
                    .collect()
            }
            Op::Cmp { op, a, b } => {
                let ad = self.dtype(*a);
                let w = self.want(res.unwrap_or(*a));
                let xs = self.operands_in(&[*a, *b], &w)?;
                (0..xs[0].len())
                    .map(|i| self.cmp(*op, &xs[0][i], &xs[1][i], ad))
                    .collect()
            }
            Op::Select { cond, a, b } => {
                let w = self.want(res.unwrap_or(*a));
                let xs = self.operands_in(&[*cond, *a, *b], &w)?;
                (0..xs[0].len())
                    .map(|i| self.select(&xs[0][i], &xs[1][i], &xs[2][i]))
                    .collect()
            }
            Op::Cast { x, to } => {
                let from = self.dtype(*x);
                let w = self.want(res.unwrap_or(*x));
                let xs = self.operands_in(&[*x], &w)?;
                xs[0].iter().map(|v| self.cast(v, from, *to)).collect()
            }
            Op::Reduce { .. } => self.reduce(inst)?,
            Op::Dot { .. } => self.dot(inst)?,
            Op::Load {
                tensor,
                starts,
                extents,
                mask,
                fill,
            } => {
                let r = res.ok_or_else(|| err("load"))?;
                if let Some(st) = self.s.staged.get(&r).cloned() {
                    if st.pipelined.is_none() {
                        // In place: nobody may still read the slot, then copy and wait.
                        let base = self.c32(self.s.buffers[st.buffer].offset as i64);
                        self.barrier();
                        self.copy_in(r, &base)?;
                        if st.copy == Copy::Async {
                            self.commit();
                            self.wait(0);
                        }
                        self.barrier();
                        self.smem_at.insert(r, base);
                    }
                }
                let staged_at = self
                    .s
                    .staged
                    .get(&r)
                    .map(|st| st.tile)
                    .zip(self.smem_at.get(&r).cloned());
                match (self.want(r), staged_at) {
                    (Layout::Dist(dd), Some((tile, base))) => self.read_tile(&dd, &tile, &base),
                    (Layout::Dist(dd), None) => {
                        self.load_regs(r, &dd, *tensor, starts, extents, *mask, *fill)?
                    }
                    // One element, read by every thread.
                    (Layout::Uniform, _) => self.load_regs(
                        r,
                        &Dist::blocked(1, 1, 1),
                        *tensor,
                        starts,
                        extents,
                        *mask,
                        *fill,
                    )?,
                    _ => vec![],
                }
            }
            Op::Store {
                tensor,
                starts,
                extents,
                value,
                mask,
            } => {
                match self.s.layout(*value).clone() {
                    Layout::Dist(dd) => {
                        let vals = self.get(*value)?;
                        let m = match mask {
                            Some(m) => Some(self.regs_in(*m, &Layout::Dist(dd.clone()))?),
                            None => None,
                        };
                        let owner = self.owner(&dd);
                        let guarded = |me: &mut Self| -> R<Vec<V>> {
                            let acc = me.accesses(*tensor, starts, extents, &dd, m.as_deref())?;
                            for (i, (ok, p)) in acc.into_iter().enumerate() {
                                let c = me.and(&ok, &owner);
                                me.open_if(&c);
                                me.e.line(&format!(
                                    "llvm.store {}, {} : {}, !llvm.ptr<1>",
                                    vals[i].n, p.n, vals[i].t
                                ));
                                me.close_if();
                            }
                            Ok(vec![])
                        };
                        if mask.is_some() || dd.regs.len() < 2 {
                            guarded(self)?;
                        } else {
                            let dt = self.dtype(*value);
                            let it = self.interior(*tensor, starts, extents, &dd, dt)?;
                            let cond = it.cond.clone();
                            let fast = |me: &mut Self| -> R<Vec<V>> {
                                me.open_if(&owner);
                                let ptrs = me.interior_ptrs(*tensor, &it, &dd);
                                let step = if it.paired { 2 } else { 1 };
                                for i in (0..ptrs.len()).step_by(step) {
                                    let x = if it.paired {
                                        me.pack2(&vals[i], &vals[i + 1])
                                    } else {
                                        vals[i].clone()
                                    };
                                    me.e.line(&format!(
                                        "llvm.store {}, {} : {}, !llvm.ptr<1>",
                                        x.n, ptrs[i].n, x.t
                                    ));
                                }
                                me.close_if();
                                Ok(vec![])
                            };
                            self.if_values(&cond, fast, guarded)?;
                        }
                    }
                    _ => {
                        let v = self.get(*value)?[0].clone();
                        let one = Dist::blocked(1, 1, 1);
                        let m = match mask {
                            Some(m) => Some(vec![self.get(*m)?[0].clone()]),
                            None => None,
                        };
                        let acc = self.accesses(*tensor, starts, extents, &one, m.as_deref())?;
                        // One thread writes a uniform value.
                        let z = self.c32(0);
                        let tid = self.tid.clone();
                        let first = self.icmp("eq", &tid, &z);
                        for (ok, p) in acc {
                            let c = self.and(&ok, &first);
                            self.open_if(&c);
                            self.e.line(&format!(
                                "llvm.store {}, {} : {}, !llvm.ptr<1>",
                                v.n, p.n, v.t
                            ));
                            self.close_if();
                        }
                    }
                }
                vec![]
            }
            Op::For { .. } => {
                self.for_loop(inst)?;
                return Ok(());
            }
            Op::Yield(_) => return Ok(()),
        };
        if let Some(r) = res {
            self.env.insert(r, vals);
        }
        Ok(())
    }

    fn block(&mut self, b: &Block) -> R<()> {
        for inst in &b.insts {
            self.inst(inst)?;
        }
        Ok(())
    }

    /// Lowers the scalar ops of `body` that the starts of `loads` depend on, with the induction
    /// variable bound to `iv`; returns nothing, leaving the starts in `env`.
    fn lower_start_slice(&mut self, body: &Block, loads: &[ValueId], iv: &V) -> R<()> {
        let mut need: std::collections::HashSet<ValueId> = std::collections::HashSet::new();
        let mut stack: Vec<ValueId> = Vec::new();
        for l in loads {
            if let Some(Op::Load { starts, .. }) = find_def(body, *l) {
                stack.extend(starts);
            }
        }
        while let Some(x) = stack.pop() {
            if need.insert(x) {
                if let Some(op) = find_local(body, x) {
                    stack.extend(op.operands());
                }
            }
        }
        self.env.insert(body.args[0], vec![iv.clone()]);
        for inst in &body.insts {
            if inst.results.iter().any(|r| need.contains(r)) {
                self.inst(inst)?;
            }
        }
        Ok(())
    }

    fn for_loop(&mut self, inst: &Inst) -> R<()> {
        let Op::For {
            lo,
            hi,
            step,
            inits,
            body,
        } = &inst.op
        else {
            return Err(err("not a loop"));
        };
        let lo = self.get(*lo)?[0].clone();
        let hi = self.get(*hi)?[0].clone();
        let step = self.get(*step)?[0].clone();
        let iv_id = body.args[0];
        let pipe = self.s.pipelines.get(&iv_id).cloned();
        let slot_bytes = |me: &Self, v: ValueId| me.s.staged[&v].tile.bytes() as i64;
        // Prologue: the first stages - 1 iterations' copies.
        if let Some(p) = &pipe {
            self.barrier();
            for s in 0..p.stages - 1 {
                let sv = self.c32(s as i64);
                let off = self.mul(&sv, &step);
                let ivs = self.add(&lo, &off);
                let inside = self.icmp("slt", &ivs, &hi);
                self.open_if(&inside);
                let saved = self.env.clone();
                self.lower_start_slice(body, &p.loads, &ivs)?;
                for &l in &p.loads {
                    let st = &self.s.staged[&l];
                    let b =
                        self.s.buffers[st.buffer].offset as i64 + s as i64 * slot_bytes(self, l);
                    let base = self.c32(b);
                    self.copy_in(l, &base)?;
                }
                self.env = saved;
                self.close_if();
                self.commit();
            }
        }
        // Carried registers, in the body arguments' layouts.
        let mut carried: Vec<(ValueId, usize)> = Vec::new();
        let mut init_vals = Vec::new();
        for (i, init) in inits.iter().enumerate() {
            let arg = body.args[i + 1];
            let want = self.want(arg);
            let v = self.regs_in(*init, &want)?;
            carried.push((arg, v.len()));
            init_vals.extend(v);
        }
        let res = self.e.fresh();
        let ivn = self.e.fresh();
        let names: Vec<String> = init_vals.iter().map(|_| self.e.fresh()).collect();
        let tys: Vec<&str> = init_vals.iter().map(|v| v.t).collect();
        let head = if init_vals.is_empty() {
            format!(
                "scf.for {ivn} = {} to {} step {} : i32 {{",
                lo.n, hi.n, step.n
            )
        } else {
            let its: Vec<String> = names
                .iter()
                .zip(&init_vals)
                .map(|(n, v)| format!("{n} = {}", v.n))
                .collect();
            format!(
                "{res}:{} = scf.for {ivn} = {} to {} step {} iter_args({}) -> ({}) : i32 {{",
                init_vals.len(),
                lo.n,
                hi.n,
                step.n,
                its.join(", "),
                tys.join(", ")
            )
        };
        self.e.line(&head);
        self.e.bodies.push(String::new());
        let iv = V { n: ivn, t: "i32" };
        self.env.insert(iv_id, vec![iv.clone()]);
        let mut k = 0;
        for (arg, n) in &carried {
            let vs: Vec<V> = (0..*n)
                .map(|j| V {
                    n: names[k + j].clone(),
                    t: tys[k + j],
                })
                .collect();
            k += n;
            self.env.insert(*arg, vs);
        }
        if let Some(p) = &pipe {
            // Wait for this iteration's slot, then refill the slot the previous one read.
            self.wait(p.stages - 2);
            self.barrier();
            let d = self.bin("subi", &iv, &lo);
            let j = self.bin("divsi", &d, &step);
            let sv = self.c32(p.stages as i64);
            let rd = self.bin("remsi", &j, &sv);
            let wr = self.addc(&rd, p.stages as i64 - 1);
            let wr = self.bin("remsi", &wr, &sv);
            let ahead = self.c32(p.stages as i64 - 1);
            let off = self.mul(&ahead, &step);
            let ivn2 = self.add(&iv, &off);
            let inside = self.icmp("slt", &ivn2, &hi);
            self.open_if(&inside);
            let saved = self.env.clone();
            self.lower_start_slice(body, &p.loads, &ivn2)?;
            for &l in &p.loads {
                let st = &self.s.staged[&l];
                let b0 = self.c32(self.s.buffers[st.buffer].offset as i64);
                let sb = self.c32(slot_bytes(self, l));
                let o = self.mul(&wr, &sb);
                let base = self.add(&b0, &o);
                self.copy_in(l, &base)?;
            }
            self.env = saved;
            self.env.insert(iv_id, vec![iv.clone()]);
            self.close_if();
            self.commit();
            for &l in &p.loads {
                let st = &self.s.staged[&l];
                let b0 = self.c32(self.s.buffers[st.buffer].offset as i64);
                let sb = self.c32(slot_bytes(self, l));
                let o = self.mul(&rd, &sb);
                let base = self.add(&b0, &o);
                self.smem_at.insert(l, base);
            }
        }
        self.block(body)?;
        let mut ys = Vec::new();
        if let Some(Op::Yield(yv)) = body.insts.last().map(|i| &i.op) {
            for (i, y) in yv.iter().enumerate() {
                let want = self.want(body.args[i + 1]);
                ys.extend(self.regs_in(*y, &want)?);
            }
        }
        self.yield_values(&ys);
        self.close_region();
        if pipe.is_some() {
            self.wait(0);
            self.barrier();
        }
        let mut k = 0;
        for (i, (_, n)) in carried.iter().enumerate() {
            let vs: Vec<V> = (0..*n)
                .map(|j| V {
                    n: format!("{res}#{}", k + j),
                    t: tys[k + j],
                })
                .collect();
            k += n;
            self.env.insert(inst.results[i], vs);
        }
        Ok(())
    }
}

fn find_def(b: &Block, v: ValueId) -> Option<Op> {
    for inst in &b.insts {
        if inst.results.contains(&v) {
            return Some(inst.op.clone());
        }
        if let Op::For { body, .. } = &inst.op {
            if let Some(op) = find_def(body, v) {
                return Some(op);
            }
        }
    }
    None
}

fn find_local(b: &Block, v: ValueId) -> Option<&Op> {
    b.insts
        .iter()
        .find(|i| i.results.contains(&v))
        .map(|i| &i.op)
}

/// The MLIR text of a scheduled kernel.
pub fn build_text(k: &Kernel, s: &Schedule) -> R<String> {
    let symbols = shape_symbols(k);
    let mut params = Vec::new();
    let mut args = Vec::new();
    for (i, p) in k.params.iter().enumerate() {
        let t = match &p.kind {
            ParamKind::Tensor { .. } => "!llvm.ptr<1>",
            ParamKind::Scalar { dtype } => ty(*dtype),
        };
        params.push(format!("%arg{i}: {t}"));
        args.push(V {
            n: format!("%arg{i}"),
            t,
        });
    }
    for (j, _) in symbols.iter().enumerate() {
        let i = k.params.len() + j;
        params.push(format!("%arg{i}: i32"));
        args.push(V {
            n: format!("%arg{i}"),
            t: "i32",
        });
    }
    let mut e = Emitter {
        prelude: String::new(),
        bodies: vec![String::new()],
        next: 0,
        cache: HashMap::new(),
        hoist: false,
    };
    let tid = e.pre("i32", "nvvm.read.ptx.sreg.tid.x : i32".into());
    let c31 = e.ci32_pre(31);
    let c5 = e.ci32_pre(5);
    let lane = e.pre("i32", format!("arith.andi {}, {} : i32", tid.n, c31.n));
    let warp = e.pre("i32", format!("arith.shrui {}, {} : i32", tid.n, c5.n));
    let smem = e.pre(
        "!llvm.ptr<3>",
        "llvm.mlir.addressof @tessel_smem : !llvm.ptr<3>".into(),
    );
    let smem32 = e.pre(
        "i32",
        format!("llvm.ptrtoint {} : !llvm.ptr<3> to i32", smem.n),
    );
    let mut l = Lower {
        k,
        s,
        e,
        env: HashMap::new(),
        smem_at: HashMap::new(),
        args,
        symbols,
        tid,
        lane,
        warp,
        smem,
        smem32,
        strides: HashMap::new(),
    };
    l.block(&k.body)?;
    let body = l.e.bodies.pop().unwrap_or_default();
    let mut out = String::new();
    out.push_str("module {\n");
    if s.shared_bytes > 0 {
        out.push_str("  llvm.mlir.global external @tessel_smem() {addr_space = 3 : i32, alignment = 16 : i64} : !llvm.array<0 x i8>\n");
    }
    let occupancy = s
        .min_blocks_per_sm
        .map(|n| format!(", nvvm.minctasm = {n} : i32"))
        .unwrap_or_default();
    let _ = writeln!(
        out,
        "  llvm.func @{}({}) attributes {{nvvm.kernel, nvvm.maxntid = array<i32: {}, 1, 1>{occupancy}}} {{",
        k.name,
        params.join(", "),
        s.threads
    );
    if s.shared_bytes > 0 {
        out.push_str(&l.e.prelude);
    } else {
        // No shared memory: drop the prelude lines that name it.
        for line in l.e.prelude.lines() {
            if !line.contains("tessel_smem")
                && !line.contains(&format!("{} : !llvm.ptr<3>", l.smem.n))
            {
                out.push_str(line);
                out.push('\n');
            }
        }
    }
    out.push_str(&body);
    out.push_str("    llvm.return\n  }\n}\n");
    Ok(out)
}
