//! The one font of the exported images (report.png's text, the contact sheets' titles): Hack,
//! the monospace font egui bundles, compiled into the binary, so nothing is read from the
//! system or downloaded at run time. Text is rasterised antialiased with ab_glyph.

use ab_glyph::{Font, FontRef, OutlinedGlyph, PxScale, Rect, ScaleFont, point};
use image::GrayImage;

/// The font file (TrueType), as `epaint_default_fonts` embeds it for egui.
pub const FONT_BYTES: &[u8] = epaint_default_fonts::HACK_REGULAR;

/// The embedded font could not be parsed (a broken build, never an input's fault).
#[derive(Debug, thiserror::Error)]
#[error("the embedded font (Hack, from epaint_default_fonts) cannot be read: {0}")]
pub struct FontError(#[from] ab_glyph::InvalidFont);

/// The embedded font, parsed (cheap: the tables are read in place).
pub fn font() -> Result<FontRef<'static>, FontError> {
    Ok(FontRef::try_from_slice(FONT_BYTES)?)
}

/// The outlines of `text` laid out on one line at `size` pixels per em, the pen starting at
/// (0, ascent) so the line's top is y = 0; characters without an outline (spaces) only move
/// the pen.
fn layout(font: &FontRef<'_>, text: &str, size: f32) -> Vec<OutlinedGlyph> {
    let scaled = font.as_scaled(PxScale::from(size));
    let mut caret = 0.0;
    let mut prev = None;
    let mut glyphs = Vec::new();
    for c in text.chars() {
        let id = scaled.glyph_id(c);
        if let Some(p) = prev {
            caret += scaled.kern(p, id);
        }
        let glyph = id.with_scale_and_position(size, point(caret, scaled.ascent()));
        caret += scaled.h_advance(id);
        prev = Some(id);
        if let Some(outline) = font.outline_glyph(glyph) {
            glyphs.push(outline);
        }
    }
    glyphs
}

/// The pixel box the glyphs ink, if any.
fn ink_bounds(glyphs: &[OutlinedGlyph]) -> Option<Rect> {
    glyphs.iter().map(|g| g.px_bounds()).reduce(|a, b| Rect {
        min: point(a.min.x.min(b.min.x), a.min.y.min(b.min.y)),
        max: point(a.max.x.max(b.max.x), a.max.y.max(b.max.y)),
    })
}

/// Draws `text` at `size` pixels per em in grey `ink`, antialiased (each pixel moves toward
/// `ink` by the glyph's coverage of it), with the box it inks centred on `centre`, shifted by
/// whole pixels so the glyphs stay as crisp as the rasteriser made them. Pixels outside the
/// image are skipped.
pub fn draw_text_centred(
    img: &mut GrayImage,
    font: &FontRef<'_>,
    text: &str,
    size: f32,
    centre: (f32, f32),
    ink: u8,
) {
    let glyphs = layout(font, text, size);
    let Some(bounds) = ink_bounds(&glyphs) else {
        return;
    };
    let dx = (centre.0 - (bounds.min.x + bounds.max.x) / 2.0).round() as i64;
    let dy = (centre.1 - (bounds.min.y + bounds.max.y) / 2.0).round() as i64;
    let (w, h) = (i64::from(img.width()), i64::from(img.height()));
    for glyph in &glyphs {
        let b = glyph.px_bounds();
        glyph.draw(|gx, gy, coverage| {
            let x = b.min.x as i64 + i64::from(gx) + dx;
            let y = b.min.y as i64 + i64::from(gy) + dy;
            if (0..w).contains(&x) && (0..h).contains(&y) {
                let p = img.get_pixel_mut(x as u32, y as u32);
                let old = f32::from(p[0]);
                let new = old + (f32::from(ink) - old) * coverage.clamp(0.0, 1.0);
                p[0] = new.round() as u8;
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use image::Luma;

    #[test]
    fn text_is_centred_and_antialiased() {
        let font = font().unwrap();
        let mut img = GrayImage::from_pixel(60, 30, Luma([255]));
        draw_text_centred(&mut img, &font, "0.5", 16.0, (30.0, 15.0), 0);
        let inked: Vec<(u32, u32, u8)> = img
            .enumerate_pixels()
            .filter(|(_, _, p)| p[0] < 255)
            .map(|(x, y, p)| (x, y, p[0]))
            .collect();
        assert!(inked.iter().any(|&(_, _, v)| v < 64), "solid strokes");
        assert!(inked.iter().any(|&(_, _, v)| v > 128), "antialiased edges");
        let (x0, x1) = (
            inked.iter().map(|p| p.0).min(),
            inked.iter().map(|p| p.0).max(),
        );
        let (y0, y1) = (
            inked.iter().map(|p| p.1).min(),
            inked.iter().map(|p| p.1).max(),
        );
        let (x0, x1, y0, y1) = (x0.unwrap(), x1.unwrap(), y0.unwrap(), y1.unwrap());
        // Centred on (30, 15) to a pixel or two (the box is whole pixels, the shift rounded).
        assert!((x0 + x1).abs_diff(60) <= 2, "{x0}..{x1}");
        assert!((y0 + y1).abs_diff(30) <= 2, "{y0}..{y1}");
        // Nothing drawn for a text without outlines; text past the edges is cut, not a panic.
        let before = img.clone();
        draw_text_centred(&mut img, &font, "  ", 16.0, (30.0, 15.0), 0);
        assert_eq!(img, before);
        draw_text_centred(&mut img, &font, "88888888", 40.0, (0.0, 0.0), 0);
        assert!((0..30).any(|x| (0..14).any(|y| img.get_pixel(x, y)[0] < 128)));
    }
}
