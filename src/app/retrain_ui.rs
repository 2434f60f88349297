//! Retraining in the app: the fooling images of the current run (or of an exported folder)
//! are added to the training set, in uniform or extra-class mode, for one or more rounds, on
//! a background thread; each model is measured by the same backwork run, and the report
//! (test accuracy, share fooled, median steps per round) is shown as a table and curves and
//! can be saved as report.json and report.png.

use std::sync::Arc;

use egui_plot::{Legend, Line, Plot, PlotPoints, Points};

use super::Wake;
use super::dialog::{Dialog, NO_DIALOG};
use super::model_ui::UnsavedModel;
use super::status::Status;
use crate::data::Dataset;
use crate::export::run::RunFolder;
use crate::meta::ModelInfo;
use crate::meta::TrainEvent;
use crate::retrain::{Measurement, RetrainConfig, RetrainEvent, RetrainMode};
use crate::worker::files::{ReportRecord, Written, read_run_job, save_report_job};
use crate::worker::job::{Job, JobEvent};
use crate::worker::models::ModelHandle;
use crate::worker::studies::{Retrained, retrain_job};

/// A finished retraining: its model and what its report needs.
struct Finished {
    model: UnsavedModel,
    base: ModelInfo,
    config: RetrainConfig,
}

/// Runtime state of the retraining panel.
pub struct RetrainView {
    pub config: RetrainConfig,
    /// Where reference sets are cached (the default cache folder; None: memory only).
    pub cache_dir: Option<std::path::PathBuf>,
    train: Arc<Dataset>,
    test: Arc<Dataset>,
    /// Fooling images chosen from a folder (N×784 and labels), instead of the current run's.
    folder: Option<(std::path::PathBuf, Vec<f32>)>,
    job: Option<Job<RetrainEvent, Retrained>>,
    /// A folder of fooling images being read, and a report being written.
    reading: Option<Job<(), (std::path::PathBuf, RunFolder)>>,
    report: Option<Job<(), Written>>,
    progress: String,
    stage: String,
    pub measurements: Vec<Measurement>,
    finished: Option<Finished>,
    pub status: Status,
    /// A folder or file dialog, while open.
    dialog: Option<Dialog<RetrainDialog>>,
}

/// What the retraining panel's dialog is for.
enum RetrainDialog {
    /// An exported run's folder, as the fooling images.
    Images,
    SaveModel,
    SaveReport,
}

impl RetrainView {
    pub fn new(train: Arc<Dataset>, test: Arc<Dataset>) -> Self {
        Self {
            config: RetrainConfig::new(RetrainMode::Uniform),
            cache_dir: crate::backwork::cache::default_cache_dir(),
            train,
            test,
            folder: None,
            job: None,
            reading: None,
            report: None,
            progress: String::new(),
            stage: String::new(),
            measurements: Vec::new(),
            finished: None,
            status: Status::default(),
            dialog: None,
        }
    }

    pub fn is_running(&self) -> bool {
        self.job.is_some()
    }

    /// Starts retraining `base` with `fooling` (N×784) on a background thread.
    pub fn start(&mut self, base: &ModelHandle, fooling: Vec<f32>, wake: Wake) {
        if let Err(e) = self.config.validate() {
            self.status = Status::error(e.to_string());
            return;
        }
        if fooling.is_empty() {
            self.status = Status::error(
                "no fooling images: run backwork first, or choose an exported folder",
            );
            return;
        }
        self.job = None;
        let sets = (self.train.clone(), self.test.clone());
        match retrain_job(
            base,
            fooling,
            self.config.clone(),
            sets,
            self.cache_dir.clone(),
            wake,
        ) {
            Ok(job) => {
                self.job = Some(job);
                self.measurements.clear();
                self.finished = None;
                self.stage.clear();
                self.progress.clear();
                self.status = Status::progress("retraining…");
            }
            Err(e) => self.status = Status::error(format!("could not start: {e}")),
        }
    }

    /// Takes the thread's events; the base model is remembered for the report.
    pub fn poll(&mut self, base: &ModelInfo) {
        self.poll_files();
        if let Some(msg) = self.finished.as_mut().and_then(|f| f.model.poll()) {
            self.status = msg;
        }
        let Some(job) = &mut self.job else { return };
        let mut done = None;
        for m in job.poll() {
            match m {
                JobEvent::Progress(RetrainEvent::Stage { round, what }) => {
                    self.stage = format!("round {round}: {what}");
                    self.progress.clear();
                }
                JobEvent::Progress(RetrainEvent::Train(TrainEvent::Batch {
                    epoch,
                    batch,
                    batches,
                    loss,
                    images_per_s,
                    ..
                })) => {
                    self.progress = format!(
                        "epoch {epoch}, step {batch}/{batches}, loss {loss:.4}, {images_per_s:.0} images/s"
                    );
                }
                JobEvent::Progress(RetrainEvent::Train(TrainEvent::Epoch { .. })) => {}
                JobEvent::Progress(RetrainEvent::Measure { step, budget }) => {
                    self.progress = format!("backwork step {step} / {budget}");
                }
                JobEvent::Progress(RetrainEvent::Generate { found, wanted }) => {
                    self.progress = format!("next round's fooling images: {found} of {wanted}");
                }
                JobEvent::Progress(RetrainEvent::Measured(m)) => self.measurements.push(m),
                JobEvent::Done(r) => done = Some(r),
            }
        }
        match done {
            Some(Ok(out)) => {
                self.job = None;
                self.finished = Some(Finished {
                    model: UnsavedModel::new(out.model),
                    base: base.clone(),
                    config: self.config.clone(),
                });
                self.status =
                    Status::info("done: use the retrained model, save it, or save the report");
            }
            Some(Err(e)) => {
                self.job = None;
                self.status = Status::error(format!("retraining stopped: {e}"));
            }
            None => {}
        }
    }

    /// Acts on a dialog's answer once it has closed.
    fn poll_dialog(&mut self, wake: &Wake) {
        match Dialog::poll(&mut self.dialog) {
            Some((RetrainDialog::Images, Some(dir))) => {
                match read_run_job(dir, self.train.shape, wake.clone()) {
                    Ok(job) => self.reading = Some(job),
                    Err(e) => self.status = Status::error(e),
                }
            }
            Some((RetrainDialog::SaveModel, path)) => {
                if let Some(f) = &mut self.finished {
                    self.status = f.model.save_to(path, wake);
                }
            }
            Some((RetrainDialog::SaveReport, Some(dir))) => self.save_report(dir, wake),
            Some((_, None)) => self.status = Status::info(NO_DIALOG),
            None => {}
        }
    }

    /// Opens a dialog for `purpose` unless one is open already.
    fn open_dialog(&mut self, ctx: &egui::Context, purpose: RetrainDialog) {
        if self.dialog.is_some() {
            return;
        }
        self.dialog = Some(match purpose {
            RetrainDialog::SaveModel => UnsavedModel::save_dialog(
                purpose,
                ctx,
                "Save the retrained model",
                "retrained.safetensors",
            ),
            RetrainDialog::Images => Dialog::open(purpose, ctx, || {
                rfd::FileDialog::new()
                    .set_title("A folder written by backwork run or Export")
                    .pick_folder()
            }),
            RetrainDialog::SaveReport => Dialog::open(purpose, ctx, || {
                rfd::FileDialog::new()
                    .set_title("Write report.json and report.png into a folder")
                    .pick_folder()
            }),
        });
    }

    /// Starts writing the report into `dir` on a job.
    fn save_report(&mut self, dir: std::path::PathBuf, wake: &Wake) {
        let Some(f) = &self.finished else { return };
        let record = ReportRecord {
            config: f.config.clone(),
            base_model: f.base.model_ref(),
            model_file: f
                .model
                .saved_to
                .as_ref()
                .map_or(f.model.model.info().name.clone(), |p| {
                    p.display().to_string()
                }),
            rounds: self.measurements.clone(),
        };
        match save_report_job(dir, record, wake.clone()) {
            Ok(job) => self.report = Some(job),
            Err(e) => self.status = Status::error(format!("report not saved: {e}")),
        }
    }

    /// The ends of the file jobs: a folder of fooling images read, a report written.
    fn poll_files(&mut self) {
        if let Some(msg) = super::poll_written(&mut self.report) {
            self.status = msg;
        }
        let Some(job) = &mut self.reading else { return };
        for ev in job.poll() {
            if let JobEvent::Done(r) = ev {
                match r {
                    Ok((dir, RunFolder { images, .. })) => self.folder = Some((dir, images)),
                    Err(e) => self.status = Status::error(e),
                }
                self.reading = None;
                break;
            }
        }
    }

    /// Where the fooling images come from, and the retraining's recipe.
    fn config_ui(&mut self, ui: &mut egui::Ui, run_images: Option<&Vec<f32>>) {
        ui.horizontal(|ui| {
            ui.label("fooling images:");
            let px = self.train.image_len().max(1);
            let n_run = run_images.map_or(0, |v| v.len() / px);
            if ui
                .selectable_label(self.folder.is_none(), format!("the current run ({n_run})"))
                .on_hover_text("The images on the Fooling images view")
                .clicked()
            {
                self.folder = None;
            }
            let folder_label = match &self.folder {
                Some((p, x)) => format!("{} ({})", p.display(), x.len() / px),
                None => "an exported folder…".into(),
            };
            if ui
                .selectable_label(self.folder.is_some(), folder_label)
                .on_hover_text(
                    "A folder written by `backwork run` or Export (images.npy, results.json)",
                )
                .clicked()
            {
                self.open_dialog(ui.ctx(), RetrainDialog::Images);
            }
        });
        ui.horizontal(|ui| {
            ui.label("mode:");
            ui.selectable_value(&mut self.config.mode, RetrainMode::Uniform, "uniform")
                .on_hover_text("Each fooling image labelled 0.1 for every digit (the original)");
            ui.selectable_value(
                &mut self.config.mode,
                RetrainMode::ExtraClass,
                "extra class",
            )
            .on_hover_text("An 11th output, 'fooling' (Nguyen, Yosinski & Clune 2015)");
            ui.separator();
            ui.label("rounds");
            ui.add(egui::DragValue::new(&mut self.config.rounds).range(1..=20));
            ui.label("new images per round");
            ui.add(egui::DragValue::new(&mut self.config.images_per_round).range(0..=100_000))
                .on_hover_text(
                    "Fooling images found against each retrained model for the next round: 0 adds the measurement run's own images; Nguyen, Yosinski & Clune added about 6,000 a round",
                );
            if ui
                .button("paper's protocol")
                .on_hover_text("10 rounds of 6,000 new fooling images each (Nguyen, Yosinski & Clune 2015); hours on this machine")
                .clicked()
            {
                self.config.rounds = crate::retrain::PAPER_ROUNDS;
                self.config.images_per_round = crate::retrain::PAPER_IMAGES_PER_ROUND;
            }
            ui.label("epochs per round");
            ui.add(egui::DragValue::new(&mut self.config.train.epochs).range(1..=20));
            ui.label("repeat each image");
            ui.add(egui::DragValue::new(&mut self.config.repeat).range(1..=1000))
                .on_hover_text(
                    "Times each fooling image appears per epoch (1: once, the original)",
                );
            ui.label("budget");
            let mut budget = self.config.measure.max_steps.unwrap_or(300);
            if ui
                .add(
                    egui::DragValue::new(&mut budget)
                        .range(1..=100_000)
                        .suffix(" steps"),
                )
                .on_hover_text("Step budget of every measurement run")
                .changed()
            {
                self.config.measure.max_steps = Some(budget);
            }
        });
    }

    /// The measurements so far: a table and the curves.
    fn report_ui(&self, ui: &mut egui::Ui) {
        if !self.measurements.is_empty() {
            egui::Grid::new("retrain-report")
                .striped(true)
                .show(ui, |ui| {
                    for h in [
                        "round",
                        "test accuracy",
                        "fooled (past threshold)",
                        "median steps",
                        "fooling images trained on",
                    ] {
                        ui.strong(h);
                    }
                    ui.end_row();
                    for m in &self.measurements {
                        ui.label(m.round.to_string());
                        ui.label(format!("{:.2}%", m.test_accuracy * 100.0));
                        ui.label(format!("{} / {}", m.reached, m.images));
                        ui.label(m.median_steps.map_or("–".into(), |s| format!("{s:.0}")));
                        ui.label(m.fooling_images_trained_on.to_string());
                        ui.end_row();
                    }
                });
            let pts = |f: &dyn Fn(&Measurement) -> Option<f64>| -> Vec<[f64; 2]> {
                self.measurements
                    .iter()
                    .filter_map(|m| f(m).map(|v| [m.round as f64, v]))
                    .collect()
            };
            let share = pts(&|m| Some(m.share_reached * 100.0));
            let acc = pts(&|m| Some(m.test_accuracy * 100.0));
            Plot::new("retrain-plot")
                .height(200.0)
                .legend(Legend::default())
                .x_axis_label("round")
                .y_axis_label("%")
                .show(ui, |p| {
                    p.line(Line::new("fooled %", PlotPoints::from(share.clone())));
                    p.points(Points::new("fooled %", PlotPoints::from(share)).radius(4.0));
                    p.line(Line::new("test accuracy %", PlotPoints::from(acc.clone())));
                    p.points(Points::new("test accuracy %", PlotPoints::from(acc)).radius(4.0));
                });
        }
    }

    /// The panel; `run_images` are the current run's images (N×784), if any. Returns a
    /// model to use when the user asks for the retrained one.
    pub fn ui(
        &mut self,
        ui: &mut egui::Ui,
        base: &ModelHandle,
        run_images: Option<Vec<f32>>,
        wake: &Wake,
    ) -> Option<ModelHandle> {
        self.poll_dialog(wake);
        let mut use_model = None;
        let running = self.is_running();
        ui.heading("Retrain with the fooling images");
        ui.label("Add fooling images to the training set and train again; each model is then measured by the same backwork run (same seed and settings, a fixed step budget).");
        ui.add_enabled_ui(!running, |ui| self.config_ui(ui, run_images.as_ref()));
        ui.horizontal(|ui| {
            if !running {
                if ui.button("Retrain").clicked() {
                    let fooling = match &self.folder {
                        Some((_, x)) => x.clone(),
                        None => run_images.clone().unwrap_or_default(),
                    };
                    self.start(base, fooling, wake.clone());
                }
            } else if let Some(job) = &self.job
                && ui
                    .add_enabled(!job.is_cancelled(), egui::Button::new("Cancel"))
                    .clicked()
            {
                job.cancel();
            }
            if self.finished.is_some() {
                if ui.button("Use the retrained model").clicked()
                    && let Some(f) = &self.finished
                {
                    use_model = Some(f.model.model.clone());
                }
                if ui.button("Save model…").clicked() {
                    self.open_dialog(ui.ctx(), RetrainDialog::SaveModel);
                }
                if ui.button("Save report…").clicked() {
                    self.open_dialog(ui.ctx(), RetrainDialog::SaveReport);
                }
            }
        });
        if running {
            ui.horizontal(|ui| {
                ui.spinner();
                ui.label(format!("{} · {}", self.stage, self.progress));
            });
        }
        if !self.status.is_empty() {
            self.status.ui(ui);
        }
        self.report_ui(ui);
        use_model
    }
}
