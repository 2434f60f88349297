//! The sliders: every cost coefficient and loop setting, logarithmic where the range spans
//! decades (a coefficient's slider reaches 0 at its left end: the term switched off), each
//! with a tooltip saying what it does and its original default; above them the preset picker
//! (robust, original, or "custom" once a setting differs from both). Returns the intent (new
//! settings) instead of applying it.

use crate::backwork::settings::default_layer_weights;
use crate::backwork::{FcDistance, PixelConstraint, Preset, Settings, SoftmaxTerm, StallMode};

/// A logarithmic slider for a coefficient from 0 (the term switched off: the far left) to
/// `max`, `smallest` being the least positive value it shows.
fn coeff_slider(
    ui: &mut egui::Ui,
    v: &mut f32,
    smallest: f64,
    max: f32,
    name: &str,
    tip: &str,
) -> bool {
    ui.add(
        egui::Slider::new(v, 0.0..=max)
            .logarithmic(true)
            .smallest_positive(smallest)
            .text(name),
    )
    .on_hover_text(tip)
    .changed()
}

/// The stop threshold on a logarithmic scale of its distance to 1 (0.9, 0.99, 0.999, … are
/// evenly spaced), higher to the right; its value reads and types as the threshold.
fn threshold_slider(ui: &mut egui::Ui, threshold: &mut f32, tip: &str) -> bool {
    let mut miss = 1.0 - f64::from(*threshold);
    let changed = ui
        .add(
            egui::Slider::new(&mut miss, 0.5..=1e-6)
                .logarithmic(true)
                .custom_formatter(|m, _| {
                    format!("{:.6}", 1.0 - m).trim_end_matches('0').to_string()
                })
                .custom_parser(|t| t.trim().parse::<f64>().ok().map(|p| 1.0 - p))
                .text("threshold"),
        )
        .on_hover_text(tip)
        .changed();
    if changed {
        // Whole millionths: 1 − (1 − 0.999) must read back as 0.999.
        *threshold = ((1.0 - miss) * 1e6).round() as f32 / 1e6;
    }
    changed
}

/// A row of mutually exclusive choices, each with its tooltip; whether the value changed.
fn choice_row<T: PartialEq + Copy>(
    ui: &mut egui::Ui,
    label: &str,
    value: &mut T,
    choices: &[(T, &str, &str)],
) -> bool {
    ui.horizontal(|ui| {
        ui.label(label);
        let mut changed = false;
        for &(v, name, tip) in choices {
            changed |= ui
                .selectable_value(value, v, name)
                .on_hover_text(tip)
                .changed();
        }
        changed
    })
    .inner
}

/// Draws the settings of a run on a network whose taps are named `taps`; returns the edited
/// settings when the user changed one.
pub fn settings_ui(ui: &mut egui::Ui, s: &Settings, taps: &[String]) -> Option<Settings> {
    let mut e = s.clone();
    let mut changed = preset_ui(ui, s, &mut e);
    ui.separator();
    changed |= cost_ui(ui, &mut e, taps);
    ui.separator();
    changed |= optimiser_ui(ui, &mut e);
    ui.separator();
    changed |= restore_ui(ui, &mut e);
    (changed && e != *s).then_some(e)
}

/// The preset picker: robust, original, or "custom" once a setting differs from both.
fn preset_ui(ui: &mut egui::Ui, s: &Settings, e: &mut Settings) -> bool {
    let mut changed = false;
    ui.horizontal(|ui| {
        ui.label("preset");
        let current = s.preset();
        for p in Preset::ALL {
            let tip = match p {
                Preset::Robust => "backwork's default: the softmax term as log-odds, Adam at 0.08, a 20-probe reinit window, the hybrid stall rule (an image stuck for 15 probes starts afresh while its best is below the reinit cap, and is perturbed by ±0.2 past it), keeping the best image each reached. Converges on networks trained in any common way.",
                Preset::Original => "The 2016 method exactly (ALGORITHM.md): 1 − p softmax term, 5-probe reinit window, no stall rule; pixels clipped.",
            };
            if ui
                .selectable_label(current == Some(p), p.name())
                .on_hover_text(tip)
                .clicked()
                && current != Some(p)
            {
                p.apply(e);
                changed = true;
            }
        }
        if current.is_none() {
            ui.label(egui::RichText::new("custom").strong())
                .on_hover_text("Some setting differs from every preset; pick one to return to it.");
        }
    });
    changed
}

/// What the distance at a tap measures, from its name (ALGORITHM.md §3 for the §1 network's).
fn tap_description(name: &str) -> String {
    if name == "inputs" {
        "distance in pixel space".into()
    } else if let Some(i) = name.strip_prefix("conv") {
        format!("distance after convolution block {i}")
    } else {
        "distance at a fully connected layer, before its ReLU".into()
    }
}

/// The cost's coefficients (one layer weight per tap of the network, named `taps`, then the
/// softmax's) and the form of its softmax term.
fn cost_ui(ui: &mut egui::Ui, e: &mut Settings, taps: &[String]) -> bool {
    let mut changed = false;
    let d = Settings::original();
    ui.heading("Cost");
    changed |= coeff_slider(
        ui,
        &mut e.sim_coeff,
        1e-4,
        1e4,
        "sim_coeff",
        &format!(
            "Weight of the 'far from each other' terms (1/sim at every tap). Original default {}.",
            d.sim_coeff
        ),
    );
    changed |= coeff_slider(
        ui,
        &mut e.prev_coeff,
        1e-4,
        1e4,
        "prev_coeff",
        &format!(
            "Weight of the 'far from the training images' terms (1/ref at every tap). Original default {}.",
            d.prev_coeff
        ),
    );
    let defaults = default_layer_weights(taps.len());
    for (k, name) in taps.iter().enumerate() {
        let Some(w) = e.layer_weights.get_mut(k) else {
            break;
        };
        changed |= coeff_slider(
            ui,
            w,
            1e-8,
            1e3,
            &format!("c {name}"),
            &format!(
                "Layer weight of the {name} tap ({}). Default {:e}.",
                tap_description(name),
                defaults[k]
            ),
        );
    }
    let mut c_softmax = e.softmax_weight();
    if coeff_slider(
        ui,
        &mut c_softmax,
        1e-8,
        1e3,
        "c softmax",
        &format!(
            "Layer weight of the classification term (log-odds, −ln p or 1 − p of the label). Original default {:e}.",
            d.softmax_weight()
        ),
    ) {
        e.set_softmax_weight(c_softmax);
        changed = true;
    }
    changed |= choice_row(
        ui,
        "softmax term",
        &mut e.softmax_term,
        &[
            (
                SoftmaxTerm::Margin,
                "log-odds",
                "c softmax · mean(ln((1 − p)/p)) (robust preset): its pull on the logits keeps its size up to p = 1, so Adam's steps do not fade as p nears 1.",
            ),
            (
                SoftmaxTerm::Log,
                "−ln p",
                "c softmax · mean(−ln p(label)), the cross-entropy: no vanishing pull at p ≈ 0, but it fades like 1 − p near 1.",
            ),
            (
                SoftmaxTerm::Prob,
                "1 − p",
                "c softmax · mean(1 − p(label)), the original: its pull p(1 − p) vanishes while p(label) ≈ 0.",
            ),
        ],
    );
    changed
}

/// The optimiser and the loop: learning rate, threshold, reinit rule, pixels, stall rule.
fn optimiser_ui(ui: &mut egui::Ui, e: &mut Settings) -> bool {
    let mut changed = false;
    let d = Settings::original();
    ui.heading("Optimiser");
    changed |= ui
        .add(
            egui::Slider::new(&mut e.lr, 1e-4..=1.0)
                .logarithmic(true)
                .text("learning rate"),
        )
        .on_hover_text(format!(
            "Adam step size on the pixels. Original default {}.",
            d.lr
        ))
        .changed();
    changed |= threshold_slider(
        ui,
        &mut e.threshold,
        &format!(
            "A label stops when all its images pass this p(label) (prob_cap_min); 0.9999 is the paper's bar. Original default {}.",
            d.threshold
        ),
    );
    changed |= ui.add(egui::Slider::new(&mut e.reinit_window, 2..=100).text("reinit window"))
        .on_hover_text(format!("Probes of non-increasing p(label) that re-initialise an image (num_mono_dec_saves). Original default {}.", d.reinit_window))
        .changed();
    changed |= ui
        .add(egui::Slider::new(&mut e.reinit_cap, 0.0..=1.0).text("reinit cap"))
        .on_hover_text(format!(
            "Only images below this p(label) are re-initialised; under the hybrid stall rule, a stalled image whose best is below it starts afresh, one past it is perturbed. Original default {}.",
            d.reinit_cap
        ))
        .changed();
    changed |= choice_row(
        ui,
        "pixels",
        &mut e.pixels,
        &[
            (
                PixelConstraint::Clip,
                "clip",
                "Project pixels into [0, 1] after every step (default: the PNG is the image classified).",
            ),
            (
                PixelConstraint::None,
                "none",
                "No constraint, as the original's code: pixels leave [0, 1].",
            ),
        ],
    );
    changed |= choice_row(
        ui,
        "fc distance",
        &mut e.fc_distance,
        &[
            (
                FcDistance::PerNeuron,
                "per neuron",
                "Nearest training value of each fc neuron (the original, default).",
            ),
            (
                FcDistance::PerExample,
                "per example",
                "Nearest training image, as at the conv taps.",
            ),
        ],
    );
    changed |= choice_row(
        ui,
        "stall rule",
        &mut e.stall,
        &[
            (StallMode::Off, "off", "No stall rule (the original)."),
            (
                StallMode::Perturb,
                "perturb",
                "Add noise to an image whose best p(label) has not improved for the stall window, keep the best image it reached and end on it (robust preset).",
            ),
            (
                StallMode::Reinit,
                "reinit",
                "Replace such an image with fresh noise.",
            ),
            (
                StallMode::Hybrid,
                "hybrid",
                "Fresh noise for a stalled image whose best p(label) has not reached the reinit cap; once it has, perturb it as above, keep its best and end on it.",
            ),
        ],
    );
    if e.stall != StallMode::Off {
        changed |= stall_ui(ui, e);
    }
    changed
}

/// The stall rule's own settings, shown while it is on: its window and tolerance, and under
/// `perturb` and `hybrid` the noise and the fresh start after fruitless perturbations.
fn stall_ui(ui: &mut egui::Ui, e: &mut Settings) -> bool {
    let d = Settings::default();
    let mut changed = ui
        .add(
            egui::Slider::new(&mut e.stall_window, 2..=1000)
                .logarithmic(true)
                .text("stall window"),
        )
        .on_hover_text(format!(
            "Probes without a rise of the best p(label) by more than the stall tolerance that make an image stalled. Default {}.",
            d.stall_window
        ))
        .changed();
    changed |= coeff_slider(
        ui,
        &mut e.stall_tol,
        1e-6,
        0.1,
        "stall tolerance",
        &format!(
            "Smallest rise of the best p(label) that counts as improvement. Default {}.",
            d.stall_tol
        ),
    );
    if e.stall.perturbs() {
        changed |= ui
            .add(
                egui::Slider::new(&mut e.stall_noise, 0.01..=1.0)
                    .logarithmic(true)
                    .text("stall noise"),
            )
            .on_hover_text(format!(
                "Amplitude of the uniform noise added to a stalled image. Default {}.",
                d.stall_noise
            ))
            .changed();
        changed |= ui
            .add(
                egui::Slider::new(&mut e.stall_restart, 0..=1000)
                    .logarithmic(true)
                    .smallest_positive(1.0)
                    .text("stall restart"),
            )
            .on_hover_text(format!(
                "After this many perturbations in a row that did not raise an image's best, its next stall starts it from fresh noise (its best is kept); 0: never. Default {}.",
                d.stall_restart
            ))
            .changed();
    }
    changed
}

/// Every setting back to the default preset.
fn restore_ui(ui: &mut egui::Ui, e: &mut Settings) -> bool {
    let mut changed = false;
    if ui
        .button("Restore defaults")
        .on_hover_text("Every setting above back to the default preset (robust)")
        .clicked()
    {
        // What is not a cost or loop setting stays: the labels, the batch, the step budget,
        // the seed, the start images.
        Preset::Robust.apply(e);
        changed = true;
    }
    changed
}
