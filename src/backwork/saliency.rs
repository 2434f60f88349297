//! Saliency (issue 5, as the original's `salient_features`): the gradient of p(label) with
//! respect to the input pixels, and its k most positive pixels as a mask — the pixels that
//! raise the network's belief in the label most.

use super::frozen::{Forward, FrozenCnn, TapGrads};

/// Pixels in a saliency mask unless told otherwise (about 6% of the 784).
pub const DEFAULT_TOP_K: usize = 50;

impl FrozenCnn {
    /// d p(label) / d x for each image of `x` (M×784), its target in `labels` (M values).
    ///
    /// # Shapes
    /// `x` M×784, `labels` M, result M×784.
    pub fn saliency(&self, x: &[f32], labels: &[usize]) -> Vec<f32> {
        // Images are independent: a chunk at a time keeps the activations of one chunk only,
        // whatever the number of images.
        if labels.len() > super::frozen::CHUNK {
            let per = super::frozen::CHUNK;
            return x
                .chunks(per * self.input_len())
                .zip(labels.chunks(per))
                .flat_map(|(xs, ls)| self.saliency(xs, ls))
                .collect();
        }
        let mut f = Forward::default();
        self.forward(x, &mut f);
        let k = self.classes();
        let mut g_logits = vec![0.0; f.m() * k];
        for (i, g) in g_logits.chunks_exact_mut(k).enumerate() {
            let p = &f.probs()[i * k..(i + 1) * k];
            let l = labels[i].min(k - 1);
            // Softmax derivative: d p_l / d z_j = p_l (δ_lj − p_j); 1 − p_l as the sum of
            // the other classes, which keeps its precision when p_l is close to 1.
            let rest: f32 = (0..k).filter(|&j| j != l).map(|j| p[j]).sum();
            for (j, gj) in g.iter_mut().enumerate() {
                *gj = if j == l { p[l] * rest } else { -p[l] * p[j] };
            }
        }
        self.backward(
            &mut f,
            &TapGrads {
                logits: g_logits,
                ..TapGrads::default()
            },
        )
    }
}

/// A saliency map (M×(h·w·c), channels last) per pixel: the sum over each pixel's `c`
/// channels, the change of p(label) when the whole pixel brightens (M×(h·w)).
pub fn per_pixel(saliency: &[f32], c: usize) -> Vec<f32> {
    if c <= 1 {
        return saliency.to_vec();
    }
    saliency.chunks_exact(c).map(|v| v.iter().sum()).collect()
}

/// For each image of a per-pixel saliency map (M×`pixels`), the `k` pixels with the largest
/// positive gradient (fewer when fewer are positive), as a mask.
pub fn top_k_mask(saliency: &[f32], pixels: usize, k: usize) -> Vec<bool> {
    let mut mask = vec![false; saliency.len()];
    let pixels = pixels.max(1);
    for (img, out) in saliency
        .chunks_exact(pixels)
        .zip(mask.chunks_exact_mut(pixels))
    {
        let mut order: Vec<usize> = (0..pixels).filter(|&j| img[j] > 0.0).collect();
        order.sort_by(|&a, &b| img[b].total_cmp(&img[a]).then(a.cmp(&b)));
        for &j in order.iter().take(k) {
            out[j] = true;
        }
    }
    mask
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_mask_takes_the_largest_positive_pixels_only() {
        const PIXELS: usize = 784;
        let mut s = vec![0.0f32; PIXELS];
        s[10] = 3.0;
        s[20] = 1.0;
        s[30] = -5.0;
        s[40] = 2.0;
        let m = top_k_mask(&s, PIXELS, 2);
        let on: Vec<usize> = (0..PIXELS).filter(|&j| m[j]).collect();
        assert_eq!(on, vec![10, 40]);
        // Asking for more than are positive gives only the positive ones.
        let m = top_k_mask(&s, PIXELS, 10);
        assert_eq!(m.iter().filter(|&&b| b).count(), 3);
    }
}
