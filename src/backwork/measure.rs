//! A run driven to its end and summed up in a few numbers: how many images passed the
//! threshold, how soon, how close the rest came, how far the images stayed from the training
//! data. What `backwork sweep` records per grid point.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};

use serde::{Deserialize, Serialize};

use super::cost::is_per_neuron;
use super::engine::{EndReason, Engine, EngineError, StepEvent};
use super::{PixelConstraint, Settings};

/// The numbers of one finished run.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Outcome {
    /// Images in the run (labels × images per label).
    pub images: usize,
    /// Images whose final p(label) is above the threshold.
    pub fooled: usize,
    /// Median, over the fooled images, of the first step of the run at which each passed the
    /// threshold (re-initialisations before it count in); none when no image passed.
    pub median_steps: Option<f64>,
    /// The lowest final p(label) of any image.
    pub min_p: f32,
    /// The lowest final p(label) of each label's images, in the run's label order.
    pub min_p_by_label: Vec<(u8, f32)>,
    /// Re-initialisations (and perturbations) over the run.
    pub reinits: usize,
    /// Steps the run took.
    pub steps: usize,
    /// Why it ended: "threshold", "max_steps", "cancelled".
    pub end_reason: String,
    /// Mean over images of the distance to the nearest training image at each tap (for `fc`
    /// per-neuron: the mean distance to each neuron's nearest training value).
    pub nearest_distance: BTreeMap<String, f64>,
    /// The lowest and highest pixel of the final images.
    pub pixel_range: [f32; 2],
}

/// One image a run left short of its threshold: its label, final p(label) and restarts.
#[derive(Clone, Copy, Debug)]
pub struct Short {
    pub label: u8,
    pub p: f32,
    pub reinits: usize,
}

/// Restarts after which an image still short of the bar but past the reinit cap is taken to
/// sit on the best local maxima its walk finds (README, "Where it stands": each perturbation
/// climbs back into the same basin).
pub const MANY_RESTARTS: usize = 10;

/// Why a run that ended at its step budget left images short near the bar, when it did: they
/// sit on local maxima of p inside the pixel box, which on some networks (label smoothing)
/// lie under the bar. `None` for a run without the box, or whose short images are below the
/// reinit cap or were restarted fewer than [`MANY_RESTARTS`] times.
pub fn box_hint(short: &[Short], settings: &Settings) -> Option<BoxHint> {
    if settings.pixels != PixelConstraint::Clip {
        return None;
    }
    let near: Vec<&Short> = short
        .iter()
        .filter(|i| i.p >= settings.reinit_cap)
        .collect();
    let most = near.iter().map(|i| i.reinits).max().unwrap_or(0);
    if most < MANY_RESTARTS {
        return None;
    }
    let mut labels: Vec<u8> = near.iter().map(|i| i.label).collect();
    labels.sort_unstable();
    labels.dedup();
    let names: Vec<String> = labels.iter().map(u8::to_string).collect();
    let (lo, hi) = near
        .iter()
        .fold((1.0f32, 0.0f32), |(lo, hi), i| (lo.min(i.p), hi.max(i.p)));
    let fewest = near.iter().map(|i| i.reinits).min().unwrap_or(0);
    let text = format!(
        "{} image(s) of label {} ended short at p {lo:.5}–{hi:.5} after {fewest}–{most} restarts each: they sit on local maxima of p with pixels in [0, 1], which on some networks (label smoothing, or one trained on normalised images and fed plain pixels: give its --input-mean/--input-std, in the window the Model view's mean and std) lie under the bar; `backwork ceiling --labels {}` (in the window: Sweep, \"How high can p go?\") measures how high p can go there; pixels \"none\" lifts the box, a larger step budget gives the walk more tries",
        near.len(),
        names.join(", "),
        names.join(","),
    );
    Some(BoxHint { labels, text })
}

/// What [`box_hint`] says, and the labels it is about (the window offers to measure their
/// ceiling).
#[derive(Clone, Debug, PartialEq)]
pub struct BoxHint {
    pub labels: Vec<u8>,
    pub text: String,
}

/// Steps `engine` until its run ends or `cancel` is set, calling `on_step` after each step.
/// A cancelled run returns its outcome so far with `end_reason` "cancelled".
pub fn run_to_end(
    engine: &mut Engine,
    cancel: &AtomicBool,
    on_step: &mut dyn FnMut(&StepEvent),
) -> Result<Outcome, EngineError> {
    let threshold = engine.settings().threshold;
    let rows = engine.states().len();
    let mut passed_at: Vec<Option<usize>> = vec![None; rows];
    let mut reinits = 0;
    let end = loop {
        if cancel.load(Ordering::Relaxed) {
            engine.cancel();
            break EndReason::Cancelled;
        }
        let ev = engine.step()?;
        reinits += ev.reinits.len();
        for (row, p) in ev.probs.iter().enumerate() {
            let label = engine.label_of(row) as usize;
            if passed_at[row].is_none() && p.get(label).is_some_and(|&p| p > threshold) {
                passed_at[row] = Some(ev.step);
            }
        }
        on_step(&ev);
        if let Some(end) = ev.end {
            break end;
        }
    };
    Ok(outcome(engine, &passed_at, reinits, &end))
}

fn outcome(
    engine: &Engine,
    passed_at: &[Option<usize>],
    reinits: usize,
    end: &EndReason,
) -> Outcome {
    let s = engine.settings();
    let mut steps = Vec::new();
    let mut min_p = f32::INFINITY;
    let mut fooled = 0;
    for r in engine.rows() {
        let p = r.p_label();
        min_p = min_p.min(p);
        if p > s.threshold {
            fooled += 1;
            steps.extend(passed_at[r.row]);
        }
    }
    steps.sort_unstable();
    let median_steps = match steps.len() {
        0 => None,
        k if k % 2 == 1 => Some(steps[k / 2] as f64),
        k => Some((steps[k / 2 - 1] + steps[k / 2]) as f64 / 2.0),
    };
    let rows = engine.states().len().max(1) as f64;
    let mut nearest_distance = BTreeMap::new();
    let names = engine.tap_names();
    for (k, name) in names.iter().enumerate() {
        let per_neuron = engine
            .groups()
            .first()
            .is_some_and(|g| is_per_neuron(&g.refs, k, s));
        let mean = if per_neuron {
            let groups = engine.groups().len().max(1) as f64;
            engine
                .groups()
                .iter()
                .map(|g| g.terms.taps.get(k).map_or(0.0, |t| t.ref_dist))
                .sum::<f64>()
                / groups
        } else {
            engine
                .states()
                .iter()
                .filter_map(|i| i.nearest.get(k).copied().flatten())
                .map(|d| d.dist as f64)
                .sum::<f64>()
                / rows
        };
        nearest_distance.insert(name.to_string(), mean);
    }
    let x = engine.images();
    let pixel_range = [
        x.iter().copied().fold(f32::INFINITY, f32::min),
        x.iter().copied().fold(f32::NEG_INFINITY, f32::max),
    ];
    Outcome {
        images: engine.states().len(),
        fooled,
        median_steps,
        min_p: if min_p.is_finite() { min_p } else { 0.0 },
        min_p_by_label: engine.min_p_by_label(),
        reinits,
        steps: engine.steps(),
        end_reason: match end {
            EndReason::Threshold => "threshold".into(),
            EndReason::MaxSteps => "max_steps".into(),
            EndReason::Cancelled => "cancelled".into(),
            EndReason::Error(e) => format!("error: {e}"),
        },
        nearest_distance,
        pixel_range,
    }
}
