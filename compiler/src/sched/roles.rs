//! Roles of 1-D tiles: whether a vector indexes the rows or the columns of the 2-D tiles it meets,
//! so that it can take the slice of their layout and `expand`/`broadcast` back onto them is free.
//!
//! Writes `roles`.
//!
//! Union-find over values that must share a role (the operands and result of elementwise ops, a
//! loop's init, argument, yield and result); `expand(x, 1)` makes x a row vector, `expand(x, 0)` a
//! column vector, and a row reduction's result indexes rows. The first role a class meets wins.

use super::{Ctx, Schedule};
use crate::tir::{Kernel, Op, ValueId};

struct Roles {
    parent: Vec<usize>,
    role: Vec<Option<usize>>,
}

impl Roles {
    fn find(&mut self, x: usize) -> usize {
        let mut r = x;
        while self.parent[r] != r {
            r = self.parent[r];
        }
        let mut y = x;
        while self.parent[y] != r {
            let n = self.parent[y];
            self.parent[y] = r;
            y = n;
        }
        r
    }

    fn union(&mut self, a: ValueId, b: ValueId) {
        let (ra, rb) = (self.find(a.0 as usize), self.find(b.0 as usize));
        if ra != rb {
            self.parent[rb] = ra;
            if self.role[ra].is_none() {
                self.role[ra] = self.role[rb];
            }
        }
    }

    fn set(&mut self, v: ValueId, role: usize) {
        let r = self.find(v.0 as usize);
        if self.role[r].is_none() {
            self.role[r] = Some(role);
        }
    }
}

fn rank1(k: &Kernel, v: ValueId) -> bool {
    let t = k.ty(v);
    t.shape.len() == 1 && t.numel() > 1
}

pub fn run(cx: &Ctx, s: &mut Schedule) {
    let k = cx.facts.kernel;
    let n = k.types.len();
    let mut roles = Roles {
        parent: (0..n).collect(),
        role: vec![None; n],
    };
    for inst in cx.facts.insts() {
        let res = inst.results.first().copied();
        match &inst.op {
            Op::ExpandDims { x, axis } if rank1(k, *x) => {
                // expand(x, 1) makes a column of rows: x indexes rows.
                roles.set(*x, if *axis == 1 { 0 } else { 1 });
            }
            Op::Reduce { x, axis, .. } if k.ty(*x).shape.len() == 2 => {
                if let Some(r) = res.filter(|r| rank1(k, *r)) {
                    roles.set(r, 1 - *axis);
                }
            }
            Op::Unary { .. }
            | Op::Binary { .. }
            | Op::Cmp { .. }
            | Op::Select { .. }
            | Op::Cast { .. }
            | Op::Scan { .. }
            | Op::Splat { .. } => {
                if let Some(r) = res.filter(|r| rank1(k, *r)) {
                    for o in inst.op.operands() {
                        if rank1(k, o) {
                            roles.union(r, o);
                        }
                    }
                }
            }
            Op::For { inits, body, .. } => {
                for (i, init) in inits.iter().enumerate() {
                    let arg = body.args[i + 1];
                    if rank1(k, arg) {
                        roles.union(arg, *init);
                        roles.union(arg, inst.results[i]);
                        if let Some(Op::Yield(ys)) = body.insts.last().map(|i| &i.op) {
                            roles.union(arg, ys[i]);
                        }
                    }
                }
            }
            _ => {}
        }
    }
    s.roles = (0..n)
        .map(|v| {
            let r = roles.find(v);
            roles.role[r]
        })
        .collect();
}
