//! The typed MLIR emitter: the one place that spells MLIR ops.
//!
//! The rest of `lower/` thinks in values and types: a [`Value`] carries its MLIR type and each
//! method derives its op's types from its operands, so no caller can misspell an op or disagree
//! with an operand about its type. The output is MLIR text, which melior parses and the driver
//! keeps for `--emit mlir`.
//!
//! Two placements: ops go into the region being built, except constants, special registers and
//! whatever is built while hoisting (`Lower::hoisted`), which go once into the function's entry
//! ("prelude"), deduplicated by their text. Index math that depends only on the thread is hoisted
//! this way, so a loop body recomputes none of it.

mod kinds;

use std::collections::HashMap;

pub(super) use kinds::{Arith, Cast, FCmp, ICmp, Intrinsic, Sreg, Ty, Value};

use super::ptx_templates::Template;
use super::{err, R};

/// A region built by [`Emitter::open_region`] … [`Emitter::close_region`], ready to become the
/// body of an `scf` op.
pub(super) struct Region {
    text: String,
    yields: Vec<Ty>,
}

/// The values an `scf.for` defines for its body: the induction variable and one iteration
/// argument per initial value.
pub(super) struct LoopVars {
    result: String,
    pub iv: Value,
    pub args: Vec<Value>,
}

/// What the kernel's function op needs besides its body.
pub(super) struct KernelDecl<'a> {
    pub name: &'a str,
    /// The dynamic shared-memory array, if the kernel uses shared memory.
    pub shared: Option<&'a str>,
    /// Its alignment in bytes.
    pub shared_align: usize,
    pub max_threads: u32,
    pub min_blocks_per_sm: Option<u32>,
}

/// Builds one kernel function as MLIR text.
pub(super) struct Emitter {
    params: Vec<Ty>,
    /// Thread-invariant values, placed at function entry.
    prelude: String,
    /// The regions being built, innermost last; the first is the function body.
    bodies: Vec<String>,
    next: usize,
    /// Prelude values by the text that computes them.
    cache: HashMap<String, String>,
    hoist: bool,
}

impl Emitter {
    /// An emitter for a function whose parameters have types `params`.
    pub fn new(params: Vec<Ty>) -> Self {
        Self {
            params,
            prelude: String::new(),
            bodies: vec![String::new()],
            next: 0,
            cache: HashMap::new(),
            hoist: false,
        }
    }

    /// Function parameter `i`.
    pub fn param(&self, i: usize) -> Value {
        Value {
            name: format!("%arg{i}"),
            ty: self.params[i],
        }
    }

    fn fresh(&mut self) -> String {
        self.next += 1;
        format!("%v{}", self.next)
    }

    fn body(&mut self) -> &mut String {
        self.bodies
            .last_mut()
            .expect("the function body is never closed")
    }

    /// An op without results, in the current region (never hoisted: it has effects).
    fn line(&mut self, s: &str) {
        let b = self.body();
        b.push_str("    ");
        b.push_str(s);
        b.push('\n');
    }

    /// `name = <rhs>` in the current region, or in the prelude while hoisting; returns the name.
    fn assign(&mut self, rhs: String) -> String {
        if self.hoist {
            return self.pre_name(rhs);
        }
        let name = self.fresh();
        self.line(&format!("{name} = {rhs}"));
        name
    }

    fn op(&mut self, ty: Ty, rhs: String) -> Value {
        Value {
            name: self.assign(rhs),
            ty,
        }
    }

    /// A prelude value, computed once per distinct `rhs`.
    fn pre_name(&mut self, rhs: String) -> String {
        if let Some(name) = self.cache.get(&rhs) {
            return name.clone();
        }
        let name = self.fresh();
        self.prelude.push_str(&format!("    {name} = {rhs}\n"));
        self.cache.insert(rhs, name.clone());
        name
    }

    fn pre(&mut self, ty: Ty, rhs: String) -> Value {
        Value {
            name: self.pre_name(rhs),
            ty,
        }
    }

    /// Sets whether ops with results go to the prelude; returns the previous setting. The
    /// lowering wraps this in a scope (`Lower::hoisted`) that restores it.
    pub fn set_hoist(&mut self, on: bool) -> bool {
        std::mem::replace(&mut self.hoist, on)
    }

    // ---- constants (always in the prelude) --------------------------------------------------

    pub fn int(&mut self, c: i64, ty: Ty) -> Value {
        self.pre(ty, format!("arith.constant {c} : {ty}"))
    }

    pub fn i32(&mut self, c: i64) -> Value {
        self.int(c, Ty::I32)
    }

    pub fn i64(&mut self, c: i64) -> Value {
        self.int(c, Ty::I64)
    }

    pub fn bool(&mut self, b: bool) -> Value {
        self.pre(Ty::I1, format!("arith.constant {b}"))
    }

    /// A float constant of type `ty` as its exact bit pattern (MLIR's hex float form), rounded to
    /// nearest as the interpreter rounds.
    pub fn float(&mut self, v: f64, ty: Ty) -> Value {
        let bits = match ty {
            Ty::Bf16 => format!("0x{:04X}", half::bf16::from_f64(v).to_bits()),
            Ty::F16 => format!("0x{:04X}", half::f16::from_f64(v).to_bits()),
            _ => format!("0x{:08X}", (v as f32).to_bits()),
        };
        self.pre(ty, format!("arith.constant {bits} : {ty}"))
    }

    /// A special register, read once at entry.
    pub fn sreg(&mut self, r: Sreg) -> Value {
        let axis = |a: usize| ["x", "y", "z"][a];
        let name = match r {
            Sreg::Tid => "tid.x".to_string(),
            Sreg::CtaId(a) => format!("ctaid.{}", axis(a)),
            Sreg::NCtaId(a) => format!("nctaid.{}", axis(a)),
        };
        self.pre(Ty::I32, format!("nvvm.read.ptx.sreg.{name} : i32"))
    }

    /// The address of global `name` (of pointer type `ty`), taken once at entry.
    pub fn addressof(&mut self, name: &str, ty: Ty) -> Value {
        self.pre(ty, format!("llvm.mlir.addressof @{name} : {ty}"))
    }

    // ---- arithmetic ---------------------------------------------------------------------------

    pub fn arith(&mut self, op: Arith, a: &Value, b: &Value) -> Value {
        let t = a.ty;
        self.op(t, format!("{} {}, {} : {t}", op.name(), a.name, b.name))
    }

    pub fn addi(&mut self, a: &Value, b: &Value) -> Value {
        self.arith(Arith::AddI, a, b)
    }

    pub fn muli(&mut self, a: &Value, b: &Value) -> Value {
        self.arith(Arith::MulI, a, b)
    }

    pub fn andi(&mut self, a: &Value, b: &Value) -> Value {
        self.arith(Arith::AndI, a, b)
    }

    /// `a + c` for a constant `c` of `a`'s integer type (`a` itself when `c` is 0).
    pub fn add_const(&mut self, a: &Value, c: i64) -> Value {
        if c == 0 {
            return a.clone();
        }
        let cv = if a.ty == Ty::I64 {
            self.i64(c)
        } else {
            self.i32(c)
        };
        self.addi(a, &cv)
    }

    pub fn cmpi(&mut self, p: ICmp, a: &Value, b: &Value) -> Value {
        let p = match p {
            ICmp::Eq => "eq",
            ICmp::Ne => "ne",
            ICmp::Slt => "slt",
            ICmp::Sle => "sle",
            ICmp::Sgt => "sgt",
            ICmp::Sge => "sge",
        };
        let rhs = format!("arith.cmpi {p}, {}, {} : {}", a.name, b.name, a.ty);
        self.op(Ty::I1, rhs)
    }

    pub fn cmpf(&mut self, p: FCmp, a: &Value, b: &Value) -> Value {
        let p = match p {
            FCmp::Oeq => "oeq",
            FCmp::Une => "une",
            FCmp::Olt => "olt",
            FCmp::Ole => "ole",
            FCmp::Ogt => "ogt",
            FCmp::Oge => "oge",
        };
        let rhs = format!("arith.cmpf {p}, {}, {} : {}", a.name, b.name, a.ty);
        self.op(Ty::I1, rhs)
    }

    pub fn select(&mut self, c: &Value, a: &Value, b: &Value) -> Value {
        let t = a.ty;
        let rhs = format!("arith.select {}, {}, {} : {t}", c.name, a.name, b.name);
        self.op(t, rhs)
    }

    pub fn negf(&mut self, x: &Value) -> Value {
        self.op(x.ty, format!("arith.negf {} : {}", x.name, x.ty))
    }

    pub fn cast(&mut self, op: Cast, x: &Value, to: Ty) -> Value {
        let rhs = format!("{} {} : {} to {to}", op.name(), x.name, x.ty);
        self.op(to, rhs)
    }

    pub fn intrinsic(&mut self, i: Intrinsic, x: &Value) -> Value {
        let name = match i {
            Intrinsic::Exp2 => "exp2",
            Intrinsic::Sqrt => "sqrt",
            Intrinsic::Fabs => "fabs",
        };
        let t = x.ty;
        self.op(t, format!("llvm.intr.{name}({}) : ({t}) -> {t}", x.name))
    }

    /// `a·b + c`, rounded once.
    pub fn fma(&mut self, a: &Value, b: &Value, c: &Value) -> Value {
        let rhs = format!(
            "llvm.intr.fma({}, {}, {}) : ({}, {}, {}) -> {}",
            a.name, b.name, c.name, a.ty, b.ty, c.ty, c.ty
        );
        self.op(c.ty, rhs)
    }

    /// log2 of an f32 by the hardware's `lg2.approx` (NVPTX has no lowering for `llvm.log2.f32`).
    pub fn lg2_approx(&mut self, x: &Value) -> Value {
        let rhs = format!(
            "llvm.call_intrinsic \"llvm.nvvm.lg2.approx.f\"({}) : (f32) -> f32",
            x.name
        );
        self.op(Ty::F32, rhs)
    }

    // ---- memory and vectors -------------------------------------------------------------------

    /// `&base[index]` for elements of type `elem`, in `base`'s address space.
    pub fn gep(&mut self, base: &Value, index: &Value, elem: Ty) -> Value {
        let p = base.ty;
        let rhs = format!(
            "llvm.getelementptr {}[{}] : ({p}, {}) -> {p}, {elem}",
            base.name, index.name, index.ty
        );
        self.op(p, rhs)
    }

    pub fn ptrtoint(&mut self, p: &Value, to: Ty) -> Value {
        let rhs = format!("llvm.ptrtoint {} : {} to {to}", p.name, p.ty);
        self.op(to, rhs)
    }

    pub fn load(&mut self, p: &Value, ty: Ty) -> Value {
        self.op(ty, format!("llvm.load {} : {} -> {ty}", p.name, p.ty))
    }

    pub fn store(&mut self, v: &Value, p: &Value) {
        let s = format!("llvm.store {}, {} : {}, {}", v.name, p.name, v.ty, p.ty);
        self.line(&s);
    }

    /// Two registers of one pairable type (see [`Ty::pair`]) as a 2-element vector.
    pub fn pack2(&mut self, a: &Value, b: &Value) -> Value {
        let vt = a.ty.pair().expect("a pairable register type");
        let u = self.op(vt, format!("llvm.mlir.undef : {vt}"));
        let (z, o) = (self.i32(0), self.i32(1));
        let v = self.insert_element(&u, a, &z);
        self.insert_element(&v, b, &o)
    }

    /// The two elements of a 2-element vector.
    pub fn unpack2(&mut self, v: &Value) -> [Value; 2] {
        let (z, o) = (self.i32(0), self.i32(1));
        [z, o].map(|i| {
            let rhs = format!(
                "llvm.extractelement {}[{} : {}] : {}",
                v.name, i.name, i.ty, v.ty
            );
            self.op(v.ty.elem(), rhs)
        })
    }

    fn insert_element(&mut self, vec: &Value, x: &Value, i: &Value) -> Value {
        let rhs = format!(
            "llvm.insertelement {}, {}[{} : {}] : {}",
            x.name, vec.name, i.name, i.ty, vec.ty
        );
        self.op(vec.ty, rhs)
    }

    /// The bits of `x` as type `to` (of the same width), across the vector/scalar divide that
    /// `arith.bitcast` does not cross.
    pub fn llvm_bitcast(&mut self, x: &Value, to: Ty) -> Value {
        let rhs = format!("llvm.bitcast {} : {} to {to}", x.name, x.ty);
        self.op(to, rhs)
    }

    /// One inline-PTX instruction: its results, in order.
    pub fn inline_asm(&mut self, t: &Template, ins: &[&Value]) -> R<Vec<Value>> {
        if ins.len() != t.operands {
            return Err(err(format!(
                "`{}` takes {} operands, given {}",
                t.asm,
                t.operands,
                ins.len()
            )));
        }
        let names: Vec<&str> = ins.iter().map(|v| v.name.as_str()).collect();
        let types: Vec<String> = ins.iter().map(|v| v.ty.to_string()).collect();
        let eff = if t.side_effects {
            "has_side_effects "
        } else {
            ""
        };
        let rt = match t.results {
            0 => "()".to_string(),
            1 => t.result.to_string(),
            n => format!(
                "!llvm.struct<({})>",
                vec![t.result.to_string(); n].join(", ")
            ),
        };
        let call = format!(
            "llvm.inline_asm {eff}asm_dialect = att \"{}\", \"{}\" {} : ({}) -> {rt}",
            t.asm,
            t.constraints,
            names.join(", "),
            types.join(", ")
        );
        Ok(match t.results {
            0 => {
                self.line(&call);
                vec![]
            }
            1 => vec![self.op(t.result, call)],
            n => {
                let s = self.assign(call);
                (0..n)
                    .map(|i| {
                        let rhs = format!("llvm.extractvalue {s}[{i}] : {rt}");
                        self.op(t.result, rhs)
                    })
                    .collect()
            }
        })
    }

    // ---- structured control flow --------------------------------------------------------------

    /// Starts a region: ops go into it until [`Emitter::close_region`].
    pub fn open_region(&mut self) {
        self.bodies.push(String::new());
    }

    /// Ends the innermost region, which yields `yields` (nothing when empty).
    pub fn close_region(&mut self, yields: &[Value]) -> Region {
        if !yields.is_empty() {
            let names: Vec<&str> = yields.iter().map(|v| v.name.as_str()).collect();
            let tys: Vec<String> = yields.iter().map(|v| v.ty.to_string()).collect();
            let s = format!("scf.yield {} : {}", names.join(", "), tys.join(", "));
            self.line(&s);
        }
        Region {
            text: self.bodies.pop().unwrap_or_default(),
            yields: yields.iter().map(|v| v.ty).collect(),
        }
    }

    /// Appends a closed region's ops one level deeper than the current region's.
    fn nest(&mut self, r: &Region) {
        let b = self.body();
        for l in r.text.lines() {
            b.push_str("  ");
            b.push_str(l);
            b.push('\n');
        }
    }

    /// `scf.if c`, whose arms both yield values of the same types (none without `els`).
    pub fn scf_if(&mut self, c: &Value, then: Region, els: Option<Region>) -> R<Vec<Value>> {
        let tys = then.yields.clone();
        let other = els.as_ref().map_or(&[][..], |e| &e.yields[..]);
        if tys != other {
            return Err(err("the arms of a conditional produce different types"));
        }
        let res = if tys.is_empty() {
            String::new()
        } else {
            self.fresh()
        };
        if tys.is_empty() {
            self.line(&format!("scf.if {} {{", c.name));
        } else {
            let ts: Vec<String> = tys.iter().map(Ty::to_string).collect();
            let head = format!(
                "{res}:{} = scf.if {} -> ({}) {{",
                tys.len(),
                c.name,
                ts.join(", ")
            );
            self.line(&head);
        }
        self.nest(&then);
        if let Some(e) = &els {
            self.body().push_str("    } else {\n");
            self.nest(e);
        }
        self.line("}");
        Ok(results(&res, &tys))
    }

    /// Names the values of an `scf.for` over `inits`, for its body to use.
    pub fn loop_vars(&mut self, inits: &[Value]) -> LoopVars {
        let result = self.fresh();
        let iv = Value {
            name: self.fresh(),
            ty: Ty::I32,
        };
        let args = inits
            .iter()
            .map(|v| Value {
                name: self.fresh(),
                ty: v.ty,
            })
            .collect();
        LoopVars { result, iv, args }
    }

    /// `scf.for iv = lo to hi step step` carrying `inits` (named by `vars`) through `body`, which
    /// must yield one value of each init's type.
    pub fn scf_for(
        &mut self,
        vars: LoopVars,
        [lo, hi, step]: [&Value; 3],
        inits: &[Value],
        body: Region,
    ) -> R<Vec<Value>> {
        let tys: Vec<Ty> = inits.iter().map(|v| v.ty).collect();
        if body.yields != tys {
            return Err(err("a loop body yields other types than it carries"));
        }
        let (iv, t) = (&vars.iv.name, vars.iv.ty);
        let (lo, hi, step) = (&lo.name, &hi.name, &step.name);
        let head = if inits.is_empty() {
            format!("scf.for {iv} = {lo} to {hi} step {step} : {t} {{")
        } else {
            let its: Vec<String> = vars
                .args
                .iter()
                .zip(inits)
                .map(|(a, v)| format!("{} = {}", a.name, v.name))
                .collect();
            let ts: Vec<String> = tys.iter().map(Ty::to_string).collect();
            format!(
                "{}:{} = scf.for {iv} = {lo} to {hi} step {step} iter_args({}) -> ({}) : {t} {{",
                vars.result,
                inits.len(),
                its.join(", "),
                ts.join(", ")
            )
        };
        self.line(&head);
        self.nest(&body);
        self.line("}");
        Ok(results(&vars.result, &tys))
    }

    /// The module holding the kernel: its shared array, then the function with the prelude
    /// before the body.
    pub fn finish(mut self, k: &KernelDecl) -> String {
        let body = self.bodies.swap_remove(0);
        let mut out = String::from("module {\n");
        if let Some(smem) = k.shared {
            out.push_str(&format!(
                "  llvm.mlir.global external @{smem}() {{addr_space = 3 : i32, alignment = {} : \
                 i64}} : !llvm.array<0 x i8>\n",
                k.shared_align
            ));
        }
        let params: Vec<String> = self
            .params
            .iter()
            .enumerate()
            .map(|(i, t)| match t {
                // `.param .align 64 .b8 [128]`, read in place (NVPTX takes the address with
                // cvta.param instead of copying a grid constant to local memory).
                Ty::TensorMap => format!(
                    "%arg{i}: {t} {{llvm.align = 64 : i64, llvm.byval = !llvm.array<128 x i8>, \
                     nvvm.grid_constant}}"
                ),
                t => format!("%arg{i}: {t}"),
            })
            .collect();
        let occupancy = k
            .min_blocks_per_sm
            .map(|n| format!(", nvvm.minctasm = {n} : i32"))
            .unwrap_or_default();
        out.push_str(&format!(
            "  llvm.func @{}({}) attributes {{nvvm.kernel, nvvm.maxntid = array<i32: {}, 1, 1>\
             {occupancy}}} {{\n",
            k.name,
            params.join(", "),
            k.max_threads
        ));
        out.push_str(&self.prelude);
        out.push_str(&body);
        out.push_str("    llvm.return\n  }\n}\n");
        out
    }
}

/// Result `i` of a multi-result op named `res` is `res#i`.
fn results(res: &str, tys: &[Ty]) -> Vec<Value> {
    tys.iter()
        .enumerate()
        .map(|(i, &ty)| Value {
            name: format!("{res}#{i}"),
            ty,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lower::ptx_templates as ptx;

    fn decl(shared: Option<&str>) -> KernelDecl<'_> {
        KernelDecl {
            name: "k",
            shared,
            shared_align: 16,
            max_threads: 128,
            min_blocks_per_sm: None,
        }
    }

    #[test]
    fn constants_and_hoisted_ops_are_placed_once_at_entry() {
        let mut e = Emitter::new(vec![Ty::I32]);
        let x = e.param(0);
        let a = e.i32(3);
        let was = e.set_hoist(true);
        let h1 = e.addi(&x, &a);
        let h2 = e.addi(&x, &a);
        e.set_hoist(was);
        let three = e.i32(3);
        let b = e.addi(&h1, &three);
        assert_eq!(h1.name, h2.name);
        e.store(
            &b,
            &Value {
                name: "%p".into(),
                ty: Ty::GlobalPtr,
            },
        );
        let text = e.finish(&decl(None));
        assert_eq!(text.matches("arith.constant 3 : i32").count(), 1);
        assert_eq!(text.matches("arith.addi").count(), 2);
        let (pre, body) = text.split_at(text.find(&format!("{} = arith.addi", b.name)).unwrap());
        assert!(pre.contains(&format!("{} = arith.addi %arg0", h1.name)));
        assert!(body.contains("llvm.store"));
        assert!(!text.contains("llvm.mlir.global"));
    }

    #[test]
    fn an_inline_asm_use_must_match_its_template() {
        let mut e = Emitter::new(vec![Ty::I32]);
        let x = e.param(0);
        assert!(e.inline_asm(&ptx::shfl_bfly(), &[&x]).is_err());
        let out = e.inline_asm(&ptx::ldmatrix_x4(false), &[&x]).unwrap();
        assert_eq!(out.len(), 4);
        assert!(out.iter().all(|v| v.ty == Ty::I32));
    }

    #[test]
    fn conditional_arms_and_loop_bodies_must_agree_on_types() {
        let mut e = Emitter::new(vec![Ty::I1, Ty::I32, Ty::F32]);
        let (c, i, f) = (e.param(0), e.param(1), e.param(2));
        e.open_region();
        let then = e.close_region(std::slice::from_ref(&i));
        e.open_region();
        let els = e.close_region(std::slice::from_ref(&f));
        assert!(e.scf_if(&c, then, Some(els)).is_err());
        let vars = e.loop_vars(std::slice::from_ref(&f));
        e.open_region();
        let body = e.close_region(std::slice::from_ref(&i));
        assert!(e.scf_for(vars, [&i, &i, &i], &[f], body).is_err());
    }
}
