//! The box's ceiling, in the Sweep view: how high p(label) can go with pixels in [0, 1] on the
//! current model, label by label (the measurement of `backwork ceiling`), against the run's
//! bar. A label whose best is under the bar is one no setting passes with pixels a PNG can
//! hold: the answer to "why does this label never finish?" before a sweep looks for a setting.

use egui::Color32;

use super::Wake;
use super::status::Status;
use crate::backwork::Settings;
use crate::backwork::ceiling::{Ceiling, MAX_STARTS};
use crate::data::Dataset;
use crate::worker::job::{Job, JobEvent};
use crate::worker::models::ModelHandle;
use crate::worker::studies::{CeilingEvent, ceiling_job};

/// The measurement's controls, its results and its job.
pub struct CeilingPanel {
    pub starts: usize,
    pub max_steps: usize,
    /// The labels measured so far, in order.
    pub found: Vec<Ceiling>,
    /// The model and bar the results are for.
    pub measured: Option<(String, f32)>,
    pub status: Status,
    /// (label done, labels, step)
    progress: (usize, usize, usize),
    job: Option<Job<CeilingEvent, ()>>,
}

impl Default for CeilingPanel {
    fn default() -> Self {
        Self {
            starts: 32,
            max_steps: crate::backwork::settings::DEFAULT_STEP_BUDGET,
            found: Vec::new(),
            measured: None,
            status: Status::default(),
            progress: (0, 0, 0),
            job: None,
        }
    }
}

impl CeilingPanel {
    pub fn is_running(&self) -> bool {
        self.job.is_some()
    }

    /// Measures the labels of `base` on `model`, judged against `base`'s threshold.
    pub fn start(&mut self, model: &ModelHandle, base: &Settings, wake: Wake) {
        self.stop();
        let job = ceiling_job(
            model,
            base.labels.clone(),
            (self.starts.clamp(1, MAX_STARTS), self.max_steps.max(1), 0),
            wake,
        );
        match job {
            Ok(job) => {
                self.job = Some(job);
                self.found.clear();
                self.measured = Some((model.info().name.clone(), base.threshold));
                self.progress = (0, base.labels.len(), 0);
                self.status = Status::progress("measuring…");
            }
            Err(e) => self.status = Status::error(format!("error: {e}")),
        }
    }

    /// Stops a running measurement and waits for its thread.
    pub fn stop(&mut self) {
        if self.job.take().is_some() {
            self.status = Status::info(format!("stopped after {} label(s)", self.found.len()));
        }
    }

    /// Takes the thread's events.
    pub fn poll(&mut self) {
        let Some(job) = &mut self.job else { return };
        let mut ended = None;
        for m in job.poll() {
            match m {
                JobEvent::Progress(CeilingEvent::Step { done, total, step }) => {
                    self.progress = (done, total, step)
                }
                JobEvent::Progress(CeilingEvent::Measured(c)) => self.found.push(c),
                JobEvent::Done(r) => ended = Some(r),
            }
        }
        if let Some(r) = ended {
            self.job = None;
            let stopped = format!("stopped after {} label(s)", self.found.len());
            self.status = Status::job_end(r, self.verdict(), stopped);
        }
    }

    /// The labels whose best is not past the bar the measurement was started with.
    pub fn under_bar(&self) -> Vec<u8> {
        let bar = self.measured.as_ref().map_or(1.0, |m| m.1);
        self.found
            .iter()
            .filter(|c| c.best() <= bar)
            .map(|c| c.label)
            .collect()
    }

    /// What the finished measurement says, in one line.
    fn verdict(&self) -> String {
        let bar = self.measured.as_ref().map_or(1.0, |m| m.1);
        let under = self.under_bar();
        if under.is_empty() {
            format!("every label's best is past {bar}: the box leaves room above the bar")
        } else {
            let names: Vec<String> = under.iter().map(u8::to_string).collect();
            format!(
                "label(s) {} never passed {bar} from any start: with pixels in [0, 1] no run is likely to pass them on this network (trained on normalised images? set its mean and std in the Model view)",
                names.join(", ")
            )
        }
    }

    pub fn ui(
        &mut self,
        ui: &mut egui::Ui,
        model: &ModelHandle,
        base: &Settings,
        wake: &Wake,
        train: &Dataset,
    ) {
        self.poll();
        ui.heading("How high can p go?");
        ui.label(format!(
            "Climbs each label's log-odds from random starts with pixels kept in [0, 1] and no distance terms ({} labels of the current settings, the current model), as `backwork ceiling` does: a label whose best stays under the threshold is one no setting passes with images a PNG can hold.",
            base.labels.len()
        ));
        let running = self.is_running();
        ui.horizontal(|ui| {
            ui.add_enabled_ui(!running, |ui| {
                let l = ui.label("starts");
                ui.add(egui::DragValue::new(&mut self.starts).range(1..=MAX_STARTS))
                    .labelled_by(l.id);
                let l = ui.label("steps");
                ui.add(egui::DragValue::new(&mut self.max_steps).range(1..=100_000))
                    .labelled_by(l.id);
            });
            if !running && ui.button("Measure").clicked() {
                self.start(model, base, wake.clone());
            }
            if running && ui.button("Stop measuring").clicked() {
                self.stop();
            }
            if running {
                let (done, total, step) = self.progress;
                ui.label(format!(
                    "label {} of {total}, step {step} of {}",
                    (done + 1).min(total),
                    self.max_steps
                ));
            }
            self.status.ui(ui);
        });
        let Some((name, bar)) = self.measured.clone() else {
            return;
        };
        if self.found.is_empty() {
            return;
        }
        ui.label(format!("on {name}, against the threshold {bar}"));
        let n = self.found.first().map_or(0, |c| c.ps.len());
        egui::Grid::new("ceiling-table")
            .striped(true)
            .spacing([16.0, 2.0])
            .show(ui, |ui| {
                for h in ["label", "best p", "median p", "past the threshold", ""] {
                    ui.strong(h);
                }
                ui.end_row();
                for c in &self.found {
                    let is_under = c.best() <= bar;
                    ui.label(train.class_name(usize::from(c.label)));
                    let best = egui::RichText::new(format!("{:.5}", c.best()));
                    ui.label(if is_under {
                        best.color(Color32::from_rgb(220, 60, 60))
                    } else {
                        best
                    });
                    ui.label(format!("{:.5}", c.median()));
                    ui.label(format!("{} of {n} starts", c.past(bar)));
                    ui.label(if is_under {
                        "under the threshold: out of reach with pixels in [0, 1]"
                    } else {
                        "room above the threshold"
                    });
                    ui.end_row();
                }
            });
    }
}

impl Drop for CeilingPanel {
    fn drop(&mut self) {
        self.stop();
    }
}
