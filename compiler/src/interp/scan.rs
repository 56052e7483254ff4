//! `cumsum` / `cumprod` along one axis, on a row-major tile.

use super::round;
use crate::tir::{DType, ScanOp};

/// The inclusive scan of `data` (shaped `shape`, row-major) along `axis`. Partial results are
/// held exactly in f64 and each output rounds once to `dtype`, as the kernels' f32 accumulation
/// rounds once at the end.
pub fn scan(op: ScanOp, data: &[f64], shape: &[usize], axis: usize, dtype: DType) -> Vec<f64> {
    let (outer, len, inner) = (
        shape[..axis].iter().product::<usize>(),
        shape[axis],
        shape[axis + 1..].iter().product::<usize>(),
    );
    let mut out = vec![0.0; data.len()];
    for o in 0..outer {
        for i in 0..inner {
            let mut acc = match op {
                ScanOp::Sum => 0.0,
                ScanOp::Prod => 1.0,
            };
            for r in 0..len {
                let at = (o * len + r) * inner + i;
                acc = match op {
                    ScanOp::Sum => acc + data[at],
                    ScanOp::Prod => acc * data[at],
                };
                out[at] = round(dtype, acc);
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scans_the_named_axis_only() {
        // 2 × 3: rows [1 2 3], [4 5 6].
        let d = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0];
        assert_eq!(
            scan(ScanOp::Sum, &d, &[2, 3], 1, DType::F32),
            [1.0, 3.0, 6.0, 4.0, 9.0, 15.0]
        );
        assert_eq!(
            scan(ScanOp::Sum, &d, &[2, 3], 0, DType::F32),
            [1.0, 2.0, 3.0, 5.0, 7.0, 9.0]
        );
        assert_eq!(
            scan(ScanOp::Prod, &d, &[2, 3], 1, DType::I32),
            [1.0, 2.0, 6.0, 4.0, 20.0, 120.0]
        );
    }
}
