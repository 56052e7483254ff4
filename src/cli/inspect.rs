//! `tessel inspect`: what a package holds, read from its manifest alone (no GPU, no compiler):
//! the target, and per kernel its variant constants, parameters, requirements, launch and size.

use std::path::PathBuf;

use clap::Args;
use tessel_runtime::format::{DimSpec, Io, KernelEntry, Package, ParamSpec};

#[derive(Args)]
pub struct InspectArgs {
    /// An AOT package (.tpkg).
    pub package: PathBuf,
}

fn dims(ds: &[DimSpec]) -> String {
    let d: Vec<String> = ds
        .iter()
        .map(|d| match d {
            DimSpec::Const(c) => c.to_string(),
            DimSpec::Sym(s) => s.clone(),
        })
        .collect();
    d.join(", ")
}

/// One kernel's description, as the lines `inspect` prints.
pub fn describe(k: &KernelEntry, ptx_bytes: usize) -> Vec<String> {
    let mut out = vec![format!("kernel {}", k.name)];
    if !k.consts.is_empty() {
        let cs: Vec<String> = k.consts.iter().map(|(n, v)| format!("{n}={v}")).collect();
        out.push(format!("  constants  {}", cs.join(" ")));
    }
    for p in &k.params {
        match p {
            ParamSpec::Tensor {
                name,
                dtype,
                dims: ds,
                io,
                strides,
            } => {
                let io = match io {
                    Io::In => "in",
                    Io::Out => "out",
                    Io::InOut => "inout",
                };
                let st = strides
                    .as_ref()
                    .map_or(String::new(), |st| format!(" strides[{}]", dims(st)));
                out.push(format!(
                    "  param      {name}: {io} {dtype}[{}]{st}",
                    dims(ds)
                ));
            }
            ParamSpec::Scalar { name, dtype } => out.push(format!("  param      {name}: {dtype}")),
            // Shape parameters are passed by the runtime, bound from the tensors.
            ParamSpec::Shape { .. } => {}
            ParamSpec::TensorMap {
                name,
                tensor,
                box_dims,
                swizzle,
                ..
            } => out.push(format!(
                "  tensormap  {name}: TMA of `{tensor}`, box {box_dims:?} innermost first, \
                 {swizzle}-byte swizzle"
            )),
        }
    }
    for r in &k.requires {
        out.push(format!("  requires   {r}"));
    }
    let grid: Vec<String> = k.launch.grid.iter().map(|g| g.to_string()).collect();
    out.push(format!(
        "  launch     grid({}) block({}, {}, {}), {} bytes of shared memory",
        grid.join(", "),
        k.launch.block[0],
        k.launch.block[1],
        k.launch.block[2],
        k.launch.shared_bytes
    ));
    out.push(format!(
        "  size       {ptx_bytes} bytes of PTX (entry `{}`){}",
        k.entry,
        if k.tile_ir.is_some() {
            ", with its Tile IR"
        } else {
            ""
        }
    ));
    out
}

pub fn run(args: InspectArgs) -> super::CliResult {
    let package = Package::read(&args.package)?;
    let bytes = std::fs::metadata(&args.package)
        .map(|m| m.len())
        .unwrap_or(0);
    let m = &package.manifest;
    println!(
        "{}: {} kernel(s) for {} (PTX ISA {}), {bytes} bytes, written by tessel {}",
        args.package.display(),
        m.kernels.len(),
        m.target.arch,
        m.target.ptx_isa,
        m.tessel_version
    );
    for (k, ptx) in package.kernels() {
        for line in describe(k, ptx.len()) {
            println!("{line}");
        }
    }
    Ok(())
}
