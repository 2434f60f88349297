//! The retraining report: `report.json` (the configuration and one row per model, the
//! starting one first) and `report.png` (test accuracy, share of fooling images reaching the
//! threshold, and median steps to reach it, against the round).

use std::path::{Path, PathBuf};

use image::{Rgb, RgbImage};
use serde::Serialize;

use super::sheet::{draw_text_with, text_width};
use crate::io::{WriteError, write_atomic};
use crate::meta::ModelRef;
use crate::retrain::{Measurement, RetrainConfig};

/// What report.json holds.
#[derive(Serialize)]
pub struct RetrainReport<'a> {
    pub backwork_version: &'static str,
    pub config: &'a RetrainConfig,
    pub base_model: ModelRef,
    /// Where the final model was written.
    pub model_file: String,
    pub date: String,
    /// One per model: round 0 is the starting model, round r the model after r rounds.
    pub rounds: &'a [Measurement],
}

const PANEL_W: u32 = 300;
const PANEL_H: u32 = 240;
const MARGIN: u32 = 40;

fn line(img: &mut RgbImage, (x0, y0): (i64, i64), (x1, y1): (i64, i64), c: Rgb<u8>) {
    let steps = (x1 - x0).abs().max((y1 - y0).abs()).max(1);
    for i in 0..=steps {
        let x = x0 + (x1 - x0) * i / steps;
        let y = y0 + (y1 - y0) * i / steps;
        for (dx, dy) in [(0, 0), (1, 0), (0, 1), (1, 1)] {
            let (px, py) = (x + dx, y + dy);
            if px >= 0 && py >= 0 && (px as u32) < img.width() && (py as u32) < img.height() {
                img.put_pixel(px as u32, py as u32, c);
            }
        }
    }
}

fn text(img: &mut RgbImage, s: &str, x: u32, y: u32, c: Rgb<u8>) {
    let (w, h) = (img.width(), img.height());
    draw_text_with(s, x, y, 2, &mut |px, py| {
        if px < w && py < h {
            img.put_pixel(px, py, c);
        }
    });
}

/// One panel: `values` (None: no point) against the round, y from `lo` to `hi`.
fn panel(
    img: &mut RgbImage,
    left: u32,
    title: &str,
    values: &[Option<f64>],
    fmt: &dyn Fn(f64) -> String,
) {
    let ink = Rgb([30, 30, 30]);
    let axis = Rgb([150, 150, 150]);
    let series = Rgb([200, 60, 40]);
    let (top, bottom) = (MARGIN, MARGIN + PANEL_H);
    let (x0, x1) = (left + 50, left + PANEL_W - 10);
    text(img, title, left + 10, 10, ink);
    let known: Vec<f64> = values.iter().flatten().copied().collect();
    let (mut lo, mut hi) = known
        .iter()
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), &v| {
            (a.min(v), b.max(v))
        });
    if !lo.is_finite() {
        (lo, hi) = (0.0, 1.0);
    }
    if hi - lo < 1e-9 {
        let pad = if hi.abs() > 1e-9 {
            hi.abs() * 0.05
        } else {
            1.0
        };
        (lo, hi) = (lo - pad, hi + pad);
    }
    line(
        img,
        (x0 as i64, top as i64),
        (x0 as i64, bottom as i64),
        axis,
    );
    line(
        img,
        (x0 as i64, bottom as i64),
        (x1 as i64, bottom as i64),
        axis,
    );
    text(img, &fmt(hi), left + 2, top, ink);
    text(img, &fmt(lo), left + 2, bottom - 10, ink);
    let n = values.len().max(2) - 1;
    let px = |i: usize| x0 as i64 + 10 + ((x1 - x0 - 20) as i64 * i as i64) / n as i64;
    let py = |v: f64| bottom as i64 - 8 - (((v - lo) / (hi - lo)) * (PANEL_H - 16) as f64) as i64;
    for i in 0..values.len() {
        let label = i.to_string();
        let x = px(i) as u32;
        text(
            img,
            &label,
            x.saturating_sub(text_width(&label, 2) / 2),
            bottom + 6,
            ink,
        );
    }
    text(img, "ROUND", (x0 + x1) / 2 - 20, bottom + 22, ink);
    let mut prev: Option<(i64, i64)> = None;
    for (i, v) in values.iter().enumerate() {
        let Some(v) = v else {
            prev = None;
            continue;
        };
        let p = (px(i), py(*v));
        if let Some(q) = prev {
            line(img, q, p, series);
        }
        for d in -3..=3 {
            line(img, (p.0 - 3, p.1 + d), (p.0 + 3, p.1 + d), series);
        }
        prev = Some(p);
    }
}

/// The report's plot as PNG bytes.
pub fn report_png(rows: &[Measurement]) -> Result<Vec<u8>, image::ImageError> {
    let mut img = RgbImage::from_pixel(
        3 * PANEL_W + 20,
        PANEL_H + MARGIN + 40,
        Rgb([255, 255, 255]),
    );
    let acc: Vec<Option<f64>> = rows.iter().map(|m| Some(m.test_accuracy * 100.0)).collect();
    let share: Vec<Option<f64>> = rows.iter().map(|m| Some(m.share_reached * 100.0)).collect();
    let steps: Vec<Option<f64>> = rows.iter().map(|m| m.median_steps).collect();
    panel(&mut img, 0, "TEST ACCURACY %", &acc, &|v| format!("{v:.2}"));
    panel(
        &mut img,
        PANEL_W + 10,
        "FOOLED % (PAST THRESHOLD)",
        &share,
        &|v| format!("{v:.1}"),
    );
    panel(
        &mut img,
        2 * PANEL_W + 20,
        "MEDIAN STEPS TO FOOL",
        &steps,
        &|v| format!("{v:.0}"),
    );
    let mut out = Vec::new();
    img.write_to(&mut std::io::Cursor::new(&mut out), image::ImageFormat::Png)?;
    Ok(out)
}

/// Writes report.json and report.png into `dir` (which must exist); never over existing
/// files unless `force`.
pub fn write_report(
    dir: &Path,
    report: &RetrainReport,
    force: bool,
) -> Result<Vec<PathBuf>, WriteError> {
    let io = |name: &str, e: String| WriteError::Io {
        file: dir.join(name).display().to_string(),
        source: std::io::Error::other(e),
    };
    let json = serde_json::to_vec_pretty(report).map_err(|e| io("report.json", e.to_string()))?;
    let png = report_png(report.rounds).map_err(|e| io("report.png", e.to_string()))?;
    let mut written = Vec::new();
    for (name, bytes) in [("report.json", &json), ("report.png", &png)] {
        let p = dir.join(name);
        write_atomic(&p, bytes, force)?;
        written.push(p);
    }
    Ok(written)
}
