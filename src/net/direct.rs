//! Direct convolution for layers with few input values per patch (a grey or RGB first layer:
//! 25 or 75 for 5×5). For them the patch matrix is larger than the image it comes from (25
//! values per input pixel) and the matrix product's inner dimension is too short for its
//! kernels to pay off, so each output is summed in registers instead: eight output positions
//! at a time, sixteen output channels at a time, over the kernel's taps read from a padded
//! copy of the image.

use rayon::prelude::*;

use super::kernels::{ConvGeom, PoolGeom, pool_image};

/// Output channels summed at once: one AVX-512 register, two AVX2 ones.
const LANES: usize = 16;
/// Output positions of a row summed at once, sharing each weight load (and giving the
/// multiply-adds eight independent chains).
const POS: usize = 8;

/// Whether the convolution `g` with `c_out` output channels takes the direct path: at most 75
/// values per patch and a multiple of 16 output channels.
pub fn worth_it(g: &ConvGeom, c_out: usize) -> bool {
    g.patch() <= 75 && c_out.is_multiple_of(LANES) && c_out > 0
}

/// The weights in the direct kernel's layout, `[ky][kx][c_in][c_out]` (a row of output
/// channels per patch entry), from the core's `[c_out][ky][kx][c_in]`.
pub fn transform_weights(w: &[f32], patch: usize, c_out: usize, out: &mut Vec<f32>) {
    out.clear();
    out.resize(patch * c_out, 0.0);
    for (k, row) in w.chunks_exact(patch).enumerate() {
        for (j, v) in row.iter().enumerate() {
            out[j * c_out + k] = *v;
        }
    }
}

/// The convolution of `m` NHWC images `x` with weights `wt` (from [`transform_weights`]) plus
/// `bias`, through a ReLU when `relu` (`post` is both), written to `out` (M rows of out_h ×
/// out_w × c_out), or with `pool`, through that max-pool (M rows of its output): an image's
/// convolution then stays in the core's cache and only the pool's outputs are written.
#[allow(clippy::too_many_arguments)]
pub fn conv(
    x: &[f32],
    m: usize,
    g: &ConvGeom,
    wt: &[f32],
    c_out: usize,
    post: (&[f32], bool),
    pool: Option<&PoolGeom>,
    out: &mut [f32],
) {
    let pout = g.positions() * c_out;
    let per = pool.map_or(pout, |p| p.out.len());
    out[..m * per]
        .par_chunks_mut(per)
        .zip(x.par_chunks(g.input.len()))
        .for_each_init(
            || (Vec::new(), Vec::new()),
            |(padded, whole), (o, img)| {
                pad_image(img, g, padded);
                match pool {
                    None => image_conv(padded, g, wt, c_out, post, o),
                    Some(p) => {
                        whole.resize(pout, 0.0);
                        image_conv(padded, g, wt, c_out, post, whole);
                        pool_image(whole, p, o);
                    }
                }
            },
        );
}

/// The image with its zero padding, (h + 2·pad) × (w + 2·pad) × c.
fn pad_image(img: &[f32], g: &ConvGeom, padded: &mut Vec<f32>) {
    let (c, p) = (g.input.c, g.pad);
    let pw = g.input.w + 2 * p;
    padded.clear();
    padded.resize((g.input.h + 2 * p) * pw * c, 0.0);
    for y in 0..g.input.h {
        let row = &img[y * g.input.w * c..(y + 1) * g.input.w * c];
        padded[((y + p) * pw + p) * c..][..row.len()].copy_from_slice(row);
    }
}

fn image_conv(
    xp: &[f32],
    g: &ConvGeom,
    wt: &[f32],
    c_out: usize,
    post: (&[f32], bool),
    o: &mut [f32],
) {
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx512f") {
            // SAFETY: the CPU has the features the function is compiled for.
            return unsafe { image_conv_avx512(xp, g, wt, c_out, post, o) };
        }
        if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma")
        {
            // SAFETY: as above.
            return unsafe { image_conv_avx2(xp, g, wt, c_out, post, o) };
        }
    }
    image_conv_blocks::<false>(xp, g, wt, c_out, post, o)
}

/// Thirty-two channels by four positions when the channels allow (fewer broadcasts per
/// multiply-add), else sixteen by eight: eight accumulators of sixteen lanes either way.
#[inline(always)]
fn image_conv_blocks<const FMA: bool>(
    xp: &[f32],
    g: &ConvGeom,
    wt: &[f32],
    c_out: usize,
    post: (&[f32], bool),
    o: &mut [f32],
) {
    if c_out.is_multiple_of(2 * LANES) {
        image_conv_portable::<FMA, { 2 * LANES }, { POS / 2 }>(xp, g, wt, c_out, post, o)
    } else {
        image_conv_portable::<FMA, LANES, POS>(xp, g, wt, c_out, post, o)
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx2,fma")]
fn image_conv_avx512(
    xp: &[f32],
    g: &ConvGeom,
    wt: &[f32],
    c_out: usize,
    post: (&[f32], bool),
    o: &mut [f32],
) {
    image_conv_blocks::<true>(xp, g, wt, c_out, post, o)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
fn image_conv_avx2(
    xp: &[f32],
    g: &ConvGeom,
    wt: &[f32],
    c_out: usize,
    post: (&[f32], bool),
    o: &mut [f32],
) {
    image_conv_portable::<true, LANES, AVX2_POS>(xp, g, wt, c_out, post, o)
}

/// Output positions summed at once with AVX2's sixteen registers: with sixteen channels (two
/// registers) that is eight accumulators, two weight registers and a broadcast.
const AVX2_POS: usize = 6;

/// One padded image: for each output row, runs of `P` positions (the last run repeats its
/// last position), each a block of `W` output channels accumulated over every patch entry.
/// With `FMA` the products are fused multiply-adds (compiled only where the CPU has them).
#[inline(always)]
fn image_conv_portable<const FMA: bool, const W: usize, const P: usize>(
    xp: &[f32],
    g: &ConvGeom,
    wt: &[f32],
    c_out: usize,
    post: (&[f32], bool),
    o: &mut [f32],
) {
    let (c, k, s) = (g.input.c, g.kernel, g.stride);
    let (bias, relu) = post;
    let pw = (g.input.w + 2 * g.pad) * c;
    // Offset in the padded image of patch entry (ky, kx, ci) from the patch's corner.
    let taps: Vec<usize> = (0..k)
        .flat_map(|ky| (0..k * c).map(move |j| ky * pw + j))
        .collect();
    for oy in 0..g.out_h {
        let mut ox = 0;
        while ox < g.out_w {
            let run = (g.out_w - ox).min(P);
            let corners: [usize; P] =
                std::array::from_fn(|q| oy * s * pw + (ox + q.min(run - 1)) * s * c);
            for cb in (0..c_out).step_by(W) {
                let mut acc = [[0.0f32; W]; P];
                for a in acc.iter_mut() {
                    a.copy_from_slice(&bias[cb..cb + W]);
                }
                for (j, &t) in taps.iter().enumerate() {
                    // A copy, so the weights stay in registers for every position.
                    let w: [f32; W] = wt[j * c_out + cb..][..W].try_into().unwrap_or([0.0; W]);
                    for (a, &corner) in acc.iter_mut().zip(&corners) {
                        let v = xp[corner + t];
                        for l in 0..W {
                            a[l] = if FMA {
                                v.mul_add(w[l], a[l])
                            } else {
                                a[l] + v * w[l]
                            };
                        }
                    }
                }
                for (q, a) in acc.iter().enumerate().take(run) {
                    let dst = &mut o[((oy * g.out_w + ox + q) * c_out + cb)..][..W];
                    if relu {
                        for (d, v) in dst.iter_mut().zip(a) {
                            *d = v.max(0.0);
                        }
                    } else {
                        dst.copy_from_slice(a);
                    }
                }
            }
            ox += run;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::net::arch::Shape;

    /// The direct sum of the definition, in f64.
    fn reference(x: &[f32], g: &ConvGeom, w: &[f32], c_out: usize, bias: &[f32]) -> Vec<f64> {
        let (c, k) = (g.input.c, g.kernel);
        let mut out = vec![0.0f64; g.positions() * c_out];
        for oy in 0..g.out_h {
            for ox in 0..g.out_w {
                for o in 0..c_out {
                    let mut sum = bias[o] as f64;
                    for ky in 0..k {
                        for kx in 0..k {
                            let y = (oy * g.stride + ky) as isize - g.pad as isize;
                            let xx = (ox * g.stride + kx) as isize - g.pad as isize;
                            if y < 0
                                || xx < 0
                                || y >= g.input.h as isize
                                || xx >= g.input.w as isize
                            {
                                continue;
                            }
                            for ci in 0..c {
                                let v = x[((y as usize) * g.input.w + xx as usize) * c + ci];
                                sum += v as f64 * w[((o * k + ky) * k + kx) * c + ci] as f64;
                            }
                        }
                    }
                    out[(oy * g.out_w + ox) * c_out + o] = sum;
                }
            }
        }
        out
    }

    #[test]
    fn direct_convolution_equals_the_definition() {
        let val = |i: usize| ((i * 7919 + 13) % 1000) as f32 / 500.0 - 1.0;
        // Grey and RGB, odd sizes (a partial run of four positions), strides 1 and 2,
        // padding 0 and 2, 16 and 48 output channels.
        for (h, w, c, k, stride, pad, c_out) in [
            (28, 28, 1, 5, 1, 2, 32),
            (13, 11, 3, 5, 1, 2, 16),
            (9, 10, 1, 3, 2, 1, 48),
            (8, 7, 3, 5, 1, 0, 16),
        ] {
            let input = Shape { c, h, w };
            let out_h = (h + 2 * pad - k) / stride + 1;
            let out_w = (w + 2 * pad - k) / stride + 1;
            let g = ConvGeom {
                input,
                kernel: k,
                stride,
                pad,
                out_h,
                out_w,
            };
            assert!(worth_it(&g, c_out));
            let m = 3;
            let x: Vec<f32> = (0..m * input.len()).map(val).collect();
            let wts: Vec<f32> = (0..c_out * g.patch()).map(|i| val(i + 777)).collect();
            let bias: Vec<f32> = (0..c_out).map(|i| val(i + 99)).collect();
            let mut wt = Vec::new();
            transform_weights(&wts, g.patch(), c_out, &mut wt);
            let mut out = vec![0.0f32; m * g.positions() * c_out];
            // Plain, and through the ReLU a following layer folds in.
            for relu in [false, true] {
                conv(&x, m, &g, &wt, c_out, (&bias, relu), None, &mut out);
                for i in 0..m {
                    let want = reference(
                        &x[i * input.len()..(i + 1) * input.len()],
                        &g,
                        &wts,
                        c_out,
                        &bias,
                    );
                    let got = &out[i * want.len()..(i + 1) * want.len()];
                    for (j, (a, b)) in got.iter().zip(&want).enumerate() {
                        let b = if relu { b.max(0.0) } else { *b };
                        // Sums of at most 75 products of size ≤ 1 in f32: far below 1e-4.
                        assert!(
                            (*a as f64 - b).abs() < 1e-4,
                            "{h}x{w}x{c} k{k} s{stride} p{pad} relu {relu}: {j}"
                        );
                    }
                }
            }
        }
    }

    /// Times the direct path against patches and a product on the shipped network's first
    /// layer, alternately in one process (`cargo test --release --lib direct_speed --
    /// --ignored --nocapture`).
    #[test]
    #[ignore]
    fn direct_speed() {
        use crate::net::kernels::im2col;
        use crate::net::linalg::{Mat, matmul};
        let input = Shape { c: 1, h: 28, w: 28 };
        let g = ConvGeom {
            input,
            kernel: 5,
            stride: 1,
            pad: 2,
            out_h: 28,
            out_w: 28,
        };
        let (m, c_out) = (128, 32);
        let x: Vec<f32> = (0..m * 784).map(|i| (i % 97) as f32 / 97.0).collect();
        let w: Vec<f32> = (0..c_out * 25)
            .map(|i| (i % 13) as f32 / 13.0 - 0.5)
            .collect();
        let bias = vec![0.1f32; c_out];
        let mut out = vec![0.0f32; m * 784 * c_out];
        let (mut wt, mut col) = (Vec::new(), Vec::new());
        for round in 0..5 {
            let t = std::time::Instant::now();
            for _ in 0..10 {
                transform_weights(&w, 25, c_out, &mut wt);
                conv(&x, m, &g, &wt, c_out, (&bias, false), None, &mut out);
            }
            let direct = t.elapsed().as_secs_f64() / (10.0 * m as f64) * 1e6;
            let t = std::time::Instant::now();
            for _ in 0..10 {
                for lo in (0..m).step_by(16) {
                    im2col(&x[lo * 784..(lo + 16) * 784], 16, &g, &mut col);
                    matmul(
                        Mat::rows(&col, 16 * 784, 25),
                        Mat::rows(&w, c_out, 25).t(),
                        &mut out[lo * 784 * c_out..(lo + 16) * 784 * c_out],
                        false,
                    );
                }
            }
            let gemm = t.elapsed().as_secs_f64() / (10.0 * m as f64) * 1e6;
            println!("round {round}: direct {direct:.1} us/image, im2col+gemm {gemm:.1} us/image");
        }
    }
}
