//! The Hopper dot: which dots `wgmma.mma_async` carries, how its operand tiles sit in shared
//! memory, and the matrix descriptors that name them.
//!
//! One warpgroup (4 consecutive warps) issues `m64nNk16` on its own 64 rows of the output, so a
//! dot qualifies when its rows are exactly 64 per warpgroup, N is 16, 32 or a multiple of 64 up to
//! 256 and K is 16, 32 or a multiple of 64 (so that a panel row, below, is 32, 64 or 128 bytes: a
//! swizzle mode), both operands 16-bit of one type, B a load staged from global memory (stored
//! K×N, or N×K for `trans_b`), A a staged load stored M×K or a value computed in registers. The
//! accumulator
//! fragment of `m64nN` gives warp w of a warpgroup rows 16w..16w+15 with the per-8-column
//! pattern of mma.sync's accumulator, so the block's output is in `Dist::mma(m, n, warps, 1)`
//! (checked against the PTX ISA's table in [`Dist::wgmma`]'s test). A value computed in
//! registers takes that frame's layout too, and its registers of K columns 16j..16j+15 are K
//! step j's A fragment ([`Dist::mma_a_fragment`], checked against the ISA's register-A table):
//! how P from the softmax feeds P·V.
//!
//! Operand tiles are stored in panels of up to 64 columns: a panel holds its columns of every row,
//! `row` = 32, 64 or 128 bytes per row, its 16-byte chunks XOR-swizzled as the staging pass always
//! does (chunk ^ (row / (8 / chunks)) % chunks): exactly the hardware's 32-, 64- or 128-byte
//! swizzle of the absolute address once the tile sits on a 1024-byte boundary (each 8-row group is
//! one swizzle atom of `8 · row` bytes). A tile whose rows run along K (A stored M×K, B stored
//! N×K) is then K-major: 8-row groups `8 · row` bytes apart (the stride byte offset), a K step of
//! 16 moving the start 32 bytes along the row (or to the next panel). B stored K×N is N-major
//! (the instruction's transpose-B): panels `K · row` bytes apart (the leading byte offset),
//! 8-row groups of K `8 · row` bytes apart (the stride byte offset).

use super::layout::Dist;
use crate::tir::facts::Facts;
use crate::tir::{DType, Op, ValueId};

/// Columns (16-bit elements) per operand panel at most: one 128-byte swizzle row.
pub const PANEL: usize = 64;
/// Bytes of the largest swizzle atom (8 rows of 128 bytes): operand tiles start at multiples of it.
pub const ATOM_BYTES: usize = 1024;

/// The panel width of a 16-bit operand tile of `cols` columns.
pub fn panel(cols: usize) -> usize {
    cols.min(PANEL)
}

/// Whether a 16-bit extent gives panel rows of a swizzle mode's width (16, 32, or a multiple of 64
/// elements).
fn swizzles(extent: usize) -> bool {
    matches!(extent, 16 | 32) || (extent >= PANEL && extent.is_multiple_of(PANEL))
}

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
    /// The mode whose swizzle row is `bytes` wide.
    pub fn of_row(bytes: usize) -> Swizzle {
        match bytes {
            128 => Swizzle::B128,
            64 => Swizzle::B64,
            32 => Swizzle::B32,
            _ => Swizzle::None,
        }
    }

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

/// One operand read through a descriptor: the descriptor, the bytes of a panel row (the swizzle
/// width) and the bytes from one panel to the next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Side {
    pub desc: Desc,
    pub row: usize,
    pub panel_bytes: usize,
}

impl Side {
    /// A K-major operand of `rows` (M or N) × `k`, stored `rows` × `k` in panels of up to 64 of
    /// K: 8-row groups `8 · row` apart; LBO is ignored by swizzled K-major layouts (16 by
    /// convention) since one K step (32 bytes) never crosses a swizzle row.
    pub fn k_major(rows: usize, k: usize) -> Side {
        let row = panel(k) * 2;
        Side {
            desc: Desc {
                major: Major::K,
                lbo: 16,
                sbo: 8 * row,
                swizzle: Swizzle::of_row(row),
            },
            row,
            panel_bytes: rows * row,
        }
    }

    /// An N-major B of `k` × `n`, stored `k` × `n` in panels of up to 64 of N: panels (the
    /// leading byte offset) `k · row` apart, 8-row groups of K `8 · row` apart.
    pub fn n_major(k: usize, n: usize) -> Side {
        let row = panel(n) * 2;
        Side {
            desc: Desc {
                major: Major::MN,
                lbo: k * row,
                sbo: 8 * row,
                swizzle: Swizzle::of_row(row),
            },
            row,
            panel_bytes: k * row,
        }
    }

    /// Bytes from the operand's start to its K step at `k0`: along the panel row (to the next
    /// panel every 64) when K-major, down the panels' rows when N-major.
    pub fn k_step(&self, k0: usize) -> usize {
        match self.desc.major {
            Major::K => {
                let per_row = self.row / 2;
                (k0 / per_row) * self.panel_bytes + (k0 % per_row) * 2
            }
            Major::MN => k0 * self.row,
        }
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
    /// A through its descriptor (always K-major), or `None`: A from registers, a value in the
    /// accumulator layout whose registers of K columns 16j..16j+15 are step j's fragment
    /// ([`Dist::mma_a_fragment`]).
    pub a: Option<Side>,
    pub b: Side,
}

impl WgmmaPlan {
    /// The plan of an `m × n × k` dot of 16-bit operands, B stored `b_major` (`Major::K`: the
    /// tile is N × K, a `trans_b` dot's), A from registers when `a_in_registers`.
    pub fn new(m: usize, n: usize, k: usize, b_major: Major, a_in_registers: bool) -> WgmmaPlan {
        WgmmaPlan {
            n,
            groups: m / 64,
            k_steps: k / 16,
            wait: 0,
            a: (!a_in_registers).then(|| Side::k_major(m, k)),
            b: match b_major {
                Major::K => Side::k_major(n, k),
                Major::MN => Side::n_major(k, n),
            },
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
        let Op::Dot { a, b, trans_a, .. } = &inst.op else {
            continue;
        };
        let r = inst.results[0];
        let [m, n] = [k.ty(r).shape[0], k.ty(r).shape[1]];
        let (ta, tb) = (k.ty(*a), k.ty(*b));
        let kk = if *trans_a { ta.shape[0] } else { ta.shape[1] };
        let why = |s: String| Err(format!("dot {r}: {s}"));
        if !matches!(ta.dtype, DType::Bf16 | DType::F16) || ta.dtype != tb.dtype {
            return why(format!("{} × {} operands", ta.dtype, tb.dtype));
        }
        if m != 16 * warps {
            return why(format!(
                "{m} rows are not 64 per warpgroup of {warps} warps"
            ));
        }
        if !swizzles(n) || n > 256 {
            return why(format!(
                "N = {n} is not 16, 32 or a multiple of {PANEL} up to 256"
            ));
        }
        if !swizzles(kk) {
            return why(format!("K = {kk} is not 16, 32 or a multiple of {PANEL}"));
        }
        let load = |v: ValueId| matches!(facts.def(v), Some(Op::Load { .. }));
        // A is read K-major from its staged tile, or from registers: computed there, it takes
        // the frame's canonical layout, the accumulator's (sched/layouts.rs), unless its producer
        // keeps another's: a transpose swaps its operand's, a scan keeps its operand's.
        let in_registers = !matches!(
            facts.def(*a),
            Some(Op::Load { .. } | Op::Trans { .. } | Op::Scan { .. }) | None
        );
        if *trans_a || !(load(*a) || in_registers) {
            return why(
                "A is neither an untransposed staged load nor computed in registers".into(),
            );
        }
        // B is a staged load, stored K × N (N-major) or, transposed, N × K (K-major).
        if !load(*b) {
            return why("B is not a load staged from global memory".into());
        }
    }
    Ok(true)
}

/// The first dot of a kernel that `qualifies` only through a form of the Hopper path no GPU run
/// has checked yet: B read K-major (`trans_b`) or A from registers. The address and fragment
/// models of both are unit-tested here, but until their numerics have run on a Hopper GPU the
/// automatic choice leaves such kernels on Ampere; `--strategy hopper` or `--hopper-preview`
/// takes them.
pub fn unproven(facts: &Facts) -> Option<String> {
    facts.insts().find_map(|inst| {
        let Op::Dot { a, trans_b, .. } = &inst.op else {
            return None;
        };
        let r = inst.results[0];
        let form = if *trans_b {
            "B read K-major (trans_b)"
        } else if !matches!(facts.def(*a), Some(Op::Load { .. })) {
            "A from registers"
        } else {
            return None;
        };
        Some(format!(
            "dot {r}: {form} has not run on a GPU yet (--hopper-preview takes it)"
        ))
    })
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
    /// (as `lower::shared::tile_offset` computes it): its panel, then its row, chunks swizzled.
    fn staged_at(t: &SmemTile, base: usize, row: usize, col: usize) -> usize {
        let (p, within) = (col / t.panel, col % t.panel);
        let (per_phase, phases) = t.swizzle_params();
        let chunk = (within / 8) ^ ((row / per_phase) % phases);
        base + p * t.rows * t.panel * 2 + row * t.panel * 2 + chunk * 16 + (within % 8) * 2
    }

    /// The swizzle of mode `s` as the hardware applies it to a shared address: the 16-byte chunk
    /// bits (from bit 4) XOR the bits from bit 7, 3, 2 or 1 of them for 128, 64 or 32 bytes.
    fn swizzled(s: Swizzle, addr: usize) -> usize {
        let bits = match s {
            Swizzle::B128 => 3,
            Swizzle::B64 => 2,
            Swizzle::B32 => 1,
            Swizzle::None => 0,
        };
        addr ^ (((addr >> 7) & ((1 << bits) - 1)) << 4)
    }

    /// The address wgmma reads for element (mn, k) of one m64nNk16 operand through `d` at start
    /// address `start`, rows of `row` bytes: the canonical swizzled layouts (CUTLASS's GMMA
    /// notes), in 16-byte units with W = row / 16: K-major ((8,m),(W,·)):((W,SBO),(1,·)) and
    /// N-major ((W,n),(8,k)):((1,LBO),(W,SBO)), 8 16-bit elements per unit.
    fn wgmma_reads(d: &Desc, row: usize, start: usize, mn: usize, k: usize) -> usize {
        let per_row = row / 2;
        let linear = match d.major {
            Major::K => (mn % 8) * row + (mn / 8) * d.sbo + k * 2,
            Major::MN => {
                (mn % per_row) * 2 + (mn / per_row) * d.lbo + (k % 8) * row + (k / 8) * d.sbo
            }
        };
        swizzled(d.swizzle, start + linear)
    }

    /// The staged tile of one operand and where wgmma reads its element (mn, k) at K step `k0`
    /// (the lowering's start addresses, lower/wgmma.rs), checked for every element against
    /// where the staging put it. `rows` is the operand's M (A, warpgroup `g`) or N (B) extent.
    fn check_side(side: &Side, tile: &SmemTile, rows: usize, k: usize, g: usize, what: &str) {
        let base = 7 * ATOM_BYTES;
        for kk in 0..k / 16 {
            let k0 = 16 * kk;
            let start = base + g * 64 * side.row + side.k_step(k0);
            let extent = if what == "A" { 64 } else { rows };
            for i in 0..16 {
                for r in 0..extent {
                    let mn = if what == "A" { 64 * g + r } else { r };
                    let want = match side.desc.major {
                        Major::K => staged_at(tile, base, mn, k0 + i),
                        Major::MN => staged_at(tile, base, k0 + i, mn),
                    };
                    let got = wgmma_reads(&side.desc, side.row, start, r, i);
                    assert_eq!(got, want, "{what} {rows}x{k} {:?} g{g} k{kk}", side.desc);
                }
            }
        }
    }

    #[test]
    fn descriptors_read_what_the_staging_wrote() {
        let shapes = [
            (128, 256, 64),
            (64, 64, 128),
            (128, 128, 64),
            (64, 192, 64),
            (64, 32, 32),
            (128, 16, 16),
            (64, 256, 16),
            (64, 64, 32),
            (64, 128, 64),
        ];
        for (m, n, k) in shapes {
            for b_major in [Major::MN, Major::K] {
                let p = WgmmaPlan::new(m, n, k, b_major, false);
                assert_eq!(p.b.desc.major, b_major);
                let a = p.a.expect("A by descriptor");
                let ta = SmemTile::panelled(m, k, DType::Bf16, PANEL);
                for g in 0..p.groups {
                    check_side(&a, &ta, m, k, g, "A");
                }
                let tb = match b_major {
                    Major::K => SmemTile::panelled(n, k, DType::Bf16, PANEL),
                    Major::MN => SmemTile::panelled(k, n, DType::Bf16, PANEL),
                };
                check_side(&p.b, &tb, n, k, 0, "B");
            }
            // A from registers names no descriptor; B's is the same.
            let r = WgmmaPlan::new(m, n, k, Major::K, true);
            assert_eq!(
                (r.a, r.b),
                (None, WgmmaPlan::new(m, n, k, Major::K, false).b)
            );
        }
    }

    /// The kernels' own schedules: every operand a wgmma dot reads through a descriptor, from
    /// the tile the staging pass chose for it, at every K step of every warpgroup.
    #[test]
    fn scheduled_tiles_are_read_where_staged() {
        use crate::sched::{schedule_with, DotUnit, Operand, SchedOptions, Strategy};
        let preview = SchedOptions {
            hopper_preview: true,
            ..Default::default()
        };
        use crate::sema::{compile_source, Overrides};
        let sources = [
            include_str!("../../../dsl-examples/flash_attention.tsl"),
            include_str!("../../../dsl-examples/linear.tsl"),
            include_str!("../../../dsl-examples/matmul.tsl"),
        ];
        let sm90a = crate::Target::lookup("sm_90a").unwrap();
        let mut sides = 0;
        for d in [64, 128] {
            let mut o = Overrides::new();
            o.insert(
                "D".into(),
                crate::sema::parse_const(&d.to_string()).unwrap(),
            );
            for src in sources {
                for k in compile_source(src, &o).unwrap() {
                    let s = schedule_with(&k, sm90a, &preview).unwrap();
                    if s.strategy != Strategy::Hopper {
                        continue;
                    }
                    for p in s.dots.values() {
                        let DotUnit::Wgmma(w) = p.unit else { continue };
                        if let (Some(a), Operand::Smem { value, .. }) = (w.a, &p.a) {
                            for g in 0..w.groups {
                                check_side(&a, &s.staged[value].tile, p.m, p.k, g, "A");
                            }
                            sides += 1;
                        }
                        if let Operand::Smem { value, .. } = &p.b {
                            check_side(&w.b, &s.staged[value].tile, p.n, p.k, 0, "B");
                            sides += 1;
                        }
                    }
                }
            }
        }
        // Per D: flash fwd's Q, K, V and dQ's Q, K, dO, V, K; linear's and linear_residual's
        // x and W; matmul's A and B.
        assert_eq!(sides, 2 * (3 + 5 + 4 + 2), "{sides}");
    }

    /// The ISA's table for wgmma's A from registers ("Register fragment layout for matrix A",
    /// m64nNk16, 16-bit types): thread t of a warpgroup holds a_j's half h at row
    /// 16·(t / 32) + (t % 32) / 4 + 8·(j % 2), column 2·(t % 4) + h + 8·(j / 2) of the step's
    /// 64 × 16 block of A.
    fn isa_a_fragment(t: usize, j: usize, h: usize) -> [usize; 2] {
        let (group, t) = (t / 128, t % 128);
        let row = 64 * group + 16 * (t / 32) + (t % 32) / 4 + 8 * (j % 2);
        [row, 2 * (t % 4) + h + 8 * (j / 2)]
    }

    /// The same table as CuTe writes it (its SM90 16-bit register-A layout, thread × value →
    /// index into the 64 × 16 block stored M-major): ((4,8,4),(2,2,2)):((128,1,16),(64,8,512)),
    /// value v = 2j + h.
    fn cute_a_fragment(t: usize, j: usize, h: usize) -> [usize; 2] {
        let (group, t) = (t / 128, t % 128);
        let v = 2 * j + h;
        let idx = 128 * (t % 4)
            + (t / 4) % 8
            + 16 * (t / 32)
            + 64 * (v % 2)
            + 8 * ((v / 2) % 2)
            + 512 * (v / 4);
        [64 * group + idx % 64, idx / 64]
    }

    #[test]
    fn register_a_is_the_accumulator_of_its_columns() {
        for t in 0..256 {
            for e in 0..8 {
                assert_eq!(
                    isa_a_fragment(t, e / 2, e % 2),
                    cute_a_fragment(t, e / 2, e % 2)
                );
            }
        }
        // P (64 × BN) from the softmax of QKᵀ's accumulator feeds P·V: for every K step, every
        // thread's four registers are the accumulator's registers of those 16 columns.
        for (k, warps) in [(16, 4), (64, 4), (128, 4), (64, 8), (256, 8)] {
            let d = Dist::wgmma(k, warps);
            for kk in 0..k / 16 {
                let f = d
                    .mma_a_fragment(0, kk)
                    .expect("the accumulator is A's fragment");
                for t in 0..32 * warps {
                    for (e, &reg) in f.iter().enumerate() {
                        let [r, c] = isa_a_fragment(t, e / 2, e % 2);
                        let got = placed(&d, t, reg);
                        assert_eq!(
                            got,
                            [r, 16 * kk + c],
                            "k{k} t{t} step {kk} a{}.{}",
                            e / 2,
                            e % 2
                        );
                    }
                }
                // Columns 16kk.. of the accumulator are its registers 8kk..8kk+7, in order.
                assert_eq!(f.to_vec(), (8 * kk..8 * kk + 8).collect::<Vec<_>>());
            }
        }
        // Ampere's mma.sync A from registers reads the same fragments (two row blocks per warp
        // here: 32 rows each on 4 warps).
        let d = Dist::mma(128, 64, 4, 1);
        for i in 0..2 {
            for kk in 0..4 {
                let f0 = (i * 8 + 2 * kk) * 4;
                let f1 = f0 + 4;
                let want = [f0, f0 + 1, f0 + 2, f0 + 3, f1, f1 + 1, f1 + 2, f1 + 3];
                assert_eq!(d.mma_a_fragment(i, kk), Some(want));
            }
        }
        // A blocked layout is no fragment.
        assert_eq!(Dist::blocked(64, 64, 4).mma_a_fragment(0, 0), None);
    }

    #[test]
    fn descriptors_encode_field_by_field() {
        let p = WgmmaPlan::new(128, 256, 64, Major::MN, false);
        assert_eq!((p.groups, p.k_steps, p.wait), (2, 4, 0));
        // A: K-major, LBO 16 (ignored), SBO 1024, 128-byte swizzle, at 0x1_2400.
        let a = p.a.unwrap().desc.encode(0x1_2400);
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
        let b = p.b.desc.encode(0);
        assert_eq!(b >> 16 & 0x3fff, 8192 >> 4);
        assert_eq!(b >> 32 & 0x3fff, 64);
        assert_eq!(b, 0x4000_0040_0200_0000);
        // The start field keeps 14 bits of addr >> 4: the whole 227 KB of shared memory.
        assert_eq!(Desc::start_bits(227 * 1024), (227 * 1024) >> 4);
        // Narrower tiles: 32-column rows are the 64-byte swizzle (mode 2), 16-column the 32-byte
        // (mode 3), their 8-row groups 512 and 256 bytes apart.
        let p = WgmmaPlan::new(64, 16, 32, Major::MN, false);
        let (a, b) = (p.a.unwrap().desc, p.b.desc);
        assert_eq!((a.swizzle.bits(), a.sbo), (2, 512));
        assert_eq!((b.swizzle.bits(), b.sbo, b.lbo), (3, 256, 32 * 32));
        assert_eq!(a.encode(0) >> 62, 2);
        assert_eq!(b.encode(0) >> 62, 3);
        // K-major B (a `trans_b` dot's N × K tile): A's descriptor, N rows for M. Flash
        // attention's K tile at D = 128: 128-byte swizzle, 8-row groups 1024 bytes apart, the
        // second 64 of D one 64 × 64 panel (8 KB) on.
        let p = WgmmaPlan::new(64, 64, 128, Major::K, false);
        assert_eq!(p.b, Side::k_major(64, 128));
        assert_eq!(
            (p.b.desc.sbo, p.b.desc.lbo, p.b.panel_bytes),
            (1024, 16, 8192)
        );
        assert_eq!(p.b.desc.encode(0), 0x4000_0040_0001_0000);
        assert_eq!(
            (p.b.k_step(48), p.b.k_step(64), p.b.k_step(80)),
            (96, 8192, 8224)
        );
    }
}
