//! The elementwise smoke kernel, built directly in MLIR: `c[i] = a[i] * b[i] + c[i]`.
//!
//! It exists to prove every stage below Tile IR end to end (MLIR → LLVM → PTX → driver) before the
//! language does; once `.tsl` elementwise kernels lower through the scheduler, this stays as the
//! backend's own canary.

use melior::dialect::llvm::{self, LoadStoreOptions};
use melior::dialect::{arith, scf};
use melior::ir::attribute::{StringAttribute, TypeAttribute};
use melior::ir::operation::OperationBuilder;
use melior::ir::r#type::IntegerType;
use melior::ir::{
    Attribute, Block, BlockLike, Identifier, Location, Module, Region, RegionLike, Type,
};

use super::{build_op, gep, result, special_register, MlirSession};
use crate::CompileError;

/// Element types the smoke kernel is built for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ElemType {
    F32,
    Bf16,
    F16,
}

impl ElemType {
    pub const ALL: [ElemType; 3] = [ElemType::F32, ElemType::Bf16, ElemType::F16];

    pub fn name(self) -> &'static str {
        match self {
            ElemType::F32 => "f32",
            ElemType::Bf16 => "bf16",
            ElemType::F16 => "f16",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|t| t.name() == s)
    }

    fn mlir<'c>(self, context: &'c melior::Context) -> Type<'c> {
        match self {
            ElemType::F32 => Type::float32(context),
            ElemType::Bf16 => Type::bfloat16(context),
            ElemType::F16 => Type::float16(context),
        }
    }
}

/// The kernel's entry name for an element type, e.g. `fma_bf16`.
pub fn kernel_name(dtype: ElemType) -> String {
    format!("fma_{}", dtype.name())
}

/// Builds `kernel fma_<dtype>(a: *global T, b: *global T, c: *global T, n: i32)` with one element
/// per thread and a bounds check against `n`. Arithmetic is an f32 fma whatever the storage type,
/// rounded once on the store, so bf16/f16 results are correctly rounded a*b+c.
pub fn build<'c>(session: &'c MlirSession, dtype: ElemType) -> Result<Module<'c>, CompileError> {
    let ctx = &session.context;
    let loc = Location::unknown(ctx);
    let module = Module::new(loc);

    let i32t: Type = IntegerType::new(ctx, 32).into();
    let f32t = Type::float32(ctx);
    let elem = dtype.mlir(ctx);
    let gptr = llvm::r#type::pointer(ctx, 1);

    let entry = Block::new(&[(gptr, loc), (gptr, loc), (gptr, loc), (i32t, loc)]);
    let (a, b, c, n) = (
        entry.argument(0).map_err(arg_err)?.into(),
        entry.argument(1).map_err(arg_err)?.into(),
        entry.argument(2).map_err(arg_err)?.into(),
        entry.argument(3).map_err(arg_err)?.into(),
    );

    let tid = result(entry.append_operation(special_register(ctx, "tid.x", loc)?))?;
    let ntid = result(entry.append_operation(special_register(ctx, "ntid.x", loc)?))?;
    let ctaid = result(entry.append_operation(special_register(ctx, "ctaid.x", loc)?))?;
    let base = result(entry.append_operation(arith::muli(ctaid, ntid, loc)))?;
    let i = result(entry.append_operation(arith::addi(base, tid, loc)))?;
    let in_bounds =
        result(entry.append_operation(arith::cmpi(ctx, arith::CmpiPredicate::Slt, i, n, loc)))?;

    let then_block = Block::new(&[]);
    {
        let gep = |ptr| gep(ctx, loc, ptr, i, elem, gptr);
        let load = |ptr| llvm::load(ctx, ptr, elem, loc, LoadStoreOptions::new());
        let widen = |v| {
            if dtype == ElemType::F32 {
                Ok(v)
            } else {
                result(then_block.append_operation(arith::extf(v, f32t, loc)))
            }
        };
        let pa = result(then_block.append_operation(gep(a)?))?;
        let pb = result(then_block.append_operation(gep(b)?))?;
        let pc = result(then_block.append_operation(gep(c)?))?;
        let va = widen(result(then_block.append_operation(load(pa)))?)?;
        let vb = widen(result(then_block.append_operation(load(pb)))?)?;
        let vc = widen(result(then_block.append_operation(load(pc)))?)?;
        let fma = result(
            then_block.append_operation(build_op(
                OperationBuilder::new("llvm.intr.fma", loc)
                    .add_operands(&[va, vb, vc])
                    .add_results(&[f32t]),
            )?),
        )?;
        let out = if dtype == ElemType::F32 {
            fma
        } else {
            result(then_block.append_operation(arith::truncf(fma, elem, loc)))?
        };
        then_block.append_operation(llvm::store(ctx, out, pc, loc, LoadStoreOptions::new()));
        then_block.append_operation(scf::r#yield(&[], loc));
    }
    let then_region = Region::new();
    then_region.append_block(then_block);
    entry.append_operation(scf::r#if(in_bounds, &[], then_region, Region::new(), loc));
    entry.append_operation(llvm::r#return(None, loc));

    let body = Region::new();
    body.append_block(entry);
    let fn_type = llvm::r#type::function(llvm::r#type::void(ctx), &[gptr, gptr, gptr, i32t], false);
    module.body().append_operation(llvm::func(
        ctx,
        StringAttribute::new(ctx, &kernel_name(dtype)),
        TypeAttribute::new(fn_type),
        body,
        &[(Identifier::new(ctx, "nvvm.kernel"), Attribute::unit(ctx))],
        loc,
    ));
    Ok(module)
}

fn arg_err(e: melior::Error) -> CompileError {
    CompileError::mlir("block arguments", e.to_string())
}
