//! The gallery of test images: each tile the image (crisp, nearest-neighbour scaled), the
//! network's predicted class and confidence, misclassified ones outlined.

use std::collections::HashMap;

use egui::{RichText, Stroke, TextureHandle, TextureOptions, vec2};

use super::PredictionChunk;
use crate::data::{Dataset, SIDE};

/// Tiles per page.
const PAGE: usize = 120;
/// Pixels on screen per image pixel.
const SCALE: f32 = 3.0;

/// Which images the gallery lists.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Filter {
    All,
    Misclassified,
}

/// Runtime state of the gallery.
pub struct Gallery {
    data: std::sync::Arc<Dataset>,
    predictions: Vec<Option<(usize, f32)>>,
    done: usize,
    correct: usize,
    pub page: usize,
    pub filter: Filter,
    textures: HashMap<usize, TextureHandle>,
}

impl Gallery {
    pub fn new(data: std::sync::Arc<Dataset>) -> Self {
        let n = data.len();
        Self {
            data,
            predictions: vec![None; n],
            done: 0,
            correct: 0,
            page: 0,
            filter: Filter::All,
            textures: HashMap::new(),
        }
    }

    /// The images it shows.
    pub fn data(&self) -> std::sync::Arc<Dataset> {
        self.data.clone()
    }

    /// Forgets the predictions (another model is about to classify the images).
    pub fn reset_predictions(&mut self) {
        self.predictions.iter_mut().for_each(|p| *p = None);
        self.done = 0;
        self.correct = 0;
    }

    pub fn add_predictions(&mut self, chunk: PredictionChunk) {
        for (i, p) in chunk.predictions.into_iter().enumerate() {
            let idx = chunk.start + i;
            if idx < self.predictions.len() && self.predictions[idx].is_none() {
                self.predictions[idx] = Some(p);
                self.done += 1;
                if p.0 == self.data.labels[idx] as usize {
                    self.correct += 1;
                }
            }
        }
    }

    /// (classified, total).
    pub fn progress(&self) -> (usize, usize) {
        (self.done, self.predictions.len())
    }

    /// Share of the classified images predicted correctly.
    pub fn accuracy(&self) -> f64 {
        self.correct as f64 / self.done.max(1) as f64
    }

    fn is_wrong(&self, i: usize) -> bool {
        matches!(self.predictions[i], Some((p, _)) if p != self.data.labels[i] as usize)
    }

    /// Indices listed under the current filter.
    pub fn listed(&self) -> Vec<usize> {
        match self.filter {
            Filter::All => (0..self.data.len()).collect(),
            Filter::Misclassified => (0..self.data.len()).filter(|&i| self.is_wrong(i)).collect(),
        }
    }

    fn texture(&mut self, ctx: &egui::Context, i: usize) -> TextureHandle {
        let data = &self.data;
        self.textures
            .entry(i)
            .or_insert_with(|| {
                ctx.load_texture(
                    format!("test-{i}"),
                    super::data_image(data, i),
                    TextureOptions::NEAREST,
                )
            })
            .clone()
    }

    pub fn ui(&mut self, ui: &mut egui::Ui) {
        let listed = self.listed();
        let pages = listed.len().div_ceil(PAGE).max(1);
        self.page = self.page.min(pages - 1);
        ui.horizontal(|ui| {
            ui.label(format!("{} — test split", self.data.source));
            ui.separator();
            ui.selectable_value(&mut self.filter, Filter::All, "All images");
            let wrong = format!("Misclassified only ({})", self.done - self.correct);
            ui.selectable_value(&mut self.filter, Filter::Misclassified, wrong);
            ui.separator();
            if ui
                .add_enabled(self.page > 0, egui::Button::new("< Previous"))
                .clicked()
            {
                self.page -= 1;
            }
            let from = self.page * PAGE;
            let to = ((self.page + 1) * PAGE).min(listed.len());
            if listed.is_empty() {
                ui.label("no images");
            } else {
                ui.label(format!(
                    "{}–{} of {} (page {} / {pages})",
                    from + 1,
                    to,
                    listed.len(),
                    self.page + 1
                ));
            }
            if ui
                .add_enabled(self.page + 1 < pages, egui::Button::new("Next >"))
                .clicked()
            {
                self.page += 1;
            }
        });
        ui.separator();
        // Keep only this page's textures: memory stays bounded however far one pages.
        let shown: Vec<usize> = listed
            .iter()
            .copied()
            .skip(self.page * PAGE)
            .take(PAGE)
            .collect();
        self.textures.retain(|k, _| shown.contains(k));
        egui::ScrollArea::vertical()
            .auto_shrink([false, false])
            .show(ui, |ui| {
                ui.spacing_mut().item_spacing = vec2(6.0, 6.0);
                // Tile width: the image, the frame's margin and stroke, and the spacing.
                let tile = SIDE as f32 * SCALE + 2.0 * 4.0 + 2.0 * 2.0 + 6.0;
                let cols = ((ui.available_width() / tile).floor() as usize).max(1);
                for row in shown.chunks(cols) {
                    ui.horizontal(|ui| {
                        for &i in row {
                            self.tile_ui(ui, i);
                        }
                    });
                }
            });
    }

    fn tile_ui(&mut self, ui: &mut egui::Ui, i: usize) {
        let tex = self.texture(ui.ctx(), i);
        let label = self.data.labels[i] as usize;
        let pred = self.predictions[i];
        let wrong = self.is_wrong(i);
        let stroke = if wrong {
            Stroke::new(2.0, ui.visuals().error_fg_color)
        } else {
            Stroke::new(1.0, ui.visuals().widgets.noninteractive.bg_stroke.color)
        };
        egui::Frame::group(ui.style())
            .stroke(stroke)
            .inner_margin(4.0)
            .show(ui, |ui| {
                ui.set_width(SIDE as f32 * SCALE);
                ui.vertical(|ui| {
                    let side = SIDE as f32 * SCALE;
                    let img = egui::Image::from_texture(&tex)
                        .fit_to_exact_size(vec2(side, side))
                        .alt_text(format!("test image {i}, label {label}"));
                    ui.add(img).on_hover_text(format!(
                        "test image #{i}\ntrue label {}{}",
                        super::class_name(&self.data.classes, label),
                        match pred {
                            Some((p, c)) => format!(
                                "\npredicted {} with p = {c:.5}",
                                super::class_name(&self.data.classes, p)
                            ),
                            None => String::new(),
                        }
                    ));
                    match pred {
                        Some((p, c)) => {
                            let color = if wrong {
                                ui.visuals().error_fg_color
                            } else {
                                ui.visuals().text_color()
                            };
                            ui.label(
                                RichText::new(format!(
                                    "{} · {:.2}%",
                                    super::class_name(&self.data.classes, p),
                                    c * 100.0
                                ))
                                .color(color),
                            );
                            if wrong {
                                ui.small(format!("true {label}"));
                            }
                        }
                        None => {
                            ui.weak("…");
                        }
                    }
                });
            });
    }
}
