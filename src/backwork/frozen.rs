//! The network with its weights frozen, for the engine's hot path: a forward pass that keeps
//! what the backward needs, and a backward that computes only the gradient with respect to the
//! input (no kernel gradients), from gradients arriving at every tap.
//!
//! Convolutions are im2col + one matrix product each, in NHWC layout (channels last), so a
//! patch is a contiguous run of memory. Tap vectors are therefore flattened in (H, W, C) order,
//! not the (C, H, W) of ALGORITHM.md §1: every distance the cost takes is invariant to a fixed
//! permutation of coordinates, and the reference set goes through the same code, so the cost is
//! the same number. The `fc` weight's columns are permuted once to match.
//!
//! Longer than 500 lines: forward, backward, saliency and their layout helpers share one
//! NHWC layout and its buffers; the layout is easiest to check in one place.

use rayon::prelude::*;

use super::linalg::{Mat, matmul};
use crate::data::{PIXELS, SIDE};
use crate::model::{CONV0_DIM, CONV1_DIM, Cnn, FC_UNITS};

const K: usize = 5;
const PAD: usize = 2;
const C0: usize = 32;
const C1: usize = 64;
const S0: usize = SIDE; // 28: conv0 works at full resolution
const S1: usize = SIDE / 2; // 14: conv1 after the first pool
const S2: usize = SIDE / 4; // 7: after the second pool
const PATCH0: usize = K * K; // 25
const PATCH1: usize = K * K * C0; // 800

/// The frozen weights, laid out for the NHWC im2col products.
#[derive(Clone)]
pub struct FrozenCnn {
    /// conv0 [32, 25] (patch order ky, kx).
    w0: Vec<f32>,
    b0: Vec<f32>,
    /// conv1 [64, 800] (patch order ky, kx, c_in).
    w1: Vec<f32>,
    b1: Vec<f32>,
    /// fc [1024, 3136] with columns in (h, w, c) order.
    wfc: Vec<f32>,
    bfc: Vec<f32>,
    /// softmax [K, 1024].
    ws: Vec<f32>,
    bs: Vec<f32>,
    classes: usize,
}

/// Images a forward or backward pass takes at once: larger batches are cut into chunks, so
/// scratch memory (about 720 KB an image) stays bounded (370 MB) whatever the batch.
pub const CHUNK: usize = 512;

/// Activations of a batch of M images, kept for the backward pass. Every tap is row-major,
/// one row per image.
///
/// # Shapes
/// `inputs` M×784, `conv0` M×6272 (14×14×32), `conv1` M×3136 (7×7×64), `fc` M×1024 before
/// its ReLU, `logits` and `probs` M×K.
#[derive(Default, Clone)]
pub struct Forward {
    pub m: usize,
    pub inputs: Vec<f32>,
    pub conv0: Vec<f32>,
    pub conv1: Vec<f32>,
    pub fc: Vec<f32>,
    pub logits: Vec<f32>,
    pub probs: Vec<f32>,
    /// Which of the four 2×2 positions won each max-pool (0..4, row-major in the window).
    arg0: Vec<u8>,
    arg1: Vec<u8>,
    /// Reused buffers (im2col matrices and pre-pool outputs).
    col: Vec<f32>,
    pre: Vec<f32>,
}

/// Gradients of the cost arriving at each tap; empty vectors mean zero.
///
/// # Shapes
/// Same as the matching [`Forward`] fields: M×784, M×6272, M×3136, M×1024 and M×K (the
/// logits).
#[derive(Default, Clone)]
pub struct TapGrads {
    pub inputs: Vec<f32>,
    pub conv0: Vec<f32>,
    pub conv1: Vec<f32>,
    pub fc: Vec<f32>,
    pub logits: Vec<f32>,
}

impl FrozenCnn {
    /// p(label) of each image (`pixels`: N×784, `labels`: N) as an 8-bit PNG stores it
    /// (clamped to [0, 1], rounded to 1/255), classified again.
    pub fn p_label_as_png(&self, pixels: &[f32], labels: &[u8]) -> Vec<f32> {
        let quantised: Vec<f32> = pixels
            .iter()
            .map(|&v| crate::data::to_u8(v) as f32 / 255.0)
            .collect();
        if quantised.is_empty() {
            return Vec::new();
        }
        let mut f = Forward::default();
        self.forward(&quantised, &mut f);
        let k = self.classes();
        f.probs
            .chunks_exact(k)
            .zip(labels)
            .map(|(p, &l)| p.get(l as usize).copied().unwrap_or(0.0))
            .collect()
    }

    /// Copies the weights out of `cnn` into the NHWC layout.
    pub fn new(cnn: &Cnn) -> candle_core::Result<Self> {
        let v = |t: &candle_core::Tensor| t.flatten_all()?.to_vec1::<f32>();
        let w0 = v(&cnn.conv0_w)?; // [32,1,5,5] is already (cout, ky, kx)
        let w1_raw = v(&cnn.conv1_w)?; // [64,32,5,5]: (cout, cin, ky, kx)
        let mut w1 = vec![0.0; C1 * PATCH1];
        for co in 0..C1 {
            for ci in 0..C0 {
                for k in 0..K * K {
                    w1[co * PATCH1 + k * C0 + ci] = w1_raw[(co * C0 + ci) * K * K + k];
                }
            }
        }
        let wfc_raw = v(&cnn.fc_w)?; // columns (c, h, w)
        let mut wfc = vec![0.0; FC_UNITS * CONV1_DIM];
        for (o, row) in wfc.chunks_exact_mut(CONV1_DIM).enumerate() {
            let src = &wfc_raw[o * CONV1_DIM..(o + 1) * CONV1_DIM];
            for c in 0..C1 {
                for hw in 0..S2 * S2 {
                    row[hw * C1 + c] = src[c * S2 * S2 + hw];
                }
            }
        }
        Ok(Self {
            w0,
            b0: v(&cnn.conv0_b)?,
            w1,
            b1: v(&cnn.conv1_b)?,
            wfc,
            bfc: v(&cnn.fc_b)?,
            ws: v(&cnn.softmax_w)?,
            bs: v(&cnn.softmax_b)?,
            classes: cnn.num_classes(),
        })
    }

    /// Number of output classes.
    pub fn classes(&self) -> usize {
        self.classes
    }

    /// Runs the network on `x` (M×784, row-major), filling `f`.
    pub fn forward(&self, x: &[f32], f: &mut Forward) {
        let m = x.len() / PIXELS;
        if m <= CHUNK {
            return self.forward_chunk(x, f);
        }
        // Chunks of images, so the scratch buffers (the conv1 patch matrix is 627 KB an
        // image) stay the size of one chunk whatever M is; the taps are kept for all.
        let mut part = std::mem::take(f);
        for v in [
            &mut f.inputs,
            &mut f.conv0,
            &mut f.conv1,
            &mut f.fc,
            &mut f.logits,
            &mut f.probs,
        ] {
            v.clear();
        }
        f.arg0.clear();
        f.arg1.clear();
        for xs in x.chunks(CHUNK * PIXELS) {
            self.forward_chunk(xs, &mut part);
            f.inputs.extend_from_slice(&part.inputs);
            f.conv0.extend_from_slice(&part.conv0);
            f.conv1.extend_from_slice(&part.conv1);
            f.fc.extend_from_slice(&part.fc);
            f.logits.extend_from_slice(&part.logits);
            f.probs.extend_from_slice(&part.probs);
            f.arg0.extend_from_slice(&part.arg0);
            f.arg1.extend_from_slice(&part.arg1);
        }
        f.m = m;
        f.col = std::mem::take(&mut part.col);
        f.pre = std::mem::take(&mut part.pre);
    }

    /// [`Self::forward`] of at most [`CHUNK`] images at once (any number works; more cost
    /// more scratch memory).
    fn forward_chunk(&self, x: &[f32], f: &mut Forward) {
        let m = x.len() / PIXELS;
        f.m = m;
        f.inputs.clear();
        f.inputs.extend_from_slice(x);

        // conv0 at 28×28, then ReLU and pool to 14×14.
        im2col(x, m, S0, 1, &mut f.col);
        conv_relu_pool(
            &f.col,
            &self.w0,
            &self.b0,
            m,
            S0,
            C0,
            PATCH0,
            &mut f.pre,
            &mut f.conv0,
            &mut f.arg0,
        );
        // conv1 at 14×14, then ReLU and pool to 7×7.
        im2col(&f.conv0, m, S1, C0, &mut f.col);
        conv_relu_pool(
            &f.col,
            &self.w1,
            &self.b1,
            m,
            S1,
            C1,
            PATCH1,
            &mut f.pre,
            &mut f.conv1,
            &mut f.arg1,
        );
        // fc (before its ReLU).
        f.fc.resize(m * FC_UNITS, 0.0);
        fill_rows(&mut f.fc, &self.bfc);
        matmul(
            Mat::rows(&f.conv1, m, CONV1_DIM),
            Mat::rows(&self.wfc, FC_UNITS, CONV1_DIM).t(),
            &mut f.fc,
            true,
        );
        // logits = ReLU(fc)·Wsᵀ + bs, then a numerically stable softmax.
        let hidden: Vec<f32> = f.fc.iter().map(|v| v.max(0.0)).collect();
        let k = self.classes;
        f.logits.resize(m * k, 0.0);
        fill_rows(&mut f.logits, &self.bs);
        matmul(
            Mat::rows(&hidden, m, FC_UNITS),
            Mat::rows(&self.ws, k, FC_UNITS).t(),
            &mut f.logits,
            true,
        );
        f.probs.resize(m * k, 0.0);
        for (z, p) in f.logits.chunks_exact(k).zip(f.probs.chunks_exact_mut(k)) {
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

    /// d cost / d inputs (M×784) from the gradients at every tap of the forward `f`.
    /// Reuses `f`'s scratch buffers (the im2col matrix and the pre-pool outputs, which the
    /// backward does not need), so a step allocates no large buffer.
    pub fn backward(&self, f: &mut Forward, g: &TapGrads) -> Vec<f32> {
        let m = f.m;
        if m <= CHUNK {
            return self.backward_chunk(f, g);
        }
        let k = self.classes;
        let mut part = Forward {
            col: std::mem::take(&mut f.col),
            pre: std::mem::take(&mut f.pre),
            ..Forward::default()
        };
        let mut g_x = Vec::with_capacity(m * PIXELS);
        for lo in (0..m).step_by(CHUNK) {
            let hi = (lo + CHUNK).min(m);
            let rows = |v: &[f32], d: usize| -> Vec<f32> {
                if v.is_empty() {
                    Vec::new()
                } else {
                    v[lo * d..hi * d].to_vec()
                }
            };
            part.m = hi - lo;
            part.conv0 = rows(&f.conv0, CONV0_DIM);
            part.conv1 = rows(&f.conv1, CONV1_DIM);
            part.fc = rows(&f.fc, FC_UNITS);
            part.arg0 = f.arg0[lo * CONV0_DIM..hi * CONV0_DIM].to_vec();
            part.arg1 = f.arg1[lo * CONV1_DIM..hi * CONV1_DIM].to_vec();
            let gp = TapGrads {
                inputs: rows(&g.inputs, PIXELS),
                conv0: rows(&g.conv0, CONV0_DIM),
                conv1: rows(&g.conv1, CONV1_DIM),
                fc: rows(&g.fc, FC_UNITS),
                logits: rows(&g.logits, k),
            };
            g_x.extend_from_slice(&self.backward_chunk(&mut part, &gp));
        }
        f.col = part.col;
        f.pre = part.pre;
        g_x
    }

    /// [`Self::backward`] of a forward of at most [`CHUNK`] images.
    fn backward_chunk(&self, f: &mut Forward, g: &TapGrads) -> Vec<f32> {
        let m = f.m;
        let k = self.classes;
        // Into fc: the tap's own gradient plus what comes back from the logits through ReLU.
        let mut g_fc = if g.fc.is_empty() {
            vec![0.0; m * FC_UNITS]
        } else {
            g.fc.clone()
        };
        if !g.logits.is_empty() {
            let mut g_hidden = vec![0.0; m * FC_UNITS];
            matmul(
                Mat::rows(&g.logits, m, k),
                Mat::rows(&self.ws, k, FC_UNITS),
                &mut g_hidden,
                false,
            );
            for ((gf, gh), v) in g_fc.iter_mut().zip(&g_hidden).zip(&f.fc) {
                if *v > 0.0 {
                    *gf += gh;
                }
            }
        }
        // Into conv1 (pooled).
        let mut g_c1 = if g.conv1.is_empty() {
            vec![0.0; m * CONV1_DIM]
        } else {
            g.conv1.clone()
        };
        matmul(
            Mat::rows(&g_fc, m, FC_UNITS),
            Mat::rows(&self.wfc, FC_UNITS, CONV1_DIM),
            &mut g_c1,
            true,
        );
        // Through pool1 + ReLU, the conv1 product and col2im, into conv0 (pooled).
        let mut g_pre = std::mem::take(&mut f.pre);
        unpool(&g_c1, &f.conv1, &f.arg1, m, S1, C1, &mut g_pre);
        let mut g_col = std::mem::take(&mut f.col);
        g_col.resize(m * S1 * S1 * PATCH1, 0.0);
        matmul(
            Mat::rows(&g_pre, m * S1 * S1, C1),
            Mat::rows(&self.w1, C1, PATCH1),
            &mut g_col,
            false,
        );
        let mut g_c0 = if g.conv0.is_empty() {
            vec![0.0; m * CONV0_DIM]
        } else {
            g.conv0.clone()
        };
        col2im_add(&g_col, m, S1, C0, &mut g_c0);
        // Through pool0 + ReLU, the conv0 product and col2im, into the pixels.
        unpool(&g_c0, &f.conv0, &f.arg0, m, S0, C0, &mut g_pre);
        // conv0's patch matrix (M·784 × 25) is smaller than conv1's: reuse its front.
        matmul(
            Mat::rows(&g_pre, m * S0 * S0, C0),
            Mat::rows(&self.w0, C0, PATCH0),
            &mut g_col[..m * S0 * S0 * PATCH0],
            false,
        );
        let mut g_x = if g.inputs.is_empty() {
            vec![0.0; m * PIXELS]
        } else {
            g.inputs.clone()
        };
        col2im_add(&g_col[..m * S0 * S0 * PATCH0], m, S0, 1, &mut g_x);
        f.col = g_col;
        f.pre = g_pre;
        g_x
    }
}

/// Sets every row of `out` (rows of `bias.len()`) to `bias`.
fn fill_rows(out: &mut [f32], bias: &[f32]) {
    for row in out.chunks_exact_mut(bias.len()) {
        row.copy_from_slice(bias);
    }
}

/// NHWC `x` (m × s × s × c) to patches: row (img, y, x), columns (ky, kx, c), zero padding 2.
fn im2col(x: &[f32], m: usize, s: usize, c: usize, col: &mut Vec<f32>) {
    let patch = K * K * c;
    col.resize(m * s * s * patch, 0.0);
    col.par_chunks_mut(s * s * patch)
        .zip(x.par_chunks(s * s * c))
        .for_each(|(out, img)| {
            for y in 0..s {
                for xx in 0..s {
                    let row = &mut out[(y * s + xx) * patch..(y * s + xx + 1) * patch];
                    for ky in 0..K {
                        let iy = y + ky;
                        for kx in 0..K {
                            let ix = xx + kx;
                            let dst = &mut row[(ky * K + kx) * c..(ky * K + kx + 1) * c];
                            if iy < PAD || iy >= s + PAD || ix < PAD || ix >= s + PAD {
                                dst.fill(0.0);
                            } else {
                                let at = ((iy - PAD) * s + (ix - PAD)) * c;
                                dst.copy_from_slice(&img[at..at + c]);
                            }
                        }
                    }
                }
            }
        });
}

/// The adjoint of [`im2col`]: adds each patch entry back onto the pixel it came from.
fn col2im_add(col: &[f32], m: usize, s: usize, c: usize, out: &mut [f32]) {
    let patch = K * K * c;
    out.par_chunks_mut(s * s * c)
        .zip(col.par_chunks(s * s * patch))
        .take(m)
        .for_each(|(img, rows)| {
            for y in 0..s {
                for xx in 0..s {
                    let row = &rows[(y * s + xx) * patch..(y * s + xx + 1) * patch];
                    for ky in 0..K {
                        let iy = y + ky;
                        if iy < PAD || iy >= s + PAD {
                            continue;
                        }
                        for kx in 0..K {
                            let ix = xx + kx;
                            if ix < PAD || ix >= s + PAD {
                                continue;
                            }
                            let at = ((iy - PAD) * s + (ix - PAD)) * c;
                            let src = &row[(ky * K + kx) * c..(ky * K + kx + 1) * c];
                            for (d, v) in img[at..at + c].iter_mut().zip(src) {
                                *d += v;
                            }
                        }
                    }
                }
            }
        });
}

/// conv (one product of the patches with the kernel), bias, ReLU, 2×2 max-pool; records the
/// winning position of each pool window.
#[allow(clippy::too_many_arguments)]
fn conv_relu_pool(
    col: &[f32],
    w: &[f32],
    b: &[f32],
    m: usize,
    s: usize,
    c: usize,
    patch: usize,
    pre: &mut Vec<f32>,
    pooled: &mut Vec<f32>,
    arg: &mut Vec<u8>,
) {
    pre.resize(m * s * s * c, 0.0);
    fill_rows(pre, b);
    matmul(
        Mat::rows(col, m * s * s, patch),
        Mat::rows(w, c, patch).t(),
        pre,
        true,
    );
    let h = s / 2;
    pooled.resize(m * h * h * c, 0.0);
    arg.resize(m * h * h * c, 0);
    pooled
        .par_chunks_mut(h * h * c)
        .zip(arg.par_chunks_mut(h * h * c))
        .zip(pre.par_chunks(s * s * c))
        .for_each(|((po, ar), img)| {
            for py in 0..h {
                for px in 0..h {
                    for ch in 0..c {
                        let mut best = f32::NEG_INFINITY;
                        let mut which = 0u8;
                        for (q, (dy, dx)) in [(0, 0), (0, 1), (1, 0), (1, 1)].iter().enumerate() {
                            let v = img[((2 * py + dy) * s + 2 * px + dx) * c + ch];
                            if v > best {
                                best = v;
                                which = q as u8;
                            }
                        }
                        let o = (py * h + px) * c + ch;
                        // ReLU then max equals max then ReLU.
                        po[o] = best.max(0.0);
                        ar[o] = which;
                    }
                }
            }
        });
}

/// Gradient through ReLU + max-pool: each pooled gradient goes to its window's winner, and
/// only where the pooled value is positive (ReLU's derivative is 0 at and below 0).
fn unpool(g: &[f32], pooled: &[f32], arg: &[u8], m: usize, s: usize, c: usize, out: &mut Vec<f32>) {
    let h = s / 2;
    out.clear();
    out.resize(m * s * s * c, 0.0);
    out.par_chunks_mut(s * s * c)
        .zip(g.par_chunks(h * h * c))
        .zip(pooled.par_chunks(h * h * c).zip(arg.par_chunks(h * h * c)))
        .for_each(|((o, gi), (pi, ai))| {
            for py in 0..h {
                for px in 0..h {
                    for ch in 0..c {
                        let i = (py * h + px) * c + ch;
                        if pi[i] > 0.0 {
                            let (dy, dx) = ((ai[i] / 2) as usize, (ai[i] % 2) as usize);
                            o[((2 * py + dy) * s + 2 * px + dx) * c + ch] = gi[i];
                        }
                    }
                }
            }
        });
}
