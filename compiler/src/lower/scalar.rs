//! Per-register arithmetic: Tile IR's elementwise ops on one register at a time.
//!
//! Transcendentals compute in f32 and round once to the value's type, through the forms NVPTX
//! lowers directly (exp2, sqrt, the hardware's lg2); constants are exact bit patterns rounded as
//! the interpreter rounds them, so device results can be held to the interpreter's.

use super::emit::{Arith, Cast, FCmp, ICmp, Intrinsic, Ty, Value};
use super::entry::Lower;
use crate::tir::{BinaryOp, CmpOp, DType, Literal, UnaryOp};

impl Lower<'_> {
    /// A constant of type `d` (in the prelude).
    pub fn constant(&mut self, l: Literal, d: DType) -> Value {
        let t = Ty::of(d);
        let e = &mut self.e;
        match (l, d.is_float()) {
            (Literal::Float(f), true) => e.float(f, t),
            (Literal::Int(i), true) => e.float(i as f64, t),
            (Literal::Float(f), false) if d == DType::Bool => e.bool(f != 0.0),
            (Literal::Float(f), false) => e.int(f as i64, t),
            (Literal::Int(i), false) if d == DType::Bool => e.bool(i != 0),
            (Literal::Int(i), false) => e.int(i, t),
            (Literal::Bool(b), _) if d == DType::Bool => e.bool(b),
            (Literal::Bool(b), true) => e.float(b as u8 as f64, t),
            (Literal::Bool(b), false) => e.int(b as i64, t),
        }
    }

    pub fn cf32(&mut self, v: f64) -> Value {
        self.e.float(v, Ty::F32)
    }

    /// A float register as f32.
    pub fn widen(&mut self, x: &Value) -> Value {
        match x.ty() {
            Ty::F32 => x.clone(),
            _ => self.e.cast(Cast::ExtF, x, Ty::F32),
        }
    }

    /// An f32 register rounded to `d`.
    pub fn narrow(&mut self, x: &Value, d: DType) -> Value {
        match d {
            DType::F32 => x.clone(),
            _ => self.e.cast(Cast::TruncF, x, Ty::of(d)),
        }
    }

    /// A tile's registers as the values a reduction or scan combines: floats in f32 (so they
    /// round once, at the end), integers as they are.
    pub fn widen_all(&mut self, xs: &[Value], d: DType) -> Vec<Value> {
        xs.iter()
            .map(|v| {
                if d.is_float() {
                    self.widen(v)
                } else {
                    v.clone()
                }
            })
            .collect()
    }

    /// The inverse of [`Lower::widen_all`]: combined values rounded back to `d`.
    pub fn narrow_all(&mut self, xs: &[Value], d: DType) -> Vec<Value> {
        xs.iter()
            .map(|v| {
                if d.is_float() {
                    self.narrow(v, d)
                } else {
                    v.clone()
                }
            })
            .collect()
    }

    pub fn unary(&mut self, op: UnaryOp, x: &Value, d: DType) -> Value {
        if !d.is_float() {
            return self.unary_int(op, x);
        }
        if op == UnaryOp::Neg {
            return self.e.negf(x);
        }
        let w = self.widen(x);
        let exp2 = Intrinsic::Exp2;
        let r = match op {
            UnaryOp::Exp => {
                let c = self.cf32(std::f64::consts::LOG2_E);
                let s = self.e.arith(Arith::MulF, &w, &c);
                self.e.intrinsic(exp2, &s)
            }
            UnaryOp::Exp2 => self.e.intrinsic(exp2, &w),
            UnaryOp::Log => {
                let l = self.e.lg2_approx(&w);
                let c = self.cf32(std::f64::consts::LN_2);
                self.e.arith(Arith::MulF, &l, &c)
            }
            UnaryOp::Sqrt => self.e.intrinsic(Intrinsic::Sqrt, &w),
            UnaryOp::Rsqrt => {
                let s = self.e.intrinsic(Intrinsic::Sqrt, &w);
                let one = self.cf32(1.0);
                self.e.arith(Arith::DivF, &one, &s)
            }
            UnaryOp::Abs => self.e.intrinsic(Intrinsic::Fabs, &w),
            UnaryOp::Sigmoid | UnaryOp::Silu => {
                let n = self.e.negf(&w);
                let c = self.cf32(std::f64::consts::LOG2_E);
                let s = self.e.arith(Arith::MulF, &n, &c);
                let ex = self.e.intrinsic(exp2, &s);
                let one = self.cf32(1.0);
                let den = self.e.arith(Arith::AddF, &one, &ex);
                let num = if op == UnaryOp::Silu { w.clone() } else { one };
                self.e.arith(Arith::DivF, &num, &den)
            }
            UnaryOp::Neg | UnaryOp::Not => w.clone(),
        };
        self.narrow(&r, d)
    }

    fn unary_int(&mut self, op: UnaryOp, x: &Value) -> Value {
        match op {
            UnaryOp::Neg => {
                let z = self.e.i32(0);
                self.e.arith(Arith::SubI, &z, x)
            }
            UnaryOp::Not => {
                let t = self.e.bool(true);
                self.e.arith(Arith::XOrI, x, &t)
            }
            UnaryOp::Abs => {
                let z = self.e.i32(0);
                let n = self.e.arith(Arith::SubI, &z, x);
                self.e.arith(Arith::MaxSI, x, &n)
            }
            _ => x.clone(),
        }
    }

    pub fn binary(&mut self, op: BinaryOp, a: &Value, b: &Value, d: DType) -> Value {
        let f = d.is_float();
        let op = match (op, f) {
            (BinaryOp::Add, true) => Arith::AddF,
            (BinaryOp::Sub, true) => Arith::SubF,
            (BinaryOp::Mul, true) => Arith::MulF,
            (BinaryOp::Div, true) => Arith::DivF,
            (BinaryOp::Rem, true) => Arith::RemF,
            (BinaryOp::Max, true) => Arith::MaximumF,
            (BinaryOp::Min, true) => Arith::MinimumF,
            (BinaryOp::Add, false) => Arith::AddI,
            (BinaryOp::Sub, false) => Arith::SubI,
            (BinaryOp::Mul, false) => Arith::MulI,
            (BinaryOp::Div, false) => Arith::DivSI,
            (BinaryOp::Rem, false) => Arith::RemSI,
            (BinaryOp::Max, false) => Arith::MaxSI,
            (BinaryOp::Min, false) => Arith::MinSI,
            (BinaryOp::And, _) => Arith::AndI,
            (BinaryOp::Or, _) => Arith::OrI,
        };
        self.e.arith(op, a, b)
    }

    pub fn cmp(&mut self, op: CmpOp, a: &Value, b: &Value, d: DType) -> Value {
        if d.is_float() {
            // Ordered except `!=`, as the interpreter's f64 comparisons are.
            let p = match op {
                CmpOp::Eq => FCmp::Oeq,
                CmpOp::Ne => FCmp::Une,
                CmpOp::Lt => FCmp::Olt,
                CmpOp::Le => FCmp::Ole,
                CmpOp::Gt => FCmp::Ogt,
                CmpOp::Ge => FCmp::Oge,
            };
            self.e.cmpf(p, a, b)
        } else {
            let p = match op {
                CmpOp::Eq => ICmp::Eq,
                CmpOp::Ne => ICmp::Ne,
                CmpOp::Lt => ICmp::Slt,
                CmpOp::Le => ICmp::Sle,
                CmpOp::Gt => ICmp::Sgt,
                CmpOp::Ge => ICmp::Sge,
            };
            self.e.cmpi(p, a, b)
        }
    }

    pub fn cast(&mut self, x: &Value, from: DType, to: DType) -> Value {
        let tt = Ty::of(to);
        let w = |d: DType| if d == DType::F32 { 32 } else { 16 };
        match (from.is_float(), to.is_float()) {
            _ if from == to => x.clone(),
            (true, true) if w(from) < w(to) => self.e.cast(Cast::ExtF, x, tt),
            (true, true) if w(from) > w(to) => self.e.cast(Cast::TruncF, x, tt),
            (true, true) => {
                let f = self.widen(x);
                self.narrow(&f, to)
            }
            (true, false) if to == DType::Bool => {
                let z = self.constant(Literal::Float(0.0), from);
                self.cmp(CmpOp::Ne, x, &z, from)
            }
            (true, false) => self.e.cast(Cast::FpToSI, x, tt),
            (false, true) if from == DType::Bool => self.e.cast(Cast::UIToFp, x, tt),
            (false, true) => self.e.cast(Cast::SIToFp, x, tt),
            (false, false) if to == DType::Bool => {
                let z = self.e.i32(0);
                self.e.cmpi(ICmp::Ne, x, &z)
            }
            (false, false) => self.e.cast(Cast::ExtUI, x, tt),
        }
    }

    /// The register as 32 bits (for shared-memory exchange and shuffles).
    pub fn as_b32(&mut self, x: &Value) -> Value {
        match x.ty() {
            Ty::I32 => x.clone(),
            Ty::F32 => self.e.cast(Cast::Bitcast, x, Ty::I32),
            Ty::I1 => self.e.cast(Cast::ExtUI, x, Ty::I32),
            _ => {
                let h = self.e.cast(Cast::Bitcast, x, Ty::I16);
                self.e.cast(Cast::ExtUI, &h, Ty::I32)
            }
        }
    }

    /// The inverse of [`Lower::as_b32`], back to type `t`.
    pub fn of_b32(&mut self, x: &Value, t: Ty) -> Value {
        match t {
            Ty::I32 => x.clone(),
            Ty::F32 => self.e.cast(Cast::Bitcast, x, Ty::F32),
            Ty::I1 => self.e.cast(Cast::TruncI, x, Ty::I1),
            t => {
                let h = self.e.cast(Cast::TruncI, x, Ty::I16);
                self.e.cast(Cast::Bitcast, &h, t)
            }
        }
    }
}
