//! Every kernel of every example compiles for every target, ptxas accepts it, and its PTX really
//! contains the instructions its schedule chose: wgmma with its fences, commit and wait for Hopper
//! dots, mma.sync and ldmatrix for Ampere tensor-core dots,
//! cp.async with commit/wait groups for staged tiles, shuffles for cross-lane reductions. The
//! schedule is not trusted: the PTX is counted.

include!("support/ptxas.rs");

use tessel_compiler::ptx::PtxStats;
use tessel_compiler::sched::{Copy, DotUnit, Operand};
use tessel_compiler::sema::{compile_source, Overrides};
use tessel_compiler::target::TARGETS;

const EXAMPLES: [(&str, &str); 6] = [
    (
        "elementwise.tsl",
        include_str!("../dsl-examples/elementwise.tsl"),
    ),
    (
        "activation.tsl",
        include_str!("../dsl-examples/activation.tsl"),
    ),
    ("matmul.tsl", include_str!("../dsl-examples/matmul.tsl")),
    ("softmax.tsl", include_str!("../dsl-examples/softmax.tsl")),
    (
        "flash_attention.tsl",
        include_str!("../dsl-examples/flash_attention.tsl"),
    ),
    (
        "lightning_attention.tsl",
        include_str!("../dsl-examples/lightning_attention.tsl"),
    ),
];

fn count(ptx: &str, prefix: &str) -> usize {
    ptx.lines()
        .filter(|l| l.trim_start().starts_with(prefix))
        .count()
}

#[test]
fn every_example_kernel_compiles_and_uses_what_its_schedule_chose() {
    let ptxas = Ptxas::find();
    let mut checked = 0;
    for (file, source) in EXAMPLES {
        let kernels = compile_source(source, &Overrides::new()).expect("examples are valid");
        for k in &kernels {
            for target in TARGETS {
                let c = tessel_compiler::driver::compile_kernel(k, *target)
                    .unwrap_or_else(|e| panic!("{file}: {} on {}: {e}", k.name, target.name));
                let s = &c.schedule;
                let ptx = &c.ptx;
                let what = format!("{file}: {} on {}", k.name, target.name);
                let mma_dots = s.dots.values().filter(|d| d.unit == DotUnit::Mma).count();
                let mma = count(ptx, "mma.sync.aligned.m16n8k16");
                if mma_dots > 0 {
                    assert!(
                        mma > 0,
                        "{what}: {mma_dots} dots on mma.sync, no mma.sync in PTX"
                    );
                } else {
                    assert_eq!(mma, 0, "{what}: mma.sync without a dot scheduled on it");
                }
                let wgmma_dots = s
                    .dots
                    .values()
                    .filter(|d| matches!(d.unit, DotUnit::Wgmma(_)))
                    .count();
                let wgmma = count(ptx, "wgmma.mma_async.sync.aligned.m64n");
                assert_eq!(
                    wgmma_dots > 0,
                    wgmma > 0,
                    "{what}: {wgmma_dots} dots on wgmma, {wgmma} wgmma in PTX"
                );
                // A from registers is the `{a0,a1,a2,a3}` form, behind a fence of its own.
                let reg_a = s
                    .dots
                    .values()
                    .any(|d| matches!(d.unit, DotUnit::Wgmma(w) if w.a.is_none()));
                let reg_a_ptx = ptx
                    .lines()
                    .any(|l| l.contains("wgmma.mma_async") && l.contains("}, {"));
                assert_eq!(
                    reg_a, reg_a_ptx,
                    "{what}: register A disagrees with the schedule"
                );
                if wgmma_dots > 0 {
                    for want in [
                        "wgmma.fence.sync.aligned",
                        "wgmma.commit_group.sync.aligned",
                        "wgmma.wait_group.sync.aligned 0",
                    ] {
                        assert!(count(ptx, want) > 0, "{what}: wgmma without `{want}`");
                    }
                }
                // Generic-proxy writers of wgmma tiles fence; TMA writes through the async proxy
                // and completes on mbarriers instead.
                let generic = s
                    .staged
                    .values()
                    .any(|st| st.async_reads && !matches!(st.copy, Copy::Tma(_)));
                let fence = count(ptx, "fence.proxy.async.shared::cta");
                assert_eq!(generic, fence > 0, "{what}: {fence} proxy fences");
                let tma = count(ptx, "cp.async.bulk.tensor.");
                assert_eq!(
                    s.tensor_maps.is_empty(),
                    tma == 0,
                    "{what}: {} tensor maps, {tma} TMA copies",
                    s.tensor_maps.len()
                );
                if tma > 0 {
                    for want in [
                        "mbarrier.init.shared::cta.b64",
                        "mbarrier.arrive.expect_tx.shared::cta.b64",
                        "mbarrier.try_wait.parity.shared::cta.b64",
                        ".param .align 64 .b8",
                    ] {
                        assert!(count(ptx, want) > 0, "{what}: TMA without `{want}`");
                    }
                }
                let smem_operands = s
                    .dots
                    .values()
                    .filter(|d| d.unit == DotUnit::Mma)
                    .flat_map(|d| [&d.a, &d.b])
                    .filter(|o| matches!(o, Operand::Smem { .. }))
                    .count();
                let ldmatrix = count(ptx, "ldmatrix.sync.aligned.m8n8.x4");
                assert_eq!(
                    smem_operands > 0,
                    ldmatrix > 0,
                    "{what}: {smem_operands} shared operands, {ldmatrix} ldmatrix"
                );
                let trans = s
                    .dots
                    .values()
                    .filter(|d| d.unit == DotUnit::Mma)
                    .flat_map(|d| [(&d.a, true), (&d.b, false)])
                    .any(|(o, is_a)| match o {
                        // A is read transposed when stored K×M; B when stored K×N.
                        Operand::Smem { trans, .. } => *trans == is_a,
                        Operand::RegA { .. } => false,
                    });
                assert_eq!(
                    trans,
                    count(ptx, "ldmatrix.sync.aligned.m8n8.x4.trans") > 0,
                    "{what}: ldmatrix.trans use disagrees with the schedule"
                );
                let async_copies = s.staged.values().any(|st| st.copy == Copy::Async);
                assert_eq!(
                    async_copies,
                    count(ptx, "cp.async.cg.shared.global") > 0,
                    "{what}: cp.async disagrees with the schedule"
                );
                if async_copies {
                    assert!(count(ptx, "cp.async.commit_group") > 0, "{what}: no commit");
                    assert!(count(ptx, "cp.async.wait_group") > 0, "{what}: no wait");
                }
                for p in s.pipelines.values() {
                    // Each iteration waits for its own copies: `ahead` groups were committed
                    // before it, the last `ahead - 1` of them may still be in flight (a ring
                    // whose loads all go by TMA waits on its slot's mbarrier instead).
                    let cp = p.loads.iter().any(|l| s.staged[l].copy == Copy::Async);
                    let want = if cp {
                        format!("cp.async.wait_group {};", p.ahead - 1)
                    } else {
                        "mbarrier.try_wait.parity".to_string()
                    };
                    assert!(ptx.contains(&want), "{what}: pipeline without `{want}`");
                }
                // A dot the schedule leaves in flight keeps a batch running; the others wait to 0.
                let in_flight = s
                    .dots
                    .values()
                    .any(|d| matches!(d.unit, DotUnit::Wgmma(w) if w.wait > 0));
                assert_eq!(
                    in_flight,
                    ptx.contains("wgmma.wait_group.sync.aligned 1;"),
                    "{what}: wgmma batches in flight disagree with the schedule"
                );
                let shuffles = s.reduces.values().any(|r| !r.shuffles.is_empty());
                assert_eq!(
                    shuffles,
                    count(ptx, "shfl.sync.bfly") > 0,
                    "{what}: shuffles disagree with the schedule"
                );
                let stats = PtxStats::of(ptx);
                assert!(stats.instructions > 0);
                if let Err(e) = ptxas.assemble(ptx, target.name) {
                    panic!("{what}: ptxas rejected the PTX:\n{e}");
                }
                checked += 1;
            }
        }
    }
    assert_eq!(
        checked,
        16 * TARGETS.len(),
        "every example kernel on every target"
    );
}

#[test]
fn tensor_core_kernels_put_their_dots_on_the_matrix_unit() {
    // The kernels whose operands are 16-bit: every one of their bf16 dots is on a matrix unit.
    // On sm_90a with --hopper-preview, wgmma for the forward and dQ kernels (K-major B, P and dS
    // as A from registers) and mma.sync for dK/dV (its transposed A is not carried on wgmma
    // yet); without it (the default until those forms have run on a GPU) all on mma.sync.
    let (_, src) = EXAMPLES[4];
    let preview = tessel_compiler::sched::SchedOptions {
        hopper_preview: true,
        ..Default::default()
    };
    for k in compile_source(src, &Overrides::new()).unwrap() {
        let plain = tessel_compiler::sched::schedule(&k, TARGETS[2]).unwrap();
        for (v, d) in &plain.dots {
            assert_eq!(d.unit, DotUnit::Mma, "{}: dot {v} by default", k.name);
        }
        let s = tessel_compiler::sched::schedule_with(&k, TARGETS[2], &preview).unwrap();
        let hopper = ["flash_attention_fwd", "flash_attention_bwd_dq"].contains(&k.name.as_str());
        for (v, d) in &s.dots {
            let on = matches!(d.unit, DotUnit::Wgmma(_));
            assert_eq!(on, hopper, "{}: dot {v} on {:?}", k.name, d.unit);
            assert!(on || d.unit == DotUnit::Mma, "{}: dot {v} on FMAs", k.name);
        }
        // The last dot reads A from registers: P (forward) or dS (dQ).
        if hopper {
            let last = s.dots.keys().max().unwrap();
            assert!(matches!(s.dots[last].a, Operand::RegA { .. }), "{}", k.name);
        }
    }
}

#[test]
fn bad_schedule_overrides_are_typed_errors() {
    let (_, src) = EXAMPLES[2];
    let k = &compile_source(src, &Overrides::new()).unwrap()[0];
    let bad = tessel_compiler::sched::SchedOptions {
        num_warps: Some(3),
        ..Default::default()
    };
    let e = tessel_compiler::sched::schedule_with(k, TARGETS[0], &bad).unwrap_err();
    assert!(e.reason.contains("power of two"), "{e}");
    // Too many stages for the shared memory of sm_80.
    let deep = tessel_compiler::sched::SchedOptions {
        stages: Some(12),
        ..Default::default()
    };
    let e = tessel_compiler::sched::schedule_with(k, TARGETS[0], &deep).unwrap_err();
    assert!(e.reason.contains("bytes needed"), "{e}");
}
