//! Per-head, per-layer decay rates of TransNormerLLM's Lightning Attention (ALGORITHMS.md §2).
//!
//! Kernels take the *slope* s (log-decay magnitude), λ = e^{−s}, never λ itself: s is what stays
//! accurate when λ is within 1e−5 of 1, as it is in the last layers.
//!
//! Two schedules exist and they are not the same function. [`Schedule::Released`] is what the
//! released checkpoints and the official kernels use, so it is the default; [`Schedule::Paper`]
//! is the paper's formula (also fla's `chunk_lightning_attn`).

/// Which published decay schedule to use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Schedule {
    /// ALiBi slopes per head, scaled per layer by (1 − l/(L−1) + 1e−5).
    #[default]
    Released,
    /// s_{h,l} = (8h/H)(1 − l/L), h = 0..H−1: head 0 never decays.
    Paper,
}

/// ALiBi's head slopes: 2^{−8h/H} for h = 1..H when H is a power of two; otherwise the list for
/// the largest power of two below H, completed with every second slope of the next power's list.
pub fn alibi_slopes(heads: usize) -> Vec<f64> {
    fn power_of_two(n: usize) -> Vec<f64> {
        (1..=n)
            .map(|h| (-8.0 * h as f64 / n as f64).exp2())
            .collect()
    }
    if heads == 0 {
        return Vec::new();
    }
    if heads.is_power_of_two() {
        return power_of_two(heads);
    }
    let lower = 1usize << heads.ilog2();
    let mut slopes = power_of_two(lower);
    slopes.extend(
        power_of_two(2 * lower)
            .into_iter()
            .step_by(2)
            .take(heads - lower),
    );
    slopes
}

/// The slopes s_{h,l} of layer `layer` (0-based) of a model with `layers` layers, one per head.
pub fn layer_slopes(schedule: Schedule, heads: usize, layer: usize, layers: usize) -> Vec<f64> {
    assert!(layer < layers, "layer {layer} of a {layers}-layer model");
    match schedule {
        Schedule::Released => {
            let factor = if layers == 1 {
                1.0 + 1e-5
            } else {
                1.0 - layer as f64 / (layers - 1) as f64 + 1e-5
            };
            alibi_slopes(heads)
                .into_iter()
                .map(|s| s * factor)
                .collect()
        }
        Schedule::Paper => (0..heads)
            .map(|h| 8.0 * h as f64 / heads as f64 * (1.0 - layer as f64 / layers as f64))
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn power_of_two_heads_are_geometric() {
        let s = alibi_slopes(8);
        assert_eq!(s.len(), 8);
        assert_eq!(s[0], 0.5);
        for w in s.windows(2) {
            assert!((w[1] / w[0] - 0.5).abs() < 1e-15);
        }
    }

    #[test]
    fn twelve_heads_follow_the_interleaved_rule() {
        let s = alibi_slopes(12);
        let want: Vec<f64> = [
            -1.0, -2.0, -3.0, -4.0, -5.0, -6.0, -7.0, -8.0, -0.5, -1.5, -2.5, -3.5,
        ]
        .iter()
        .map(|e: &f64| e.exp2())
        .collect();
        assert_eq!(s, want);
    }

    #[test]
    fn released_layer_zero_of_eight_heads_matches_the_documented_range() {
        let lambdas: Vec<f64> = layer_slopes(Schedule::Released, 8, 0, 24)
            .iter()
            .map(|s| (-s).exp())
            .collect();
        assert!((lambdas[0] - 0.6065).abs() < 1e-4, "{lambdas:?}");
        assert!((lambdas[7] - 0.9961).abs() < 1e-4, "{lambdas:?}");
    }

    #[test]
    fn released_last_layer_barely_decays_and_single_layer_keeps_its_slopes() {
        let last = layer_slopes(Schedule::Released, 8, 23, 24);
        assert!(last
            .iter()
            .zip(alibi_slopes(8))
            .all(|(s, a)| (s - 1e-5 * a).abs() < 1e-18));
        let single = layer_slopes(Schedule::Released, 4, 0, 1);
        assert!(single
            .iter()
            .zip(alibi_slopes(4))
            .all(|(s, a)| *s == a * (1.0 + 1e-5)));
    }

    #[test]
    fn paper_schedule_head_zero_never_decays() {
        let s = layer_slopes(Schedule::Paper, 8, 0, 24);
        assert_eq!(s[0], 0.0);
        let l: Vec<f64> = s.iter().map(|s| (-s).exp()).collect();
        assert!(
            (l[1] - 0.3679).abs() < 1e-4 && (l[2] - 0.1353).abs() < 1e-4,
            "{l:?}"
        );
    }
}
