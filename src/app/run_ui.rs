//! The backwork view: Start / Pause / Step / Reset, and the live images of the run, one row
//! per label, each with its p(label) to 5 decimals, marked when past the threshold and counting
//! its reinitialisations. The engine runs on the worker thread; this view only draws snapshots.

use std::sync::mpsc::TryRecvError;

use egui::{Color32, RichText, Stroke, TextureHandle, TextureOptions, vec2};

use super::curves_ui::Curves;
use super::settings_ui::settings_ui;
use crate::backwork::Settings;
use crate::backwork::engine::EndReason;
use crate::data::{PIXELS, SIDE};
use crate::export::sheet::to_u8;
use crate::worker::{Command, Event, Snapshot, Worker};

/// Pixels on screen per image pixel.
const SCALE: f32 = 2.0;

/// Runtime state of the backwork view.
pub struct RunView {
    worker: Worker,
    pub settings: Settings,
    run: Option<u64>,
    snapshot: Option<Box<Snapshot>>,
    textures: Vec<TextureHandle>,
    cache: Option<(usize, usize)>,
    total_reinits: usize,
    pub status: String,
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
    nearest_texture: Option<(u32, TextureHandle)>,
}

impl RunView {
    pub fn new(worker: Worker, train: std::sync::Arc<crate::data::Dataset>) -> Self {
        Self {
            worker,
            settings: Settings::default(),
            run: None,
            snapshot: None,
            textures: Vec::new(),
            cache: None,
            total_reinits: 0,
            status: "Press Start (or space) to optimise 8 noise images per digit.".into(),
            curves: Curves::default(),
            selected: Default::default(),
            is_dirty: false,
            settings_changed: false,
            train,
            enlarged: None,
            nearest_texture: None,
        }
    }

    /// Sends a command to the worker (the view's intents go through here).
    pub fn command(&mut self, c: Command) {
        let is_start = matches!(c, Command::Start(_));
        let is_reset = matches!(c, Command::Reset);
        let id = self.worker.send(c);
        if is_start {
            self.selected.clear();
            self.run = Some(id);
            self.snapshot = None;
            self.total_reinits = 0;
            self.status = "building the reference sets…".into();
        } else if is_reset {
            self.run = None;
            self.snapshot = None;
            self.status = "reset".into();
        }
    }

    /// Takes the events that arrived since the last frame; only the newest snapshot is drawn.
    pub fn poll(&mut self, ctx: &egui::Context) {
        loop {
            match self.worker.events.try_recv() {
                Ok(Event::Cache { run, done, total }) if Some(run) == self.run => {
                    self.cache = (done < total).then_some((done, total));
                }
                Ok(Event::Snapshot(s)) if Some(s.run) == self.run => {
                    if self.snapshot.as_ref().is_none_or(|old| old.run != s.run) {
                        self.curves.reset(&s.labels);
                    }
                    self.curves.add(&s.points, &s.new_reinits);
                    self.total_reinits += s.new_reinits.len();
                    self.status = format!(
                        "step {} · {:.1} steps/s · {} reinitialisations{}",
                        s.step,
                        s.steps_per_s,
                        self.total_reinits,
                        if s.is_paused { " · paused" } else { "" }
                    );
                    self.snapshot = Some(s);
                    self.is_dirty = true;
                }
                Ok(Event::Refused { message, .. }) => self.status = message,
                Ok(Event::Exported { dir, files, .. }) => {
                    self.status = format!("wrote {files} files to {}", dir.display());
                }
                Ok(Event::Ended { run, reason }) if Some(run) == self.run => {
                    self.status = match reason {
                        EndReason::Threshold => {
                            format!("every image passed p > {} — done", self.settings.threshold)
                        }
                        EndReason::MaxSteps => "stopped at the step budget".into(),
                        EndReason::Cancelled => "cancelled".into(),
                        EndReason::Error(e) => format!("error: {e}"),
                    };
                    self.run = None;
                }
                // Events of a run that was reset or replaced.
                Ok(_) => {}
                Err(TryRecvError::Empty) => break,
                Err(TryRecvError::Disconnected) => {
                    self.status = "the engine thread stopped; restart the app".into();
                    break;
                }
            }
        }
        self.update_textures(ctx);
    }

    /// Uploads the newest snapshot's images, once per snapshot (not once per frame).
    fn update_textures(&mut self, ctx: &egui::Context) {
        if !std::mem::take(&mut self.is_dirty) {
            return;
        }
        let Some(s) = &self.snapshot else { return };
        let n = s.images.len() / PIXELS;
        for i in 0..n {
            let grey: Vec<u8> = s.images[i * PIXELS..(i + 1) * PIXELS]
                .iter()
                .map(|&v| to_u8(v))
                .collect();
            let img = egui::ColorImage::from_gray([SIDE, SIDE], &grey);
            if let Some(t) = self.textures.get_mut(i) {
                t.set(img, TextureOptions::NEAREST);
            } else {
                self.textures.push(ctx.load_texture(
                    format!("run-{i}"),
                    img,
                    TextureOptions::NEAREST,
                ));
            }
        }
    }

    /// The sliders; a change goes to the running engine before its next step and is marked
    /// on the curves.
    pub fn settings_panel_ui(&mut self, ui: &mut egui::Ui) {
        if let Some(new) = settings_ui(ui, &self.settings) {
            self.settings = new.clone();
            self.settings_changed = true;
            if self.is_running() {
                let step = self.snapshot.as_ref().map_or(0, |s| s.step);
                self.curves.mark_settings(step);
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

    /// Asks for a folder and sends the export; an empty selection is refused here.
    pub fn export_selected(&mut self) {
        if self.selected.is_empty() {
            self.status = "select images to export first (click tiles, or Select passed)".into();
            return;
        }
        match rfd::FileDialog::new()
            .set_title("Export the selected images into a new or empty folder")
            .pick_folder()
        {
            Some(dir) => {
                let rows = self.selected.iter().copied().collect();
                self.command(Command::Export {
                    dir,
                    rows: Some(rows),
                });
            }
            None => {
                self.status = "export cancelled (no folder chosen, or no file dialog: install zenity or a desktop portal)".into();
            }
        }
    }

    /// The engine's steps/s in the latest snapshot.
    pub fn steps_per_s(&self) -> f64 {
        self.snapshot.as_ref().map_or(0.0, |s| s.steps_per_s)
    }

    pub fn is_running(&self) -> bool {
        self.run.is_some()
    }

    pub fn controls_ui(&mut self, ui: &mut egui::Ui) {
        let paused = self.snapshot.as_ref().is_some_and(|s| s.is_paused);
        ui.horizontal(|ui| {
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
                self.export_selected();
            }
            ui.separator();
            ui.label("images per label");
            ui.add(egui::DragValue::new(&mut self.settings.batch).range(1..=64));
            ui.separator();
            if let Some((done, total)) = self.cache {
                ui.spinner();
                ui.label(format!("reference sets {done} / {total}"));
            }
            ui.label(&self.status);
        });
        // Keyboard shortcuts: space pauses or resumes, S steps, R resets.
        let (space, s, r) = ui.input(|i| {
            (
                i.key_pressed(egui::Key::Space),
                i.key_pressed(egui::Key::S),
                i.key_pressed(egui::Key::R),
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

    pub fn grid_ui(&mut self, ui: &mut egui::Ui) {
        let Some(s) = &self.snapshot else {
            ui.weak("No run yet.");
            return;
        };
        let threshold = self.settings.threshold;
        let mut toggled = Vec::new();
        let mut enlarge = None;
        egui::ScrollArea::vertical()
            .auto_shrink([false, false])
            .show(ui, |ui| {
                for (g, &label) in s.labels.iter().enumerate() {
                    ui.horizontal(|ui| {
                        ui.label(RichText::new(label.to_string()).heading());
                        for i in 0..s.batch {
                            let row = g * s.batch + i;
                            let p = s.probs[row].get(label as usize).copied().unwrap_or(0.0);
                            let passed = p > threshold;
                            let is_selected = self.selected.contains(&row);
                            let stroke = if is_selected {
                                Stroke::new(3.0, ui.visuals().selection.stroke.color)
                            } else if passed {
                                Stroke::new(2.0, Color32::from_rgb(80, 200, 120))
                            } else {
                                Stroke::new(
                                    1.0,
                                    ui.visuals().widgets.noninteractive.bg_stroke.color,
                                )
                            };
                            egui::Frame::group(ui.style())
                                .stroke(stroke)
                                .inner_margin(3.0)
                                .show(ui, |ui| {
                                    ui.vertical(|ui| {
                                        if let Some(t) = self.textures.get(row) {
                                            let side = SIDE as f32 * SCALE;
                                            let r = ui.add(
                                                egui::Image::from_texture(t)
                                                    .fit_to_exact_size(vec2(side, side))
                                                    .alt_text(format!("label {label} image {i}"))
                                                    .sense(egui::Sense::click()),
                                            );
                                            if r.double_clicked() {
                                                enlarge = Some(row);
                                            } else if r.clicked() {
                                                toggled.push(row);
                                            }
                                            let probs = &s.probs[row];
                                            r.on_hover_ui(|ui| {
                                                ui.label(format!(
                                                    "label {label}, image {i}: p(label) = {p:.5}"
                                                ));
                                                prob_bars_ui(ui, probs, label as usize);
                                                ui.weak("click: select for export · double-click: enlarge");
                                            });
                                        }
                                        ui.label(RichText::new(format!("{p:.5}")).monospace());
                                        ui.small(format!("reinits {}", s.reinits[row]));
                                    });
                                });
                        }
                    });
                }
            });
        for row in toggled {
            if !self.selected.remove(&row) {
                self.selected.insert(row);
            }
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
        if let Some(n) = nearest[0]
            && self
                .nearest_texture
                .as_ref()
                .is_none_or(|(i, _)| *i != n.index)
            && (n.index as usize) < self.train.len()
        {
            let img = egui::ColorImage::from_gray([SIDE, SIDE], self.train.image(n.index as usize));
            let tex = ctx.load_texture("nearest", img, TextureOptions::NEAREST);
            self.nearest_texture = Some((n.index, tex));
        }
        let mut open = true;
        egui::Window::new(format!("label {label}, image {}", row % s.batch))
            .open(&mut open)
            .resizable(false)
            .show(ctx, |ui| {
                ui.horizontal(|ui| {
                    let side = SIDE as f32 * 8.0;
                    if let Some(t) = self.textures.get(row) {
                        ui.vertical(|ui| {
                            ui.add(
                                egui::Image::from_texture(t)
                                    .fit_to_exact_size(vec2(side, side))
                                    .alt_text("the generated image"),
                            );
                            ui.label("generated");
                        });
                    }
                    if let (Some(n), Some((_, t))) = (nearest[0], &self.nearest_texture) {
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
                    let text = format!("{k}: {p:.6}");
                    if k == label as usize {
                        ui.strong(text);
                    } else {
                        ui.monospace(text);
                    }
                }
                prob_bars_ui(ui, probs, label as usize);
                ui.separator();
                for (tap, n) in ["inputs", "conv0", "conv1", "fc"].iter().zip(nearest) {
                    if let Some(n) = n {
                        ui.label(format!("nearest at {tap}: #{} ({:.4})", n.index, n.dist));
                    }
                }
                ui.label(format!("reinitialised {} times", s.reinits[row]));
            });
        if !open {
            self.enlarged = None;
        }
    }
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
            Color32::from_rgb(80, 200, 120)
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
