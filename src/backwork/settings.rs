//! The settings of a backwork run (ALGORITHM.md §3–§4), with the original defaults and the
//! ranges each one accepts. Any of them may change between two steps.

use serde::{Deserialize, Serialize};

use crate::data::NUM_LABELS;

/// How pixels are kept in range after each Adam step (ALGORITHM.md §4).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum PixelConstraint {
    /// Project every pixel back into [0, 1]: the exported PNG is the image that was classified.
    #[default]
    Clip,
    /// No constraint, as the original: pixels leave [0, 1].
    None,
}

/// How the `fc` reference distance takes its minimum (ALGORITHM.md §3).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum FcDistance {
    /// The original: the nearest training *value* of each neuron, per (image, neuron).
    #[default]
    PerNeuron,
    /// The nearest training image, as for the conv taps.
    PerExample,
}

/// The optional stall rule (not in the original; see the engine issue): what to do with an
/// image whose best p(label) has not improved by more than `stall_tol` over `stall_window`
/// probes while it is still below the threshold.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum StallMode {
    /// No stall rule: the original method.
    #[default]
    Off,
    /// Replace it with fresh noise, as the original's reinit rule does.
    Reinit,
    /// Add uniform noise of ±`stall_noise` to its pixels and restart Adam for it: a random
    /// walk between the local maxima of p(label) near the image. The best image each image
    /// reached (fresh starts included) is kept, and the run ends on it.
    Perturb,
    /// `perturb` for an image whose best p(label) has reached the reinit cap, fresh noise for
    /// one that has not (as `reinit`): an image still below the cap that stops rising sits in
    /// a basin a perturbation rarely leaves, and a fresh start is cheap there; one past it is
    /// near the bar, and a perturbation keeps its climb (README, "Images that creep below the
    /// cap"). The best image each reached is kept, as under `perturb`.
    Hybrid,
}

impl StallMode {
    /// Whether the rule keeps each image's best and may add noise to it (`perturb`, `hybrid`).
    pub fn perturbs(self) -> bool {
        matches!(self, StallMode::Perturb | StallMode::Hybrid)
    }
}

/// The form of the softmax term (ALGORITHM.md §3 and issue 11).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum SoftmaxTerm {
    /// The original: c_softmax · mean(1 − p(label)). Its gradient on the logits is
    /// p(label)·(1 − p(label)): it vanishes while p(label) ≈ 0, so an image the network gives
    /// almost no chance of the label feels only the distance terms.
    #[default]
    Prob,
    /// The same term in log space: c_softmax · mean(−ln p(label)), the cross-entropy. Near
    /// p(label) = 1 it equals the original to first order (−ln p ≈ 1 − p) with the same
    /// gradient; far from it the pull on the logits stays of size 1 instead of vanishing.
    Log,
    /// The log-odds against the label, c_softmax · mean(ln(1 − p) − ln p): the log form's
    /// value far from the label, but its pull on the logits keeps size 1 up to p = 1 (the log
    /// form's fades like 1 − p). Unbounded below: a group stops at its threshold.
    Margin,
}

/// Where a run's images start (the original's `init_w_train_vals`; issue 11). Re-initialised
/// images always restart from noise.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum Init {
    /// Uniform [0, 1) noise, seeded by (seed, label).
    #[default]
    Noise,
    /// The label's training images shuffled (seeded) and split into N groups, N the images
    /// per label; each image the mean of its group (the original hard-coded 8 groups).
    ClassMeans,
    /// Given images, group-major, from a `.npy` file (`--init FILE.npy`).
    File(std::path::PathBuf),
    /// The images of the previous run in the app (its "from the current images"), to go on
    /// from where it stopped; the worker hands them over.
    Current,
}

/// A named set of the settings that shape the cost and the rules: everything but what a run
/// is asked for (the labels, the batch size, the threshold, the step budget) and where it
/// starts (the seed, the start images). So `--preset original --threshold 0.9999` is still
/// the original method, at the paper's bar.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Preset {
    /// The 2016 method exactly as ALGORITHM.md §3–§4 states it (with clipped pixels, its
    /// stated default).
    Original,
    /// backwork's default (issue 11): the same cost terms with the softmax term as log-odds
    /// ([`SoftmaxTerm::Margin`]), a 20-probe reinit window and the `hybrid` stall rule (an image
    /// stuck for 15 probes starts afresh while its best is below the reinit cap, and is
    /// perturbed by ±0.2 past it, ending on the best image each reached) with Adam at 0.08,
    /// so that images converge on networks trained in any common way (README,
    /// "Convergence on the networks people bring").
    Robust,
}

impl Preset {
    pub const ALL: [Preset; 2] = [Preset::Robust, Preset::Original];

    pub fn name(self) -> &'static str {
        match self {
            Preset::Original => "original",
            Preset::Robust => "robust",
        }
    }

    pub fn parse(text: &str) -> Option<Preset> {
        Preset::ALL.into_iter().find(|p| p.name() == text)
    }

    /// Sets the fields this preset governs; labels, batch, threshold, step budget, seed and
    /// start images stay.
    pub fn apply(self, s: &mut Settings) {
        s.prev_coeff = 0.5;
        s.sim_coeff = 0.5;
        // The network's tap count stays (the §1 network's when the weights name none).
        let taps = if s.layer_weights.len() >= 2 {
            s.tap_count()
        } else {
            TAPS.len()
        };
        s.layer_weights = default_layer_weights(taps);
        s.save_freq = 1;
        s.reinit_cap = 0.99;
        s.pixels = PixelConstraint::Clip;
        s.fc_distance = FcDistance::PerNeuron;
        s.stall_tol = 1e-4;
        // The stall rule's own settings (unused while it is off, as in the original): short,
        // strong hops, a random walk between the local maxima near the paper's bar (README,
        // "The pixel box and the paper's bar"): 15 probes gained images at 0.9999 on the
        // label-smoothing network and changed nothing on the rest of the zoo.
        s.stall_window = 15;
        s.stall_noise = 0.2;
        match self {
            Preset::Original => {
                s.lr = 0.01;
                s.softmax_term = SoftmaxTerm::Prob;
                s.reinit_window = 5;
                s.stall = StallMode::Off;
                s.stall_restart = 0;
            }
            Preset::Robust => {
                // Eight times the original's step: on 20 networks it fooled as many images
                // as 0.02 or more, in 2-3 times fewer steps, and images that creep towards
                // the bar (label smoothing) get there (README, "The Adam rate").
                s.lr = 0.08;
                s.softmax_term = SoftmaxTerm::Margin;
                s.reinit_window = 20;
                // Fresh noise for a stalled image whose best is below the cap, a perturbation
                // past it: on 20 networks it fooled as many images as `perturb` or more, and
                // label-smoothing networks whose digit 1 crept at p 0.85-0.92 under `perturb`
                // now pass it (README, "Images that creep below the cap").
                s.stall = StallMode::Hybrid;
                // Off: fresh starts after fruitless perturbations help where a basin's top
                // lies just under the bar and cost images where the walk still creeps
                // towards it (README, "Held-out networks").
                s.stall_restart = 0;
            }
        }
    }

    /// The settings of this preset with the default labels, batch and seed.
    pub fn settings(self) -> Settings {
        let mut s = Settings::default();
        self.apply(&mut s);
        s
    }
}

/// The taps of the §1 network, whose names every setting, file and flag of the original
/// method uses; other networks name theirs after their layers ([`crate::net::Arch::taps`]).
pub const TAPS: [&str; 4] = ["inputs", "conv0", "conv1", "fc"];

/// [`TAPS`] as owned names, as a network's taps are given.
pub fn original_tap_names() -> Vec<String> {
    TAPS.iter().map(|t| t.to_string()).collect()
}

/// The softmax term's default layer weight (ALGORITHM.md §3).
pub const SOFTMAX_WEIGHT: f32 = 10.0;

/// The default layer weights of a network with `taps` taps, then the softmax's: the original's
/// 1e-5 at the input, ten times more at each deeper tap (1e-4, 1e-3 and 1e-2 for conv0, conv1
/// and fc, ALGORITHM.md §3), no more than fc's 1e-2 past it; then 10.
pub fn default_layer_weights(taps: usize) -> Vec<f32> {
    let mut w: Vec<f32> = (0..taps).map(|k| 10f32.powi(k.min(3) as i32 - 5)).collect();
    w.push(SOFTMAX_WEIGHT);
    w
}

/// Everything that shapes a run. Defaults are the `robust` preset's ([`Preset`]); the
/// original method's (ALGORITHM.md §3–§4) are `Preset::Original.settings()`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Settings {
    /// Weight of the "far from the training images" terms, 1/ref_k. Range [0, 1e6]; default 0.5.
    pub prev_coeff: f32,
    /// Weight of the "far from each other" terms, 1/sim_k. Range [0, 1e6]; default 0.5.
    pub sim_coeff: f32,
    /// Layer weights c_k, one per tap of the network and then the softmax's (for the §1
    /// network: inputs, conv0, conv1, fc, softmax). Each in [0, 1e6]; default
    /// [`default_layer_weights`], [1e-5, 1e-4, 1e-3, 1e-2, 10] for the §1 network.
    pub layer_weights: Vec<f32>,
    /// Adam learning rate on the pixels. Range (0, 10]; default 0.08 (the original's 0.01).
    pub lr: f32,
    /// Images per target label. Range 1..=256; default 8.
    pub batch: usize,
    /// Target labels (class numbers of the data, checked against it where the data is
    /// known), no repeats. Default the ten digits.
    pub labels: Vec<u8>,
    /// Stop when every image's p(label) exceeds this (`prob_cap_min`). Range (0, 1);
    /// default 0.999.
    pub threshold: f32,
    /// Probe (read probabilities, check stop and reinit) every this many steps. Range
    /// 1..=10000; default 1.
    pub save_freq: usize,
    /// Re-initialise an image whose last this-many probed p(label) never rose
    /// (`num_mono_dec_saves`). Range 2..=1000; default 5 (the original's last commit used 3).
    pub reinit_window: usize,
    /// ...but only while its p(label) is below this cap. Range [0, 1]; default 0.99
    /// (hard-coded in the original).
    pub reinit_cap: f32,
    /// Pixel constraint; default `clip` (the original: `none`).
    pub pixels: PixelConstraint,
    /// fc distance mode; default `per-neuron` (the original).
    pub fc_distance: FcDistance,
    /// Seeds the initial noise and every re-initialisation.
    pub seed: u64,
    /// Stop after this many steps (none: run until the threshold).
    pub max_steps: Option<usize>,
    /// The stall rule; default off (the original has none).
    pub stall: StallMode,
    /// Probes without improvement that make an image stalled. Range 2..=100000; default 15.
    pub stall_window: usize,
    /// Smallest rise of the best p(label) that counts as improvement. Range [0, 1);
    /// default 1e-4.
    pub stall_tol: f32,
    /// Amplitude of the `perturb` noise. Range (0, 1]; default 0.2.
    pub stall_noise: f32,
    /// Under `perturb`: a stall that comes after this many perturbations in a row that did
    /// not raise the image's best p(label) by more than `stall_tol` starts it from fresh noise
    /// instead (its best is kept): the walk leaves a local maximum it cannot climb. 0: never.
    /// Range 0..=1000; default 0.
    pub stall_restart: usize,
    /// The softmax term's form; `margin` in the default preset, `prob` in the original.
    pub softmax_term: SoftmaxTerm,
    /// Where the images start; default noise.
    pub init: Init,
}

impl Default for Settings {
    fn default() -> Self {
        let mut s = Self {
            prev_coeff: 0.5,
            sim_coeff: 0.5,
            layer_weights: default_layer_weights(TAPS.len()),
            lr: 0.08,
            batch: 8,
            labels: (0..NUM_LABELS as u8).collect(),
            threshold: 0.999,
            save_freq: 1,
            reinit_window: 5,
            reinit_cap: 0.99,
            pixels: PixelConstraint::Clip,
            fc_distance: FcDistance::PerNeuron,
            seed: 0,
            max_steps: None,
            stall: StallMode::Off,
            stall_window: 15,
            stall_tol: 1e-4,
            stall_noise: 0.2,
            stall_restart: 0,
            softmax_term: SoftmaxTerm::Margin,
            init: Init::Noise,
        };
        Preset::Robust.apply(&mut s);
        s
    }
}

/// The largest step budget (a week of steps at the default figure's speed on this machine).
pub const MAX_STEPS: usize = 10_000_000;

/// A setting outside its range, named as its command-line flag.
#[derive(Debug, thiserror::Error, PartialEq)]
#[error("--{flag}: {reason}")]
pub struct SettingsError {
    pub flag: &'static str,
    pub reason: String,
}

/// Largest accepted coefficient or layer weight: beyond it f32 costs overflow.
pub const MAX_COEFF: f32 = 1e6;

/// The step budget of `backwork run` and of the app's "stop at" (the engine issue's 1,500);
/// the engine itself has none unless `max_steps` is set.
pub const DEFAULT_STEP_BUDGET: usize = 1500;

impl Settings {
    /// The original method's settings (ALGORITHM.md §3–§4, pixels clipped).
    pub fn original() -> Settings {
        Preset::Original.settings()
    }

    /// The number of taps the layer weights are for (all but the last, the softmax's).
    pub fn tap_count(&self) -> usize {
        self.layer_weights.len().saturating_sub(1)
    }

    /// The softmax term's layer weight (the last).
    pub fn softmax_weight(&self) -> f32 {
        self.layer_weights.last().copied().unwrap_or(0.0)
    }

    /// Sets the softmax term's layer weight.
    pub fn set_softmax_weight(&mut self, w: f32) {
        match self.layer_weights.last_mut() {
            Some(last) => *last = w,
            None => self.layer_weights.push(w),
        }
    }

    /// Gives a network of `taps` taps its default layer weights, unless the weights already
    /// have its count; says whether they changed.
    pub fn fit_taps(&mut self, taps: usize) -> bool {
        if self.tap_count() == taps && !self.layer_weights.is_empty() {
            return false;
        }
        self.layer_weights = default_layer_weights(taps);
        true
    }

    /// Checks that the layer weights are one per tap of a network with `names` taps plus the
    /// softmax's.
    pub fn validate_taps(&self, names: &[String]) -> Result<(), SettingsError> {
        if self.layer_weights.len() == names.len() + 1 {
            return Ok(());
        }
        Err(SettingsError {
            flag: "layer-weights",
            reason: format!(
                "the network has {} taps ({}) and the softmax: expected {} numbers, got {}",
                names.len(),
                names.join(", "),
                names.len() + 1,
                self.layer_weights.len()
            ),
        })
    }

    /// The preset whose governed fields these settings equal, if any.
    pub fn preset(&self) -> Option<Preset> {
        Preset::ALL.into_iter().find(|p| {
            let mut t = self.clone();
            p.apply(&mut t);
            t == *self
        })
    }

    /// The preset's name, or "custom" when the settings match none.
    pub fn preset_name(&self) -> &'static str {
        self.preset().map_or("custom", Preset::name)
    }

    /// The names of the fields (as in the serialised settings) whose values differ in `other`.
    pub fn changed_fields(&self, other: &Settings) -> Vec<String> {
        let (a, b) = (serde_json::to_value(self), serde_json::to_value(other));
        let (Ok(serde_json::Value::Object(a)), Ok(serde_json::Value::Object(b))) = (a, b) else {
            return Vec::new();
        };
        a.iter()
            .filter(|(k, v)| b.get(*k) != Some(*v))
            .map(|(k, _)| k.clone())
            .collect()
    }

    /// Checks every setting against its documented range.
    pub fn validate(&self) -> Result<(), SettingsError> {
        let err = |flag, reason: String| Err(SettingsError { flag, reason });
        let coeff_ok = |v: f32| v.is_finite() && (0.0..=MAX_COEFF).contains(&v);
        if !coeff_ok(self.prev_coeff) {
            return err(
                "prev-coeff",
                format!("must be in [0, 1e6], got {}", self.prev_coeff),
            );
        }
        if !coeff_ok(self.sim_coeff) {
            return err(
                "sim-coeff",
                format!("must be in [0, 1e6], got {}", self.sim_coeff),
            );
        }
        if self.layer_weights.len() < 2 {
            return err(
                "layer-weights",
                format!(
                    "expected one number per tap and the softmax's, got {}",
                    self.layer_weights.len()
                ),
            );
        }
        if let Some(w) = self.layer_weights.iter().find(|w| !coeff_ok(**w)) {
            return err(
                "layer-weights",
                format!("each must be in [0, 1e6], got {w}"),
            );
        }
        if !(self.lr.is_finite() && self.lr > 0.0 && self.lr <= 10.0) {
            return err("lr", format!("must be in (0, 10], got {}", self.lr));
        }
        if !(1..=256).contains(&self.batch) {
            return err("batch", format!("must be in 1..=256, got {}", self.batch));
        }
        if self.labels.is_empty() {
            return err("labels", "must name at least one label".into());
        }
        let mut seen = [false; 256];
        for &l in &self.labels {
            if std::mem::replace(&mut seen[l as usize], true) {
                return err("labels", format!("label {l} is named twice"));
            }
        }
        if !(self.threshold > 0.0 && self.threshold < 1.0) {
            return err(
                "threshold",
                format!("must be in (0, 1), got {}", self.threshold),
            );
        }
        if !(1..=10_000).contains(&self.save_freq) {
            return err(
                "save-freq",
                format!("must be in 1..=10000, got {}", self.save_freq),
            );
        }
        if !(2..=1000).contains(&self.reinit_window) {
            return err(
                "reinit-window",
                format!("must be in 2..=1000, got {}", self.reinit_window),
            );
        }
        if !(0.0..=1.0).contains(&self.reinit_cap) {
            return err(
                "reinit-cap",
                format!("must be in [0, 1], got {}", self.reinit_cap),
            );
        }
        if !(2..=100_000).contains(&self.stall_window) {
            return err(
                "stall-window",
                format!("must be in 2..=100000, got {}", self.stall_window),
            );
        }
        if !(self.stall_tol >= 0.0 && self.stall_tol < 1.0) {
            return err(
                "stall-tol",
                format!("must be in [0, 1), got {}", self.stall_tol),
            );
        }
        if !(self.stall_noise > 0.0 && self.stall_noise <= 1.0) {
            return err(
                "stall-noise",
                format!("must be in (0, 1], got {}", self.stall_noise),
            );
        }
        if self.stall_restart > 1000 {
            return err(
                "stall-restart",
                format!("must be in 0..=1000, got {}", self.stall_restart),
            );
        }
        if let Some(m) = self.max_steps
            && !(1..=MAX_STEPS).contains(&m)
        {
            return err("max-steps", format!("must be in 1..={MAX_STEPS}, got {m}"));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn original_preset_is_the_2016_method_and_valid() {
        let s = Settings::original();
        assert_eq!(s.softmax_term, SoftmaxTerm::Prob);
        assert_eq!(s.stall, StallMode::Off);
        assert_eq!(s.pixels, PixelConstraint::Clip);
        assert_eq!(s.preset(), Some(Preset::Original));
        assert_eq!(s.layer_weights, [1e-5, 1e-4, 1e-3, 1e-2, 10.0]);
        assert_eq!((s.prev_coeff, s.sim_coeff, s.lr), (0.5, 0.5, 0.01));
        assert_eq!((s.batch, s.labels.len(), s.reinit_window), (8, 10, 5));
        s.validate().unwrap();
    }

    #[test]
    fn presets_are_recognised_and_any_change_is_custom() {
        let d = Settings::default();
        assert_eq!(d.preset(), Some(Preset::Robust));
        // Labels, batch, seed, budget and init are not part of a preset.
        let mut s = Settings {
            labels: vec![3],
            batch: 2,
            seed: 7,
            max_steps: Some(9),
            threshold: 0.9999,
            init: Init::ClassMeans,
            ..Settings::original()
        };
        assert_eq!(s.preset_name(), "original");
        s.sim_coeff = 0.25;
        assert_eq!(s.preset_name(), "custom");
        Preset::Robust.apply(&mut s);
        assert_eq!(
            (s.preset_name(), s.labels.as_slice(), s.seed),
            ("robust", &[3u8][..], 7)
        );
        for p in Preset::ALL {
            assert_eq!(Preset::parse(p.name()), Some(p));
            p.settings().validate().unwrap();
        }
    }

    #[test]
    fn out_of_range_values_name_their_flag() {
        let bad = [
            (
                Settings {
                    labels: vec![3, 3],
                    ..Default::default()
                },
                "labels",
            ),
            (
                Settings {
                    batch: 0,
                    ..Default::default()
                },
                "batch",
            ),
            (
                Settings {
                    lr: -0.01,
                    ..Default::default()
                },
                "lr",
            ),
            (
                Settings {
                    threshold: 1.0,
                    ..Default::default()
                },
                "threshold",
            ),
            (
                Settings {
                    sim_coeff: f32::NAN,
                    ..Default::default()
                },
                "sim-coeff",
            ),
            (
                Settings {
                    layer_weights: vec![1.0, 1.0, 1.0, 1.0, f32::INFINITY],
                    ..Default::default()
                },
                "layer-weights",
            ),
        ];
        for (s, flag) in bad {
            assert_eq!(s.validate().unwrap_err().flag, flag);
        }
    }
}
