//! The sliders: every cost coefficient and loop setting, logarithmic where the range spans
//! decades, each with a tooltip saying what it does and its original default. Returns the
//! intent (new settings) instead of applying it.

use crate::backwork::{FcDistance, PixelConstraint, Settings, StallMode};

/// A logarithmic slider for a positive coefficient; 0 is reachable through its drag value.
fn log_slider(
    ui: &mut egui::Ui,
    v: &mut f32,
    range: std::ops::RangeInclusive<f32>,
    name: &str,
    tip: &str,
) -> bool {
    ui.add(egui::Slider::new(v, range).logarithmic(true).text(name))
        .on_hover_text(tip)
        .changed()
}

/// Draws the settings; returns the edited settings when the user changed one.
pub fn settings_ui(ui: &mut egui::Ui, s: &Settings) -> Option<Settings> {
    let mut e = s.clone();
    let mut changed = false;
    let d = Settings::default();
    ui.heading("Cost");
    changed |= log_slider(
        ui,
        &mut e.sim_coeff,
        1e-4..=1e4,
        "sim_coeff",
        &format!(
            "Weight of the 'far from each other' terms (1/sim at every tap). Original default {}.",
            d.sim_coeff
        ),
    );
    changed |= log_slider(
        ui,
        &mut e.prev_coeff,
        1e-4..=1e4,
        "prev_coeff",
        &format!(
            "Weight of the 'far from the training images' terms (1/ref at every tap). Original default {}.",
            d.prev_coeff
        ),
    );
    let names = ["inputs", "conv0", "conv1", "fc", "softmax"];
    let what = [
        "distance in pixel space",
        "distance after the first conv layer",
        "distance after the second conv layer",
        "distance at the fully connected layer",
        "the classification term, mean(1 − p(label))",
    ];
    for k in 0..5 {
        changed |= log_slider(
            ui,
            &mut e.layer_weights[k],
            1e-8..=1e3,
            &format!("c {}", names[k]),
            &format!(
                "Layer weight of the {} ({}). Original default {:e}.",
                names[k], what[k], d.layer_weights[k]
            ),
        );
    }
    ui.separator();
    ui.heading("Optimiser");
    changed |= log_slider(
        ui,
        &mut e.lr,
        1e-4..=1.0,
        "learning rate",
        &format!("Adam step size on the pixels. Original default {}.", d.lr),
    );
    changed |= ui.add(egui::Slider::new(&mut e.threshold, 0.5..=0.99999).text("threshold"))
        .on_hover_text(format!("A label stops when all its images pass this p(label) (prob_cap_min). Original default {}.", d.threshold))
        .changed();
    changed |= ui.add(egui::Slider::new(&mut e.reinit_window, 2..=50).text("reinit window"))
        .on_hover_text(format!("Probes of non-increasing p(label) that re-initialise an image (num_mono_dec_saves). Original default {}.", d.reinit_window))
        .changed();
    changed |= ui
        .add(egui::Slider::new(&mut e.reinit_cap, 0.0..=1.0).text("reinit cap"))
        .on_hover_text(format!(
            "Only images below this p(label) are re-initialised. Original default {}.",
            d.reinit_cap
        ))
        .changed();
    ui.horizontal(|ui| {
        ui.label("pixels");
        changed |= ui.selectable_value(&mut e.pixels, PixelConstraint::Clip, "clip")
            .on_hover_text("Project pixels into [0, 1] after every step (default: the PNG is the image classified).").changed();
        changed |= ui.selectable_value(&mut e.pixels, PixelConstraint::None, "none")
            .on_hover_text("No constraint, as the original: pixels leave [0, 1].").changed();
    });
    ui.horizontal(|ui| {
        ui.label("fc distance");
        changed |= ui
            .selectable_value(&mut e.fc_distance, FcDistance::PerNeuron, "per neuron")
            .on_hover_text("Nearest training value of each fc neuron (the original, default).")
            .changed();
        changed |= ui
            .selectable_value(&mut e.fc_distance, FcDistance::PerExample, "per example")
            .on_hover_text("Nearest training image, as at the conv taps.")
            .changed();
    });
    ui.horizontal(|ui| {
        ui.label("stall rule");
        for (m, name, tip) in [
            (
                StallMode::Off,
                "off",
                "No stall rule (the original, default).",
            ),
            (
                StallMode::Perturb,
                "perturb",
                "Add noise to an image whose best p(label) has not improved for the stall window.",
            ),
            (
                StallMode::Reinit,
                "reinit",
                "Replace such an image with fresh noise.",
            ),
        ] {
            changed |= ui
                .selectable_value(&mut e.stall, m, name)
                .on_hover_text(tip)
                .changed();
        }
    });
    ui.separator();
    if ui
        .button("Restore the original defaults")
        .on_hover_text("Every setting above back to ALGORITHM.md's defaults")
        .clicked()
    {
        e = Settings {
            labels: e.labels.clone(),
            batch: e.batch,
            ..Settings::default()
        };
        changed = true;
    }
    (changed && e != *s).then_some(e)
}
