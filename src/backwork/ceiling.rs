//! How confident a network can be on images in the pixel box [0, 1]: projected sign-gradient
//! ascent (PGD) on a label's log-odds, ln(p / (1 − p)), from many random starts, with no
//! distance terms. What it finds is an estimate from below of the box's ceiling, and so an
//! estimate from above of what any run of the method (whose cost adds terms that pull
//! elsewhere) can reach: on some networks (label smoothing) a label's ceiling lies under the
//! run's bar, and no setting passes it with pixels a PNG can hold (README, "Where it stands").

use std::sync::atomic::{AtomicBool, Ordering};

use rand::{Rng, SeedableRng, rngs::StdRng};

use super::frozen::{CHUNK, Forward, FrozenCnn, TapGrads};

/// The largest number of starts one label takes (one pass of the network).
pub const MAX_STARTS: usize = CHUNK;

/// The final p(label) of every start of one label, highest first.
#[derive(Clone, Debug, PartialEq)]
pub struct Ceiling {
    pub label: u8,
    pub ps: Vec<f32>,
}

impl Ceiling {
    /// The highest p(label) any start reached.
    pub fn best(&self) -> f32 {
        self.ps.first().copied().unwrap_or(0.0)
    }

    /// The median start's p(label).
    pub fn median(&self) -> f32 {
        match self.ps.len() {
            0 => 0.0,
            n if n % 2 == 1 => self.ps[n / 2],
            n => 0.5 * (self.ps[n / 2 - 1] + self.ps[n / 2]),
        }
    }

    /// Starts whose p(label) passed `bar`.
    pub fn past(&self, bar: f32) -> usize {
        self.ps.iter().filter(|&&p| p > bar).count()
    }
}

/// The gradient of each row's log-odds of `label` with respect to its logits: 1 at the label,
/// minus the softmax of the other logits elsewhere (ln(1 − p) is their log-sum-exp less the
/// whole's, so the whole's cancels).
fn log_odds_grad(logits: &[f32], classes: usize, label: usize) -> Vec<f32> {
    let mut g = vec![0.0f32; logits.len()];
    for (z, gz) in logits.chunks(classes).zip(g.chunks_mut(classes)) {
        let top = z
            .iter()
            .enumerate()
            .filter(|&(j, _)| j != label)
            .fold(f32::NEG_INFINITY, |m, (_, &v)| m.max(v));
        let mut sum = 0.0f32;
        for (j, (&v, out)) in z.iter().zip(gz.iter_mut()).enumerate() {
            if j != label {
                *out = (v - top).exp();
                sum += *out;
            }
        }
        for (j, out) in gz.iter_mut().enumerate() {
            *out = if j == label {
                1.0
            } else {
                -*out / sum.max(1e-30)
            };
        }
    }
    g
}

/// Why a climb gave no ceiling.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum NoCeiling {
    #[error("stopped")]
    Stopped,
    /// The network's logits overflowed on the images of that step (0: the starts).
    #[error(
        "the network's output is not finite on these images at step {step} (its logits overflow), so no ceiling can be measured for label {label}"
    )]
    NotFinite { label: u8, step: usize },
}

/// Climbs `label`'s log-odds from `starts` uniform-noise images for `steps` steps of signed
/// gradient (a rate of 0.02 falling linearly to 0.001, pixels clipped to [0, 1] after each),
/// seeded by `seed`. Calls `on_step` after each step. Fails if `cancel` was set first, or
/// if the network's output is not finite on the images (it is never reported as a p).
pub fn box_ceiling(
    net: &FrozenCnn,
    label: u8,
    starts: usize,
    steps: usize,
    seed: u64,
    cancel: &AtomicBool,
    on_step: &mut dyn FnMut(usize),
) -> Result<Ceiling, NoCeiling> {
    let (d, k, l) = (net.input_len(), net.classes(), usize::from(label));
    let starts = starts.clamp(1, MAX_STARTS);
    let mut rng = StdRng::seed_from_u64(seed ^ (u64::from(label) << 32) ^ 0xCE11_1C0D);
    let mut x: Vec<f32> = (0..starts * d).map(|_| rng.random::<f32>()).collect();
    let mut f = Forward::default();
    for t in 0..steps {
        if cancel.load(Ordering::Relaxed) {
            return Err(NoCeiling::Stopped);
        }
        net.forward(&x, &mut f);
        if !f.logits().iter().all(|v| v.is_finite()) {
            return Err(NoCeiling::NotFinite { label, step: t });
        }
        let g = TapGrads {
            taps: vec![Vec::new(); f.tap_count()],
            logits: log_odds_grad(f.logits(), k, l),
        };
        let dx = net.backward(&mut f, &g);
        let rate = 0.02 * (1.0 - t as f32 / steps as f32) + 0.001;
        for (v, gv) in x.iter_mut().zip(&dx) {
            // A zero (or non-finite) gradient leaves the pixel where it is.
            let s = if *gv > 0.0 {
                1.0
            } else if *gv < 0.0 {
                -1.0
            } else {
                0.0
            };
            *v = (*v + rate * s).clamp(0.0, 1.0);
        }
        on_step(t + 1);
    }
    net.forward(&x, &mut f);
    let ps: Option<Vec<f32>> = f
        .probs()
        .chunks(k)
        .map(|p| p.get(l).copied().filter(|v| v.is_finite()))
        .collect();
    let Some(mut ps) = ps.filter(|_| f.logits().iter().all(|v| v.is_finite())) else {
        return Err(NoCeiling::NotFinite { label, step: steps });
    };
    ps.sort_by(|a, b| b.total_cmp(a));
    Ok(Ceiling { label, ps })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_log_odds_gradient_matches_a_finite_difference() {
        // ln p_l − ln(1 − p_l) = z_l − ln Σ_{j≠l} e^{z_j}.
        let odds = |z: &[f32], l: usize| -> f64 {
            let others: f64 = z
                .iter()
                .enumerate()
                .filter(|&(j, _)| j != l)
                .map(|(_, &v)| f64::from(v).exp())
                .sum();
            f64::from(z[l]) - others.ln()
        };
        let z = [0.3f32, -1.2, 2.5, 0.0, 1.1];
        for l in 0..5 {
            let g = log_odds_grad(&z, 5, l);
            for j in 0..5 {
                let mut up = z;
                up[j] += 1e-3;
                let mut down = z;
                down[j] -= 1e-3;
                let fd = (odds(&up, l) - odds(&down, l)) / 2e-3;
                assert!(
                    (fd - f64::from(g[j])).abs() < 1e-3,
                    "l {l} j {j}: {fd} vs {}",
                    g[j]
                );
            }
        }
    }

    #[test]
    fn the_ascent_raises_p_and_is_seeded() {
        let net = FrozenCnn::from_net(
            crate::model::weights::load_net_or_shipped(None)
                .expect("the shipped model")
                .0,
        );
        let never = AtomicBool::new(false);
        let run = |seed| box_ceiling(&net, 3, 4, 30, seed, &never, &mut |_| {}).unwrap();
        let a = run(1);
        assert_eq!(a.ps.len(), 4);
        assert!(a.ps.windows(2).all(|w| w[0] >= w[1]));
        // The shipped model passes 0.999 on every label within a few steps of Adam (README's
        // zoo table: median 3 steps); 30 signed steps from noise get there too.
        assert!(a.median() > 0.999, "{a:?}");
        // Seeded: the same starts give the same p, others others (two steps, before p
        // rounds to 1 in f32).
        let short = |seed| box_ceiling(&net, 3, 4, 2, seed, &never, &mut |_| {}).unwrap();
        assert_eq!(short(1), short(1));
        assert_ne!(short(1), short(2));
        let stop = AtomicBool::new(true);
        assert_eq!(
            box_ceiling(&net, 3, 4, 30, 1, &stop, &mut |_| {}),
            Err(NoCeiling::Stopped)
        );
    }

    /// A network whose logits overflow on the images is an error, never a p of 0 (it
    /// reported "best p 0.00000" for such a network, found by a hostile test).
    #[test]
    fn overflowing_logits_are_an_error_not_a_ceiling() {
        let (mut raw, _) = crate::model::weights::load_net_or_shipped(None).unwrap();
        // Every layer's weights and biases 1e12 times larger: a ReLU network's logits grow
        // by the product, far past f32's range.
        for p in raw.params_mut() {
            p.iter_mut().for_each(|v| *v *= 1e12);
        }
        let net = FrozenCnn::from_net(raw);
        let never = AtomicBool::new(false);
        let got = box_ceiling(&net, 3, 2, 5, 0, &never, &mut |_| {});
        assert_eq!(got, Err(NoCeiling::NotFinite { label: 3, step: 0 }));
        assert!(got.unwrap_err().to_string().contains("not finite"));
    }
}
