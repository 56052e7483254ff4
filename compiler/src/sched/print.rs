//! The schedule as text (`--emit sched`, snapshot-tested): one line per decision, values in order.

use std::fmt;

use super::wgmma::Major;
use super::{Copy, DotPlan, DotUnit, Frame, Layout, Operand, Schedule, Staging};
use crate::tir::ValueId;

impl fmt::Display for Schedule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "schedule {} for {}", self.kernel, self.target.name)?;
        match &self.declined {
            Some(why) => writeln!(f, "  strategy: {}; not hopper: {why}", self.strategy)?,
            None => writeln!(f, "  strategy: {}", self.strategy)?,
        }
        write!(
            f,
            "  block: {} warps, {} threads",
            self.num_warps, self.threads
        )?;
        match self.frame {
            Frame::Mma { wm, wn } => writeln!(f, "; mma frame {wm}x{wn} warps")?,
            Frame::Blocked => writeln!(f, "; blocked frame")?,
        }
        if let Some(n) = self.min_blocks_per_sm {
            writeln!(f, "  occupancy: at least {n} blocks per SM")?;
        }
        writeln!(
            f,
            "  shared memory: {} bytes ({} staged, {} scratch at {})",
            self.shared_bytes, self.scratch_offset, self.scratch_bytes, self.scratch_offset
        )?;
        for b in &self.buffers {
            writeln!(
                f,
                "  buffer {}: {} bytes at {}, live {}..{}",
                b.value, b.bytes, b.offset, b.live.0, b.live.1
            )?;
        }
        for v in sorted(self.staged.keys()) {
            stage(f, v, &self.staged[&v])?;
        }
        for l in sorted(self.pipelines.keys()) {
            let p = &self.pipelines[&l];
            let loads: Vec<String> = p.loads.iter().map(|v| v.to_string()).collect();
            write!(f, "  pipeline loop {l}: {} stages", p.stages)?;
            if p.ahead + 1 != p.stages {
                // Some slots are still read by dots in flight when the copies are issued.
                write!(f, ", copies {} ahead", p.ahead)?;
            }
            write!(f, " over {}", loads.join(", "))?;
            if let Some(at) = p.mbarriers {
                write!(f, "; TMA completes on mbarriers at {at} (one per slot)")?;
            }
            writeln!(f)?;
        }
        for (i, m) in self.tensor_maps.iter().enumerate() {
            let dims: Vec<String> = m.box_dims.iter().map(usize::to_string).collect();
            writeln!(
                f,
                "  tensor map {i}: load {} from param {}, box [{}] innermost first, {}-byte \
                 swizzle, {} boxes per slot",
                m.load,
                m.tensor,
                dims.join(", "),
                m.swizzle,
                m.panels
            )?;
        }
        for v in sorted(self.dots.keys()) {
            dot(f, v, &self.dots[&v])?;
        }
        for v in sorted(self.reduces.keys()) {
            let r = &self.reduces[&v];
            writeln!(
                f,
                "  reduce {v}: shuffle xor {:?}, across warps {:?}",
                r.shuffles.iter().map(|b| 1 << b).collect::<Vec<_>>(),
                r.warp_bits.iter().map(|b| 1 << b).collect::<Vec<_>>()
            )?;
        }
        for (v, why) in &self.conversions {
            writeln!(f, "  convert {v} through shared memory ({why})")?;
        }
        let mut uniform = 0;
        for (i, l) in self.layouts.iter().enumerate() {
            match l {
                Layout::Uniform => uniform += 1,
                Layout::Dist(d) => writeln!(f, "  %{i}: {d}")?,
                Layout::Shared => writeln!(f, "  %{i}: shared only")?,
                Layout::None => {}
            }
        }
        writeln!(f, "  {uniform} uniform scalar values")
    }
}

fn sorted<'a>(keys: impl Iterator<Item = &'a ValueId>) -> Vec<ValueId> {
    let mut keys: Vec<ValueId> = keys.copied().collect();
    keys.sort();
    keys
}

fn stage(f: &mut fmt::Formatter<'_>, v: ValueId, st: &Staging) -> fmt::Result {
    write!(
        f,
        "  stage {v}: {}x{} {}{} via {}",
        st.tile.rows,
        st.tile.cols,
        st.tile.dtype,
        match (st.tile.swizzle, st.tile.is_panelled() || st.async_reads) {
            (true, true) => {
                let (p, m) = st.tile.swizzle_params();
                format!(
                    " in {}-column panels, {}-byte swizzle (xor chunk with row/{p} mod {m})",
                    st.tile.panel,
                    st.tile.panel * st.tile.dtype.size()
                )
            }
            (true, false) => {
                let (p, m) = st.tile.swizzle_params();
                format!(" swizzled (xor chunk with row/{p} mod {m})")
            }
            (false, _) => String::new(),
        },
        match st.copy {
            Copy::Async => "cp.async 16B".to_string(),
            Copy::Sync => "element copies".to_string(),
            Copy::Tma(m) => format!("TMA (tensor map {m})"),
        }
    )?;
    if let Some(l) = st.pipelined {
        write!(f, ", prefetched by loop {l}")?;
    }
    // TMA writes through the async proxy itself: its mbarrier orders it before wgmma.
    if st.async_reads && !matches!(st.copy, Copy::Tma(_)) {
        write!(f, ", writers fence.proxy.async before the barrier")?;
    }
    writeln!(f)
}

fn dot(f: &mut fmt::Formatter<'_>, v: ValueId, d: &DotPlan) -> fmt::Result {
    // wgmma reads a transposed tile K-major through its descriptor, mma.sync by ldmatrix.trans.
    let transposed = match d.unit {
        DotUnit::Wgmma(_) => " (transposed: K-major)",
        DotUnit::Mma | DotUnit::Fma => " (transposed: ldmatrix.trans)",
    };
    let op = |o: &Operand| match o {
        Operand::Smem {
            value,
            trans,
            staged,
        } => format!(
            "{value} from {} smem{}",
            if *staged { "staged" } else { "scratch" },
            if *trans { transposed } else { "" }
        ),
        Operand::RegA { value } => format!("{value} from registers"),
    };
    let unit = match d.unit {
        DotUnit::Wgmma(w) => {
            let a = match w.a {
                Some(a) => format!("A K-major {}-byte swizzle SBO {}", a.row, a.desc.sbo),
                None => "A from registers".into(),
            };
            let b = match w.b.desc.major {
                Major::MN => format!(
                    "B N-major {}-byte swizzle LBO {} SBO {}",
                    w.b.row, w.b.desc.lbo, w.b.desc.sbo
                ),
                Major::K => format!("B K-major {}-byte swizzle SBO {}", w.b.row, w.b.desc.sbo),
            };
            format!(
                "wgmma.m64n{}k16 ({} warpgroups, {} per batch: fence, commit, wait {}; {a}, {b})",
                w.n, w.groups, w.k_steps, w.wait
            )
        }
        DotUnit::Mma => "mma.sync.m16n8k16".into(),
        DotUnit::Fma => "fma".into(),
    };
    writeln!(
        f,
        "  dot {v}: {}x{}x{} on {unit}; A {}; B {}",
        d.m,
        d.n,
        d.k,
        op(&d.a),
        op(&d.b)
    )
}
