//! The optimisation loop (ALGORITHM.md §4): Adam on the pixels, probes, the stop rule and the
//! re-initialisation rule, one pure [`Engine::step`] at a time. Several labels run at once,
//! each group with its own reference set and its own cost, batched through one forward and one
//! backward pass; a group that reached the threshold is frozen, so a run of ten groups gives
//! the same numbers as ten separate runs.
//!
//! Longer than 500 lines: the step and its named parts (costs, checks, probe, reinit, Adam)
//! share the run's private state (images, moments, groups) and read best side by side.

use std::sync::Arc;

use rand::{Rng, SeedableRng, rngs::StdRng};
use serde::Serialize;

use rayon::prelude::*;

use super::cost::is_per_neuron;
use super::cost::{CostTerms, GroupActs, GroupCost, GroupSearch, Nearest, group_cost_with};
use super::frozen::{Forward, FrozenCnn, TapGrads};
use super::image::Kept;
use super::refs::LabelRefs;
use super::settings::{Init, PixelConstraint, Settings, SettingsError};

/// Adam's moment decay rates and epsilon (TensorFlow's AdamOptimizer defaults, as the original).
const BETA1: f64 = 0.9;
const BETA2: f64 = 0.999;
const ADAM_EPS: f64 = 1e-8;

/// What can stop the engine with an error.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error(transparent)]
    Settings(#[from] SettingsError),
    #[error("expected {expected} images of {values} values, got {got}")]
    Shape {
        expected: usize,
        values: usize,
        got: f64,
    },
    #[error("no reference set for label {0}")]
    MissingRefs(u8),
    #[error("the reference set of label {0} belongs to another network (its taps differ)")]
    ForeignRefs(u8),
    #[error("the training set has no image of label {0}: there is nothing to stay far from")]
    EmptyRefs(u8),
    #[error("numeric failure at step {step}: {what} is not finite; the last good images are kept")]
    NotFinite { step: usize, what: String },
}

/// Why a run ended.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "snake_case", tag = "reason", content = "detail")]
pub enum EndReason {
    /// Every group's min p(label) passed the threshold.
    Threshold,
    /// `max_steps` reached.
    MaxSteps,
    Cancelled,
    Error(String),
}

pub use super::image::{ImageState, Reinit, ReinitKind};

/// What one step computed.
#[derive(Clone, Debug, Serialize)]
pub struct StepEvent {
    /// 1-based number of this step.
    pub step: usize,
    /// Per image (all groups, group-major), its class probabilities at this step.
    pub probs: Vec<Vec<f32>>,
    /// Per group (in `Settings::labels` order), the cost terms at this step; a finished group
    /// repeats its final terms.
    pub group_terms: Vec<CostTerms>,
    /// Sum over the active groups.
    pub terms: CostTerms,
    pub reinits: Vec<Reinit>,
    /// Whether this step was a probe.
    pub is_probe: bool,
    /// Set on the last step of a run.
    pub end: Option<EndReason>,
}

/// One label group.
pub struct Group {
    pub label: u8,
    pub refs: Arc<LabelRefs>,
    /// Step at which it passed the threshold, if it has.
    pub done_at: Option<usize>,
    /// Kept going past the bar ([`Engine::set_endless`]): the step its every image had
    /// passed, where the run would have stopped it. From then on an image past the bar at
    /// the end stays as the cost took it; one that fell back ends on its best.
    pub passed_at: Option<usize>,
    pub terms: CostTerms,
    /// Draws this group's noise: seeded by (seed, label), so a group's images do not depend
    /// on which other labels share the run.
    rng: StdRng,
    /// Bounds that let the nearest-image searches skip references between steps.
    search: GroupSearch,
}

/// The random stream of label `label` under `seed`.
fn group_rng(seed: u64, label: u8) -> StdRng {
    StdRng::seed_from_u64(seed ^ (u64::from(label) + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15))
}

/// `n` starting images for `refs`' label: its training images shuffled (seeded by (seed,
/// label)) and split into `n` groups of nearly equal size, each image the mean of its group
/// (the original's `init_w_train_vals`, there with 8 groups hard-coded). With fewer training
/// images than `n`, groups repeat images.
pub fn class_means(refs: &LabelRefs, n: usize, seed: u64) -> Vec<f32> {
    let rows = refs.len();
    let mut order: Vec<usize> = (0..rows).collect();
    let mut rng = StdRng::seed_from_u64(seed ^ 0xC1A5_5E5A_u64 ^ (u64::from(refs.label) << 40));
    for i in (1..rows).rev() {
        order.swap(i, rng.random_range(0..=i));
    }
    let pixels = &refs.taps[0];
    let px = refs.dim(0);
    let mut out = vec![0.0f32; n * px];
    for (k, img) in out.chunks_exact_mut(px).enumerate() {
        // Group k holds the shuffled rows [k·R/n, (k+1)·R/n), at least one.
        let lo = k * rows / n;
        let hi = ((k + 1) * rows / n).max(lo + 1);
        let members: Vec<usize> = (lo..hi).map(|i| order[i % rows]).collect();
        let mut sum = vec![0.0f64; px];
        for &r in &members {
            for (s, v) in sum.iter_mut().zip(&pixels[r * px..(r + 1) * px]) {
                *s += *v as f64;
            }
        }
        for (o, s) in img.iter_mut().zip(sum) {
            *o = (s / members.len() as f64) as f32;
        }
    }
    out
}

/// The p(label) of one label group's images at the last classification.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct LabelSummary {
    pub label: u8,
    pub min_p: f32,
    pub mean_p: f32,
}

/// What one running group's cost left for the step to keep: its row among the running
/// groups, its index, its terms, and its nearest images per tap.
type NewTerms = (usize, usize, CostTerms, Vec<Vec<Nearest>>);

/// One image of a run as the engine last classified it: what exports and summaries read.
pub struct RowView<'a> {
    /// Its row (group-major).
    pub row: usize,
    pub label: u8,
    /// Its index within its label group.
    pub index: usize,
    /// Steps its group took until it stopped (or so far).
    pub group_steps: usize,
    pub state: &'a ImageState,
    /// Its pixels (784 for a 28×28 grey image), the exact values `state.probs` belongs to.
    pub pixels: &'a [f32],
    /// The names of the network's taps (what `state.nearest` is indexed by).
    pub tap_names: &'a [String],
}

impl RowView<'_> {
    /// p(label) at the last classification.
    pub fn p_label(&self) -> f32 {
        self.state
            .probs
            .get(self.label as usize)
            .copied()
            .unwrap_or(0.0)
    }
}

/// The state of a run; it owns the images, Adam's moments and the reinit windows.
pub struct Engine {
    net: FrozenCnn,
    /// Values per image (the network's input size).
    px: usize,
    settings: Settings,
    groups: Vec<Group>,
    /// Number of images per group, fixed at the start.
    n: usize,
    /// All images, group-major, (groups·N)×784: what the next step classifies.
    x: Vec<f32>,
    /// The images as the last step classified them (before its Adam update and any
    /// reinitialisation), so that they always match `images[..].probs` (ALGORITHM.md §6:
    /// the original paired fresh noise with old probabilities).
    classified: Vec<f32>,
    m1: Vec<f32>,
    m2: Vec<f32>,
    /// Under the `perturb` stall rule, each image's best pixels in the run, fresh starts
    /// included (see [`ImageState`]'s `kept`); empty otherwise until first needed.
    kept_x: Vec<f32>,
    images: Vec<ImageState>,
    step: usize,
    fwd: Forward,
    ended: Option<EndReason>,
    /// Rows a full nearest search would have read over all steps so far.
    full_rows: usize,
    /// Whether the stop rule is off (benchmarks time steps with every image kept running).
    is_endless: bool,
}

impl Engine {
    /// A new run: one group per label of `settings`, each image uniform [0, 1) noise from
    /// `settings.seed`. `refs` must hold the reference set of every label.
    pub fn new(
        net: FrozenCnn,
        refs: &[Arc<LabelRefs>],
        settings: Settings,
    ) -> Result<Self, EngineError> {
        settings.validate()?;
        settings.validate_taps(&net.names())?;
        let layout = net.layout();
        let mut groups = settings
            .labels
            .iter()
            .map(|&l| {
                let r = refs
                    .iter()
                    .find(|r| r.label == l)
                    .ok_or(EngineError::MissingRefs(l))?;
                if r.is_empty() {
                    return Err(EngineError::EmptyRefs(l));
                }
                if r.layout != layout {
                    return Err(EngineError::ForeignRefs(l));
                }
                Ok(Group {
                    label: l,
                    refs: r.clone(),
                    done_at: None,
                    passed_at: None,
                    terms: CostTerms::default(),
                    rng: group_rng(settings.seed, l),
                    search: GroupSearch::default(),
                })
            })
            .collect::<Result<Vec<_>, EngineError>>()?;
        let n = settings.batch;
        let px = net.input_len();
        let total = groups.len() * n;
        let x: Vec<f32> = groups
            .iter_mut()
            .flat_map(|g| {
                let noise: Vec<f32> = (0..n * px).map(|_| g.rng.random::<f32>()).collect();
                match settings.init {
                    Init::ClassMeans => class_means(&g.refs, n, settings.seed),
                    // Noise; given images replace it through `set_images`.
                    Init::Noise | Init::File(_) | Init::Current => noise,
                }
            })
            .collect();
        Ok(Self {
            net,
            px,
            groups,
            n,
            m1: vec![0.0; x.len()],
            m2: vec![0.0; x.len()],
            kept_x: Vec::new(),
            classified: x.clone(),
            x,
            images: (0..total)
                .map(|_| {
                    let mut i = ImageState::default();
                    i.restart();
                    i
                })
                .collect(),
            step: 0,
            fwd: Forward::default(),
            ended: None,
            full_rows: 0,
            is_endless: false,
            settings,
        })
    }

    /// Reference rows whose distance the nearest-image searches computed so far, and the
    /// rows a full search of every step would have read: their ratio is what pruning saves.
    pub fn search_rows(&self) -> (usize, usize) {
        let read = self.groups.iter().map(|g| g.search.rows_read).sum();
        (read, self.full_rows)
    }

    /// The names of the network's taps, in order.
    pub fn tap_names(&self) -> std::sync::Arc<[String]> {
        self.net.names()
    }

    /// The settings in force.
    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    /// The label groups, in row order.
    pub fn groups(&self) -> &[Group] {
        &self.groups
    }

    /// Every image's state, row by row (group-major).
    pub fn states(&self) -> &[ImageState] {
        &self.images
    }

    /// The label of row `row` (rows are group-major: group `row / batch`).
    pub fn label_of(&self, row: usize) -> u8 {
        self.groups[row / self.n.max(1)].label
    }

    /// The labels of the groups, in row order.
    pub fn labels(&self) -> Vec<u8> {
        self.groups.iter().map(|g| g.label).collect()
    }

    /// p(label) of row `row` at the last classification.
    pub fn p_label(&self, row: usize) -> f32 {
        let l = self.label_of(row) as usize;
        self.images[row].probs.get(l).copied().unwrap_or(0.0)
    }

    /// Per group, its label and the least p(label) among its images.
    pub fn min_p_by_label(&self) -> Vec<(u8, f32)> {
        self.label_summaries()
            .iter()
            .map(|s| (s.label, s.min_p))
            .collect()
    }

    /// Per group: its label, and the least and the mean p(label) of its images.
    pub fn label_summaries(&self) -> Vec<LabelSummary> {
        (0..self.groups.len())
            .map(|g| {
                let ps: Vec<f32> = (g * self.n..(g + 1) * self.n)
                    .map(|row| self.p_label(row))
                    .collect();
                LabelSummary {
                    label: self.groups[g].label,
                    min_p: ps.iter().copied().fold(1.0f32, f32::min),
                    mean_p: ps.iter().sum::<f32>() / ps.len().max(1) as f32,
                }
            })
            .collect()
    }

    /// Every image with its label and place, as the last step classified it.
    pub fn rows(&self) -> impl Iterator<Item = RowView<'_>> {
        self.images.iter().enumerate().map(|(row, state)| {
            let g = &self.groups[row / self.n.max(1)];
            RowView {
                row,
                label: g.label,
                index: row % self.n.max(1),
                group_steps: g.done_at.unwrap_or(self.step),
                state,
                pixels: &self.classified[row * self.px..(row + 1) * self.px],
                tap_names: self.net.tap_names(),
            }
        })
    }

    /// Images per group.
    pub fn batch(&self) -> usize {
        self.n
    }

    /// Steps taken so far.
    pub fn steps(&self) -> usize {
        self.step
    }

    /// All images, group-major, (groups·N)×784: the exact values last classified, the ones
    /// `images[..].probs` belong to (before the start: the initial noise).
    pub fn images(&self) -> &[f32] {
        &self.classified
    }

    /// The images the next step classifies: the last classified ones after their Adam update
    /// and any reinitialisation.
    pub fn next_images(&self) -> &[f32] {
        &self.x
    }

    /// Turns the stop rule off: groups never finish, whatever their p(label), until
    /// `max_steps` or a cancel. For benchmarks, which time steps of a full batch, and for
    /// runs kept going past the bar to watch the cost work on fooled images (`run
    /// --keep-going`, the window's *keep going*).
    pub fn set_endless(&mut self, is_endless: bool) {
        self.is_endless = is_endless;
    }

    /// Whether the stop rule is off ([`Self::set_endless`]).
    pub fn is_endless(&self) -> bool {
        self.is_endless
    }

    /// Why the run ended, once it has.
    pub fn end_reason(&self) -> Option<&EndReason> {
        self.ended.as_ref()
    }

    /// Replaces the settings from the next step on. Labels and batch size are fixed for the
    /// life of a run; the other settings may change between any two steps.
    pub fn set_settings(&mut self, mut s: Settings) -> Result<(), EngineError> {
        s.labels = self.settings.labels.clone();
        s.batch = self.settings.batch;
        s.validate()?;
        s.validate_taps(&self.net.names())?;
        self.settings = s;
        Ok(())
    }

    /// Replaces every image (group-major, (groups·N)×784) and resets Adam's moments and the
    /// reinit windows: a run that starts from given images (clipped to [0, 1] when the
    /// pixels are clipped, so the first image classified is one a PNG can hold).
    pub fn set_images(&mut self, x: &[f32]) -> Result<(), EngineError> {
        if x.len() != self.x.len() {
            return Err(EngineError::Shape {
                expected: self.x.len() / self.px,
                values: self.px,
                got: x.len() as f64 / self.px as f64,
            });
        }
        if let Some(i) = x.iter().position(|v| !v.is_finite()) {
            return Err(EngineError::NotFinite {
                step: self.step,
                what: format!("input pixel {i}"),
            });
        }
        self.x.copy_from_slice(x);
        if self.settings.pixels == PixelConstraint::Clip {
            self.x.iter_mut().for_each(|v| *v = v.clamp(0.0, 1.0));
        }
        self.classified.copy_from_slice(&self.x);
        self.m1.fill(0.0);
        self.m2.fill(0.0);
        for img in &mut self.images {
            img.restart();
            img.kept = None;
        }
        for g in &mut self.groups {
            g.search = GroupSearch::default();
        }
        Ok(())
    }

    /// Marks the run cancelled.
    pub fn cancel(&mut self) -> StepEvent {
        for g in 0..self.groups.len() {
            if self.groups[g].done_at.is_none() {
                self.restore_kept(g);
            }
        }
        self.ended = Some(EndReason::Cancelled);
        self.final_event(EndReason::Cancelled)
    }

    fn final_event(&self, reason: EndReason) -> StepEvent {
        let mut terms = CostTerms::default();
        for g in &self.groups {
            terms.add(&g.terms);
        }
        StepEvent {
            step: self.step,
            probs: self.images.iter().map(|i| i.probs.clone()).collect(),
            group_terms: self.groups.iter().map(|g| g.terms.clone()).collect(),
            terms,
            reinits: Vec::new(),
            is_probe: false,
            end: Some(reason),
        }
    }

    /// One step: forward the active groups, compute every cost term and the gradient, probe
    /// (stop and reinit rules) when due, then one Adam update of the active images.
    pub fn step(&mut self) -> Result<StepEvent, EngineError> {
        if let Some(r) = &self.ended {
            return Ok(self.final_event(r.clone()));
        }
        let n = self.n;
        let active: Vec<usize> = (0..self.groups.len())
            .filter(|&g| self.groups[g].done_at.is_none())
            .collect();
        let step = self.step + 1;
        // Forward the active groups' images only.
        let xa: Vec<f32> = active
            .iter()
            .flat_map(|&g| {
                self.x[g * n * self.px..(g + 1) * n * self.px]
                    .iter()
                    .copied()
            })
            .collect();
        let mut fwd = std::mem::take(&mut self.fwd);
        self.net.forward(&xa, &mut fwd);
        let (grads, new_terms) = self.group_costs(&fwd);
        let gx = self.net.backward(&mut fwd, &grads);
        self.fwd = fwd;
        self.check_finite(step, &new_terms, &gx)?;
        // The step is good: only now do its numbers replace the last good ones.
        self.commit(new_terms);
        self.classified.copy_from_slice(&self.x);
        self.step = step;

        // Probe: stop and reinit rules on the probabilities of the images just classified.
        let is_probe = step.is_multiple_of(self.settings.save_freq);
        let reinits = if is_probe {
            self.probe_groups(step, &active)
        } else {
            Vec::new()
        };
        // Adam on the images of groups still running; fresh noise for re-initialised ones.
        for (ai, &g) in active.iter().enumerate() {
            if self.groups[g].done_at.is_some() {
                continue;
            }
            for i in 0..n {
                let row = g * n + i;
                match reinits.iter().find(|r| r.image == row) {
                    Some(r) => self.reinit_image(g, i, r.kind, step),
                    None => {
                        let grad = &gx[(ai * n + i) * self.px..(ai * n + i + 1) * self.px];
                        self.adam_update(row, grad);
                    }
                }
            }
        }
        let end = if self.groups.iter().all(|g| g.done_at.is_some()) {
            Some(EndReason::Threshold)
        } else if self.settings.max_steps.is_some_and(|m| step >= m) {
            for &g in &active {
                self.restore_kept(g);
            }
            Some(EndReason::MaxSteps)
        } else {
            None
        };
        self.ended = end.clone();
        let mut terms = CostTerms::default();
        for &g in &active {
            terms.add(&self.groups[g].terms);
        }
        Ok(StepEvent {
            step,
            probs: self.images.iter().map(|i| i.probs.clone()).collect(),
            group_terms: self.groups.iter().map(|g| g.terms.clone()).collect(),
            terms,
            reinits,
            is_probe,
            end,
        })
    }

    /// The cost of every running group (in parallel: they are independent) on the forward
    /// pass `fwd` of their images: the gradients at every tap, assembled for the backward
    /// pass, and per group (its row among the running, its index, its terms, its nearest
    /// images).
    fn group_costs(&mut self, fwd: &Forward) -> (TapGrads, Vec<NewTerms>) {
        let n = self.n;
        let kc = self.net.classes();
        let tap_count = fwd.tap_count();
        let dims: Vec<usize> = self.net.taps().iter().map(|t| t.dim).collect();
        let mut grads = TapGrads {
            taps: (0..tap_count)
                .map(|k| vec![0.0; fwd.tap(k).len()])
                .collect(),
            logits: vec![0.0; fwd.logits().len()],
        };
        let settings = &self.settings;
        let names = self.net.names();
        let mut active_groups: Vec<(usize, usize, &mut Group)> = self
            .groups
            .iter_mut()
            .enumerate()
            .filter(|(_, grp)| grp.done_at.is_none())
            .enumerate()
            .map(|(ai, (g, grp))| (ai, g, grp))
            .collect();
        let costs: Vec<(usize, usize, GroupCost)> = active_groups
            .par_iter_mut()
            .map(|(ai, g, grp)| {
                let ai = *ai;
                let acts = GroupActs {
                    n,
                    taps: (0..tap_count)
                        .map(|k| &fwd.tap(k)[ai * n * dims[k]..(ai + 1) * n * dims[k]])
                        .collect(),
                    names: names.clone(),
                    probs: &fwd.probs()[ai * n * kc..(ai + 1) * n * kc],
                    classes: kc,
                };
                let gc = group_cost_with(&acts, &grp.refs, settings, Some(&mut grp.search));
                (ai, *g, gc)
            })
            .collect();
        drop(active_groups);
        let mut new_terms = Vec::with_capacity(costs.len());
        for (ai, g, gc) in costs {
            for (k, d) in grads.taps.iter_mut().enumerate() {
                d[ai * n * dims[k]..(ai + 1) * n * dims[k]].copy_from_slice(&gc.grads[k]);
            }
            grads.logits[ai * n * kc..(ai + 1) * n * kc].copy_from_slice(&gc.g_logits);
            let refs = &self.groups[g].refs;
            let searched = (0..tap_count)
                .filter(|&k| !is_per_neuron(refs, k, &self.settings))
                .count();
            self.full_rows += searched * n * refs.len();
            new_terms.push((ai, g, gc.terms, gc.nearest));
        }
        (grads, new_terms)
    }

    /// Nothing non-finite may reach the images or the user: a step whose terms,
    /// probabilities or gradient are not finite ends the run with an error.
    fn check_finite(
        &mut self,
        step: usize,
        new_terms: &[NewTerms],
        gx: &[f32],
    ) -> Result<(), EngineError> {
        for (_, g, t, _) in new_terms {
            let bad = t
                .named()
                .into_iter()
                .find(|(_, v)| !v.is_finite())
                .map(|(name, _)| format!("label {} {name}", self.groups[*g].label));
            if let Some(what) = bad {
                return Err(self.fail(step, what));
            }
        }
        if let Some(i) = self.fwd.probs().iter().position(|p| !p.is_finite()) {
            // Said by image, not by its index in the batch's flat probabilities ("probability
            // 0 is not finite" read as the value 0).
            let row = i / self.net.classes().max(1);
            return Err(self.fail(
                step,
                format!("image {row}'s classification (the network's logits overflow on it)"),
            ));
        }
        if gx.iter().any(|v| !v.is_finite()) {
            return Err(self.fail(step, "the gradient".into()));
        }
        Ok(())
    }

    /// Keeps a good step's terms, probabilities and nearest images.
    fn commit(&mut self, new_terms: Vec<NewTerms>) {
        let (n, kc) = (self.n, self.net.classes());
        for (ai, g, t, nearest) in new_terms {
            self.groups[g].terms = t;
            for i in 0..n {
                let img = &mut self.images[g * n + i];
                img.probs = self.fwd.probs()[(ai * n + i) * kc..(ai * n + i + 1) * kc].to_vec();
                img.nearest = nearest.iter().map(|near| near.get(i).copied()).collect();
            }
        }
    }

    /// The probe of the running groups at `step`: a group whose every image passed the
    /// threshold stops; the others' images are checked against the reinit rules. Returns
    /// the re-initialisations due.
    fn probe_groups(&mut self, step: usize, active: &[usize]) -> Vec<Reinit> {
        let n = self.n;
        let mut reinits = Vec::new();
        for &g in active {
            let label = self.groups[g].label as usize;
            // Kept going, every rule keeps each image's best: one that passed and then fell
            // back under the cost ends on it, not below the bar.
            if self.settings.stall.perturbs() || self.is_endless {
                for row in g * n..(g + 1) * n {
                    self.keep_if_best(row, label);
                }
            }
            // Under `perturb` an image counts with its kept best (restored below).
            let min_p = (0..n)
                .map(|i| {
                    let img = &self.images[g * n + i];
                    let kept = img.kept.as_ref().map_or(f32::NEG_INFINITY, |k| k.p);
                    img.probs[label].max(kept)
                })
                .fold(f32::INFINITY, f32::min);
            if min_p > self.settings.threshold {
                if !self.is_endless {
                    self.restore_kept(g);
                    self.groups[g].done_at = Some(step);
                    continue;
                }
                self.groups[g].passed_at.get_or_insert(step);
            }
            for i in 0..n {
                let row = g * n + i;
                if let Some(mut kind) = self.reinit_due(row, label) {
                    // A fresh start would lose a kept image past the cap: perturb instead
                    // (only a perturbing rule, or a run kept going, keeps one; §4's rule
                    // fires below the cap, so only the kept best can have reached it).
                    let img = &self.images[row];
                    if kind == ReinitKind::MonoDec
                        && img.kept.is_some()
                        && img.has_reached_cap(img.probs[label], &self.settings)
                    {
                        kind = ReinitKind::StallPerturb;
                    }
                    reinits.push(Reinit {
                        kind,
                        step,
                        image: row,
                        p_label: self.images[row].probs[label],
                    });
                }
            }
        }
        reinits
    }

    /// Image `i` of group `g` starts again: fresh noise (or, for a stall perturbation, noise
    /// added), Adam's moments and its probe window cleared.
    fn reinit_image(&mut self, g: usize, i: usize, kind: ReinitKind, step: usize) {
        let row = g * self.n + i;
        let span = row * self.px..(row + 1) * self.px;
        let rng = &mut self.groups[g].rng;
        let amp = self.settings.stall_noise;
        let clip = self.settings.pixels == PixelConstraint::Clip;
        let is_fresh = matches!(kind, ReinitKind::MonoDec | ReinitKind::StallReinit);
        for v in &mut self.x[span.clone()] {
            *v = if is_fresh {
                rng.random::<f32>()
            } else {
                let moved = *v + rng.random_range(-amp..=amp);
                if clip { moved.clamp(0.0, 1.0) } else { moved }
            };
        }
        self.m1[span.clone()].fill(0.0);
        self.m2[span].fill(0.0);
        if is_fresh {
            self.groups[g].search.forget(i);
        }
        let img = &mut self.images[row];
        img.restart();
        img.reinits += 1;
        // The kept best survives a fresh start: the run never ends an image below the best it
        // reached (a fresh start happens only below the reinit cap, so it decides nothing
        // else: see `probe_groups`).
        if is_fresh {
            img.init_step = step;
            img.stale_perturbs = 0;
        }
    }

    /// Under the `perturb` stall rule: keeps image `row`'s pixels, probabilities and nearest
    /// images when its p(label) at this probe is the best it has reached in the run.
    fn keep_if_best(&mut self, row: usize, label: usize) {
        let img = &mut self.images[row];
        let p = img.probs[label];
        if img.kept.as_ref().is_some_and(|k| k.p >= p) {
            return;
        }
        if img
            .kept
            .as_ref()
            .is_none_or(|k| p > k.p + self.settings.stall_tol)
        {
            img.stale_perturbs = 0;
        }
        img.kept = Some(Kept {
            p,
            probs: img.probs.clone(),
            nearest: img.nearest.clone(),
        });
        if self.kept_x.len() != self.x.len() {
            self.kept_x = vec![0.0; self.x.len()];
        }
        let span = row * self.px..(row + 1) * self.px;
        self.kept_x[span.clone()].copy_from_slice(&self.classified[span]);
    }

    /// Ends group `g` on its kept images: every image whose kept best beats its last
    /// classification goes back to it (pixels, probabilities, nearest images), so a run
    /// under the `perturb` rule ends on the best image each one reached. The group's cost
    /// terms stay those of its last step.
    fn restore_kept(&mut self, g: usize) {
        let label = self.groups[g].label as usize;
        let kept_going = self.groups[g].passed_at.is_some();
        for row in g * self.n..(g + 1) * self.n {
            let img = &mut self.images[row];
            let Some(k) = img.kept.as_ref() else { continue };
            // Kept going past the bar (the group had passed it), an image past it now stays
            // where the cost took it: going back would undo what the run was kept going to
            // show. (A run whose group never passed ends on the best images, kept going or
            // not.)
            let is_past = img.probs[label] > self.settings.threshold;
            if k.p <= img.probs[label] || (kept_going && is_past) {
                continue;
            }
            img.probs = k.probs.clone();
            img.nearest = k.nearest.clone();
            let span = row * self.px..(row + 1) * self.px;
            self.classified[span.clone()].copy_from_slice(&self.kept_x[span.clone()]);
            self.x[span.clone()].copy_from_slice(&self.kept_x[span.clone()]);
            self.m1[span.clone()].fill(0.0);
            self.m2[span].fill(0.0);
            img.restart();
        }
    }

    /// One Adam step on image `row` with its gradient `grad` (784), clipped to [0, 1] when the
    /// settings say so.
    fn adam_update(&mut self, row: usize, grad: &[f32]) {
        let lr = self.settings.lr as f64;
        let span = row * self.px..(row + 1) * self.px;
        let img = &mut self.images[row];
        img.adam_t += 1;
        let t = img.adam_t as i32;
        let corr1 = 1.0 - BETA1.powi(t);
        let corr2 = 1.0 - BETA2.powi(t);
        for (j, gj) in span.zip(grad) {
            let gj = *gj as f64;
            let m1 = BETA1 * self.m1[j] as f64 + (1.0 - BETA1) * gj;
            let m2 = BETA2 * self.m2[j] as f64 + (1.0 - BETA2) * gj * gj;
            self.m1[j] = m1 as f32;
            self.m2[j] = m2 as f32;
            let upd = lr * (m1 / corr1) / ((m2 / corr2).sqrt() + ADAM_EPS);
            let mut v = self.x[j] as f64 - upd;
            if self.settings.pixels == PixelConstraint::Clip {
                v = v.clamp(0.0, 1.0);
            }
            self.x[j] = v as f32;
        }
    }

    /// Records the probe of image `row` and applies the reinit rules (see
    /// [`ImageState::probe`]).
    fn reinit_due(&mut self, row: usize, label: usize) -> Option<ReinitKind> {
        let img = &mut self.images[row];
        let p = img.probs[label];
        img.probe(p, &self.settings)
    }

    fn fail(&mut self, step: usize, what: String) -> EngineError {
        let e = EngineError::NotFinite { step, what };
        self.ended = Some(EndReason::Error(e.to_string()));
        e
    }
}
