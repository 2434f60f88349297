//! Matrix products for the network core, straight on the `gemm` crate that candle itself
//! uses on the CPU: no tensor allocation, and strided operands (a transposed matrix is free).

use gemm::Parallelism;

/// A read-only matrix view: element (i, j) is `data[i * rs + j * cs]`.
#[derive(Clone, Copy)]
pub struct Mat<'a> {
    pub data: &'a [f32],
    pub rows: usize,
    pub cols: usize,
    pub rs: usize,
    pub cs: usize,
}

impl<'a> Mat<'a> {
    /// A row-major `rows × cols` matrix.
    pub fn rows(data: &'a [f32], rows: usize, cols: usize) -> Self {
        Self {
            data,
            rows,
            cols,
            rs: cols,
            cs: 1,
        }
    }

    /// The transpose of this view (no copy).
    pub fn t(self) -> Self {
        Self {
            data: self.data,
            rows: self.cols,
            cols: self.rows,
            rs: self.cs,
            cs: self.rs,
        }
    }

    fn check(&self) {
        if self.rows > 0 && self.cols > 0 {
            let last = (self.rows - 1) * self.rs + (self.cols - 1) * self.cs;
            assert!(last < self.data.len(), "matrix view out of bounds");
        }
    }
}

fn parallelism(flops: usize) -> Parallelism {
    // Below about a megaflop the thread hand-off costs more than it saves.
    if flops < 1 << 20 {
        Parallelism::None
    } else {
        Parallelism::Rayon(0)
    }
}

/// `out (a.rows × b.cols, row-major) = a·b`, or `out += a·b` when `accumulate`.
pub fn matmul(a: Mat, b: Mat, out: &mut [f32], accumulate: bool) {
    let threads = parallelism(2 * a.rows * b.cols * a.cols);
    let n = b.cols;
    product(a, b, (out, n), accumulate, threads);
}

/// `out = a·b` (or `out += a·b` when `accumulate`) on the calling thread only (for products
/// made inside a parallel loop), row i of the result at `out[i * out_rs..]`.
pub fn matmul_serial(a: Mat, b: Mat, out: &mut [f32], out_rs: usize, accumulate: bool) {
    product(a, b, (out, out_rs), accumulate, Parallelism::None);
}

fn product(
    a: Mat,
    b: Mat,
    (out, out_rs): (&mut [f32], usize),
    accumulate: bool,
    threads: Parallelism,
) {
    assert_eq!(a.cols, b.rows, "inner dimensions");
    assert!(out_rs >= b.cols, "output row stride");
    if a.rows > 0 {
        assert!(out.len() >= (a.rows - 1) * out_rs + b.cols, "output size");
    }
    a.check();
    b.check();
    let (m, k, n) = (a.rows, a.cols, b.cols);
    if m == 0 || n == 0 {
        return;
    }
    if k == 0 {
        if !accumulate {
            out.fill(0.0);
        }
        return;
    }
    // SAFETY: `check` proved every element the strides reach lies inside each slice, `out`
    // holds the m rows of n elements `out_rs` apart (asserted above), and the three slices do
    // not alias (`out` is a unique borrow).
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            out.as_mut_ptr(),
            1,
            out_rs as isize,
            accumulate,
            a.data.as_ptr(),
            a.cs as isize,
            a.rs as isize,
            b.data.as_ptr(),
            b.cs as isize,
            b.rs as isize,
            1.0,
            1.0,
            false,
            false,
            false,
            threads,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_a_triple_loop_with_transposes_and_accumulation() {
        let (m, k, n) = (5, 7, 3);
        let a: Vec<f32> = (0..m * k).map(|i| (i as f32 * 0.37).sin()).collect();
        let bt: Vec<f32> = (0..n * k).map(|i| (i as f32 * 0.11).cos()).collect();
        let mut out = vec![1.0; m * n];
        matmul(
            Mat::rows(&a, m, k),
            Mat::rows(&bt, n, k).t(),
            &mut out,
            true,
        );
        for i in 0..m {
            for j in 0..n {
                let want: f32 = 1.0 + (0..k).map(|p| a[i * k + p] * bt[j * k + p]).sum::<f32>();
                assert!((out[i * n + j] - want).abs() < 1e-5);
            }
        }
    }
}
