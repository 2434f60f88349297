//! The per-layer kernels of the network core, on NHWC activations with one image per row:
//! patch extraction (im2col) and its adjoint, max-pool and its adjoint, bias and ReLU helpers,
//! softmax. Matrix products are in `linalg`; work is split across images with rayon.

use rayon::prelude::*;

use super::arch::Shape;

/// A convolution's geometry: input shape, kernel, stride, padding and output size.
#[derive(Clone, Copy, Debug)]
pub struct ConvGeom {
    pub input: Shape,
    pub kernel: usize,
    pub stride: usize,
    pub pad: usize,
    pub out_h: usize,
    pub out_w: usize,
}

impl ConvGeom {
    /// Values in one patch (kernel × kernel × input channels).
    pub fn patch(&self) -> usize {
        self.kernel * self.kernel * self.input.c
    }

    /// Output positions of one image.
    pub fn positions(&self) -> usize {
        self.out_h * self.out_w
    }
}

/// For kernel row `ky` at output position (oy, ox): the input row it reads and the span of
/// kernel columns `kx0..kx1` that fall inside the image, starting at input column `ix0`; `None`
/// when the whole kernel row lies in the zero padding.
#[inline]
fn kernel_row_span(
    g: &ConvGeom,
    oy: usize,
    ox: usize,
    ky: usize,
) -> Option<(usize, usize, usize, usize)> {
    let y = (oy * g.stride + ky).checked_sub(g.pad)?;
    if y >= g.input.h {
        return None;
    }
    // Input column of kernel column kx is ox·stride + kx − pad.
    let left = ox * g.stride;
    let kx0 = g.pad.saturating_sub(left);
    let kx1 = (g.input.w + g.pad).saturating_sub(left).min(g.kernel);
    if kx0 >= kx1 {
        return None;
    }
    Some((y, kx0, kx1, left + kx0 - g.pad))
}

/// Patches of `m` NHWC images: row (image, oy, ox), columns (ky, kx, c). A kernel row's
/// columns read adjacent input pixels, so each is one contiguous copy of up to kernel × c
/// values.
pub fn im2col(x: &[f32], m: usize, g: &ConvGeom, col: &mut Vec<f32>) {
    let (patch, c, k) = (g.patch(), g.input.c, g.kernel);
    col.resize(m * g.positions() * patch, 0.0);
    col.par_chunks_mut(g.positions() * patch)
        .zip(x.par_chunks(g.input.len()))
        .for_each(|(out, img)| {
            for oy in 0..g.out_h {
                for ox in 0..g.out_w {
                    let row = &mut out[(oy * g.out_w + ox) * patch..][..patch];
                    for ky in 0..k {
                        let dst = &mut row[ky * k * c..][..k * c];
                        match kernel_row_span(g, oy, ox, ky) {
                            Some((y, kx0, kx1, ix0)) => {
                                dst[..kx0 * c].fill(0.0);
                                dst[kx0 * c..kx1 * c].copy_from_slice(
                                    &img[(y * g.input.w + ix0) * c..][..(kx1 - kx0) * c],
                                );
                                dst[kx1 * c..].fill(0.0);
                            }
                            None => dst.fill(0.0),
                        }
                    }
                }
            }
        });
}

/// The adjoint of [`im2col`]: adds every patch entry onto the input value it came from.
/// `out` holds `m` images and is added to, not overwritten.
pub fn col2im_add(col: &[f32], m: usize, g: &ConvGeom, out: &mut [f32]) {
    let (patch, c, k) = (g.patch(), g.input.c, g.kernel);
    out.par_chunks_mut(g.input.len())
        .zip(col.par_chunks(g.positions() * patch))
        .take(m)
        .for_each(|(img, rows)| {
            for oy in 0..g.out_h {
                for ox in 0..g.out_w {
                    let row = &rows[(oy * g.out_w + ox) * patch..][..patch];
                    for ky in 0..k {
                        if let Some((y, kx0, kx1, ix0)) = kernel_row_span(g, oy, ox, ky) {
                            let src = &row[(ky * k + kx0) * c..(ky * k + kx1) * c];
                            let dst = &mut img[(y * g.input.w + ix0) * c..][..src.len()];
                            for (d, v) in dst.iter_mut().zip(src) {
                                *d += v;
                            }
                        }
                    }
                }
            }
        });
}

/// A max-pool's geometry.
#[derive(Clone, Copy, Debug)]
pub struct PoolGeom {
    pub input: Shape,
    pub window: usize,
    pub stride: usize,
    pub out: Shape,
}

/// Max-pool of `m` NHWC images. A window's values are compared a channel run at a time, so
/// the inner loop is a plain vector maximum; the backward finds the winner again.
pub fn max_pool(x: &[f32], m: usize, g: &PoolGeom, out: &mut Vec<f32>) {
    let n = g.out.len();
    out.resize(m * n, 0.0);
    out.par_chunks_mut(n)
        .zip(x.par_chunks(g.input.len()))
        .for_each(|(po, img)| pool_image(img, g, po));
}

best_simd! {
    /// [`max_pool`] of one image.
    pub(super) fn pool_image, pool_image_avx512, pool_image_avx2 => pool_image_portable(
        img: &[f32],
        g: &PoolGeom,
        po: &mut [f32],
    )
}

#[inline(always)]
fn pool_image_portable(img: &[f32], g: &PoolGeom, po: &mut [f32]) {
    let c = g.input.c;
    for py in 0..g.out.h {
        for px in 0..g.out.w {
            let o = &mut po[(py * g.out.w + px) * c..][..c];
            o.fill(f32::NEG_INFINITY);
            for dy in 0..g.window {
                let at = ((py * g.stride + dy) * g.input.w + px * g.stride) * c;
                let row = &img[at..at + g.window * c];
                for v in row.chunks_exact(c) {
                    for (o, &v) in o.iter_mut().zip(v) {
                        *o = o.max(v);
                    }
                }
            }
        }
    }
}

/// The adjoint of [`max_pool`]: each pooled gradient goes to its window's winner, the first
/// position (row-major in the window) whose input `x` equals the pooled value `y`, as
/// PyTorch picks the first of tied maxima. `out` is overwritten (sized to the input). With
/// `relu_below`, `x` is a ReLU's output and the ReLU's backward is folded in: a gradient goes
/// through only where the pooled value is positive (the winner's ReLU derivative; every other
/// position gets none anyway).
#[allow(clippy::too_many_arguments)]
pub fn max_unpool(
    gy: &[f32],
    x: &[f32],
    y: &[f32],
    relu_below: bool,
    m: usize,
    g: &PoolGeom,
    out: &mut Vec<f32>,
) {
    let n = g.out.len();
    out.clear();
    out.resize(m * g.input.len(), 0.0);
    out.par_chunks_mut(g.input.len())
        .zip(x.par_chunks(g.input.len()))
        .zip(gy.par_chunks(n).zip(y.par_chunks(n)))
        .for_each(|((o, img), (gi, yi))| unpool_image(img, (yi, gi), relu_below, g, o));
}

best_simd! {
    /// [`max_unpool`] of one image: `pooled` is its pooled values and their gradients.
    fn unpool_image, unpool_image_avx512, unpool_image_avx2 => unpool_image_portable(
        img: &[f32],
        pooled: (&[f32], &[f32]),
        relu_below: bool,
        g: &PoolGeom,
        o: &mut [f32],
    )
}

/// Branch-free over the channels, so the loops run in vector lanes: each window position
/// adds the gradient (or zero) where it is the first to match.
#[inline(always)]
fn unpool_image_portable(
    img: &[f32],
    (yi, gi): (&[f32], &[f32]),
    relu_below: bool,
    g: &PoolGeom,
    o: &mut [f32],
) {
    let (c, w) = (g.input.c, g.window);
    // Channels of the current window still waiting for their winner.
    let mut pending = vec![false; c];
    for py in 0..g.out.h {
        for px in 0..g.out.w {
            let at = (py * g.out.w + px) * c;
            let (yrow, grow) = (&yi[at..at + c], &gi[at..at + c]);
            for (p, &v) in pending.iter_mut().zip(yrow) {
                *p = !(relu_below & (v <= 0.0));
            }
            // Window positions in row-major order: the first equal value wins. A NaN pooled
            // value matches nothing and its gradient is dropped.
            for q in 0..w * w {
                let src = ((py * g.stride + q / w) * g.input.w + px * g.stride + q % w) * c;
                let (xrow, orow) = (&img[src..src + c], &mut o[src..src + c]);
                for (((o, &xv), (&yv, &gv)), p) in orow
                    .iter_mut()
                    .zip(xrow)
                    .zip(yrow.iter().zip(grow))
                    .zip(pending.iter_mut())
                {
                    let hit = *p & (xv == yv);
                    *o += if hit { gv } else { 0.0 };
                    *p &= !hit;
                }
            }
        }
    }
}

/// Sets every row of `out` (rows of `bias.len()`) to `bias`.
pub fn fill_rows(out: &mut [f32], bias: &[f32]) {
    for row in out.chunks_exact_mut(bias.len()) {
        row.copy_from_slice(bias);
    }
}

/// The column sums of `g` (rows of `sums.len()`) into `sums`, in f64 per column so a large
/// batch does not lose the small terms.
pub fn column_sums(g: &[f32], sums: &mut [f32]) {
    let n = sums.len();
    if n == 0 {
        return;
    }
    // Blocks of rows in parallel, then the blocks' sums in order (the same result whatever
    // the thread count).
    let block = 256;
    let partial: Vec<Vec<f64>> = g
        .par_chunks(block * n)
        .map(|rows| {
            let mut acc = vec![0f64; n];
            for r in rows.chunks_exact(n) {
                for (a, &v) in acc.iter_mut().zip(r) {
                    *a += v as f64;
                }
            }
            acc
        })
        .collect();
    let mut total = vec![0f64; n];
    for p in partial {
        for (t, v) in total.iter_mut().zip(p) {
            *t += v;
        }
    }
    for (s, t) in sums.iter_mut().zip(total) {
        *s = t as f32;
    }
}

/// ReLU of `x` into `out`.
pub fn relu(x: &[f32], out: &mut Vec<f32>) {
    out.resize(x.len(), 0.0);
    out.par_chunks_mut(1 << 14)
        .zip(x.par_chunks(1 << 14))
        .for_each(|(o, x)| {
            for (o, &v) in o.iter_mut().zip(x) {
                *o = v.max(0.0);
            }
        });
}

/// ReLU of `x` in place.
pub fn relu_in_place(x: &mut [f32]) {
    x.par_chunks_mut(1 << 14).for_each(|x| {
        for v in x {
            *v = v.max(0.0);
        }
    });
}

/// Zeroes the gradient where the ReLU's output `y` is not positive (its derivative is 0 at 0).
pub fn relu_back(y: &[f32], g: &mut [f32]) {
    g.par_chunks_mut(1 << 14)
        .zip(y.par_chunks(1 << 14))
        .for_each(|(g, y)| {
            for (g, &v) in g.iter_mut().zip(y) {
                if v <= 0.0 {
                    *g = 0.0;
                }
            }
        });
}

/// The index of the largest value (the first of ties, as PyTorch's `argmax`).
pub fn argmax(z: &[f32]) -> usize {
    let mut best = 0;
    for (i, &v) in z.iter().enumerate() {
        if v > z[best] {
            best = i;
        }
    }
    best
}

/// Row-wise, numerically stable softmax of the rows of `z` (rows of `k`) into `p`.
pub fn softmax_rows(z: &[f32], k: usize, p: &mut Vec<f32>) {
    p.resize(z.len(), 0.0);
    for (z, p) in z.chunks_exact(k).zip(p.chunks_exact_mut(k)) {
        let max = z.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        let mut sum = 0.0;
        for (pi, zi) in p.iter_mut().zip(z) {
            *pi = (zi - max).exp();
            sum += *pi;
        }
        for pi in p.iter_mut() {
            *pi /= sum;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// ⟨im2col(x), c⟩ = ⟨x, col2im(c)⟩ for a strided, padded geometry: the two are adjoint.
    #[test]
    fn col2im_is_the_adjoint_of_im2col() {
        let g = ConvGeom {
            input: Shape { c: 3, h: 7, w: 6 },
            kernel: 3,
            stride: 2,
            pad: 1,
            out_h: 4,
            out_w: 3,
        };
        let m = 2;
        let x: Vec<f32> = (0..m * 126).map(|i| (i as f32 * 0.7).sin()).collect();
        let mut col = Vec::new();
        im2col(&x, m, &g, &mut col);
        let c: Vec<f32> = (0..col.len()).map(|i| (i as f32 * 0.3).cos()).collect();
        let lhs: f64 = col.iter().zip(&c).map(|(a, b)| (a * b) as f64).sum();
        let mut back = vec![0.0; x.len()];
        col2im_add(&c, m, &g, &mut back);
        let rhs: f64 = x.iter().zip(&back).map(|(a, b)| (a * b) as f64).sum();
        assert!(
            (lhs - rhs).abs() < 1e-4 * lhs.abs().max(1.0),
            "{lhs} vs {rhs}"
        );
    }

    #[test]
    fn overlapping_pools_route_every_gradient_to_its_winner() {
        // One channel, 3×3 input, window 2 stride 1: the centre (the maximum) wins all four.
        let g = PoolGeom {
            input: Shape { c: 1, h: 3, w: 3 },
            window: 2,
            stride: 1,
            out: Shape { c: 1, h: 2, w: 2 },
        };
        let x = [0., 1., 0., 1., 5., 1., 0., 1., 0.];
        let (mut y, mut gx) = (Vec::new(), Vec::new());
        max_pool(&x, 1, &g, &mut y);
        assert_eq!(y, [5.0; 4]);
        max_unpool(&[1.0, 2.0, 3.0, 4.0], &x, &y, false, 1, &g, &mut gx);
        assert_eq!(gx, [0., 0., 0., 0., 10., 0., 0., 0., 0.]);
        // Ties go to the first of the window, as in PyTorch.
        let flat = [2.0; 9];
        max_pool(&flat, 1, &g, &mut y);
        max_unpool(&[1.0, 2.0, 3.0, 4.0], &flat, &y, false, 1, &g, &mut gx);
        assert_eq!(gx, [1., 2., 0., 3., 4., 0., 0., 0., 0.]);
    }

    #[test]
    fn unpooling_many_channels_follows_the_first_winner_rule() {
        // 37 channels (lane blocks and a remainder), a ReLU's output below (many zeros, so
        // many ties, and windows whose maximum is 0 pass nothing), windows of 2 and 3, strides
        // 2 and 1, against the rule written plainly.
        for (window, stride, relu_below) in [(2, 2, true), (3, 1, true), (2, 1, false)] {
            let (c, h, w, m) = (37, 6, 5, 2);
            let input = Shape { c, h, w };
            let out = Shape {
                c,
                h: (h - window) / stride + 1,
                w: (w - window) / stride + 1,
            };
            let g = PoolGeom {
                input,
                window,
                stride,
                out,
            };
            // Rounded to quarters and clipped at 0: ties are common.
            let x: Vec<f32> = (0..m * input.len())
                .map(|i| ((i as f32 * 0.77).sin() * 4.0).round().max(0.0) / 4.0)
                .collect();
            let gy: Vec<f32> = (0..m * out.len()).map(|i| 1.0 + i as f32).collect();
            let (mut y, mut gx) = (Vec::new(), Vec::new());
            max_pool(&x, m, &g, &mut y);
            max_unpool(&gy, &x, &y, relu_below, m, &g, &mut gx);
            let mut want = vec![0.0f32; x.len()];
            for img in 0..m {
                for py in 0..out.h {
                    for px in 0..out.w {
                        for ch in 0..c {
                            let at = img * out.len() + (py * out.w + px) * c + ch;
                            if relu_below && y[at] <= 0.0 {
                                continue;
                            }
                            let winner = (0..window * window).find_map(|q| {
                                let (yy, xx) = (py * stride + q / window, px * stride + q % window);
                                let i = img * input.len() + (yy * w + xx) * c + ch;
                                (x[i] == y[at]).then_some(i)
                            });
                            if let Some(i) = winner {
                                want[i] += gy[at];
                            }
                        }
                    }
                }
            }
            assert_eq!(
                gx, want,
                "window {window}, stride {stride}, relu {relu_below}"
            );
        }
    }
}
