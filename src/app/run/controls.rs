//! The run view's controls: Start / Pause / Step / Reset and their keys, the target labels,
//! where images start, the view toggles, the settings sliders, export, and the status bar.

#[allow(unused_imports)]
use super::*;

impl RunView {
    /// The view toggles: saliency overlay (and its k), nearest training image under each tile.
    pub fn view_toggles_ui(&mut self, ui: &mut egui::Ui) {
        ui.horizontal(|ui| {
            ui.label("show");
            if ui
                .toggle_value(&mut self.show_saliency, "saliency")
                .on_hover_text("Overlay each image with the pixels that raise p(label) most (the top k of d p(label) / d input, in red)")
                .changed()
            {
                self.worker.send(Command::Saliency(self.show_saliency));
                self.is_dirty = true;
            }
            if self.show_saliency
                && ui
                    .add(egui::DragValue::new(&mut self.saliency_k).range(1..=self.image_shape.h * self.image_shape.w).suffix(" px"))
                    .on_hover_text("Pixels in each saliency mask")
                    .changed()
            {
                self.is_dirty = true;
            }
            ui.toggle_value(&mut self.show_nearest, "nearest")
                .on_hover_text("Show each image's nearest training image (pixel space, the arg-min of the inputs term) with its distance");
        });
    }

    /// The sliders; a change goes to the running engine before its next step and is marked
    /// on the curves.
    pub fn settings_panel_ui(&mut self, ui: &mut egui::Ui) {
        if let Some(new) = settings_ui(ui, &self.settings, &self.tap_names) {
            let changed = self.settings.changed_fields(&new);
            self.settings = new.clone();
            self.settings_changed = true;
            if self.is_running() {
                let step = self.snapshot.as_ref().map_or(0, |s| s.step);
                self.curves.mark_settings(step);
                // A drag changes the value every frame: the log merges the changes of one
                // step into one line naming every field changed within it.
                self.log_event(step, LogEntry::SettingsChanged(changed));
                self.command(Command::Settings(new));
            }
        }
    }

    /// Asks for a folder (the dialog runs beside the window) for the export of the
    /// selection; an empty selection is refused here.
    pub fn export_selected(&mut self, ctx: &egui::Context) {
        if self.selected.is_empty() {
            self.status =
                Status::info("select images to export first (click tiles, or Select passed)");
            return;
        }
        if self.export_dialog.is_some() {
            return;
        }
        let rows = self.selected.iter().copied().collect();
        self.export_dialog = Some(Dialog::open(rows, ctx, || {
            rfd::FileDialog::new()
                .set_title("Export the selected images into a new or empty folder")
                .pick_folder()
        }));
        self.status = Status::progress("choose a new or empty folder for the export…");
    }

    /// Sends the export once its folder dialog has closed.
    pub(super) fn poll_export_dialog(&mut self) {
        match Dialog::poll(&mut self.export_dialog) {
            Some((rows, Some(dir))) => {
                self.status = Status::progress(format!(
                    "exporting {} images to {}…",
                    rows.len(),
                    dir.display()
                ));
                self.command(Command::Export {
                    dir,
                    rows: Some(rows),
                });
            }
            Some((_, None)) => self.status = Status::info(format!("export cancelled: {NO_DIALOG}")),
            None => {}
        }
    }

    /// The status bar: the run's live state, then the last message (errors in red).
    pub fn status_bar_ui(&mut self, ui: &mut egui::Ui) {
        ui.horizontal(|ui| {
            ui.label(&self.progress);
            if !self.hint_labels.is_empty()
                && ui
                    .button("Measure the ceiling")
                    .on_hover_text("How high p(label) can go with pixels in [0, 1] for the labels left short (the Sweep view's \"How high can p go?\")")
                    .clicked()
            {
                self.ceiling_request = Some(self.hint_labels.clone());
            }
            if !self.status.is_empty() {
                ui.separator();
                self.status.ui(ui);
            }
        });
    }

    pub fn controls_ui(&mut self, ui: &mut egui::Ui) {
        let paused = self.snapshot.as_ref().is_some_and(|s| s.is_paused);
        ui.horizontal_wrapped(|ui| {
            self.run_buttons_ui(ui, paused);
            ui.separator();
            let has_images = self.snapshot.is_some();
            if ui
                .add_enabled(has_images, egui::Button::new("Select passed"))
                .on_hover_text("Select every image past the threshold (click a tile to toggle it)")
                .clicked()
            {
                self.select_passed();
            }
            let export = format!("Export {} selected…", self.selected.len());
            if ui
                .add_enabled(has_images, egui::Button::new(export))
                .on_hover_text("Write the selected images as `backwork run` does: PNGs, images.npy, results.json, sheet.png, into a new or empty folder")
                .clicked()
            {
                self.export_selected(ui.ctx());
            }
            ui.separator();
            self.labels_ui(ui);
            // Each control carries its words, so the bar never wraps between them (a narrow
            // window put "images per label" at a line's end and its number on the next); the
            // short words keep the bar on one line in a 1280-pixel window.
            ui.add(
                egui::DragValue::new(&mut self.settings.batch)
                    .range(1..=64)
                    .prefix("per label: "),
            )
            .on_hover_text("Images optimised per label (8 in the original figure); takes effect at the next Start");
            ui.separator();
            self.init_ui(ui);
            self.budget_ui(ui);
            if !self.is_worker_alive
                && self.spec.is_some()
                && ui
                    .button("Restart engine")
                    .on_hover_text("Start a fresh engine thread (the last run is lost)")
                    .clicked()
            {
                self.restart_worker();
            }
        });
        self.shortcuts(ui, paused);
    }

    /// Start, Pause or Resume, Step, Reset.
    fn run_buttons_ui(&mut self, ui: &mut egui::Ui, paused: bool) {
        if ui
            .button("Start")
            .on_hover_text("Start a new run with the settings below")
            .clicked()
        {
            self.command(Command::Start(self.settings.clone()));
        }
        let running = self.is_running();
        let label = if paused { "Resume" } else { "Pause" };
        if ui
            .add_enabled(running, egui::Button::new(label))
            .on_hover_text("space")
            .clicked()
        {
            self.command(if paused {
                Command::Resume
            } else {
                Command::Pause
            });
        }
        if ui
            .add_enabled(running, egui::Button::new("Step"))
            .on_hover_text("S: one step while paused")
            .clicked()
        {
            self.command(Command::Step);
        }
        if ui
            .add_enabled(running, egui::Button::new("Reset"))
            .on_hover_text("R")
            .clicked()
        {
            self.command(Command::Reset);
        }
    }

    /// The step budget: off, or a number of steps.
    fn budget_ui(&mut self, ui: &mut egui::Ui) {
        let mut has_budget = self.settings.max_steps.is_some();
        if ui
            .checkbox(&mut has_budget, "stop at")
            .on_hover_text("Stop the run after a number of steps (the CLI's --max-steps; 1,500 by default there)")
            .changed()
        {
            self.settings.max_steps = has_budget.then_some(crate::backwork::settings::DEFAULT_STEP_BUDGET);
            self.settings_changed = true;
        }
        if let Some(m) = &mut self.settings.max_steps
            && ui
                .add(
                    egui::DragValue::new(m)
                        .range(1..=1_000_000)
                        .suffix(" steps"),
                )
                .changed()
        {
            self.settings_changed = true;
        }
        if ui
            .checkbox(&mut self.keep_going, "keep going")
            .on_hover_text("Go on after every image passed the threshold, until the step budget, Reset or a new Start: watch the cost work on fooled images (farther from the training images and each other) and the sliders with it. The method itself stops there (the CLI's run --keep-going)")
            .changed()
        {
            self.command(Command::KeepGoing(self.keep_going));
        }
    }

    /// Keyboard shortcuts: space starts, pauses or resumes, S steps, R resets.
    fn shortcuts(&mut self, ui: &mut egui::Ui, paused: bool) {
        // Keyboard shortcuts: space pauses or resumes, S steps, R resets; not while typing
        // into a field, and not with Ctrl, Alt or Cmd (those belong to the system).
        let is_typing = ui.ctx().egui_wants_keyboard_input();
        let (space, s, r) = ui.input(|i| {
            let plain = !(is_typing || i.modifiers.ctrl || i.modifiers.alt || i.modifiers.command);
            (
                plain && i.key_pressed(egui::Key::Space),
                plain && i.key_pressed(egui::Key::S),
                plain && i.key_pressed(egui::Key::R),
            )
        });
        if space {
            if !self.is_running() {
                self.command(Command::Start(self.settings.clone()));
            } else {
                self.command(if paused {
                    Command::Resume
                } else {
                    Command::Pause
                });
            }
        }
        if s && self.is_running() {
            self.command(Command::Step);
        }
        if r && self.is_running() {
            self.command(Command::Reset);
        }
    }

    /// The target labels, one toggle per class of the data, under its name; at least one
    /// stays selected.
    pub(super) fn labels_ui(&mut self, ui: &mut egui::Ui) {
        ui.label("labels");
        let n = self.train.num_classes().min(256);
        for d in 0..n as u8 {
            let name = self.train.class_name(d as usize);
            let mut on = self.settings.labels.contains(&d);
            if ui
                .toggle_value(&mut on, &name)
                .on_hover_text(format!(
                    "Optimise images classified as {name} (label {d}; at the next Start)"
                ))
                .changed()
            {
                if on {
                    self.settings.labels.push(d);
                    self.settings.labels.sort_unstable();
                } else if self.settings.labels.len() > 1 {
                    self.settings.labels.retain(|&l| l != d);
                }
                self.settings_changed = true;
            }
        }
        if ui
            .small_button("all")
            .on_hover_text("Every class (the default)")
            .clicked()
        {
            self.settings.labels = (0..n as u8).collect();
            self.settings_changed = true;
        }
    }

    /// Keeps the labels the data has (all of its classes when none is left).
    pub fn fit_labels(&mut self) {
        let n = self.train.num_classes().min(256);
        self.settings.labels.retain(|&l| (l as usize) < n);
        if self.settings.labels.is_empty() {
            self.settings.labels = (0..n as u8).collect();
        }
    }

    /// Where the next run's images start: noise, class means, the current images, or a
    /// `.npy` file (the CLI's `--init`). Re-initialised images always restart from noise.
    pub(super) fn init_ui(&mut self, ui: &mut egui::Ui) {
        let text = match &self.settings.init {
            Init::Noise => "noise".to_string(),
            Init::ClassMeans => "class means".to_string(),
            Init::Current => "the current images".to_string(),
            Init::File(p) => p
                .file_name()
                .map_or("a file".into(), |f| f.to_string_lossy().into_owned()),
        };
        let before = self.settings.init.clone();
        let mut wants_file = false;
        // One widget that reads "start from noise" (a label after the picker read "noise
        // start from", and wrapped away from it).
        let picker = egui::ComboBox::from_id_salt("start from")
            .selected_text(format!("start from {text}"))
            .show_ui(ui, |ui| {
                ui.selectable_value(&mut self.settings.init, Init::Noise, "noise")
                    .on_hover_text("Uniform [0, 1) noise, seeded (the default)");
                ui.selectable_value(&mut self.settings.init, Init::ClassMeans, "class means")
                    .on_hover_text("Each image the mean of a group of the label's training images (the original's init_w_train_vals)");
                ui.selectable_value(&mut self.settings.init, Init::Current, "the current images")
                    .on_hover_text("Go on from the images on screen (same labels and images per label)");
                wants_file = ui
                    .button("a file…")
                    .on_hover_text("A .npy of (labels × images per label, 28, 28) images, group-major, e.g. an export's images.npy")
                    .clicked();
            });
        // Its name for screen readers (the words are in its text, not in a label).
        ui.ctx()
            .accesskit_node_builder(picker.response.id, |n| n.set_label("start from"));
        picker.response.on_hover_text(
            "Where the next run's images start (the CLI's --init); re-initialised images restart from noise",
        );
        if wants_file && self.init_dialog.is_none() {
            self.init_dialog = Some(Dialog::open((), ui.ctx(), || {
                rfd::FileDialog::new()
                    .set_title("Start the next run from these images (.npy)")
                    .add_filter("NumPy array", &["npy"])
                    .pick_file()
            }));
            self.status = Status::progress("choose a .npy file of start images…");
        }
        if self.settings.init != before {
            self.settings_changed = true;
        }
    }

    /// Takes the start-images file once its dialog has closed.
    pub(super) fn poll_init_dialog(&mut self) {
        match Dialog::poll(&mut self.init_dialog) {
            Some(((), Some(path))) => {
                self.status = Status::info(format!("the next run starts from {}", path.display()));
                self.settings.init = Init::File(path);
                self.settings_changed = true;
            }
            Some(((), None)) => {
                self.status = Status::info(format!("start images unchanged: {NO_DIALOG}"))
            }
            None => {}
        }
    }
}
