//! The Sweep view: one or two settings and their values, a grid of runs of the current model
//! on a background thread (the same runs as `backwork sweep`), and a heatmap of the share of
//! images fooled (or the median steps) filling in live. Clicking a cell loads its settings
//! into the run view.

use std::sync::Arc;

use egui::Color32;

use super::Wake;
use super::ceiling_ui::CeilingPanel;
use super::status::Status;
use crate::backwork::Settings;
use crate::backwork::cache::default_cache_dir;
use crate::backwork::measure::Outcome;
use crate::data::Dataset;
use crate::worker::job::{Job, JobEvent};
use crate::worker::models::ModelHandle;
use crate::worker::studies::{GridEvent, GridPoint, grid_job};

/// A setting a sweep can vary.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Param {
    SimCoeff,
    PrevCoeff,
    /// The layer weight of tap k.
    LayerWeight(usize),
    SoftmaxWeight,
    Lr,
    ReinitWindow,
    ReinitCap,
    Threshold,
    StallWindow,
    StallTol,
    StallNoise,
    StallRestart,
}

impl Param {
    /// Every setting a sweep can vary on a network of `taps` taps.
    pub fn all(taps: usize) -> Vec<Param> {
        let mut all = vec![Param::SimCoeff, Param::PrevCoeff];
        all.extend((0..taps).map(Param::LayerWeight));
        all.extend([
            Param::SoftmaxWeight,
            Param::Lr,
            Param::ReinitWindow,
            Param::ReinitCap,
            Param::Threshold,
            Param::StallWindow,
            Param::StallTol,
            Param::StallNoise,
            Param::StallRestart,
        ]);
        all
    }

    /// Its name, the taps named `taps`.
    pub fn name(self, taps: &[String]) -> String {
        match self {
            Param::SimCoeff => "sim_coeff".into(),
            Param::PrevCoeff => "prev_coeff".into(),
            Param::LayerWeight(k) => match taps.get(k) {
                Some(t) => format!("c {t}"),
                None => format!("c tap {k}"),
            },
            Param::SoftmaxWeight => "c softmax".into(),
            Param::Lr => "learning rate".into(),
            Param::ReinitWindow => "reinit window".into(),
            Param::ReinitCap => "reinit cap".into(),
            Param::Threshold => "threshold".into(),
            Param::StallWindow => "stall window".into(),
            Param::StallTol => "stall tolerance".into(),
            Param::StallNoise => "stall noise".into(),
            Param::StallRestart => "stall restart".into(),
        }
    }

    /// Whether it takes whole numbers only (the windows and the restart count).
    pub fn is_whole(self) -> bool {
        matches!(
            self,
            Param::ReinitWindow | Param::StallWindow | Param::StallRestart
        )
    }

    /// Values to start a sweep of it from, around its value in `base`: the windows and the
    /// restart count from the README's studies, the probabilities a decade of 1 − p apart,
    /// any other a tenth, once and ten times its value.
    pub fn suggested_values(self, base: &Settings) -> String {
        let current = match self {
            Param::SimCoeff => base.sim_coeff,
            Param::PrevCoeff => base.prev_coeff,
            Param::LayerWeight(k) => base.layer_weights.get(k).copied().unwrap_or(0.0),
            Param::SoftmaxWeight => base.softmax_weight(),
            Param::Lr => base.lr,
            Param::ReinitWindow => return "5, 20, 50".into(),
            Param::ReinitCap => return "0.9, 0.99, 0.999".into(),
            Param::Threshold => return "0.99, 0.999, 0.9999".into(),
            Param::StallWindow => return "8, 15, 30".into(),
            Param::StallTol => return "0.00001, 0.0001, 0.001".into(),
            Param::StallNoise => return "0.1, 0.2, 0.3".into(),
            Param::StallRestart => return "0, 4, 8".into(),
        };
        let v = f64::from(current);
        if v > 0.0 {
            [v / 10.0, v, v * 10.0].map(short_number).join(", ")
        } else {
            "0, 0.05, 0.5".into()
        }
    }

    /// Sets this setting to `v` (whole numbers for the windows, checked by [`SweepView::plan`]).
    pub fn apply(self, s: &mut Settings, v: f64) {
        match self {
            Param::SimCoeff => s.sim_coeff = v as f32,
            Param::PrevCoeff => s.prev_coeff = v as f32,
            Param::LayerWeight(k) => {
                if k < s.tap_count() {
                    s.layer_weights[k] = v as f32;
                }
            }
            Param::SoftmaxWeight => s.set_softmax_weight(v as f32),
            Param::Lr => s.lr = v as f32,
            Param::ReinitWindow => s.reinit_window = v.round().max(0.0) as usize,
            Param::ReinitCap => s.reinit_cap = v as f32,
            Param::Threshold => s.threshold = v as f32,
            Param::StallWindow => s.stall_window = v.round().max(0.0) as usize,
            Param::StallTol => s.stall_tol = v as f32,
            Param::StallNoise => s.stall_noise = v as f32,
            Param::StallRestart => s.stall_restart = v.round().max(0.0) as usize,
        }
    }
}

/// One axis of the grid: a setting and the text of its values.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct Axis {
    pub param: Param,
    pub values: String,
}

/// `v` with four significant digits, as short as it reads (1e-4 as "0.0001", not
/// "0.00009999999").
fn short_number(v: f64) -> String {
    let rounded = format!("{v:.3e}").parse::<f64>().unwrap_or(v);
    format!("{rounded}")
}

/// Parses "0.1, 0.5, 2" into numbers; a bad entry is named.
pub fn parse_values(name: &str, text: &str) -> Result<Vec<f64>, String> {
    let v: Vec<f64> = text
        .split(',')
        .filter(|t| !t.trim().is_empty())
        .map(|t| {
            t.trim()
                .parse::<f64>()
                .ok()
                .filter(|v| v.is_finite())
                .ok_or_else(|| format!("{name}: {:?} is not a number", t.trim()))
        })
        .collect::<Result<_, _>>()?;
    if v.is_empty() {
        return Err(format!("{name}: give at least one value"));
    }
    Ok(v)
}

/// A finished grid point.
#[derive(Clone, Debug)]
pub struct CellRun {
    pub i: usize,
    pub j: usize,
    pub seed: u64,
    pub outcome: Outcome,
}

/// The sweep's grid as it was started: the base settings, the axes' values, the seeds.
#[derive(Clone, Debug)]
pub struct Plan {
    pub base: Settings,
    pub axes: Vec<(Param, Vec<f64>)>,
    pub seeds: Vec<u64>,
}

impl Plan {
    /// The settings of cell (i, j) for `seed`.
    pub fn settings(&self, i: usize, j: usize, seed: u64) -> Settings {
        let mut s = self.base.clone();
        for (k, (p, values)) in self.axes.iter().enumerate() {
            let idx = if k == 0 { i } else { j };
            p.apply(&mut s, values[idx]);
        }
        s.seed = seed;
        s
    }

    fn dims(&self) -> (usize, usize) {
        (
            self.axes.first().map_or(1, |a| a.1.len()),
            self.axes.get(1).map_or(1, |a| a.1.len()),
        )
    }
}

/// What the heatmap shows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Metric {
    Fooled,
    MedianSteps,
}

/// Runtime state of the Sweep view.
pub struct SweepView {
    pub axes: [Axis; 2],
    pub has_second: bool,
    pub seeds: String,
    pub max_steps: usize,
    pub metric: Metric,
    pub plan: Option<Plan>,
    pub cells: Vec<CellRun>,
    pub status: Status,
    /// Where reference sets are cached (the default cache folder; None: memory only).
    pub cache_dir: Option<std::path::PathBuf>,
    progress: (usize, usize),
    train: Arc<Dataset>,
    job: Option<Job<GridEvent, ()>>,
    /// The names of the current network's taps (its layer-weight settings).
    pub taps: Vec<String>,
    /// How high p can go in the box, below the grid.
    pub ceiling: CeilingPanel,
}

impl SweepView {
    pub fn new(train: Arc<Dataset>) -> Self {
        Self {
            axes: [
                Axis {
                    param: Param::SimCoeff,
                    values: "0.05, 0.5, 5".into(),
                },
                Axis {
                    param: Param::PrevCoeff,
                    values: "0.05, 0.5, 5".into(),
                },
            ],
            has_second: false,
            seeds: "0".into(),
            max_steps: 300,
            metric: Metric::Fooled,
            plan: None,
            cells: Vec::new(),
            status: Status::default(),
            cache_dir: default_cache_dir(),
            progress: (0, 0),
            train,
            job: None,
            taps: crate::backwork::settings::original_tap_names(),
            ceiling: CeilingPanel::default(),
        }
    }

    /// Whether its grid or its ceiling measurement is running.
    pub fn is_running(&self) -> bool {
        self.job.is_some() || self.ceiling.is_running()
    }

    /// The plan the controls describe over `base` (labels, batch and every other setting
    /// from the run view).
    pub fn plan(&self, base: &Settings) -> Result<Plan, String> {
        let n = if self.has_second { 2 } else { 1 };
        let mut axes = Vec::new();
        for a in &self.axes[..n] {
            let name = a.param.name(&self.taps);
            let values = parse_values(&name, &a.values)?;
            if let Some(v) = values
                .iter()
                .find(|v| a.param.is_whole() && (v.fract() != 0.0 || **v < 0.0))
            {
                return Err(format!("{name}: {v} is not a whole number of 0 or more"));
            }
            for &v in &values {
                let mut s = base.clone();
                a.param.apply(&mut s, v);
                s.validate().map_err(|e| format!("{name}: {e}"))?;
            }
            axes.push((a.param, values));
        }
        if n == 2 && self.axes[0].param == self.axes[1].param {
            return Err("choose two different settings".into());
        }
        let seeds = self
            .seeds
            .split(',')
            .filter(|t| !t.trim().is_empty())
            .map(|t| {
                t.trim()
                    .parse::<u64>()
                    .map_err(|_| format!("seeds: {:?} is not a whole number", t.trim()))
            })
            .collect::<Result<Vec<_>, _>>()?;
        if seeds.is_empty() {
            return Err("seeds: give at least one".into());
        }
        let mut base = base.clone();
        base.max_steps = Some(self.max_steps.max(1));
        Ok(Plan { base, axes, seeds })
    }

    /// Starts the grid on a job, on `model`.
    pub fn start(&mut self, model: &ModelHandle, base: &Settings, wake: Wake) {
        let plan = match self.plan(base) {
            Ok(p) => p,
            Err(e) => {
                self.status = Status::error(format!("error: {e}"));
                return;
            }
        };
        self.stop();
        let (ni, nj) = plan.dims();
        let mut points = Vec::new();
        for i in 0..ni {
            for j in 0..nj {
                for &seed in &plan.seeds {
                    points.push(GridPoint {
                        i,
                        j,
                        seed,
                        settings: plan.settings(i, j, seed),
                    });
                }
            }
        }
        match grid_job(
            model,
            points,
            self.train.clone(),
            self.cache_dir.clone(),
            wake,
        ) {
            Ok(job) => {
                self.job = Some(job);
                self.plan = Some(plan);
                self.cells.clear();
                self.progress = (0, 0);
                self.status = Status::progress("sweeping…");
            }
            Err(e) => self.status = Status::error(format!("error: {e}")),
        }
    }

    /// Stops a running sweep and waits for its thread (the run in progress ends at its next
    /// step).
    pub fn stop(&mut self) {
        // Dropping the job cancels it and joins its thread.
        if self.job.take().is_some() {
            self.status = Status::info(format!("stopped after {} runs", self.cells.len()));
        }
    }

    /// Takes the threads' events.
    pub fn poll(&mut self) {
        self.ceiling.poll();
        let Some(job) = &mut self.job else { return };
        let mut ended = None;
        for m in job.poll() {
            match m {
                JobEvent::Progress(GridEvent::Started { done, total }) => {
                    self.progress = (done, total)
                }
                JobEvent::Progress(GridEvent::Ran(r)) => {
                    let (p, outcome) = *r;
                    self.cells.push(CellRun {
                        i: p.i,
                        j: p.j,
                        seed: p.seed,
                        outcome,
                    });
                }
                JobEvent::Done(r) => ended = Some(r),
            }
        }
        if let Some(r) = ended {
            self.job = None;
            let n = self.cells.len();
            self.status = Status::job_end(
                r,
                format!("done: {n} runs"),
                format!("stopped after {n} runs"),
            );
        }
    }

    /// The fooled share (0–1) and the median steps of cell (i, j), over its seeds so far.
    pub fn cell_value(&self, i: usize, j: usize) -> Option<(f64, Option<f64>, usize)> {
        let runs: Vec<&CellRun> = self.cells.iter().filter(|c| c.i == i && c.j == j).collect();
        if runs.is_empty() {
            return None;
        }
        let fooled: usize = runs.iter().map(|c| c.outcome.fooled).sum();
        let images: usize = runs.iter().map(|c| c.outcome.images).sum();
        let mut medians: Vec<f64> = runs.iter().filter_map(|c| c.outcome.median_steps).collect();
        medians.sort_by(f64::total_cmp);
        let median = (!medians.is_empty()).then(|| medians[medians.len() / 2]);
        Some((fooled as f64 / images.max(1) as f64, median, runs.len()))
    }

    /// Draws the view; returns the settings of a clicked cell.
    pub fn ui(
        &mut self,
        ui: &mut egui::Ui,
        model: &ModelHandle,
        base: &Settings,
        wake: &Wake,
    ) -> Option<Settings> {
        self.poll();
        self.taps = model.tap_names();
        ui.heading("Sweep");
        ui.label(format!(
            "Runs a grid of the current settings ({} labels × {} images, the current model) with one or two settings varied, as `backwork sweep` does headless.",
            base.labels.len(),
            base.batch
        ));
        let running = self.job.is_some();
        ui.add_enabled_ui(!running, |ui| {
            for k in 0..2 {
                if k == 1 {
                    ui.checkbox(&mut self.has_second, "second setting");
                    if !self.has_second {
                        break;
                    }
                }
                ui.horizontal(|ui| {
                    let axis = &mut self.axes[k];
                    let role = if k == 0 { "rows" } else { "columns" };
                    let before = axis.param;
                    egui::ComboBox::from_label(role)
                        .selected_text(axis.param.name(&self.taps))
                        .show_ui(ui, |ui| {
                            for p in Param::all(self.taps.len()) {
                                ui.selectable_value(&mut axis.param, p, p.name(&self.taps));
                            }
                        });
                    // Another setting's values rarely fit (a learning rate's are not a
                    // window's): start from ones around this setting's value.
                    if axis.param != before {
                        axis.values = axis.param.suggested_values(base);
                    }
                    let l = ui.label("values");
                    ui.add(
                        egui::TextEdit::singleline(&mut axis.values)
                            .desired_width(200.0)
                            .hint_text("0.1, 0.5, 2"),
                    )
                    .labelled_by(l.id);
                });
            }
            ui.horizontal(|ui| {
                let l = ui.label("seeds");
                ui.add(egui::TextEdit::singleline(&mut self.seeds).desired_width(80.0))
                    .labelled_by(l.id);
                let l = ui.label("step budget");
                ui.add(egui::DragValue::new(&mut self.max_steps).range(1..=100_000))
                    .labelled_by(l.id);
            });
        });
        ui.horizontal(|ui| {
            if !running && ui.button("Run sweep").clicked() {
                self.start(model, base, wake.clone());
            }
            if running && ui.button("Stop").clicked() {
                self.stop();
            }
            ui.separator();
            ui.selectable_value(&mut self.metric, Metric::Fooled, "fooled share");
            ui.selectable_value(&mut self.metric, Metric::MedianSteps, "median steps");
            if running {
                ui.label(format!(
                    "run {} of {}",
                    (self.progress.0 + 1).min(self.progress.1),
                    self.progress.1
                ));
            }
            self.status.ui(ui);
        });
        ui.separator();
        let clicked = self.heatmap_ui(ui);
        if self.plan.is_some() {
            ui.separator();
        }
        self.ceiling.ui(ui, model, base, wake, &self.train);
        clicked
    }

    fn heatmap_ui(&self, ui: &mut egui::Ui) -> Option<Settings> {
        let plan = self.plan.as_ref()?;
        let (ni, nj) = plan.dims();
        let mut clicked = None;
        let max_steps = plan.base.max_steps.unwrap_or(1).max(1) as f64;
        ui.label(match plan.axes.get(1) {
            Some((p, _)) => format!(
                "rows: {}; columns: {}",
                plan.axes[0].0.name(&self.taps),
                p.name(&self.taps)
            ),
            None => format!("rows: {}", plan.axes[0].0.name(&self.taps)),
        });
        egui::Grid::new("sweep-heatmap")
            .spacing([2.0, 2.0])
            .show(ui, |ui| {
                ui.label("");
                for j in 0..nj {
                    ui.label(
                        plan.axes
                            .get(1)
                            .map_or(String::new(), |a| format!("{}", a.1[j])),
                    );
                }
                ui.end_row();
                for i in 0..ni {
                    ui.label(format!("{}", plan.axes[0].1[i]));
                    for j in 0..nj {
                        let (text, fill) = match self.cell_value(i, j) {
                            None => ("…".to_string(), ui.visuals().faint_bg_color),
                            Some((share, median, runs)) => {
                                let (t, heat) = match self.metric {
                                    Metric::Fooled => {
                                        (format!("{:.0}%  ({runs})", share * 100.0), share)
                                    }
                                    Metric::MedianSteps => match median {
                                        Some(m) => (
                                            format!("{m:.0} steps  ({runs})"),
                                            1.0 - (m / max_steps).min(1.0),
                                        ),
                                        None => ("none passed".into(), 0.0),
                                    },
                                };
                                (t, heat_colour(heat))
                            }
                        };
                        let cell =
                            egui::Button::new(egui::RichText::new(text).color(Color32::BLACK))
                                .fill(fill)
                                .min_size(egui::vec2(110.0, 36.0));
                        if ui
                            .add(cell)
                            .on_hover_text(
                                "Click to load these settings into the Fooling images view",
                            )
                            .clicked()
                        {
                            clicked = Some(plan.settings(i, j, plan.seeds[0]));
                        }
                    }
                    ui.end_row();
                }
            });
        clicked
    }
}

/// Red (0) through yellow to green (1).
fn heat_colour(v: f64) -> Color32 {
    let v = v.clamp(0.0, 1.0);
    let (r, g) = if v < 0.5 {
        (230.0, 80.0 + 300.0 * v)
    } else {
        (230.0 - 300.0 * (v - 0.5), 230.0)
    };
    Color32::from_rgb(r as u8, g as u8, 90)
}

impl Drop for SweepView {
    fn drop(&mut self) {
        self.stop();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn view_with(param: Param, values: &str) -> SweepView {
        let mut v = SweepView::new(Arc::new(Dataset::mnist(crate::data::Split::Test).unwrap()));
        v.axes[0] = Axis {
            param,
            values: values.into(),
        };
        v
    }

    /// A whole-number setting takes whole values only: the sim_coeff values left in the box
    /// after choosing "stall restart" ran as 0, 1 and 5 under the labels 0.05, 0.5 and 5
    /// before this was checked.
    #[test]
    fn a_whole_number_setting_refuses_fractions_and_negatives() {
        let base = Settings::default();
        for bad in ["0.05, 0.5, 5", "4, -3"] {
            let e = view_with(Param::StallRestart, bad).plan(&base).unwrap_err();
            assert!(e.starts_with("stall restart: "), "{e}");
            assert!(e.contains("not a whole number"), "{e}");
        }
        let plan = view_with(Param::StallRestart, "0, 4, 8")
            .plan(&base)
            .unwrap();
        assert_eq!(plan.settings(1, 0, 0).stall_restart, 4);
        let e = view_with(Param::ReinitWindow, "2.5")
            .plan(&base)
            .unwrap_err();
        assert!(e.starts_with("reinit window: "), "{e}");
        // Fractions stay fine where the setting is a number.
        assert!(view_with(Param::Lr, "0.005, 0.02").plan(&base).is_ok());
    }

    /// The values offered for a setting are valid for it and centred on its current value.
    #[test]
    fn suggested_values_fit_their_setting() {
        let base = Settings::default();
        assert_eq!(Param::Lr.suggested_values(&base), "0.008, 0.08, 0.8");
        assert_eq!(
            Param::LayerWeight(0).suggested_values(&base),
            "0.000001, 0.00001, 0.0001"
        );
        let zero = Settings {
            sim_coeff: 0.0,
            ..Settings::default()
        };
        assert_eq!(Param::SimCoeff.suggested_values(&zero), "0, 0.05, 0.5");
        for p in Param::all(base.tap_count()) {
            let values = p.suggested_values(&base);
            let plan = view_with(p, &values).plan(&base);
            assert!(plan.is_ok(), "{}: {values}: {plan:?}", p.name(&[]));
        }
    }
}
