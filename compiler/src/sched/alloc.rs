//! Shared-memory allocation by liveness.
//!
//! The kernel's values are numbered in program order (loop bodies inline); a buffer lives from
//! its definition to its last use, stretched to the end of every loop that re-reads it, or over
//! its whole loop when a pipeline prefetches into it. Buffers whose live ranges overlap interfere
//! (edges of a petgraph graph); each is placed, largest first, at the lowest 16-byte-aligned
//! offset clear of the buffers it interferes with that are already placed.

use std::collections::HashMap;

use petgraph::graph::{NodeIndex, UnGraph};

use crate::tir::{Block, Kernel, Op, ValueId};

#[derive(Debug, Clone, PartialEq)]
pub struct BufferUse {
    pub value: ValueId,
    pub bytes: usize,
    /// Pipelined: live for the whole of this loop (named by its induction variable).
    pub whole_loop: Option<ValueId>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Buffer {
    pub value: ValueId,
    pub bytes: usize,
    pub offset: usize,
    /// Program positions [first, last].
    pub live: (usize, usize),
}

#[derive(Default)]
struct Positions {
    def: HashMap<ValueId, usize>,
    /// Per use: the position and the loops (innermost last) around it.
    uses: HashMap<ValueId, Vec<(usize, Vec<ValueId>)>>,
    loops: HashMap<ValueId, (usize, usize)>,
    next: usize,
}

fn number(block: &Block, stack: &mut Vec<ValueId>, p: &mut Positions) {
    for inst in &block.insts {
        let here = p.next;
        p.next += 1;
        for o in inst.op.operands() {
            p.uses.entry(o).or_default().push((here, stack.clone()));
        }
        for r in &inst.results {
            p.def.insert(*r, here);
        }
        if let Op::For { body, .. } = &inst.op {
            let iv = body.args[0];
            let start = p.next;
            for a in &body.args {
                p.def.insert(*a, start);
            }
            stack.push(iv);
            number(body, stack, p);
            stack.pop();
            p.loops.insert(iv, (start, p.next));
            // The loop's results appear after its body.
            for r in &inst.results {
                p.def.insert(*r, p.next);
            }
        }
    }
}

/// Places `uses` in shared memory; returns the buffers and the bytes they span.
pub fn allocate(k: &Kernel, uses: &[BufferUse]) -> (Vec<Buffer>, usize) {
    let mut pos = Positions::default();
    number(&k.body, &mut Vec::new(), &mut pos);
    let live: Vec<(usize, usize)> = uses
        .iter()
        .map(|u| {
            if let Some(l) = u.whole_loop.and_then(|l| pos.loops.get(&l)) {
                return *l;
            }
            let def = pos.def.get(&u.value).copied().unwrap_or(0);
            let mut end = def;
            for (at, loops) in pos.uses.get(&u.value).into_iter().flatten() {
                let mut e = *at;
                // A loop that the definition is outside of re-reads the value every iteration.
                for l in loops {
                    if let Some(&(s, le)) = pos.loops.get(l) {
                        if def < s {
                            e = e.max(le);
                            break;
                        }
                    }
                }
                end = end.max(e);
            }
            (def, end)
        })
        .collect();
    let mut g: UnGraph<usize, ()> = UnGraph::new_undirected();
    let nodes: Vec<NodeIndex> = (0..uses.len()).map(|i| g.add_node(i)).collect();
    for i in 0..uses.len() {
        for j in i + 1..uses.len() {
            let (a, b) = (live[i], live[j]);
            if a.0 <= b.1 && b.0 <= a.1 {
                g.add_edge(nodes[i], nodes[j], ());
            }
        }
    }
    let mut order: Vec<usize> = (0..uses.len()).collect();
    order.sort_by_key(|&i| (std::cmp::Reverse(uses[i].bytes), uses[i].value));
    let mut offsets: Vec<Option<usize>> = vec![None; uses.len()];
    for &i in &order {
        let mut taken: Vec<(usize, usize)> = g
            .neighbors(nodes[i])
            .filter_map(|n| {
                let j = g[n];
                offsets[j].map(|o| (o, o + uses[j].bytes))
            })
            .collect();
        taken.sort();
        let mut at = 0;
        for (s, e) in taken {
            if at + uses[i].bytes <= s {
                break;
            }
            at = at.max(e.div_ceil(16) * 16);
        }
        offsets[i] = Some(at);
    }
    let buffers: Vec<Buffer> = uses
        .iter()
        .enumerate()
        .map(|(i, u)| Buffer {
            value: u.value,
            bytes: u.bytes,
            offset: offsets[i].unwrap_or(0),
            live: live[i],
        })
        .collect();
    let end = buffers
        .iter()
        .map(|b| b.offset + b.bytes)
        .max()
        .unwrap_or(0);
    (buffers, end)
}
