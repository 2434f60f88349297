//! The worst training images (the post's second figure): for each label, the k training
//! images the model in use classifies worst, with p(correct) and the class it picks,
//! computed on a background thread; they can be exported as `backwork worst` writes them.

use std::sync::Arc;

use egui::{RichText, TextureHandle, TextureOptions, vec2};

use super::Wake;
use super::dialog::{Dialog, NO_DIALOG};
use super::status::Status;
use crate::data::Dataset;
use crate::meta::ModelInfo;
use crate::meta::WorstLabel;
use crate::worker::files::{Written, export_worst_job};
use crate::worker::job::{Job, JobEvent};
use crate::worker::models::{ModelHandle, worst_job};

/// Runtime state of the worst-images view.
pub struct WorstView {
    pub k: usize,
    train: Arc<Dataset>,
    job: Option<Job<(usize, usize), Vec<WorstLabel>>>,
    progress: (usize, usize),
    pub result: Option<Vec<WorstLabel>>,
    /// The model the result is for.
    model: Option<ModelInfo>,
    textures: std::collections::HashMap<usize, TextureHandle>,
    pub status: Status,
    /// The export folder dialog, while open.
    dialog: Option<Dialog<()>>,
    /// The export being written.
    export: Option<Job<(), Written>>,
}

impl WorstView {
    pub fn new(train: Arc<Dataset>) -> Self {
        Self {
            k: 8,
            train,
            job: None,
            progress: (0, 0),
            result: None,
            model: None,
            textures: Default::default(),
            status: Status::default(),
            dialog: None,
            export: None,
        }
    }

    /// Starts classifying the training set with `model` on a job (a previous one is
    /// cancelled).
    pub fn start(&mut self, model: &ModelHandle, wake: Wake) {
        self.job = None;
        match worst_job(model, self.train.clone(), self.k, wake) {
            Ok(job) => {
                self.job = Some(job);
                self.result = None;
                self.model = Some(model.info().clone());
                self.progress = (0, self.train.len());
                self.status.clear();
            }
            Err(e) => self.status = Status::error(e),
        }
    }

    pub fn poll(&mut self) {
        if let Some(msg) = super::poll_written(&mut self.export) {
            self.status = msg;
        }
        let Some(job) = &mut self.job else { return };
        let mut done = None;
        for ev in job.poll() {
            match ev {
                JobEvent::Progress(p) => self.progress = p,
                JobEvent::Done(r) => done = Some(r),
            }
        }
        match done {
            Some(Ok(r)) => {
                self.result = Some(r);
                self.job = None;
            }
            Some(Err(e)) => {
                self.status = Status::error(format!("failed: {e}"));
                self.job = None;
            }
            None => {}
        }
    }

    /// Starts writing the figure into `dir` (the export dialog's answer) on a job.
    fn export(&mut self, dir: Option<std::path::PathBuf>, wake: &Wake) {
        let (Some(r), Some(m)) = (&self.result, &self.model) else {
            return;
        };
        let Some(dir) = dir else {
            self.status = Status::error(format!("not exported: {NO_DIALOG}"));
            return;
        };
        let what = (self.k, m.model_ref());
        let shown = dir.display().to_string();
        match export_worst_job(dir, r.clone(), what, self.train.clone(), wake.clone()) {
            Ok(job) => {
                self.export = Some(job);
                self.status = Status::progress(format!("writing {shown}…"));
            }
            Err(e) => self.status = Status::error(e),
        }
    }

    pub fn ui(&mut self, ui: &mut egui::Ui, model: &ModelHandle, wake: &Wake) {
        let info = model.info();
        if let Some(((), dir)) = Dialog::poll(&mut self.dialog) {
            self.export(dir, wake);
        }
        let busy = self.job.is_some();
        ui.horizontal(|ui| {
            ui.label(format!("The {} training images of each label the model classifies worst, worst first, with p(correct) and the class it picks.", self.k));
        });
        ui.horizontal(|ui| {
            ui.label("per label");
            ui.add_enabled(!busy, egui::DragValue::new(&mut self.k).range(1..=64));
            let stale = self.model.as_ref().is_none_or(|m| m.sha256 != info.sha256);
            let label = if self.result.is_some() && !stale {
                "Recompute"
            } else {
                "Find them"
            };
            if ui
                .add_enabled(!busy, egui::Button::new(label))
                .on_hover_text("Classify all training images on a background thread")
                .clicked()
            {
                self.start(model, wake.clone());
            }
            if ui
                .add_enabled(self.result.is_some(), egui::Button::new("Export…"))
                .on_hover_text("sheet.png and worst.json, as `backwork worst` writes them")
                .clicked()
                && self.dialog.is_none()
            {
                self.dialog = Some(Dialog::open((), ui.ctx(), || {
                    rfd::FileDialog::new()
                        .set_title("Write sheet.png and worst.json into a new or empty folder")
                        .pick_folder()
                }));
            }
            if busy {
                ui.spinner();
                ui.label(format!(
                    "classifying {} / {}",
                    self.progress.0, self.progress.1
                ));
            }
            if let Some(m) = &self.model
                && m.sha256 != info.sha256
                && self.result.is_some()
            {
                ui.weak(format!("(for {}, not the model in use)", m.name));
            }
            self.status.ui(ui);
        });
        ui.separator();
        let Some(result) = self.result.clone() else {
            if !busy {
                ui.weak("Press Find them.");
            }
            return;
        };
        egui::ScrollArea::vertical()
            .auto_shrink([false, false])
            .show(ui, |ui| {
                for l in &result {
                    ui.horizontal(|ui| {
                        let name = self.train.class_name(l.label as usize);
                        if name.chars().count() <= 2 {
                            ui.label(RichText::new(name).heading());
                        } else {
                            ui.label(name);
                        }
                        for w in &l.images {
                            let tex = self.texture(ui.ctx(), w.index);
                            egui::Frame::group(ui.style())
                                .inner_margin(3.0)
                                .show(ui, |ui| {
                                    ui.vertical(|ui| {
                                        ui.add(
                                            egui::Image::from_texture(&tex)
                                                .fit_to_exact_size(vec2(56.0, 56.0))
                                                .alt_text(format!("training image {}", w.index)),
                                        )
                                        .on_hover_text(format!("training image #{}", w.index));
                                        ui.label(
                                            RichText::new(format!("{:.5}", w.p_correct))
                                                .monospace(),
                                        );
                                        ui.small(format!(
                                            "seen as {}",
                                            super::class_name(&self.train.classes, w.predicted)
                                        ));
                                    });
                                });
                        }
                    });
                }
            });
    }

    fn texture(&mut self, ctx: &egui::Context, i: usize) -> TextureHandle {
        let train = &self.train;
        self.textures
            .entry(i)
            .or_insert_with(|| {
                ctx.load_texture(
                    format!("worst-{i}"),
                    super::data_image(train, i),
                    TextureOptions::NEAREST,
                )
            })
            .clone()
    }
}
