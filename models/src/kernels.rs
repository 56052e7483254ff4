//! The kernel sources the models are built from, embedded at build time from dsl-examples/ so
//! that a graph's calls, the interpreter backend and `tessel compile-model` all read one text.

/// (stem, source) of every file a model graph calls into.
pub const SOURCES: &[(&str, &str)] = &[
    ("srmsnorm", include_str!("../../dsl-examples/srmsnorm.tsl")),
    (
        "embedding",
        include_str!("../../dsl-examples/embedding.tsl"),
    ),
    ("linear", include_str!("../../dsl-examples/linear.tsl")),
    ("sglu", include_str!("../../dsl-examples/sglu.tsl")),
    (
        "transnormer_mixer",
        include_str!("../../dsl-examples/transnormer_mixer.tsl"),
    ),
    ("sampling", include_str!("../../dsl-examples/sampling.tsl")),
    (
        "transnormer_tp",
        include_str!("../../dsl-examples/transnormer_tp.tsl"),
    ),
    (
        "layernorm",
        include_str!("../../dsl-examples/layernorm.tsl"),
    ),
    ("longnet", include_str!("../../dsl-examples/longnet.tsl")),
    (
        "dilated_attention",
        include_str!("../../dsl-examples/dilated_attention.tsl"),
    ),
    (
        "lightning_attention",
        include_str!("../../dsl-examples/lightning_attention.tsl"),
    ),
];

pub fn source(stem: &str) -> Option<&'static str> {
    SOURCES.iter().find(|(s, _)| *s == stem).map(|(_, t)| *t)
}
