//! The Hopper dot: which dots `wgmma.mma_async` carries, how its operand tiles sit in shared
//! memory, and the matrix descriptors that name them.
//!
//! One warpgroup (4 consecutive warps) issues `m64nNk16` on its own 64 rows of the output, so a
//! dot qualifies when its rows are exactly 64 per warpgroup, N is a multiple of 64 up to 256 (the
//! B tile is stored as 64-column panels, below), K a multiple of 64, both operands 16-bit loads
//! of one type staged from global memory, A stored M×K and B stored K×N. The accumulator
//! fragment of `m64nN` gives warp w of a warpgroup rows 16w..16w+15 with the per-8-column
//! pattern of mma.sync's accumulator, so the block's output is in `Dist::mma(m, n, warps, 1)`
//! (checked against the PTX ISA's table in [`Dist::wgmma`]'s test).
//!
//! Operand tiles are stored in 64-element (128-byte) panels: a panel holds 64 columns of every
//! row, 128 bytes per row, its 16-byte chunks XOR-swizzled by row % 8 — the 128-byte swizzle the
//! descriptor names (each 8-row group is one 1024-byte swizzle atom, so panels and slots sit at
//! 1024-byte boundaries). A (M×K) is then K-major: 8-row groups 1024 bytes apart (the stride
//! byte offset), a K step of 16 moving the start 32 bytes within the row (or to the next panel).
//! B (K×N) is N-major (the instruction's transpose-B): 64-column panels `rows · 128` bytes apart
//! (the leading byte offset), 8-row groups of K 1024 bytes apart (the stride byte offset).

use super::layout::Dist;
use crate::tir::facts::Facts;
use crate::tir::{DType, Op, ValueId};

/// Columns (16-bit elements) per operand panel: one 128-byte swizzle row.
pub const PANEL: usize = 64;
/// Bytes of one swizzle atom (8 rows of 128 bytes): operand panels start at multiples of it.
pub const ATOM_BYTES: usize = 1024;

/// Which of the operand's two dimensions is contiguous in its panels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Major {
    K,
    MN,
}

/// The swizzle modes of a matrix descriptor (bits 62–63).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Swizzle {
    None,
    B128,
    B64,
    B32,
}

impl Swizzle {
    pub fn bits(self) -> u64 {
        match self {
            Swizzle::None => 0,
            Swizzle::B128 => 1,
            Swizzle::B64 => 2,
            Swizzle::B32 => 3,
        }
    }
}

/// A matrix descriptor without its start address (which the lowering adds per slot and step).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Desc {
    pub major: Major,
    /// Leading byte offset: K-major swizzled layouts ignore it (1 by convention); N-major, the
    /// distance between 64-column panels.
    pub lbo: usize,
    /// Stride byte offset: the distance between 8-row groups.
    pub sbo: usize,
    pub swizzle: Swizzle,
}

impl Desc {
    /// The descriptor's 64 bits for an operand starting at shared address `addr` (absolute,
    /// bytes): start, LBO and SBO each >> 4 in 14 bits, base offset 0 (atoms are aligned).
    pub fn encode(&self, addr: u32) -> u64 {
        self.constant_bits() | Desc::start_bits(addr)
    }

    /// Everything but the start address.
    pub fn constant_bits(&self) -> u64 {
        let f = |bytes: usize| ((bytes as u64) >> 4) & 0x3fff;
        (f(self.lbo) << 16) | (f(self.sbo) << 32) | (self.swizzle.bits() << 62)
    }

    /// The start-address field for shared address `addr`.
    pub fn start_bits(addr: u32) -> u64 {
        ((addr as u64) >> 4) & 0x3fff
    }
}

/// What the lowering of one wgmma dot follows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WgmmaPlan {
    /// The instruction's N (its M is 64, its K 16).
    pub n: usize,
    /// Warpgroups, each on its own 64 rows.
    pub groups: usize,
    /// Instructions per dot, one per 16 of K, issued as one batch between `wgmma.fence` and
    /// `wgmma.commit_group`.
    pub k_steps: usize,
    /// Batches left in flight by the `wgmma.wait_group` after this dot's commit: 0, so the
    /// accumulators are complete before anything reads them.
    pub wait: usize,
    pub a: Desc,
    pub b: Desc,
    /// Bytes from one A panel to the next (K-major A wider than 64).
    pub a_panel_bytes: usize,
}

impl WgmmaPlan {
    pub fn new(m: usize, n: usize, k: usize) -> WgmmaPlan {
        WgmmaPlan {
            n,
            groups: m / 64,
            k_steps: k / 16,
            wait: 0,
            a: Desc {
                major: Major::K,
                lbo: 16,
                sbo: ATOM_BYTES,
                swizzle: Swizzle::B128,
            },
            b: Desc {
                major: Major::MN,
                lbo: k * PANEL * 2,
                sbo: ATOM_BYTES,
                swizzle: Swizzle::B128,
            },
            a_panel_bytes: m * PANEL * 2,
        }
    }
}

/// Whether every dot of `facts`' kernel can run on wgmma with `warps` warps (`Ok(false)`: the
/// kernel has none), or why one cannot (`@warps` must then force `warps × 1`).
pub fn qualifies(
    facts: &Facts,
    warps: usize,
    forced_frame: Option<(usize, usize)>,
) -> Result<bool, String> {
    let k = facts.kernel;
    if !facts.insts().any(|i| matches!(i.op, Op::Dot { .. })) {
        return Ok(false);
    }
    if !warps.is_multiple_of(4) {
        return Err(format!("{warps} warps are not whole warpgroups"));
    }
    if forced_frame.is_some_and(|f| f != (warps, 1)) {
        return Err("`@warps` asks for a frame other than one warp per 16 rows".into());
    }
    for inst in facts.insts() {
        let Op::Dot {
            a,
            b,
            trans_a,
            trans_b,
            ..
        } = &inst.op
        else {
            continue;
        };
        let r = inst.results[0];
        let [m, n] = [k.ty(r).shape[0], k.ty(r).shape[1]];
        let (ta, tb) = (k.ty(*a), k.ty(*b));
        let kk = ta.shape[1];
        let why = |s: String| Err(format!("dot {r}: {s}"));
        if !matches!(ta.dtype, DType::Bf16 | DType::F16) || ta.dtype != tb.dtype {
            return why(format!("{} × {} operands", ta.dtype, tb.dtype));
        }
        if m != 16 * warps {
            return why(format!(
                "{m} rows are not 64 per warpgroup of {warps} warps"
            ));
        }
        if !n.is_multiple_of(PANEL) || n > 256 {
            return why(format!("N = {n} is not a multiple of {PANEL} up to 256"));
        }
        if !kk.is_multiple_of(PANEL) {
            return why(format!("K = {kk} is not a multiple of {PANEL}"));
        }
        let staged =
            |v: ValueId, trans: bool| !trans && matches!(facts.def(v), Some(Op::Load { .. }));
        if !staged(*a, *trans_a) || !staged(*b, *trans_b) {
            return why("an operand is not an untransposed load staged from global memory".into());
        }
    }
    Ok(true)
}

impl Dist {
    /// The accumulator of `m64nNk16` over `warps` warps (`warps / 4` warpgroups on consecutive
    /// 64-row blocks), built from the PTX ISA's fragment table ("Register fragment layout for
    /// the accumulator matrix D", wgmma .m64nNk16): thread t of a warpgroup holds
    /// d[i] at row 16·(t / 32) + (t % 32) / 4 + 8·((i / 2) % 2) and column 8·(i / 4) + 2·(t % 4)
    /// + i % 2, for i < N/2.
    pub fn wgmma(n: usize, warps: usize) -> Dist {
        let lane = [[0, 2], [0, 4], [1, 0], [2, 0], [4, 0]];
        let warp = (0..warps.trailing_zeros()).map(|b| [16 << b, 0]).collect();
        let regs = (0..n / 2)
            .map(|i| [8 * ((i / 2) % 2), 8 * (i / 4) + i % 2])
            .collect();
        Dist {
            shape: [16 * warps, n],
            lane,
            warp,
            regs,
            kind: super::DistKind::Mma { wm: warps, wn: 1 },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sched::SmemTile;

    /// The ISA's table, element by element: register i of thread t (of the whole block) holds
    /// this (row, column) of the block's 16·warps × n output.
    fn isa_fragment(t: usize, i: usize) -> [usize; 2] {
        let (group, t) = (t / 128, t % 128);
        let row = 64 * group + 16 * (t / 32) + (t % 32) / 4 + 8 * ((i / 2) % 2);
        let col = 8 * (i / 4) + 2 * (t % 4) + i % 2;
        [row, col]
    }

    fn placed(d: &Dist, t: usize, i: usize) -> [usize; 2] {
        let (lane, warp) = (t % 32, t / 32);
        let mut at = d.regs[i];
        for (b, c) in d.lane.iter().enumerate() {
            if lane >> b & 1 == 1 {
                at = [at[0] + c[0], at[1] + c[1]];
            }
        }
        for (b, c) in d.warp.iter().enumerate() {
            if warp >> b & 1 == 1 {
                at = [at[0] + c[0], at[1] + c[1]];
            }
        }
        at
    }

    #[test]
    fn the_accumulator_layout_is_the_isa_fragment_table() {
        for (n, warps) in [(8, 4), (64, 4), (256, 4), (128, 8), (256, 8), (64, 16)] {
            let d = Dist::wgmma(n, warps);
            assert_eq!(d.regs.len(), n / 2);
            for t in 0..32 * warps {
                for i in 0..n / 2 {
                    assert_eq!(placed(&d, t, i), isa_fragment(t, i), "n{n} t{t} d[{i}]");
                }
            }
            // The block's frame layout places every register the same way, in the same order,
            // so the epilogue, conversions and reductions of mma tiles carry over unchanged.
            assert!(d.same_placement(&Dist::mma(16 * warps, n, warps, 1)));
        }
    }

    /// Where the staging pass puts element (row, col) of a panelled tile at 1024-aligned `base`
    /// (as `lower::shared::tile_offset` computes it): its panel, 128-byte rows, chunk ^ row % 8.
    fn staged_at(t: &SmemTile, base: usize, row: usize, col: usize) -> usize {
        let (p, within) = (col / t.panel, col % t.panel);
        let chunk = (within / 8) ^ (row % 8);
        base + p * t.rows * t.panel * 2 + row * t.panel * 2 + chunk * 16 + (within % 8) * 2
    }

    /// The 128-byte swizzle as the hardware applies it to a shared address: bits 4..7 (the
    /// 16-byte chunk) XOR bits 7..10 (the row within a 1024-byte atom).
    fn swizzle128(addr: usize) -> usize {
        addr ^ (((addr >> 7) & 7) << 4)
    }

    /// The address wgmma reads for element (mn, k) of one m64nNk16 operand through `d` at start
    /// address `start`: the canonical layouts of the 128-byte swizzle (CUTLASS's GMMA notes),
    /// in 16-byte units: K-major ((8,m),(8,2)):((8,SBO),(1,·)) and N-major
    /// ((8,n),(8,k)):((1,LBO),(8,SBO)), 8 16-bit elements per unit.
    fn wgmma_reads(d: &Desc, start: usize, mn: usize, k: usize) -> usize {
        let linear = match d.major {
            Major::K => (mn % 8) * 128 + (mn / 8) * d.sbo + k * 2,
            Major::MN => (mn % 64) * 2 + (mn / 64) * d.lbo + (k % 8) * 128 + (k / 8) * d.sbo,
        };
        swizzle128(start + linear)
    }

    #[test]
    fn descriptors_read_what_the_staging_wrote() {
        for (m, n, k) in [(128, 256, 64), (64, 64, 128), (128, 128, 64), (64, 192, 64)] {
            let p = WgmmaPlan::new(m, n, k);
            let ta = SmemTile::panelled(m, k, DType::Bf16, PANEL);
            let tb = SmemTile::panelled(k, n, DType::Bf16, PANEL);
            let (a0, b0) = (3 * ATOM_BYTES, 40 * ATOM_BYTES);
            for g in 0..p.groups {
                for kk in 0..p.k_steps {
                    // The lowering's start addresses (lower/wgmma.rs).
                    let k0 = 16 * kk;
                    let a_start =
                        a0 + g * 64 * PANEL * 2 + (k0 / PANEL) * p.a_panel_bytes + (k0 % PANEL) * 2;
                    let b_start = b0 + k0 * PANEL * 2;
                    for i in 0..16 {
                        for r in 0..64 {
                            let want = staged_at(&ta, a0, 64 * g + r, k0 + i);
                            assert_eq!(
                                wgmma_reads(&p.a, a_start, r, i),
                                want,
                                "A {m}x{k} g{g} k{kk}"
                            );
                        }
                        for c in 0..n {
                            let want = staged_at(&tb, b0, k0 + i, c);
                            assert_eq!(wgmma_reads(&p.b, b_start, c, i), want, "B {k}x{n} k{kk}");
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn descriptors_encode_field_by_field() {
        let p = WgmmaPlan::new(128, 256, 64);
        assert_eq!((p.groups, p.k_steps, p.wait), (2, 4, 0));
        // A: K-major, LBO 16 (ignored), SBO 1024, 128-byte swizzle, at 0x1_2400.
        let a = p.a.encode(0x1_2400);
        assert_eq!(
            a & 0x3fff,
            0x1_2400 >> 4,
            "start address >> 4 in bits 0..14"
        );
        assert_eq!(a >> 14 & 0x3, 0, "bits 14..16 reserved");
        assert_eq!(a >> 16 & 0x3fff, 1, "LBO 16 >> 4 in bits 16..30");
        assert_eq!(a >> 30 & 0x3, 0);
        assert_eq!(a >> 32 & 0x3fff, 64, "SBO 1024 >> 4 in bits 32..46");
        assert_eq!(a >> 46 & 0x7, 0);
        assert_eq!(
            a >> 49 & 0x7,
            0,
            "base offset 0: atoms are 1024-byte aligned"
        );
        assert_eq!(a >> 52 & 0x3ff, 0);
        assert_eq!(a >> 62, 1, "128-byte swizzle is mode 1");
        assert_eq!(a, 0x4000_0040_0001_1240);
        // B: N-major 64x256 in four 64x64 panels of 8192 bytes: LBO 8192, SBO 1024.
        let b = p.b.encode(0);
        assert_eq!(b >> 16 & 0x3fff, 8192 >> 4);
        assert_eq!(b >> 32 & 0x3fff, 64);
        assert_eq!(b, 0x4000_0040_0200_0000);
        // The start field keeps 14 bits of addr >> 4: the whole 227 KB of shared memory.
        assert_eq!(Desc::start_bits(227 * 1024), (227 * 1024) >> 4);
        assert_eq!(Swizzle::B64.bits(), 2);
        assert_eq!(Swizzle::B32.bits(), 3);
    }
}
