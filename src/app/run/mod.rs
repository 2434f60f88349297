//! The backwork view: Start / Pause / Step / Reset, the target labels, and the live images of
//! the run, one row per label, each with its p(label) to 5 decimals and its ten probabilities
//! as bars; marked when past the threshold, flashing when just re-initialised, saying so when
//! stalled. The engine runs on the worker thread; this view only draws snapshots.
//!
//! This file is the view's state and [`RunView::apply`], which takes one worker event into it
//! without a window (unit-tested below); each panel is a file: `controls` (buttons, keys,
//! labels, start images, sliders, export, status bar), `grid` (the tiles and their texture
//! atlas), `enlarged` (one image with its nearest training images) and `log` (the typed event
//! log under the curves).
//!
//! Longer than 500 lines only because of its unit tests (about 130 lines) of `apply`.

mod controls;
mod enlarged;
mod grid;
mod log;

pub use log::{EventLog, LogEntry};

use std::collections::VecDeque;
use std::sync::mpsc::TryRecvError;
use std::time::{Duration, Instant};

use egui::{Color32, RichText, TextureHandle, TextureOptions, vec2};

use super::captions::{Caption, CaptionLayout, Captions, p_text};
use super::curves_ui::Curves;
use super::dialog::{Dialog, NO_DIALOG};
use super::settings_ui::settings_ui;
use super::status::Status;
use crate::backwork::engine::{EndReason, ReinitKind};
use crate::backwork::measure::{BoxHint, Short, box_hint};
use crate::backwork::saliency::{per_pixel, top_k_mask};
use crate::backwork::{Init, Settings};
use crate::data::SIDE;
use crate::export::overlay_rgb;
use crate::worker::models::ModelHandle;
use crate::worker::{Command, Event, Snapshot, Worker, WorkerSpec};

/// Images per row of the texture atlas.
const ATLAS_COLS: usize = 16;

/// Outline width of every tile, whatever its state (a wider one would shift the row).
const TILE_STROKE: f32 = 2.0;

/// How long a re-initialised tile flashes.
const FLASH: Duration = Duration::from_millis(800);
/// Colour of a tile past the threshold, and of the target class's bar.
pub(crate) const PASSED: Color32 = Color32::from_rgb(80, 200, 120);
/// Colour of a re-initialisation flash.
const FLASH_COLOR: Color32 = Color32::from_rgb(240, 150, 40);
/// Colour of the "stalled" mark.
const STALLED: Color32 = Color32::from_rgb(220, 190, 60);

/// Pixels on screen per image pixel: the tiles grow or shrink with the window, from a
/// compact grid to large crisp pixels.
const MIN_SCALE: f32 = 1.5;
const MAX_SCALE: f32 = 4.0;
/// Gap between two tiles of a row.
const TILE_GAP: f32 = 4.0;
/// What a tile adds around its image: frame margins, outline, the gap to the next tile.
const TILE_CHROME: f32 = 2.0 * 3.0 + 2.0 * TILE_STROKE + TILE_GAP;
/// Width of the digit heading at the start of each row of tiles.
const ROW_HEADING: f32 = 28.0;

/// Width of a character of a row's class name (egui's body text, about 7 px).
const NAME_CHAR: f32 = 7.0;

/// Runtime state of the backwork view.
pub struct RunView {
    worker: Worker,
    pub settings: Settings,
    run: Option<u64>,
    snapshot: Option<Box<Snapshot>>,
    /// Every image of the snapshot in one texture ([`ATLAS_COLS`] per row), uploaded once
    /// per snapshot: one texture update instead of one per image, which software rendering
    /// pays for with a flush each.
    atlas: Option<TextureHandle>,
    atlas_size: [usize; 2],
    /// Every tile's caption (p, bars, status line) in one texture.
    captions: Captions,
    cache: Option<(usize, usize)>,
    total_reinits: usize,
    /// The last thing the user should read: an export's folder, a refusal, how a run ended,
    /// an error. It stays until the next one (a live run does not overwrite it).
    pub status: Status,
    /// The labels of the last run's box hint (images left short on local maxima in the box):
    /// the status bar offers to measure their ceiling. Empty when there was none.
    pub hint_labels: Vec<u8>,
    /// Runs go on after every image passed ([`Command::KeepGoing`]), until the step budget,
    /// a Reset or a new Start.
    pub keep_going: bool,
    /// Set by the status bar's "Measure the ceiling": the labels to measure (the app hands
    /// them to the Sweep view's ceiling and shows it).
    pub ceiling_request: Option<Vec<u8>>,
    /// The live state of the run: step, steps/s, reinitialisations, paused.
    pub progress: String,
    pub curves: Curves,
    /// Rows selected for export.
    pub selected: std::collections::BTreeSet<usize>,
    /// A snapshot arrived whose images are not uploaded yet.
    is_dirty: bool,
    /// The user changed a setting since the app last stored them.
    pub settings_changed: bool,
    /// The training set, to show an image's nearest training image.
    train: std::sync::Arc<crate::data::Dataset>,
    /// The row shown enlarged, if any.
    pub enlarged: Option<usize>,
    /// Textures of training images shown as nearest neighbours, by index (bounded).
    train_textures: std::collections::HashMap<u32, TextureHandle>,
    /// Overlay each tile with its saliency mask (the top-k pixels of d p(label) / d input).
    pub show_saliency: bool,
    pub saliency_k: usize,
    /// Show each tile's nearest training image (pixel space) under it.
    pub show_nearest: bool,
    /// What starts the worker again after it died (None for a detached test worker).
    pub spec: Option<WorkerSpec>,
    pub is_worker_alive: bool,
    /// When each image was last re-initialised (for the flash).
    last_reinit: Vec<Option<Instant>>,
    /// Last tile clicked, the anchor of a shift-click range.
    anchor: Option<usize>,
    /// What happened, newest first.
    pub log: EventLog,
    /// Per group, whether it has passed the threshold (to log it once).
    passed_groups: Vec<bool>,
    /// Per image, whether it was stalled at the last snapshot (to log changes once).
    was_stalled: Vec<bool>,
    /// The export folder dialog, while open, with the rows to export.
    export_dialog: Option<Dialog<Vec<usize>>>,
    /// The start-images file dialog, while open.
    init_dialog: Option<Dialog<()>>,
    /// When the run's first snapshot came (its reference sets built) and when it ended.
    run_clock: Option<(Instant, Option<Instant>)>,
    /// Commands the panels asked for during this frame, sent after it.
    outbox: Vec<Command>,
    /// The names of the current network's taps (one layer-weight slider each).
    pub tap_names: Vec<String>,
    /// The shape of the network's input images (the run's images).
    pub image_shape: crate::net::Shape,
}

impl RunView {
    pub fn new(worker: Worker, train: std::sync::Arc<crate::data::Dataset>) -> Self {
        Self {
            worker,
            settings: Settings::default(),
            run: None,
            snapshot: None,
            atlas: None,
            atlas_size: [0, 0],
            captions: Captions::default(),
            cache: None,
            total_reinits: 0,
            status: Status::default(),
            hint_labels: Vec::new(),
            keep_going: false,
            ceiling_request: None,
            progress: "Press Start (or space) to optimise 8 noise images per digit.".into(),
            curves: Curves::for_classes(train.classes.clone()),
            selected: Default::default(),
            is_dirty: false,
            settings_changed: false,
            train,
            enlarged: None,
            train_textures: Default::default(),
            show_saliency: false,
            saliency_k: crate::backwork::saliency::DEFAULT_TOP_K,
            show_nearest: false,
            spec: None,
            is_worker_alive: true,
            last_reinit: Vec::new(),
            anchor: None,
            log: EventLog::default(),
            passed_groups: Vec::new(),
            was_stalled: Vec::new(),
            export_dialog: None,
            init_dialog: None,
            run_clock: None,
            outbox: Vec::new(),
            tap_names: crate::backwork::settings::original_tap_names(),
            image_shape: crate::data::digits_shape(),
        }
    }

    /// Uses another network from now on: the worker ends the current run and builds
    /// reference sets for the new one at the next Start.
    pub fn set_model(&mut self, handle: &ModelHandle) {
        let command = Command::set_model(handle);
        if let Some(spec) = &mut self.spec {
            spec.set_model(handle);
        }
        let model = handle.model_ref();
        let step = self.snapshot.as_ref().map_or(0, |s| s.step);
        self.log_event(step, LogEntry::ModelChanged(model.name.clone()));
        self.tap_names = handle.tap_names();
        self.image_shape = handle.input_shape();
        // Another network's taps take their default weights; the same taps keep the user's.
        if self.settings.fit_taps(self.tap_names.len()) {
            self.settings_changed = true;
        }
        self.worker.send(command);
        self.run = None;
        self.cache = None;
        self.status = Status::info(format!(
            "model {}: press Start to run against it",
            model.name
        ));
    }

    /// Starts a fresh worker thread after the old one died.
    pub fn restart_worker(&mut self) {
        let Some(spec) = self.spec.clone() else {
            return;
        };
        match Worker::spawn(spec) {
            Ok(w) => {
                self.worker = w;
                self.is_worker_alive = true;
                self.run = None;
                self.cache = None;
                self.status = Status::info("engine restarted: press Start");
                self.progress.clear();
            }
            Err(e) => {
                self.status = Status::error(format!("error: could not restart the engine: {e}"))
            }
        }
    }

    /// Queues a command for the worker: the panels ask while drawing, and the app sends
    /// what they asked once the frame is drawn ([`Self::send_commands`]).
    pub fn command(&mut self, c: Command) {
        self.outbox.push(c);
    }

    /// Sends the queued commands (at the end of a frame, and before the next frame reads
    /// the worker's events).
    pub fn send_commands(&mut self) {
        for c in std::mem::take(&mut self.outbox) {
            self.send(c);
        }
    }

    /// Sends one command and starts or resets the view's run to match.
    fn send(&mut self, c: Command) {
        if !self.is_worker_alive {
            self.status =
                Status::error("error: the engine thread stopped: press Restart engine first");
            return;
        }
        let is_start = matches!(c, Command::Start(_));
        let is_reset = matches!(c, Command::Reset);
        if is_start && self.keep_going {
            // Said again before each run: a restarted engine thread starts without it (a
            // change of the box is sent as it happens).
            self.worker.send(Command::KeepGoing(true));
        }
        let id = self.worker.send(c);
        if is_start {
            self.selected.clear();
            self.anchor = None;
            self.run = Some(id);
            self.hint_labels.clear();
            self.snapshot = None;
            self.total_reinits = 0;
            self.last_reinit.clear();
            self.passed_groups.clear();
            self.was_stalled.clear();
            self.run_clock = None;
            let labels = self.settings.labels.clone();
            let batch = self.settings.batch;
            self.log_event(0, LogEntry::Started { labels, batch });
            self.status.clear();
            self.progress = "building the reference sets…".into();
        } else if is_reset {
            self.run = None;
            self.snapshot = None;
            self.progress = "reset: press Start for a new run".into();
        }
    }

    /// Takes the events that arrived since the last frame into the view, then uploads the
    /// newest snapshot's images.
    pub fn poll(&mut self, ctx: &egui::Context) {
        self.send_commands();
        self.poll_export_dialog();
        self.poll_init_dialog();
        loop {
            match self.worker.events.try_recv() {
                Ok(ev) => self.apply(ev, Instant::now()),
                Err(TryRecvError::Empty) => break,
                Err(TryRecvError::Disconnected) => {
                    if self.is_worker_alive {
                        self.is_worker_alive = false;
                        self.run = None;
                        self.progress.clear();
                        self.status = Status::error(
                            "error: the engine thread stopped unexpectedly: press Restart engine",
                        );
                    }
                    break;
                }
            }
        }
        self.update_textures(ctx);
    }

    /// Takes one worker event (arrived at `now`) into the view's state: status, progress,
    /// curves, log, flashes. Draws nothing; events of a run that was reset or replaced are
    /// ignored.
    pub fn apply(&mut self, ev: Event, now: Instant) {
        match ev {
            Event::Cache { run, done, total } if Some(run) == self.run => {
                self.cache = (done < total).then_some((done, total));
            }
            // The running run's, or the finished run's still on screen (sent again when
            // the saliency is switched on after its end).
            Event::Snapshot(s)
                if Some(s.run) == self.run
                    || self.snapshot.as_ref().is_some_and(|old| old.run == s.run) =>
            {
                if self.snapshot.as_ref().is_none_or(|old| old.run != s.run) {
                    self.curves.reset(&s.labels);
                }
                let is_live = Some(s.run) == self.run;
                self.curves.add(&s.points, &s.new_reinits);
                if is_live {
                    self.curves.add_rate(s.step, s.steps_per_s);
                    self.run_clock.get_or_insert((now, None));
                }
                self.total_reinits += s.new_reinits.len();
                self.note_snapshot(&s, now);
                if is_live {
                    self.progress = format!(
                        "step {} · {:.1} steps/s · {} reinitialisations{}",
                        s.step,
                        s.steps_per_s,
                        self.total_reinits,
                        if s.is_paused { " · paused" } else { "" }
                    );
                }
                self.snapshot = Some(s);
                self.is_dirty = true;
            }
            Event::Refused { message, .. } => {
                self.status = Status::error(format!("error: {message}"));
                let step = self.snapshot.as_ref().map_or(0, |s| s.step);
                self.log_event(step, LogEntry::Message(self.status.text.clone()));
            }
            Event::Notice { message } => {
                self.status = Status::info(message);
                let step = self.snapshot.as_ref().map_or(0, |s| s.step);
                self.log_event(step, LogEntry::Message(self.status.text.clone()));
            }
            Event::Exported { dir, files, .. } => {
                self.status = Status::info(format!("wrote {files} files to {}", dir.display()));
                let step = self.snapshot.as_ref().map_or(0, |s| s.step);
                self.log_event(step, LogEntry::Message(self.status.text.clone()));
            }
            Event::Ended { run, reason } if Some(run) == self.run => {
                let step = self.snapshot.as_ref().map_or(0, |s| s.step);
                let is_error = matches!(reason, EndReason::Error(_));
                let text = match reason {
                    EndReason::Threshold => {
                        format!(
                            "every image passed p > {} at step {step}: done",
                            self.settings.threshold
                        )
                    }
                    EndReason::MaxSteps => {
                        let missed = self.missed();
                        let text = format!(
                            "stopped at the step budget (step {step}): {missed} images below the threshold"
                        );
                        match self.box_hint() {
                            Some(hint) => {
                                self.hint_labels = hint.labels;
                                format!("{text}; {}", hint.text)
                            }
                            None => text,
                        }
                    }
                    EndReason::Cancelled => "cancelled".into(),
                    EndReason::Error(e) => {
                        format!("error: {e} (the last good images stay, and can be exported)")
                    }
                };
                self.status = if is_error {
                    Status::error(text)
                } else {
                    Status::info(text)
                };
                self.log_event(step, LogEntry::Ended(self.status.to_string()));
                self.run = None;
                if let Some((_, end @ None)) = &mut self.run_clock {
                    *end = Some(now);
                }
            }
            // Events of a run that was reset or replaced.
            _ => {}
        }
    }

    /// Logs what a snapshot brings (reinitialisations, labels passing, images stalling) and
    /// starts the flashes.
    fn note_snapshot(&mut self, s: &Snapshot, now: Instant) {
        let rows = s.probs.len();
        self.last_reinit.resize(rows, None);
        self.was_stalled.resize(rows, false);
        self.passed_groups.resize(s.labels.len(), false);
        for r in &s.new_reinits {
            if let Some(t) = self.last_reinit.get_mut(r.image) {
                *t = Some(now);
            }
            let label = s.labels.get(r.image / s.batch.max(1)).copied().unwrap_or(0);
            self.log_event(
                r.step,
                LogEntry::Reinit {
                    label,
                    image: r.image % s.batch.max(1),
                    kind: r.kind,
                    p: r.p_label,
                },
            );
        }
        for (g, &label) in s.labels.iter().enumerate() {
            let all_passed = (0..s.batch).all(|i| {
                s.probs[g * s.batch + i]
                    .get(label as usize)
                    .copied()
                    .unwrap_or(0.0)
                    > self.settings.threshold
            });
            if all_passed && !self.passed_groups[g] {
                self.passed_groups[g] = true;
                self.log_event(s.step, LogEntry::Passed { label });
            }
        }
        for row in 0..rows {
            let stalled = s.stalled.get(row).copied().unwrap_or(false);
            if stalled && !self.was_stalled[row] {
                let label = s.labels[row / s.batch.max(1)];
                self.log_event(
                    s.step,
                    LogEntry::Stalled {
                        label,
                        image: row % s.batch.max(1),
                    },
                );
            }
            self.was_stalled[row] = stalled;
        }
    }

    /// Images of the snapshot at or below the threshold.
    /// Why the images left short may never pass ([`box_hint`]), from the last snapshot.
    fn box_hint(&self) -> Option<BoxHint> {
        let s = self.snapshot.as_ref()?;
        let short: Vec<Short> = (0..s.probs.len())
            .filter_map(|row| {
                let label = s.labels[row / s.batch.max(1)];
                let p = s.probs[row].get(label as usize).copied()?;
                (p <= self.settings.threshold).then(|| Short {
                    label,
                    p,
                    reinits: s.reinits.get(row).copied().unwrap_or(0),
                })
            })
            .collect();
        box_hint(&short, &self.settings)
    }

    fn missed(&self) -> usize {
        self.snapshot.as_ref().map_or(0, |s| {
            (0..s.probs.len())
                .filter(|&row| {
                    let label = s.labels[row / s.batch.max(1)] as usize;
                    s.probs[row]
                        .get(label)
                        .is_none_or(|p| *p <= self.settings.threshold)
                })
                .count()
        })
    }

    /// Whether image `row` is flashing after a re-initialisation.
    fn is_flashing(&self, row: usize) -> bool {
        self.last_reinit
            .get(row)
            .copied()
            .flatten()
            .is_some_and(|t| t.elapsed() < FLASH)
    }

    fn select_passed(&mut self) {
        let Some(s) = &self.snapshot else { return };
        self.selected = (0..s.probs.len())
            .filter(|&row| {
                let label = s.labels[row / s.batch] as usize;
                s.probs[row]
                    .get(label)
                    .is_some_and(|p| *p > self.settings.threshold)
            })
            .collect();
    }

    /// The images of the latest snapshot (N×784), if any.
    pub fn current_images(&self) -> Option<Vec<f32>> {
        self.snapshot.as_ref().map(|s| s.images.clone())
    }

    /// The steps of the current (or last) run and the seconds it has computed them in,
    /// from its first snapshot (the reference sets built) to its end or now.
    pub fn run_rate(&self) -> Option<(usize, f64)> {
        let (start, end) = self.run_clock?;
        let steps = self.snapshot.as_ref()?.step;
        let secs = end.unwrap_or_else(Instant::now).duration_since(start);
        Some((steps, secs.as_secs_f64()))
    }

    /// The engine's steps/s in the latest snapshot.
    pub fn steps_per_s(&self) -> f64 {
        self.snapshot.as_ref().map_or(0.0, |s| s.steps_per_s)
    }

    pub fn is_running(&self) -> bool {
        self.run.is_some()
    }

    /// Whether the engine is busy with this view's run: started, neither paused nor ended.
    pub fn is_computing(&self) -> bool {
        self.run.is_some() && !self.snapshot.as_ref().is_some_and(|s| s.is_paused)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backwork::engine::Reinit;
    use crate::worker::CurvePoint;

    /// A view on a detached worker with a run (id 0) started, two labels × two images.
    fn view() -> RunView {
        let train = std::sync::Arc::new(crate::data::Dataset {
            source: "test".into(),
            shape: crate::data::digits_shape(),
            classes: crate::data::digit_classes(),
            pixels: vec![0; crate::data::PIXELS],
            labels: vec![0],
        });
        let (worker, _peer) = Worker::detached();
        let mut v = RunView::new(worker, train);
        v.run = Some(0);
        v
    }

    /// A snapshot of run 0 at `step` where image 3 (label 7, index 1) has p(label) = `p3`
    /// and the others 0.9995.
    fn snapshot(step: usize, p3: f32, new_reinits: Vec<Reinit>, stalled: bool) -> Event {
        let probs: Vec<Vec<f32>> = (0..4)
            .map(|row| {
                let label = [2usize, 7][row / 2];
                let p = if row == 3 { p3 } else { 0.9995 };
                let mut v = vec![(1.0 - p) / 9.0; 10];
                v[label] = p;
                v
            })
            .collect();
        Event::Snapshot(Box::new(Snapshot {
            run: 0,
            step,
            labels: vec![2, 7],
            batch: 2,
            images: vec![0.5; 4 * crate::data::PIXELS],
            probs,
            reinits: vec![0, 0, 0, new_reinits.len()],
            stalled: vec![false, false, false, stalled],
            nearest: vec![vec![None; 4]; 4],
            tap_names: crate::backwork::settings::original_tap_names().into(),
            saliency: None,
            points: vec![CurvePoint {
                step,
                terms: Default::default(),
                min_p: vec![0.9995, p3],
                mean_p: vec![0.9995, p3],
            }],
            new_reinits,
            steps_per_s: 12.0,
            is_paused: false,
        }))
    }

    fn log_lines(v: &RunView) -> Vec<String> {
        v.log.iter().map(|(s, e)| format!("{s} {e}")).collect()
    }

    #[test]
    fn a_snapshot_logs_reinits_passes_and_stalls_once_and_starts_the_flash() {
        let mut v = view();
        let t0 = Instant::now();
        let reinit = Reinit {
            kind: ReinitKind::MonoDec,
            step: 4,
            image: 3,
            p_label: 0.25,
        };
        v.apply(snapshot(5, 0.3, vec![reinit], true), t0);
        assert_eq!(
            log_lines(&v),
            vec![
                "5 label 7 image 1: stalled",
                "5 label 2: every image past the threshold",
                "4 label 7 image 1: re-initialised at p = 0.25000",
            ]
        );
        assert!(
            v.progress
                .starts_with("step 5 · 12.0 steps/s · 1 reinitialisations")
        );
        assert!(v.is_flashing(3) && !v.is_flashing(0));
        // The same state again logs nothing new.
        v.apply(snapshot(6, 0.3, Vec::new(), true), t0);
        assert_eq!(v.log.len(), 3);
    }

    /// A run that stops at its budget with an image near the bar after many restarts says
    /// why it may never pass (the pixel box), as the CLI does; one restarted less does not.
    #[test]
    fn a_run_short_near_the_bar_after_many_restarts_says_why() {
        for (restarts, says) in [(12, true), (3, false)] {
            let mut v = view();
            let t0 = Instant::now();
            let mut ev = snapshot(9, 0.995, Vec::new(), true);
            if let Event::Snapshot(s) = &mut ev {
                s.reinits[3] = restarts;
            }
            v.apply(ev, t0);
            v.apply(
                Event::Ended {
                    run: 0,
                    reason: EndReason::MaxSteps,
                },
                t0,
            );
            let text = &v.status.text;
            assert_eq!(
                text.contains("1 image(s) of label 7 ended short at p 0.99500")
                    && text.contains("local maxima"),
                says,
                "{text}"
            );
            // The status bar offers to measure the ceiling of the labels left short, and a
            // click asks for it; without a hint there is no button.
            assert_eq!(v.hint_labels, if says { vec![7] } else { vec![] });
            use egui_kittest::kittest::Queryable;
            let mut h = egui_kittest::Harness::builder()
                .with_size(egui::vec2(1400.0, 40.0))
                .build_ui_state(|ui, v: &mut RunView| v.status_bar_ui(ui), v);
            h.run();
            let button = h.query_by_label("Measure the ceiling");
            assert_eq!(button.is_some(), says);
            if let Some(b) = button {
                b.click();
                h.run();
                assert_eq!(h.state().ceiling_request, Some(vec![7]));
            }
        }
    }

    #[test]
    fn the_end_of_a_run_says_how_it_ended_and_stops_the_clock() {
        let mut v = view();
        let t0 = Instant::now();
        v.apply(snapshot(9, 0.3, Vec::new(), false), t0);
        v.apply(
            Event::Ended {
                run: 0,
                reason: EndReason::MaxSteps,
            },
            t0 + Duration::from_secs(2),
        );
        assert!(!v.is_running());
        assert_eq!(
            v.status.text,
            "stopped at the step budget (step 9): 1 images below the threshold"
        );
        assert_eq!(v.run_rate(), Some((9, 2.0)));
        assert!(log_lines(&v)[0].starts_with("9 run ended: stopped at the step budget"));
        // A refusal is an error in the status line and a line in the log.
        v.apply(
            Event::Refused {
                run: 0,
                message: "sim_coeff: out of range".into(),
            },
            t0,
        );
        assert!(v.status.is_error());
        assert_eq!(log_lines(&v)[0], "9 error: sim_coeff: out of range");
    }

    #[test]
    fn events_of_another_run_are_ignored() {
        let mut v = view();
        v.run = Some(1);
        v.apply(snapshot(3, 0.3, Vec::new(), false), Instant::now());
        v.apply(
            Event::Ended {
                run: 0,
                reason: EndReason::Threshold,
            },
            Instant::now(),
        );
        assert!(v.is_running());
        assert!(v.log.is_empty());
        assert!(v.current_images().is_none());
    }
}
