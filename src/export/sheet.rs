//! The contact sheet of a run (the post's figure): one row per class, each image titled with
//! p(label) to 5 decimals, in the embedded font (see [`super::font`]); grey or colour as the
//! images are.

use image::{DynamicImage, GrayImage, Luma, Rgb};

use super::font::{FontError, draw_text_centred, font};
use crate::net::Shape;

/// One tile of the sheet.
#[derive(Clone)]
pub struct SheetTile<'a> {
    /// One image (h×w×c values, channels last); clamped to [0, 1] for display.
    pub pixels: &'a [f32],
    pub p_label: f32,
}

const ZOOM: u32 = 3;
/// A tile's side: an MNIST image at 3×; other sizes are scaled to it (nearest pixel).
const TILE: u32 = 28 * ZOOM;
const GAP: u32 = 10;
const TITLE: u32 = 16;
/// The left margin when the row names are digits.
const LEFT: u32 = 30;
/// Pixels per em of a tile's title: its seven characters (`0.99912`, Hack's advance is 0.6 em)
/// take 55 of the tile's 84 pixels and its digits 10 of the title band's 16.
const TITLE_SIZE: f32 = 13.0;
/// Pixels per em of a row's name: a digit about 16 pixels tall, 13 wide, in the left margin.
const LABEL_SIZE: f32 = 22.0;
/// Pixels per em of a row's name longer than two characters (a class name).
const NAME_SIZE: f32 = 13.0;

/// The size and left margin of row names `names`.
fn name_layout<'a>(names: impl Iterator<Item = &'a str>) -> (f32, u32) {
    let longest = names.map(|n| n.chars().count()).max().unwrap_or(1);
    if longest <= 2 {
        (LABEL_SIZE, LEFT)
    } else {
        // Hack's advance is 0.6 em.
        let width = (longest as f32 * 0.6 * NAME_SIZE).ceil() as u32;
        (NAME_SIZE, LEFT.max(width + GAP))
    }
}

/// Renders rows of (class name, tiles) of images of `shape` on a white background: grey for
/// grey images, RGB for colour ones.
pub fn render_sheet(
    rows: &[(String, Vec<SheetTile>)],
    shape: Shape,
) -> Result<DynamicImage, FontError> {
    let font = font()?;
    let cols = rows.iter().map(|(_, t)| t.len()).max().unwrap_or(0) as u32;
    let (name_size, left_margin) = name_layout(rows.iter().map(|(n, _)| n.as_str()));
    let w = left_margin + cols * (TILE + GAP) + GAP;
    let h = rows.len() as u32 * (TILE + TITLE + GAP) + GAP;
    let mut img = GrayImage::from_pixel(w.max(1), h.max(1), Luma([255]));
    // Where each tile goes, for the colour pass.
    let mut placed: Vec<(u32, u32, &[f32])> = Vec::new();
    for (r, (name, tiles)) in rows.iter().enumerate() {
        let top = GAP + r as u32 * (TILE + TITLE + GAP);
        draw_text_centred(
            &mut img,
            &font,
            name,
            name_size,
            (
                (left_margin + GAP) as f32 / 2.0,
                (top + TITLE + TILE / 2) as f32,
            ),
            0,
        );
        for (c, tile) in tiles.iter().enumerate() {
            let left = left_margin + GAP + c as u32 * (TILE + GAP);
            draw_text_centred(
                &mut img,
                &font,
                &format!("{:.5}", tile.p_label),
                TITLE_SIZE,
                ((left + TILE / 2) as f32, (top + TITLE / 2) as f32),
                0,
            );
            placed.push((left, top + TITLE, tile.pixels));
        }
    }
    // Each tile pixel samples its nearest image pixel.
    let (iw, ih, ch) = (shape.w.max(1), shape.h.max(1), shape.c.max(1));
    let at = |x: u32, y: u32| {
        ((y as usize * ih / TILE as usize) * iw + x as usize * iw / TILE as usize) * ch
    };
    if ch == 1 {
        for (left, top, px) in placed {
            for y in 0..TILE {
                for x in 0..TILE {
                    let g = px.get(at(x, y)).map_or(0, |&v| to_u8(v));
                    img.put_pixel(left + x, top + y, Luma([g]));
                }
            }
        }
        return Ok(DynamicImage::ImageLuma8(img));
    }
    let mut rgb = DynamicImage::ImageLuma8(img).to_rgb8();
    for (left, top, px) in placed {
        for y in 0..TILE {
            for x in 0..TILE {
                let i = at(x, y);
                let v = |k: usize| px.get(i + k).map_or(0, |&v| to_u8(v));
                rgb.put_pixel(left + x, top + y, Rgb([v(0), v(1), v(2)]));
            }
        }
    }
    Ok(DynamicImage::ImageRgb8(rgb))
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
                "3".to_string(),
                vec![SheetTile {
                    pixels: &white,
                    p_label: 0.99912,
                }],
            ),
            (
                "7".to_string(),
                vec![
                    SheetTile {
                        pixels: &white,
                        p_label: 0.5
                    };
                    2
                ],
            ),
        ];
        let img = render_sheet(&rows, crate::data::digits_shape())
            .unwrap()
            .to_luma8();
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
