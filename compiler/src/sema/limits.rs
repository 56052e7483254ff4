//! What a tile may be, checked where the tile is written so that the error points at the source:
//! every extent a power of two, and no tile larger than one block of threads can hold.
//!
//! Both used to surface late: a non-power-of-two extent passed `check` and `interpret` and failed
//! in `compile` naming an IR value, and a tile of a million elements made the code generator run
//! for minutes (it unrolls a tile into per-thread registers).

use super::elaborate::{err, Elaborator, Res, Val};
use crate::syntax::ast::{self, Span};

/// The most threads a block has (32 warps), and the most elements of one tile each of them is
/// given in registers. A tile beyond their product cannot be held (an SM has 64K 32-bit
/// registers, 255 per thread; its shared memory, 228 KB, holds 57K f32), and compiling it would
/// take minutes before failing.
pub(super) const MAX_THREADS: usize = 1024;
pub(super) const MAX_PER_THREAD: usize = 64;
pub(super) const MAX_TILE_ELEMENTS: usize = MAX_THREADS * MAX_PER_THREAD;

impl Elaborator<'_> {
    /// A tile extent: a compile-time power of two, at most `MAX_TILE_ELEMENTS`.
    pub(super) fn extent(&mut self, e: &ast::Expr) -> Res<usize> {
        let v = self.const_int(e, "a tile dimension")?;
        if !(1..=1 << 20).contains(&v) {
            return Err(err(
                e.span,
                format!("tile dimension {v} is out of range"),
                "must be between 1 and 2^20",
            ));
        }
        if !(v as u64).is_power_of_two() {
            let up = (v as u64).next_power_of_two();
            return Err(err(
                e.span,
                format!("tile dimension {v} is not a power of two"),
                "tile extents must be powers of two",
            )
            .with_note(format!(
                "threads, vector accesses and matrix-unit fragments divide a tile by powers of two; \
                 use {up} (loads and stores are masked at the tensor's edges, so a larger tile \
                 costs no correctness)"
            )));
        }
        Ok(v as usize)
    }

    /// Refuses a tile value with more elements than a block can hold.
    pub(super) fn check_tile_size(&self, v: &Val, span: Span) -> Res<()> {
        let Val::Tile(id) = v else { return Ok(()) };
        let ty = self.ty(*id);
        let n = ty
            .shape
            .iter()
            .try_fold(1usize, |a, &d| a.checked_mul(d))
            .unwrap_or(usize::MAX);
        if n <= MAX_TILE_ELEMENTS {
            return Ok(());
        }
        Err(err(
            span,
            format!("a tile of {n} elements ({ty}) is too large"),
            format!("at most {MAX_TILE_ELEMENTS} elements"),
        )
        .with_note(format!(
            "a tile lives in the registers of one block: at most {MAX_THREADS} threads with \
             {MAX_PER_THREAD} elements each; split the work over more programs of the grid"
        )))
    }
}
