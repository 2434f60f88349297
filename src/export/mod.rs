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
pub fn overlay_rgb(pixels: &[f32], mask: &[bool]) -> Vec<u8> {
    pixels
        .iter()
        .zip(mask)
        .flat_map(|(&v, &m)| {
            let g = sheet::to_u8(v);
            if m { [255, g / 3, g / 3] } else { [g, g, g] }
        })
        .collect()
}
