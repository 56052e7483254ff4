//! Float64 references for every tessel kernel, written straight from the math (the
//! O(N²) definitions, not the blocked algorithms the kernels use), so that a kernel and its
//! reference share no code and no algorithmic shortcut.
//!
//! Layout convention: tensors are dense row-major `f64` slices in (B, H, N, D) order; a [`Dims`]
//! value says how to index them.

pub mod attention;
pub mod dilated;
pub mod flash_gau;
pub mod gla;
pub mod linear;
pub mod longnet;
pub mod transnormer;

/// Shape of a (B, H, N, D) tensor, row-major.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Dims {
    pub b: usize,
    pub h: usize,
    pub n: usize,
    pub d: usize,
}

impl Dims {
    pub const fn new(b: usize, h: usize, n: usize, d: usize) -> Self {
        Self { b, h, n, d }
    }

    pub const fn len(&self) -> usize {
        self.b * self.h * self.n * self.d
    }

    pub const fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Offset of row (b, h, t) — the first of its `d` elements.
    #[inline]
    pub const fn row(&self, b: usize, h: usize, t: usize) -> usize {
        ((b * self.h + h) * self.n + t) * self.d
    }
}

/// C = A·B for row-major A (m×k) and B (k×n): the reference of every matmul kernel.
pub fn matmul(a: &[f64], b: &[f64], m: usize, n: usize, k: usize) -> Vec<f64> {
    assert_eq!(a.len(), m * k, "A has the wrong length");
    assert_eq!(b.len(), k * n, "B has the wrong length");
    let mut c = vec![0.0; m * n];
    for i in 0..m {
        let crow = &mut c[i * n..(i + 1) * n];
        for p in 0..k {
            let x = a[i * k + p];
            let brow = &b[p * n..(p + 1) * n];
            crow.iter_mut().zip(brow).for_each(|(c, y)| *c += x * y);
        }
    }
    c
}

/// Dot product of two equal-length rows.
#[inline]
pub(crate) fn dot(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

/// The largest |a − b| / max(|b|, floor) over two slices: the comparison tests report.
pub fn max_rel_err(got: &[f64], want: &[f64], floor: f64) -> f64 {
    assert_eq!(got.len(), want.len(), "compared slices differ in length");
    got.iter()
        .zip(want)
        .map(|(g, w)| {
            if g.is_nan() || w.is_nan() {
                f64::INFINITY
            } else {
                (g - w).abs() / w.abs().max(floor)
            }
        })
        .fold(0.0, f64::max)
}

/// Test helpers shared by the references' own tests.
#[cfg(test)]
pub(crate) mod testing {
    use rand::Rng;

    /// `n` fresh uniform values in [−1, 1).
    pub fn randn(n: usize) -> Vec<f64> {
        let mut rng = rand::rng();
        (0..n).map(|_| rng.random_range(-1.0..1.0)).collect()
    }

    /// Checks analytic gradients of a scalar function of three tensors against central finite
    /// differences, element by element.
    pub fn check_gradients(
        f: impl Fn(&[f64], &[f64], &[f64]) -> f64,
        inputs: [&[f64]; 3],
        grads: [&[f64]; 3],
    ) {
        let eps = 1e-6;
        for (which, grad) in grads.iter().enumerate() {
            for (i, &g) in grad.iter().enumerate() {
                let mut plus: Vec<Vec<f64>> = inputs.iter().map(|x| x.to_vec()).collect();
                let mut minus = plus.clone();
                plus[which][i] += eps;
                minus[which][i] -= eps;
                let fd = (f(&plus[0], &plus[1], &plus[2]) - f(&minus[0], &minus[1], &minus[2]))
                    / (2.0 * eps);
                assert!(
                    (fd - g).abs() < 1e-7,
                    "tensor {which} element {i}: fd {fd} vs {g}"
                );
            }
        }
    }
}
