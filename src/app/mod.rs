//! The egui window: the model in use (opened, dropped or trained in the app), the backwork
//! view (live run, sliders, curves, export) and the test images with the network's
//! predictions. The engine, the trainer and the classifier each run on their own thread.
//!
//! Longer than 500 lines: the window's frame (header, tabs, panels, the status line) and the
//! app state's model switching; the views themselves are in their own files.

mod captions;
mod ceiling_ui;
mod curves_ui;
mod dialog;
mod frame_stats;
mod gallery_ui;
mod model_ui;
mod retrain_ui;
mod run;
mod settings_ui;
pub mod status;
mod sweep_ui;
mod worst_ui;

use std::sync::Arc;

use anyhow::{Context, Result};

use crate::cli::AppArgs;
use crate::data::{Dataset, Split};
use crate::meta::ModelInfo;
use crate::worker::job::{Job, JobEvent};
use crate::worker::models::{ModelHandle, PredictionChunk, classify_job, load_job};

pub use curves_ui::Curves;
pub use frame_stats::FrameStats;
pub use gallery_ui::Gallery;
pub use model_ui::{ModelIntent, ModelView};
pub use retrain_ui::RetrainView;
pub use run::RunView;
pub use settings_ui::settings_ui;
pub use sweep_ui::SweepView;
pub use worst_ui::WorstView;

use crate::backwork::Settings;
use crate::backwork::cache::default_cache_dir;
use crate::worker::{Worker, WorkerSpec};
use status::Status;

/// Storage key of the persisted engine settings. Version 2 since the default preset changed
/// (issue 11): settings saved under the old defaults would otherwise come back as a mix of
/// the two presets.
const SETTINGS_KEY: &str = "backwork-settings-2";

/// Which view fills the window.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Tab {
    Backwork,
    TestSet,
    Worst,
    Model,
    Sweep,
}

/// Image `i` of `data` as a texture image: grey or RGB, at its own size.
pub(crate) fn data_image(data: &Dataset, i: usize) -> egui::ColorImage {
    let (w, h) = (data.shape.w, data.shape.h);
    if data.shape.c == 3 {
        egui::ColorImage::from_rgb([w, h], data.image(i))
    } else {
        egui::ColorImage::from_gray([w, h], data.image(i))
    }
}

/// Opens the window and blocks until it is closed.
pub fn run(args: &AppArgs) -> Result<()> {
    // The compute pool (the engine's parallel groups, gemm, candle) runs below the window's
    // priority, so frames keep coming on a machine with few cores.
    let _ = rayon::ThreadPoolBuilder::new()
        .thread_name(|i| format!("backwork-compute-{i}"))
        .start_handler(|_| crate::util::lower_thread_priority(crate::worker::ENGINE_NICE))
        .build_global();
    let norm = crate::cli::input_norm(args)?;
    let model = ModelHandle::load_or_shipped(args.model.as_deref(), norm.as_ref())
        .map_err(anyhow::Error::msg)?;
    let test = Arc::new(Dataset::load(args.data.as_deref(), Split::Test)?);
    let train = Arc::new(Dataset::load(args.data.as_deref(), Split::Train)?);
    train.check_test_split(&test)?;
    model.fits(&train).map_err(anyhow::Error::msg)?;
    let (autostart, frame_stats) = (args.autostart, args.frame_stats.clone());
    let options = eframe::NativeOptions {
        viewport: egui::ViewportBuilder::default()
            .with_title("backwork")
            .with_inner_size([1280.0, 860.0])
            .with_min_inner_size([640.0, 420.0])
            .with_drag_and_drop(true),
        // glow renders correctly on Mesa llvmpipe and keeps the build lean (../shared/STACK.md).
        renderer: eframe::Renderer::Glow,
        // Dithering costs every pixel of every frame a noise function in software rendering
        // (about 3 ms a frame under Xvfb), for flat colours that do not band.
        dithering: false,
        ..Default::default()
    };
    eframe::run_native(
        "backwork",
        options,
        Box::new(move |cc| {
            let ctx = cc.egui_ctx.clone();
            let wake: Wake = Arc::new(move || ctx.request_repaint_after(EVENT_FRAME_INTERVAL));
            let spec =
                WorkerSpec::for_model(&model, train.clone(), default_cache_dir(), wake.clone());
            let worker = Worker::spawn(spec.clone())?;
            let mut app = BackworkApp::new(&cc.egui_ctx, model, test, train, worker);
            if let Some(v) = &mut app.run_view {
                v.spec = Some(spec);
                // Settings persist between launches; a stored value that no longer validates
                // (an older version's, or edited by hand) falls back to the defaults.
                if let Some(saved) = cc
                    .storage
                    .and_then(|st| eframe::get_value::<crate::backwork::Settings>(st, SETTINGS_KEY))
                    .filter(|s| s.validate().is_ok() && s.tap_count() == v.tap_names.len())
                {
                    v.settings = saved;
                    v.fit_labels();
                    // "The current images" are those of this session's run: a new launch has
                    // none, so it starts from noise again.
                    if v.settings.init == crate::backwork::Init::Current {
                        v.settings.init = crate::backwork::Init::Noise;
                    }
                }
                if autostart {
                    v.command(crate::worker::Command::Start(v.settings.clone()));
                }
            }
            app.frame_stats = frame_stats.map(FrameStats::new);
            Ok(Box::new(app))
        }),
    )
    .map_err(|e| anyhow::anyhow!("{e}"))
    .context("cannot open the window")
}

/// The window's look: no animations, widgets with square corners. Software rendering (Mesa
/// llvmpipe) pays per triangle, and a rounded, anti-aliased widget costs several times the
/// triangles of a square one: square corners cut the settings panel's triangles from about
/// 5,300 to 1,100 and the toolbar's from 2,900 to 900 (the whole window's budget is held by
/// `the_window_mid_run_stays_within_its_triangle_budget` in tests/app.rs).
pub fn apply_style(ctx: &egui::Context) {
    ctx.all_styles_mut(|st| {
        // No animations: each would draw frames of its own (a scroll bar fading in draws a
        // dozen), and every frame costs the whole window in software rendering.
        st.animation_time = 0.0;
        let w = &mut st.visuals.widgets;
        for v in [
            &mut w.noninteractive,
            &mut w.inactive,
            &mut w.hovered,
            &mut w.active,
            &mut w.open,
        ] {
            v.corner_radius = egui::CornerRadius::ZERO;
        }
    });
}

/// How class `k` of a network is called: the data's name for it (`classes`), "fooling" for
/// the class past the data's (a model retrained in extra-class mode), else its number.
pub fn class_name(classes: &[String], k: usize) -> String {
    match classes.get(k) {
        Some(name) => name.clone(),
        None if k == classes.len() => "fooling".into(),
        None => k.to_string(),
    }
}

pub use crate::worker::job::Wake;

/// The end of a job that writes files into a folder, once: "wrote N files to DIR", or its
/// error.
fn poll_written(job: &mut Option<Job<(), crate::worker::files::Written>>) -> Option<Status> {
    let mut out = None;
    for ev in job.as_mut()?.poll() {
        if let JobEvent::Done(r) = ev {
            out = Some(match r {
                Ok((files, dir)) => {
                    Status::info(format!("wrote {files} files to {}", dir.display()))
                }
                Err(e) => Status::error(e),
            });
        }
    }
    if out.is_some() {
        *job = None;
    }
    out
}

/// The application: the model in use, its views, and the threads that work for them.
pub struct BackworkApp {
    /// What the model in use is (the same as `model.info()`).
    pub info: ModelInfo,
    model: ModelHandle,
    pub gallery: Gallery,
    /// The test set's classification by the model in use.
    classifier: Option<Job<PredictionChunk, ()>>,
    /// A weights file being read, checked and hashed (opened or dropped).
    opening: Option<Job<(), ModelHandle>>,
    /// A dataset folder being read.
    opening_data: Option<Job<(), crate::worker::models::DataPair>>,
    /// A network opened for images other than the data's, kept until a dataset folder of its
    /// images is opened (then both are used).
    pending_model: Option<ModelHandle>,
    pub status: Option<Status>,
    pub tab: Tab,
    pub run_view: Option<RunView>,
    pub model_view: ModelView,
    pub worst_view: WorstView,
    pub retrain_view: RetrainView,
    pub sweep_view: SweepView,
    pub frame_stats: Option<FrameStats>,
    wake: Wake,
    /// Set while the engine computes (a run neither paused nor ended): the test-set
    /// classifier waits between chunks, so the two do not share the cores.
    hold: Arc<std::sync::atomic::AtomicBool>,
}

/// Background events (a snapshot per engine step, progress) wake the window at most this
/// often: the events of 100 ms share one frame, so a fast engine does not pay for a frame per
/// step (input still repaints at once).
const EVENT_FRAME_INTERVAL: std::time::Duration = std::time::Duration::from_millis(100);

impl BackworkApp {
    /// The app on `model`, with `worker` running backwork (spawned, or detached in tests).
    pub fn new(
        ctx: &egui::Context,
        model: ModelHandle,
        test: Arc<Dataset>,
        train: Arc<Dataset>,
        worker: Worker,
    ) -> Self {
        apply_style(ctx);
        let repaint = ctx.clone();
        let wake: Wake = Arc::new(move || repaint.request_repaint_after(EVENT_FRAME_INTERVAL));
        let mut app = Self {
            info: model.info().clone(),
            model,
            gallery: Gallery::new(test.clone()),
            classifier: None,
            opening: None,
            opening_data: None,
            pending_model: None,
            status: None,
            tab: Tab::Backwork,
            run_view: Some(RunView::new(worker, train.clone())),
            worst_view: WorstView::new(train.clone()),
            retrain_view: RetrainView::new(train.clone(), test.clone()),
            sweep_view: SweepView::new(train.clone()),
            model_view: ModelView::new(train, test),
            frame_stats: None,
            wake,
            hold: Default::default(),
        };
        if let Some(v) = &mut app.run_view {
            v.tap_names = app.model.tap_names();
            v.image_shape = app.model.input_shape();
            v.settings.fit_taps(v.tap_names.len());
            v.fit_labels();
        }
        app.classify_test_set();
        app
    }

    /// (Re)starts classifying the test set with the model in use, on a job (the previous
    /// one, if any, is cancelled and joined).
    fn classify_test_set(&mut self) {
        self.classifier = None;
        self.gallery.reset_predictions();
        match classify_job(
            &self.model,
            self.gallery.data(),
            self.hold.clone(),
            self.wake.clone(),
        ) {
            Ok(job) => self.classifier = Some(job),
            Err(e) => self.status = Some(Status::error(e)),
        }
    }

    /// Whether a weights file is being opened.
    pub fn is_opening(&self) -> bool {
        self.opening.is_some()
    }

    /// Opens weights files on a job (the last one that loads wins); the next frame switches
    /// to it once it has loaded.
    pub fn open_model(&mut self, paths: Vec<std::path::PathBuf>) {
        let Some(first) = paths.first() else { return };
        let what = first.display().to_string();
        match load_job(paths, self.wake.clone()) {
            Ok(job) => {
                self.opening = Some(job);
                self.status = Some(Status::progress(format!("opening {what}…")));
            }
            Err(e) => self.status = Some(Status::error(e)),
        }
    }

    /// Makes the model in use take its inputs normalised as `norm` says (on a job, as
    /// opening a file is; the next frame switches to it).
    pub fn normalise_model(&mut self, norm: Option<crate::meta::InputNormSpec>) {
        let what = norm
            .as_ref()
            .map_or("as they are".to_string(), |n| n.summary());
        match crate::worker::models::norm_job(self.model.clone(), norm, self.wake.clone()) {
            Ok(job) => {
                self.opening = Some(job);
                self.status = Some(Status::progress(format!("inputs: {what}…")));
            }
            Err(e) => self.status = Some(Status::error(e)),
        }
    }

    /// Starts reading the dataset folder `dir` (on a job; [`Self::set_data`] when read).
    pub fn open_data(&mut self, dir: std::path::PathBuf) {
        let what = dir.display().to_string();
        match crate::worker::models::data_job(dir, self.wake.clone()) {
            Ok(job) => {
                self.opening_data = Some(job);
                self.status = Some(Status::progress(format!("opening {what}…")));
            }
            Err(e) => self.status = Some(Status::error(e)),
        }
    }

    /// Whether a dataset folder is being read.
    pub fn is_opening_data(&self) -> bool {
        self.opening_data.is_some()
    }

    /// Switches every view to another dataset, if the model in use takes its images: a new
    /// engine thread on its training images (a running run ends; the settings stay, the
    /// labels fitted to its classes), and the test set, worst images, retraining, sweep and
    /// model views on it.
    pub fn set_data(&mut self, dir: &std::path::Path, train: Arc<Dataset>, test: Arc<Dataset>) {
        // A network opened earlier for these images comes with them.
        if self.model.fits(&train).is_err()
            && let Some(m) = self.pending_model.take_if(|m| m.fits(&train).is_ok())
        {
            self.info = m.info().clone();
            self.model = m;
        }
        if let Err(e) = self.model.fits(&train) {
            self.status = Some(Status::error(format!(
                "not opened, the data in use stays: {e}; open a network for these images first, or start backwork with --data {} --model NET",
                dir.display()
            )));
            return;
        }
        let old = self.run_view.take();
        let cache_dir = old
            .as_ref()
            .and_then(|v| v.spec.as_ref())
            .and_then(|s| s.cache_dir.clone());
        let spec = WorkerSpec::for_model(&self.model, train.clone(), cache_dir, self.wake.clone());
        let worker = match Worker::spawn(spec.clone()) {
            Ok(w) => w,
            Err(e) => {
                self.run_view = old;
                self.status = Some(Status::error(format!("not opened: {e}")));
                return;
            }
        };
        let mut v = RunView::new(worker, train.clone());
        v.spec = Some(spec);
        v.tap_names = self.model.tap_names();
        v.image_shape = self.model.input_shape();
        if let Some(o) = &old {
            v.settings = o.settings.clone();
        }
        v.settings.fit_taps(v.tap_names.len());
        v.fit_labels();
        drop(old);
        self.run_view = Some(v);
        self.gallery = Gallery::new(test.clone());
        self.worst_view = WorstView::new(train.clone());
        self.retrain_view = RetrainView::new(train.clone(), test.clone());
        self.sweep_view = SweepView::new(train.clone());
        self.model_view = ModelView::new(train.clone(), test);
        self.status = Some(Status::info(format!(
            "now using {} ({} classes, {} images)",
            dir.display(),
            train.num_classes(),
            train.shape
        )));
        self.classify_test_set();
    }

    /// Switches every view to another network; a running backwork run ends (its images stay
    /// exportable).
    pub fn set_model(&mut self, model: ModelHandle) {
        if let Some(v) = &mut self.run_view {
            v.set_model(&model);
        }
        self.status = Some(Status::info(format!("now using {}", model.info().name)));
        self.info = model.info().clone();
        self.model = model;
        self.classify_test_set();
    }

    /// Loads weight files dropped onto the window (the last one that loads wins).
    fn dropped_files_ui(&mut self, ui: &mut egui::Ui) {
        let (dropped, hovering) =
            ui.input(|i| (i.raw.dropped_files.clone(), !i.raw.hovered_files.is_empty()));
        if hovering {
            let rect = ui.ctx().content_rect();
            ui.ctx()
                .layer_painter(egui::LayerId::new(
                    egui::Order::Foreground,
                    egui::Id::unique("backwork-drop-overlay"),
                ))
                .text(
                    rect.center(),
                    egui::Align2::CENTER_CENTER,
                    "Drop a .safetensors, .pt or .onnx network, or a dataset folder, to use it",
                    egui::FontId::proportional(24.0),
                    ui.visuals().strong_text_color(),
                );
        }
        // Folders are datasets, files networks.
        let (dirs, paths): (Vec<std::path::PathBuf>, Vec<std::path::PathBuf>) = dropped
            .iter()
            .map(|f| f.path().to_path_buf())
            .partition(|p| p.is_dir());
        if !paths.is_empty() {
            self.open_model(paths);
        }
        if let Some(dir) = dirs.into_iter().next() {
            self.open_data(dir);
        }
    }

    /// Takes what the jobs have sent since the last frame.
    fn poll(&mut self) {
        if let Some(job) = &mut self.classifier {
            for ev in job.poll() {
                match ev {
                    JobEvent::Progress(chunk) => self.gallery.add_predictions(chunk),
                    JobEvent::Done(Err(e)) => {
                        self.status = Some(Status::error(format!(
                            "classifying the test set failed: {e}"
                        )));
                    }
                    JobEvent::Done(Ok(())) => {}
                }
            }
        }
        if let Some(job) = &mut self.opening_data {
            let mut read = None;
            for ev in job.poll() {
                if let JobEvent::Done(r) = ev {
                    read = Some(r);
                }
            }
            match read {
                Some(Ok((dir, train, test))) => {
                    self.opening_data = None;
                    self.set_data(&dir, train, test);
                }
                Some(Err(e)) => {
                    self.opening_data = None;
                    self.status = Some(Status::error(e));
                }
                None => {}
            }
        }
        if let Some(job) = &mut self.opening {
            let mut opened = None;
            for ev in job.poll() {
                if let JobEvent::Done(r) = ev {
                    opened = Some(r);
                }
            }
            match opened {
                Some(Ok(m)) => {
                    self.opening = None;
                    match m.fits(&self.gallery.data()) {
                        Ok(()) => {
                            self.pending_model = None;
                            self.set_model(m);
                        }
                        // Another dataset's network: kept for the dataset to follow.
                        Err(e) => {
                            self.status = Some(Status::error(format!(
                                "{e}; kept: open a dataset folder of its images (Model view, or drop the folder) to use both"
                            )));
                            self.pending_model = Some(m);
                        }
                    }
                }
                Some(Err(e)) => {
                    self.opening = None;
                    self.status = Some(Status::error(e));
                }
                None => {}
            }
        }
    }

    fn header_ui(&self, ui: &mut egui::Ui) {
        ui.horizontal_wrapped(|ui| {
            ui.heading("backwork");
            ui.separator();
            ui.label("model:");
            ui.strong(&self.info.name)
                .on_hover_text("Open, train or drop another model in the Model view");
            ui.weak(format!(
                "sha256 {}…",
                self.info.sha256.get(..12).unwrap_or(&self.info.sha256)
            ));
            ui.separator();
            match self.info.test_accuracy() {
                Some(a) => ui.label(format!("test accuracy (recorded): {:.2}%", a * 100.0)),
                None => ui.weak("no accuracy recorded in the file"),
            };
            ui.separator();
            let (done, total) = self.gallery.progress();
            if done < total {
                // A label, not a spinner: a spinner repaints every frame, and the engine
                // needs those cycles.
                let waiting = self.hold.load(std::sync::atomic::Ordering::Relaxed);
                ui.label(format!(
                    "classifying the test set: {done} / {total}{}",
                    if waiting {
                        " (waits while the engine runs)"
                    } else {
                        "…"
                    }
                ));
            } else {
                ui.label(format!(
                    "measured now: {:.2}% of {} test images correct",
                    self.gallery.accuracy() * 100.0,
                    total
                ));
            }
        });
        if let Some(s) = &self.status {
            s.ui(ui);
        }
    }
}

impl eframe::App for BackworkApp {
    fn clear_color(&self, visuals: &egui::Visuals) -> [f32; 4] {
        visuals.panel_fill.to_normalized_gamma_f32()
    }

    fn save(&mut self, storage: &mut dyn eframe::Storage) {
        if let Some(v) = &self.run_view {
            eframe::set_value(storage, SETTINGS_KEY, &v.settings);
        }
    }

    fn ui(&mut self, ui: &mut egui::Ui, frame: &mut eframe::Frame) {
        self.show(ui);
        // A changed setting is written at once, not only at exit: a crash keeps it too. Not
        // during a drag: once the pointer is released.
        let is_dragging = ui.input(|i| i.pointer.any_down());
        if let Some(v) = &mut self.run_view
            && !is_dragging
            && std::mem::take(&mut v.settings_changed)
            && let Some(st) = frame.storage_mut()
        {
            eframe::set_value(st, SETTINGS_KEY, &v.settings);
            st.flush();
        }
    }
}

impl BackworkApp {
    /// Takes what every job and the engine sent since the last frame.
    fn poll_all(&mut self, ctx: &egui::Context) {
        self.poll();
        self.model_view.poll();
        self.worst_view.poll();
        self.retrain_view.poll(&self.info);
        self.sweep_view.poll();
        if let Some(v) = &mut self.run_view {
            v.poll(ctx);
            self.hold
                .store(v.is_computing(), std::sync::atomic::Ordering::Relaxed);
        }
        if let Some(fs) = &mut self.frame_stats {
            let rate = self.run_view.as_ref().map_or(0.0, RunView::steps_per_s);
            let run = self.run_view.as_ref().and_then(RunView::run_rate);
            if let Some(e) = fs.begin_frame(rate, run) {
                self.status = Some(Status::error(e));
            }
        }
    }

    /// The tabs, each saying when its view works in the background.
    fn tabs_ui(&mut self, ui: &mut egui::Ui) {
        ui.horizontal(|ui| {
            ui.selectable_value(&mut self.tab, Tab::Backwork, "Fooling images");
            ui.selectable_value(&mut self.tab, Tab::TestSet, "Test set");
            ui.selectable_value(&mut self.tab, Tab::Worst, "Worst training images");
            let model_tab = if self.model_view.is_training() {
                "Model (training…)"
            } else {
                "Model"
            };
            ui.selectable_value(&mut self.tab, Tab::Model, model_tab);
            let sweep_tab = if self.sweep_view.is_running() {
                "Sweep (running…)"
            } else {
                "Sweep"
            };
            ui.selectable_value(&mut self.tab, Tab::Sweep, sweep_tab);
        });
    }

    /// The whole window, one frame (everything but persistence, so tests can drive it).
    pub fn show(&mut self, ui: &mut egui::Ui) {
        self.poll_all(ui.ctx());
        self.dropped_files_ui(ui);
        // Panels without their own fill: the window's clear colour is the panel colour, so
        // software rendering shades each pixel once less per frame.
        let style = ui.style().clone();
        let side = egui::Frame::side_top_panel(&style).fill(egui::Color32::TRANSPARENT);
        let central = egui::Frame::central_panel(&style).fill(egui::Color32::TRANSPARENT);
        egui::Panel::top("header").frame(side).show(ui, |ui| {
            ui.add_space(4.0);
            self.header_ui(ui);
            self.tabs_ui(ui);
            if self.tab == Tab::Backwork
                && let Some(v) = &mut self.run_view
            {
                ui.separator();
                v.controls_ui(ui);
                v.view_toggles_ui(ui);
            }
            ui.add_space(4.0);
        });
        if self.tab == Tab::Backwork
            && let Some(v) = &mut self.run_view
        {
            egui::Panel::bottom("status-bar")
                .frame(side)
                .show(ui, |ui| {
                    ui.add_space(2.0);
                    v.status_bar_ui(ui);
                });
            egui::Panel::left("settings")
                .frame(side)
                .default_size(270.0)
                .min_size(220.0)
                .show(ui, |ui| {
                    egui::ScrollArea::vertical().show(ui, |ui| v.settings_panel_ui(ui));
                });
            egui::Panel::right("curves")
                .frame(side)
                .default_size(400.0)
                .min_size(300.0)
                .show(ui, |ui| v.side_ui(ui));
        }
        // The status bar's "Measure the ceiling": the Sweep view measures the labels a run
        // left short, against the run's settings.
        if let Some(v) = &mut self.run_view
            && let Some(labels) = v.ceiling_request.take()
        {
            let base = Settings {
                labels,
                ..v.settings.clone()
            };
            self.sweep_view
                .ceiling
                .start(&self.model, &base, self.wake.clone());
            self.tab = Tab::Sweep;
        }
        let mut intent = None;
        egui::CentralPanel::default().frame(central).show(ui, |ui| {
            match (self.tab, &mut self.run_view) {
                (Tab::Backwork, Some(v)) => v.grid_ui(ui),
                (Tab::Worst, _) => self.worst_view.ui(ui, &self.model, &self.wake),
                (Tab::Sweep, _) => {
                    let base = self
                        .run_view
                        .as_ref()
                        .map_or_else(Settings::default, |v| v.settings.clone());
                    let picked = egui::ScrollArea::both()
                        .show(ui, |ui| {
                            self.sweep_view.ui(ui, &self.model, &base, &self.wake)
                        })
                        .inner;
                    if let (Some(s), Some(v)) = (picked, &mut self.run_view) {
                        v.settings = s;
                        v.settings_changed = true;
                        v.status = Status::info("settings loaded from the sweep");
                        self.tab = Tab::Backwork;
                    }
                }
                (Tab::Model, _) => {
                    egui::ScrollArea::vertical().show(ui, |ui| {
                        intent = self.model_view.ui(ui, &self.info, &self.wake);
                        ui.separator();
                        let run_images = self.run_view.as_ref().and_then(RunView::current_images);
                        if let Some(m) =
                            self.retrain_view
                                .ui(ui, &self.model, run_images, &self.wake)
                        {
                            intent = Some(ModelIntent::Use(m));
                        }
                    });
                }
                _ => self.gallery.ui(ui),
            }
        });
        match intent {
            Some(ModelIntent::Use(m)) => self.set_model(m),
            Some(ModelIntent::Open(path)) => self.open_model(vec![path]),
            Some(ModelIntent::OpenData(dir)) => self.open_data(dir),
            Some(ModelIntent::Normalise(norm)) => self.normalise_model(norm),
            None => {}
        }
        // What the panels asked of the engine during the frame goes out once it is drawn.
        if let Some(v) = &mut self.run_view {
            v.send_commands();
        }
        if let Some(fs) = &self.frame_stats {
            fs.end_frame_ui(ui);
        }
    }
}
