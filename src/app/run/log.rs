//! The run's event log: typed entries, newest first, bounded; a drag of a slider makes one
//! entry per step naming every setting changed within it (merged by type, not by reading the
//! log's own text back). Drawn under the curves.

#[allow(unused_imports)]
use super::*;

/// Lines the event log keeps.
pub(super) const LOG_LINES: usize = 500;

/// One thing that happened in a run.
#[derive(Clone, Debug, PartialEq)]
pub enum LogEntry {
    /// A run started on these labels with `batch` images each.
    Started {
        labels: Vec<u8>,
        batch: usize,
    },
    /// An image was re-initialised or perturbed at p(label) `p`.
    Reinit {
        label: u8,
        image: usize,
        kind: ReinitKind,
        p: f32,
    },
    /// Every image of a label passed the threshold.
    Passed {
        label: u8,
    },
    /// An image stalled below the threshold.
    Stalled {
        label: u8,
        image: usize,
    },
    /// Settings changed while the run went on (the fields' names).
    SettingsChanged(Vec<String>),
    ModelChanged(String),
    /// How the run ended.
    Ended(String),
    /// A message of the worker (an export, a notice, a refusal).
    Message(String),
}

impl LogEntry {
    /// The line, each label followed by its class name from `classes` where the name is not
    /// the label's number ("label 7 (Sneaker)").
    pub fn text(&self, classes: &[String]) -> String {
        let label = |l: &u8| match classes.get(*l as usize) {
            Some(name) if *name != l.to_string() => format!("{l} ({name})"),
            _ => l.to_string(),
        };
        match self {
            LogEntry::Started { labels, batch } => {
                let labels: Vec<String> = labels.iter().map(label).collect();
                format!(
                    "run started: labels {}, {batch} images each",
                    labels.join(",")
                )
            }
            LogEntry::Reinit {
                label: l,
                image,
                kind,
                p,
            } => {
                let what = match kind {
                    ReinitKind::MonoDec => "re-initialised",
                    ReinitKind::StallReinit => "re-initialised (stalled)",
                    ReinitKind::StallPerturb => "perturbed (stalled)",
                };
                format!("label {} image {image}: {what} at p = {p:.5}", label(l))
            }
            LogEntry::Passed { label: l } => {
                format!("label {}: every image past the threshold", label(l))
            }
            LogEntry::Stalled { label: l, image } => {
                format!("label {} image {image}: stalled", label(l))
            }
            LogEntry::SettingsChanged(fields) => {
                format!("settings changed: {}", fields.join(", "))
            }
            LogEntry::ModelChanged(name) => format!("model changed to {name}"),
            LogEntry::Ended(how) => format!("run ended: {how}"),
            LogEntry::Message(m) => m.clone(),
        }
    }
}

impl std::fmt::Display for LogEntry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.text(&[]))
    }
}

/// The log: (step, entry), newest first.
#[derive(Debug, Default)]
pub struct EventLog {
    entries: VecDeque<(usize, LogEntry)>,
}

impl EventLog {
    /// Adds an entry at `step` (newest first, at most [`LOG_LINES`]). Settings changed at the
    /// same step as the newest entry, itself a settings change, merge into it: a drag changes
    /// the value every frame, and the log keeps one line per step naming every field.
    pub fn push(&mut self, step: usize, entry: LogEntry) {
        if let LogEntry::SettingsChanged(new) = &entry
            && let Some((s, LogEntry::SettingsChanged(fields))) = self.entries.front_mut()
            && *s == step
        {
            for f in new {
                if !fields.contains(f) {
                    fields.push(f.clone());
                }
            }
            return;
        }
        self.entries.push_front((step, entry));
        self.entries.truncate(LOG_LINES);
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Entries newest first.
    pub fn iter(&self) -> impl Iterator<Item = &(usize, LogEntry)> {
        self.entries.iter()
    }
}

impl RunView {
    /// Adds an entry to the event log.
    pub fn log_event(&mut self, step: usize, entry: LogEntry) {
        self.log.push(step, entry);
    }

    /// The right-hand side: the curves, then the event log.
    pub fn side_ui(&mut self, ui: &mut egui::Ui) {
        let log_h = 140.0;
        let curves_h = (ui.available_height() - log_h - 30.0).max(200.0);
        ui.allocate_ui(vec2(ui.available_width(), curves_h), |ui| {
            self.curves.ui(ui)
        });
        ui.separator();
        ui.label(RichText::new("Events").strong());
        if self.log.is_empty() {
            ui.weak("Reinitialisations, settings changes and labels passing show here.");
            return;
        }
        // Only the visible lines are laid out: the log holds up to LOG_LINES.
        let row_h = ui.text_style_height(&egui::TextStyle::Small);
        egui::ScrollArea::vertical()
            .id_salt("event-log")
            .max_height(log_h)
            .auto_shrink([false, true])
            .show_rows(ui, row_h, self.log.len(), |ui, rows| {
                for (step, what) in self.log.iter().skip(rows.start).take(rows.len()) {
                    ui.small(format!(
                        "step {step:>5}  {}",
                        what.text(&self.train.classes)
                    ));
                }
            });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_changes_of_one_step_merge_and_other_entries_do_not() {
        let mut log = EventLog::default();
        log.push(3, LogEntry::SettingsChanged(vec!["sim_coeff".into()]));
        log.push(
            3,
            LogEntry::SettingsChanged(vec!["sim_coeff".into(), "lr".into()]),
        );
        assert_eq!(log.len(), 1);
        // Labels take their class names where those are not the number.
        let names: Vec<String> = ["T-shirt/top", "Trouser", "2"].map(String::from).to_vec();
        assert_eq!(
            LogEntry::Passed { label: 1 }.text(&names),
            "label 1 (Trouser): every image past the threshold"
        );
        assert_eq!(
            LogEntry::Stalled { label: 2, image: 0 }.text(&names),
            "label 2 image 0: stalled"
        );
        assert_eq!(
            log.iter().next().map(|(_, e)| e.to_string()),
            Some("settings changed: sim_coeff, lr".into())
        );
        // Another step, or another kind of entry in between, starts a new line.
        log.push(4, LogEntry::SettingsChanged(vec!["lr".into()]));
        log.push(4, LogEntry::Passed { label: 7 });
        log.push(4, LogEntry::SettingsChanged(vec!["lr".into()]));
        assert_eq!(log.len(), 4);
        // Bounded.
        for i in 0..2 * LOG_LINES {
            log.push(10 + i, LogEntry::Message("x".into()));
        }
        assert_eq!(log.len(), LOG_LINES);
    }
}
