//! Every inline-PTX instruction the tile lowering uses, as data.
//!
//! Inline PTX is opaque to MLIR and LLVM: they pass the assembly through unread, so a mistake in
//! it surfaces only when ptxas assembles the module. Keeping every instruction here — the assembly, its operand constraints, how many
//! registers go in and come out — makes that unchecked surface one file; the emitter checks each
//! use's operands against the template's count, so a template and its call sites cannot disagree
//! silently.

use super::emit::Ty;

/// One inline-PTX instruction: `asm` with `$i` placeholders bound by `constraints`, outputs first.
#[derive(Clone, Debug)]
pub(super) struct Template {
    pub asm: String,
    pub constraints: &'static str,
    pub operands: usize,
    pub results: usize,
    /// The type of every result (unused without results).
    pub result: Ty,
    /// Memory and synchronisation instructions must neither move nor vanish when unused.
    pub side_effects: bool,
}

fn effect(asm: impl Into<String>, constraints: &'static str, operands: usize) -> Template {
    Template {
        asm: asm.into(),
        constraints,
        operands,
        results: 0,
        result: Ty::I32,
        side_effects: true,
    }
}

/// Block-wide barrier 0: orders shared-memory writes before other threads' reads and reuse.
pub(super) fn bar_sync() -> Template {
    effect("bar.sync 0;", "", 0)
}

/// One 16-byte global → shared copy (shared address, global pointer, bytes actually read: the
/// rest of the 16 is zero-filled, so edge chunks need no separate path).
pub(super) fn cp_async_16() -> Template {
    effect("cp.async.cg.shared.global [$0], [$1], 16, $2;", "r,l,r", 3)
}

/// Closes the group of copies issued since the last commit.
pub(super) fn cp_async_commit() -> Template {
    effect("cp.async.commit_group;", "", 0)
}

/// Waits until at most `pending` committed groups are still in flight.
pub(super) fn cp_async_wait(pending: usize) -> Template {
    effect(format!("cp.async.wait_group {pending};"), "", 0)
}

/// Four 8×8 matrices of 16-bit elements from shared memory (one row address per lane), into
/// four registers per thread in the mma operand layout; `trans` transposes each matrix.
pub(super) fn ldmatrix_x4(trans: bool) -> Template {
    let t = if trans { ".trans" } else { "" };
    Template {
        asm: format!("ldmatrix.sync.aligned.m8n8.x4{t}.shared.b16 {{$0,$1,$2,$3}}, [$4];"),
        constraints: "=r,=r,=r,=r,r",
        operands: 1,
        results: 4,
        result: Ty::I32,
        side_effects: true,
    }
}

/// D = A·B + C on one m16n8k16 tile with f32 accumulation; `dtype` (bf16 or f16) names the
/// operands' element type. A is 4 registers, B 2, C and D 4 each.
pub(super) fn mma_m16n8k16(dtype: &str) -> Template {
    Template {
        asm: format!(
            "mma.sync.aligned.m16n8k16.row.col.f32.{dtype}.{dtype}.f32 {{$0,$1,$2,$3}}, \
             {{$4,$5,$6,$7}}, {{$8,$9}}, {{$10,$11,$12,$13}};"
        ),
        constraints: "=f,=f,=f,=f,r,r,r,r,r,r,f,f,f,f",
        operands: 10,
        results: 4,
        result: Ty::F32,
        side_effects: false,
    }
}

/// A 32-bit value from the lane whose index differs from this one's by the mask operand.
pub(super) fn shfl_bfly() -> Template {
    Template {
        asm: "shfl.sync.bfly.b32 $0, $1, $2, 0x1f, 0xffffffff;".into(),
        constraints: "=r,r,r",
        operands: 2,
        results: 1,
        result: Ty::I32,
        side_effects: true,
    }
}
