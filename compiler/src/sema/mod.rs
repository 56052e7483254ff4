//! Semantic analysis: AST → specialised Tile IR, with every error a diagnostic on the source.
//!
//! Compile-time parameters are substituted and folded here, so every tile shape in the output is a
//! concrete number. Names resolve to compile-time constants, tensor parameters, shape symbols (read
//! at run time), scalar parameters, or SSA values. Literals are "weak": `1.0 * x` takes x's float
//! type, `i + 1` stays i32, so kernels rarely need casts for constants.

mod builtins;
mod elaborate;
mod hints;
mod scan;

use std::collections::HashMap;

use crate::diag::Diagnostic;
use crate::syntax::ast;
use crate::tir::{self, ConstValue};

pub use elaborate::elaborate_kernel;

/// Compile-time values given from outside (`-D NAME=VALUE`), overriding defaults.
pub type Overrides = HashMap<String, ConstValue>;

/// Parses a `-D` value: an integer, `true`/`false`, or a dtype name.
pub fn parse_const(text: &str) -> Option<ConstValue> {
    if let Ok(v) = text.parse::<i64>() {
        return Some(ConstValue::Int(v));
    }
    match text {
        "true" => Some(ConstValue::Bool(true)),
        "false" => Some(ConstValue::Bool(false)),
        _ => tir::DType::parse(text).map(ConstValue::Dtype),
    }
}

/// Elaborates every kernel of a file; returns the kernels that elaborated and the diagnostics of those
/// that did not.
pub fn elaborate_file(
    file: &ast::File,
    overrides: &Overrides,
) -> (Vec<tir::Kernel>, Vec<Diagnostic>) {
    let mut kernels = Vec::new();
    let mut diags = Vec::new();
    let mut seen: HashMap<&str, ast::Span> = HashMap::new();
    for k in &file.kernels {
        if let Some(first) = seen.insert(&k.name.name, k.name.span) {
            diags.push(
                Diagnostic::error(
                    format!("kernel `{}` is defined twice", k.name),
                    k.name.span,
                    "second definition",
                )
                .with_secondary(first, "first defined here"),
            );
            continue;
        }
        match elaborate_kernel(k, overrides) {
            Ok(t) => kernels.push(t),
            Err(d) => diags.push(d),
        }
    }
    (kernels, diags)
}

/// Front end in one call: parse, then lower every kernel.
pub fn compile_source(
    source: &str,
    overrides: &Overrides,
) -> Result<Vec<tir::Kernel>, Vec<Diagnostic>> {
    let file = crate::syntax::parse(source).map_err(|d| vec![d])?;
    let (kernels, diags) = elaborate_file(&file, overrides);
    if diags.is_empty() {
        Ok(kernels)
    } else {
        Err(diags)
    }
}
