//! Each invariant of the schedule verifier, broken on a real schedule and refused.

use super::*;
use crate::sched::{schedule, Layout};
use crate::sema::{compile_source, Overrides};
use crate::tir::ValueId;
use crate::Target;

fn kernel(source: &str) -> Kernel {
    compile_source(source, &Overrides::new()).unwrap().remove(0)
}

/// `break_it` applied to the schedule of `source` on sm_80 is refused for `invariant`.
fn refused(source: &str, invariant: Invariant, break_it: impl Fn(&mut Schedule)) {
    let k = kernel(source);
    let facts = Facts::of(&k);
    let mut s = schedule(&k, Target::lookup("sm_80").unwrap()).unwrap();
    assert_eq!(check(&facts, &s), Ok(()));
    break_it(&mut s);
    let e = check(&facts, &s).expect_err("the broken schedule passes");
    assert_eq!(e.invariant, invariant, "{e:?}");
    let e = e.into_error(&k);
    assert_eq!(e.broken, Some(invariant));
    assert!(
        e.to_string().contains(&format!("kernel `{}`", k.name)),
        "{e}"
    );
}

const MATMUL: &str = include_str!("../../../../dsl-examples/matmul.tsl");
const SOFTMAX: &str = include_str!("../../../../dsl-examples/softmax.tsl");

fn first_staged(s: &Schedule) -> ValueId {
    *s.staged.keys().min().unwrap()
}

#[test]
fn block_and_layouts() {
    refused(MATMUL, Invariant::Block, |s| s.threads = 128);
    refused(MATMUL, Invariant::Block, |s| {
        s.frame = Frame::Mma { wm: 2, wn: 2 }
    });
    refused(SOFTMAX, Invariant::Layouts, |s| {
        s.layouts.pop().map(|_| ()).unwrap()
    });
    refused(SOFTMAX, Invariant::Layouts, |s| {
        let tile = s
            .layouts
            .iter()
            .position(|l| matches!(l, Layout::Dist(_)))
            .unwrap();
        s.layouts[tile] = Layout::Uniform;
    });
    refused(SOFTMAX, Invariant::SharedOnly, |s| {
        let tile = s
            .layouts
            .iter()
            .position(|l| matches!(l, Layout::Dist(_)))
            .unwrap();
        s.layouts[tile] = Layout::Shared;
    });
}

#[test]
fn dots() {
    refused(MATMUL, Invariant::Dots, |s| s.dots.clear());
    refused(MATMUL, Invariant::Dots, |s| {
        s.dots.values_mut().for_each(|d| d.k = 8);
    });
    refused(MATMUL, Invariant::Dots, |s| s.frame = Frame::Blocked);
    refused(MATMUL, Invariant::Dots, |s| {
        let (&r, plan) = s.dots.iter_mut().next().unwrap();
        plan.a = Operand::Smem {
            value: r,
            trans: false,
            staged: true,
        };
    });
}

#[test]
fn staging_and_pipelines() {
    refused(MATMUL, Invariant::Pipelines, |s| {
        let v = first_staged(s);
        s.staged.get_mut(&v).unwrap().pipelined = None;
    });
    refused(MATMUL, Invariant::Pipelines, |s| {
        s.pipelines.values_mut().for_each(|p| p.stages = 1);
    });
    refused(MATMUL, Invariant::Staging, |s| {
        let v = first_staged(s);
        s.staged.get_mut(&v).unwrap().tile.cols = 4;
    });
}

#[test]
fn buffers_and_shared_memory() {
    refused(MATMUL, Invariant::Buffers, |s| {
        let at = s.buffers[0].offset;
        s.buffers[1].offset = at;
    });
    refused(MATMUL, Invariant::Buffers, |s| s.buffers[0].offset += 8);
    refused(MATMUL, Invariant::Buffers, |s| s.shared_bytes += 16);
    refused(MATMUL, Invariant::Buffers, |s| {
        let v = first_staged(s);
        s.staged.get_mut(&v).unwrap().buffer = 7;
    });
}

const LIGHTNING: &str = include_str!("../../../../dsl-examples/lightning_attention.tsl");
const FLASH: &str = include_str!("../../../../dsl-examples/flash_attention.tsl");

/// The kernel of `source` named `name`.
fn named(source: &str, name: &str) -> String {
    let start = source.find(&format!("kernel {name}")).unwrap();
    // Attributes before the kernel line belong to it.
    let attrs = source[..start].rfind("\n\n").map_or(0, |i| i + 2);
    source[attrs..].to_string()
}

#[test]
fn scratch() {
    let fwd = named(LIGHTNING, "lightning_attention_fwd");
    // Scratch too small for what it must hold, the region itself consistent.
    let shrink = |s: &mut Schedule, bytes: usize| {
        s.scratch_bytes = bytes;
        s.shared_bytes = s.scratch_offset + bytes;
    };
    refused(&fwd, Invariant::Scratch, |s| shrink(s, 0));
    refused(&fwd, Invariant::Scratch, |s| {
        let c = s.conversions[0].clone();
        s.conversions.push(c);
    });
    let dq = named(FLASH, "flash_attention_bwd_dq");
    refused(&dq, Invariant::Scratch, |s| shrink(s, 16));
}

#[test]
fn scans() {
    let src = "kernel k(x: in tensor<f32>[N], y: out tensor<f32>[N]) grid(1) {
        store(y[0 : +64], cumsum(load(x[0 : +64]), axis = 0));
    }";
    refused(src, Invariant::Scans, |s| {
        s.scratch_bytes = 128;
        s.shared_bytes = s.scratch_offset + 128;
    });
    // The scan's result (the value after the load) in another placement than its operand.
    refused(src, Invariant::Scans, |s| {
        let (x, r) = (ValueId(2), ValueId(3));
        let Layout::Dist(d) = s.layout(x).clone() else {
            panic!("a register tile")
        };
        let mut moved = d.clone();
        moved.regs.reverse();
        moved.lane.swap(0, 1);
        s.layouts[r.0 as usize] = Layout::Dist(moved);
    });
}

#[test]
fn reductions_features_and_occupancy() {
    refused(SOFTMAX, Invariant::Reductions, |s| s.reduces.clear());
    refused(MATMUL, Invariant::Features, |s| {
        s.features.retain(|f| *f != Feature::CpAsync)
    });
    refused(MATMUL, Invariant::Features, |s| {
        s.features.push(Feature::Wgmma)
    });
    refused(MATMUL, Invariant::Occupancy, |s| {
        s.min_blocks_per_sm = Some(64)
    });
    refused(MATMUL, Invariant::Occupancy, |s| {
        s.min_blocks_per_sm = Some(0)
    });
}

/// A dot whose B operand takes every other column (its A, every other row): B cannot move in
/// 16-byte chunks, A can.
const STEPPED: &str =
    "kernel k(a: in tensor<f16>[M, K], b: in tensor<f16>[K, N], c: out tensor<f32>[M, N])
    grid(1)
{
    let x = load(a[0 : +64 : 2, 0 : +32]);
    let y = load(b[0 : +32, 0 : +64 : 2]);
    store(c[0 : +64, 0 : +64], dot(x, y));
}";

#[test]
fn async_copies_read_adjacent_columns() {
    let k = kernel(STEPPED);
    let s = schedule(&k, Target::lookup("sm_80").unwrap()).unwrap();
    let copies: Vec<Copy> = s.staged.values().map(|st| st.copy).collect();
    assert!(
        copies.contains(&Copy::Async) && copies.contains(&Copy::Sync),
        "{copies:?}"
    );
    refused(STEPPED, Invariant::Staging, |s| {
        for st in s.staged.values_mut() {
            st.copy = Copy::Async;
        }
    });
}
