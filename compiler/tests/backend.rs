//! The backend's own guarantees, independent of any one kernel's schedule: PTX is a pure function
//! of the kernel and target (bit-identical across compilations, so snapshots can hold it), and an
//! impossible feature request is a typed error raised before LLVM could abort the process.

#![cfg(feature = "codegen")]

use tessel_compiler::target::TARGETS;
use tessel_compiler::{CompileError, Target, TargetError};

const ELEMENTWISE: &str = include_str!("../../dsl-examples/elementwise.tsl");
const MATMUL: &str = include_str!("../../dsl-examples/matmul.tsl");

#[test]
fn ptx_is_deterministic() {
    for source in [ELEMENTWISE, MATMUL] {
        let kernels = tessel_compiler::sema::compile_source(source, &Default::default()).unwrap();
        for target in TARGETS {
            let compile = || {
                tessel_compiler::driver::compile_kernel(&kernels[0], *target)
                    .unwrap()
                    .ptx
            };
            assert_eq!(
                compile(),
                compile(),
                "{} on {}",
                kernels[0].name,
                target.name
            );
        }
    }
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
