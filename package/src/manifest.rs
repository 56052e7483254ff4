//! The manifest of an AOT package: everything the runtime needs to check a call and launch it,
//! with no compiler at hand.

use serde::{Deserialize, Serialize};

use crate::{Requirement, ShapeExpr};

/// Element types, of tiles in the compiler's Tile IR and of kernel parameters in a manifest: the
/// one definition the compiler, the package format and the runtime share.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DType {
    Bf16,
    F16,
    F32,
    I32,
    /// Stored as one byte, 0 or 1.
    Bool,
}

impl DType {
    pub const ALL: [DType; 5] = [DType::Bf16, DType::F16, DType::F32, DType::I32, DType::Bool];

    /// Bytes per element in global memory.
    pub fn size(self) -> usize {
        match self {
            DType::Bf16 | DType::F16 => 2,
            DType::F32 | DType::I32 => 4,
            DType::Bool => 1,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            DType::Bf16 => "bf16",
            DType::F16 => "f16",
            DType::F32 => "f32",
            DType::I32 => "i32",
            DType::Bool => "bool",
        }
    }

    pub fn parse(s: &str) -> Option<DType> {
        Self::ALL.into_iter().find(|d| d.name() == s)
    }

    pub fn is_float(self) -> bool {
        matches!(self, DType::Bf16 | DType::F16 | DType::F32)
    }
}

impl std::fmt::Display for DType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// How a kernel uses a tensor parameter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Io {
    In,
    Out,
    InOut,
}

impl Io {
    pub fn name(self) -> &'static str {
        match self {
            Io::In => "in",
            Io::Out => "out",
            Io::InOut => "inout",
        }
    }
}

/// One dimension of a tensor parameter: a shape symbol bound by the call, or a fixed size.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(untagged)]
pub enum DimSpec {
    Const(i64),
    Sym(String),
}

impl std::fmt::Display for DimSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DimSpec::Sym(s) => f.write_str(s),
            DimSpec::Const(v) => write!(f, "{v}"),
        }
    }
}

/// A kernel parameter, in the order the PTX entry takes them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum ParamSpec {
    /// A tensor, passed as a global pointer: dense row-major, or with `strides` (in elements,
    /// one per dimension) whose symbols the call binds from the tensor it is given.
    Tensor {
        name: String,
        dtype: DType,
        dims: Vec<DimSpec>,
        io: Io,
        /// Absent for dense tensors (and in packages written before strides existed).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        strides: Option<Vec<DimSpec>>,
    },
    /// A run-time scalar, passed by value.
    Scalar { name: String, dtype: DType },
    /// The value of a shape symbol (an extent or a stride) bound from the tensors, passed as an
    /// i32.
    Shape { symbol: String },
    /// A TMA tensor map of tensor parameter `tensor`, passed by value (128 bytes, 64-aligned),
    /// encoded per launch from that tensor's pointer, shape and strides
    /// ([`crate::tensor_map::encoding`]): its dimensions innermost first, boxes of `box_dims`
    /// (innermost first), `swizzle` bytes (128, 64, 32; 0 for none), out-of-bounds elements read
    /// as zeros. `requires` says what the tensor must satisfy; a launch it does not is refused.
    #[serde(rename = "tensor_map")]
    TensorMap {
        name: String,
        tensor: String,
        dtype: DType,
        box_dims: Vec<u32>,
        swizzle: u32,
        requires: String,
    },
}

impl ParamSpec {
    pub fn name(&self) -> &str {
        match self {
            ParamSpec::Tensor { name, .. }
            | ParamSpec::Scalar { name, .. }
            | ParamSpec::TensorMap { name, .. } => name,
            ParamSpec::Shape { symbol } => symbol,
        }
    }

    /// Whether the caller passes it (a tensor or a scalar); shape values and tensor maps are
    /// derived from the tensors passed.
    pub fn is_passed(&self) -> bool {
        matches!(self, ParamSpec::Tensor { .. } | ParamSpec::Scalar { .. })
    }
}

/// How to launch: the grid as expressions of the shape symbols, the block, dynamic shared memory.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LaunchRule {
    pub grid: Vec<ShapeExpr>,
    pub block: [u32; 3],
    pub shared_bytes: u32,
}

/// Where a kernel's PTX lies in the package's blob section, and its SHA-256.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Blob {
    pub offset: u64,
    pub len: u64,
    pub sha256: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct KernelEntry {
    /// The name callers use.
    pub name: String,
    /// The PTX `.entry` symbol.
    pub entry: String,
    pub params: Vec<ParamSpec>,
    /// The compile-time values the kernel was specialised with, as `NAME=VALUE` text.
    pub consts: Vec<(String, String)>,
    pub launch: LaunchRule,
    /// What the call's shapes must satisfy (`requires` in the source); checked before every
    /// launch. Absent in packages written before requirements existed: those have none.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub requires: Vec<Requirement>,
    /// Floating-point operations and bytes moved per call, for benchmarks' TFLOP/s and GB/s.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub flops: Option<ShapeExpr>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bytes: Option<ShapeExpr>,
    pub ptx: Blob,
    /// The kernel's Tile IR, when it has one: `tessel run` interprets it as the reference.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tile_ir: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TargetSpec {
    pub arch: String,
    pub ptx_isa: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    pub format_version: u32,
    pub tessel_version: String,
    pub target: TargetSpec,
    pub kernels: Vec<KernelEntry>,
}

/// Element strides of a dense row-major tensor of `shape`: the layout tensors have unless they say
/// otherwise.
pub fn dense_strides(shape: &[usize]) -> Vec<usize> {
    let mut s = vec![1; shape.len()];
    for i in (0..shape.len().saturating_sub(1)).rev() {
        s[i] = s[i + 1] * shape[i + 1];
    }
    s
}
