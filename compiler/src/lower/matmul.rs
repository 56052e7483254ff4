//! A tensor-core matmul built directly in MLIR: C[M, N] = A[M, K] · B[K, N] in bf16 with f32
//! accumulation, on `mma.sync.aligned.m16n8k16`.
//!
//! This is the first rung of the matrix path, before the scheduler drives it from Tile IR: each
//! block of 8 warps computes a 128×128 tile of C, each warp a 64×32 part as 4×4 m16n8k16 tiles
//! whose 64 f32 accumulators live in registers across the K loop. Each 32-wide K step stages A's
//! and (transposed) B's tiles in padded shared memory, and the warps read their fragments from
//! there in the register layout the instruction wants (PTX ISA, "Matrix Fragments for
//! mma.m16n8k16"). Out-of-range elements read as 0 and out-of-range results are not stored, so
//! any M, N, K works. Still to come from the scheduler: vectorised 16-byte and `cp.async` copies
//! with multi-stage pipelining, `ldmatrix`, swizzled layouts, and vectorised stores.

use melior::dialect::llvm::{self, LoadStoreOptions};
use melior::dialect::{arith, scf};
use melior::ir::attribute::{
    DenseI32ArrayAttribute, IntegerAttribute, StringAttribute, TypeAttribute,
};
use melior::ir::operation::OperationBuilder;
use melior::ir::r#type::IntegerType;
use melior::ir::{
    Attribute, Block, BlockLike, Identifier, Location, Module, Region, RegionLike, Type, Value,
};
use melior::Context;

use super::{build_op, gep, result, special_register, MlirSession};
use crate::CompileError;

pub const KERNEL: &str = "matmul_bf16";
/// Threads per block and the C tile one block computes.
pub const THREADS: u32 = 256;
pub const BLOCK_M: u32 = 128;
pub const BLOCK_N: u32 = 128;
/// Each warp computes 64×32 of C as 4×4 m16n8k16 tiles.
const WARP_M_TILES: usize = 4;
const WARP_N_TILES: usize = 4;

/// Emits ops into one block; every helper returns the new op's result.
struct Emit<'c, 'b> {
    ctx: &'c Context,
    loc: Location<'c>,
    block: &'b Block<'c>,
}

impl<'c, 'b> Emit<'c, 'b> {
    fn push(&self, op: melior::ir::Operation<'c>) -> Result<Value<'c, 'b>, CompileError> {
        result(self.block.append_operation(op))
    }

    fn i32(&self) -> Type<'c> {
        IntegerType::new(self.ctx, 32).into()
    }

    fn c32(&self, v: i64) -> Result<Value<'c, 'b>, CompileError> {
        self.push(arith::constant(
            self.ctx,
            IntegerAttribute::new(self.i32(), v).into(),
            self.loc,
        ))
    }

    fn add(&self, a: Value<'c, '_>, b: Value<'c, '_>) -> Result<Value<'c, 'b>, CompileError> {
        self.push(arith::addi(a, b, self.loc))
    }

    fn mul(&self, a: Value<'c, '_>, b: Value<'c, '_>) -> Result<Value<'c, 'b>, CompileError> {
        self.push(arith::muli(a, b, self.loc))
    }

    fn lt(&self, a: Value<'c, '_>, b: Value<'c, '_>) -> Result<Value<'c, 'b>, CompileError> {
        self.push(arith::cmpi(
            self.ctx,
            arith::CmpiPredicate::Slt,
            a,
            b,
            self.loc,
        ))
    }

    fn and(&self, a: Value<'c, '_>, b: Value<'c, '_>) -> Result<Value<'c, 'b>, CompileError> {
        self.push(arith::andi(a, b, self.loc))
    }

    fn min(&self, a: Value<'c, '_>, b: Value<'c, '_>) -> Result<Value<'c, 'b>, CompileError> {
        self.push(arith::minsi(a, b, self.loc))
    }

    fn add_c(&self, a: Value<'c, '_>, c: i64) -> Result<Value<'c, 'b>, CompileError> {
        let c = self.c32(c)?;
        self.add(a, c)
    }

    /// &ptr[index] for 16-bit elements, index an i32 widened to i64 first (M·K may pass 2^31).
    fn gep16(
        &self,
        ptr: Value<'c, '_>,
        index: Value<'c, '_>,
    ) -> Result<Value<'c, 'b>, CompileError> {
        let i64t: Type = IntegerType::new(self.ctx, 64).into();
        let wide = self.push(arith::extsi(index, i64t, self.loc))?;
        self.push(gep(
            self.ctx,
            self.loc,
            ptr,
            wide,
            IntegerType::new(self.ctx, 16).into(),
            llvm::r#type::pointer(self.ctx, 1),
        )?)
    }

    /// The 16 bits of element (row, col) of a rows×cols row-major matrix, or 0 outside it. The
    /// address is clamped into the matrix so no load ever leaves it.
    fn load16(
        &self,
        ptr: Value<'c, '_>,
        row: Value<'c, '_>,
        col: Value<'c, '_>,
        rows: Value<'c, '_>,
        cols: Value<'c, '_>,
    ) -> Result<Value<'c, 'b>, CompileError> {
        let one = self.c32(1)?;
        let inside = self.and(self.lt(row, rows)?, self.lt(col, cols)?)?;
        let r = self.min(row, self.push(arith::subi(rows, one, self.loc))?)?;
        let c = self.min(col, self.push(arith::subi(cols, one, self.loc))?)?;
        let idx = self.add(self.mul(r, cols)?, c)?;
        let p = self.gep16(ptr, idx)?;
        let i16t: Type = IntegerType::new(self.ctx, 16).into();
        let v = self.push(llvm::load(
            self.ctx,
            p,
            i16t,
            self.loc,
            LoadStoreOptions::new(),
        ))?;
        let zero = self.push(arith::constant(
            self.ctx,
            IntegerAttribute::new(i16t, 0).into(),
            self.loc,
        ))?;
        self.push(arith::select(inside, v, zero, self.loc))
    }
}

/// Shared-memory row stride in elements: 32 for the K tile plus 8 of padding, so the eight rows
/// a warp's fragment loads touch fall in distinct banks (row·20 + lane mod 4 words, mod 32).
const SMEM_STRIDE: i64 = 40;
/// K extent of one shared-memory tile: two m16n8k16 steps.
const BLOCK_K: i64 = 32;

impl<'c, 'b> Emit<'c, 'b> {
    /// A pointer into a shared-memory array of i16, `index` in elements.
    fn smem_gep(
        &self,
        base: Value<'c, '_>,
        index: Value<'c, '_>,
        elem_bits: u32,
    ) -> Result<Value<'c, 'b>, CompileError> {
        self.push(gep(
            self.ctx,
            self.loc,
            base,
            index,
            IntegerType::new(self.ctx, elem_bits).into(),
            llvm::r#type::pointer(self.ctx, 3),
        )?)
    }

    /// `bar.sync 0`: every thread of the block arrives before any goes on.
    fn barrier(&self) -> Result<(), CompileError> {
        self.block.append_operation(build_op(
            OperationBuilder::new("llvm.inline_asm", self.loc).add_attributes(&[
                (
                    Identifier::new(self.ctx, "asm_string"),
                    StringAttribute::new(self.ctx, "bar.sync 0;").into(),
                ),
                (
                    Identifier::new(self.ctx, "constraints"),
                    StringAttribute::new(self.ctx, "").into(),
                ),
                (
                    Identifier::new(self.ctx, "has_side_effects"),
                    Attribute::unit(self.ctx),
                ),
            ]),
        )?);
        Ok(())
    }
}

/// Builds `matmul_bf16(a, b, c: *global bf16, M, N, K: i32)`; launch with grid
/// (cdiv(N, 128), cdiv(M, 128)) and 256 threads.
///
/// Each K step of 32 stages A's 128×32 tile and B's 32×128 tile (transposed, so B fragments are
/// contiguous pairs) in shared memory, every element loaded from global memory once per block;
/// the 8 warps (2 along M × 4 along N) then read their fragments from shared memory with 32-bit
/// loads and issue 4×4 m16n8k16 MMAs per 16-wide half.
pub fn build<'c>(session: &'c MlirSession) -> Result<Module<'c>, CompileError> {
    let ctx = &session.context;
    let loc = Location::unknown(ctx);
    let module = Module::new(loc);
    let i32t: Type = IntegerType::new(ctx, 32).into();
    let i16t: Type = IntegerType::new(ctx, 16).into();
    let f32t = Type::float32(ctx);
    let gptr = llvm::r#type::pointer(ctx, 1);
    let sptr = llvm::r#type::pointer(ctx, 3);
    let tile_elems = (BLOCK_M as i64) * SMEM_STRIDE;

    // Two static shared-memory arrays: A as [128][40] and Bᵀ as [128][40] of 16-bit elements.
    for name in ["tessel_smem_a", "tessel_smem_b"] {
        module.body().append_operation(build_op(
            OperationBuilder::new("llvm.mlir.global", loc)
                .add_attributes(&[
                    (
                        Identifier::new(ctx, "sym_name"),
                        StringAttribute::new(ctx, name).into(),
                    ),
                    (
                        Identifier::new(ctx, "global_type"),
                        TypeAttribute::new(llvm::r#type::array(i16t, tile_elems as u32)).into(),
                    ),
                    (
                        Identifier::new(ctx, "linkage"),
                        llvm::attributes::linkage(ctx, llvm::attributes::Linkage::Internal),
                    ),
                    (
                        Identifier::new(ctx, "addr_space"),
                        IntegerAttribute::new(i32t, 3).into(),
                    ),
                    (
                        Identifier::new(ctx, "alignment"),
                        IntegerAttribute::new(IntegerType::new(ctx, 64).into(), 16).into(),
                    ),
                ])
                .add_regions([Region::new()]),
        )?);
    }

    let entry = Block::new(&[
        (gptr, loc),
        (gptr, loc),
        (gptr, loc),
        (i32t, loc),
        (i32t, loc),
        (i32t, loc),
    ]);
    let arg = |i| {
        entry
            .argument(i)
            .map(Value::from)
            .map_err(|e| CompileError::mlir("arguments", e.to_string()))
    };
    let (a, b, c, m, n, k) = (arg(0)?, arg(1)?, arg(2)?, arg(3)?, arg(4)?, arg(5)?);
    let e = Emit {
        ctx,
        loc,
        block: &entry,
    };
    let addr = |name: &str| {
        e.push(build_op(
            OperationBuilder::new("llvm.mlir.addressof", loc)
                .add_attributes(&[(
                    Identifier::new(ctx, "global_name"),
                    melior::ir::attribute::FlatSymbolRefAttribute::new(ctx, name).into(),
                )])
                .add_results(&[sptr]),
        )?)
    };
    let smem_a = addr("tessel_smem_a")?;
    let smem_b = addr("tessel_smem_b")?;
    let tid = e.push(special_register(ctx, "tid.x", loc)?)?;
    let bx = e.push(special_register(ctx, "ctaid.x", loc)?)?;
    let by = e.push(special_register(ctx, "ctaid.y", loc)?)?;
    let c32v = e.c32(32)?;
    let c4 = e.c32(4)?;
    let c2 = e.c32(2)?;
    let warp = e.push(arith::divui(tid, c32v, loc))?;
    let lane = e.push(arith::remui(tid, c32v, loc))?;
    let g = e.push(arith::divui(lane, c4, loc))?;
    let t4 = e.push(arith::remui(lane, c4, loc))?;
    let two_t4 = e.mul(t4, c2)?;
    let wm = e.push(arith::divui(warp, c4, loc))?;
    let wn = e.push(arith::remui(warp, c4, loc))?;
    let block_row = e.mul(by, e.c32(BLOCK_M as i64)?)?;
    let block_col = e.mul(bx, e.c32(BLOCK_N as i64)?)?;
    // This warp's first row / column inside the block tile (64×32 per warp).
    let wrow = e.mul(wm, e.c32(64)?)?;
    let wcol = e.mul(wn, c32v)?;

    let n_acc = WARP_M_TILES * WARP_N_TILES * 4;
    let zero_f = e.push(arith::constant(
        ctx,
        melior::ir::attribute::FloatAttribute::new(ctx, f32t, 0.0).into(),
        loc,
    ))?;
    let lo = e.c32(0)?;
    let step = e.c32(BLOCK_K)?;
    let body = Block::new(
        &std::iter::once((i32t, loc))
            .chain(std::iter::repeat_n((f32t, loc), n_acc))
            .collect::<Vec<_>>(),
    );
    {
        let be = Emit {
            ctx,
            loc,
            block: &body,
        };
        let k0 = body
            .argument(0)
            .map(Value::from)
            .map_err(|e| CompileError::mlir("loop", e.to_string()))?;
        // Stage the tiles: 128×32 elements of each, 16 per thread, consecutive threads on
        // consecutive elements of a row (coalesced).
        let per_thread = (BLOCK_M as i64 * BLOCK_K) / THREADS as i64;
        for j in 0..per_thread {
            let idx = be.add_c(tid, j * THREADS as i64)?;
            let r = be.push(arith::divui(idx, be.c32(BLOCK_K)?, loc))?;
            let kk = be.push(arith::remui(idx, be.c32(BLOCK_K)?, loc))?;
            // A[block_row + r][k0 + kk] → smem_a[r][kk]
            let va = be.load16(a, be.add(block_row, r)?, be.add(k0, kk)?, m, k)?;
            let sa = be.smem_gep(smem_a, be.add(be.mul(r, be.c32(SMEM_STRIDE)?)?, kk)?, 16)?;
            body.append_operation(llvm::store(ctx, va, sa, loc, LoadStoreOptions::new()));
            // B is read along its rows: idx → (k row kr, column cn) with 128 columns per row.
            let kr = be.push(arith::divui(idx, be.c32(BLOCK_N as i64)?, loc))?;
            let cn = be.push(arith::remui(idx, be.c32(BLOCK_N as i64)?, loc))?;
            let vb = be.load16(b, be.add(k0, kr)?, be.add(block_col, cn)?, k, n)?;
            // … and stored transposed: smem_b[cn][kr].
            let sb = be.smem_gep(smem_b, be.add(be.mul(cn, be.c32(SMEM_STRIDE)?)?, kr)?, 16)?;
            body.append_operation(llvm::store(ctx, vb, sb, loc, LoadStoreOptions::new()));
        }
        be.barrier()?;
        // A 32-bit load of the element pair at (row, col) of a [128][40] shared tile.
        let pair = |base: Value<'c, '_>,
                    row: Value<'c, '_>,
                    col: Value<'c, '_>|
         -> Result<Value, CompileError> {
            let idx = be.add(be.mul(row, be.c32(SMEM_STRIDE)?)?, col)?;
            let half = be.push(arith::divui(idx, be.c32(2)?, loc))?;
            let p = be.smem_gep(base, half, 32)?;
            be.push(llvm::load(ctx, p, i32t, loc, LoadStoreOptions::new()))
        };
        let struct_t = llvm::r#type::r#struct(ctx, &[f32t, f32t, f32t, f32t], false);
        let mut accs: Vec<Value> = (0..n_acc)
            .map(|q| body.argument(1 + q).map(Value::from))
            .collect::<Result<_, _>>()
            .map_err(|e| CompileError::mlir("loop", e.to_string()))?;
        for ks in 0..2 {
            let kk = be.add_c(two_t4, ks * 16)?;
            let kk8 = be.add_c(kk, 8)?;
            let mut a_frags = Vec::new();
            for mi in 0..WARP_M_TILES {
                let r = be.add(be.add_c(wrow, (mi * 16) as i64)?, g)?;
                let r8 = be.add_c(r, 8)?;
                a_frags.push([
                    pair(smem_a, r, kk)?,
                    pair(smem_a, r8, kk)?,
                    pair(smem_a, r, kk8)?,
                    pair(smem_a, r8, kk8)?,
                ]);
            }
            let mut b_frags = Vec::new();
            for ni in 0..WARP_N_TILES {
                let col = be.add(be.add_c(wcol, (ni * 8) as i64)?, g)?;
                b_frags.push([pair(smem_b, col, kk)?, pair(smem_b, col, kk8)?]);
            }
            for (mi, a_frag) in a_frags.iter().enumerate() {
                for (ni, b_frag) in b_frags.iter().enumerate() {
                    let base = (mi * WARP_N_TILES + ni) * 4;
                    let mut operands: Vec<Value> = a_frag.to_vec();
                    operands.extend(b_frag);
                    operands.extend(&accs[base..base + 4]);
                    let mma = be.push(build_op(
                        OperationBuilder::new("llvm.inline_asm", loc)
                            .add_attributes(&[
                                (
                                    Identifier::new(ctx, "asm_string"),
                                    StringAttribute::new(ctx, "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {$0,$1,$2,$3}, {$4,$5,$6,$7}, {$8,$9}, {$10,$11,$12,$13};").into(),
                                ),
                                (Identifier::new(ctx, "constraints"), StringAttribute::new(ctx, "=f,=f,=f,=f,r,r,r,r,r,r,f,f,f,f").into()),
                            ])
                            .add_operands(&operands)
                            .add_results(&[struct_t]),
                    )?)?;
                    for q in 0..4 {
                        accs[base + q] = be.push(llvm::extract_value(
                            ctx,
                            mma,
                            melior::ir::attribute::DenseI64ArrayAttribute::new(ctx, &[q as i64]),
                            f32t,
                            loc,
                        ))?;
                    }
                }
            }
        }
        // Nobody overwrites the tiles until every warp has read them.
        be.barrier()?;
        body.append_operation(scf::r#yield(&accs, loc));
    }
    let region = Region::new();
    region.append_block(body);
    let mut inits = vec![lo, k, step];
    inits.extend(std::iter::repeat_n(zero_f, n_acc));
    let for_op = entry.append_operation(build_op(
        OperationBuilder::new("scf.for", loc)
            .add_operands(&inits)
            .add_regions([region])
            .add_results(&vec![f32t; n_acc]),
    )?);
    let accs: Vec<Value> = (0..n_acc)
        .map(|i| for_op.result(i).map(Value::from))
        .collect::<Result<_, _>>()
        .map_err(|e| CompileError::mlir("loop results", e.to_string()))?;

    // Epilogue: round to bf16 and store what lies inside C.
    let bf16t = Type::bfloat16(ctx);
    let row0 = e.add(block_row, wrow)?;
    let col0 = e.add(block_col, wcol)?;
    for mi in 0..WARP_M_TILES {
        for ni in 0..WARP_N_TILES {
            let base = (mi * WARP_N_TILES + ni) * 4;
            let r = e.add(e.add_c(row0, (mi * 16) as i64)?, g)?;
            let col = e.add(e.add_c(col0, (ni * 8) as i64)?, two_t4)?;
            for q in 0..4 {
                let rr = if q >= 2 { e.add_c(r, 8)? } else { r };
                let cc = if q % 2 == 1 { e.add_c(col, 1)? } else { col };
                let inside = e.and(e.lt(rr, m)?, e.lt(cc, n)?)?;
                let then = Block::new(&[]);
                {
                    let te = Emit {
                        ctx,
                        loc,
                        block: &then,
                    };
                    let idx = te.add(te.mul(rr, n)?, cc)?;
                    let p = te.gep16(c, idx)?;
                    let v = te.push(arith::truncf(accs[base + q], bf16t, loc))?;
                    then.append_operation(llvm::store(ctx, v, p, loc, LoadStoreOptions::new()));
                    then.append_operation(scf::r#yield(&[], loc));
                }
                let tr = Region::new();
                tr.append_block(then);
                entry.append_operation(scf::r#if(inside, &[], tr, Region::new(), loc));
            }
        }
    }
    entry.append_operation(llvm::r#return(None, loc));
    let fbody = Region::new();
    fbody.append_block(entry);
    let fn_type = llvm::r#type::function(
        llvm::r#type::void(ctx),
        &[gptr, gptr, gptr, i32t, i32t, i32t],
        false,
    );
    module.body().append_operation(llvm::func(
        ctx,
        StringAttribute::new(ctx, KERNEL),
        TypeAttribute::new(fn_type),
        fbody,
        &[
            (Identifier::new(ctx, "nvvm.kernel"), Attribute::unit(ctx)),
            (
                Identifier::new(ctx, "nvvm.maxntid"),
                DenseI32ArrayAttribute::new(ctx, &[THREADS as i32, 1, 1]).into(),
            ),
        ],
        loc,
    ));
    Ok(module)
}
