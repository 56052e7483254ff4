//! Register layouts: which thread holds which element of a tile.
//!
//! Every layout tessel uses is *bit-linear*: a thread's first element sits at the sum of one
//! coordinate per set bit of its lane and warp index, and its registers sit at fixed offsets from
//! there. Tiles are seen as 2-D (a 1-D tile is `[n, 1]` when it indexes rows of a 2-D tile, `[1, n]`
//! otherwise), so element (r, c) has the row-major index r·cols + c in both cases. A bit whose
//! coordinate is (0, 0) replicates: the threads that differ only in it hold the same elements.
//!
//! This one form covers the accumulator layout of `mma.sync.m16n8k16`, the coalesced blocked
//! layout of loads and stores, and the slices reductions leave behind; reductions read off it
//! which lane bits need a shuffle and which warp bits need shared memory, broadcasts read off it
//! which register of the source feeds each register of the result, and a transpose is a swap of
//! coordinates.

use std::fmt;

/// A 2-D coordinate inside a tile: (row, column).
pub type Coord = [usize; 2];

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Dist {
    /// The tile as 2-D: rows, columns.
    pub shape: [usize; 2],
    /// Per lane bit (5), the coordinate it adds.
    pub lane: [Coord; 5],
    /// Per warp-index bit, the coordinate it adds.
    pub warp: Vec<Coord>,
    /// The offset of each register from the thread's base coordinate.
    pub regs: Vec<Coord>,
    /// What produced it, for the printed schedule.
    pub kind: DistKind,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DistKind {
    /// The accumulator layout of m16n8k16 over `wm × wn` warps.
    Mma { wm: usize, wn: usize },
    /// Contiguous runs of `vec` elements along columns, lanes then warps, repeated.
    Blocked { vec: usize },
    /// `parent` with one axis collapsed (a reduction's result or a broadcast's source).
    Slice,
    /// Rows and columns of another layout swapped.
    Transposed,
}

fn log2(n: usize) -> usize {
    n.trailing_zeros() as usize
}

impl Dist {
    /// The m16n8k16 accumulator layout of an `r × c` tile over `wm × wn` warps (warp w owns rows
    /// block w / wn and columns block w % wn). Each warp holds (r/wm/16)·(c/wn/8) fragments; per
    /// fragment, lane l holds rows l/4 and l/4 + 8, columns 2(l%4) and 2(l%4)+1 (PTX ISA,
    /// "Matrix Fragments for mma.m16n8k16"). Registers are ordered fragment by fragment,
    /// row-fragment major, four per fragment: (g, 2t), (g, 2t+1), (g+8, 2t), (g+8, 2t+1).
    pub fn mma(r: usize, c: usize, wm: usize, wn: usize) -> Dist {
        let (wr, wc) = (r / wm, c / wn);
        let (fm, fnn) = (wr / 16, wc / 8);
        let lane = [[0, 2], [0, 4], [1, 0], [2, 0], [4, 0]];
        let mut warp = Vec::new();
        for b in 0..log2(wn) {
            warp.push([0, wc << b]);
        }
        for b in 0..log2(wm) {
            warp.push([wr << b, 0]);
        }
        let mut regs = Vec::with_capacity(fm * fnn * 4);
        for i in 0..fm {
            for j in 0..fnn {
                for e in 0..4 {
                    regs.push([16 * i + 8 * (e / 2), 8 * j + e % 2]);
                }
            }
        }
        Dist {
            shape: [r, c],
            lane,
            warp,
            regs,
            kind: DistKind::Mma { wm, wn },
        }
    }

    /// A coalesced layout of an `r × c` tile over `warps` warps: runs of up to 4 contiguous
    /// elements per thread along columns, consecutive lanes on consecutive runs, then lanes and
    /// warps down the rows, then registers repeating the pattern until the tile is covered. Bits
    /// left over once the tile is covered replicate.
    pub fn blocked(r: usize, c: usize, warps: usize) -> Dist {
        // As wide as 16 bytes of f32 allows, narrower when the tile is too small to give every
        // thread that many.
        let vec = (r * c / (32 * warps)).clamp(1, 4).min(c);
        let mut regs: Vec<Coord> = (0..vec).map(|k| [0, k]).collect();
        let (mut rows, mut cols) = (1usize, vec);
        let next = |prefer_rows: bool, rows: &mut usize, cols: &mut usize| -> Coord {
            if !prefer_rows && *cols < c {
                let v = [0, *cols];
                *cols *= 2;
                v
            } else if *rows < r {
                let v = [*rows, 0];
                *rows *= 2;
                v
            } else if *cols < c {
                let v = [0, *cols];
                *cols *= 2;
                v
            } else {
                [0, 0]
            }
        };
        let mut lane = [[0, 0]; 5];
        for l in lane.iter_mut() {
            *l = next(false, &mut rows, &mut cols);
        }
        let warp: Vec<Coord> = (0..log2(warps))
            .map(|_| next(true, &mut rows, &mut cols))
            .collect();
        while cols < c {
            let extra: Vec<Coord> = regs.iter().map(|&[a, b]| [a, b + cols]).collect();
            regs.extend(extra);
            cols *= 2;
        }
        while rows < r {
            let extra: Vec<Coord> = regs.iter().map(|&[a, b]| [a + rows, b]).collect();
            regs.extend(extra);
            rows *= 2;
        }
        Dist {
            shape: [r, c],
            lane,
            warp,
            regs,
            kind: DistKind::Blocked { vec },
        }
    }

    /// The layout left when `axis` is collapsed to one element: every coordinate loses its
    /// `axis` component, and registers that then coincide are merged (first one kept).
    pub fn project(&self, axis: usize) -> Dist {
        let cut = |mut c: Coord| {
            c[axis] = 0;
            c
        };
        let mut regs: Vec<Coord> = Vec::new();
        for r in &self.regs {
            let p = cut(*r);
            if !regs.contains(&p) {
                regs.push(p);
            }
        }
        let mut shape = self.shape;
        shape[axis] = 1;
        Dist {
            shape,
            lane: self.lane.map(cut),
            warp: self.warp.iter().map(|c| cut(*c)).collect(),
            regs,
            kind: DistKind::Slice,
        }
    }

    pub fn transpose(&self) -> Dist {
        let sw = |[a, b]: Coord| [b, a];
        Dist {
            shape: [self.shape[1], self.shape[0]],
            lane: self.lane.map(sw),
            warp: self.warp.iter().map(|c| sw(*c)).collect(),
            regs: self.regs.iter().map(|c| sw(*c)).collect(),
            kind: DistKind::Transposed,
        }
    }

    /// The same placement seen under another 2-D shape with the same element count and
    /// row-major order (a 1-D tile switching between `[n, 1]` and `[1, n]`).
    pub fn reshaped(&self, shape: [usize; 2]) -> Dist {
        if shape == self.shape {
            return self.clone();
        }
        let mv = |[a, b]: Coord| {
            let lin = a * self.shape[1] + b;
            [lin / shape[1], lin % shape[1]]
        };
        Dist {
            shape,
            lane: self.lane.map(mv),
            warp: self.warp.iter().map(|c| mv(*c)).collect(),
            regs: self.regs.iter().map(|c| mv(*c)).collect(),
            kind: self.kind,
        }
    }

    /// Lane bits that replicate (add no coordinate), as a mask over the lane index.
    pub fn lane_replicas(&self) -> u32 {
        mask(self.lane.iter())
    }

    /// Warp bits that replicate, as a mask over the warp index.
    pub fn warp_replicas(&self) -> u32 {
        mask(self.warp.iter())
    }

    /// Lane bits whose coordinate moves along `axis`: the shuffles a reduction over it needs.
    /// The axis of this 2-D placement that a `rank`-D tile's `axis` runs along. A 1-D tile is
    /// placed as one row (`[1, n]`, the blocked layouts) or one column (`[n, 1]`, a projection
    /// of the mma accumulator), so its only axis is whichever of the two is not the size-1 one.
    pub fn tile_axis(&self, rank: usize, axis: usize) -> usize {
        if rank == 1 && self.shape[0] == 1 && self.shape[1] > 1 {
            1
        } else {
            axis
        }
    }

    pub fn lane_bits_along(&self, axis: usize) -> Vec<usize> {
        (0..5).filter(|&b| self.lane[b][axis] != 0).collect()
    }

    pub fn warp_bits_along(&self, axis: usize) -> Vec<usize> {
        (0..self.warp.len())
            .filter(|&b| self.warp[b][axis] != 0)
            .collect()
    }

    /// Whether the two describe the same placement (ignoring how they were made).
    pub fn same_placement(&self, other: &Dist) -> bool {
        self.shape == other.shape
            && self.lane == other.lane
            && self.warp == other.warp
            && self.regs == other.regs
    }

    /// Whether every thread's registers come in pairs (2i, 2i+1) that sit side by side in one row
    /// at an even column, whatever the thread: then each pair is one 2-element memory access
    /// (the mma accumulator layout, and blocked layouts with runs of 2 or more, are).
    pub fn pairs_columns(&self) -> bool {
        let even_threads = self.lane.iter().chain(&self.warp).all(|c| c[1] % 2 == 0);
        even_threads
            && self.regs.len().is_multiple_of(2)
            && self
                .regs
                .chunks(2)
                .all(|p| p[0][1] % 2 == 0 && p[1] == [p[0][0], p[0][1] + 1])
    }

    /// The elements of the tile each thread holds, counted once per distinct thread.
    pub fn per_thread(&self) -> usize {
        self.regs.len()
    }

    /// The registers that make the 16-bit A fragment of an m16n8k16 product (and of wgmma's
    /// m64nNk16, whose per-warp A fragment is the same) for rows 16i..16i+15 of each warp's block
    /// and K columns 16kk..16kk+15: element h of fragment register j (PTX ISA, "Matrix Fragments
    /// for mma.m16n8k16", A: lane l holds row l/4 + 8·(j%2), column 2(l%4) + h + 8·(j/2)) is
    /// register `[2j + h]` of the result. `None` when no register of this layout sits there for
    /// every lane alike (its lanes are not spread as the fragment's).
    pub fn mma_a_fragment(&self, i: usize, kk: usize) -> Option<[usize; 8]> {
        if self.lane != [[0, 2], [0, 4], [1, 0], [2, 0], [4, 0]] {
            return None;
        }
        let mut out = [0; 8];
        for (e, slot) in out.iter_mut().enumerate() {
            let (j, h) = (e / 2, e % 2);
            let at = [16 * i + 8 * (j % 2), 16 * kk + 8 * (j / 2) + h];
            *slot = self.regs.iter().position(|r| *r == at)?;
        }
        Some(out)
    }
}

fn mask<'a>(bits: impl Iterator<Item = &'a Coord>) -> u32 {
    bits.enumerate()
        .filter(|(_, c)| **c == [0, 0])
        .fold(0, |m, (b, _)| m | (1 << b))
}

impl fmt::Display for Dist {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let [r, c] = self.shape;
        match self.kind {
            DistKind::Mma { wm, wn } => write!(f, "mma[{r}x{c}] warps {wm}x{wn}")?,
            DistKind::Blocked { vec } => write!(f, "blocked[{r}x{c}] vec {vec}")?,
            DistKind::Slice => write!(f, "slice[{r}x{c}]")?,
            DistKind::Transposed => write!(f, "transposed[{r}x{c}]")?,
        }
        write!(f, ", {} regs/thread", self.regs.len())?;
        let (lr, wr) = (self.lane_replicas(), self.warp_replicas());
        if lr != 0 || wr != 0 {
            write!(f, ", replicated lanes {lr:#x} warps {wr:#x}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    /// Every element of the tile is held by exactly one (non-replica) thread and register.
    fn covers_once(d: &Dist, threads: usize) {
        let mut seen = HashSet::new();
        for t in 0..threads {
            let (lane, warp) = (t % 32, t / 32);
            if lane as u32 & d.lane_replicas() != 0 || warp as u32 & d.warp_replicas() != 0 {
                continue;
            }
            let mut base = [0, 0];
            for b in 0..5 {
                if lane >> b & 1 == 1 {
                    base[0] += d.lane[b][0];
                    base[1] += d.lane[b][1];
                }
            }
            for (b, w) in d.warp.iter().enumerate() {
                if warp >> b & 1 == 1 {
                    base[0] += w[0];
                    base[1] += w[1];
                }
            }
            for r in &d.regs {
                let e = [base[0] + r[0], base[1] + r[1]];
                assert!(e[0] < d.shape[0] && e[1] < d.shape[1], "{e:?} outside {d}");
                assert!(seen.insert(e), "{e:?} held twice in {d}");
            }
        }
        assert_eq!(seen.len(), d.shape[0] * d.shape[1], "{d}");
    }

    #[test]
    fn layouts_cover_their_tiles_once() {
        covers_once(&Dist::mma(64, 64, 4, 1), 128);
        covers_once(&Dist::mma(128, 128, 2, 2), 128);
        covers_once(&Dist::mma(128, 64, 4, 2), 256);
        covers_once(&Dist::blocked(4, 1024, 4), 128);
        covers_once(&Dist::blocked(64, 64, 4), 128);
        covers_once(&Dist::blocked(1, 128, 2), 64);
        covers_once(&Dist::blocked(1, 8, 4), 128);
        covers_once(&Dist::mma(64, 64, 4, 1).project(1), 128);
        covers_once(&Dist::mma(64, 32, 2, 2).project(0), 128);
        covers_once(&Dist::blocked(16, 64, 4).transpose(), 128);
    }

    #[test]
    fn mma_rows_need_two_shuffles_and_no_shared_memory() {
        let d = Dist::mma(64, 64, 4, 1);
        assert_eq!(d.lane_bits_along(1), vec![0, 1]);
        assert!(d.warp_bits_along(1).is_empty());
        let d = Dist::mma(128, 128, 2, 2);
        assert_eq!(d.warp_bits_along(1), vec![0]);
    }

    #[test]
    fn the_row_slice_of_mma_does_not_depend_on_the_columns() {
        let a = Dist::mma(64, 64, 4, 1).project(1);
        let b = Dist::mma(64, 128, 4, 1).project(1);
        assert!(a.same_placement(&b));
    }

    #[test]
    fn pairs_are_adjacent_even_columns_for_every_thread() {
        assert!(Dist::mma(64, 64, 4, 1).pairs_columns());
        assert!(Dist::mma(128, 64, 2, 2).pairs_columns());
        assert!(Dist::blocked(64, 64, 4).pairs_columns());
        // Runs of one element: neighbours belong to different threads.
        assert!(!Dist::blocked(4, 8, 4).pairs_columns());
        // Transposed, a thread's neighbours are in one column, not one row.
        assert!(!Dist::mma(64, 64, 4, 1).transpose().pairs_columns());
    }
}
