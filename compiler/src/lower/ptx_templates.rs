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
    pub constraints: String,
    pub operands: usize,
    pub results: usize,
    /// The type of every result (unused without results).
    pub result: Ty,
    /// Memory and synchronisation instructions must neither move nor vanish when unused.
    pub side_effects: bool,
}

fn effect(asm: impl Into<String>, constraints: &str, operands: usize) -> Template {
    Template {
        asm: asm.into(),
        constraints: constraints.into(),
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
        constraints: "=r,=r,=r,=r,r".into(),
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
        constraints: "=f,=f,=f,=f,r,r,r,r,r,r,f,f,f,f".into(),
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
        constraints: "=r,r,r".into(),
        operands: 2,
        results: 1,
        result: Ty::I32,
        side_effects: true,
    }
}

/// Makes this thread's generic-proxy shared-memory writes visible to the async proxy (wgmma).
pub(super) fn fence_proxy_async() -> Template {
    effect("fence.proxy.async.shared::cta;", "", 0)
}

/// Orders register accesses before the wgmma that follow (their accumulators, written since).
pub(super) fn wgmma_fence() -> Template {
    effect("wgmma.fence.sync.aligned;", "", 0)
}

/// Closes the batch of wgmma issued since the last commit.
pub(super) fn wgmma_commit() -> Template {
    effect("wgmma.commit_group.sync.aligned;", "", 0)
}

/// Waits until at most `pending` committed wgmma batches are in flight.
pub(super) fn wgmma_wait(pending: usize) -> Template {
    effect(format!("wgmma.wait_group.sync.aligned {pending};"), "", 0)
}

/// `wgmma_wait` with a batch's accumulators passed through it (tied in and out, no PTX of
/// their own): whatever reads the accumulators reads this instruction's results, so LLVM cannot
/// move the read above the wait (the registers are still being written until it returns).
pub(super) fn wgmma_wait_for(pending: usize, regs: usize) -> Template {
    let mut constraints: Vec<String> = vec!["=f".into(); regs];
    constraints.extend((0..regs).map(|i| i.to_string()));
    Template {
        asm: format!("wgmma.wait_group.sync.aligned {pending};"),
        constraints: constraints.join(","),
        operands: regs,
        results: regs,
        result: Ty::F32,
        side_effects: true,
    }
}

/// `wgmma.fence` with the `regs` 32-bit registers of register A operands passed through it
/// (tied in and out, no PTX of their own): the wgmma read the fence's results, so the
/// instructions that pack them cannot sink below the fence (ptxas would then serialise the
/// batch, or the wgmma would read registers written after the fence).
pub(super) fn wgmma_fence_for(regs: usize) -> Template {
    let mut constraints: Vec<String> = vec!["=r".into(); regs];
    constraints.extend((0..regs).map(|i| i.to_string()));
    Template {
        asm: "wgmma.fence.sync.aligned;".into(),
        constraints: constraints.join(","),
        operands: regs,
        results: regs,
        result: Ty::I32,
        side_effects: true,
    }
}

/// One warpgroup's `wgmma.mma_async.m64nNk16` with f32 accumulators, as data: the template
/// follows from it.
#[derive(Clone, Copy, Debug)]
pub(super) struct Wgmma<'a> {
    pub n: usize,
    /// The operands' element type (bf16 or f16).
    pub dtype: &'a str,
    /// A from four 32-bit registers per thread (the m16n8k16 A fragment of the thread's warp,
    /// each register two 16-bit elements), else by descriptor.
    pub a_regs: bool,
    /// B stored N-major (the instruction's transpose-B); K-major otherwise.
    pub trans_b: bool,
    /// D += A·B (the accumulators tied in); otherwise D = A·B (scale-d 0), nothing read.
    pub accumulate: bool,
}

/// D (+)= A·B on one warpgroup's m64nNk16 tile, N/2 accumulators per thread. Operands: A (its
/// descriptor, or its four registers), B's descriptor, then (accumulating) the accumulators;
/// results: the accumulators. Its reads of shared memory and of registers continue after it
/// issues, so it must not move across fences, waits or barriers.
pub(super) fn wgmma_m64nk16(w: Wgmma) -> Template {
    let regs = w.n / 2;
    let d: Vec<String> = (0..regs).map(|i| format!("${i}")).collect();
    let a_ops = if w.a_regs { 4 } else { 1 };
    let a: Vec<String> = (regs..regs + a_ops).map(|i| format!("${i}")).collect();
    let a = if w.a_regs {
        format!("{{{}}}", a.join(","))
    } else {
        a[0].clone()
    };
    let b = regs + a_ops;
    let mut constraints: Vec<String> = vec!["=f".into(); regs];
    constraints.extend(std::iter::repeat_n(
        if w.a_regs { "r" } else { "l" }.to_string(),
        a_ops,
    ));
    constraints.push("l".into());
    if w.accumulate {
        constraints.extend((0..regs).map(|i| i.to_string()));
    }
    // Register A takes no transpose-A immediate; a descriptor A is always K-major (0).
    let trans_a = if w.a_regs { "" } else { " 0," };
    let dt = w.dtype;
    Template {
        asm: format!(
            "wgmma.mma_async.sync.aligned.m64n{}k16.f32.{dt}.{dt} {{{}}}, {a}, ${b}, {}, 1, 1,{trans_a} {};",
            w.n,
            d.join(","),
            u8::from(w.accumulate),
            u8::from(w.trans_b)
        ),
        constraints: constraints.join(","),
        operands: a_ops + 1 + if w.accumulate { regs } else { 0 },
        results: regs,
        result: Ty::F32,
        side_effects: true,
    }
}

/// Initialises the mbarrier at shared address `$0` for one arrival per phase (the thread that
/// announces a slot's bytes); TMA's completed bytes finish the phase.
pub(super) fn mbarrier_init() -> Template {
    effect("mbarrier.init.shared::cta.b64 [$0], 1;", "r", 1)
}

/// Makes `mbarrier.init` visible to the async proxy (TMA's complete_tx) and to other threads,
/// before the barrier that follows it.
pub(super) fn fence_mbarrier_init() -> Template {
    effect("fence.mbarrier_init.release.cluster;", "", 0)
}

/// Ends the mbarrier at `$0` (every phase complete, no thread waiting) so that its memory may be
/// initialised again when its loop is next entered.
pub(super) fn mbarrier_inval() -> Template {
    effect("mbarrier.inval.shared::cta.b64 [$0];", "r", 1)
}

/// The one arrival of a slot's phase at mbarrier `$0`, announcing the `bytes` that the slot's
/// TMA copies will complete on it.
pub(super) fn mbarrier_arrive_expect_tx(bytes: usize) -> Template {
    effect(
        format!("mbarrier.arrive.expect_tx.shared::cta.b64 _, [$0], {bytes};"),
        "r",
        1,
    )
}

/// Waits until the phase of parity `$1` of mbarrier `$0` has completed (`try_wait` suspends a
/// while, then the loop asks again; `${:uid}` keeps each copy's label unique).
pub(super) fn mbarrier_wait_parity() -> Template {
    effect(
        "{\\0A\\09.reg .pred p;\\0A\\09TW${:uid}:\\0A\\09\
         mbarrier.try_wait.parity.shared::cta.b64 p, [$0], $1;\\0A\\09@!p bra TW${:uid};\\0A\\09}",
        "r,r",
        2,
    )
}

/// One box of a `rank`-dimensional tensor map into shared memory, completing on an mbarrier.
/// Operands: the shared destination, the tensor map's generic address, `rank` i32 coordinates
/// (innermost first, signed: boxes past any edge are zero-filled), the mbarrier.
pub(super) fn tma_load(rank: usize) -> Template {
    let coords: Vec<String> = (0..rank).map(|i| format!("${}", i + 2)).collect();
    let mut constraints = vec!["r", "l"];
    constraints.extend(std::iter::repeat_n("r", rank + 1));
    effect(
        format!(
            "cp.async.bulk.tensor.{rank}d.shared::cluster.global.mbarrier::complete_tx::bytes \
             [$0], [$1, {{{}}}], [${}];",
            coords.join(", "),
            rank + 2
        ),
        &constraints.join(","),
        rank + 3,
    )
}
