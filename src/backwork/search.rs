//! The nearest reference row of each image at a tap: exact, and pruned between steps by the
//! triangle inequality (a reference whose lower bound exceeds the distance to the current best
//! is not read). The cost's ref terms spend most of a step here: it reads the reference sets.

use rayon::prelude::*;

use crate::net::linalg::{Mat, matmul};

/// Euclidean distance between two rows: sixteen f32 lanes summed in f64. This is the pruned
/// search's inner loop, so on CPUs with AVX2 and FMA it runs a copy compiled for them (the
/// default x86-64 target has only SSE2).
fn exact_dist(a: &[f32], b: &[f32]) -> f64 {
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma")
        {
            // SAFETY: the CPU has the features the function is compiled for.
            return unsafe { exact_dist_avx2(a, b) };
        }
    }
    exact_dist_portable(a, b)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
fn exact_dist_avx2(a: &[f32], b: &[f32]) -> f64 {
    exact_dist_portable(a, b)
}

/// The dot products of a few rows (`k`×`d`) with every reference row (`r`×`d`), as `k`×`r`.
/// Each reference row is read once, for all `k` rows at a time: for a handful of rows a
/// general matrix product spends most of its time copying the references into its packed
/// layout, and this loop is bound by reading them once instead.
fn few_dots(rows: &[f32], k: usize, d: usize, refs: &[f32]) -> Vec<f32> {
    let r = refs.len().checked_div(d).unwrap_or(0);
    let mut out_t = vec![0.0f32; r * k];
    if k == 0 || r == 0 {
        return Vec::new();
    }
    out_t
        .par_chunks_mut(k * 64)
        .zip(refs.par_chunks(d * 64))
        .for_each(|(o, b)| dots_of_chunk(rows, k, d, b, o));
    let mut out = vec![0.0f32; k * r];
    for j in 0..r {
        for f in 0..k {
            out[f * r + j] = out_t[j * k + f];
        }
    }
    out
}

/// `out[j·k + f] = rows[f]·b_j` for every reference row b_j of `b` and every row f of `rows`
/// (k rows of length d): three references at a time, then the rest one at a time. The CPU's
/// features are checked once a chunk, not once a reference.
fn dots_of_chunk(rows: &[f32], k: usize, d: usize, b: &[f32], out: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma")
        {
            // SAFETY: the CPU has the features the function is compiled for.
            return unsafe { dots_of_chunk_avx2(rows, k, d, b, out) };
        }
    }
    dots_of_chunk_portable(rows, k, d, b, out)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
fn dots_of_chunk_avx2(rows: &[f32], k: usize, d: usize, b: &[f32], out: &mut [f32]) {
    dots_of_chunk_portable(rows, k, d, b, out)
}

#[inline(always)]
fn dots_of_chunk_portable(rows: &[f32], k: usize, d: usize, b: &[f32], out: &mut [f32]) {
    let triples = b.len() / d / 3 * 3;
    let (o3, o1) = out.split_at_mut(triples * k);
    let (b3, b1) = b.split_at(triples * d);
    for (oq, bq) in o3.chunks_exact_mut(3 * k).zip(b3.chunks_exact(3 * d)) {
        dots_of_three_portable(rows, k, d, bq, oq);
    }
    for (oj, bj) in o1.chunks_exact_mut(k).zip(b1.chunks_exact(d)) {
        dots_of_row_portable(rows, d, bj, oj);
    }
}

/// Four images × three references: each chunk of eight values of an image is loaded once for
/// the three references, and the twelve sums stay in registers (one reference at a time loads
/// an image chunk for every product, so the loop is bound by loads). The sums are taken in
/// the same order as [`dots_of_row_portable`]'s, so both give the same bits.
#[inline(always)]
fn dots_of_three_portable(rows: &[f32], k: usize, d: usize, b: &[f32], out: &mut [f32]) {
    let (b0, b12) = b.split_at(d);
    let (b1, b2) = b12.split_at(d);
    let refs = [b0, b1, b2];
    let full = k / 4 * 4;
    let c8 = d / 8 * 8;
    for base in (0..full).step_by(4) {
        let x: [&[f32]; 4] = std::array::from_fn(|f| &rows[(base + f) * d..(base + f + 1) * d]);
        let x8: [&[[f32; 8]]; 4] = std::array::from_fn(|f| x[f].as_chunks::<8>().0);
        let y8: [&[[f32; 8]]; 3] = std::array::from_fn(|q| refs[q].as_chunks::<8>().0);
        let mut acc = [[[0.0f32; 8]; 3]; 4];
        for c in 0..d / 8 {
            let ys: [&[f32; 8]; 3] = std::array::from_fn(|q| &y8[q][c]);
            for (xf, af) in x8.iter().zip(acc.iter_mut()) {
                let xc = &xf[c];
                for (y, a) in ys.iter().zip(af.iter_mut()) {
                    for l in 0..8 {
                        a[l] += xc[l] * y[l];
                    }
                }
            }
        }
        for (f, (xf, af)) in x.iter().zip(&acc).enumerate() {
            for (q, (bq, a)) in refs.iter().zip(af).enumerate() {
                let tail: f32 = xf[c8..].iter().zip(&bq[c8..]).map(|(p, v)| p * v).sum();
                out[q * k + base + f] = a.iter().sum::<f32>() + tail;
            }
        }
    }
    // The last k mod 4 images, one reference at a time.
    if full < k {
        for (q, bq) in refs.iter().enumerate() {
            dots_of_row_portable(
                &rows[full * d..],
                d,
                bq,
                &mut out[q * k + full..(q + 1) * k],
            );
        }
    }
}

/// `out[f] = rows[f]·b` for every row f of `rows` (`out.len()` rows of length `d`).
#[inline(always)]
fn dots_of_row_portable(rows: &[f32], d: usize, b: &[f32], out: &mut [f32]) {
    // Four rows at a time, eight lanes each: the reference chunk is loaded once per four.
    for (fb, ob) in out.chunks_mut(4).enumerate() {
        let base = fb * 4;
        let mut lanes = [[0.0f32; 8]; 4];
        let cb = b.chunks_exact(8);
        let tail_b = cb.remainder();
        for (c, y) in cb.enumerate() {
            for (f, l) in lanes.iter_mut().enumerate().take(ob.len()) {
                let x = &rows[(base + f) * d + c * 8..(base + f) * d + c * 8 + 8];
                for i in 0..8 {
                    l[i] += x[i] * y[i];
                }
            }
        }
        let t0 = d - tail_b.len();
        for (f, o) in ob.iter_mut().enumerate() {
            let x = &rows[(base + f) * d..(base + f + 1) * d];
            let tail: f32 = x[t0..].iter().zip(tail_b).map(|(p, q)| p * q).sum();
            *o = lanes[f].iter().sum::<f32>() + tail;
        }
    }
}

#[inline(always)]
fn exact_dist_portable(a: &[f32], b: &[f32]) -> f64 {
    let mut lanes = [0.0f32; 16];
    let (ca, cb) = (a.chunks_exact(16), b.chunks_exact(16));
    let tail: f64 = ca
        .remainder()
        .iter()
        .zip(cb.remainder())
        .map(|(x, y)| ((x - y) as f64).powi(2))
        .sum();
    for (x, y) in ca.zip(cb) {
        for l in 0..16 {
            let t = x[l] - y[l];
            lanes[l] += t * t;
        }
    }
    (lanes.iter().map(|&v| v as f64).sum::<f64>() + tail).sqrt()
}

/// What the nearest-row search remembers of one generated image between steps, so that it
/// can skip references that cannot have become the nearest (see `nearest_rows_pruned`).
#[derive(Clone, Default)]
pub struct ImageSearch {
    /// The image's activation at the last search.
    prev: Vec<f32>,
    /// How far (Euclidean) the activation has moved in total since the bounds were set.
    moved: f64,
    /// Per reference r: a lower bound of its distance at the time it was set, plus `moved`
    /// at that time. `base[r] − moved` is a lower bound of its distance now (triangle
    /// inequality). Empty when nothing is known (a new or re-initialised image).
    base: Vec<f32>,
    best: usize,
}

impl ImageSearch {
    /// A lower bound of the distance now to reference `j`.
    #[inline(always)]
    fn lower(&self, j: usize) -> f64 {
        self.base[j] as f64 - self.moved
    }
}

/// A bound on the relative rounding error of `exact_dist`: each of its sixteen f32 lanes sums
/// d/16 terms, at most 2⁻²⁴ relative error a term, and the square root halves it, so 3e-5
/// covers rows of up to 16,000 values (in practice the error is far smaller). The triangle
/// inequality holds for true distances; the stored bounds are lowered by this much so that
/// they also hold for the computed ones.
const DIST_REL_ERR: f64 = 3e-5;

/// `v` as f32, rounded down, so that a lower bound stays one.
fn f32_down(v: f64) -> f32 {
    let f = v as f32;
    if f as f64 > v { f.next_down() } else { f }
}

/// The search state of one label group: per tap, per image.
#[derive(Clone, Default)]
pub struct GroupSearch {
    pub(super) taps: Vec<Vec<ImageSearch>>,
    /// References whose exact distance was computed by the last call (for the benchmark).
    pub rows_read: usize,
}

impl GroupSearch {
    /// Forgets what is known about image `i` (it was replaced by fresh noise).
    pub fn forget(&mut self, i: usize) {
        for t in &mut self.taps {
            if let Some(s) = t.get_mut(i) {
                *s = ImageSearch::default();
            }
        }
    }
}

/// The nearest reference of each image, exactly, reading only the references that can be it.
///
/// A reference's distance changes by at most the image's movement in the tap's space between
/// two steps, so any reference whose lower bound already exceeds the distance to the current
/// best cannot be the new minimum and is skipped; the others get their exact distance (which
/// also tightens their bound). An image with no bounds yet gets them from one matrix product
/// (‖a‖² + ‖b‖² − 2a·b, loosened by a margin that covers f32 rounding), and then the same
/// exact check. Returns (best row, mean squared difference per coordinate).
pub(super) fn nearest_rows_pruned(
    a: &[f32],
    n: usize,
    d: usize,
    refs: &[f32],
    sq: &[f32],
    states: &mut Vec<ImageSearch>,
    rows_read: &mut usize,
) -> Vec<(usize, f64)> {
    let r = sq.len();
    states.resize_with(n, ImageSearch::default);
    // An image whose bounds are unknown needs the full product, and so does one whose bounds
    // are so loose (it moved far) that more than an eighth of the references are open. Once
    // the product reads the references for one image, the others ride along for their
    // arithmetic alone: every image then gets fresh bounds (measured with `bench backwork` at
    // the default rate 0.02, interleaved: 13% less a step than a product for the loose ones
    // only, though 27% more rows are read). So the first image found past the eighth decides
    // for all, and the others are not counted (fresh bounds also reset what they moved).
    let needs_product = (0..n).any(|i| {
        let st = &mut states[i];
        if st.base.len() != r {
            return true;
        }
        let row = &a[i * d..(i + 1) * d];
        st.moved += exact_dist(row, &st.prev);
        st.prev.copy_from_slice(row);
        let ub = exact_dist(row, &refs[st.best * d..(st.best + 1) * d]);
        (0..r).filter(|&j| st.lower(j) < ub).nth(r / 8).is_some()
    });
    let fresh: Vec<usize> = if needs_product {
        (0..n).collect()
    } else {
        Vec::new()
    };
    if !fresh.is_empty() {
        let rows: Vec<f32> = fresh
            .iter()
            .flat_map(|&i| a[i * d..(i + 1) * d].iter().copied())
            .collect();
        let dots = few_dots(&rows, fresh.len(), d, refs);
        *rows_read += r * fresh.len();
        for (f, &i) in fresh.iter().enumerate() {
            let row = &a[i * d..(i + 1) * d];
            let an: f32 = row.iter().map(|v| v * v).sum();
            let st = &mut states[i];
            st.base = dots[f * r..(f + 1) * r]
                .iter()
                .zip(sq)
                .map(|(dot, bn)| {
                    // f32 rounding of the expansion is far below 1e-3 of ‖a‖² + ‖b‖².
                    let d2 = an + bn - 2.0 * dot - 1e-3 * (an + bn);
                    d2.max(0.0).sqrt()
                })
                .collect();
            st.best = st
                .base
                .iter()
                .enumerate()
                .fold(
                    (0, f32::INFINITY),
                    |acc, (j, v)| if *v < acc.1 { (j, *v) } else { acc },
                )
                .0;
            st.moved = 0.0;
            st.prev = row.to_vec();
        }
    }
    (0..n)
        .map(|i| {
            let row = &a[i * d..(i + 1) * d];
            let st = &mut states[i];
            let mut best = st.best;
            let mut ub = exact_dist(row, &refs[best * d..(best + 1) * d]);
            st.base[best] = f32_down(ub * (1.0 - DIST_REL_ERR) + st.moved);
            *rows_read += 1;
            for j in 0..r {
                if j == best || st.lower(j) >= ub {
                    continue;
                }
                let dj = exact_dist(row, &refs[j * d..(j + 1) * d]);
                *rows_read += 1;
                // Stored rounded down, so the f32 bound stays a lower bound.
                let dj_low = dj * (1.0 - DIST_REL_ERR);
                st.base[j] = f32_down(dj_low + st.moved);
                if dj < ub || (dj == ub && j < best) {
                    ub = dj;
                    best = j;
                }
            }
            st.best = best;
            (best, ub * ub / d as f64)
        })
        .collect()
}

/// For each row of `a` (N×D), the nearest row of the reference matrix, by one product.
pub(super) fn nearest_rows(
    a: &[f32],
    n: usize,
    d: usize,
    refs: &[f32],
    sq: &[f32],
) -> Vec<(usize, f64)> {
    let r = sq.len();
    let mut dots = vec![0.0f32; n * r];
    matmul(
        Mat::rows(a, n, d),
        Mat::rows(refs, r, d).t(),
        &mut dots,
        false,
    );
    (0..n)
        .map(|i| {
            let row = &a[i * d..(i + 1) * d];
            let an: f32 = row.iter().map(|v| v * v).sum();
            let (best, _) = dots[i * r..(i + 1) * r]
                .iter()
                .zip(sq)
                .map(|(dot, bn)| an + bn - 2.0 * dot)
                .enumerate()
                .fold(
                    (0, f32::INFINITY),
                    |acc, (j, v)| if v < acc.1 { (j, v) } else { acc },
                );
            // Exact distance of the winner, free of the expansion's cancellation.
            let b = &refs[best * d..(best + 1) * d];
            let exact: f64 = row
                .iter()
                .zip(b)
                .map(|(x, y)| {
                    let t = (x - y) as f64;
                    t * t
                })
                .sum();
            (best, exact / d as f64)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn few_dots_match_a_plain_loop_for_every_row_count_and_a_ragged_width() {
        // d = 37 leaves a tail after the 8-lane chunks; k = 1..=9 covers a partial and a
        // full block of four rows and more than two blocks; 130 references span three of
        // the parallel chunks of 64.
        let (d, r) = (37, 130);
        let val = |i: usize| ((i * 7919) % 1000) as f32 / 250.0 - 2.0;
        let refs: Vec<f32> = (0..r * d).map(val).collect();
        for k in 1..=9 {
            let rows: Vec<f32> = (0..k * d).map(|i| val(i + 12345)).collect();
            let got = few_dots(&rows, k, d, &refs);
            assert_eq!(got.len(), k * r);
            // Three references at a time sum in the same order as one at a time: same bits.
            for j in 0..r {
                let mut one = vec![0.0f32; k];
                dots_of_row_portable(&rows, d, &refs[j * d..(j + 1) * d], &mut one);
                for f in 0..k {
                    assert_eq!(
                        got[f * r + j].to_bits(),
                        one[f].to_bits(),
                        "k {k} f {f} j {j}"
                    );
                }
            }
            for f in 0..k {
                for j in 0..r {
                    let want: f64 = (0..d)
                        .map(|t| rows[f * d + t] as f64 * refs[j * d + t] as f64)
                        .sum();
                    // f32 sums of 37 products of size ≤ 4: rounding stays far below 1e-4.
                    assert!(
                        (got[f * r + j] as f64 - want).abs() < 1e-4,
                        "k {k} f {f} j {j}"
                    );
                }
            }
        }
        assert!(few_dots(&[], 0, d, &refs).is_empty());
    }
}
