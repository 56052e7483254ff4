//! The types of values and the kinds of ops the emitter builds, with their MLIR spellings.
//!
//! Apart from the emitter itself, so that it reads as placement and op construction; the
//! spellings here are still the emitter's, used by nothing else.

use std::fmt;

use crate::tir::DType;

/// The MLIR type of a value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(in crate::lower) enum Ty {
    I1,
    I8,
    I16,
    I32,
    I64,
    Bf16,
    F16,
    F32,
    /// A 2-element vector, for accesses that move a pair of registers at once.
    Vec2(&'static Ty),
    /// A pointer to global memory.
    GlobalPtr,
    /// A pointer to shared memory.
    SharedPtr,
    /// A generic pointer to a kernel parameter passed by value: a 128-byte TMA tensor map
    /// (`__grid_constant__`, so its address is the parameter's own, not a local copy's).
    TensorMap,
}

impl Ty {
    /// The register type of an element of `d`.
    pub fn of(d: DType) -> Ty {
        match d {
            DType::Bf16 => Ty::Bf16,
            DType::F16 => Ty::F16,
            DType::F32 => Ty::F32,
            DType::I32 => Ty::I32,
            DType::Bool => Ty::I1,
        }
    }

    /// The 2-element vector of a register type, where one access may move a pair.
    pub fn pair(self) -> Option<Ty> {
        match self {
            Ty::Bf16 => Some(Ty::Vec2(&Ty::Bf16)),
            Ty::F16 => Some(Ty::Vec2(&Ty::F16)),
            Ty::F32 => Some(Ty::Vec2(&Ty::F32)),
            Ty::I32 => Some(Ty::Vec2(&Ty::I32)),
            _ => None,
        }
    }

    pub(super) fn elem(self) -> Ty {
        match self {
            Ty::Vec2(e) => *e,
            t => t,
        }
    }
}

impl fmt::Display for Ty {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Ty::I1 => f.write_str("i1"),
            Ty::I8 => f.write_str("i8"),
            Ty::I16 => f.write_str("i16"),
            Ty::I32 => f.write_str("i32"),
            Ty::I64 => f.write_str("i64"),
            Ty::Bf16 => f.write_str("bf16"),
            Ty::F16 => f.write_str("f16"),
            Ty::F32 => f.write_str("f32"),
            Ty::Vec2(e) => write!(f, "vector<2x{e}>"),
            Ty::GlobalPtr => f.write_str("!llvm.ptr<1>"),
            Ty::SharedPtr => f.write_str("!llvm.ptr<3>"),
            Ty::TensorMap => f.write_str("!llvm.ptr"),
        }
    }
}

/// An SSA value and its type.
#[derive(Clone, Debug)]
pub(in crate::lower) struct Value {
    pub(super) name: String,
    pub(super) ty: Ty,
}

impl Value {
    pub fn ty(&self) -> Ty {
        self.ty
    }
}

/// A binary `arith` op; the result has the operands' type.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(in crate::lower) enum Arith {
    AddF,
    SubF,
    MulF,
    DivF,
    RemF,
    MaximumF,
    MinimumF,
    AddI,
    SubI,
    MulI,
    DivSI,
    RemSI,
    DivUI,
    RemUI,
    MaxSI,
    MinSI,
    AndI,
    OrI,
    XOrI,
    ShRUI,
}

impl Arith {
    pub(super) fn name(self) -> &'static str {
        match self {
            Arith::AddF => "arith.addf",
            Arith::SubF => "arith.subf",
            Arith::MulF => "arith.mulf",
            Arith::DivF => "arith.divf",
            Arith::RemF => "arith.remf",
            Arith::MaximumF => "arith.maximumf",
            Arith::MinimumF => "arith.minimumf",
            Arith::AddI => "arith.addi",
            Arith::SubI => "arith.subi",
            Arith::MulI => "arith.muli",
            Arith::DivSI => "arith.divsi",
            Arith::RemSI => "arith.remsi",
            Arith::DivUI => "arith.divui",
            Arith::RemUI => "arith.remui",
            Arith::MaxSI => "arith.maxsi",
            Arith::MinSI => "arith.minsi",
            Arith::AndI => "arith.andi",
            Arith::OrI => "arith.ori",
            Arith::XOrI => "arith.xori",
            Arith::ShRUI => "arith.shrui",
        }
    }
}

/// An `arith` conversion between types.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(in crate::lower) enum Cast {
    ExtSI,
    ExtUI,
    TruncI,
    ExtF,
    TruncF,
    FpToSI,
    SIToFp,
    UIToFp,
    Bitcast,
}

impl Cast {
    pub(super) fn name(self) -> &'static str {
        match self {
            Cast::ExtSI => "arith.extsi",
            Cast::ExtUI => "arith.extui",
            Cast::TruncI => "arith.trunci",
            Cast::ExtF => "arith.extf",
            Cast::TruncF => "arith.truncf",
            Cast::FpToSI => "arith.fptosi",
            Cast::SIToFp => "arith.sitofp",
            Cast::UIToFp => "arith.uitofp",
            Cast::Bitcast => "arith.bitcast",
        }
    }
}

/// An integer comparison (`arith.cmpi` predicate).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(in crate::lower) enum ICmp {
    Eq,
    Ne,
    Slt,
    Sle,
    Sgt,
    Sge,
}

/// A float comparison (`arith.cmpf` predicate): ordered except `Une`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(in crate::lower) enum FCmp {
    Oeq,
    Une,
    Olt,
    Ole,
    Ogt,
    Oge,
}

/// A one-operand f32 intrinsic that NVPTX lowers directly.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(in crate::lower) enum Intrinsic {
    Exp2,
    Sqrt,
    Fabs,
}

/// A PTX special register.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(in crate::lower) enum Sreg {
    /// `%tid.x`: the thread's index in its block.
    Tid,
    /// `%ctaid.<axis>`: the block's index in the grid.
    CtaId(usize),
    /// `%nctaid.<axis>`: the grid's extent.
    NCtaId(usize),
}
