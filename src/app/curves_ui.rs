//! The curves of a run: every cost term (toggle each; linear or log scale), the minimum or
//! mean p(label) of each label, and the engine's steps/s, with reinitialisations and settings
//! changes marked. History is bounded: past `MAX_POINTS` every series is thinned to every
//! other point, so 100,000 steps cost what 4,096 points do, in memory and in drawing.

use egui_plot::{Legend, Line, MarkerShape, Plot, PlotPoints, Points, VLine};

use crate::backwork::engine::Reinit;
use crate::worker::CurvePoint;

/// Points kept per series before thinning (memory stays bounded over 100,000 steps).
const MAX_POINTS: usize = 4096;

/// Names of the term series, in the order of [`term_values`].
pub const TERM_NAMES: [&str; 10] = [
    "total",
    "softmax",
    "inputs.prev",
    "inputs.sim",
    "conv0.prev",
    "conv0.sim",
    "conv1.prev",
    "conv1.sim",
    "fc.prev",
    "fc.sim",
];

fn term_values(p: &CurvePoint) -> [f64; 10] {
    let t = &p.terms;
    [
        t.total,
        t.softmax,
        t.taps[0].prev,
        t.taps[0].sim,
        t.taps[1].prev,
        t.taps[1].sim,
        t.taps[2].prev,
        t.taps[2].sim,
        t.taps[3].prev,
        t.taps[3].sim,
    ]
}

/// The curve history of the current run.
pub struct Curves {
    terms: [Vec<[f64; 2]>; 10],
    min_p: Vec<Vec<[f64; 2]>>,
    mean_p: Vec<Vec<[f64; 2]>>,
    labels: Vec<u8>,
    reinits: Vec<[f64; 2]>,
    settings_marks: Vec<f64>,
    /// (step, steps/s) at each snapshot that brought a new rate.
    rate: Vec<[f64; 2]>,
    pub shown: [bool; 10],
    pub is_log: bool,
    /// Show the mean p(label) per label instead of the minimum.
    pub is_mean: bool,
}

impl Default for Curves {
    fn default() -> Self {
        Self {
            terms: Default::default(),
            min_p: Vec::new(),
            mean_p: Vec::new(),
            labels: Vec::new(),
            reinits: Vec::new(),
            settings_marks: Vec::new(),
            rate: Vec::new(),
            shown: [
                true, true, false, false, false, false, false, false, true, true,
            ],
            is_log: true,
            is_mean: false,
        }
    }
}

fn thin(v: &mut Vec<[f64; 2]>) {
    if v.len() > MAX_POINTS {
        let last = v[v.len() - 1];
        let mut i = 0;
        v.retain(|_| {
            i += 1;
            i % 2 == 1
        });
        v.push(last);
    }
}

impl Curves {
    /// Starts a new history for a run of `labels`.
    pub fn reset(&mut self, labels: &[u8]) {
        let (shown, is_log, is_mean) = (self.shown, self.is_log, self.is_mean);
        *self = Self {
            labels: labels.to_vec(),
            min_p: vec![Vec::new(); labels.len()],
            mean_p: vec![Vec::new(); labels.len()],
            shown,
            is_log,
            is_mean,
            ..Self::default()
        };
    }

    pub fn add(&mut self, points: &[CurvePoint], reinits: &[Reinit]) {
        for p in points {
            let x = p.step as f64;
            for (s, v) in self.terms.iter_mut().zip(term_values(p)) {
                s.push([x, v]);
            }
            for (s, m) in self.min_p.iter_mut().zip(&p.min_p) {
                s.push([x, *m as f64]);
            }
            for (s, m) in self.mean_p.iter_mut().zip(&p.mean_p) {
                s.push([x, *m as f64]);
            }
        }
        self.mean_p.iter_mut().for_each(thin);
        self.reinits
            .extend(reinits.iter().map(|r| [r.step as f64, r.p_label as f64]));
        self.terms.iter_mut().for_each(thin);
        self.min_p.iter_mut().for_each(thin);
        thin(&mut self.reinits);
    }

    /// Records the engine's rate at `step` (a new point only when it changed).
    pub fn add_rate(&mut self, step: usize, steps_per_s: f64) {
        if steps_per_s > 0.0 && self.rate.last().is_none_or(|l| l[1] != steps_per_s) {
            self.rate.push([step as f64, steps_per_s]);
            thin(&mut self.rate);
        }
    }

    /// Reinitialisation markers on the p(label) curves.
    pub fn reinit_markers(&self) -> usize {
        self.reinits.len()
    }

    /// Settings-change markers.
    pub fn settings_markers(&self) -> usize {
        self.settings_marks.len()
    }

    /// Marks a settings change at `step`.
    pub fn mark_settings(&mut self, step: usize) {
        self.settings_marks.push(step as f64);
    }

    pub fn ui(&mut self, ui: &mut egui::Ui) {
        ui.horizontal_wrapped(|ui| {
            for (name, on) in TERM_NAMES.iter().zip(self.shown.iter_mut()) {
                ui.checkbox(on, *name);
            }
            ui.separator();
            ui.checkbox(&mut self.is_log, "log scale");
            ui.separator();
            ui.selectable_value(&mut self.is_mean, false, "min p")
                .on_hover_text("Lowest p(label) of each label's images");
            ui.selectable_value(&mut self.is_mean, true, "mean p")
                .on_hover_text("Mean p(label) of each label's images");
        });
        let rate_h = 70.0;
        let h = ((ui.available_height() - rate_h) / 2.0 - 16.0).max(100.0);
        let is_log = self.is_log;
        let marks = &self.settings_marks;
        Plot::new("terms")
            .height(h)
            .legend(Legend::default())
            .x_axis_label("step")
            .y_axis_label(if is_log { "log10(term)" } else { "term" })
            .show(ui, |p| {
                for ((name, series), on) in TERM_NAMES.iter().zip(&self.terms).zip(self.shown) {
                    if !on {
                        continue;
                    }
                    let pts: Vec<[f64; 2]> = series
                        .iter()
                        .filter(|[_, y]| !is_log || *y > 0.0)
                        .map(|&[x, y]| [x, if is_log { y.log10() } else { y }])
                        .collect();
                    p.line(Line::new(*name, PlotPoints::from(pts)));
                }
                for &m in marks {
                    p.vline(VLine::new("settings changed", m));
                }
            });
        Plot::new("p_label")
            .height(h)
            .legend(Legend::default())
            .x_axis_label("step")
            .y_axis_label(if self.is_mean {
                "mean p(label)"
            } else {
                "min p(label)"
            })
            .show(ui, |p| {
                let per_label = if self.is_mean {
                    &self.mean_p
                } else {
                    &self.min_p
                };
                for (label, series) in self.labels.iter().zip(per_label) {
                    p.line(Line::new(
                        format!("{label}"),
                        PlotPoints::from(series.clone()),
                    ));
                }
                p.points(
                    Points::new("reinitialised", PlotPoints::from(self.reinits.clone()))
                        .shape(MarkerShape::Cross)
                        .radius(3.0),
                );
                for &m in marks {
                    p.vline(VLine::new("settings changed", m));
                }
            });
        Plot::new("rate")
            .height(rate_h)
            .x_axis_label("step")
            .y_axis_label("steps/s")
            .show(ui, |p| {
                p.line(Line::new("steps/s", PlotPoints::from(self.rate.clone())));
            });
    }
}
