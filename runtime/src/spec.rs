//! What each operator family needs from its package, declared once: the source it is compiled
//! from, the variants the package is built over, every kernel the operator launches and the
//! compile-time constants its host code assumes. The operators read their kernel names from
//! here; `tessel demo` (and so the GPU bundle) builds the packages from here; the tests load
//! them from here; and a CPU test builds each package and checks that every kernel and constant
//! listed is in it — so a renamed kernel or a changed block size fails on CPU, not at launch.

/// One operator family's package.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OperatorSpec {
    /// The package's file stem: operators load `<package>.<arch>.tpkg`.
    pub package: &'static str,
    /// The kernels' source, relative to the repository root.
    pub source: &'static str,
    /// The compile-time values the package is built over, as `tessel compile --variant`
    /// takes them: every combination is one entry per kernel.
    pub variants: &'static [(&'static str, &'static [&'static str])],
    /// Every kernel (PTX entry) the operators launch.
    pub kernels: &'static [&'static str],
    /// Constants the host code depends on, with the value it assumes: every entry of every
    /// kernel that declares the constant must have been built with that value.
    pub constants: &'static [(&'static str, i64)],
}

impl OperatorSpec {
    /// The `--variant` flags that build this package (`D=64,128`, ...).
    pub fn variant_flags(&self) -> Vec<String> {
        self.variants
            .iter()
            .map(|(name, values)| format!("{name}={}", values.join(",")))
            .collect()
    }

    /// The value the host code assumes for `name`.
    pub fn constant(&self, name: &str) -> Option<i64> {
        self.constants
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| *v)
    }
}

/// FlashAttention forward and backward (runtime::attention).
pub mod flash {
    use super::OperatorSpec;

    pub const FWD: &str = "flash_attention_fwd";
    pub const BWD_PREPROCESS: &str = "flash_attention_bwd_preprocess";
    pub const BWD_DKDV: &str = "flash_attention_bwd_dkdv";
    pub const BWD_DQ: &str = "flash_attention_bwd_dq";

    pub const SPEC: OperatorSpec = OperatorSpec {
        package: "flash_attention",
        source: "dsl-examples/flash_attention.tsl",
        variants: &[("D", &["64", "128"]), ("CAUSAL", &["false", "true"])],
        kernels: &[FWD, BWD_PREPROCESS, BWD_DKDV, BWD_DQ],
        constants: &[],
    };
}

/// Lightning Attention: forward, prefill, decode and backward (runtime::lightning).
pub mod lightning {
    use super::OperatorSpec;

    pub const SEGMENT_STATE: &str = "lightning_attention_segment_state";
    pub const FWD: &str = "lightning_attention_fwd";
    pub const STATE: &str = "lightning_attention_state";
    pub const DECODE: &str = "lightning_attention_decode";
    pub const SEGMENT_DSTATE: &str = "lightning_attention_segment_dstate";
    pub const BWD_DQ: &str = "lightning_attention_bwd_dq";
    pub const BWD_DK: &str = "lightning_attention_bwd_dk";
    pub const BWD_DV: &str = "lightning_attention_bwd_dv";

    /// Tokens per block (`BLK` in the source): the host sizes segments in whole blocks.
    pub const BLOCK: usize = 64;

    pub const SPEC: OperatorSpec = OperatorSpec {
        package: "lightning_attention",
        source: "dsl-examples/lightning_attention.tsl",
        variants: &[("D", &["64", "128"]), ("E", &["64", "128"])],
        kernels: &[
            SEGMENT_STATE,
            FWD,
            STATE,
            DECODE,
            SEGMENT_DSTATE,
            BWD_DQ,
            BWD_DK,
            BWD_DV,
        ],
        constants: &[("BLK", BLOCK as i64)],
    };
}

/// Gated linear attention: chunked forward with initial and final state, decode and backward
/// (runtime::gla).
pub mod gla {
    use super::OperatorSpec;

    pub const FWD_STATE: &str = "gla_fwd_state";
    pub const FWD_O: &str = "gla_fwd_o";
    pub const DECODE: &str = "gla_decode";
    pub const BWD_DSTATE: &str = "gla_bwd_dstate";
    pub const BWD_DQK: &str = "gla_bwd_dqk";
    pub const BWD_DV: &str = "gla_bwd_dv";
    /// The recurrent backward (one program per (sequence, head)): a reference kernel, not what
    /// the operator launches.
    pub const BWD_DQ: &str = "gla_bwd_dq";
    pub const BWD_DKV: &str = "gla_bwd_dkv";

    /// Tokens per chunk (`BT` in the source): the host sizes the chunk-state tensor by it.
    pub const CHUNK: usize = 64;

    pub const SPEC: OperatorSpec = OperatorSpec {
        package: "gla",
        source: "dsl-examples/gla.tsl",
        variants: &[("D", &["64", "128"]), ("E", &["64", "128"])],
        kernels: &[
            FWD_STATE, FWD_O, DECODE, BWD_DSTATE, BWD_DQK, BWD_DV, BWD_DQ, BWD_DKV,
        ],
        constants: &[("BT", CHUNK as i64)],
    };
}

/// FLASH mixed-chunk attention with GAU's gate, forward and backward (runtime::flash_gau).
pub mod flash_gau {
    use super::OperatorSpec;

    pub const CHUNK_STATE: &str = "flash_chunk_state";
    pub const STATE_SCAN: &str = "flash_state_scan";
    pub const FWD: &str = "flash_gau_fwd";
    pub const BWD_CHUNK_STATE: &str = "flash_bwd_chunk_state";
    pub const BWD_KV: &str = "flash_gau_bwd_kv";
    pub const BWD_Q: &str = "flash_gau_bwd_q";
    pub const BWD_Z: &str = "flash_gau_bwd_z";
    pub const BWD_PARAMS: &str = "flash_gau_bwd_params";
    /// Tokens per block of the dz pass (`BM`): the host sizes the partial sums by it.
    pub const BLOCK: usize = 64;

    /// Tokens per chunk (`G` in the source): the host sizes the prefix-state tensor by it.
    pub const CHUNK: usize = 256;
    /// The width of Z (`S`): the kernels are built for it alone.
    pub const S: usize = 128;

    pub const SPEC: OperatorSpec = OperatorSpec {
        package: "flash_gau",
        source: "dsl-examples/flash_gau.tsl",
        variants: &[("E", &["64", "128"]), ("CAUSAL", &["false", "true"])],
        kernels: &[
            CHUNK_STATE,
            STATE_SCAN,
            FWD,
            BWD_CHUNK_STATE,
            BWD_KV,
            BWD_Q,
            BWD_Z,
            BWD_PARAMS,
        ],
        constants: &[("G", CHUNK as i64), ("S", S as i64), ("BM", BLOCK as i64)],
    };
}

/// LongNet's dilated attention, one launch per pattern, forward and both backward modes
/// (runtime::dilated).
pub mod dilated {
    use super::OperatorSpec;

    pub const FWD: &str = "dilated_attention_fwd";
    pub const BWD_PREPROCESS: &str = "dilated_attention_bwd_preprocess";
    pub const BWD_DELTA: &str = "dilated_attention_bwd_delta";
    pub const BWD_DKDV: &str = "dilated_attention_bwd_dkdv";
    pub const BWD_DQ: &str = "dilated_attention_bwd_dq";
    /// One decode token against a KV cache (the LongNet model's decode step).
    pub const DECODE: &str = "dilated_attention_decode";

    pub const SPEC: OperatorSpec = OperatorSpec {
        package: "dilated_attention",
        source: "dsl-examples/dilated_attention.tsl",
        variants: &[
            ("D", &["64", "128"]),
            ("CAUSAL", &["false", "true"]),
            ("FIRST", &["false", "true"]),
        ],
        kernels: &[FWD, BWD_PREPROCESS, BWD_DELTA, BWD_DKDV, BWD_DQ, DECODE],
        constants: &[],
    };
}

/// Sequence-parallel dilated attention's gathered-pattern kernels (runtime::dilated_sp; the
/// local patterns use [`dilated`]'s).
pub mod dilated_sp {
    use super::OperatorSpec;

    pub const SPARSIFY: &str = "dilated_sp_sparsify";
    pub const FWD: &str = "dilated_sp_fwd";
    pub const BWD_DELTA: &str = "dilated_sp_bwd_delta";
    pub const BWD_DKDV: &str = "dilated_sp_bwd_dkdv";
    pub const BWD_DQ: &str = "dilated_sp_bwd_dq";
    pub const SCATTER_ADD: &str = "dilated_sp_scatter_add";

    pub const SPEC: OperatorSpec = OperatorSpec {
        package: "dilated_sp",
        source: "dsl-examples/dilated_sp.tsl",
        variants: &[
            ("D", &["64", "128"]),
            ("CAUSAL", &["false", "true"]),
            ("FIRST", &["false", "true"]),
        ],
        kernels: &[SPARSIFY, FWD, BWD_DELTA, BWD_DKDV, BWD_DQ, SCATTER_ADD],
        constants: &[],
    };
}

/// Every operator family's package.
pub const OPERATORS: &[OperatorSpec] = &[
    flash::SPEC,
    lightning::SPEC,
    gla::SPEC,
    flash_gau::SPEC,
    dilated::SPEC,
    dilated_sp::SPEC,
];
