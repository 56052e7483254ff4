//! The elementwise smoke kernel through every backend stage, for every target: a PTX snapshot per
//! (dtype, arch), ptxas acceptance, and checks that the instructions we meant to emit are there.

#![cfg(feature = "codegen")]

use tessel_compiler::codegen::compile_elementwise;
use tessel_compiler::lower::elementwise::{kernel_name, ElemType};
use tessel_compiler::target::TARGETS;
use tessel_compiler::{CompileError, Target, TargetError};

mod common {
    include!("../../tests/support/ptxas.rs");
}

#[test]
fn smoke_kernel_ptx_snapshots_and_ptxas() {
    let ptxas = common::Ptxas::find();
    for target in TARGETS {
        for dtype in ElemType::ALL {
            let ptx = compile_elementwise(dtype, *target).unwrap();
            let name = kernel_name(dtype);
            assert!(ptx.contains(&format!(".visible .entry {name}(")), "{ptx}");
            assert!(ptx.contains(&format!(".target {}", target.name)), "{ptx}");
            assert!(ptx.contains(&format!(".version {}", target.ptx)), "{ptx}");
            // The bounds check and the f32 fma must survive O3.
            assert!(ptx.contains("setp."), "{ptx}");
            assert!(ptx.contains("fma.rn.f32"), "{ptx}");
            assert!(ptx.contains("ld.global"), "{ptx}");
            assert!(ptx.contains("st.global"), "{ptx}");
            match dtype {
                ElemType::Bf16 => assert!(ptx.contains("cvt.rn.bf16.f32"), "{ptx}"),
                ElemType::F16 => assert!(ptx.contains("cvt.rn.f16.f32"), "{ptx}"),
                ElemType::F32 => {}
            }
            insta::assert_snapshot!(format!("{name}_{}", target.name), ptx);
            ptxas.assemble(&ptx, target.name).unwrap();
        }
    }
}

#[test]
fn matmul_uses_the_tensor_cores_on_every_target() {
    use tessel_compiler::codegen::compile_matmul;
    use tessel_compiler::ptx::PtxStats;
    let ptxas = common::Ptxas::find();
    for target in TARGETS {
        let ptx = compile_matmul(*target).unwrap();
        let stats = PtxStats::of(&ptx);
        assert_eq!(stats.entries, vec!["matmul_bf16"]);
        // 4×4 m16n8k16 tiles per warp, twice per 32-wide K tile, in the loop body.
        assert_eq!(stats.count("mma.sync"), 32, "{ptx}");
        // Operands staged in shared memory: two barriers per K tile, fragments from ld.shared.
        assert_eq!(stats.count("bar.sync"), 2, "{ptx}");
        assert!(stats.count("ld.shared") >= 24, "{ptx}");
        assert!(ptx.contains("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32"));
        assert!(ptx.contains(".maxntid 256, 1, 1"), "{ptx}");
        insta::assert_snapshot!(format!("matmul_bf16_{}", target.name), ptx);
        if let Some(log) = ptxas.assemble(&ptx, target.name).unwrap() {
            assert!(log.contains("0 bytes spill stores"), "{log}");
        }
    }
}

#[test]
fn ptx_is_deterministic() {
    let t = Target::lookup("sm_90a").unwrap();
    let first = compile_elementwise(ElemType::Bf16, t).unwrap();
    let second = compile_elementwise(ElemType::Bf16, t).unwrap();
    assert_eq!(first, second);
}

#[test]
fn backend_refuses_unsupported_features_before_llvm() {
    use tessel_compiler::codegen::{target_machine, BackendOptions};
    use tessel_compiler::Feature;
    let mut options = BackendOptions::new(Target::lookup("sm_90").unwrap());
    options.features = vec![Feature::Wgmma];
    match target_machine(&options) {
        Err(CompileError::Target(TargetError::MissingFeature { arch, feature })) => {
            assert_eq!((arch, feature), ("sm_90", Feature::Wgmma));
        }
        Err(other) => panic!("wrong error: {other}"),
        Ok(_) => panic!("sm_90 must refuse wgmma"),
    }
}
