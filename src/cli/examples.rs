//! The example kernels' sources, built into the binary so that `tessel demo` (and the GPU
//! bundle it fills) runs from any directory. Keyed by their path in the repository, the same
//! path the operator specs (`tessel_runtime::spec`) name.

/// (path relative to the repository root, source) of every file in dsl-examples/.
pub const EXAMPLES: &[(&str, &str)] = &[
    (
        "dsl-examples/activation.tsl",
        include_str!("../../dsl-examples/activation.tsl"),
    ),
    (
        "dsl-examples/dilated_attention.tsl",
        include_str!("../../dsl-examples/dilated_attention.tsl"),
    ),
    (
        "dsl-examples/dilated_sp.tsl",
        include_str!("../../dsl-examples/dilated_sp.tsl"),
    ),
    (
        "dsl-examples/elementwise.tsl",
        include_str!("../../dsl-examples/elementwise.tsl"),
    ),
    (
        "dsl-examples/embedding.tsl",
        include_str!("../../dsl-examples/embedding.tsl"),
    ),
    (
        "dsl-examples/flash_attention.tsl",
        include_str!("../../dsl-examples/flash_attention.tsl"),
    ),
    (
        "dsl-examples/flash_gau.tsl",
        include_str!("../../dsl-examples/flash_gau.tsl"),
    ),
    (
        "dsl-examples/gla.tsl",
        include_str!("../../dsl-examples/gla.tsl"),
    ),
    (
        "dsl-examples/layernorm.tsl",
        include_str!("../../dsl-examples/layernorm.tsl"),
    ),
    (
        "dsl-examples/lightning_attention.tsl",
        include_str!("../../dsl-examples/lightning_attention.tsl"),
    ),
    (
        "dsl-examples/linear.tsl",
        include_str!("../../dsl-examples/linear.tsl"),
    ),
    (
        "dsl-examples/longnet.tsl",
        include_str!("../../dsl-examples/longnet.tsl"),
    ),
    (
        "dsl-examples/matmul.tsl",
        include_str!("../../dsl-examples/matmul.tsl"),
    ),
    (
        "dsl-examples/sampling.tsl",
        include_str!("../../dsl-examples/sampling.tsl"),
    ),
    (
        "dsl-examples/scan.tsl",
        include_str!("../../dsl-examples/scan.tsl"),
    ),
    (
        "dsl-examples/sglu.tsl",
        include_str!("../../dsl-examples/sglu.tsl"),
    ),
    (
        "dsl-examples/softmax.tsl",
        include_str!("../../dsl-examples/softmax.tsl"),
    ),
    (
        "dsl-examples/srmsnorm.tsl",
        include_str!("../../dsl-examples/srmsnorm.tsl"),
    ),
    (
        "dsl-examples/strided.tsl",
        include_str!("../../dsl-examples/strided.tsl"),
    ),
    (
        "dsl-examples/transnormer_mixer.tsl",
        include_str!("../../dsl-examples/transnormer_mixer.tsl"),
    ),
    (
        "dsl-examples/transnormer_tp.tsl",
        include_str!("../../dsl-examples/transnormer_tp.tsl"),
    ),
];

/// The source of the example at `path` (e.g. `dsl-examples/matmul.tsl`).
pub fn source(path: &str) -> Result<&'static str, String> {
    EXAMPLES
        .iter()
        .find(|(p, _)| *p == path)
        .map(|(_, s)| *s)
        .ok_or_else(|| format!("`{path}` is not one of the built-in examples"))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A file added to dsl-examples/ without a row here would be missing from `tessel demo`.
    #[test]
    fn every_example_file_is_built_in_and_current() {
        let root = env!("CARGO_MANIFEST_DIR");
        let mut on_disk: Vec<String> = std::fs::read_dir(format!("{root}/dsl-examples"))
            .unwrap()
            .map(|e| format!("dsl-examples/{}", e.unwrap().file_name().to_string_lossy()))
            .filter(|p| p.ends_with(".tsl"))
            .collect();
        on_disk.sort();
        let built_in: Vec<String> = EXAMPLES.iter().map(|(p, _)| p.to_string()).collect();
        assert_eq!(on_disk, built_in);
        for (path, text) in EXAMPLES {
            assert_eq!(
                std::fs::read_to_string(format!("{root}/{path}")).unwrap(),
                *text
            );
        }
    }

    #[test]
    fn every_operator_source_is_built_in() {
        for spec in tessel_runtime::OPERATORS {
            assert!(source(spec.source).is_ok(), "{}", spec.source);
        }
    }
}
