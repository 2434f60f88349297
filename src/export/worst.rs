//! The folder of `backwork worst`: `sheet.png` (one row per label, each training image titled
//! with its p(correct) to 5 decimals, worst first) and `worst.json`.

use std::path::{Path, PathBuf};

use serde::Serialize;

use super::image_png_bytes;
use super::sheet::{SheetTile, render_sheet};
use crate::data::Dataset;
use crate::io::outdir::OutDir;
use crate::io::{WriteError, write_atomic};
use crate::meta::ModelRef;
use crate::model::worst::WorstLabel;

/// What worst.json holds: `labels` as the issue names it, then where it came from.
#[derive(Serialize)]
pub struct WorstResults<'a> {
    /// The data's class names, in label order.
    pub classes: &'a [String],
    pub labels: &'a [WorstLabel],
    pub k: usize,
    pub model: ModelRef,
    pub dataset: &'a str,
}

/// Writes folder `dir` with `sheet.png` and `worst.json`, whole (see [`OutDir`]); returns
/// their paths.
pub fn write_worst(
    dir: &Path,
    results: &WorstResults,
    data: &Dataset,
    force: bool,
) -> Result<Vec<PathBuf>, WriteError> {
    let out = OutDir::claim(dir, force)?;
    let names = write_worst_files(out.staging(), results, data).map_err(|e| out.in_dest(e))?;
    let dir = out.commit()?;
    Ok(names.iter().map(|n| dir.join(n)).collect())
}

/// Writes `sheet.png` and `worst.json` into the (staging) folder `dir`; returns their names.
fn write_worst_files(
    dir: &Path,
    results: &WorstResults,
    data: &Dataset,
) -> Result<Vec<String>, WriteError> {
    let io = |name: &str, e: String| WriteError::Io {
        file: dir.join(name).display().to_string(),
        source: std::io::Error::other(e),
    };
    let pixels: Vec<Vec<Vec<f32>>> = results
        .labels
        .iter()
        .map(|l| {
            l.images
                .iter()
                .map(|w| data.range_f32(w.index, w.index + 1))
                .collect()
        })
        .collect();
    let rows: Vec<(String, Vec<SheetTile>)> = results
        .labels
        .iter()
        .zip(&pixels)
        .map(|(l, px)| {
            let tiles = l
                .images
                .iter()
                .zip(px)
                .map(|(w, p)| SheetTile {
                    pixels: p,
                    p_label: w.p_correct,
                })
                .collect();
            (data.class_name(l.label as usize), tiles)
        })
        .collect();
    let sheet = render_sheet(&rows, data.shape).map_err(|e| io("sheet.png", e.to_string()))?;
    let png = image_png_bytes(&sheet).map_err(|e| io("sheet.png", e.to_string()))?;
    let json = serde_json::to_vec_pretty(results).map_err(|e| io("worst.json", e.to_string()))?;
    let mut written = Vec::new();
    for (name, bytes) in [("sheet.png", &png), ("worst.json", &json)] {
        write_atomic(&dir.join(name), bytes, false)?;
        written.push(name.to_string());
    }
    Ok(written)
}
