//! The contact sheet of a run (the post's figure): one row per label, each image titled with
//! p(label) to 5 decimals, in the embedded font (see [`super::font`]).

use image::{GrayImage, Luma};

use super::font::{FontError, draw_text_centred, font};

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
/// Pixels per em of a tile's title: its seven characters (`0.99912`, Hack's advance is 0.6 em)
/// take 55 of the tile's 84 pixels and its digits 10 of the title band's 16.
const TITLE_SIZE: f32 = 13.0;
/// Pixels per em of a row's label: a digit about 16 pixels tall, 13 wide, in the left margin.
const LABEL_SIZE: f32 = 22.0;

/// Renders rows of (label, tiles) on a white background.
pub fn render_sheet(rows: &[(u8, Vec<SheetTile>)]) -> Result<GrayImage, FontError> {
    let font = font()?;
    let cols = rows.iter().map(|(_, t)| t.len()).max().unwrap_or(0) as u32;
    let w = LEFT + cols * (TILE + GAP) + GAP;
    let h = rows.len() as u32 * (TILE + TITLE + GAP) + GAP;
    let mut img = GrayImage::from_pixel(w.max(1), h.max(1), Luma([255]));
    for (r, (label, tiles)) in rows.iter().enumerate() {
        let top = GAP + r as u32 * (TILE + TITLE + GAP);
        draw_text_centred(
            &mut img,
            &font,
            &label.to_string(),
            LABEL_SIZE,
            ((LEFT + GAP) as f32 / 2.0, (top + TITLE + TILE / 2) as f32),
            0,
        );
        for (c, tile) in tiles.iter().enumerate() {
            let left = LEFT + GAP + c as u32 * (TILE + GAP);
            draw_text_centred(
                &mut img,
                &font,
                &format!("{:.5}", tile.p_label),
                TITLE_SIZE,
                ((left + TILE / 2) as f32, (top + TITLE / 2) as f32),
                0,
            );
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
    Ok(img)
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
        let img = render_sheet(&rows).unwrap();
        assert_eq!(img.width(), LEFT + 2 * (TILE + GAP) + GAP);
        assert_eq!(img.height(), 2 * (TILE + TITLE + GAP) + GAP);
        // Ink (antialiased glyphs: pixels past half-way to black) in the title bands of row 0,
        // column 0 and of row 1, column 1, and beside each row (its label); none where no tile
        // is (row 0, column 1).
        let ink = |x0: u32, y0: u32, w: u32, h: u32| {
            (x0..x0 + w).any(|x| (y0..y0 + h).any(|y| img.get_pixel(x, y)[0] < 128))
        };
        let row1 = GAP + TILE + TITLE + GAP;
        assert!(ink(LEFT + GAP, GAP, TILE, TITLE));
        assert!(ink(LEFT + 2 * GAP + TILE, row1, TILE, TITLE));
        assert!(ink(0, GAP + TITLE, LEFT + GAP, TILE));
        assert!(ink(0, row1 + TITLE, LEFT + GAP, TILE));
        assert!(!ink(LEFT + 2 * GAP + TILE, GAP, TILE, TITLE + TILE));
        assert_eq!(to_u8(1.7), 255);
        assert_eq!(to_u8(-0.2), 0);
        assert_eq!(to_u8(0.5), 128);
    }
}
