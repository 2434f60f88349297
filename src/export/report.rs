//! The retraining report: `report.json` (the configuration and one row per model, the
//! starting one first) and `report.png` (test accuracy, share of fooling images reaching the
//! threshold, and median steps to reach it, against the round).

use std::path::{Path, PathBuf};

use plotters::backend::{BitMapBackend, RGBPixel};
use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};
use serde::Serialize;

use super::font::FONT_BYTES;
use super::rgb_png_bytes;
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

/// One panel of the plot is `PANEL` pixels square; the three sit side by side.
const PANEL: u32 = 420;
/// The plot's size in pixels.
pub const REPORT_SIZE: (u32, u32) = (3 * PANEL, PANEL);
/// The plotters family name the embedded font is registered under (the one plotters' own
/// defaults ask for, so the mesh's labels use it too).
const FAMILY: &str = "sans-serif";
const INK: RGBColor = RGBColor(30, 30, 30);

/// What can go wrong drawing report.png.
#[derive(Debug, thiserror::Error)]
pub enum PlotError {
    #[error("the embedded font (Hack, from epaint_default_fonts) cannot be read")]
    Font,
    #[error("cannot draw the plot: {0}")]
    Draw(String),
    #[error("cannot encode the plot as PNG: {0}")]
    Png(#[from] image::ImageError),
}

fn draw_err(e: impl std::fmt::Display) -> PlotError {
    PlotError::Draw(e.to_string())
}

/// One panel: a series against the round (None: no point there, the line broken).
struct Panel<'a> {
    caption: &'a str,
    y_desc: &'a str,
    values: Vec<Option<f64>>,
    colour: RGBColor,
    /// Said in the plot area when no value is known.
    if_empty: &'a str,
}

/// The value range a panel shows: the values' span padded by a tenth on each side (a flat
/// series ±1), never below 0 (every panel's quantity is a share or a count); no value at all,
/// 0 to 1.
fn y_range(values: &[Option<f64>]) -> (f64, f64) {
    let (lo, hi) = values
        .iter()
        .flatten()
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), &v| {
            (a.min(v), b.max(v))
        });
    if !lo.is_finite() || !hi.is_finite() {
        return (0.0, 1.0);
    }
    let pad = if hi - lo < 1e-9 {
        1.0
    } else {
        (hi - lo) / 10.0
    };
    let floor = if lo >= 0.0 { 0.0 } else { f64::NEG_INFINITY };
    ((lo - pad).max(floor), hi + pad)
}

/// Decimals for the value ticks of a `span` wide axis. plotters steps its (at most 10, the
/// mesh's default) ticks by 1, 2 or 5 × 10^k, so by at least the smallest such step ≥ span / 10;
/// that step's decimals show every tick apart.
fn tick_decimals(span: f64) -> usize {
    let least = span / 10.0;
    if !(least.is_finite() && least > 0.0) {
        return 0;
    }
    let k = least.log10().floor();
    let mantissa = least / 10f64.powf(k);
    // 1, 2 and 5 × 10^k need k's decimals; 10 × 10^k one fewer.
    let k = if mantissa > 5.0 + 1e-9 { k + 1.0 } else { k };
    if k < 0.0 { -k as usize } else { 0 }
}

/// Labels a round on the x axis: whole numbers only (plotters picks the ticks).
fn round_label(r: &f64) -> String {
    if (r - r.round()).abs() < 1e-6 {
        format!("{r:.0}")
    } else {
        String::new()
    }
}

fn draw_panel<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    panel: &Panel,
) -> Result<(), PlotError> {
    let n = panel.values.len();
    let (lo, hi) = y_range(&panel.values);
    let x_max = n.saturating_sub(1) as f64;
    let decimals = tick_decimals(hi - lo);
    let mut chart = ChartBuilder::on(area)
        .caption(panel.caption, (FAMILY, 18).into_font().color(&INK))
        .margin(12)
        .x_label_area_size(44)
        .y_label_area_size(64)
        .build_cartesian_2d(-0.5..x_max + 0.5, lo..hi)
        .map_err(draw_err)?;
    chart
        .configure_mesh()
        .disable_x_mesh()
        .light_line_style(WHITE)
        .bold_line_style(RGBColor(225, 225, 225))
        .axis_style(RGBColor(120, 120, 120))
        .label_style((FAMILY, 13).into_font().color(&INK))
        .axis_desc_style((FAMILY, 15).into_font().color(&INK))
        .x_desc("round")
        .y_desc(panel.y_desc)
        // At most n ticks on an axis n rounds wide: plotters steps by 1 (not 0.5) up to 10
        // rounds, then by 2, 5, 10... on its 1-2-5 scale.
        .x_labels(n.clamp(1, 10))
        .x_label_formatter(&round_label)
        .y_label_formatter(&|v| format!("{v:.decimals$}"))
        .draw()
        .map_err(draw_err)?;
    // One line per run of known values, a dot on each.
    let mut runs: Vec<Vec<(f64, f64)>> = vec![Vec::new()];
    for (round, v) in panel.values.iter().enumerate() {
        match (v, runs.last_mut()) {
            (Some(v), Some(run)) => run.push((round as f64, *v)),
            (None, Some(run)) if !run.is_empty() => runs.push(Vec::new()),
            _ => {}
        }
    }
    for run in runs.into_iter().filter(|r| !r.is_empty()) {
        chart
            .draw_series(LineSeries::new(run, panel.colour.filled().stroke_width(2)).point_size(4))
            .map_err(draw_err)?;
    }
    if panel.values.iter().all(Option::is_none) {
        let style = (FAMILY, 15)
            .into_font()
            .color(&INK)
            .pos(Pos::new(HPos::Center, VPos::Center));
        chart
            .plotting_area()
            .draw(&Text::new(
                panel.if_empty,
                (x_max / 2.0, (lo + hi) / 2.0),
                style,
            ))
            .map_err(draw_err)?;
    }
    Ok(())
}

/// The report's plot as PNG bytes: three panels (test accuracy, share of fooling images past
/// the threshold, median steps to pass it) against the round, drawn with plotters into memory.
pub fn report_png(rows: &[Measurement]) -> Result<Vec<u8>, PlotError> {
    // Registering again only replaces the entry with the same font.
    plotters::style::register_font(FAMILY, FontStyle::Normal, FONT_BYTES)
        .map_err(|_| PlotError::Font)?;
    let panels = [
        Panel {
            caption: "Test accuracy",
            y_desc: "correct on the test set (%)",
            values: rows.iter().map(|m| Some(m.test_accuracy * 100.0)).collect(),
            colour: RGBColor(40, 100, 190),
            if_empty: "no model measured",
        },
        Panel {
            caption: "Fooling images past the threshold",
            y_desc: "images past the threshold (%)",
            values: rows.iter().map(|m| Some(m.share_reached * 100.0)).collect(),
            colour: RGBColor(200, 60, 40),
            if_empty: "no model measured",
        },
        Panel {
            caption: "Median steps to pass the threshold",
            y_desc: "steps",
            values: rows.iter().map(|m| m.median_steps).collect(),
            colour: RGBColor(40, 150, 80),
            if_empty: "no image passed the threshold",
        },
    ];
    let (w, h) = REPORT_SIZE;
    let mut rgb = vec![0u8; 3 * w as usize * h as usize];
    {
        let backend = BitMapBackend::<RGBPixel>::with_buffer_and_format(&mut rgb, (w, h))
            .map_err(draw_err)?;
        let root = backend.into_drawing_area();
        root.fill(&WHITE).map_err(draw_err)?;
        for (area, panel) in root.split_evenly((1, panels.len())).iter().zip(&panels) {
            draw_panel(area, panel)?;
        }
        root.present().map_err(draw_err)?;
    }
    Ok(rgb_png_bytes(w, h, &rgb)?)
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

#[cfg(test)]
mod tests {
    use super::*;

    fn row(round: usize, accuracy: f64, share: f64, median_steps: Option<f64>) -> Measurement {
        Measurement {
            round,
            model_sha256: String::new(),
            classes: 10,
            test_accuracy: accuracy,
            fooling_images_trained_on: 0,
            images: 20,
            reached: (share * 20.0) as usize,
            share_reached: share,
            median_steps,
            run_steps: 400,
            seconds: 1.0,
        }
    }

    #[test]
    fn report_png_has_its_size_and_its_text() {
        let rows = [
            row(0, 0.991, 1.0, Some(120.0)),
            row(1, 0.989, 0.6, Some(260.0)),
            row(2, 0.990, 0.0, None),
        ];
        let png = report_png(&rows).unwrap();
        let img = image::load_from_memory(&png).unwrap().to_rgb8();
        // Three panels of PANEL (420) pixels side by side.
        assert_eq!(img.dimensions(), (1260, 420));
        assert_eq!(img.dimensions(), REPORT_SIZE);
        // Text is INK (30, 30, 30); the axes (120), grid lines (≥ 220) and the series (each
        // has a channel ≥ 150) are never dark in all three channels.
        let dark = |x0: u32, y0: u32, x1: u32, y1: u32| {
            (x0..x1)
                .flat_map(|x| (y0..y1).map(move |y| (x, y)))
                .filter(|&(x, y)| img.get_pixel(x, y).0.iter().all(|&c| c < 100))
                .count()
        };
        // Where the text goes, from the layout: a 12-pixel margin round each panel, a 64-pixel
        // label area left of the plot (the y description outermost, x 10..22 as drawn; the
        // ticks' labels from x 34 on, by the axis at 76) and a 44-pixel one below it (the
        // ticks' labels at y 373..380, "round" at 397..403, as drawn), the caption above.
        for p in 0..3 {
            let left = p * PANEL;
            assert!(
                dark(left + 76, 0, left + PANEL, 32) > 50,
                "panel {p}: caption"
            );
            assert!(
                dark(left + 8, 40, left + 28, 360) > 20,
                "panel {p}: y description"
            );
            assert!(
                dark(left + 76, 366, left + PANEL, 388) > 20,
                "panel {p}: round numbers"
            );
            assert!(
                dark(left + 76, 390, left + PANEL, 410) > 20,
                "panel {p}: x description"
            );
        }
        // The corners stay background.
        assert_eq!(img.get_pixel(0, 0).0, [255, 255, 255]);
        assert_eq!(img.get_pixel(1259, 419).0, [255, 255, 255]);
    }

    #[test]
    fn report_png_without_rows_or_steps_still_draws() {
        let png = report_png(&[]).unwrap();
        let img = image::load_from_memory(&png).unwrap();
        assert_eq!((img.width(), img.height()), REPORT_SIZE);
        assert!(report_png(&[row(0, 0.99, 0.0, None)]).is_ok());
    }

    #[test]
    fn ranges_and_round_labels() {
        assert_eq!(y_range(&[]), (0.0, 1.0));
        assert_eq!(y_range(&[None]), (0.0, 1.0));
        assert_eq!(y_range(&[Some(0.0)]), (0.0, 1.0));
        assert_eq!(y_range(&[Some(99.0), Some(99.0)]), (98.0, 100.0));
        assert_eq!(y_range(&[Some(10.0), None, Some(20.0)]), (9.0, 21.0));
        assert_eq!(y_range(&[Some(0.0), Some(10.0)]), (0.0, 11.0));
        // Spans of the sample reports: 99.27 to 99.41 % steps by 0.02, 99.31 to 99.40 % (0.08
        // wide) by 0.01, 16 to 30 % by 2; a span of 0.5 by 0.05, of 0.7 by 0.1.
        assert_eq!(tick_decimals(0.14), 2);
        assert_eq!(tick_decimals(0.084), 2);
        assert_eq!(tick_decimals(16.4), 0);
        assert_eq!(tick_decimals(0.5), 2);
        assert_eq!(tick_decimals(0.7), 1);
        assert_eq!(tick_decimals(0.0), 0);
        assert_eq!(round_label(&2.0), "2");
        assert_eq!(round_label(&2.5), "");
    }
}
