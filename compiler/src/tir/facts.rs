//! Facts about one kernel's Tile IR, computed by one walk and read by every scheduling pass:
//! program order, definitions, uses and enclosing loops.
//!
//! Positions number the instructions in program order with loop bodies inline (a `for` at
//! position p has its body from p + 1). A loop's block arguments are defined where its body
//! starts and its results where its body ends, so that a value's live range in positions is
//! [definition, last use] whatever the nesting.

use std::collections::HashMap;
use std::ops::Range;

use super::{Inst, Kernel, Op, ValueId};

/// One instruction where it sits.
#[derive(Debug)]
pub struct Placed<'k> {
    pub inst: &'k Inst,
    /// The induction variables of the loops around it, outermost first.
    pub loops: Vec<ValueId>,
}

#[derive(Debug)]
pub struct Facts<'k> {
    pub kernel: &'k Kernel,
    /// Every instruction in program order; an instruction's index is its position.
    insts: Vec<Placed<'k>>,
    /// Per value: the instruction whose result it is (None for block arguments).
    def: Vec<Option<usize>>,
    /// Per value: its position of definition.
    def_at: Vec<usize>,
    /// Per value: the loop (by induction variable) whose body holds the instruction defining it;
    /// a loop's own block arguments belong to the loop around the `for`, as its results do.
    loop_of: Vec<Option<ValueId>>,
    /// Per value: the loop (by induction variable) whose block argument it is, if it is one.
    arg_of: Vec<Option<ValueId>>,
    /// Per value: the instructions that read it, in program order.
    uses: Vec<Vec<usize>>,
    /// Every value in order of definition (a loop's arguments before its body, results after).
    order: Vec<ValueId>,
    /// Per loop: the positions of its body.
    spans: HashMap<ValueId, Range<usize>>,
}

impl<'k> Facts<'k> {
    pub fn of(kernel: &'k Kernel) -> Facts<'k> {
        let n = kernel.types.len();
        let mut f = Facts {
            kernel,
            insts: Vec::new(),
            def: vec![None; n],
            def_at: vec![0; n],
            loop_of: vec![None; n],
            arg_of: vec![None; n],
            uses: vec![Vec::new(); n],
            order: Vec::with_capacity(n),
            spans: HashMap::new(),
        };
        f.walk(&kernel.body.insts, &mut Vec::new());
        f
    }

    fn define(&mut self, v: ValueId, def: Option<usize>, at: usize, lp: Option<ValueId>) {
        let i = v.0 as usize;
        self.def[i] = def;
        self.def_at[i] = at;
        self.loop_of[i] = lp;
        self.order.push(v);
    }

    fn walk(&mut self, insts: &'k [Inst], loops: &mut Vec<ValueId>) {
        for inst in insts {
            let here = self.insts.len();
            let lp = loops.last().copied();
            for o in inst.op.operands() {
                self.uses[o.0 as usize].push(here);
            }
            self.insts.push(Placed {
                inst,
                loops: loops.clone(),
            });
            if let Op::For { body, .. } = &inst.op {
                let iv = body.args[0];
                let start = here + 1;
                for a in &body.args {
                    self.define(*a, None, start, lp);
                    self.arg_of[a.0 as usize] = Some(iv);
                }
                loops.push(iv);
                self.walk(&body.insts, loops);
                loops.pop();
                let end = self.insts.len();
                self.spans.insert(iv, start..end);
                for r in &inst.results {
                    self.define(*r, Some(here), end, lp);
                }
            } else {
                for r in &inst.results {
                    self.define(*r, Some(here), here, lp);
                }
            }
        }
    }

    /// Every instruction in program order.
    pub fn insts(&self) -> impl Iterator<Item = &'k Inst> + '_ {
        self.insts.iter().map(|p| p.inst)
    }

    /// The op whose result `v` is (None for a block argument).
    pub fn def(&self, v: ValueId) -> Option<&'k Op> {
        self.def[v.0 as usize].map(|i| &self.insts[i].inst.op)
    }

    pub fn def_position(&self, v: ValueId) -> usize {
        self.def_at[v.0 as usize]
    }

    pub fn loop_of(&self, v: ValueId) -> Option<ValueId> {
        self.loop_of[v.0 as usize]
    }

    /// The loop (by induction variable) whose block argument `v` is: its induction variable or
    /// one of the values it carries from one iteration to the next. A carried value is defined
    /// where the loop is (`loop_of` names the enclosing loop) but changes every iteration.
    pub fn arg_of(&self, v: ValueId) -> Option<ValueId> {
        self.arg_of[v.0 as usize]
    }

    /// The instructions reading `v`, with their positions, in program order.
    pub fn uses(&self, v: ValueId) -> impl Iterator<Item = (usize, &Placed<'k>)> + '_ {
        self.uses[v.0 as usize].iter().map(|&i| (i, &self.insts[i]))
    }

    /// Every value in order of definition.
    pub fn order(&self) -> &[ValueId] {
        &self.order
    }

    /// The positions of the body of the loop with induction variable `iv`.
    pub fn loop_span(&self, iv: ValueId) -> Option<Range<usize>> {
        self.spans.get(&iv).cloned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loops_nest_and_positions_follow_program_order() {
        let k = crate::tir::parse_kernel(
            "kernel k(x: in f32[N])
  grid(1)
{
  %0 = const 0 : i32
  %1 = const 4 : i32
  %2 = const 1 : i32
  %3 = const 0.0 : f32
  %4 = for %5 = %0 to %1 step %2 iter(%6: f32 = %3) {
    %7 = add %6, %6 : f32
    yield %7
  }
}",
        )
        .unwrap();
        let f = Facts::of(&k);
        assert_eq!(f.insts().count(), 7);
        assert_eq!(f.loop_span(ValueId(5)), Some(5..7));
        assert_eq!(f.loop_of(ValueId(7)), Some(ValueId(5)));
        assert_eq!(f.loop_of(ValueId(6)), None);
        assert_eq!(f.arg_of(ValueId(6)), Some(ValueId(5)));
        assert_eq!(f.arg_of(ValueId(5)), Some(ValueId(5)));
        assert_eq!(f.arg_of(ValueId(7)), None);
        assert!(matches!(f.def(ValueId(4)), Some(Op::For { .. })));
        assert_eq!(f.def_position(ValueId(4)), 7);
        assert_eq!(f.def_position(ValueId(6)), 5);
        let readers: Vec<usize> = f.uses(ValueId(6)).map(|(at, _)| at).collect();
        assert_eq!(readers, vec![5, 5]);
        let order: Vec<u32> = f.order().iter().map(|v| v.0).collect();
        assert_eq!(order, vec![0, 1, 2, 3, 5, 6, 7, 4]);
    }
}
