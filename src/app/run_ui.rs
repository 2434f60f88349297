//! The backwork view: Start / Pause / Step / Reset, the target labels, and the live images of
//! the run, one row per label, each with its p(label) to 5 decimals and its ten probabilities
//! as bars; marked when past the threshold, flashing when just re-initialised, saying so when
//! stalled. The engine runs on the worker thread; this view only draws snapshots.

use std::collections::VecDeque;
use std::sync::mpsc::TryRecvError;
use std::time::{Duration, Instant};

use egui::{Color32, RichText, TextureHandle, TextureOptions, vec2};

use super::captions::{Caption, CaptionLayout, Captions, p_text};
use super::curves_ui::Curves;
use super::dialog::{Dialog, NO_DIALOG};
use super::settings_ui::settings_ui;
use super::status::Status;
use crate::backwork::engine::{EndReason, ReinitKind};
use crate::backwork::saliency::top_k_mask;
use crate::backwork::{Init, Settings};
use crate::data::{PIXELS, SIDE};
use crate::export::overlay_rgb;
use crate::export::sheet::to_u8;
use crate::worker::models::ModelHandle;
use crate::worker::{Command, Event, Snapshot, Worker, WorkerSpec};

/// Images per row of the texture atlas.
const ATLAS_COLS: usize = 16;

/// Outline width of every tile, whatever its state (a wider one would shift the row).
const TILE_STROKE: f32 = 2.0;

/// How long a re-initialised tile flashes.
const FLASH: Duration = Duration::from_millis(800);
/// Lines kept in the event log.
const LOG_LINES: usize = 500;
/// Colour of a tile past the threshold, and of the target class's bar.
pub(super) const PASSED: Color32 = Color32::from_rgb(80, 200, 120);
/// Colour of a re-initialisation flash.
const FLASH_COLOR: Color32 = Color32::from_rgb(240, 150, 40);
/// Colour of the "stalled" mark.
const STALLED: Color32 = Color32::from_rgb(220, 190, 60);

/// Pixels on screen per image pixel: the tiles grow or shrink with the window, from a
/// compact grid to large crisp pixels.
const MIN_SCALE: f32 = 1.5;
const MAX_SCALE: f32 = 4.0;
/// Gap between two tiles of a row.
const TILE_GAP: f32 = 4.0;
/// What a tile adds around its image: frame margins, outline, the gap to the next tile.
const TILE_CHROME: f32 = 2.0 * 3.0 + 2.0 * TILE_STROKE + TILE_GAP;
/// Width of the digit heading at the start of each row of tiles.
const ROW_HEADING: f32 = 28.0;

/// Runtime state of the backwork view.
pub struct RunView {
    worker: Worker,
    pub settings: Settings,
    run: Option<u64>,
    snapshot: Option<Box<Snapshot>>,
    /// Every image of the snapshot in one texture ([`ATLAS_COLS`] per row), uploaded once
    /// per snapshot: one texture update instead of one per image, which software rendering
    /// pays for with a flush each.
    atlas: Option<TextureHandle>,
    atlas_size: [usize; 2],
    /// Every tile's caption (p, bars, status line) in one texture.
    captions: Captions,
    cache: Option<(usize, usize)>,
    total_reinits: usize,
    /// The last thing the user should read: an export's folder, a refusal, how a run ended,
    /// an error. It stays until the next one (a live run does not overwrite it).
    pub status: Status,
    /// The live state of the run: step, steps/s, reinitialisations, paused.
    pub progress: String,
    pub curves: Curves,
    /// Rows selected for export.
    pub selected: std::collections::BTreeSet<usize>,
    /// A snapshot arrived whose images are not uploaded yet.
    is_dirty: bool,
    /// The user changed a setting since the app last stored them.
    pub settings_changed: bool,
    /// The training set, to show an image's nearest training image.
    train: std::sync::Arc<crate::data::Dataset>,
    /// The row shown enlarged, if any.
    pub enlarged: Option<usize>,
    /// Textures of training images shown as nearest neighbours, by index (bounded).
    train_textures: std::collections::HashMap<u32, TextureHandle>,
    /// Overlay each tile with its saliency mask (the top-k pixels of d p(label) / d input).
    pub show_saliency: bool,
    pub saliency_k: usize,
    /// Show each tile's nearest training image (pixel space) under it.
    pub show_nearest: bool,
    /// What starts the worker again after it died (None for a detached test worker).
    pub spec: Option<WorkerSpec>,
    pub is_worker_alive: bool,
    /// When each image was last re-initialised (for the flash).
    last_reinit: Vec<Option<Instant>>,
    /// Last tile clicked, the anchor of a shift-click range.
    anchor: Option<usize>,
    /// Newest first: (step, what happened).
    pub log: VecDeque<(usize, String)>,
    /// Per group, whether it has passed the threshold (to log it once).
    passed_groups: Vec<bool>,
    /// Per image, whether it was stalled at the last snapshot (to log changes once).
    was_stalled: Vec<bool>,
    /// The export folder dialog, while open, with the rows to export.
    export_dialog: Option<Dialog<Vec<usize>>>,
    /// The start-images file dialog, while open.
    init_dialog: Option<Dialog<()>>,
    /// When the run's first snapshot came (its reference sets built) and when it ended.
    run_clock: Option<(Instant, Option<Instant>)>,
}

impl RunView {
    pub fn new(worker: Worker, train: std::sync::Arc<crate::data::Dataset>) -> Self {
        Self {
            worker,
            settings: Settings::default(),
            run: None,
            snapshot: None,
            atlas: None,
            atlas_size: [0, 0],
            captions: Captions::default(),
            cache: None,
            total_reinits: 0,
            status: Status::default(),
            progress: "Press Start (or space) to optimise 8 noise images per digit.".into(),
            curves: Curves::default(),
            selected: Default::default(),
            is_dirty: false,
            settings_changed: false,
            train,
            enlarged: None,
            train_textures: Default::default(),
            show_saliency: false,
            saliency_k: crate::backwork::saliency::DEFAULT_TOP_K,
            show_nearest: false,
            spec: None,
            is_worker_alive: true,
            last_reinit: Vec::new(),
            anchor: None,
            log: VecDeque::new(),
            passed_groups: Vec::new(),
            was_stalled: Vec::new(),
            export_dialog: None,
            init_dialog: None,
            run_clock: None,
        }
    }

    /// Adds a line to the event log (newest first, bounded).
    pub fn log_event(&mut self, step: usize, what: String) {
        self.log.push_front((step, what));
        self.log.truncate(LOG_LINES);
    }

    /// Uses another network from now on: the worker ends the current run and builds
    /// reference sets for the new one at the next Start.
    pub fn set_model(&mut self, handle: &ModelHandle) -> Result<(), String> {
        let command = Command::set_model(handle)?;
        if let Some(spec) = &mut self.spec {
            spec.set_model(handle)?;
        }
        let model = handle.model_ref();
        let step = self.snapshot.as_ref().map_or(0, |s| s.step);
        self.log_event(step, format!("model changed to {}", model.name));
        self.worker.send(command);
        self.run = None;
        self.cache = None;
        self.status = Status::info(format!(
            "model {}: press Start to run against it",
            model.name
        ));
        Ok(())
    }

    /// Starts a fresh worker thread after the old one died.
    pub fn restart_worker(&mut self) {
        let Some(spec) = self.spec.clone() else {
            return;
        };
        match Worker::spawn(spec) {
            Ok(w) => {
                self.worker = w;
                self.is_worker_alive = true;
                self.run = None;
                self.cache = None;
                self.status = Status::info("engine restarted: press Start");
                self.progress.clear();
            }
            Err(e) => {
                self.status = Status::error(format!("error: could not restart the engine: {e}"))
            }
        }
    }

    /// Sends a command to the worker (the view's intents go through here).
    pub fn command(&mut self, c: Command) {
        if !self.is_worker_alive {
            self.status =
                Status::error("error: the engine thread stopped: press Restart engine first");
            return;
        }
        let is_start = matches!(c, Command::Start(_));
        let is_reset = matches!(c, Command::Reset);
        let id = self.worker.send(c);
        if is_start {
            self.selected.clear();
            self.anchor = None;
            self.run = Some(id);
            self.snapshot = None;
            self.total_reinits = 0;
            self.last_reinit.clear();
            self.passed_groups.clear();
            self.was_stalled.clear();
            self.run_clock = None;
            let labels: Vec<String> = self.settings.labels.iter().map(u8::to_string).collect();
            self.log_event(
                0,
                format!(
                    "run started: labels {}, {} images each",
                    labels.join(","),
                    self.settings.batch
                ),
            );
            self.status.clear();
            self.progress = "building the reference sets…".into();
        } else if is_reset {
            self.run = None;
            self.snapshot = None;
            self.progress = "reset: press Start for a new run".into();
        }
    }

    /// Takes the events that arrived since the last frame; only the newest snapshot is drawn.
    pub fn poll(&mut self, ctx: &egui::Context) {
        self.poll_export_dialog();
        self.poll_init_dialog();
        loop {
            match self.worker.events.try_recv() {
                Ok(Event::Cache { run, done, total }) if Some(run) == self.run => {
                    self.cache = (done < total).then_some((done, total));
                }
                // The running run's, or the finished run's still on screen (sent again when
                // the saliency is switched on after its end).
                Ok(Event::Snapshot(s))
                    if Some(s.run) == self.run
                        || self.snapshot.as_ref().is_some_and(|old| old.run == s.run) =>
                {
                    if self.snapshot.as_ref().is_none_or(|old| old.run != s.run) {
                        self.curves.reset(&s.labels);
                    }
                    let is_live = Some(s.run) == self.run;
                    self.curves.add(&s.points, &s.new_reinits);
                    if is_live {
                        self.curves.add_rate(s.step, s.steps_per_s);
                        self.run_clock.get_or_insert((Instant::now(), None));
                    }
                    self.total_reinits += s.new_reinits.len();
                    self.note_snapshot(&s);
                    if is_live {
                        self.progress = format!(
                            "step {} · {:.1} steps/s · {} reinitialisations{}",
                            s.step,
                            s.steps_per_s,
                            self.total_reinits,
                            if s.is_paused { " · paused" } else { "" }
                        );
                    }
                    self.snapshot = Some(s);
                    self.is_dirty = true;
                }
                Ok(Event::Refused { message, .. }) => {
                    self.status = Status::error(format!("error: {message}"));
                    let step = self.snapshot.as_ref().map_or(0, |s| s.step);
                    self.log_event(step, self.status.text.clone());
                }
                Ok(Event::Notice { message }) => {
                    self.status = Status::info(message);
                    let step = self.snapshot.as_ref().map_or(0, |s| s.step);
                    self.log_event(step, self.status.text.clone());
                }
                Ok(Event::Exported { dir, files, .. }) => {
                    self.status = Status::info(format!("wrote {files} files to {}", dir.display()));
                    let step = self.snapshot.as_ref().map_or(0, |s| s.step);
                    self.log_event(step, self.status.text.clone());
                }
                Ok(Event::Ended { run, reason }) if Some(run) == self.run => {
                    let step = self.snapshot.as_ref().map_or(0, |s| s.step);
                    let is_error = matches!(reason, EndReason::Error(_));
                    let text = match reason {
                        EndReason::Threshold => {
                            format!(
                                "every image passed p > {} at step {step}: done",
                                self.settings.threshold
                            )
                        }
                        EndReason::MaxSteps => {
                            let missed = self.missed();
                            format!(
                                "stopped at the step budget (step {step}): {missed} images below the threshold"
                            )
                        }
                        EndReason::Cancelled => "cancelled".into(),
                        EndReason::Error(e) => {
                            format!("error: {e} (the last good images stay, and can be exported)")
                        }
                    };
                    self.status = if is_error {
                        Status::error(text)
                    } else {
                        Status::info(text)
                    };
                    self.log_event(step, format!("run ended: {}", self.status));
                    self.run = None;
                    if let Some((_, end @ None)) = &mut self.run_clock {
                        *end = Some(Instant::now());
                    }
                }
                // Events of a run that was reset or replaced.
                Ok(_) => {}
                Err(TryRecvError::Empty) => break,
                Err(TryRecvError::Disconnected) => {
                    if self.is_worker_alive {
                        self.is_worker_alive = false;
                        self.run = None;
                        self.progress.clear();
                        self.status = Status::error(
                            "error: the engine thread stopped unexpectedly: press Restart engine",
                        );
                    }
                    break;
                }
            }
        }
        self.update_textures(ctx);
    }

    /// Logs what a snapshot brings (reinitialisations, labels passing, images stalling) and
    /// starts the flashes.
    fn note_snapshot(&mut self, s: &Snapshot) {
        let rows = s.probs.len();
        self.last_reinit.resize(rows, None);
        self.was_stalled.resize(rows, false);
        self.passed_groups.resize(s.labels.len(), false);
        let now = Instant::now();
        for r in &s.new_reinits {
            if let Some(t) = self.last_reinit.get_mut(r.image) {
                *t = Some(now);
            }
            let label = s.labels.get(r.image / s.batch.max(1)).copied().unwrap_or(0);
            self.log_event(
                r.step,
                format!(
                    "label {label} image {}: {} at p = {:.5}",
                    r.image % s.batch.max(1),
                    match r.kind {
                        ReinitKind::MonoDec => "re-initialised",
                        ReinitKind::StallReinit => "re-initialised (stalled)",
                        ReinitKind::StallPerturb => "perturbed (stalled)",
                    },
                    r.p_label
                ),
            );
        }
        for (g, &label) in s.labels.iter().enumerate() {
            let all_passed = (0..s.batch).all(|i| {
                s.probs[g * s.batch + i]
                    .get(label as usize)
                    .copied()
                    .unwrap_or(0.0)
                    > self.settings.threshold
            });
            if all_passed && !self.passed_groups[g] {
                self.passed_groups[g] = true;
                self.log_event(
                    s.step,
                    format!("label {label}: every image past the threshold"),
                );
            }
        }
        for row in 0..rows {
            let stalled = s.stalled.get(row).copied().unwrap_or(false);
            if stalled && !self.was_stalled[row] {
                let label = s.labels[row / s.batch.max(1)];
                self.log_event(
                    s.step,
                    format!("label {label} image {}: stalled", row % s.batch.max(1)),
                );
            }
            self.was_stalled[row] = stalled;
        }
    }

    /// Images of the snapshot at or below the threshold.
    fn missed(&self) -> usize {
        self.snapshot.as_ref().map_or(0, |s| {
            (0..s.probs.len())
                .filter(|&row| {
                    let label = s.labels[row / s.batch.max(1)] as usize;
                    s.probs[row]
                        .get(label)
                        .is_none_or(|p| *p <= self.settings.threshold)
                })
                .count()
        })
    }

    /// Whether image `row` is flashing after a re-initialisation.
    fn is_flashing(&self, row: usize) -> bool {
        self.last_reinit
            .get(row)
            .copied()
            .flatten()
            .is_some_and(|t| t.elapsed() < FLASH)
    }

    /// Uploads the newest snapshot's images, once per snapshot (not once per frame).
    fn update_textures(&mut self, ctx: &egui::Context) {
        if !std::mem::take(&mut self.is_dirty) {
            return;
        }
        let Some(s) = &self.snapshot else { return };
        let n = s.images.len() / PIXELS;
        let mask = match (&s.saliency, self.show_saliency) {
            (Some(sal), true) => Some(top_k_mask(sal, self.saliency_k)),
            _ => None,
        };
        let rows = n.div_ceil(ATLAS_COLS).max(1);
        let (w, h) = (ATLAS_COLS * SIDE, rows * SIDE);
        let mut rgb = vec![0u8; w * h * 3];
        for i in 0..n {
            let px = &s.images[i * PIXELS..(i + 1) * PIXELS];
            let tile = match &mask {
                Some(m) => overlay_rgb(px, &m[i * PIXELS..(i + 1) * PIXELS]),
                None => px.iter().flat_map(|&v| [to_u8(v); 3]).collect(),
            };
            let (x0, y0) = ((i % ATLAS_COLS) * SIDE, (i / ATLAS_COLS) * SIDE);
            for y in 0..SIDE {
                let dst = ((y0 + y) * w + x0) * 3;
                rgb[dst..dst + SIDE * 3].copy_from_slice(&tile[y * SIDE * 3..(y + 1) * SIDE * 3]);
            }
        }
        let img = egui::ColorImage::from_rgb([w, h], &rgb);
        match &mut self.atlas {
            Some(t) if self.atlas_size == [w, h] => t.set(img, TextureOptions::NEAREST),
            _ => self.atlas = Some(ctx.load_texture("run-images", img, TextureOptions::NEAREST)),
        }
        self.atlas_size = [w, h];
    }

    /// Where image `row` of the snapshot lies in the atlas (texture coordinates).
    fn atlas_uv(&self, row: usize) -> Option<egui::Rect> {
        self.atlas.as_ref()?;
        let [w, h] = self.atlas_size;
        if (row / ATLAS_COLS + 1) * SIDE > h {
            return None;
        }
        let (x0, y0) = ((row % ATLAS_COLS) * SIDE, (row / ATLAS_COLS) * SIDE);
        Some(egui::Rect::from_min_size(
            egui::pos2(x0 as f32 / w as f32, y0 as f32 / h as f32),
            vec2(SIDE as f32 / w as f32, SIDE as f32 / h as f32),
        ))
    }

    /// Image `row` of the snapshot, from the atlas.
    fn run_image(&self, row: usize) -> Option<egui::Image<'static>> {
        let atlas = self.atlas.as_ref()?;
        let uv = self.atlas_uv(row)?;
        let tex = egui::load::SizedTexture::new(atlas.id(), vec2(SIDE as f32, SIDE as f32));
        Some(egui::Image::from_texture(tex).uv(uv))
    }

    /// The texture of training image `index` (uploaded once, kept while shown).
    fn train_texture(&mut self, ctx: &egui::Context, index: u32) -> Option<TextureHandle> {
        if (index as usize) >= self.train.len() {
            return None;
        }
        if self.train_textures.len() > 512 {
            self.train_textures.clear();
        }
        let train = &self.train;
        Some(
            self.train_textures
                .entry(index)
                .or_insert_with(|| {
                    let img =
                        egui::ColorImage::from_gray([SIDE, SIDE], train.image(index as usize));
                    ctx.load_texture(format!("train-{index}"), img, TextureOptions::NEAREST)
                })
                .clone(),
        )
    }

    /// The view toggles: saliency overlay (and its k), nearest training image under each tile.
    pub fn view_toggles_ui(&mut self, ui: &mut egui::Ui) {
        ui.horizontal(|ui| {
            ui.label("show");
            if ui
                .toggle_value(&mut self.show_saliency, "saliency")
                .on_hover_text("Overlay each image with the pixels that raise p(label) most (the top k of d p(label) / d input, in red)")
                .changed()
            {
                self.worker.send(Command::Saliency(self.show_saliency));
                self.is_dirty = true;
            }
            if self.show_saliency
                && ui
                    .add(egui::DragValue::new(&mut self.saliency_k).range(1..=PIXELS).suffix(" px"))
                    .on_hover_text("Pixels in each saliency mask")
                    .changed()
            {
                self.is_dirty = true;
            }
            ui.toggle_value(&mut self.show_nearest, "nearest")
                .on_hover_text("Show each image's nearest training image (pixel space, the arg-min of the inputs term) with its distance");
        });
    }

    /// The sliders; a change goes to the running engine before its next step and is marked
    /// on the curves.
    pub fn settings_panel_ui(&mut self, ui: &mut egui::Ui) {
        if let Some(new) = settings_ui(ui, &self.settings) {
            let changed = self.settings.changed_fields(&new);
            self.settings = new.clone();
            self.settings_changed = true;
            if self.is_running() {
                let step = self.snapshot.as_ref().map_or(0, |s| s.step);
                self.curves.mark_settings(step);
                // A drag changes the value every frame: one log line per step, naming every
                // field changed within it.
                let mut fields = changed;
                if let Some((s, what)) = self.log.front()
                    && *s == step
                    && let Some(prev) = what.strip_prefix("settings changed: ")
                {
                    for f in prev.split(", ") {
                        if !fields.iter().any(|x| x == f) {
                            fields.insert(0, f.to_string());
                        }
                    }
                    self.log.pop_front();
                }
                self.log_event(step, format!("settings changed: {}", fields.join(", ")));
                self.command(Command::Settings(new));
            }
        }
    }

    fn select_passed(&mut self) {
        let Some(s) = &self.snapshot else { return };
        self.selected = (0..s.probs.len())
            .filter(|&row| {
                let label = s.labels[row / s.batch] as usize;
                s.probs[row]
                    .get(label)
                    .is_some_and(|p| *p > self.settings.threshold)
            })
            .collect();
    }

    /// Asks for a folder (the dialog runs beside the window) for the export of the
    /// selection; an empty selection is refused here.
    pub fn export_selected(&mut self, ctx: &egui::Context) {
        if self.selected.is_empty() {
            self.status =
                Status::info("select images to export first (click tiles, or Select passed)");
            return;
        }
        if self.export_dialog.is_some() {
            return;
        }
        let rows = self.selected.iter().copied().collect();
        self.export_dialog = Some(Dialog::open(rows, ctx, || {
            rfd::FileDialog::new()
                .set_title("Export the selected images into a new or empty folder")
                .pick_folder()
        }));
        self.status = Status::progress("choose a new or empty folder for the export…");
    }

    /// Sends the export once its folder dialog has closed.
    fn poll_export_dialog(&mut self) {
        match Dialog::poll(&mut self.export_dialog) {
            Some((rows, Some(dir))) => {
                self.status = Status::progress(format!(
                    "exporting {} images to {}…",
                    rows.len(),
                    dir.display()
                ));
                self.command(Command::Export {
                    dir,
                    rows: Some(rows),
                });
            }
            Some((_, None)) => self.status = Status::info(format!("export cancelled: {NO_DIALOG}")),
            None => {}
        }
    }

    /// The images of the latest snapshot (N×784), if any.
    pub fn current_images(&self) -> Option<Vec<f32>> {
        self.snapshot.as_ref().map(|s| s.images.clone())
    }

    /// The steps of the current (or last) run and the seconds it has computed them in,
    /// from its first snapshot (the reference sets built) to its end or now.
    pub fn run_rate(&self) -> Option<(usize, f64)> {
        let (start, end) = self.run_clock?;
        let steps = self.snapshot.as_ref()?.step;
        let secs = end.unwrap_or_else(Instant::now).duration_since(start);
        Some((steps, secs.as_secs_f64()))
    }

    /// The engine's steps/s in the latest snapshot.
    pub fn steps_per_s(&self) -> f64 {
        self.snapshot.as_ref().map_or(0.0, |s| s.steps_per_s)
    }

    pub fn is_running(&self) -> bool {
        self.run.is_some()
    }

    /// Whether the engine is busy with this view's run: started, neither paused nor ended.
    pub fn is_computing(&self) -> bool {
        self.run.is_some() && !self.snapshot.as_ref().is_some_and(|s| s.is_paused)
    }

    /// The status bar: the run's live state, then the last message (errors in red).
    pub fn status_bar_ui(&self, ui: &mut egui::Ui) {
        ui.horizontal(|ui| {
            ui.label(&self.progress);
            if !self.status.is_empty() {
                ui.separator();
                self.status.ui(ui);
            }
        });
    }

    pub fn controls_ui(&mut self, ui: &mut egui::Ui) {
        let paused = self.snapshot.as_ref().is_some_and(|s| s.is_paused);
        ui.horizontal_wrapped(|ui| {
            if ui
                .button("Start")
                .on_hover_text("Start a new run with the settings below")
                .clicked()
            {
                self.command(Command::Start(self.settings.clone()));
            }
            let running = self.is_running();
            let label = if paused { "Resume" } else { "Pause" };
            if ui
                .add_enabled(running, egui::Button::new(label))
                .on_hover_text("space")
                .clicked()
            {
                self.command(if paused {
                    Command::Resume
                } else {
                    Command::Pause
                });
            }
            if ui
                .add_enabled(running, egui::Button::new("Step"))
                .on_hover_text("S: one step while paused")
                .clicked()
            {
                self.command(Command::Step);
            }
            if ui
                .add_enabled(running, egui::Button::new("Reset"))
                .on_hover_text("R")
                .clicked()
            {
                self.command(Command::Reset);
            }
            ui.separator();
            let has_images = self.snapshot.is_some();
            if ui
                .add_enabled(has_images, egui::Button::new("Select passed"))
                .on_hover_text("Select every image past the threshold (click a tile to toggle it)")
                .clicked()
            {
                self.select_passed();
            }
            let export = format!("Export {} selected…", self.selected.len());
            if ui
                .add_enabled(has_images, egui::Button::new(export))
                .on_hover_text("Write the selected images as `backwork run` does: PNGs, images.npy, results.json, sheet.png, into a new or empty folder")
                .clicked()
            {
                self.export_selected(ui.ctx());
            }
            ui.separator();
            self.labels_ui(ui);
            self.init_ui(ui);
            let mut has_budget = self.settings.max_steps.is_some();
            if ui
                .checkbox(&mut has_budget, "stop at")
                .on_hover_text("Stop the run after a number of steps (the CLI's --max-steps; 1,500 by default there)")
                .changed()
            {
                self.settings.max_steps = has_budget.then_some(crate::backwork::settings::DEFAULT_STEP_BUDGET);
                self.settings_changed = true;
            }
            if let Some(m) = &mut self.settings.max_steps
                && ui
                    .add(egui::DragValue::new(m).range(1..=1_000_000).suffix(" steps"))
                    .changed()
            {
                self.settings_changed = true;
            }
            ui.separator();
            ui.label("images per label");
            ui.add(egui::DragValue::new(&mut self.settings.batch).range(1..=64))
                .on_hover_text("Images optimised per label (8 in the original figure); takes effect at the next Start");
            if !self.is_worker_alive
                && self.spec.is_some()
                && ui
                    .button("Restart engine")
                    .on_hover_text("Start a fresh engine thread (the last run is lost)")
                    .clicked()
            {
                self.restart_worker();
            }
        });
        // Keyboard shortcuts: space pauses or resumes, S steps, R resets; not while typing
        // into a field, and not with Ctrl, Alt or Cmd (those belong to the system).
        let is_typing = ui.ctx().egui_wants_keyboard_input();
        let (space, s, r) = ui.input(|i| {
            let plain = !(is_typing || i.modifiers.ctrl || i.modifiers.alt || i.modifiers.command);
            (
                plain && i.key_pressed(egui::Key::Space),
                plain && i.key_pressed(egui::Key::S),
                plain && i.key_pressed(egui::Key::R),
            )
        });
        if space {
            if !self.is_running() {
                self.command(Command::Start(self.settings.clone()));
            } else {
                self.command(if paused {
                    Command::Resume
                } else {
                    Command::Pause
                });
            }
        }
        if s && self.is_running() {
            self.command(Command::Step);
        }
        if r && self.is_running() {
            self.command(Command::Reset);
        }
    }

    /// The target labels, one toggle per digit; at least one stays selected.
    fn labels_ui(&mut self, ui: &mut egui::Ui) {
        ui.label("labels");
        for d in 0..10u8 {
            let mut on = self.settings.labels.contains(&d);
            if ui
                .toggle_value(&mut on, d.to_string())
                .on_hover_text(format!(
                    "Optimise images classified as {d} (at the next Start)"
                ))
                .changed()
            {
                if on {
                    self.settings.labels.push(d);
                    self.settings.labels.sort_unstable();
                } else if self.settings.labels.len() > 1 {
                    self.settings.labels.retain(|&l| l != d);
                }
                self.settings_changed = true;
            }
        }
        if ui
            .small_button("all")
            .on_hover_text("All ten digits (the default)")
            .clicked()
        {
            self.settings.labels = (0..10).collect();
            self.settings_changed = true;
        }
    }

    /// Where the next run's images start: noise, class means, the current images, or a
    /// `.npy` file (the CLI's `--init`). Re-initialised images always restart from noise.
    fn init_ui(&mut self, ui: &mut egui::Ui) {
        let text = match &self.settings.init {
            Init::Noise => "noise".to_string(),
            Init::ClassMeans => "class means".to_string(),
            Init::Current => "the current images".to_string(),
            Init::File(p) => p
                .file_name()
                .map_or("a file".into(), |f| f.to_string_lossy().into_owned()),
        };
        let before = self.settings.init.clone();
        let mut wants_file = false;
        egui::ComboBox::from_label("start from")
            .selected_text(text)
            .show_ui(ui, |ui| {
                ui.selectable_value(&mut self.settings.init, Init::Noise, "noise")
                    .on_hover_text("Uniform [0, 1) noise, seeded (the default)");
                ui.selectable_value(&mut self.settings.init, Init::ClassMeans, "class means")
                    .on_hover_text("Each image the mean of a group of the label's training images (the original's init_w_train_vals)");
                ui.selectable_value(&mut self.settings.init, Init::Current, "the current images")
                    .on_hover_text("Go on from the images on screen (same labels and images per label)");
                wants_file = ui
                    .button("a file…")
                    .on_hover_text("A .npy of (labels × images per label, 28, 28) images, group-major, e.g. an export's images.npy")
                    .clicked();
            });
        if wants_file && self.init_dialog.is_none() {
            self.init_dialog = Some(Dialog::open((), ui.ctx(), || {
                rfd::FileDialog::new()
                    .set_title("Start the next run from these images (.npy)")
                    .add_filter("NumPy array", &["npy"])
                    .pick_file()
            }));
            self.status = Status::progress("choose a .npy file of start images…");
        }
        if self.settings.init != before {
            self.settings_changed = true;
        }
    }

    /// Takes the start-images file once its dialog has closed.
    fn poll_init_dialog(&mut self) {
        match Dialog::poll(&mut self.init_dialog) {
            Some(((), Some(path))) => {
                self.status = Status::info(format!("the next run starts from {}", path.display()));
                self.settings.init = Init::File(path);
                self.settings_changed = true;
            }
            Some(((), None)) => {
                self.status = Status::info(format!("start images unchanged: {NO_DIALOG}"))
            }
            None => {}
        }
    }

    /// Applies a click on tile `row`: toggles it, or with shift selects the range from the
    /// last clicked tile.
    pub fn click_tile(&mut self, row: usize, shift: bool) {
        match (shift, self.anchor) {
            (true, Some(a)) => {
                let (lo, hi) = (a.min(row), a.max(row));
                self.selected.extend(lo..=hi);
            }
            _ => {
                if !self.selected.remove(&row) {
                    self.selected.insert(row);
                }
            }
        }
        self.anchor = Some(row);
    }

    /// The right-hand side: the curves, then the event log.
    pub fn side_ui(&mut self, ui: &mut egui::Ui) {
        let log_h = 140.0;
        let curves_h = (ui.available_height() - log_h - 30.0).max(200.0);
        ui.allocate_ui(vec2(ui.available_width(), curves_h), |ui| {
            self.curves.ui(ui)
        });
        ui.separator();
        ui.label(RichText::new("Events").strong());
        if self.log.is_empty() {
            ui.weak("Reinitialisations, settings changes and labels passing show here.");
            return;
        }
        // Only the visible lines are laid out: the log holds up to LOG_LINES.
        let row_h = ui.text_style_height(&egui::TextStyle::Small);
        egui::ScrollArea::vertical()
            .id_salt("event-log")
            .max_height(log_h)
            .auto_shrink([false, true])
            .show_rows(ui, row_h, self.log.len(), |ui, rows| {
                for (step, what) in self.log.range(rows) {
                    ui.small(format!("step {step:>5}  {what}"));
                }
            });
    }

    pub fn grid_ui(&mut self, ui: &mut egui::Ui) {
        let pixel_nearest: Vec<Option<crate::backwork::cost::Nearest>> = match &self.snapshot {
            Some(s) if self.show_nearest => s.nearest.iter().map(|n| n[0]).collect(),
            _ => Vec::new(),
        };
        let nearest_tiles: Vec<Option<(TextureHandle, crate::backwork::cost::Nearest)>> =
            pixel_nearest
                .into_iter()
                .map(|n| n.and_then(|n| self.train_texture(ui.ctx(), n.index).map(|t| (t, n))))
                .collect();
        let Some(s) = &self.snapshot else {
            match self.cache {
                // A bar without animation: a spinner would repaint every frame while the
                // sets are built.
                Some((done, total)) => {
                    ui.add(
                        egui::ProgressBar::new(done as f32 / total.max(1) as f32)
                            .desired_width(360.0)
                            .text(format!(
                                "building the reference sets: {done} of {total} labels"
                            )),
                    );
                }
                None => {
                    ui.weak("No run yet: press Start (or space).");
                }
            }
            return;
        };
        let threshold = self.settings.threshold;
        let shift = ui.input(|i| i.modifiers.shift);
        // As large as lets a row of `batch` tiles fit the width, within bounds.
        let per_tile = (ui.available_width() - ROW_HEADING) / s.batch.max(1) as f32 - TILE_CHROME;
        let side = tile_scale(per_tile) * SIDE as f32;
        let layout = CaptionLayout::new(ui, side);
        let tiles: Vec<TileState> = (0..s.probs.len())
            .map(|row| {
                let label = s.labels[row / s.batch.max(1)];
                let p = s.probs[row].get(label as usize).copied().unwrap_or(0.0);
                TileState {
                    row,
                    label,
                    index: row % s.batch.max(1),
                    p,
                    passed: p > threshold,
                    selected: self.selected.contains(&row),
                    flashing: self.is_flashing(row),
                    stalled: s.stalled.get(row).copied().unwrap_or(false),
                    reinits: s.reinits[row],
                }
            })
            .collect();
        let statuses: Vec<(String, Color32)> =
            tiles.iter().map(|t| t.status(ui.visuals())).collect();
        let captions: Vec<Caption<'_>> = tiles
            .iter()
            .zip(&statuses)
            .map(|(t, (status, color))| Caption {
                p: t.p,
                probs: &s.probs[t.row],
                target: t.label as usize,
                status,
                status_color: *color,
            })
            .collect();
        self.captions.update(ui, layout, &captions);
        let mut clicked = Vec::new();
        let mut enlarge = None;
        let mut is_any_flashing = false;
        // Both ways: with nearest images shown, or a narrow window, a row can be wider.
        egui::ScrollArea::both()
            .id_salt("run-grid")
            .auto_shrink([false, false])
            .show(ui, |ui| {
                // Every tile's image goes into one mesh drawn after the tiles: one draw call
                // for the 80 images instead of one texture switch per tile, which software
                // rendering pays for on every frame.
                let mut images = self
                    .atlas
                    .as_ref()
                    .map(|a| egui::Mesh::with_texture(a.id()));
                let mut captions_mesh: Option<egui::Mesh> = None;
                for (g, &label) in s.labels.iter().enumerate() {
                    ui.horizontal(|ui| {
                        ui.spacing_mut().item_spacing.x = TILE_GAP;
                        ui.add_sized(
                            vec2(ROW_HEADING - 8.0, 20.0),
                            egui::Label::new(RichText::new(label.to_string()).heading()),
                        );
                        for i in 0..s.batch {
                            let row = g * s.batch + i;
                            let Some(tile) = tiles.get(row) else { break };
                            is_any_flashing |= tile.flashing;
                            let nearest = nearest_tiles.get(row).and_then(|n| n.as_ref());
                            let status = statuses.get(row).map_or("", |s| s.0.as_str());
                            let (r, caption) =
                                tile_ui(ui, tile, status, layout, &s.probs[row], nearest);
                            if let (Some(mesh), Some(uv)) = (&mut images, self.atlas_uv(row)) {
                                mesh.add_rect_with_uv(r.rect, uv, Color32::WHITE);
                            }
                            if let Some((id, uv)) = self.captions.uv(row) {
                                let mesh = captions_mesh
                                    .get_or_insert_with(|| egui::Mesh::with_texture(id));
                                mesh.add_rect_with_uv(caption, uv, Color32::WHITE);
                            }
                            if r.double_clicked() {
                                enlarge = Some(row);
                            } else if r.clicked() {
                                clicked.push(row);
                            }
                        }
                    });
                }
                for mesh in [images, captions_mesh].into_iter().flatten() {
                    ui.painter().add(egui::Shape::mesh(mesh));
                }
            });
        for row in clicked {
            self.click_tile(row, shift);
        }
        if is_any_flashing {
            // Repaint once more when the flash is over, even if no snapshot comes.
            ui.ctx().request_repaint_after(FLASH);
        }
        if enlarge.is_some() {
            self.enlarged = enlarge;
        }
        self.enlarged_ui(ui.ctx());
    }

    /// The enlarged view of one image: large, its ten probabilities, and its nearest training
    /// image (pixel space) with the distance, plus the nearest at each conv tap.
    fn enlarged_ui(&mut self, ctx: &egui::Context) {
        let (Some(row), Some(s)) = (self.enlarged, &self.snapshot) else {
            return;
        };
        if row >= s.probs.len() {
            self.enlarged = None;
            return;
        }
        let label = s.labels[row / s.batch];
        let nearest = s.nearest[row];
        let tap_textures: Vec<(usize, crate::backwork::cost::Nearest, TextureHandle)> = nearest
            .iter()
            .enumerate()
            .filter_map(|(k, n)| n.map(|n| (k, n)))
            .collect::<Vec<_>>()
            .into_iter()
            .filter_map(|(k, n)| self.train_texture(ctx, n.index).map(|t| (k, n, t)))
            .collect();
        let Some(s) = &self.snapshot else { return };
        let mut open = true;
        egui::Window::new(format!("label {label}, image {}", row % s.batch))
            .open(&mut open)
            .resizable(false)
            .show(ctx, |ui| {
                ui.horizontal(|ui| {
                    let side = SIDE as f32 * 8.0;
                    if let Some(img) = self.run_image(row) {
                        ui.vertical(|ui| {
                            ui.add(
                                img.fit_to_exact_size(vec2(side, side))
                                    .alt_text("the generated image"),
                            );
                            ui.label("generated");
                        });
                    }
                    if let Some((_, n, t)) = tap_textures.iter().find(|(k, _, _)| *k == 0) {
                        ui.vertical(|ui| {
                            ui.add(
                                egui::Image::from_texture(t)
                                    .fit_to_exact_size(vec2(side, side))
                                    .alt_text("its nearest training image"),
                            );
                            ui.label(format!(
                                "nearest training image #{} (distance {:.4})",
                                n.index, n.dist
                            ));
                        });
                    }
                });
                ui.separator();
                let probs = &s.probs[row];
                for (k, p) in probs.iter().enumerate() {
                    let text = format!("{:>7}: {p:.6}", super::class_name(k));
                    let text = RichText::new(text).monospace();
                    if k == label as usize {
                        ui.label(text.strong().color(PASSED));
                    } else {
                        ui.label(text);
                    }
                }
                prob_bars_ui(ui, probs, label as usize);
                ui.separator();
                ui.label("Nearest training image at each tap (the arg-min of its prev term):");
                ui.horizontal(|ui| {
                    for (k, n, t) in &tap_textures {
                        let tap = crate::backwork::settings::TAPS[*k];
                        ui.vertical(|ui| {
                            ui.add(
                                egui::Image::from_texture(t)
                                    .fit_to_exact_size(vec2(84.0, 84.0))
                                    .alt_text(format!("nearest at {tap}")),
                            );
                            ui.small(format!("{tap}: #{}", n.index));
                            ui.small(format!("distance {:.4}", n.dist));
                        });
                    }
                });
                ui.label(format!("reinitialised {} times", s.reinits[row]));
            });
        if !open {
            self.enlarged = None;
        }
    }
}

/// What a tile shows about its image.
struct TileState {
    row: usize,
    label: u8,
    index: usize,
    p: f32,
    passed: bool,
    selected: bool,
    flashing: bool,
    stalled: bool,
    reinits: usize,
}

impl TileState {
    /// The tile's one-line status and its colour: just re-initialised, stalled, passed, or
    /// how often it was re-initialised.
    fn status(&self, visuals: &egui::Visuals) -> (String, Color32) {
        if self.flashing {
            (format!("reinit #{}", self.reinits), FLASH_COLOR)
        } else if self.stalled {
            ("stalled".into(), STALLED)
        } else if self.passed {
            ("passed".into(), PASSED)
        } else {
            let n = self.reinits;
            let s = if n == 1 {
                "1 reinit".into()
            } else {
                format!("{n} reinits")
            };
            (s, visuals.text_color())
        }
    }

    fn status_hover(&self) -> String {
        if self.flashing {
            "just re-initialised with fresh noise".into()
        } else if self.stalled {
            "p(label) has not risen by the stall tolerance within the stall window (probes) and is below the threshold".into()
        } else if self.passed {
            format!("past the threshold; re-initialised {} times", self.reinits)
        } else {
            format!("re-initialised {} times", self.reinits)
        }
    }
}

/// One tile: the image, its caption (p(label), ten bars, status line: drawn by the caller
/// from [`Captions`], as is the image), its nearest training image if shown, and its marks
/// (passed, flashing after a reinit, stalled, selected). Returns the image's response and
/// the caption's place. `status_text` is the caption's status line, [`TileState::status`].
fn tile_ui(
    ui: &mut egui::Ui,
    t: &TileState,
    status_text: &str,
    layout: CaptionLayout,
    probs: &[f32],
    nearest: Option<&(TextureHandle, crate::backwork::cost::Nearest)>,
) -> (egui::Response, egui::Rect) {
    let side = layout.width;
    let outline = if t.selected {
        ui.visuals().selection.stroke.color
    } else if t.flashing {
        FLASH_COLOR
    } else if t.passed {
        PASSED
    } else {
        ui.visuals().widgets.noninteractive.bg_stroke.color
    };
    // The outline and the flash's fill are painted after the contents (their size is known
    // then) but behind them, as a few plain rectangles: software rendering pays per
    // triangle, and a rounded, anti-aliased frame costs dozens per tile.
    let behind = ui.painter().add(egui::Shape::Noop);
    let shown = egui::Frame::NONE
        .inner_margin(3.0 + TILE_STROKE)
        .show(ui, |ui| {
            ui.set_width(side);
            ui.vertical(|ui| {
                // The image's place; the caller paints every tile's image at once.
                let (_, r) = ui.allocate_exact_size(vec2(side, side), egui::Sense::click());
                r.widget_info(|| {
                    egui::WidgetInfo::labeled(
                        egui::Role::Image,
                        true,
                        format!("label {} image {}", t.label, t.index),
                    )
                });
                // The caption's place: its text is in the texture, and here for screen
                // readers and tests, with the status line's tooltip.
                let (caption, _) =
                    ui.allocate_exact_size(vec2(side, layout.height()), egui::Sense::hover());
                let [text, _, status] = layout.parts().map(|p| p.translate(caption.min.to_vec2()));
                let p_text = p_text(t.p);
                ui.interact(text, r.id.with("p"), egui::Sense::hover())
                    .widget_info(|| egui::WidgetInfo::labeled(egui::Role::Label, true, &p_text));
                ui.interact(status, r.id.with("status"), egui::Sense::hover())
                    .on_hover_text(t.status_hover())
                    .widget_info(|| egui::WidgetInfo::labeled(egui::Role::Label, true, status_text));
                if let Some((tex, n)) = nearest {
                    ui.horizontal(|ui| {
                        ui.spacing_mut().item_spacing.x = 3.0;
                        ui.add(
                            egui::Image::from_texture(tex)
                                .fit_to_exact_size(vec2(SIDE as f32, SIDE as f32))
                                .alt_text(format!("nearest training image of label {} image {}", t.label, t.index)),
                        )
                        .on_hover_text(format!("nearest training image #{} (mean squared distance per pixel {:.4})", n.index, n.dist));
                        ui.small(format!("d {:.3}", n.dist));
                    });
                }
                let probs = probs.to_vec();
                let (label, index, p, row) = (t.label, t.index, t.p, t.row);
                let r = r.on_hover_ui(move |ui| {
                    ui.label(format!("label {label}, image {index} (row {row}): p(label) = {p:.5}"));
                    prob_bars_ui(ui, &probs, label as usize);
                    ui.weak("click: select for export · shift-click: select a range · double-click: enlarge");
                });
                (r, caption)
            })
            .inner
        });
    let rect = shown.response.rect;
    let mut mesh = egui::Mesh::default();
    if t.flashing {
        mesh.add_colored_rect(rect, FLASH_COLOR.gamma_multiply(0.35));
    }
    let w = TILE_STROKE;
    for edge in [
        egui::Rect::from_min_max(rect.min, egui::pos2(rect.max.x, rect.min.y + w)),
        egui::Rect::from_min_max(egui::pos2(rect.min.x, rect.max.y - w), rect.max),
        egui::Rect::from_min_max(rect.min, egui::pos2(rect.min.x + w, rect.max.y)),
        egui::Rect::from_min_max(egui::pos2(rect.max.x - w, rect.min.y), rect.max),
    ] {
        mesh.add_colored_rect(edge, outline);
    }
    ui.painter().set(behind, egui::Shape::mesh(mesh));
    shown.inner
}

/// A compact bar chart of the class probabilities, the target class highlighted.
fn prob_bars_ui(ui: &mut egui::Ui, probs: &[f32], target: usize) {
    let (w, h) = (16.0 * probs.len() as f32, 48.0);
    let (rect, _) = ui.allocate_exact_size(vec2(w, h + 14.0), egui::Sense::hover());
    let painter = ui.painter_at(rect);
    for (k, &p) in probs.iter().enumerate() {
        let x0 = rect.left() + 16.0 * k as f32 + 2.0;
        let top = rect.top() + h * (1.0 - p.clamp(0.0, 1.0));
        let color = if k == target {
            PASSED
        } else {
            ui.visuals().weak_text_color()
        };
        painter.rect_filled(
            egui::Rect::from_min_max(egui::pos2(x0, top), egui::pos2(x0 + 12.0, rect.top() + h)),
            1.0,
            color,
        );
        painter.text(
            egui::pos2(x0 + 6.0, rect.top() + h + 1.0),
            egui::Align2::CENTER_TOP,
            k.to_string(),
            egui::FontId::monospace(10.0),
            ui.visuals().text_color(),
        );
    }
}

/// The tile scale for `px` screen pixels of image: whole screen pixels per image pixel from
/// 2 up, so every image pixel is the same square (crisp); 1.5 below that, and the grid
/// scrolls when even that does not fit.
fn tile_scale(px: f32) -> f32 {
    let s = px / SIDE as f32;
    if s >= 2.0 {
        s.floor().min(MAX_SCALE)
    } else {
        MIN_SCALE
    }
}
