//! `--frame-stats`: frame times and the engine's rate, for scripts/frame_stats.sh.

use std::sync::Arc;

/// Frame-time statistics, rewritten to a file every second (`--frame-stats`).
///
/// A frame's time runs from the start of its `ui` call to the moment its pixels are
/// rendered: a paint callback drawn last calls `glFinish`, so software rendering (Mesa
/// llvmpipe, which rasterises lazily) is counted in full. Frames are drawn when something
/// changes (snapshots of the engine, at most one frame per 100 ms; input), as in normal use; the
/// statistics are over the frames of the last second. The window's very first frame, which
/// builds the font atlas and compiles the shaders (about 30 ms under llvmpipe) before
/// anything of a run shows, is counted in `frames` but not in the percentiles.
pub struct FrameStats {
    file: std::path::PathBuf,
    window_start: std::time::Instant,
    frame_start: std::time::Instant,
    /// Durations (ms) of rendered frames, pushed by the paint callback.
    done: Arc<std::sync::Mutex<Vec<f64>>>,
    frames: u64,
    is_first_seen: bool,
}

impl FrameStats {
    pub fn new(file: std::path::PathBuf) -> Self {
        Self {
            file,
            window_start: std::time::Instant::now(),
            frame_start: std::time::Instant::now(),
            done: Default::default(),
            frames: 0,
            is_first_seen: false,
        }
    }

    /// Marks the start of a frame; once a second writes the JSON of the frames rendered
    /// since (a write failure goes to the status line).
    pub fn begin_frame(&mut self, steps_per_s: f64, run: Option<(usize, f64)>) -> Option<String> {
        let now = std::time::Instant::now();
        self.frame_start = now;
        if now.duration_since(self.window_start).as_secs_f64() < 1.0 {
            return None;
        }
        let mut ms = std::mem::take(&mut *self.done.lock().ok()?);
        self.window_start = now;
        if ms.is_empty() {
            return None;
        }
        self.frames += ms.len() as u64;
        if !std::mem::replace(&mut self.is_first_seen, true) {
            ms.remove(0);
            if ms.is_empty() {
                return None;
            }
        }
        ms.sort_by(f64::total_cmp);
        let pct = |q: f64| ms[((ms.len() - 1) as f64 * q).round() as usize];
        let (run_steps, run_seconds) = run.unzip();
        let json = serde_json::json!({
            "frames": self.frames,
            "p50_ms": pct(0.5),
            "p99_ms": pct(0.99),
            "engine_steps_per_s": steps_per_s,
            // The run so far: its steps, and the seconds since its first snapshot (to its end
            // once it has ended), whose ratio is its mean rate beside the window.
            "run_steps": run_steps,
            "run_seconds": run_seconds,
        });
        crate::io::write_atomic(&self.file, json.to_string().as_bytes(), true)
            .err()
            .map(|e| format!("--frame-stats: {e}"))
    }

    /// Adds, on top of everything, the paint callback that times this frame's rendering.
    pub fn end_frame_ui(&self, ui: &egui::Ui) {
        let (start, done) = (self.frame_start, self.done.clone());
        let callback = eframe::egui_glow::CallbackFn::new(move |_info, painter| {
            use eframe::glow::HasContext as _;
            // SAFETY: a plain GL call on the painter's current context, on its thread.
            unsafe { painter.gl().finish() };
            if let Ok(mut d) = done.lock() {
                d.push(start.elapsed().as_secs_f64() * 1000.0);
            }
        });
        let rect = egui::Rect::from_min_size(egui::Pos2::ZERO, egui::vec2(1.0, 1.0));
        ui.ctx()
            .layer_painter(egui::LayerId::new(
                egui::Order::Debug,
                egui::Id::unique("backwork-frame-timer"),
            ))
            .add(egui::PaintCallback {
                rect,
                callback: Arc::new(callback),
            });
        // Write the statistics every second even when nothing else asks for a frame.
        ui.ctx()
            .request_repaint_after(std::time::Duration::from_secs(1));
    }
}
