//! Screenshot tests: panels at a fixed size and theme rendered by egui_kittest's wgpu renderer
//! (Vulkan lavapipe, Mesa's software rasteriser, in CI) and compared pixel by pixel with the
//! images in `tests/snapshots/`. After an intended change of the look, run
//! `UPDATE_SNAPSHOTS=1 cargo test --test snapshots` and look at the new images before
//! committing them.
// Tests may unwrap, expect and panic: that is a test failing (Cargo.toml [lints]).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;

use backwork::app::{RunView, settings_ui};
use backwork::backwork::Settings;
use backwork::data::{Dataset, PIXELS, Split};
use backwork::worker::{Command, CurvePoint, Event, Snapshot, Worker};
use egui_kittest::Harness;
use egui_kittest::kittest::Queryable;

/// The test set's first images stand in for generated ones: real digits, deterministic.
fn test_images(n: usize) -> (Arc<Dataset>, Vec<f32>) {
    let mut d = Dataset::mnist(Split::Test).unwrap();
    d.labels.truncate(500);
    d.pixels.truncate(500 * PIXELS);
    let images = d.pixels[..n * PIXELS]
        .iter()
        .map(|&b| b as f32 / 255.0)
        .collect();
    (Arc::new(d), images)
}

/// A run of labels 3 and 7, 8 images each, in every state a tile can show: passed (p above
/// 0.999), climbing, stalled, re-initialised earlier.
fn played_snapshot(images: Vec<f32>) -> Snapshot {
    let labels = vec![3u8, 7];
    let batch = 8;
    let rows = labels.len() * batch;
    let p_of = |row: usize| [0.99995, 0.9992, 0.87, 0.4, 0.9991, 0.05, 0.99931, 0.7][row % 8];
    let probs = (0..rows)
        .map(|row| {
            let label = labels[row / batch] as usize;
            let p = p_of(row) as f32;
            let mut v = [(1.0 - p) / 9.0; 10];
            // A runner-up class, so each tile's bars differ.
            v[(label + 1 + row % 7) % 10] += (1.0 - p) / 2.0;
            v[label] = p;
            let sum: f32 = v.iter().sum();
            v.iter().map(|x| x / sum).collect()
        })
        .collect();
    let mut stalled = vec![false; rows];
    stalled[2] = true;
    stalled[15] = true;
    let mut reinits = vec![0; rows];
    reinits[5] = 3;
    reinits[11] = 1;
    Snapshot {
        run: 1,
        step: 240,
        labels: labels.clone(),
        batch,
        images,
        probs,
        reinits,
        stalled,
        saliency: None,
        nearest: vec![vec![None; 4]; rows],
        tap_names: backwork::backwork::settings::original_tap_names().into(),
        points: vec![CurvePoint {
            step: 240,
            terms: Default::default(),
            min_p: vec![0.4, 0.05],
            mean_p: vec![0.8, 0.6],
        }],
        new_reinits: Vec::new(),
        steps_per_s: 5.0,
        is_paused: true,
    }
}

#[test]
fn settings_panel_at_the_defaults() {
    let mut h = Harness::builder()
        .with_size(egui::vec2(420.0, 600.0))
        .with_theme(egui::Theme::Dark)
        .build_ui_state(
            |ui, s: &mut Settings| {
                if let Some(new) =
                    settings_ui(ui, s, &backwork::backwork::settings::original_tap_names())
                {
                    *s = new;
                }
            },
            Settings::default(),
        );
    backwork::app::apply_style(&h.ctx);
    h.run_steps(2);
    h.snapshot("settings_defaults");
}

#[test]
fn image_grid_with_passed_stalled_and_reinitialised_tiles() {
    let (train, images) = test_images(16);
    let (worker, peer) = Worker::detached();
    let mut h = Harness::builder()
        .with_size(egui::vec2(860.0, 330.0))
        .with_theme(egui::Theme::Dark)
        .build_ui_state(
            |ui, v: &mut RunView| {
                v.poll(ui.ctx());
                v.grid_ui(ui);
            },
            RunView::new(worker, train),
        );
    backwork::app::apply_style(&h.ctx);
    h.run_steps(2);
    h.state_mut().command(Command::Start(Settings::default()));
    peer.events
        .send(Event::Snapshot(Box::new(played_snapshot(images))))
        .unwrap();
    h.run_steps(3);
    h.get_by_label("label 7 image 7");
    h.snapshot("grid_played");
}
