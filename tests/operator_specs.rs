//! Every runtime operator's package, built here as `tessel demo` builds it for the GPU machine,
//! holds what the operator asks for: each kernel of its spec in every variant combination, and
//! every constant the host code assumes at the value it assumes. A kernel renamed in the source,
//! a variant dropped or a block size changed fails here, on CPU, instead of at launch.

#![cfg(feature = "codegen")]

use tessel_runtime::format::Package;
use tessel_runtime::OPERATORS;

include!("support/packages.rs");

/// Every combination of the spec's variant values, as (name, value) lists.
fn combinations(
    variants: &[(&'static str, &'static [&'static str])],
) -> Vec<Vec<(&'static str, &'static str)>> {
    variants
        .iter()
        .fold(vec![Vec::new()], |acc, (name, values)| {
            acc.iter()
                .flat_map(|c| {
                    values.iter().map(move |v| {
                        let mut c = c.clone();
                        c.push((*name, *v));
                        c
                    })
                })
                .collect()
        })
}

fn check(spec: &tessel_runtime::OperatorSpec, pkg: &Package) {
    for consts in combinations(spec.variants) {
        for kernel in spec.kernels {
            // A kernel without a variant's constant (flash's preprocess has no CAUSAL) is built
            // once per value the others take; it must still be found by the constants it has.
            let entry = pkg
                .kernels()
                .map(|(e, _)| e)
                .filter(|e| e.entry == *kernel)
                .find(|e| {
                    consts
                        .iter()
                        .all(|(n, v)| e.consts.iter().all(|(en, ev)| en != n || ev == v))
                })
                .unwrap_or_else(|| panic!("{}: no {kernel} for {consts:?}", spec.package));
            for (name, want) in spec.constants {
                if let Some((_, got)) = entry.consts.iter().find(|(n, _)| n == name) {
                    assert_eq!(got, &want.to_string(), "{}: {kernel} {name}", entry.name);
                }
            }
        }
    }
    // Each assumed constant is declared by at least one kernel, so the check above checked it.
    for (name, _) in spec.constants {
        assert!(
            pkg.kernels()
                .any(|(e, _)| e.consts.iter().any(|(n, _)| n == name)),
            "{}: no kernel declares {name}",
            spec.package
        );
    }
}

#[test]
fn every_operator_package_holds_what_its_operator_launches() {
    for spec in OPERATORS {
        let pkg = operator_package(spec, "sm_90a");
        check(spec, &pkg);
        println!("{}: {} entries", spec.package, pkg.kernels().count());
    }
}

#[test]
fn a_missing_kernel_or_changed_constant_is_caught() {
    let spec = &tessel_runtime::spec::lightning::SPEC;
    let pkg = operator_package(spec, "sm_80");
    let renamed = tessel_runtime::OperatorSpec {
        kernels: &["lightning_attention_no_such_kernel"],
        ..*spec
    };
    assert!(std::panic::catch_unwind(|| check(&renamed, &pkg)).is_err());
    let other_block = tessel_runtime::OperatorSpec {
        constants: &[("BLK", 128)],
        ..*spec
    };
    assert!(std::panic::catch_unwind(|| check(&other_block, &pkg)).is_err());
}
