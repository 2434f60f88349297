//! Writing results: run folders, images, sheets, reports and `.npy` files, from plain records.

pub mod font;
pub mod npy;
pub mod report;
pub mod run;
pub mod sheet;
pub mod worst;

/// Encodes 8-bit grey pixels as PNG bytes.
pub fn png_bytes(width: u32, height: u32, grey: &[u8]) -> Result<Vec<u8>, image::ImageError> {
    let img = image::GrayImage::from_raw(width, height, grey.to_vec()).ok_or_else(mismatch)?;
    let mut out = Vec::new();
    img.write_to(&mut std::io::Cursor::new(&mut out), image::ImageFormat::Png)?;
    Ok(out)
}

/// Encodes an image (grey or RGB) as PNG bytes.
pub fn image_png_bytes(img: &image::DynamicImage) -> Result<Vec<u8>, image::ImageError> {
    let mut out = Vec::new();
    img.write_to(&mut std::io::Cursor::new(&mut out), image::ImageFormat::Png)?;
    Ok(out)
}

/// Encodes one image of `shape` (values in [0, 1], channels last) as an 8-bit grey or RGB PNG.
pub fn shaped_png_bytes(
    shape: crate::net::Shape,
    pixels: &[f32],
) -> Result<Vec<u8>, image::ImageError> {
    let bytes: Vec<u8> = pixels.iter().map(|&v| sheet::to_u8(v)).collect();
    if shape.c == 3 {
        rgb_png_bytes(shape.w as u32, shape.h as u32, &bytes)
    } else {
        png_bytes(shape.w as u32, shape.h as u32, &bytes)
    }
}

/// Encodes 8-bit RGB pixels (3 bytes each) as PNG bytes.
pub fn rgb_png_bytes(width: u32, height: u32, rgb: &[u8]) -> Result<Vec<u8>, image::ImageError> {
    let img = image::RgbImage::from_raw(width, height, rgb.to_vec()).ok_or_else(mismatch)?;
    let mut out = Vec::new();
    img.write_to(&mut std::io::Cursor::new(&mut out), image::ImageFormat::Png)?;
    Ok(out)
}

fn mismatch() -> image::ImageError {
    image::ImageError::Parameter(image::error::ParameterError::from_kind(
        image::error::ParameterErrorKind::DimensionMismatch,
    ))
}

/// An image (784 values in [0, 1]) in grey with the pixels of `mask` in red: the saliency
/// overlay, as RGB bytes.
pub fn overlay_rgb(pixels: &[f32], channels: usize, mask: &[bool]) -> Vec<u8> {
    pixels
        .chunks_exact(channels.max(1))
        .zip(mask)
        .flat_map(|(v, &m)| {
            let [r, g, b] = if v.len() >= 3 {
                [sheet::to_u8(v[0]), sheet::to_u8(v[1]), sheet::to_u8(v[2])]
            } else {
                let g = sheet::to_u8(v[0]);
                [g, g, g]
            };
            if m { [255, g / 3, b / 3] } else { [r, g, b] }
        })
        .collect()
}
