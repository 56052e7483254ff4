//! Checks the operators share: every refusal is a `RuntimeError::BadOperand` naming the operator.

use tessel_package::DType;

use crate::{DeviceTensor, LoadedPackage, RuntimeError};

pub(crate) fn bad(op: &'static str, reason: String) -> RuntimeError {
    RuntimeError::BadOperand { op, reason }
}

/// `t` must be exactly `dtype` of `shape`.
pub(crate) fn expect(
    op: &'static str,
    name: &str,
    t: &DeviceTensor,
    shape: &[usize],
    dtype: DType,
) -> Result<(), RuntimeError> {
    if t.shape != shape || t.dtype != dtype {
        return Err(bad(
            op,
            format!(
                "{name} is {} {:?}; expected {} {shape:?}",
                t.dtype.name(),
                t.shape,
                dtype.name()
            ),
        ));
    }
    Ok(())
}

/// `t` must have `rank` dimensions; `layout` names them in the message.
pub(crate) fn expect_rank(
    op: &'static str,
    name: &str,
    t: &DeviceTensor,
    rank: usize,
    layout: &str,
) -> Result<(), RuntimeError> {
    if t.shape.len() != rank {
        return Err(bad(
            op,
            format!("{name} has shape {:?}; expected {layout}", t.shape),
        ));
    }
    Ok(())
}

/// The entry of `kernel` specialised with `consts`, by name.
pub(crate) fn variant<'p>(
    pkg: &'p LoadedPackage,
    kernel: &str,
    consts: &[(&str, &str)],
) -> Result<&'p str, RuntimeError> {
    Ok(pkg.find(kernel, consts)?.name.as_str())
}

/// Every tensor of `named` must share the first one's dtype.
pub(crate) fn same_dtype(
    op: &'static str,
    named: &[(&str, &DeviceTensor)],
) -> Result<DType, RuntimeError> {
    let dtype = named[0].1.dtype;
    if named.iter().any(|(_, t)| t.dtype != dtype) {
        let list: Vec<String> = named
            .iter()
            .map(|(n, t)| format!("{n} is {}", t.dtype.name()))
            .collect();
        return Err(bad(
            op,
            format!("{}: they must share one dtype", list.join(", ")),
        ));
    }
    Ok(dtype)
}

/// The softmax scale τ a call asks for, 1/√D when it names none; a non-finite τ is refused.
pub(crate) fn softmax_scale(
    op: &'static str,
    asked: Option<f32>,
    head_dim: usize,
) -> Result<f32, RuntimeError> {
    let scale = asked.unwrap_or(1.0 / (head_dim as f32).sqrt());
    if !scale.is_finite() {
        return Err(bad(op, format!("softmax scale {scale} is not finite")));
    }
    Ok(scale)
}

/// A boolean specialisation constant as the package spells it.
pub(crate) fn flag(b: bool) -> &'static str {
    if b {
        "true"
    } else {
        "false"
    }
}
