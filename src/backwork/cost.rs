//! The cost of ALGORITHM.md §3 for one label group, and its gradient at each tap, computed
//! without materialising the R×N×D differences:
//!
//! - nearest training image (inputs, conv0, conv1; fc per-example): ‖a‖² + ‖b‖² − 2a·b from
//!   one matrix product picks the arg-min, whose distance is then recomputed directly (so the
//!   value carries no cancellation error);
//! - nearest training value per fc neuron: binary search in the neuron's sorted column;
//! - similarity: the variance form (2/D) Σ_j Var_n(A[·, j]);
//! - the gradient of each minimum flows only into its arg-min.

use std::sync::Arc;

use serde::Serialize;

use super::refs::LabelRefs;
pub use super::search::GroupSearch;
use super::search::{nearest_rows, nearest_rows_pruned};
use super::settings::{FcDistance, Settings, SoftmaxTerm};

/// A distance below this (mean squared difference per coordinate) is clamped to it, and the
/// term's gradient is zero while it is clamped: 1/distance would otherwise overflow
/// (ALGORITHM.md §3, "Guards"). Distances of real runs are 1e-3 and above.
pub const DIST_EPS: f64 = 1e-12;

/// The terms of one tap.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize)]
pub struct TapTerms {
    /// c_k · prev_coeff / ref_dist.
    pub prev: f64,
    /// c_k · sim_coeff / sim_dist (0 when the batch has one image).
    pub sim: f64,
    /// Mean distance to the nearest training image (or value, for fc per-neuron).
    pub ref_dist: f64,
    /// Mean pairwise distance within the batch, diagonal included.
    pub sim_dist: f64,
}

/// Every term of the cost of one group.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct CostTerms {
    /// One per tap of the network, in order (inputs, conv0, conv1, fc for the §1 network).
    pub taps: Vec<TapTerms>,
    /// The taps' names, as [`Self::named`] prints them.
    #[serde(skip)]
    pub names: Arc<[String]>,
    /// c_softmax · mean(1 − p(label)), or c_softmax · mean(−ln p(label)) in `log` form.
    pub softmax: f64,
    pub total: f64,
    /// Terms that were clamped or disabled by a guard, e.g. "conv0.sim_dist".
    pub clamped: Vec<String>,
}

impl CostTerms {
    /// The name of tap `k` (`tap{k}` if the terms carry no names).
    pub fn tap_name(&self, k: usize) -> String {
        self.names
            .get(k)
            .cloned()
            .unwrap_or_else(|| format!("tap{k}"))
    }

    /// The terms as (name, value) pairs, named as `backwork cost --json` prints them.
    pub fn named(&self) -> Vec<(String, f64)> {
        let mut out = Vec::with_capacity(4 * self.taps.len() + 2);
        for (k, t) in self.taps.iter().enumerate() {
            let name = self.tap_name(k);
            out.push((format!("{name}.prev"), t.prev));
            out.push((format!("{name}.sim"), t.sim));
            out.push((format!("{name}.ref_dist"), t.ref_dist));
            out.push((format!("{name}.sim_dist"), t.sim_dist));
        }
        out.push(("softmax".into(), self.softmax));
        out.push(("total".into(), self.total));
        out
    }

    /// Adds another group's terms (the run's total is the sum over groups).
    pub fn add(&mut self, o: &CostTerms) {
        if self.taps.len() < o.taps.len() {
            self.taps.resize(o.taps.len(), TapTerms::default());
        }
        if self.names.is_empty() {
            self.names = o.names.clone();
        }
        for (a, b) in self.taps.iter_mut().zip(&o.taps) {
            a.prev += b.prev;
            a.sim += b.sim;
            a.ref_dist += b.ref_dist;
            a.sim_dist += b.sim_dist;
        }
        self.softmax += o.softmax;
        self.total += o.total;
        for c in &o.clamped {
            if !self.clamped.contains(c) {
                self.clamped.push(c.clone());
            }
        }
    }
}

/// The nearest training image of each generated image at one tap.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize)]
pub struct Nearest {
    /// Row in the MNIST training file.
    pub index: u32,
    /// Mean squared difference per coordinate.
    pub dist: f32,
}

/// A group's cost, its gradient at each tap, and the nearest training images.
pub struct GroupCost {
    pub terms: CostTerms,
    /// d cost / d tap, N×D_k each, then d cost / d logits (N×K).
    pub grads: Vec<Vec<f32>>,
    pub g_logits: Vec<f32>,
    /// Nearest training image per image at each tap (none at a tap whose distance is taken
    /// per neuron).
    pub nearest: Vec<Vec<Nearest>>,
}

/// Input of the cost: the group's rows of each tap and its probabilities.
pub struct GroupActs<'a> {
    pub n: usize,
    /// Each tap's rows, N×D_k.
    pub taps: Vec<&'a [f32]>,
    /// The taps' names.
    pub names: Arc<[String]>,
    /// N×K probabilities.
    pub probs: &'a [f32],
    pub classes: usize,
}

/// Nearest value of a sorted column to `v` (the column is non-empty).
pub fn nearest_value(col: &[f32], v: f32) -> f32 {
    let i = col.partition_point(|&x| x < v);
    match (i.checked_sub(1).map(|j| col[j]), col.get(i)) {
        (Some(lo), Some(&hi)) => {
            if v - lo <= hi - v {
                lo
            } else {
                hi
            }
        }
        (Some(lo), None) => lo,
        (None, Some(&hi)) => hi,
        (None, None) => v,
    }
}

/// Whether tap `k`'s distance is taken per neuron: a hidden linear tap (whose sorted columns
/// the reference set keeps) under [`FcDistance::PerNeuron`].
pub fn is_per_neuron(refs: &LabelRefs, k: usize, s: &Settings) -> bool {
    s.fc_distance == FcDistance::PerNeuron && refs.layout.columns.get(k) == Some(&true)
}

/// `weight / dist` and its derivative in `dist`; below [`DIST_EPS`] the clamped value and no
/// gradient (the caller reports the clamp).
fn inverse_term(weight: f64, dist: f64) -> (f64, Option<f64>) {
    if dist < DIST_EPS {
        (weight / DIST_EPS, None)
    } else {
        (weight / dist, Some(-weight / (dist * dist)))
    }
}

/// The cost of one group against its label's reference set.
pub fn group_cost(acts: &GroupActs, refs: &LabelRefs, s: &Settings) -> GroupCost {
    group_cost_with(acts, refs, s, None)
}

/// A tap's distance to the nearest references of `m` images, as a sum over them of each
/// image's mean squared difference per coordinate (so the batch's `ref_dist` is this sum over
/// every image divided by `n_total`), d ref_dist / d a (its scale taken from `n_total`, the
/// whole batch's size), and the nearest images (none for fc per neuron).
#[allow(clippy::too_many_arguments)]
fn ref_part(
    a: &[f32],
    m: usize,
    k: usize,
    refs: &LabelRefs,
    s: &Settings,
    n_total: usize,
    search: Option<&mut GroupSearch>,
) -> (f64, Vec<f32>, Vec<Nearest>) {
    let d = refs.dim(k);
    let mut g_ref = vec![0.0f32; m * d];
    if is_per_neuron(refs, k, s) {
        let scale = 1.0 / (n_total * d) as f64;
        let mut sum = 0.0f64;
        for i in 0..m {
            for j in 0..d {
                let v = a[i * d + j];
                let b = nearest_value(refs.column(k, j), v);
                let diff = (v - b) as f64;
                sum += diff * diff;
                g_ref[i * d + j] = (2.0 * diff * scale) as f32;
            }
        }
        return (sum / d as f64, g_ref, Vec::new());
    }
    let best = match search {
        Some(gs) => {
            if gs.taps.len() <= k {
                gs.taps.resize_with(k + 1, Vec::new);
            }
            nearest_rows_pruned(
                a,
                m,
                d,
                &refs.taps[k],
                &refs.sq_norms[k],
                &mut gs.taps[k],
                &mut gs.rows_read,
            )
        }
        None => nearest_rows(a, m, d, &refs.taps[k], &refs.sq_norms[k]),
    };
    let scale = 2.0 / (n_total * d) as f64;
    for (i, &(r, _)) in best.iter().enumerate() {
        let b = &refs.taps[k][r * d..(r + 1) * d];
        for j in 0..d {
            g_ref[i * d + j] = ((a[i * d + j] - b[j]) as f64 * scale) as f32;
        }
    }
    let nearest = best
        .iter()
        .map(|&(r, dist)| Nearest {
            index: refs.indices[r],
            dist: dist as f32,
        })
        .collect();
    (best.iter().map(|b| b.1).sum(), g_ref, nearest)
}

/// The softmax term of `probs` (rows of `kc`): the sum over those images of each one's miss
/// (so the term is c_s times this sum over every image divided by `n_total`), and d term /
/// d logits with its scale taken from `n_total`.
///
/// `prob`: c_s · mean(1 − p[l]), d/dz_j = −(c_s/N) p_l (δ_lj − p_j); `log`: c_s · mean(−ln
/// p[l]), d/dz_j = −(c_s/N) (δ_lj − p_j); `margin`: c_s · mean(ln(1 − p[l]) − ln p[l]),
/// d/dz_j = (c_s/N) (q_j − δ_lj) with q the softmax over the other classes (q_l = 0).
fn softmax_part(
    probs: &[f32],
    kc: usize,
    label: usize,
    s: &Settings,
    n_total: usize,
) -> (f64, Vec<f32>) {
    let c_s = s.softmax_weight() as f64;
    let mut g_logits = vec![0.0f32; probs.len()];
    let mut miss = 0.0f64;
    // A probability that underflowed to 0 in f32 counts as the smallest normal f32, so the
    // term stays finite (about 87.3 per image); its gradient is exact either way.
    let ln = |v: f64| v.max(f32::MIN_POSITIVE as f64).ln();
    for (p, gz) in probs.chunks_exact(kc).zip(g_logits.chunks_exact_mut(kc)) {
        let pl = p[label] as f64;
        // 1 − p(label) as the sum of the others: no cancellation near p(label) = 1.
        let others: f64 = p
            .iter()
            .enumerate()
            .filter(|(j, _)| *j != label)
            .map(|(_, v)| *v as f64)
            .sum();
        let scale = c_s / n_total as f64;
        for (j, (gj, pj)) in gz.iter_mut().zip(p).enumerate() {
            let pj = *pj as f64;
            let delta = if j == label { 1.0 } else { 0.0 };
            *gj = match s.softmax_term {
                SoftmaxTerm::Prob => -scale * pl * (delta - pj),
                SoftmaxTerm::Log => -scale * (delta - pj),
                SoftmaxTerm::Margin if j == label => -scale,
                SoftmaxTerm::Margin if others > 0.0 => scale * pj / others,
                SoftmaxTerm::Margin => 0.0,
            } as f32;
        }
        miss += match s.softmax_term {
            SoftmaxTerm::Prob => 1.0 - pl,
            SoftmaxTerm::Log => -ln(pl),
            SoftmaxTerm::Margin => ln(others) - ln(pl),
        };
    }
    (miss, g_logits)
}

/// A tap's batch statistics for the similarity term: the per-coordinate mean, and
/// sim_dist = (2/D) Σ_j Var_n (population variance), from the sums over the batch.
struct SimStats {
    mean: Vec<f64>,
    sim_dist: f64,
}

impl SimStats {
    /// From the per-coordinate `mean` and the sum of squared deviations from it over `n`
    /// images.
    fn new(mean: Vec<f64>, var_sum: f64, n: usize) -> Self {
        let d = mean.len();
        Self {
            mean,
            sim_dist: 2.0 * var_sum / (n * d) as f64,
        }
    }

    /// Adds chain · d sim_dist / d a (= chain · 4 (a[i,j] − mean_j) / (N·D)) to `g`.
    fn add_grad(&self, a: &[f32], g: &mut [f32], chain: f64, n_total: usize) {
        let d = self.mean.len();
        let chain = chain * 4.0 / (n_total * d) as f64;
        for (row, grow) in a.chunks_exact(d).zip(g.chunks_exact_mut(d)) {
            for ((gv, v), m) in grow.iter_mut().zip(row).zip(&self.mean) {
                *gv += ((*v as f64 - m) * chain) as f32;
            }
        }
    }
}

/// The per-coordinate mean of the rows of `a` (of `d` values each) and the sum of squared
/// deviations from it.
fn mean_and_var_sum(a: &[f32], d: usize) -> (Vec<f64>, f64) {
    let n = (a.len() / d).max(1);
    let mut mean = vec![0.0f64; d];
    for row in a.chunks_exact(d) {
        for (m, v) in mean.iter_mut().zip(row) {
            *m += *v as f64;
        }
    }
    mean.iter_mut().for_each(|m| *m /= n as f64);
    let mut var_sum = 0.0f64;
    for row in a.chunks_exact(d) {
        for (m, v) in mean.iter().zip(row) {
            let t = *v as f64 - m;
            var_sum += t * t;
        }
    }
    (mean, var_sum)
}

/// [`group_cost`], remembering bounds between calls in `search` so that the nearest-image
/// searches read only the references that can have become the nearest.
pub fn group_cost_with(
    acts: &GroupActs,
    refs: &LabelRefs,
    s: &Settings,
    mut search: Option<&mut GroupSearch>,
) -> GroupCost {
    let n = acts.n;
    let taps = acts.taps.len();
    let label = refs.label as usize;
    let mut terms = CostTerms {
        taps: vec![TapTerms::default(); taps],
        names: acts.names.clone(),
        ..CostTerms::default()
    };
    let mut grads: Vec<Vec<f32>> = (0..taps).map(|k| vec![0.0; n * refs.dim(k)]).collect();
    let mut nearest: Vec<Vec<Nearest>> = vec![Vec::new(); taps];
    for k in 0..taps {
        let d = refs.dim(k);
        let a = acts.taps[k];
        let c_k = s.layer_weights[k] as f64;
        let g = &mut grads[k];

        let (dist_sum, g_ref, near) = ref_part(a, n, k, refs, s, n, search.as_deref_mut());
        nearest[k] = near;
        let ref_dist = dist_sum / n as f64;
        terms.taps[k].ref_dist = ref_dist;
        let (prev, chain) = inverse_term(c_k * s.prev_coeff as f64, ref_dist);
        terms.taps[k].prev = prev;
        match chain {
            Some(chain) => {
                for (gv, gr) in g.iter_mut().zip(&g_ref) {
                    *gv += (*gr as f64 * chain) as f32;
                }
            }
            None => terms
                .clamped
                .push(format!("{}.ref_dist", terms.tap_name(k))),
        }

        // Similarity: (2/D) Σ_j Var_n, population variance; needs two images.
        if n < 2 {
            terms
                .clamped
                .push(format!("{}.sim_dist", terms.tap_name(k)));
            continue;
        }
        let (mean, var_sum) = mean_and_var_sum(a, d);
        let stats = SimStats::new(mean, var_sum, n);
        terms.taps[k].sim_dist = stats.sim_dist;
        let (sim, chain) = inverse_term(c_k * s.sim_coeff as f64, stats.sim_dist);
        terms.taps[k].sim = sim;
        match chain {
            Some(chain) => stats.add_grad(a, g, chain, n),
            None => terms
                .clamped
                .push(format!("{}.sim_dist", terms.tap_name(k))),
        }
    }

    let (miss, g_logits) = softmax_part(acts.probs, acts.classes, label, s, n);
    terms.softmax = s.softmax_weight() as f64 * miss / n as f64;
    terms.total = terms.taps.iter().map(|t| t.prev + t.sim).sum::<f64>() + terms.softmax;
    GroupCost {
        terms,
        grads,
        g_logits,
        nearest,
    }
}

/// The cost of images `x` (N rows of the network's input) as one group, and with `want_grad`
/// d cost / d pixels, computed a chunk of images at a time in two passes (batch statistics,
/// then gradients), so memory does not grow with N beyond the images and the gradient
/// themselves. Equal to [`group_cost`] on the whole batch up to the order of summation.
pub fn streamed_cost(
    net: &super::frozen::FrozenCnn,
    x: &[f32],
    refs: &LabelRefs,
    s: &Settings,
    want_grad: bool,
) -> (CostTerms, Option<Vec<f32>>) {
    let n = x.len() / net.input_len().max(1);
    let sums = batch_sums(net, x, refs, s);
    let (terms, chains) = terms_of(&sums, s, n, net.names());
    if !want_grad {
        return (terms, None);
    }
    let gx = streamed_grad(net, x, refs, s, (&sums.stats, &chains));
    (terms, Some(gx))
}

/// What the first pass of [`streamed_cost`] sums over the batch: each tap's summed distance
/// to the nearest references, its similarity statistics, and the softmax term's summed miss.
struct BatchSums {
    dist_sum: Vec<f64>,
    stats: Vec<SimStats>,
    miss: f64,
}

/// Pass 1 of [`streamed_cost`]: the sums over the batch, a chunk at a time.
fn batch_sums(
    net: &super::frozen::FrozenCnn,
    x: &[f32],
    refs: &LabelRefs,
    s: &Settings,
) -> BatchSums {
    use super::frozen::{CHUNK, Forward};
    let pixels = net.input_len().max(1);
    let n = x.len() / pixels;
    let taps = refs.layout.len();
    let label = refs.label as usize;
    let kc = net.classes();
    let mut f = Forward::default();
    let mut dist_sum = vec![0.0f64; taps];
    // Each tap's running mean and sum of squared deviations, chunks merged exactly (Chan et
    // al.'s pairwise update), so no precision is lost to a sum of squares.
    let mut means: Vec<Vec<f64>> = (0..taps).map(|k| vec![0.0; refs.dim(k)]).collect();
    let mut var_sums = vec![0.0f64; taps];
    let mut seen = 0usize;
    let mut miss = 0.0f64;
    for xs in x.chunks(CHUNK * pixels) {
        let m = xs.len() / pixels;
        net.forward(xs, &mut f);
        for k in 0..taps {
            let a = f.tap(k);
            dist_sum[k] += ref_part(a, m, k, refs, s, n, None).0;
            let (cm, c_var) = mean_and_var_sum(a, refs.dim(k));
            let (na, nb) = (seen as f64, m as f64);
            let w = nb / (na + nb);
            let mut cross = 0.0f64;
            for (mean, c) in means[k].iter_mut().zip(&cm) {
                let delta = c - *mean;
                cross += delta * delta;
                *mean += delta * w;
            }
            var_sums[k] += c_var + cross * na * w;
        }
        seen += m;
        miss += softmax_part(f.probs(), kc, label, s, n).0;
    }
    BatchSums {
        dist_sum,
        stats: means
            .into_iter()
            .zip(var_sums)
            .map(|(mean, v)| SimStats::new(mean, v, n))
            .collect(),
        miss,
    }
}

/// The chain factors of each tap's two inverse terms (none where clamped).
type Chains = Vec<(Option<f64>, Option<f64>)>;

/// The cost's terms from the batch's sums, and each tap's chain factors for the gradient.
fn terms_of(sums: &BatchSums, s: &Settings, n: usize, names: Arc<[String]>) -> (CostTerms, Chains) {
    let taps = sums.dist_sum.len();
    let mut terms = CostTerms {
        taps: vec![TapTerms::default(); taps],
        names,
        ..CostTerms::default()
    };
    let mut chains: Chains = vec![(None, None); taps];
    let stats = &sums.stats;
    for k in 0..taps {
        let c_k = s.layer_weights[k] as f64;
        let ref_dist = sums.dist_sum[k] / n as f64;
        terms.taps[k].ref_dist = ref_dist;
        let (prev, chain_prev) = inverse_term(c_k * s.prev_coeff as f64, ref_dist);
        terms.taps[k].prev = prev;
        if chain_prev.is_none() {
            terms
                .clamped
                .push(format!("{}.ref_dist", terms.tap_name(k)));
        }
        let mut chain_sim = None;
        if n < 2 {
            terms
                .clamped
                .push(format!("{}.sim_dist", terms.tap_name(k)));
        } else {
            terms.taps[k].sim_dist = stats[k].sim_dist;
            let (sim, chain) = inverse_term(c_k * s.sim_coeff as f64, stats[k].sim_dist);
            terms.taps[k].sim = sim;
            chain_sim = chain;
            if chain.is_none() {
                terms
                    .clamped
                    .push(format!("{}.sim_dist", terms.tap_name(k)));
            }
        }
        chains[k] = (chain_prev, chain_sim);
    }
    terms.softmax = s.softmax_weight() as f64 * sums.miss / n as f64;
    terms.total = terms.taps.iter().map(|t| t.prev + t.sim).sum::<f64>() + terms.softmax;
    (terms, chains)
}

/// Pass 2 of [`streamed_cost`]: each chunk's gradient with the batch's statistics.
fn streamed_grad(
    net: &super::frozen::FrozenCnn,
    x: &[f32],
    refs: &LabelRefs,
    s: &Settings,
    (stats, chains): (&[SimStats], &Chains),
) -> Vec<f32> {
    use super::frozen::{CHUNK, Forward, TapGrads};
    let pixels = net.input_len().max(1);
    let n = x.len() / pixels;
    let label = refs.label as usize;
    let kc = net.classes();
    let mut f = Forward::default();
    let mut gx = Vec::with_capacity(x.len());
    for xs in x.chunks(CHUNK * pixels) {
        let m = xs.len() / pixels;
        net.forward(xs, &mut f);
        let taps = (0..refs.layout.len())
            .map(|k| {
                let a = f.tap(k);
                let mut g = vec![0.0f32; m * refs.dim(k)];
                let (chain_prev, chain_sim) = chains[k];
                if let Some(chain) = chain_prev {
                    let g_ref = ref_part(a, m, k, refs, s, n, None).1;
                    for (gv, gr) in g.iter_mut().zip(&g_ref) {
                        *gv += (*gr as f64 * chain) as f32;
                    }
                }
                if let Some(chain) = chain_sim {
                    stats[k].add_grad(a, &mut g, chain, n);
                }
                g
            })
            .collect();
        let logits = softmax_part(f.probs(), kc, label, s, n).1;
        gx.extend_from_slice(&net.backward(&mut f, &TapGrads { taps, logits }));
    }
    gx
}
