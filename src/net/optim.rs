//! Training pieces on the core: the cross-entropy of logits against hard labels or soft
//! targets with its gradient, and Adam.

use rayon::prelude::*;

use super::pass::Grads;

/// What each image of a batch should be classified as.
pub enum Targets<'a> {
    /// One class per image.
    Hard(&'a [u8]),
    /// A distribution over the K classes per image (M×K); rows need not be one-hot.
    Soft(&'a [f32]),
}

/// The mean over the batch of the cross-entropy −Σₖ tₖ log softmax(z)ₖ, and its gradient
/// with respect to the logits (M×K), (softmax(z) − t)·Σₖtₖ / M per row. Accumulated in f64.
pub fn cross_entropy(logits: &[f32], k: usize, targets: &Targets) -> (f32, Vec<f32>) {
    let m = logits.len() / k.max(1);
    let mut grad = vec![0f32; logits.len()];
    let mut loss = 0f64;
    for (i, (z, g)) in logits
        .chunks_exact(k)
        .zip(grad.chunks_exact_mut(k))
        .enumerate()
    {
        let max = z.iter().copied().fold(f32::NEG_INFINITY, f32::max) as f64;
        let sum: f64 = z.iter().map(|&v| (v as f64 - max).exp()).sum();
        let log_sum = max + sum.ln();
        let target = |c: usize| -> f64 {
            match targets {
                Targets::Hard(l) => f64::from(u8::from(l[i] as usize == c)),
                Targets::Soft(t) => t[i * k + c] as f64,
            }
        };
        let mass: f64 = (0..k).map(target).sum();
        for c in 0..k {
            let t = target(c);
            loss -= t * (z[c] as f64 - log_sum);
            let p = (z[c] as f64 - log_sum).exp();
            g[c] = ((p * mass - t) / m as f64) as f32;
        }
    }
    ((loss / m.max(1) as f64) as f32, grad)
}

/// Adam (Kingma & Ba 2015, as PyTorch's `Adam` and candle's `AdamW` with no weight decay):
/// bias-corrected first and second moments, one step per call.
pub struct Adam {
    pub lr: f64,
    pub beta1: f64,
    pub beta2: f64,
    pub eps: f64,
    t: i32,
    m: Grads,
    v: Grads,
}

impl Adam {
    /// Adam with PyTorch's defaults (β = 0.9, 0.999; ε = 1e-8) for parameters shaped like
    /// `shapes`.
    pub fn new(shapes: &[Vec<f32>], lr: f64) -> Self {
        let zeros = || shapes.iter().map(|p| vec![0.0; p.len()]).collect();
        Self {
            lr,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            t: 0,
            m: zeros(),
            v: zeros(),
        }
    }

    /// One update of `params` from `grads`.
    pub fn step(&mut self, params: &mut [Vec<f32>], grads: &Grads) {
        self.t = self.t.saturating_add(1);
        let (b1, b2) = (self.beta1 as f32, self.beta2 as f32);
        let c1 = 1.0 - self.beta1.powi(self.t);
        let c2 = 1.0 - self.beta2.powi(self.t);
        // θ −= lr·m̂/(√v̂ + ε), with m̂ = m/c1 and v̂ = v/c2 folded into two scalars.
        let step = (self.lr / c1) as f32;
        let root_c2 = c2.sqrt() as f32;
        let eps = self.eps as f32;
        for (((p, g), m), v) in params
            .iter_mut()
            .zip(grads)
            .zip(&mut self.m)
            .zip(&mut self.v)
        {
            p.par_chunks_mut(1 << 14)
                .zip(g.par_chunks(1 << 14))
                .zip(m.par_chunks_mut(1 << 14).zip(v.par_chunks_mut(1 << 14)))
                .for_each(|((p, g), (m, v))| {
                    for (((p, &g), m), v) in p.iter_mut().zip(g).zip(m).zip(v) {
                        *m = b1 * *m + (1.0 - b1) * g;
                        *v = b2 * *v + (1.0 - b2) * g * g;
                        *p -= step * *m / (v.sqrt() / root_c2 + eps);
                    }
                });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cross_entropy_gradient_matches_finite_differences() {
        let k = 4;
        let z: Vec<f32> = (0..3 * k).map(|i| (i as f32 * 0.9).sin() * 3.0).collect();
        let soft = [
            0.1f32, 0.2, 0.3, 0.4, 0., 0., 1., 0., 0.25, 0.25, 0.25, 0.25,
        ];
        for targets in [Targets::Hard(&[2, 0, 3]), Targets::Soft(&soft)] {
            let (_, g) = cross_entropy(&z, k, &targets);
            for i in 0..z.len() {
                let h = 1e-2;
                let mut up = z.clone();
                up[i] += h;
                let mut down = z.clone();
                down[i] -= h;
                let fd = (cross_entropy(&up, k, &targets).0 as f64
                    - cross_entropy(&down, k, &targets).0 as f64)
                    / (2.0 * h as f64);
                assert!((fd - g[i] as f64).abs() < 1e-4, "{i}: {fd} vs {}", g[i]);
            }
        }
    }

    #[test]
    fn adam_first_step_moves_each_weight_by_the_learning_rate() {
        // At t = 1, m̂ = g and v̂ = g², so each step is lr·sign(g) (up to ε).
        let mut p = vec![vec![1.0f32, -2.0, 0.5]];
        let g = vec![vec![0.3f32, -4.0, 1e-3]];
        let mut adam = Adam::new(&p, 0.01);
        adam.step(&mut p, &g);
        let want = [0.99, -1.99, 0.49];
        for (a, b) in p[0].iter().zip(want) {
            assert!((a - b).abs() < 1e-5, "{a} vs {b}");
        }
    }
}
