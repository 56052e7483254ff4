//! Loops: `scf.for` carrying every register of every loop-carried tile, and software pipelining.
//!
//! A loop the schedule pipelines keeps its staged tiles in a ring of `stages` slots each, its
//! copies `ahead` iterations ahead (`stages - 1`, or fewer when wgmma batches left in flight
//! still read the slots before this iteration's). The prologue issues the first `ahead`
//! iterations' copies, one `cp.async` group per iteration; each iteration waits for its own group,
//! passes one barrier (so the slot `stages - ahead` iterations back is free: every thread has
//! retired the batches that read it), issues the copy `ahead` iterations ahead into that slot,
//! and computes (when wgmma reads the slots, each thread fences its copies into the async proxy
//! between the wait and the barrier). Only the scalar ops the copies' start indices depend on are
//! lowered ahead, with the induction variable bound to the later iteration. After a loop whose
//! dots leave batches in flight, every thread waits them to 0, passing the accumulators through
//! the wait so that nothing reads them earlier.

use std::collections::HashSet;

use super::emit::{Arith, ICmp, Value};
use super::entry::Lower;
use super::ptx_templates as ptx;
use super::{err, R};
use crate::sched::{DotUnit, Pipeline};
use crate::tir::{Block, Inst, Op, ValueId};

impl Lower<'_> {
    pub fn block(&mut self, b: &Block) -> R<()> {
        for inst in &b.insts {
            self.inst(inst)?;
        }
        Ok(())
    }

    pub fn for_loop(&mut self, inst: &Inst) -> R<()> {
        let Op::For {
            lo,
            hi,
            step,
            inits,
            body,
        } = &inst.op
        else {
            return Err(err("not a loop"));
        };
        let lo = self.get(*lo)?[0].clone();
        let hi = self.get(*hi)?[0].clone();
        let step = self.get(*step)?[0].clone();
        let bounds = [&lo, &hi, &step];
        let iv_id = body.args[0];
        let pipe = self.s.pipelines.get(&iv_id).cloned();
        if let Some(p) = &pipe {
            self.prologue(p, body, bounds)?;
        }
        // Carried registers, in the body arguments' layouts.
        let mut counts = Vec::new();
        let mut init_vals = Vec::new();
        for (i, init) in inits.iter().enumerate() {
            let want = self.want(body.args[i + 1]);
            let v = self.regs_in(*init, &want)?;
            counts.push(v.len());
            init_vals.extend(v);
        }
        // A loop whose dots leave batches in flight runs under `lo < hi`, its wait to 0 inside:
        // ptxas keeps a wgmma pipeline only when no path reaches the wait from outside the loop
        // (the zero-trip path's initial accumulators, merged before it, serialise every wgmma).
        let in_flight = self.leaves_in_flight(body);
        if in_flight {
            self.e.open_region();
        }
        let vars = self.e.loop_vars(&init_vals);
        self.e.open_region();
        let iv = vars.iv.clone();
        self.env.insert(iv_id, vec![iv.clone()]);
        self.bind(&body.args[1..], &counts, &vars.args);
        if let Some(p) = &pipe {
            self.prefetch(p, body, &iv, bounds)?;
        }
        self.block(body)?;
        let mut ys = Vec::new();
        if let Some(Op::Yield(yv)) = body.insts.last().map(|i| &i.op) {
            for (i, y) in yv.iter().enumerate() {
                let want = self.want(body.args[i + 1]);
                ys.extend(self.regs_in(*y, &want)?);
            }
        }
        let region = self.e.close_region(&ys);
        let mut results = self.e.scf_for(vars, bounds, &init_vals, region)?;
        if in_flight {
            self.retire_in_flight(body, &counts, &mut results)?;
            let ran = self.e.close_region(&results);
            self.e.open_region();
            let skipped = self.e.close_region(&init_vals);
            let any = self.e.cmpi(ICmp::Slt, &lo, &hi);
            results = self.e.scf_if(&any, ran, Some(skipped))?;
        }
        if let Some(p) = &pipe {
            let (cp, tma) = self.copy_kinds(p);
            if !cp.is_empty() {
                self.wait(0)?;
            }
            self.barrier()?;
            if !tma.is_empty() {
                self.ring_end(p)?;
            }
        }
        self.bind(&inst.results, &counts, &results);
        Ok(())
    }

    /// Whether a dot of `body` leaves wgmma batches in flight at the end of an iteration.
    fn leaves_in_flight(&self, body: &Block) -> bool {
        body.insts.iter().any(|i| {
            i.results.first().is_some_and(|r| {
                matches!(self.s.dots.get(r).map(|d| d.unit), Some(DotUnit::Wgmma(w)) if w.wait > 0)
            })
        })
    }

    /// Waits to 0 for the wgmma batches the dots of `body` left in flight, the loop's results
    /// they accumulate into (registers `counts[i]` at a time, as carried) passed through the wait.
    fn retire_in_flight(&mut self, body: &Block, counts: &[usize], results: &mut [Value]) -> R<()> {
        let Some(Op::Yield(ys)) = body.insts.last().map(|i| &i.op) else {
            return Ok(());
        };
        let mut at = 0;
        for (y, n) in ys.iter().zip(counts) {
            let in_flight = matches!(
                self.s.dots.get(y).map(|d| d.unit),
                Some(DotUnit::Wgmma(w)) if w.wait > 0
            );
            if in_flight {
                let regs: Vec<&Value> = results[at..at + n].iter().collect();
                let out = self.e.inline_asm(&ptx::wgmma_wait_for(0, *n), &regs)?;
                results[at..at + n].clone_from_slice(&out);
            }
            at += n;
        }
        Ok(())
    }

    /// Binds each of `ids` to its `counts[i]` consecutive registers of `regs`.
    fn bind(&mut self, ids: &[ValueId], counts: &[usize], regs: &[Value]) {
        let mut k = 0;
        for (id, n) in ids.iter().zip(counts) {
            self.env.insert(*id, regs[k..k + n].to_vec());
            k += n;
        }
    }

    /// The first `ahead` iterations' copies, before the loop, into slots 0, 1, … (a ring with
    /// TMA loads first initialises its mbarriers, which the barrier publishes).
    fn prologue(&mut self, p: &Pipeline, body: &Block, [lo, hi, step]: [&Value; 3]) -> R<()> {
        let (cp, tma) = self.copy_kinds(p);
        if !tma.is_empty() {
            self.ring_init(p)?;
        }
        self.barrier()?;
        for s in 0..p.ahead {
            let sv = self.e.i32(s as i64);
            let off = self.e.muli(&sv, step);
            let ivs = self.e.addi(lo, &off);
            let inside = self.e.cmpi(ICmp::Slt, &ivs, hi);
            self.when(&inside, |me| {
                let saved = me.env.clone();
                me.lower_start_slice(body, &p.loads, &ivs)?;
                for &l in &cp {
                    let st = &me.s.staged[&l];
                    let slot = me.s.buffers[st.buffer].offset + s * st.tile.bytes();
                    let base = me.e.i32(slot as i64);
                    me.copy_in(l, &base)?;
                }
                if !tma.is_empty() {
                    let slot = me.e.i32(s as i64);
                    me.ring_fill(p, &slot)?;
                }
                me.env = saved;
                Ok(())
            })?;
            if !cp.is_empty() {
                self.commit()?;
            }
        }
        Ok(())
    }

    /// The loads of `p` copied by cp.async (one group per iteration) and by TMA (completing on
    /// the ring's mbarriers).
    fn copy_kinds(&self, p: &Pipeline) -> (Vec<ValueId>, Vec<ValueId>) {
        let tma = self.tma_loads(p);
        let cp = p
            .loads
            .iter()
            .copied()
            .filter(|l| !tma.contains(l))
            .collect();
        (cp, tma)
    }

    /// At the top of an iteration: waits for its slot, then refills the slot the previous
    /// iteration read with the copy `ahead` iterations ahead, and points the staged loads
    /// at this iteration's slot.
    fn prefetch(
        &mut self,
        p: &Pipeline,
        body: &Block,
        iv: &Value,
        [lo, hi, step]: [&Value; 3],
    ) -> R<()> {
        let (cp, tma) = self.copy_kinds(p);
        if !cp.is_empty() {
            // Groups committed: `ahead` in the prologue, one per iteration before this one.
            self.wait(p.ahead - 1)?;
            if cp.iter().any(|l| self.s.staged[l].async_reads) {
                self.fence_proxy_async()?;
            }
        }
        if !tma.is_empty() {
            let d = self.e.arith(Arith::SubI, iv, lo);
            let j = self.e.arith(Arith::DivSI, &d, step);
            self.ring_wait(p, &j)?;
        }
        self.barrier()?;
        let d = self.e.arith(Arith::SubI, iv, lo);
        let j = self.e.arith(Arith::DivSI, &d, step);
        let sv = self.e.i32(p.stages as i64);
        let rd = self.e.arith(Arith::RemSI, &j, &sv);
        let wr = self.e.add_const(&rd, p.ahead as i64);
        let wr = self.e.arith(Arith::RemSI, &wr, &sv);
        let ahead = self.e.i32(p.ahead as i64);
        let off = self.e.muli(&ahead, step);
        let ivn = self.e.addi(iv, &off);
        let inside = self.e.cmpi(ICmp::Slt, &ivn, hi);
        self.when(&inside, |me| {
            let saved = me.env.clone();
            me.lower_start_slice(body, &p.loads, &ivn)?;
            for &l in &cp {
                let base = me.slot(l, &wr);
                me.copy_in(l, &base)?;
            }
            if !tma.is_empty() {
                me.ring_fill(p, &wr)?;
            }
            me.env = saved;
            Ok(())
        })?;
        if !cp.is_empty() {
            self.commit()?;
        }
        for &l in &p.loads {
            let base = self.slot(l, &rd);
            self.smem_at.insert(l, base);
        }
        Ok(())
    }

    /// The byte offset of slot `index` of staged load `l`'s buffer.
    pub(super) fn slot(&mut self, l: ValueId, index: &Value) -> Value {
        let st = &self.s.staged[&l];
        let (offset, bytes) = (self.s.buffers[st.buffer].offset, st.tile.bytes());
        let b0 = self.e.i32(offset as i64);
        let sb = self.e.i32(bytes as i64);
        let o = self.e.muli(index, &sb);
        self.e.addi(&b0, &o)
    }

    /// Lowers the scalar ops of `body` that the starts of `loads` depend on, with the induction
    /// variable bound to `iv`; returns nothing, leaving the starts in `env`.
    fn lower_start_slice(&mut self, body: &Block, loads: &[ValueId], iv: &Value) -> R<()> {
        let mut need: HashSet<ValueId> = HashSet::new();
        let mut stack: Vec<ValueId> = Vec::new();
        for l in loads {
            if let Some(Op::Load { starts, steps, .. }) = find_def(body, *l) {
                stack.extend(starts);
                stack.extend(steps.into_iter().flatten());
            }
        }
        while let Some(x) = stack.pop() {
            if need.insert(x) {
                if let Some(op) = find_local(body, x) {
                    stack.extend(op.operands());
                }
            }
        }
        self.env.insert(body.args[0], vec![iv.clone()]);
        for inst in &body.insts {
            if inst.results.iter().any(|r| need.contains(r)) {
                self.inst(inst)?;
            }
        }
        Ok(())
    }
}

/// The op defining `v` anywhere in `b`, nested loops included.
pub(super) fn find_def(b: &Block, v: ValueId) -> Option<Op> {
    for inst in &b.insts {
        if inst.results.contains(&v) {
            return Some(inst.op.clone());
        }
        if let Op::For { body, .. } = &inst.op {
            if let Some(op) = find_def(body, v) {
                return Some(op);
            }
        }
    }
    None
}

/// The op defining `v` directly in `b`.
fn find_local(b: &Block, v: ValueId) -> Option<&Op> {
    b.insts
        .iter()
        .find(|i| i.results.contains(&v))
        .map(|i| &i.op)
}
