//! Initial weights for any architecture, drawn in [`Arch::params`] order from one seeded
//! generator: PyTorch's default (uniform in ±1/√fan_in) or the original tutorial's (ALGORITHM.md
//! §1: a normal of deviation 0.1 truncated at two deviations, biases 0.1).

use rand::{Rng, SeedableRng, rngs::StdRng};

use super::arch::{Arch, ArchError};
pub use crate::meta::WeightInit;

/// The parameters of a fresh network of `arch`, in PyTorch's layout (see
/// [`super::Net::from_torch`]). The same seed gives the same values.
pub fn init_params(arch: &Arch, seed: u64, init: WeightInit) -> Result<Vec<Vec<f32>>, ArchError> {
    let mut rng = StdRng::seed_from_u64(seed);
    Ok(arch
        .params()?
        .iter()
        .map(|p| {
            let n: usize = p.torch_shape.iter().product();
            let is_bias = p.torch_shape.len() == 1;
            match init {
                WeightInit::Uniform => {
                    let b = 1.0 / (p.fan_in as f32).sqrt();
                    (0..n).map(|_| rng.random_range(-b..b)).collect()
                }
                WeightInit::Original if is_bias => vec![0.1; n],
                WeightInit::Original => (0..n).map(|_| 0.1 * truncated_normal(&mut rng)).collect(),
            }
        })
        .collect())
}

/// A standard normal sample redrawn until it lies within two deviations (TensorFlow's
/// `truncated_normal`), by the Box–Muller transform.
fn truncated_normal(rng: &mut StdRng) -> f32 {
    loop {
        let u: f64 = 1.0 - rng.random::<f64>(); // (0, 1], so the logarithm is finite
        let v: f64 = rng.random::<f64>();
        let z = (-2.0 * u.ln()).sqrt() * (std::f64::consts::TAU * v).cos();
        if z.abs() <= 2.0 {
            return z as f32;
        }
    }
}
