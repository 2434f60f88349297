//! The image grid: one row per label, each tile an image of the run (from one texture atlas
//! per snapshot) with its caption, selection, threshold mark, flash and stall mark.

#[allow(unused_imports)]
use super::*;

impl RunView {
    /// Uploads the newest snapshot's images, once per snapshot (not once per frame).
    pub(super) fn update_textures(&mut self, ctx: &egui::Context) {
        if !std::mem::take(&mut self.is_dirty) {
            return;
        }
        let Some(s) = &self.snapshot else { return };
        let shape = self.image_shape;
        let (tw, th, px_len) = (shape.w, shape.h, shape.len().max(1));
        let pixels = tw * th;
        let n = s.images.len() / px_len;
        let mask = match (&s.saliency, self.show_saliency) {
            (Some(sal), true) => Some(top_k_mask(
                &per_pixel(sal, shape.c),
                pixels,
                self.saliency_k,
            )),
            _ => None,
        };
        let rows = n.div_ceil(ATLAS_COLS).max(1);
        let (w, h) = (ATLAS_COLS * tw, rows * th);
        let mut rgb = vec![0u8; w * h * 3];
        let no_mask = vec![false; pixels];
        for i in 0..n {
            let px = &s.images[i * px_len..(i + 1) * px_len];
            let m = match &mask {
                Some(m) => &m[i * pixels..(i + 1) * pixels],
                None => &no_mask[..],
            };
            let tile = overlay_rgb(px, shape.c, m);
            let (x0, y0) = ((i % ATLAS_COLS) * tw, (i / ATLAS_COLS) * th);
            for y in 0..th {
                let dst = ((y0 + y) * w + x0) * 3;
                rgb[dst..dst + tw * 3].copy_from_slice(&tile[y * tw * 3..(y + 1) * tw * 3]);
            }
        }
        let img = egui::ColorImage::from_rgb([w, h], &rgb);
        match &mut self.atlas {
            Some(t) if self.atlas_size == [w, h] => t.set(img, TextureOptions::NEAREST),
            _ => self.atlas = Some(ctx.load_texture("run-images", img, TextureOptions::NEAREST)),
        }
        self.atlas_size = [w, h];
    }

    /// The width of the rows' headings: the digits' 28 px, or room for the longest class
    /// name of `labels` (at most 140 px).
    pub(super) fn row_heading(&self, labels: &[u8]) -> f32 {
        let longest = labels
            .iter()
            .map(|&l| self.train.class_name(l as usize).chars().count())
            .max()
            .unwrap_or(1);
        if longest <= 2 {
            ROW_HEADING
        } else {
            (longest as f32 * NAME_CHAR + 8.0).clamp(ROW_HEADING, 140.0)
        }
    }

    /// Where image `row` of the snapshot lies in the atlas (texture coordinates).
    pub(super) fn atlas_uv(&self, row: usize) -> Option<egui::Rect> {
        self.atlas.as_ref()?;
        let [w, h] = self.atlas_size;
        let (tw, th) = (self.image_shape.w, self.image_shape.h);
        if (row / ATLAS_COLS + 1) * th > h {
            return None;
        }
        let (x0, y0) = ((row % ATLAS_COLS) * tw, (row / ATLAS_COLS) * th);
        Some(egui::Rect::from_min_size(
            egui::pos2(x0 as f32 / w as f32, y0 as f32 / h as f32),
            vec2(tw as f32 / w as f32, th as f32 / h as f32),
        ))
    }

    /// Image `row` of the snapshot, from the atlas.
    pub(super) fn run_image(&self, row: usize) -> Option<egui::Image<'static>> {
        let atlas = self.atlas.as_ref()?;
        let uv = self.atlas_uv(row)?;
        let tex = egui::load::SizedTexture::new(atlas.id(), vec2(SIDE as f32, SIDE as f32));
        Some(egui::Image::from_texture(tex).uv(uv))
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

    /// Each tile's nearest training image (pixel space) with its texture, when shown.
    fn nearest_tiles(
        &mut self,
        ctx: &egui::Context,
    ) -> Vec<Option<(TextureHandle, crate::backwork::cost::Nearest)>> {
        let pixel_nearest: Vec<Option<crate::backwork::cost::Nearest>> = match &self.snapshot {
            Some(s) if self.show_nearest => s.nearest.iter().map(|n| n[0]).collect(),
            _ => Vec::new(),
        };
        let nearest_tiles: Vec<Option<(TextureHandle, crate::backwork::cost::Nearest)>> =
            pixel_nearest
                .into_iter()
                .map(|n| n.and_then(|n| self.train_texture(ctx, n.index).map(|t| (t, n))))
                .collect();
        nearest_tiles
    }

    /// Before the first snapshot: the reference sets' progress, or how to start.
    fn waiting_ui(&self, ui: &mut egui::Ui) {
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
    }

    /// What each tile of snapshot `s` shows about its image.
    fn tile_states(&self, s: &Snapshot) -> Vec<TileState> {
        (0..s.probs.len())
            .map(|row| {
                let label = s.labels[row / s.batch.max(1)];
                let p = s.probs[row].get(label as usize).copied().unwrap_or(0.0);
                TileState {
                    row,
                    label,
                    index: row % s.batch.max(1),
                    p,
                    passed: p > self.settings.threshold,
                    selected: self.selected.contains(&row),
                    flashing: self.is_flashing(row),
                    stalled: s.stalled.get(row).copied().unwrap_or(false),
                    reinits: s.reinits[row],
                }
            })
            .collect()
    }

    pub fn grid_ui(&mut self, ui: &mut egui::Ui) {
        let nearest_tiles = self.nearest_tiles(ui.ctx());
        let Some(s) = &self.snapshot else {
            self.waiting_ui(ui);
            return;
        };
        let shift = ui.input(|i| i.modifiers.shift);
        // As large as lets a row of `batch` tiles fit the width, within bounds.
        let heading = self.row_heading(&s.labels);
        let per_tile = (ui.available_width() - heading) / s.batch.max(1) as f32 - TILE_CHROME;
        let side = tile_scale(per_tile) * SIDE as f32;
        let layout = CaptionLayout::new(ui, side);
        let tiles = self.tile_states(s);
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
                        let name = self.train.class_name(label as usize);
                        // Digits as headings (the original's look); class names in body text.
                        let text = if name.chars().count() <= 2 {
                            RichText::new(name.clone()).heading()
                        } else {
                            RichText::new(name.clone())
                        };
                        ui.add_sized(vec2(heading - 8.0, 20.0), egui::Label::new(text).truncate())
                            .on_hover_text(format!("{name} (label {label})"));
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
pub(super) fn prob_bars_ui(ui: &mut egui::Ui, probs: &[f32], target: usize) {
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
