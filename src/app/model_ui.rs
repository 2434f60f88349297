//! The model view: the loaded network, opening another weights file (dialog or drag and drop),
//! and training a new one on a background thread with live loss and accuracy curves,
//! images/s, ETA, cancel, use and save. A file that does not load is refused with its reason;
//! the model in use stays.
//!
//! Longer than 500 lines: the view's parts (model in use, disk cache, recipe, training
//! progress and curves) are each a short method of one state; they do not stand apart.

use std::sync::Arc;

use egui_plot::{Legend, Line, Plot, PlotPoints, Points};

use super::dialog::{Dialog, NO_DIALOG};
use super::status::Status;
use crate::backwork::cache::{
    CacheEntry, cache_cap, cache_cap_bytes, clear_cache, default_cache_dir, list_cache,
};
use crate::data::Dataset;
use crate::meta::ModelInfo;
use crate::meta::{TrainConfig, TrainEvent, WeightInit};
use crate::worker::job::{Job, JobEvent, Wake};
use crate::worker::models::{ModelHandle, save_job};
use crate::worker::trainer::{TRAINABLE, TrainedModel, train_job};

/// Loss points kept before thinning (bounded memory over long trainings).
const MAX_LOSS_POINTS: usize = 4096;

/// What the model view asks of the app.
pub enum ModelIntent {
    /// Use this network from now on.
    Use(ModelHandle),
    /// Open this weights file (on a job) and use it.
    Open(std::path::PathBuf),
    /// Open this dataset folder (on a job) and use it in every view.
    OpenData(std::path::PathBuf),
    /// Use the model in use with its inputs normalised so (`None`: as they are).
    Normalise(Option<crate::meta::InputNormSpec>),
}

/// A model made in the app (trained or retrained), and its saving.
pub(super) struct UnsavedModel {
    pub model: ModelHandle,
    pub saved_to: Option<std::path::PathBuf>,
    /// The save in progress (on a job: the file is 13 MB, written with fsync).
    saving: Option<(std::path::PathBuf, Job<(), ModelHandle>)>,
}

impl UnsavedModel {
    pub fn new(model: ModelHandle) -> Self {
        Self {
            model,
            saved_to: None,
            saving: None,
        }
    }

    /// A save dialog for this model (it runs beside the window; see [`Dialog`]).
    pub fn save_dialog<P>(
        purpose: P,
        ctx: &egui::Context,
        title: &'static str,
        file_name: &'static str,
    ) -> Dialog<P> {
        Dialog::open(purpose, ctx, move || {
            rfd::FileDialog::new()
                .set_title(title)
                .set_file_name(file_name)
                .add_filter("safetensors", &["safetensors"])
                .save_file()
        })
    }

    /// Starts writing the model to `path` (what the save dialog answered), never over an
    /// existing file; returns what to tell the user now ([`Self::poll`] tells the end).
    pub fn save_to(&mut self, path: Option<std::path::PathBuf>, wake: &Wake) -> Status {
        let Some(path) = path else {
            return Status::error(format!("not saved: {NO_DIALOG}"));
        };
        match save_job(self.model.clone(), path.clone(), wake.clone()) {
            Ok(job) => {
                let msg = Status::progress(format!("saving {}…", path.display()));
                self.saving = Some((path, job));
                msg
            }
            Err(e) => Status::error(format!("not saved: {e}")),
        }
    }

    /// The end of a save, once: what to tell the user.
    pub fn poll(&mut self) -> Option<Status> {
        let (path, job) = self.saving.as_mut()?;
        let mut out = None;
        for ev in job.poll() {
            if let JobEvent::Done(r) = ev {
                out = Some(match r {
                    Ok(m) => {
                        self.model = m;
                        self.saved_to = Some(path.clone());
                        Status::info(format!("saved {}", path.display()))
                    }
                    Err(e) => Status::error(e),
                });
            }
        }
        if out.is_some() {
            self.saving = None;
        }
        out
    }
}

/// Runtime state of the model view.
pub struct ModelView {
    pub config: TrainConfig,
    /// The built-in architecture to train ([`TRAINABLE`]).
    pub arch: &'static str,
    trainer: Option<Job<TrainEvent, TrainedModel>>,
    train_set: Arc<Dataset>,
    test_set: Arc<Dataset>,
    /// (epoch as a fraction, loss) per step, and the running accuracy.
    loss: Vec<[f64; 2]>,
    running_acc: Vec<[f64; 2]>,
    /// (epoch, test accuracy) per finished epoch.
    test_acc: Vec<[f64; 2]>,
    last: Option<TrainEvent>,
    trained: Option<UnsavedModel>,
    pub status: Status,
    /// The open or save dialog, while open.
    dialog: Option<Dialog<ModelDialog>>,
    /// The disk cache's models, and when the folder was last read (every few seconds).
    cache: Option<(std::time::Instant, Vec<CacheEntry>)>,
    /// The input normalisation being typed: mean and std, as `--input-mean`/`--input-std`.
    pub norm_text: [String; 2],
}

/// What the model view's file dialog is for.
enum ModelDialog {
    Open,
    OpenData,
    SaveTrained,
}

fn thin(v: &mut Vec<[f64; 2]>) {
    super::curves_ui::thin_to(v, MAX_LOSS_POINTS);
}

impl ModelView {
    /// The reference-set cache folder: its size, and a button that clears it.
    fn cache_ui(&mut self, ui: &mut egui::Ui) {
        let Some(dir) = default_cache_dir() else {
            return;
        };
        let is_stale = self
            .cache
            .as_ref()
            .is_none_or(|(at, _)| at.elapsed() > std::time::Duration::from_secs(5));
        if is_stale {
            self.cache = Some((
                std::time::Instant::now(),
                list_cache(&dir).unwrap_or_default(),
            ));
        }
        let Some((_, list)) = &self.cache else {
            return;
        };
        let bytes: u64 = list.iter().map(|e| e.bytes).sum();
        let models = list.len();
        ui.horizontal(|ui| {
            ui.label(format!(
                "reference-set cache: {:.2} GB for {} model(s) (cap {:.0} GB)",
                bytes as f64 / 1e9,
                models,
                cache_cap_bytes() as f64 / 1e9
            ))
            .on_hover_text(dir.display().to_string());
            if let Err(e) = cache_cap() {
                ui.colored_label(ui.visuals().warn_fg_color, "⚠")
                    .on_hover_text(format!("{e}; the cap stays at 10 GB"));
            }
            if ui
                .add_enabled(bytes > 0, egui::Button::new("Clear"))
                .on_hover_text("Remove every model's reference sets; a run builds its own again")
                .clicked()
            {
                self.status = match clear_cache(&dir) {
                    Ok((n, b)) => Status::info(format!(
                        "cleared the cache: {n} file(s), {:.2} GB",
                        b as f64 / 1e9
                    )),
                    Err(e) => Status::error(format!("error: cannot clear {}: {e}", dir.display())),
                };
                self.cache = None;
            }
        });
    }

    pub fn new(train_set: Arc<Dataset>, test_set: Arc<Dataset>) -> Self {
        Self {
            config: TrainConfig::default(),
            arch: "original",
            trainer: None,
            train_set,
            test_set,
            loss: Vec::new(),
            running_acc: Vec::new(),
            test_acc: Vec::new(),
            last: None,
            trained: None,
            status: Status::default(),
            dialog: None,
            cache: None,
            norm_text: [String::new(), String::new()],
        }
    }

    pub fn is_training(&self) -> bool {
        self.trainer.is_some()
    }

    /// Starts training with the current configuration.
    pub fn start_training(&mut self, wake: Wake) {
        if let Err(e) = self.config.validate() {
            self.status = Status::error(e.to_string());
            return;
        }
        match train_job(
            self.config.clone(),
            self.arch,
            self.train_set.clone(),
            self.test_set.clone(),
            wake,
        ) {
            Ok(t) => {
                self.trainer = Some(t);
                self.loss.clear();
                self.running_acc.clear();
                self.test_acc.clear();
                self.last = None;
                self.trained = None;
                self.status = Status::progress("training…");
            }
            Err(e) => self.status = Status::error(e),
        }
    }

    /// Takes the training thread's events.
    pub fn poll(&mut self) {
        if let Some(msg) = self.trained.as_mut().and_then(UnsavedModel::poll) {
            self.status = msg;
        }
        let Some(t) = &mut self.trainer else { return };
        let mut finished = None;
        for ev in t.poll() {
            match ev {
                JobEvent::Progress(p) => {
                    match &p {
                        TrainEvent::Batch {
                            epoch,
                            batch,
                            batches,
                            loss,
                            running_accuracy,
                            ..
                        } => {
                            let x = (*epoch - 1) as f64 + *batch as f64 / *batches as f64;
                            self.loss.push([x, *loss as f64]);
                            self.running_acc.push([x, *running_accuracy]);
                            thin(&mut self.loss);
                            thin(&mut self.running_acc);
                        }
                        TrainEvent::Epoch {
                            epoch,
                            test_accuracy,
                            ..
                        } => self.test_acc.push([*epoch as f64, *test_accuracy]),
                    }
                    self.last = Some(p);
                }
                JobEvent::Done(r) => finished = Some(r),
            }
        }
        match finished {
            Some(Ok(m)) => {
                self.trainer = None;
                let acc = m
                    .test_accuracy
                    .map_or("not measured (stopped)".into(), |a| {
                        format!("{:.2}%", a * 100.0)
                    });
                self.status = Status::info(format!(
                    "trained ({}): test accuracy {acc}. Use it, or save it.",
                    m.how()
                ));
                self.trained = Some(UnsavedModel::new(m.model));
            }
            Some(Err(e)) => {
                self.trainer = None;
                self.status = Status::error(format!("training failed: {e}"));
            }
            None => {}
        }
    }

    /// Progress line of the running training: epoch, step, loss, accuracy, images/s, ETA.
    fn progress_text(&self) -> Option<(f32, String)> {
        let Some(TrainEvent::Batch {
            epoch,
            batch,
            batches,
            loss,
            running_accuracy,
            images_per_s,
        }) = &self.last
        else {
            return None;
        };
        let epochs = self.config.epochs.max(1);
        let done = (epoch - 1) * batches + batch;
        let total = epochs * batches;
        let left_images = (total - done.min(total)) * self.config.batch_size;
        let eta = left_images as f64 / images_per_s.max(1e-9);
        Some((
            done as f32 / total as f32,
            format!(
                "epoch {epoch}/{epochs} · step {batch}/{batches} · loss {loss:.4} · accuracy {:.2}% · {images_per_s:.0} images/s · ETA {}",
                running_accuracy * 100.0,
                fmt_duration(eta)
            ),
        ))
    }

    /// The view; returns the intent to switch models, if the user asked for it.
    pub fn ui(
        &mut self,
        ui: &mut egui::Ui,
        current: &ModelInfo,
        wake: &Arc<dyn Fn() + Send + Sync>,
    ) -> Option<ModelIntent> {
        let mut intent = self.poll_dialog(wake);
        if let Some(i) = self.in_use_ui(ui, current) {
            intent = Some(i);
        }
        self.cache_ui(ui);
        ui.separator();
        self.train_config_ui(ui);
        if let Some(i) = self.train_buttons_ui(ui, wake) {
            intent = Some(i);
        }
        if let Some((frac, text)) = self.progress_text()
            && self.is_training()
        {
            ui.add(egui::ProgressBar::new(frac).show_percentage());
            ui.label(text);
        }
        if !self.status.is_empty() {
            self.status.ui(ui);
        }
        self.train_curves_ui(ui);
        intent
    }

    /// Acts on the open or save dialog's answer once it has closed.
    fn poll_dialog(&mut self, wake: &Wake) -> Option<ModelIntent> {
        let mut intent = None;
        match Dialog::poll(&mut self.dialog) {
            Some((ModelDialog::Open, Some(path))) => intent = Some(ModelIntent::Open(path)),
            Some((ModelDialog::Open, None)) => {
                self.status =
                    Status::info(format!("{NO_DIALOG}; or drop the file onto the window"));
            }
            Some((ModelDialog::OpenData, Some(dir))) => intent = Some(ModelIntent::OpenData(dir)),
            Some((ModelDialog::OpenData, None)) => {
                self.status =
                    Status::info(format!("{NO_DIALOG}; or start backwork with --data DIR"));
            }
            Some((ModelDialog::SaveTrained, path)) => {
                if let Some(t) = &mut self.trained {
                    self.status = t.save_to(path, wake);
                }
            }
            None => {}
        }
        intent
    }

    /// The model in use: name, hash, recorded accuracy, and opening another.
    fn in_use_ui(&mut self, ui: &mut egui::Ui, current: &ModelInfo) -> Option<ModelIntent> {
        ui.heading("Model in use");
        ui.label(format!("name: {}", current.name));
        ui.label(format!("sha256: {}", current.sha256));
        if !current.architecture.is_empty() {
            ui.label(format!("architecture: {}", current.architecture))
                .on_hover_text("Its input and layers (conv OUT/KERNEL, pool WINDOW, fc UNITS)");
        }
        if current.source() == Some("pytorch") {
            ui.label("file: a PyTorch state_dict (torch.save)");
        }
        if let Some(how) = current.read_by_shape() {
            ui.label(format!("weights read by shape: {how}")).on_hover_text(
                "Its tensors carry other names than ALGORITHM.md §1's; the eight shapes all differ, so each was matched by its shape",
            );
        }
        match current.test_accuracy() {
            Some(a) => ui.label(format!("test accuracy (recorded): {:.2}%", a * 100.0)),
            None => ui.weak("no test accuracy recorded in its file"),
        };
        let intent = self.input_norm_ui(ui, current);
        ui.horizontal(|ui| {
            if ui
                .button("Open a weights file…")
                .on_hover_text(
                    "A safetensors file (the shapes of ALGORITHM.md §1, or any network backwork trained: its architecture is in the file), a PyTorch state_dict of the §1 network (torch.save(model.state_dict(), PATH), any names), or an ONNX file from torch.onnx.export of a sequential CNN; you can also drop one onto the window",
                )
                .clicked()
                && self.dialog.is_none()
            {
                self.dialog = Some(Dialog::open(ModelDialog::Open, ui.ctx(), || {
                    rfd::FileDialog::new()
                        .set_title("Open a weights file")
                        .add_filter("networks", &["safetensors", "onnx", "pt", "pth"])
                        .pick_file()
                }));
            }
            ui.weak("or drop a .safetensors, .pt or .onnx file onto the window");
        });
        ui.add_space(8.0);
        ui.heading("Data");
        let (train, test) = (&self.train_set, &self.test_set);
        ui.label(format!(
            "{}: {} training and {} test images of {}",
            train.source,
            train.len(),
            test.len(),
            train.shape
        ));
        let mut names = train.classes.clone();
        if names.len() > 12 {
            let more = names.len() - 12;
            names.truncate(12);
            names.push(format!("… ({more} more)"));
        }
        ui.label(format!(
            "{} classes: {}",
            train.num_classes(),
            names.join(", ")
        ));
        ui.horizontal(|ui| {
            if ui
                .button("Open a dataset folder…")
                .on_hover_text(
                    "A folder of IDX files (train-images-idx3-ubyte[.gz], …, optional classes.txt) or an image folder (train/<class>/*.png and test/<class>/*.png, grey or RGB); the model in use must take its images",
                )
                .clicked()
                && self.dialog.is_none()
            {
                self.dialog = Some(Dialog::open(ModelDialog::OpenData, ui.ctx(), || {
                    rfd::FileDialog::new()
                        .set_title("Open a dataset folder")
                        .pick_folder()
                }));
            }
            ui.weak("every view switches to it; a running run ends");
        });
        intent
    }

    /// The normalisation the network's inputs go through, and setting it: what a network
    /// trained on normalised images (torchvision's Normalize) needs to compute what it
    /// computed in training.
    fn input_norm_ui(&mut self, ui: &mut egui::Ui, current: &ModelInfo) -> Option<ModelIntent> {
        let mut intent = None;
        let norm = current.input_norm().ok().flatten();
        ui.horizontal_wrapped(|ui| {
            match &norm {
                Some(n) => ui.label(format!("inputs: normalised, {}", n.summary())),
                None => ui.label("inputs: as they are (pixels in [0, 1])"),
            };
            let hint = "The normalisation the network was trained with, as torchvision's Normalize(mean, std): one value, or one per channel, comma-separated; most MNIST code uses mean 0.1307, std 0.3081 (the same as --input-mean/--input-std)";
            let [mean, std] = &mut self.norm_text;
            ui.label("mean");
            ui.add(egui::TextEdit::singleline(mean).desired_width(90.0).hint_text("0.1307"))
                .on_hover_text(hint);
            ui.label("std");
            ui.add(egui::TextEdit::singleline(std).desired_width(90.0).hint_text("0.3081"))
                .on_hover_text(hint);
            if ui.button("Normalise inputs").on_hover_text(hint).clicked() {
                match crate::meta::InputNormSpec::parse(mean, std) {
                    Ok(spec) => intent = Some(ModelIntent::Normalise(Some(spec))),
                    Err(e) => self.status = Status::error(format!("inputs: {e}")),
                }
            }
            if norm.is_some()
                && ui
                    .button("As they are")
                    .on_hover_text("The network takes the pixels without normalisation")
                    .clicked()
            {
                intent = Some(ModelIntent::Normalise(None));
            }
        });
        intent
    }

    /// The training recipe (disabled while training).
    fn train_config_ui(&mut self, ui: &mut egui::Ui) {
        let training = self.is_training();
        ui.heading("Train a new model");
        ui.add_enabled_ui(!training, |ui| {
            egui::Grid::new("train-config").show(ui, |ui| {
                ui.label("architecture");
                ui.horizontal(|ui| {
                    for (name, what) in TRAINABLE {
                        ui.radio_value(&mut self.arch, name, name)
                            .on_hover_text(what);
                    }
                });
                ui.end_row();
                ui.label("epochs");
                ui.add(egui::DragValue::new(&mut self.config.epochs).range(1..=100));
                ui.end_row();
                ui.label("batch size");
                ui.add(egui::DragValue::new(&mut self.config.batch_size).range(1..=1024));
                ui.end_row();
                ui.label("learning rate");
                ui.add(
                    egui::Slider::new(&mut self.config.lr, 1e-5..=1e-1)
                        .logarithmic(true)
                        .text("Adam"),
                );
                ui.end_row();
                ui.label("decay per epoch");
                ui.add(egui::Slider::new(&mut self.config.lr_decay, 0.05..=1.0).text("×"));
                ui.end_row();
                ui.label("seed");
                ui.add(egui::DragValue::new(&mut self.config.seed));
                ui.end_row();
                ui.label("initial weights");
                ui.horizontal(|ui| {
                    ui.radio_value(&mut self.config.init, WeightInit::Original, "original")
                        .on_hover_text(
                            "The TensorFlow tutorial's: truncated normal, std 0.1, biases 0.1, \
                             as the original. With the default cost, its networks' fooling \
                             images converge in a few hundred steps (README).",
                        );
                    ui.radio_value(&mut self.config.init, WeightInit::Uniform, "uniform")
                        .on_hover_text(
                            "PyTorch's default, ±1/√fan_in. With the default cost, some \
                             digits of such networks thrash: re-initialised again and again \
                             (README).",
                        );
                });
                ui.end_row();
                ui.label("training images");
                let mut limited = self.config.limit.is_some();
                ui.horizontal(|ui| {
                    if ui
                        .checkbox(&mut limited, "only the first")
                        .on_hover_text("Train on fewer images, for a quick try")
                        .changed()
                    {
                        self.config.limit = limited.then_some(6000);
                    }
                    if let Some(l) = &mut self.config.limit {
                        ui.add(egui::DragValue::new(l).range(1..=self.train_set.len()));
                    } else {
                        ui.label(format!("all {}", self.train_set.len()));
                    }
                });
                ui.end_row();
            });
        });
    }

    /// Train / Cancel, and for a trained model Use and Save.
    fn train_buttons_ui(&mut self, ui: &mut egui::Ui, wake: &Wake) -> Option<ModelIntent> {
        let training = self.is_training();
        let mut intent = None;
        let mut save = false;
        ui.horizontal(|ui| {
            if !training {
                if ui
                    .button("Train")
                    .on_hover_text("Train on a background thread; the model in use stays until you choose this one")
                    .clicked()
                {
                    self.start_training(wake.clone());
                }
            } else if let Some(t) = &self.trainer {
                let label = if t.is_cancelled() {
                    "Stopping…"
                } else {
                    "Cancel"
                };
                if ui
                    .add_enabled(!t.is_cancelled(), egui::Button::new(label))
                    .on_hover_text("Stop after the current step; the model so far can still be used or saved")
                    .clicked()
                {
                    t.cancel();
                }
            }
            if let Some(t) = &self.trained {
                if ui
                    .button("Use this model")
                    .on_hover_text("Run backwork against the model just trained")
                    .clicked()
                {
                    intent = Some(ModelIntent::Use(t.model.clone()));
                }
                if ui
                    .button("Save…")
                    .on_hover_text("Write it as a safetensors file (never over an existing file)")
                    .clicked()
                {
                    save = true;
                }
                if let Some(p) = &t.saved_to {
                    ui.weak(format!("saved to {}", p.display()));
                }
            }
        });
        if save && self.trained.is_some() && self.dialog.is_none() {
            self.dialog = Some(UnsavedModel::save_dialog(
                ModelDialog::SaveTrained,
                ui.ctx(),
                "Save the trained model",
                "mnist-cnn.safetensors",
            ));
        }
        intent
    }

    /// Loss and accuracy of the training so far.
    fn train_curves_ui(&mut self, ui: &mut egui::Ui) {
        if !self.loss.is_empty() {
            let h = (ui.available_height() - 20.0).max(160.0) / 2.0;
            Plot::new("train-loss")
                .height(h)
                .legend(Legend::default())
                .x_axis_label("epoch")
                .y_axis_label("loss")
                .show(ui, |p| {
                    p.line(Line::new("loss", PlotPoints::from(self.loss.clone())));
                });
            Plot::new("train-acc")
                .height(h)
                .legend(Legend::default())
                .x_axis_label("epoch")
                .y_axis_label("accuracy")
                .show(ui, |p| {
                    p.line(Line::new(
                        "running training accuracy",
                        PlotPoints::from(self.running_acc.clone()),
                    ));
                    p.points(
                        Points::new("test accuracy", PlotPoints::from(self.test_acc.clone()))
                            .radius(4.0),
                    );
                });
        }
    }
}

/// "1 h 02 min", "3 min 05 s", "12 s".
pub fn fmt_duration(secs: f64) -> String {
    let s = secs.max(0.0).round() as u64;
    if s >= 3600 {
        format!("{} h {:02} min", s / 3600, (s % 3600) / 60)
    } else if s >= 60 {
        format!("{} min {:02} s", s / 60, s % 60)
    } else {
        format!("{s} s")
    }
}
