//! Register layouts: where every value's elements live.
//!
//! Writes `layouts`.
//!
//! A value takes its canonical layout ([`Canon`]) unless its producer fixes it: a staged load read
//! only by dots lives only in shared memory, a transpose swaps its operand's coordinates, a
//! reduction keeps the slice of its operand. Values are visited in order of definition, so an
//! operand's layout is known before its user's.

use std::collections::HashMap;

use super::layout::Dist;
use super::{Ctx, Frame, Layout, Operand, SchedError, Schedule};
use crate::tir::{Op, ValueId};

/// The layout a value takes when its producer is free to choose: the frame's layout for 2-D
/// tiles, its row or column slice for vectors by role.
pub struct Canon<'a> {
    cx: &'a Ctx<'a>,
    warps: usize,
    frame: Frame,
    roles: &'a [Option<usize>],
    /// Blocked frame: the column count of the first 2-D tile with a given row count, and back.
    width_of_rows: HashMap<usize, usize>,
    height_of_cols: HashMap<usize, usize>,
}

impl<'a> Canon<'a> {
    pub fn new(cx: &'a Ctx<'a>, s: &'a Schedule) -> Canon<'a> {
        let mut width_of_rows = HashMap::new();
        let mut height_of_cols = HashMap::new();
        for t in &cx.facts.kernel.types {
            if let [r, c] = t.shape[..] {
                if r > 1 && c > 1 {
                    width_of_rows.entry(r).or_insert(c);
                    height_of_cols.entry(c).or_insert(r);
                }
            }
        }
        Canon {
            cx,
            warps: s.num_warps as usize,
            frame: s.frame,
            roles: &s.roles,
            width_of_rows,
            height_of_cols,
        }
    }

    fn full(&self, r: usize, c: usize) -> Dist {
        match self.frame {
            Frame::Mma { wm, wn } if r.is_multiple_of(16 * wm) && c.is_multiple_of(8 * wn) => {
                Dist::mma(r, c, wm, wn)
            }
            _ => Dist::blocked(r, c, self.warps),
        }
    }

    fn rows_vec(&self, r: usize) -> Dist {
        match self.frame {
            Frame::Mma { wm, wn } if r.is_multiple_of(16 * wm) => {
                Dist::mma(r, 8 * wn, wm, wn).project(1)
            }
            _ => {
                let c = self.width_of_rows.get(&r).copied().unwrap_or(1);
                self.full(r, c).project(1)
            }
        }
    }

    fn cols_vec(&self, c: usize) -> Dist {
        match self.frame {
            Frame::Mma { wm, wn } if c.is_multiple_of(8 * wn) => {
                Dist::mma(16 * wm, c, wm, wn).project(0)
            }
            _ => match self.height_of_cols.get(&c) {
                Some(&r) => self.full(r, c).project(0),
                None => Dist::blocked(1, c, self.warps),
            },
        }
    }

    pub fn of(&self, v: ValueId) -> Result<Layout, SchedError> {
        let t = self.cx.facts.kernel.ty(v);
        if t.numel() == 1 {
            return Ok(Layout::Uniform);
        }
        for d in &t.shape {
            if !d.is_power_of_two() {
                return Err(self
                    .cx
                    .refuse(format!("{v}: {t}"), "tile extents must be powers of two"));
            }
        }
        Ok(Layout::Dist(match t.shape.as_slice() {
            [n] => match self.roles[v.0 as usize] {
                Some(0) => self.rows_vec(*n),
                Some(_) => self.cols_vec(*n),
                None => Dist::blocked(1, *n, self.warps),
            },
            [1, c] => self.cols_vec(*c),
            [r, 1] => self.rows_vec(*r),
            [r, c] => self.full(*r, *c),
            _ => {
                return Err(self.cx.refuse(
                    format!("{v}: {t}"),
                    "tiles of rank 3 or more are not scheduled",
                ))
            }
        }))
    }
}

pub fn run(cx: &Ctx, s: &mut Schedule) -> Result<(), SchedError> {
    let k = cx.facts.kernel;
    let staged: Vec<ValueId> = s
        .dots
        .values()
        .flat_map(|d| [&d.a, &d.b])
        .filter_map(|o| match o {
            Operand::Smem {
                value,
                staged: true,
                ..
            } => Some(*value),
            _ => None,
        })
        .collect();
    let only_dot_uses = |v: ValueId| {
        cx.facts.uses(v).all(|(_, u)| match &u.inst.op {
            Op::Dot { a, b, .. } => *a == v || *b == v,
            Op::Trans { .. } => true,
            _ => false,
        })
    };
    let mut layouts = vec![Layout::None; k.types.len()];
    let canon = Canon::new(cx, s);
    for &v in cx.facts.order() {
        let l = match cx.facts.def(v) {
            Some(Op::Load { .. }) if staged.contains(&v) && only_dot_uses(v) => Layout::Shared,
            Some(Op::Trans { x }) => match &layouts[x.0 as usize] {
                Layout::Dist(d) => Layout::Dist(d.transpose()),
                other => other.clone(),
            },
            // A scan keeps its operand's registers: each element's prefix lands where the
            // element was, so neither side converts.
            Some(Op::Scan { x, .. }) => layouts[x.0 as usize].clone(),
            Some(Op::Reduce { x, axis, .. }) => match &layouts[x.0 as usize] {
                Layout::Dist(d) if k.ty(v).numel() > 1 => {
                    let p = d.project(*axis);
                    Layout::Dist(p.reshaped(p.shape))
                }
                _ => Layout::Uniform,
            },
            _ => canon.of(v)?,
        };
        layouts[v.0 as usize] = l;
    }
    s.layouts = layouts;
    Ok(())
}
