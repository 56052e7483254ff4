//! Tiles in shared memory: staging global tiles into their buffers and reading them back.
//!
//! Shared addresses are 32-bit offsets from the one `tessel_smem` array (LLVM's short pointers:
//! with 64-bit ones every shared address kept across a loop costs a register pair). 16-bit tiles
//! are XOR-swizzled by 16-byte chunk so that eight rows at one chunk — one `ldmatrix` phase — hit
//! eight distinct bank groups. A staged copy is 16-byte `cp.async` chunks when the schedule chose
//! asynchronous copies and the tensor's rows are 16-byte aligned at run time, and an ordinary
//! load-and-store of registers otherwise, in the same kernel.

use super::emit::{Arith, Emitter, ICmp, Ty, Value};
use super::entry::Lower;
use super::global::{Access, Slice};
use super::loops::find_def;
use super::ptx_templates as ptx;
use super::{err, R};
use crate::sched::{Copy, Dist, SmemTile};
use crate::tir::{DType, Op, ParamKind, ValueId};

/// Byte offset of element (row, col) of `tile` whose slot starts at byte `base`: in its panel
/// (the whole tile when unpanelled), rows of `panel` elements with swizzled 16-byte chunks, the
/// panels one after another.
pub(super) fn tile_offset(
    e: &mut Emitter,
    tile: &SmemTile,
    base: &Value,
    row: &Value,
    col: &Value,
) -> Value {
    let es = tile.dtype.size() as i64;
    let (col, panel_off) = if tile.is_panelled() {
        let sh = e.i32(tile.panel.trailing_zeros() as i64);
        let p = e.arith(Arith::ShRUI, col, &sh);
        let pb = e.i32((tile.rows * tile.panel) as i64 * es);
        let off = e.muli(&p, &pb);
        let mk = e.i32(tile.panel as i64 - 1);
        (e.andi(col, &mk), Some(off))
    } else {
        (col.clone(), None)
    };
    let col = &col;
    let rb = e.i32(tile.panel as i64 * es);
    let ro = e.muli(row, &rb);
    let co = if tile.swizzle {
        let (pp, mp) = tile.swizzle_params();
        let three = e.i32(3);
        let chunk = e.arith(Arith::ShRUI, col, &three);
        let sh = e.i32(pp.trailing_zeros() as i64);
        let ph = e.arith(Arith::ShRUI, row, &sh);
        let mk = e.i32(mp as i64 - 1);
        let ph = e.andi(&ph, &mk);
        let sw = e.arith(Arith::XOrI, &chunk, &ph);
        let sixteen = e.i32(16);
        let cb = e.muli(&sw, &sixteen);
        let seven = e.i32(7);
        let within = e.andi(col, &seven);
        let esv = e.i32(es);
        let wb = e.muli(&within, &esv);
        e.addi(&cb, &wb)
    } else {
        let esv = e.i32(es);
        e.muli(col, &esv)
    };
    let mut o = e.addi(&ro, &co);
    if let Some(p) = panel_off {
        o = e.addi(&o, &p);
    }
    e.addi(base, &o)
}

/// Whether `d`'s register pairs are each one 2-element access of `tile`: side by side at an even
/// column, which a 16-byte swizzle chunk never splits.
fn tile_pairs(d: &Dist, tile: &SmemTile) -> bool {
    d.pairs_columns() && Ty::of(tile.dtype).pair().is_some() && tile.cols.is_multiple_of(2)
}

/// The element type a register of type `t` holds.
fn dtype_of(t: Ty) -> DType {
    match t {
        Ty::F32 => DType::F32,
        Ty::Bf16 => DType::Bf16,
        Ty::F16 => DType::F16,
        Ty::I1 => DType::Bool,
        _ => DType::I32,
    }
}

impl Lower<'_> {
    pub fn barrier(&mut self) -> R<()> {
        self.e.inline_asm(&ptx::bar_sync(), &[])?;
        Ok(())
    }

    pub fn commit(&mut self) -> R<()> {
        self.e.inline_asm(&ptx::cp_async_commit(), &[])?;
        Ok(())
    }

    pub fn wait(&mut self, pending: usize) -> R<()> {
        self.e.inline_asm(&ptx::cp_async_wait(pending), &[])?;
        Ok(())
    }

    /// Orders this thread's generic-proxy writes to shared memory (cp.async, st.shared) before
    /// async-proxy reads (wgmma) that a following barrier releases.
    pub fn fence_proxy_async(&mut self) -> R<()> {
        self.e.inline_asm(&ptx::fence_proxy_async(), &[])?;
        Ok(())
    }

    pub(super) fn shared_base(&self) -> R<(Value, Value)> {
        self.smem
            .clone()
            .ok_or_else(|| err("shared memory used, but the schedule reserves none"))
    }

    /// A pointer to byte `off` of shared memory.
    pub fn smem_ptr(&mut self, off: &Value) -> R<Value> {
        let (base, _) = self.shared_base()?;
        Ok(self.e.gep(&base, off, Ty::I8))
    }

    pub fn st_shared(&mut self, off: &Value, v: &Value) -> R<()> {
        let p = self.smem_ptr(off)?;
        self.e.store(v, &p);
        Ok(())
    }

    pub fn ld_shared(&mut self, off: &Value, t: Ty) -> R<Value> {
        let p = self.smem_ptr(off)?;
        Ok(self.e.load(&p, t))
    }

    /// Writes registers in layout `d` into `tile` at slot `base` (replicas do not write).
    pub fn store_tile(&mut self, vals: &[Value], d: &Dist, tile: &SmemTile, base: &Value) -> R<()> {
        let owner = self.owner(d);
        let (br, bc) = self.base(d);
        self.when(&owner, |me| {
            let xs: Vec<Value> = vals
                .iter()
                .map(|v| {
                    if v.ty() == Ty::of(tile.dtype) {
                        v.clone()
                    } else {
                        me.cast(v, dtype_of(v.ty()), tile.dtype)
                    }
                })
                .collect();
            let step = if tile_pairs(d, tile) { 2 } else { 1 };
            for i in (0..d.regs.len()).step_by(step) {
                let r = d.regs[i];
                let row = me.e.add_const(&br, r[0] as i64);
                let col = me.e.add_const(&bc, r[1] as i64);
                let off = tile_offset(&mut me.e, tile, base, &row, &col);
                let x = if step == 2 {
                    me.e.pack2(&xs[i], &xs[i + 1])
                } else {
                    xs[i].clone()
                };
                me.st_shared(&off, &x)?;
            }
            Ok(())
        })
    }

    /// A staged tile's registers in layout `d`, read back from its slot at `base` (the copy has
    /// landed): a second read of the same global tile would cost a 64-bit address and a bounds
    /// check per element, and the slot already holds the fill and the mask.
    pub fn read_tile(&mut self, d: &Dist, tile: &SmemTile, base: &Value) -> R<Vec<Value>> {
        let (br, bc) = self.base(d);
        let t = Ty::of(tile.dtype);
        let paired = tile_pairs(d, tile);
        let step = if paired { 2 } else { 1 };
        let mut out = Vec::new();
        for i in (0..d.regs.len()).step_by(step) {
            let r = d.regs[i];
            let row = self.e.add_const(&br, r[0] as i64);
            let col = self.e.add_const(&bc, r[1] as i64);
            let off = tile_offset(&mut self.e, tile, base, &row, &col);
            if paired {
                let vt = t.pair().expect("paired types have a vector type");
                let x = self.ld_shared(&off, vt)?;
                out.extend(self.e.unpack2(&x));
            } else {
                out.push(self.ld_shared(&off, t)?);
            }
        }
        Ok(out)
    }

    /// A staged load that is not pipelined: copied into its buffer where it stands (after every
    /// earlier reader of the slot is done), waited for, and recorded as readable there.
    pub fn stage_in_place(&mut self, r: ValueId) -> R<()> {
        let Some(st) = self.s.staged.get(&r).cloned() else {
            return Ok(());
        };
        if st.pipelined.is_some() {
            return Ok(());
        }
        let base = self.e.i32(self.s.buffers[st.buffer].offset as i64);
        self.barrier()?;
        self.copy_in(r, &base)?;
        if st.copy == Copy::Async {
            self.commit()?;
            self.wait(0)?;
        }
        if st.async_reads {
            self.fence_proxy_async()?;
        }
        self.barrier()?;
        self.smem_at.insert(r, base);
        Ok(())
    }

    /// Issues the copy of staged load `v` (for starts already lowered) into slot `base`.
    pub fn copy_in(&mut self, v: ValueId, base: &Value) -> R<()> {
        let inst_op = find_def(&self.k.body, v).ok_or_else(|| err(format!("{v} has no def")))?;
        let Op::Load {
            tensor,
            starts,
            extents,
            steps,
            mask,
            fill,
        } = inst_op
        else {
            return Err(err(format!("{v} is not a load")));
        };
        let a = Access {
            tensor,
            starts: &starts,
            extents: &extents,
            steps: &steps,
        };
        let st = self.s.staged[&v].clone();
        if matches!(st.copy, Copy::Tma(_)) {
            return Err(err(format!("{v} goes by TMA, into its ring's slots only")));
        }
        let tile = st.tile;
        let blocked = Dist::blocked(tile.rows, tile.cols, self.s.num_warps as usize);
        let sync = |me: &mut Self| -> R<Vec<Value>> {
            let regs = me.load_regs(v, &blocked, &a, mask, fill)?;
            me.store_tile(&regs, &blocked, &tile, base)?;
            Ok(vec![])
        };
        if st.copy == Copy::Sync {
            sync(self)?;
            return Ok(());
        }
        // 16-byte copies need every row of the tensor to start 16-byte aligned, and no chunk to
        // straddle a row's end.
        let inner = self.dim(tensor, extents.len() - 1)?;
        let seven = self.e.i32(7);
        let z = self.e.i32(0);
        let low = self.e.andi(&inner, &seven);
        let mut aligned = self.e.cmpi(ICmp::Eq, &low, &z);
        if self.declares_strides(tensor) {
            aligned = self.strides_allow_chunks(tensor, &aligned)?;
        }
        let copies = |me: &mut Self| -> R<Vec<Value>> {
            let sl = me.slice(&a)?;
            me.cp_async_tile(&a, &sl, &tile, base)?;
            Ok(vec![])
        };
        self.if_values(&aligned, copies, sync)?;
        Ok(())
    }

    fn declares_strides(&self, tensor: usize) -> bool {
        matches!(
            &self.k.params[tensor].kind,
            ParamKind::Tensor {
                strides: Some(_),
                ..
            }
        )
    }

    /// `ok` and a declared-stride tensor's layout allows 16-byte chunks: stride 1 along the
    /// last axis (a chunk is 8 adjacent elements) and every other stride a multiple of 8 (each
    /// row, at any row step, starts 16-byte aligned). Dense strides are multiples of the inner
    /// extent, which the caller checked.
    fn strides_allow_chunks(&mut self, tensor: usize, ok: &Value) -> R<Value> {
        let strides = self.tensor_strides(tensor)?;
        let (last, outer) = strides.split_last().expect("a staged tile has two axes");
        let (one, seven, z64) = (self.e.i64(1), self.e.i64(7), self.e.i64(0));
        let mut ok = ok.clone();
        if !self.last_stride_is_one(tensor) {
            let unit = self.e.cmpi(ICmp::Eq, last, &one);
            ok = self.e.andi(&ok, &unit);
        }
        for st in outer {
            let low = self.e.andi(st, &seven);
            let fits = self.e.cmpi(ICmp::Eq, &low, &z64);
            ok = self.e.andi(&ok, &fits);
        }
        Ok(ok)
    }

    /// `tile` of slice `sl` as 16-byte chunks, each thread copying every `threads`-th chunk;
    /// chunks past the tensor's edge read 0 bytes (zero-filled).
    fn cp_async_tile(&mut self, a: &Access, sl: &Slice, tile: &SmemTile, base: &Value) -> R<()> {
        let chunks_per_row = tile.cols / 8;
        let total = tile.rows * chunks_per_row;
        let threads = self.s.threads as usize;
        let partial = !total.is_multiple_of(threads);
        let z64 = self.e.i64(0);
        let zero = self.e.i32(0);
        let sixteen = self.e.i32(16);
        let tid = self.tid.clone();
        for it in 0..total.div_ceil(threads) {
            // Which chunk this thread copies depends only on the thread: computed once.
            let (q, row, col, rel) = self.hoisted(|me| {
                let q = me.e.add_const(&tid, (it * threads) as i64);
                let cpr = me.e.i32(chunks_per_row as i64);
                let row = me.e.arith(Arith::DivUI, &q, &cpr);
                let cc = me.e.arith(Arith::RemUI, &q, &cpr);
                let eight = me.e.i32(8);
                let col = me.e.muli(&cc, &eight);
                let zero_base = me.e.i32(0);
                let rel = tile_offset(&mut me.e, tile, &zero_base, &row, &col);
                (q, row, col, rel)
            });
            let mut okq = sl.inside.clone();
            if partial {
                let inside = self.chunk_exists(&q, total);
                okq = self.e.andi(&okq, &inside);
            }
            let mut o = sl.off.clone();
            let coords = if sl.ranges.len() == 2 {
                vec![row, col]
            } else {
                let cv = self.e.i32(tile.cols as i64);
                let l = self.e.muli(&row, &cv);
                vec![self.e.addi(&l, &col)]
            };
            for (i, r) in sl.ranges.iter().enumerate() {
                let c = self.coord(r, &coords[i]);
                okq = self.coord_in_range(&okq, &c, &zero, r);
                o = self.add_scaled(&o, &c, &r.stride);
            }
            let safe = self.e.select(&okq, &o, &z64);
            let gp = self.gptr(a.tensor, &safe);
            let bytes = self.e.select(&okq, &sixteen, &zero);
            let so = self.e.addi(base, &rel);
            let (_, s32) = self.shared_base()?;
            let sa = self.e.addi(&s32, &so);
            let copy = |me: &mut Self| -> R<()> {
                me.e.inline_asm(&ptx::cp_async_16(), &[&sa, &gp, &bytes])?;
                Ok(())
            };
            if partial {
                let inside = self.chunk_exists(&q, total);
                self.when(&inside, copy)?;
            } else {
                copy(self)?;
            }
        }
        Ok(())
    }

    /// Chunk `q` is one of the tile's `total` (the last round of chunks may be short).
    fn chunk_exists(&mut self, q: &Value, total: usize) -> Value {
        let tot = self.e.i32(total as i64);
        self.e.cmpi(ICmp::Slt, q, &tot)
    }
}
