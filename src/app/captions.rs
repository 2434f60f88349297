//! Every tile's caption (its p(label) to 5 decimals, its ten probabilities as bars, and its
//! status line) drawn on the CPU into one texture at screen resolution, with egui's own
//! glyphs. A tile then costs the renderer two quads (image and caption) instead of about
//! fifty: software rendering (Mesa llvmpipe) pays a few microseconds per triangle, and the
//! 80 captions drawn as text and bars cost about 10 ms of CPU a frame (measured by hiding
//! each part; README, "Responsiveness").

use std::hash::{Hash, Hasher};

use egui::{Color32, ColorImage, FontId, TextureHandle, TextureOptions, vec2};

/// Captions per row of the texture.
const COLS: usize = 16;

/// A probability as a caption (and its accessible label) shows it: 5 decimals.
pub fn p_text(p: f32) -> String {
    format!("{p:.5}")
}

/// What one caption shows.
pub struct Caption<'a> {
    pub p: f32,
    pub probs: &'a [f32],
    pub target: usize,
    pub status: &'a str,
    pub status_color: Color32,
}

/// Where the parts of a caption lie, in points from its top left corner.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct CaptionLayout {
    pub width: f32,
    pub text_h: f32,
    pub bars_h: f32,
    pub status_h: f32,
    pub gap: f32,
}

impl CaptionLayout {
    /// The layout for a tile `width` points wide, with `ui`'s fonts and spacing. Every part
    /// is whole physical pixels, so the texture maps onto the screen pixel for pixel.
    pub fn new(ui: &egui::Ui, width: f32) -> Self {
        let ppp = ui.ctx().pixels_per_point();
        let whole = |v: f32| (v * ppp).ceil() / ppp;
        Self {
            width: whole(width),
            text_h: whole(ui.text_style_height(&egui::TextStyle::Monospace)),
            bars_h: whole(14.0),
            status_h: whole(ui.text_style_height(&egui::TextStyle::Small)),
            gap: whole(ui.spacing().item_spacing.y),
        }
    }

    pub fn height(&self) -> f32 {
        self.text_h + self.bars_h + self.status_h + 2.0 * self.gap
    }

    /// The p(label) line, the bars and the status line, relative to the caption's corner.
    pub fn parts(&self) -> [egui::Rect; 3] {
        let row =
            |y: f32, h: f32| egui::Rect::from_min_size(egui::pos2(0.0, y), vec2(self.width, h));
        let bars_y = self.text_h + self.gap;
        let status_y = bars_y + self.bars_h + self.gap;
        [
            row(0.0, self.text_h),
            row(bars_y, self.bars_h),
            row(status_y, self.status_h),
        ]
    }
}

/// The captions' texture and what it was drawn from.
#[derive(Default)]
pub struct Captions {
    texture: Option<TextureHandle>,
    size: [usize; 2],
    /// Hash of everything drawn; the texture is redrawn only when it changes.
    key: Option<u64>,
    cell: [usize; 2],
}

/// Premultiplied `src` over premultiplied `dst`.
fn over(dst: Color32, src: Color32) -> Color32 {
    let k = 255 - src.a() as u32;
    let mix = |d: u8, s: u8| (s as u32 + (d as u32 * k + 127) / 255).min(255) as u8;
    Color32::from_rgba_premultiplied(
        mix(dst.r(), src.r()),
        mix(dst.g(), src.g()),
        mix(dst.b(), src.b()),
        mix(dst.a(), src.a()),
    )
}

/// `color` (premultiplied) times a glyph texel, as egui's shader does.
fn tint(color: Color32, texel: Color32) -> Color32 {
    let m = |c: u8, t: u8| ((c as u32 * t as u32 + 127) / 255) as u8;
    Color32::from_rgba_premultiplied(
        m(color.r(), texel.r()),
        m(color.g(), texel.g()),
        m(color.b(), texel.b()),
        m(color.a(), texel.a()),
    )
}

impl Captions {
    /// The texture and where caption `i` lies in it (texture coordinates), once drawn.
    pub fn uv(&self, i: usize) -> Option<(egui::TextureId, egui::Rect)> {
        let t = self.texture.as_ref()?;
        let [w, h] = self.size;
        let [cw, ch] = self.cell;
        let (x, y) = ((i % COLS) * cw, (i / COLS) * ch);
        if (i / COLS + 1) * ch > h {
            return None;
        }
        let uv = egui::Rect::from_min_max(
            egui::pos2(x as f32 / w as f32, y as f32 / h as f32),
            egui::pos2((x + cw) as f32 / w as f32, (y + ch) as f32 / h as f32),
        );
        Some((t.id(), uv))
    }

    /// Redraws the texture if anything shown changed since the last call.
    pub fn update(&mut self, ui: &egui::Ui, layout: CaptionLayout, captions: &[Caption<'_>]) {
        let ppp = ui.ctx().pixels_per_point();
        let visuals = ui.visuals();
        // Text and the non-target bars in the text colour, as the labels they replace.
        let (text_color, bar_bg) = (visuals.text_color(), visuals.extreme_bg_color);
        let mut h = std::hash::DefaultHasher::new();
        ppp.to_bits().hash(&mut h);
        [
            layout.width,
            layout.text_h,
            layout.bars_h,
            layout.status_h,
            layout.gap,
        ]
        .map(f32::to_bits)
        .hash(&mut h);
        (text_color, bar_bg).hash(&mut h);
        for c in captions {
            c.p.to_bits().hash(&mut h);
            c.probs.iter().for_each(|p| p.to_bits().hash(&mut h));
            (c.target, c.status, c.status_color).hash(&mut h);
        }
        let key = h.finish();
        if self.key == Some(key) && self.texture.is_some() {
            return;
        }
        self.key = Some(key);
        let mono = egui::TextStyle::Monospace.resolve(ui.style());
        let small = egui::TextStyle::Small.resolve(ui.style());
        // egui's own glyphs, as egui lays them out: every text first (which puts any glyph
        // not yet in the font atlas there), then the atlas read once.
        let layout_text = |s: String, font: &FontId| {
            ui.ctx()
                .fonts_mut(|f| f.layout_no_wrap(s, font.clone(), Color32::WHITE))
        };
        // The p(label) line at the monospace size, smaller where a narrow tile would cut it
        // ("1.0000" of 0.99996, "0.999" of 0.99990 at the smallest tiles): every p has the
        // same digits, so one size fits them all.
        let p_width = layout_text(p_text(0.5), &mono).size().x;
        let p_font = if p_width > layout.width {
            FontId::monospace((mono.size * layout.width / p_width * 8.0).floor() / 8.0)
        } else {
            mono.clone()
        };
        let galleys: Vec<_> = captions
            .iter()
            .map(|c| {
                (
                    layout_text(p_text(c.p), &p_font),
                    layout_text(c.status.to_owned(), &small),
                )
            })
            .collect();
        let atlas = ui.ctx().fonts(|f| f.image());
        let cell = [
            (layout.width * ppp).ceil() as usize,
            (layout.height() * ppp).ceil() as usize,
        ];
        let rows = captions.len().div_ceil(COLS).max(1);
        let size = [COLS * cell[0], rows * cell[1]];
        let mut img = ColorImage::filled(size, Color32::TRANSPARENT);
        let [text_part, bars, status] = layout.parts();
        let px = |v: f32| (v * ppp).round() as i64;
        for (i, (c, (p_text, status_text))) in captions.iter().zip(&galleys).enumerate() {
            let (x0, y0) = ((i % COLS) * cell[0], (i / COLS) * cell[1]);
            let clip = [x0, y0, x0 + cell[0], y0 + cell[1]];
            let at = |r: egui::Rect| (x0 as i64 + px(r.left()), y0 as i64 + px(r.top()));
            draw_galley(
                &mut img,
                &atlas,
                clip,
                at(text_part),
                p_text,
                ppp,
                text_color,
            );
            // The bars: a dark strip, each class a bar from the bottom, the target green.
            let (bx, by) = at(bars);
            let (bw, bh) = (px(bars.width()), px(bars.height()));
            fill(&mut img, clip, [bx, by, bx + bw, by + bh], bar_bg);
            let n = c.probs.len().max(1) as i64;
            for (k, &p) in c.probs.iter().enumerate() {
                let (k, top) = (
                    k as i64,
                    (bh as f32 * (1.0 - p.clamp(0.0, 1.0))).round() as i64,
                );
                let (l, r) = (bx + bw * k / n, bx + bw * (k + 1) / n - 1);
                let color = if k as usize == c.target {
                    super::run::PASSED
                } else {
                    text_color
                };
                fill(&mut img, clip, [l, by + top, r, by + bh], color);
            }
            draw_galley(
                &mut img,
                &atlas,
                clip,
                at(status),
                status_text,
                ppp,
                c.status_color,
            );
        }
        match &mut self.texture {
            Some(t) if self.size == size && self.cell == cell => {
                t.set(img, TextureOptions::NEAREST)
            }
            _ => {
                self.texture = Some(ui.ctx().load_texture(
                    "tile-captions",
                    img,
                    TextureOptions::NEAREST,
                ))
            }
        }
        self.size = size;
        self.cell = cell;
    }
}

/// Fills `rect` = [left, top, right, bottom) (physical pixels), within `clip`.
fn fill(img: &mut ColorImage, clip: [usize; 4], rect: [i64; 4], color: Color32) {
    let c = |v: i64, lo: usize, hi: usize| v.clamp(lo as i64, hi as i64) as usize;
    let (l, r) = (c(rect[0], clip[0], clip[2]), c(rect[2], clip[0], clip[2]));
    let (t, b) = (c(rect[1], clip[1], clip[3]), c(rect[3], clip[1], clip[3]));
    let w = img.size[0];
    for y in t..b {
        img.pixels[y * w + l..y * w + r].fill(color);
    }
}

/// Draws `galley` with its top left corner at `at` (physical pixels), clipped, copying each
/// glyph's texels out of egui's font `atlas` tinted by `color`, as egui's renderer does.
fn draw_galley(
    img: &mut ColorImage,
    atlas: &ColorImage,
    clip: [usize; 4],
    at: (i64, i64),
    galley: &egui::Galley,
    ppp: f32,
    color: Color32,
) {
    for row in &galley.rows {
        for g in &row.glyphs {
            let uv = g.uv_rect;
            let pos = row.pos + g.pos.to_vec2() + uv.offset;
            let (x, y) = (
                at.0 + (pos.x * ppp).round() as i64,
                at.1 + (pos.y * ppp).round() as i64,
            );
            for ty in uv.min[1]..uv.max[1] {
                for tx in uv.min[0]..uv.max[0] {
                    let Some(&texel) = atlas.pixels.get(ty as usize * atlas.size[0] + tx as usize)
                    else {
                        continue;
                    };
                    let (px, py) = (x + (tx - uv.min[0]) as i64, y + (ty - uv.min[1]) as i64);
                    let inside = px >= clip[0] as i64
                        && py >= clip[1] as i64
                        && px < clip[2] as i64
                        && py < clip[3] as i64;
                    if texel.a() == 0 || !inside {
                        continue;
                    }
                    let dst = &mut img.pixels[py as usize * img.size[0] + px as usize];
                    *dst = over(*dst, tint(color, texel));
                }
            }
        }
    }
}
