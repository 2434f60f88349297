//! The enlarged view of one image: the image, its probabilities, and its nearest training
//! image at each tap of the cost.

use super::grid::prob_bars_ui;
#[allow(unused_imports)]
use super::*;

impl RunView {
    /// The texture of training image `index` (uploaded once, kept while shown).
    pub(super) fn train_texture(
        &mut self,
        ctx: &egui::Context,
        index: u32,
    ) -> Option<TextureHandle> {
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
                    let img = crate::app::data_image(train, index as usize);
                    ctx.load_texture(format!("train-{index}"), img, TextureOptions::NEAREST)
                })
                .clone(),
        )
    }

    /// The enlarged view of one image: large, its ten probabilities, and its nearest training
    /// image (pixel space) with the distance, plus the nearest at each conv tap.
    pub(super) fn enlarged_ui(&mut self, ctx: &egui::Context) {
        let (Some(row), Some(s)) = (self.enlarged, &self.snapshot) else {
            return;
        };
        if row >= s.probs.len() {
            self.enlarged = None;
            return;
        }
        let label = s.labels[row / s.batch];
        let nearest = s.nearest[row].clone();
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
        egui::Window::new(format!(
            "{} (label {label}), image {}",
            self.train.class_name(label as usize),
            row % s.batch
        ))
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
                let text = format!(
                    "{:>7}: {p:.6}",
                    crate::app::class_name(&self.train.classes, k)
                );
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
                    let tap = s.tap_names.get(*k).map_or("?", String::as_str);
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
