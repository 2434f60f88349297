//! A run's folder: one 8-bit PNG per image, `images.npy` (the exact values classified),
//! `results.json` and `sheet.png`. Used by `backwork run` and the app's export alike.

use std::path::Path;

use serde::Serialize;

use super::npy::npy_bytes;
use super::sheet::{SheetTile, render_sheet};
use super::{image_png_bytes, shaped_png_bytes};
use crate::backwork::Settings;
use crate::backwork::cost::Nearest;
use crate::backwork::engine::RowView;
use crate::io::outdir::OutDir;
use crate::io::{WriteError, write_atomic};
use crate::meta::ModelRef;
use crate::net::Shape;

/// One exported image.
#[derive(Clone, Debug, Serialize)]
pub struct ExportImage {
    pub label: u8,
    /// The label's class name (set by the writer from the data's classes).
    #[serde(skip_serializing_if = "String::is_empty", default)]
    pub class: String,
    /// Its index within its label group.
    pub index: usize,
    pub probabilities: Vec<f32>,
    pub p_label: f32,
    /// p(label) of the image as its 8-bit PNG stores it (clamped to [0, 1], rounded to 1/255),
    /// classified again by the same model.
    pub p_label_png: Option<f32>,
    pub reached_threshold: bool,
    /// Steps the run took until this image's group stopped (or the run ended).
    pub steps: usize,
    /// Steps since this image's last (re)initialisation.
    pub steps_since_init: usize,
    pub reinits: usize,
    /// Nearest training image in pixel space (row in the MNIST training file, mean squared
    /// difference per pixel).
    pub nearest_index: Option<u32>,
    pub nearest_distance: Option<f32>,
    /// The same at each tap where the cost takes a nearest image.
    pub nearest_by_tap: serde_json::Map<String, serde_json::Value>,
    pub png: String,
    #[serde(skip)]
    pub pixels: Vec<f32>,
}

impl ExportImage {
    /// Fills the nearest fields from the per-tap arg-mins, the taps named `names`.
    pub fn set_nearest(&mut self, nearest: &[Option<Nearest>], names: &[String]) {
        let first = nearest.first().copied().flatten();
        self.nearest_index = first.map(|n| n.index);
        self.nearest_distance = first.map(|n| n.dist);
        for (name, n) in names.iter().zip(nearest) {
            if let Some(n) = n {
                self.nearest_by_tap.insert(
                    name.to_string(),
                    serde_json::json!({"index": n.index, "distance": n.dist}),
                );
            }
        }
    }
}

/// What `results.json` holds.
#[derive(Serialize)]
pub struct RunResults<'a> {
    pub backwork_version: &'static str,
    /// The preset the settings equal ("robust", "original"), or "custom".
    pub preset: &'static str,
    pub settings: &'a Settings,
    pub seed: u64,
    pub model: ModelRef,
    pub steps: usize,
    /// Whether the run went on after every image passed (`run --keep-going`, the window's
    /// *keep going*), so `steps` may be past the step every image passed at.
    pub keep_going: bool,
    pub end_reason: String,
    pub date: String,
    /// The shape of every image: (N, H, W) rows of `images.npy` for grey images, (N, H, W, C)
    /// for colour.
    pub image_shape: Shape,
    /// The classes' names, in label order (each image's `class` is one of them).
    pub classes: &'a [String],
    /// One per row of `images.npy`, same order.
    pub images: &'a [ExportImage],
}

/// Names each image's class from `classes` (its label's number when they name fewer).
pub fn set_classes(images: &mut [ExportImage], classes: &[String]) {
    for img in images {
        img.class = classes
            .get(img.label as usize)
            .cloned()
            .unwrap_or_else(|| img.label.to_string());
    }
}

/// The `.npy` shape of `len` values of images of `shape`: (N, H, W) grey, (N, H, W, C) colour.
pub fn npy_shape(len: usize, shape: Shape) -> Vec<usize> {
    let n = len / shape.len().max(1);
    if shape.c == 1 {
        vec![n, shape.h, shape.w]
    } else {
        vec![n, shape.h, shape.w, shape.c]
    }
}

/// The images of a run's folder (as `backwork run` or the app's export writes it) with the
/// label of each, read back for saliency and retraining.
pub struct RunFolder {
    /// N×784, the exact values of `images.npy`.
    pub images: Vec<f32>,
    /// N labels, from `results.json`'s `images[].label`, in the same order.
    pub labels: Vec<u8>,
}

/// Reads `images.npy` and `results.json` of a run's folder; every problem is one line naming
/// the file: a missing file, a wrong shape, non-finite values, labels outside 0..=9, or a
/// count that differs between the two files.
pub fn read_run(dir: &Path, shape: &crate::net::Shape) -> Result<RunFolder, String> {
    if !dir.is_dir() {
        return Err(format!("{}: not a folder", dir.display()));
    }
    let npy = dir.join("images.npy");
    let json = dir.join("results.json");
    for f in [&npy, &json] {
        if !f.is_file() {
            return Err(format!(
                "{}: missing (a run folder holds images.npy and results.json)",
                f.display()
            ));
        }
    }
    let (_, images) = super::npy::read_images(&npy, shape).map_err(|e| e.to_string())?;
    // 256 MB: a results.json of 100,000 images is about 100 MB.
    let bytes = crate::io::read_regular_max(&json, 256 << 20)
        .map_err(|e| format!("{}: {e}", json.display()))?;
    let labels = parse_run_labels(&json.display().to_string(), &bytes)?;
    if labels.len().checked_mul(shape.len()) != Some(images.len()) {
        return Err(format!(
            "{}: {} images, but {} has {}",
            json.display(),
            labels.len(),
            npy.display(),
            images.len() / shape.len()
        ));
    }
    Ok(RunFolder { images, labels })
}

/// The label of each image of a `results.json` (`file` names it in errors): its
/// `images[].label`, each a class number 0–255.
pub fn parse_run_labels(file: &str, bytes: &[u8]) -> Result<Vec<u8>, String> {
    let text = std::str::from_utf8(bytes).map_err(|_| format!("{file}: not UTF-8 text"))?;
    let v: serde_json::Value =
        serde_json::from_str(text).map_err(|e| format!("{file}: not JSON: {e}"))?;
    let list = v
        .get("images")
        .and_then(|i| i.as_array())
        .ok_or_else(|| format!("{file}: no list `images`"))?;
    list.iter()
        .enumerate()
        .map(|(i, img)| {
            img.get("label")
                .and_then(|l| l.as_u64())
                .filter(|l| *l <= 255)
                .map(|l| l as u8)
                .ok_or_else(|| format!("{file}: images[{i}].label is not a class number 0-255"))
        })
        .collect()
}

/// The PNG file name of image `index` of `label`.
pub fn png_name(label: u8, index: usize) -> String {
    format!("label{label}_{index:02}.png")
}

/// Writes the run's folder `dir` whole (see [`OutDir`]): an empty or new folder, or any
/// folder with `force` (its contents replaced); returns the files' names.
pub fn write_run(dir: &Path, results: &RunResults, force: bool) -> Result<Vec<String>, WriteError> {
    let out = OutDir::claim(dir, force)?;
    let names = write_run_files(out.staging(), results).map_err(|e| out.in_dest(e))?;
    out.commit()?;
    Ok(names)
}

/// Writes every file of the run into the (staging) folder `dir`; returns their names.
pub fn write_run_files(dir: &Path, results: &RunResults) -> Result<Vec<String>, WriteError> {
    let mut written = Vec::new();
    let mut put = |name: &str, bytes: &[u8]| -> Result<(), WriteError> {
        write_atomic(&dir.join(name), bytes, false)?;
        written.push(name.to_string());
        Ok(())
    };
    let png_err = |name: &str, e: image::ImageError| WriteError::Io {
        file: dir.join(name).display().to_string(),
        source: std::io::Error::other(e.to_string()),
    };
    let shape = results.image_shape;
    for img in results.images {
        let bytes = shaped_png_bytes(shape, &img.pixels).map_err(|e| png_err(&img.png, e))?;
        put(&img.png, &bytes)?;
    }
    let all: Vec<f32> = results
        .images
        .iter()
        .flat_map(|i| i.pixels.iter().copied())
        .collect();
    put("images.npy", &npy_bytes(&all, &npy_shape(all.len(), shape)))?;
    let json = serde_json::to_vec_pretty(results).map_err(|e| WriteError::Io {
        file: dir.join("results.json").display().to_string(),
        source: std::io::Error::other(e),
    })?;
    put("results.json", &json)?;
    let mut rows: Vec<(u8, Vec<SheetTile>)> = Vec::new();
    let name = |l: u8| {
        results
            .classes
            .get(l as usize)
            .cloned()
            .unwrap_or_else(|| l.to_string())
    };
    for img in results.images {
        let tile = SheetTile {
            pixels: &img.pixels,
            p_label: img.p_label,
        };
        match rows.last_mut() {
            Some((l, tiles)) if *l == img.label => tiles.push(tile),
            _ => rows.push((img.label, vec![tile])),
        }
    }
    let rows: Vec<(String, Vec<SheetTile>)> = rows.into_iter().map(|(l, t)| (name(l), t)).collect();
    let sheet = render_sheet(&rows, shape).map_err(|e| WriteError::Io {
        file: dir.join("sheet.png").display().to_string(),
        source: std::io::Error::other(e),
    })?;
    let bytes = image_png_bytes(&sheet).map_err(|e| png_err("sheet.png", e))?;
    put("sheet.png", &bytes)?;
    Ok(written)
}

/// The export records of a run's images, all or the rows listed, from the engine's rows;
/// `classify_png` gives p(label) of images (N×784 pixels, N labels) as their 8-bit PNGs store
/// them (the network's [`p_label_as_png`](crate::backwork::frozen::FrozenCnn::p_label_as_png)).
pub fn export_images<'a>(
    rows: impl Iterator<Item = RowView<'a>>,
    threshold: f32,
    only: Option<&[usize]>,
    classify_png: impl FnOnce(&[f32], &[u8]) -> Vec<f32>,
) -> Vec<ExportImage> {
    let mut images: Vec<ExportImage> = rows
        .filter(|r| only.is_none_or(|o| o.contains(&r.row)))
        .map(|r| {
            let p_label = r.p_label();
            let mut img = ExportImage {
                label: r.label,
                class: String::new(),
                index: r.index,
                probabilities: r.state.probs.clone(),
                p_label,
                p_label_png: None,
                reached_threshold: p_label > threshold,
                steps: r.group_steps,
                steps_since_init: r.group_steps.saturating_sub(r.state.init_step),
                reinits: r.state.reinits,
                nearest_index: None,
                nearest_distance: None,
                nearest_by_tap: Default::default(),
                png: png_name(r.label, r.index),
                pixels: r.pixels.to_vec(),
            };
            img.set_nearest(&r.state.nearest, r.tap_names);
            img
        })
        .collect();
    let pixels: Vec<f32> = images.iter().flat_map(|i| i.pixels.clone()).collect();
    let labels: Vec<u8> = images.iter().map(|i| i.label).collect();
    for (img, p) in images.iter_mut().zip(classify_png(&pixels, &labels)) {
        img.p_label_png = Some(p);
    }
    images
}
