//! Refuses, before anything is decided, what the lowering cannot carry yet.
//!
//! Writes nothing.

use super::{Ctx, SchedError};
use crate::tir::{Op, ParamKind};

pub fn run(cx: &Ctx) -> Result<(), SchedError> {
    if cx
        .facts
        .insts()
        .any(|i| matches!(i.op, Op::StrideSize { .. }))
    {
        return Err(cx.refuse("stride", "strided tensors are not lowered yet"));
    }
    let strided = cx.facts.kernel.params.iter().any(|p| {
        matches!(
            p.kind,
            ParamKind::Tensor {
                strides: Some(_),
                ..
            }
        )
    });
    if strided {
        return Err(cx.refuse("strides", "strided tensors are not lowered yet"));
    }
    Ok(())
}
