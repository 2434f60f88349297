//! The contact sheet of a run (the post's figure): one row per label, each image titled with
//! p(label) to 5 decimals, drawn with a small built-in bitmap font for digits.

use image::{GrayImage, Luma};

/// 3×5 glyphs, one row of 3 bits per line: digits, '.', '-', upper-case letters (lower case
/// is drawn as upper case) and a little punctuation, enough for titles and axis labels.
const GLYPHS: &[(char, [u8; 5])] = &[
    ('0', [0b111, 0b101, 0b101, 0b101, 0b111]),
    ('1', [0b010, 0b110, 0b010, 0b010, 0b111]),
    ('2', [0b111, 0b001, 0b111, 0b100, 0b111]),
    ('3', [0b111, 0b001, 0b111, 0b001, 0b111]),
    ('4', [0b101, 0b101, 0b111, 0b001, 0b001]),
    ('5', [0b111, 0b100, 0b111, 0b001, 0b111]),
    ('6', [0b111, 0b100, 0b111, 0b101, 0b111]),
    ('7', [0b111, 0b001, 0b010, 0b010, 0b010]),
    ('8', [0b111, 0b101, 0b111, 0b101, 0b111]),
    ('9', [0b111, 0b101, 0b111, 0b001, 0b111]),
    ('.', [0b000, 0b000, 0b000, 0b000, 0b010]),
    ('-', [0b000, 0b000, 0b111, 0b000, 0b000]),
    ('A', [0b010, 0b101, 0b111, 0b101, 0b101]),
    ('B', [0b110, 0b101, 0b110, 0b101, 0b110]),
    ('C', [0b011, 0b100, 0b100, 0b100, 0b011]),
    ('D', [0b110, 0b101, 0b101, 0b101, 0b110]),
    ('E', [0b111, 0b100, 0b110, 0b100, 0b111]),
    ('F', [0b111, 0b100, 0b110, 0b100, 0b100]),
    ('G', [0b011, 0b100, 0b101, 0b101, 0b011]),
    ('H', [0b101, 0b101, 0b111, 0b101, 0b101]),
    ('I', [0b111, 0b010, 0b010, 0b010, 0b111]),
    ('J', [0b001, 0b001, 0b001, 0b101, 0b010]),
    ('K', [0b101, 0b101, 0b110, 0b101, 0b101]),
    ('L', [0b100, 0b100, 0b100, 0b100, 0b111]),
    ('M', [0b101, 0b111, 0b111, 0b101, 0b101]),
    ('N', [0b110, 0b101, 0b101, 0b101, 0b101]),
    ('O', [0b010, 0b101, 0b101, 0b101, 0b010]),
    ('P', [0b110, 0b101, 0b110, 0b100, 0b100]),
    ('Q', [0b010, 0b101, 0b101, 0b110, 0b011]),
    ('R', [0b110, 0b101, 0b110, 0b101, 0b101]),
    ('S', [0b011, 0b100, 0b010, 0b001, 0b110]),
    ('T', [0b111, 0b010, 0b010, 0b010, 0b010]),
    ('U', [0b101, 0b101, 0b101, 0b101, 0b111]),
    ('V', [0b101, 0b101, 0b101, 0b101, 0b010]),
    ('W', [0b101, 0b101, 0b111, 0b111, 0b101]),
    ('X', [0b101, 0b101, 0b010, 0b101, 0b101]),
    ('Y', [0b101, 0b101, 0b010, 0b010, 0b010]),
    ('Z', [0b111, 0b001, 0b010, 0b100, 0b111]),
    ('%', [0b101, 0b001, 0b010, 0b100, 0b101]),
    (':', [0b000, 0b010, 0b000, 0b010, 0b000]),
    ('/', [0b001, 0b001, 0b010, 0b100, 0b100]),
    ('(', [0b010, 0b100, 0b100, 0b100, 0b010]),
    (')', [0b010, 0b001, 0b001, 0b001, 0b010]),
    ('=', [0b000, 0b111, 0b000, 0b111, 0b000]),
];

/// Draws `text` with its top-left corner at (x, y), each font pixel `scale`×`scale`.
fn draw_text(img: &mut GrayImage, text: &str, x: u32, y: u32, scale: u32, ink: u8) {
    draw_text_with(text, x, y, scale, &mut |px, py| {
        if px < img.width() && py < img.height() {
            img.put_pixel(px, py, Luma([ink]));
        }
    });
}

/// Calls `put` for every pixel of `text` drawn with its top-left corner at (x, y), each font
/// pixel `scale`×`scale` (unknown characters are blank).
pub fn draw_text_with(text: &str, x: u32, y: u32, scale: u32, put: &mut dyn FnMut(u32, u32)) {
    let mut cx = x;
    for ch in text.chars().map(|c| c.to_ascii_uppercase()) {
        if let Some((_, rows)) = GLYPHS.iter().find(|(c, _)| *c == ch) {
            for (ry, bits) in rows.iter().enumerate() {
                for rx in 0..3 {
                    if bits & (0b100 >> rx) != 0 {
                        for dy in 0..scale {
                            for dx in 0..scale {
                                put(cx + rx * scale + dx, y + ry as u32 * scale + dy);
                            }
                        }
                    }
                }
            }
        }
        cx += 4 * scale;
    }
}

/// Width in pixels of `text` drawn at `scale`.
pub fn text_width(text: &str, scale: u32) -> u32 {
    (text.chars().count() as u32 * 4).saturating_sub(1) * scale
}

/// One tile of the sheet.
#[derive(Clone)]
pub struct SheetTile<'a> {
    /// 784 values; clamped to [0, 1] for display.
    pub pixels: &'a [f32],
    pub p_label: f32,
}

const ZOOM: u32 = 3;
const TILE: u32 = 28 * ZOOM;
const GAP: u32 = 10;
const TITLE: u32 = 16;
const LEFT: u32 = 30;

/// Renders rows of (label, tiles) on a white background.
pub fn render_sheet(rows: &[(u8, Vec<SheetTile>)]) -> GrayImage {
    let cols = rows.iter().map(|(_, t)| t.len()).max().unwrap_or(0) as u32;
    let w = LEFT + cols * (TILE + GAP) + GAP;
    let h = rows.len() as u32 * (TILE + TITLE + GAP) + GAP;
    let mut img = GrayImage::from_pixel(w.max(1), h.max(1), Luma([255]));
    for (r, (label, tiles)) in rows.iter().enumerate() {
        let top = GAP + r as u32 * (TILE + TITLE + GAP);
        draw_text(
            &mut img,
            &label.to_string(),
            8,
            top + TITLE + TILE / 2 - 7,
            3,
            0,
        );
        for (c, tile) in tiles.iter().enumerate() {
            let left = LEFT + GAP + c as u32 * (TILE + GAP);
            let title = format!("{:.5}", tile.p_label);
            let tx = left + TILE.saturating_sub(text_width(&title, 2)) / 2;
            draw_text(&mut img, &title, tx, top + 2, 2, 0);
            for y in 0..28u32 {
                for x in 0..28u32 {
                    let v = tile.pixels[(y * 28 + x) as usize];
                    let g = to_u8(v);
                    for dy in 0..ZOOM {
                        for dx in 0..ZOOM {
                            img.put_pixel(
                                left + x * ZOOM + dx,
                                top + TITLE + y * ZOOM + dy,
                                Luma([g]),
                            );
                        }
                    }
                }
            }
        }
    }
    img
}

pub use crate::data::to_u8;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sheet_has_one_row_per_label_and_draws_titles() {
        let white = vec![1.0f32; 784];
        let rows = vec![
            (
                3u8,
                vec![SheetTile {
                    pixels: &white,
                    p_label: 0.99912,
                }],
            ),
            (
                7u8,
                vec![
                    SheetTile {
                        pixels: &white,
                        p_label: 0.5
                    };
                    2
                ],
            ),
        ];
        let img = render_sheet(&rows);
        assert_eq!(img.width(), LEFT + 2 * (TILE + GAP) + GAP);
        assert_eq!(img.height(), 2 * (TILE + TITLE + GAP) + GAP);
        // Some ink in the first title band, none where no tile is (row 0, column 1).
        let ink = |x0: u32, y0: u32, w: u32, h: u32| {
            (x0..x0 + w).any(|x| (y0..y0 + h).any(|y| img.get_pixel(x, y)[0] < 128))
        };
        assert!(ink(LEFT + GAP, GAP, TILE, TITLE));
        assert!(!ink(LEFT + 2 * GAP + TILE, GAP, TILE, TITLE + TILE));
        assert_eq!(to_u8(1.7), 255);
        assert_eq!(to_u8(-0.2), 0);
        assert_eq!(to_u8(0.5), 128);
    }
}
