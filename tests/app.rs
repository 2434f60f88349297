//! The window, driven as a user would through egui_kittest (no display needed): each panel
//! alone with plain state, the whole app with a test that plays the worker, and one run of the
//! real worker that ends and exports.
// Tests may unwrap, expect and panic: that is a test failing (Cargo.toml [lints]).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use backwork::app::{BackworkApp, RunView, SweepView, settings_ui};
use backwork::backwork::engine::{EndReason, Reinit, ReinitKind};
use backwork::backwork::frozen::FrozenCnn;
use backwork::backwork::{Preset, Settings, StallMode};
use backwork::data::{Dataset, PIXELS, Split};
use backwork::model::weights::shipped_cnn;
use backwork::worker::models::ModelHandle;
use backwork::worker::{Command, CurvePoint, Event, Snapshot, Worker, WorkerPeer, WorkerSpec};
use egui::accesskit::Role;
use egui_kittest::Harness;
use egui_kittest::kittest::Queryable;

/// How long a test waits on background work (training, a search, an export) before calling
/// it hung. A guard, not a speed goal: a loaded 2-core machine took over 60 s for a search
/// that takes seconds idle (CI, 2026-12-04); speed is measured by the benchmarks.
const HANG: Duration = Duration::from_secs(600);

/// A small dataset stands in for the training set where only its images are shown.
fn small_set() -> Arc<Dataset> {
    let mut d = Dataset::mnist(Split::Test).unwrap();
    d.labels.truncate(2000);
    d.pixels.truncate(2000 * PIXELS);
    Arc::new(d)
}

/// A snapshot of run `run` for `labels` × `batch` images, every p(label) at `p`.
fn snapshot(run: u64, step: usize, labels: &[u8], batch: usize, p: f32) -> Snapshot {
    let rows = labels.len() * batch;
    let probs = (0..rows)
        .map(|row| {
            let label = labels[row / batch] as usize;
            let mut v = vec![(1.0 - p) / 9.0; 10];
            v[label] = p;
            v
        })
        .collect();
    Snapshot {
        run,
        step,
        labels: labels.to_vec(),
        batch,
        images: vec![0.5; rows * PIXELS],
        probs,
        reinits: vec![0; rows],
        stalled: vec![false; rows],
        saliency: None,
        nearest: vec![vec![None; 4]; rows],
        tap_names: backwork::backwork::settings::original_tap_names().into(),
        points: vec![CurvePoint {
            step,
            terms: Default::default(),
            min_p: vec![p; labels.len()],
            mean_p: vec![p; labels.len()],
        }],
        new_reinits: Vec::new(),
        steps_per_s: 5.0,
        is_paused: false,
    }
}

/// Every command the view has sent so far.
fn commands(peer: &WorkerPeer) -> Vec<Command> {
    peer.commands.try_iter().map(|(_, c)| c).collect()
}

fn run_view() -> (RunView, WorkerPeer) {
    let (worker, peer) = Worker::detached();
    (RunView::new(worker, small_set()), peer)
}

/// The backwork view's panels, as the app lays them out.
fn run_view_harness(view: RunView) -> Harness<'static, RunView> {
    let mut h = Harness::builder()
        .with_size(egui::vec2(1280.0, 900.0))
        .build_ui_state(
            |ui, v: &mut RunView| {
                v.poll(ui.ctx());
                v.controls_ui(ui);
                v.status_bar_ui(ui);
                ui.columns(2, |cols| {
                    v.settings_panel_ui(&mut cols[0]);
                    v.grid_ui(&mut cols[1]);
                });
            },
            view,
        );
    h.run_steps(2);
    h
}

/// The settings panel alone, on the §1 network's taps: the state holds the settings shown
/// (each edit applied to them, as the app does) and the last edit the panel returned.
fn settings_harness(s: Settings) -> Harness<'static, (Settings, Option<Settings>)> {
    let mut h = Harness::new_ui_state(
        |ui, state: &mut (Settings, Option<Settings>)| {
            if let Some(new) = settings_ui(
                ui,
                &state.0,
                &backwork::backwork::settings::original_tap_names(),
            ) {
                state.0 = new.clone();
                state.1 = Some(new);
            }
        },
        (s, None),
    );
    h.run();
    h
}

/// Moves the settings panel's slider `name` to `value`; the edit the panel returned.
fn slide(
    h: &mut Harness<'static, (Settings, Option<Settings>)>,
    name: &str,
    value: f64,
) -> Settings {
    h.get_by_role_and_label(Role::Slider, name)
        .set_value_accesskit(value);
    h.run();
    h.run();
    h.state()
        .1
        .clone()
        .expect("the slider produced new settings")
}

#[test]
fn moving_the_sim_coeff_slider_yields_exactly_that_setting() {
    let mut h = settings_harness(Settings::default());
    let new = slide(&mut h, "sim_coeff", 2.0);
    assert_eq!(new.sim_coeff, 2.0);
    assert_eq!(
        Settings::default().changed_fields(&new),
        vec!["sim_coeff".to_string()]
    );
}

#[test]
fn restore_defaults_brings_back_the_default_preset() {
    let changed = Settings {
        sim_coeff: 3.0,
        lr: 0.1,
        ..Settings::original()
    };
    let mut h = settings_harness(changed);
    h.get_by_label("Restore defaults").click();
    h.run();
    assert_eq!(h.state().1.clone(), Some(Settings::default()));
}

/// The preset picker: the default preset is selected; a slider makes the settings "custom"
/// (shown beside the picker); clicking "original" sets the 2016 method and keeps the labels.
#[test]
fn the_preset_picker_shows_custom_after_a_slider_and_applies_a_preset() {
    let mut h = settings_harness(Settings {
        labels: vec![2, 4],
        ..Settings::default()
    });
    assert!(h.query_by_label("custom").is_none());
    h.get_by_role_and_label(Role::Slider, "prev_coeff")
        .set_value_accesskit(2.0);
    h.run();
    h.run();
    assert_eq!(h.state().0.preset_name(), "custom");
    h.get_by_label("custom");
    h.get_by_label("original").click();
    h.run();
    h.run();
    let s = h.state().0.clone();
    assert_eq!(s.preset(), Some(Preset::Original));
    assert_eq!(s.prev_coeff, 0.5);
    assert_eq!(s.labels, vec![2, 4]);
    assert!(h.query_by_label("custom").is_none());
}

/// The stall rule's own settings show while the rule is on, each editing exactly its field
/// (the preset becomes "custom"); the perturbation's two only under `perturb` and `hybrid`; none while the
/// rule is off (the original preset).
#[test]
fn the_stall_rule_settings_show_while_it_is_on() {
    let mut h = settings_harness(Settings::default());
    for name in ["stall window", "stall tolerance", "stall noise"] {
        h.get_by_role_and_label(Role::Slider, name);
    }
    let new = slide(&mut h, "stall restart", 4.0);
    assert_eq!(new.stall_restart, 4);
    assert_eq!(
        Settings::default().changed_fields(&new),
        vec!["stall_restart".to_string()]
    );
    assert_eq!(new.preset_name(), "custom");

    let h = settings_harness(Settings {
        stall: StallMode::Reinit,
        ..Settings::default()
    });
    h.get_by_role_and_label(Role::Slider, "stall window");
    assert!(
        h.query_by_role_and_label(Role::Slider, "stall noise")
            .is_none()
    );
    assert!(
        h.query_by_role_and_label(Role::Slider, "stall restart")
            .is_none()
    );

    let h = settings_harness(Settings::original());
    assert!(
        h.query_by_role_and_label(Role::Slider, "stall window")
            .is_none()
    );

    // Choosing `hybrid` sets it, and shows the perturbation's settings it uses past the cap.
    let mut h = settings_harness(Settings {
        stall: StallMode::Reinit,
        ..Settings::default()
    });
    h.get_by_label("hybrid").click();
    h.run();
    h.run();
    let new = h
        .state()
        .1
        .clone()
        .expect("the click produced new settings");
    assert_eq!(new.stall, StallMode::Hybrid);
    h.get_by_role_and_label(Role::Slider, "stall noise");
    h.get_by_role_and_label(Role::Slider, "stall restart");
}

/// The start picker beside the labels (issue 11 §4): it reads "start from noise" (the
/// default), and choosing "class means" makes the next Start send settings that start there.
#[test]
fn the_start_picker_sends_its_choice_with_the_next_start() {
    let (view, peer) = run_view();
    let mut h = run_view_harness(view);
    h.get_by_value("start from noise").click();
    h.run();
    h.get_by_label("class means").click();
    h.run_steps(2);
    h.get_by_value("start from class means");
    h.get_by_label("Start").click();
    h.run_steps(2);
    let sent = commands(&peer);
    assert!(
        matches!(&sent[..], [.., Command::Start(s)] if s.init == backwork::backwork::Init::ClassMeans),
        "{sent:?}"
    );
}

#[test]
fn start_then_a_slider_sends_start_and_settings_and_marks_the_curves() {
    let (view, peer) = run_view();
    let mut h = run_view_harness(view);
    h.get_by_label("Start").click();
    h.run_steps(2);
    let sent = commands(&peer);
    assert!(
        matches!(&sent[..], [Command::Start(s)] if s.labels.len() == 10 && s.batch == 8),
        "{sent:?}"
    );
    peer.events
        .send(Event::Snapshot(Box::new(snapshot(1, 12, &[3], 8, 0.5))))
        .unwrap();
    h.run_steps(2);
    h.get_by_role_and_label(Role::Slider, "sim_coeff")
        .set_value_accesskit(4.0);
    h.run_steps(2);
    let sent = commands(&peer);
    assert!(
        matches!(&sent[..], [Command::Settings(s)] if s.sim_coeff == 4.0),
        "{sent:?}"
    );
    assert_eq!(h.state().curves.settings_markers(), 1);
    assert!(
        h.state()
            .log
            .iter()
            .any(|(step, what)| *step == 12 && what.to_string().contains("sim_coeff")),
        "{:?}",
        h.state().log
    );
}

#[test]
fn export_with_no_selection_is_refused_with_a_message() {
    let (view, peer) = run_view();
    let mut h = run_view_harness(view);
    h.get_by_label("Start").click();
    h.run_steps(2);
    peer.events
        .send(Event::Snapshot(Box::new(snapshot(1, 3, &[7], 4, 0.2))))
        .unwrap();
    h.run_steps(2);
    let _ = commands(&peer);
    h.get_by_label("Export 0 selected…").click();
    h.run_steps(2);
    assert!(commands(&peer).is_empty(), "no export may be sent");
    h.get_by_label_contains("select images to export first");
}

#[test]
fn click_toggles_and_shift_click_selects_a_range() {
    let (view, peer) = run_view();
    let mut h = run_view_harness(view);
    h.get_by_label("Start").click();
    h.run_steps(2);
    peer.events
        .send(Event::Snapshot(Box::new(snapshot(1, 3, &[3], 8, 0.9995))))
        .unwrap();
    h.run_steps(2);
    h.get_by_label("label 3 image 1").click();
    h.run_steps(2);
    h.get_by_label("label 3 image 4")
        .click_modifiers(egui::Modifiers::SHIFT);
    h.run_steps(2);
    let sel: Vec<usize> = h.state().selected.iter().copied().collect();
    assert_eq!(sel, vec![1, 2, 3, 4]);
    // A plain click toggles one tile off again.
    h.get_by_label("label 3 image 2").click();
    h.run_steps(2);
    let sel: Vec<usize> = h.state().selected.iter().copied().collect();
    assert_eq!(sel, vec![1, 3, 4]);
    h.get_by_label("Export 3 selected…");
}

#[test]
fn space_starts_and_then_pauses() {
    let (view, peer) = run_view();
    let mut h = run_view_harness(view);
    h.key_press(egui::Key::Space);
    h.run_steps(2);
    assert!(matches!(&commands(&peer)[..], [Command::Start(_)]));
    h.key_press(egui::Key::Space);
    h.run_steps(2);
    assert!(matches!(&commands(&peer)[..], [Command::Pause]));
}

fn app_with_fake_worker() -> (BackworkApp, WorkerPeer) {
    let (cnn, info) = shipped_cnn().unwrap();
    let (worker, peer) = Worker::detached();
    let set = small_set();
    let app = BackworkApp::new(
        &egui::Context::default(),
        ModelHandle::new(cnn, info).unwrap(),
        set.clone(),
        set,
        worker,
    );
    (app, peer)
}

fn app_harness(app: BackworkApp) -> Harness<'static, BackworkApp> {
    let mut h = Harness::builder()
        .with_size(egui::vec2(1280.0, 900.0))
        .build_ui_state(|ui, app: &mut BackworkApp| app.show(ui), app);
    h.run_steps(2);
    h
}

#[test]
fn the_app_flashes_and_marks_a_reinit_and_shows_an_error_in_the_status_line() {
    let (app, peer) = app_with_fake_worker();
    let mut h = app_harness(app);
    h.get_by_label("Start").click();
    h.run_steps(2);
    let mut s = snapshot(1, 20, &[0, 1], 8, 0.3);
    s.reinits[3] = 1;
    s.new_reinits = vec![Reinit {
        kind: ReinitKind::MonoDec,
        step: 20,
        image: 3,
        p_label: 0.01,
    }];
    peer.events.send(Event::Snapshot(Box::new(s))).unwrap();
    h.run_steps(2);
    // The tile flashes and says so; the curves carry a marker; the log a line.
    h.get_by_label("reinit #1");
    let view = h.state().run_view.as_ref().unwrap();
    assert_eq!(view.curves.reinit_markers(), 1);
    assert!(
        view.log.iter().any(|(step, what)| *step == 20
            && what.to_string().contains("label 0 image 3: re-initialised"))
    );
    peer.events
        .send(Event::Ended {
            run: 1,
            reason: EndReason::Error(
                "numeric failure at step 21: label 1 fc.prev is not finite".into(),
            ),
        })
        .unwrap();
    h.run_steps(2);
    // In the status bar and, as the run's end, in the event log.
    assert_eq!(
        h.get_all_by_label_contains("error: numeric failure at step 21")
            .count(),
        2
    );
}

/// A file dropped onto the window, as the platform hands it over.
#[derive(Debug)]
struct Dropped(std::path::PathBuf);

impl egui::DroppedFile for Dropped {
    fn path(&self) -> &std::path::Path {
        &self.0
    }
    fn bytes(&self) -> Result<Vec<u8>, String> {
        std::fs::read(&self.0).map_err(|e| e.to_string())
    }
}

fn drop_file(h: &mut Harness<'static, BackworkApp>, path: &std::path::Path) {
    h.input_mut()
        .dropped_files
        .push(Arc::new(Dropped(path.to_path_buf())));
    h.run_steps(2);
    // The file is read and hashed on a job: wait for it.
    wait_for_model(h);
}

#[test]
fn a_dropped_bad_file_is_refused_and_a_good_one_is_used() {
    let dir = tempfile::tempdir().unwrap();
    let (app, peer) = app_with_fake_worker();
    let shipped_name = app.info.name.clone();
    let mut h = app_harness(app);

    let bad = dir.path().join("truncated.safetensors");
    std::fs::write(&bad, b"\x08\x00\x00\x00\x00\x00\x00\x00{}").unwrap();
    drop_file(&mut h, &bad);
    h.get_by_label_contains("not loaded, the model in use stays");
    h.get_by_label_contains("truncated.safetensors");
    assert_eq!(h.state().info.name, shipped_name);
    assert!(commands(&peer).is_empty());

    // The shipped weights under another name load, and the worker is told.
    let good = dir.path().join("mine.safetensors");
    std::fs::write(
        &good,
        include_bytes!("../assets/models/mnist-cnn.safetensors"),
    )
    .unwrap();
    drop_file(&mut h, &good);
    assert_eq!(h.state().info.name, "mine.safetensors");
    assert!(
        matches!(&commands(&peer)[..], [Command::SetModel(m)] if m.1.name == "mine.safetensors")
    );
}

#[test]
fn a_dropped_onnx_network_is_used_with_its_own_taps() {
    let (app, peer) = app_with_fake_worker();
    let mut h = app_harness(app);
    let onnx = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data/onnx/lenet5-mnist-ts.onnx");
    drop_file(&mut h, &onnx);
    assert_eq!(h.state().info.name, "lenet5-mnist-ts.onnx");
    assert!(
        matches!(&commands(&peer)[..], [Command::SetModel(m)] if m.1.name == "lenet5-mnist-ts.onnx")
    );
    // LeNet-5's taps (two convolution blocks, two hidden linear layers) and the softmax.
    let v = h.state().run_view.as_ref().unwrap();
    assert_eq!(v.settings.layer_weights.len(), 6);
    assert!(h.get_all_by_label_contains("lenet5-mnist-ts.onnx").count() >= 1);
}

#[test]
fn a_dropped_pytorch_state_dict_is_used_and_the_model_view_says_how_it_was_read() {
    let (app, peer) = app_with_fake_worker();
    let mut h = app_harness(app);
    let pt = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data/torch/mnist-pruned-bf16.pt");
    drop_file(&mut h, &pt);
    assert_eq!(h.state().info.name, "mnist-pruned-bf16.pt");
    assert!(
        matches!(&commands(&peer)[..], [Command::SetModel(m)] if m.1.name == "mnist-pruned-bf16.pt")
    );
    h.get_by_label("Model").click();
    h.run_steps(2);
    h.get_by_label("file: a PyTorch state_dict (torch.save)");
    h.get_by_label_contains("weights read by shape: conv1.weight as conv0.weight");
}

#[test]
fn the_model_view_normalises_the_inputs_of_the_model_in_use_and_takes_it_off_again() {
    let (app, peer) = app_with_fake_worker();
    let (name, sha) = (app.info.name.clone(), app.info.sha256.clone());
    let mut h = app_harness(app);
    h.get_by_label("Model").click();
    h.run_steps(2);
    h.get_by_label("inputs: as they are (pixels in [0, 1])");
    // What a user types in the two fields (the hint texts show MNIST's usual values).
    h.state_mut().model_view.norm_text = ["0.1307".into(), "0.3081".into()];
    h.get_by_label("Normalise inputs").click();
    h.run_steps(2);
    wait_for_model(&mut h);
    let info = h.state().info.clone();
    assert_eq!(info.name, format!("{name} (inputs (x − 0.1307) / 0.3081)"));
    assert_ne!(
        info.sha256, sha,
        "another function of the same weights, another hash"
    );
    assert!(
        matches!(&commands(&peer)[..], [Command::SetModel(m)] if m.1.sha256 == info.sha256),
        "the worker runs the normalised network"
    );
    h.get_by_label("inputs: normalised, (x − 0.1307) / 0.3081");
    // A bad value: said, the model in use stays.
    h.state_mut().model_view.norm_text = ["0.1307".into(), "0".into()];
    h.get_by_label("Normalise inputs").click();
    h.run_steps(2);
    h.get_by_label_contains("std 0 is not positive");
    assert_eq!(h.state().info.sha256, info.sha256);
    // Taken off: the file's own network again, under its own name and hash.
    h.get_by_label("As they are").click();
    h.run_steps(2);
    wait_for_model(&mut h);
    assert_eq!(
        (h.state().info.name.clone(), h.state().info.sha256.clone()),
        (name, sha)
    );
}

/// Waits until a model being made or opened on a job is in use.
fn wait_for_model(h: &mut Harness<'static, BackworkApp>) {
    let started = Instant::now();
    while h.state().is_opening() && started.elapsed() < Duration::from_secs(60) {
        std::thread::sleep(Duration::from_millis(10));
        h.step();
    }
    h.run_steps(2);
}

/// Waits until the app has read the dataset folder it was asked to open.
fn wait_for_data(h: &mut Harness<'static, BackworkApp>) {
    let started = Instant::now();
    // Generous: on a loaded 2-core machine the decoding shares rayon's pool with the other
    // tests of this file (CI once took more than 60 s here; alone it takes under 1 s).
    while h.state().is_opening_data() && started.elapsed() < Duration::from_secs(600) {
        std::thread::sleep(Duration::from_millis(10));
        h.step();
    }
    h.run_steps(2);
}

#[test]
fn a_dataset_folder_opened_in_the_window_switches_every_view_if_the_model_fits() {
    let (app, _peer) = app_with_fake_worker();
    let mut h = app_harness(app);
    // Colour images the shipped network cannot take: refused, naming both shapes.
    let shapes = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/onnx/shapes");
    h.state_mut().open_data(shapes);
    wait_for_data(&mut h);
    h.get_by_label_contains("not opened, the data in use stays");
    h.get_by_label_contains("3×16×16");
    // Fashion-MNIST fits the shipped network's input and classes: every view takes it.
    h.state_mut().open_data(std::path::PathBuf::from(
        "/usr/share/datasets/fashion-mnist",
    ));
    wait_for_data(&mut h);
    h.get_by_label_contains("now using /usr/share/datasets/fashion-mnist");
    let v = h.state().run_view.as_ref().unwrap();
    assert_eq!(v.settings.labels, (0..10).collect::<Vec<u8>>());
    assert_eq!(v.curves.class_names[9], "Ankle boot");
    // The label toggles are the class names.
    h.get_by_label("Sneaker");
    h.get_by_label("Ankle boot");
}

#[test]
fn a_network_for_other_images_waits_for_its_dataset_folder() {
    let (app, _peer) = app_with_fake_worker();
    let mut h = app_harness(app);
    let onnx = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/onnx");
    // A colour network does not fit MNIST: kept, the model in use stays.
    let before = h.state().info.name.clone();
    drop_file(&mut h, &onnx.join("cnn-shapes-ts.onnx"));
    h.get_by_label_contains("kept: open a dataset folder");
    assert_eq!(h.state().info.name, before);
    // Its dataset folder, dropped onto the window, brings both into use.
    drop_file(&mut h, &onnx.join("shapes"));
    wait_for_data(&mut h);
    assert_eq!(h.state().info.name, "cnn-shapes-ts.onnx");
    let v = h.state().run_view.as_ref().unwrap();
    assert_eq!((v.image_shape.c, v.image_shape.h), (3, 16));
    assert_eq!(v.settings.labels, vec![0, 1, 2]);
    h.get_by_label("stripes");
}

#[test]
fn the_real_worker_runs_a_tiny_run_to_its_end_and_exports_it() {
    let (cnn, info) = shipped_cnn().unwrap();
    let train = small_set();
    let spec = WorkerSpec {
        net: FrozenCnn::new(&cnn).unwrap(),
        model: info.model_ref(),
        train: train.clone(),
        cache_dir: None,
        wake: Arc::new(|| {}),
    };
    let worker = Worker::spawn(spec).unwrap();
    let mut app = BackworkApp::new(
        &egui::Context::default(),
        ModelHandle::new(cnn, info).unwrap(),
        train.clone(),
        train,
        worker,
    );
    {
        let v = app.run_view.as_mut().unwrap();
        v.settings.labels = vec![1];
        v.settings.batch = 2;
        v.settings.max_steps = Some(25);
    }
    let mut h = app_harness(app);
    h.get_by_label("Start").click();
    let started = Instant::now();
    loop {
        h.step();
        let status = &h.state().run_view.as_ref().unwrap().status;
        if status.contains("step budget") || status.contains("every image passed") {
            break;
        }
        assert!(started.elapsed() < HANG, "the run did not end: {status}");
        std::thread::sleep(Duration::from_millis(10));
    }
    h.run_steps(2);
    h.get_by_label("label 1 image 0");
    h.get_by_label("label 1 image 1");

    let out = tempfile::tempdir().unwrap();
    let dir = out.path().join("export");
    h.state_mut()
        .run_view
        .as_mut()
        .unwrap()
        .command(Command::Export {
            dir: dir.clone(),
            rows: Some(vec![1]),
        });
    let started = Instant::now();
    while !h
        .state()
        .run_view
        .as_ref()
        .unwrap()
        .status
        .contains("wrote")
    {
        assert!(started.elapsed() < HANG, "no export");
        h.step();
        std::thread::sleep(Duration::from_millis(10));
    }
    for f in ["images.npy", "results.json", "sheet.png", "label1_01.png"] {
        assert!(dir.join(f).is_file(), "{f} missing");
    }
}

#[test]
fn a_model_trained_in_the_app_can_be_used() {
    let (mut app, peer) = app_with_fake_worker();
    app.model_view.config.epochs = 1;
    app.model_view.config.limit = Some(256);
    let mut h = app_harness(app);
    h.get_by_label("Model").click();
    h.run_steps(2);
    // LeNet-5 (issue 14): trained in the app on the core, then the run view takes its taps.
    h.get_by_label("lenet5").click();
    h.run_steps(2);
    h.get_by_label("Train").click();
    let started = Instant::now();
    while h.query_by_label("Use this model").is_none() {
        assert!(
            started.elapsed() < HANG,
            "training did not finish: {}",
            h.state().model_view.status
        );
        h.step();
        std::thread::sleep(Duration::from_millis(20));
    }
    h.get_by_label_contains("Use it, or save it");
    h.get_by_label("Use this model").click();
    h.run_steps(2);
    assert!(h.state().info.name.starts_with("trained in the app"));
    assert!(h.state().info.architecture.starts_with("lenet5: 1×28×28"));
    assert!(matches!(&commands(&peer)[..], [Command::SetModel(_)]));
    let v = h.state().run_view.as_ref().unwrap();
    assert_eq!(v.tap_names, ["inputs", "conv0", "conv1", "fc", "fc1"]);
    assert_eq!(
        v.settings.layer_weights,
        [1e-5, 1e-4, 1e-3, 1e-2, 1e-2, 10.0]
    );
    // One slider per tap, named after it.
    h.get_by_label("Fooling images").click();
    h.run_steps(2);
    assert!(h.query_all_by_label("c fc1").next().is_some());
}

#[test]
fn saliency_and_nearest_toggles_reach_the_worker_and_the_tiles() {
    let (app, peer) = app_with_fake_worker();
    let mut h = app_harness(app);
    h.get_by_label("Start").click();
    h.run_steps(2);
    h.get_by_label("saliency").click();
    h.run_steps(2);
    let sent = commands(&peer);
    assert!(
        matches!(&sent[..], [Command::Start(_), Command::Saliency(true)]),
        "{sent:?}"
    );
    let mut s = snapshot(1, 5, &[4], 2, 0.4);
    s.saliency = Some(vec![0.01; 2 * PIXELS]);
    s.nearest[1][0] = Some(backwork::backwork::cost::Nearest {
        index: 17,
        dist: 0.125,
    });
    peer.events.send(Event::Snapshot(Box::new(s))).unwrap();
    h.run_steps(2);
    assert!(
        h.query_by_label("nearest training image of label 4 image 1")
            .is_none()
    );
    h.get_by_label("nearest").click();
    h.run_steps(2);
    h.get_by_label("nearest training image of label 4 image 1");
    h.get_by_label("d 0.125");
}

#[test]
fn the_worst_view_finds_each_labels_worst_images() {
    let (app, _peer) = app_with_fake_worker();
    let mut h = app_harness(app);
    h.get_by_label("Worst training images").click();
    h.run_steps(2);
    h.get_by_label("Find them").click();
    let started = Instant::now();
    while h.state().worst_view.result.is_none() {
        assert!(started.elapsed() < HANG, "no result");
        h.step();
        std::thread::sleep(Duration::from_millis(20));
    }
    h.run_steps(2);
    let result = h.state().worst_view.result.clone().unwrap();
    assert_eq!(result.len(), 10);
    let first = result[0].images[0].index;
    h.get_by_label(&format!("training image {first}"));
}

#[test]
fn the_retrain_panel_retrains_on_the_current_run_and_offers_the_model() {
    let (mut app, peer) = app_with_fake_worker();
    app.retrain_view.cache_dir = None;
    app.retrain_view.config.measure.max_steps = Some(3);
    app.retrain_view.config.measure.batch = 1;
    app.retrain_view.config.measure.labels = vec![0, 1];
    let mut h = app_harness(app);
    h.get_by_label("Start").click();
    h.run_steps(2);
    peer.events
        .send(Event::Snapshot(Box::new(snapshot(1, 9, &[0, 1], 2, 0.5))))
        .unwrap();
    h.run_steps(2);
    h.get_by_label("Model").click();
    h.run_steps(2);
    h.get_by_label("the current run (4)");
    h.get_by_label("extra class").click();
    h.run_steps(1);
    h.get_by_label("Retrain").click();
    let started = Instant::now();
    while h.query_by_label("Use the retrained model").is_none() {
        assert!(
            started.elapsed() < HANG,
            "retraining did not finish: {}",
            h.state().retrain_view.status
        );
        h.step();
        std::thread::sleep(Duration::from_millis(50));
    }
    // The starting model and the retrained one, side by side.
    assert_eq!(h.state().retrain_view.measurements.len(), 2);
    h.get_by_label("Use the retrained model").click();
    h.run_steps(2);
    assert!(h.state().info.name.starts_with("retrained"));
    let _ = commands(&peer);
}

/// Software rendering (Mesa llvmpipe, what CI and Xvfb draw with) pays a few microseconds per
/// triangle, so the window's frame time follows its triangle count. The whole window, 1280 x
/// 860, a 10 x 8 run 100 steps in with a reinitialisation every 10 steps, draws about 7,300
/// triangles (23,600 before the curves were simplified, the widgets squared and the tile
/// captions drawn into one texture); 10,000 is the budget.
#[test]
fn the_window_mid_run_stays_within_its_triangle_budget() {
    let set = small_set();
    let (cnn, info) = shipped_cnn().unwrap();
    let (worker, peer) = Worker::detached();
    let ctx = egui::Context::default();
    let app = BackworkApp::new(
        &ctx,
        ModelHandle::new(cnn, info).unwrap(),
        set.clone(),
        set.clone(),
        worker,
    );
    let mut h = Harness::builder()
        .with_size(egui::vec2(1280.0, 860.0))
        .build_ui_state(|ui, app: &mut BackworkApp| app.show(ui), app);
    backwork::app::apply_style(&h.ctx);
    h.run_steps(2);
    h.get_by_label("Start").click();
    h.run_steps(2);
    let labels: Vec<u8> = (0..10).collect();
    for step in 0..100 {
        let p = (step as f32 / 100.0).min(0.9999);
        let mut s = snapshot(1, step, &labels, 8, p);
        s.images = set.pixels[..80 * PIXELS]
            .iter()
            .map(|&b| b as f32 / 255.0)
            .collect();
        let x = step as f64 + 1.0;
        s.points[0].terms.total = 100.0 / x;
        s.points[0].terms.softmax = 50.0 / x;
        for t in &mut s.points[0].terms.taps {
            t.prev = 1.0 / x;
            t.sim = 0.5 / x;
        }
        if step % 10 == 5 {
            s.new_reinits = vec![Reinit {
                kind: ReinitKind::MonoDec,
                step,
                image: step % 80,
                p_label: 0.01,
            }];
        }
        peer.events.send(Event::Snapshot(Box::new(s))).unwrap();
        h.run_steps(1);
    }
    h.run_steps(2);
    let shapes = h.output().shapes.clone();
    let triangles: usize = h
        .ctx
        .tessellate(shapes, 1.0)
        .iter()
        .map(|p| match &p.primitive {
            egui::epaint::Primitive::Mesh(m) => m.indices.len() / 3,
            egui::epaint::Primitive::Callback(_) => 0,
        })
        .sum();
    assert!(triangles < 10_000, "{triangles} triangles");
    // The captions are drawn, and still there for screen readers and tests.
    assert!(h.get_all_by_label("0.99000").count() >= 8);
}

/// The Sweep view runs a real grid (2 values of sim_coeff, one label, 2 images, 3 steps, the
/// shipped model, a small training set) on its thread, fills the heatmap, and a click on a
/// cell hands back that cell's settings.
/// Choosing another setting for an axis replaces its values with ones around that setting's
/// value (before, sim_coeff's 0.05, 0.5, 5 stayed for a learning rate or a window).
#[test]
fn choosing_a_sweep_setting_offers_values_for_it() {
    let (cnn, info) = shipped_cnn().unwrap();
    let model = ModelHandle::new(cnn, info).unwrap();
    let view = SweepView::new(small_set());
    let wake: backwork::app::Wake = Arc::new(|| {});
    let base = Settings::default();
    let mut h = Harness::builder()
        .with_size(egui::vec2(900.0, 600.0))
        .build_ui_state(
            move |ui, view: &mut SweepView| {
                view.ui(ui, &model, &base, &wake);
            },
            view,
        );
    h.run();
    assert_eq!(h.state().axes[0].values, "0.05, 0.5, 5");
    h.get_by_role_and_label(Role::ComboBox, "rows").click();
    h.run();
    h.get_by_label("learning rate").click();
    h.run();
    assert_eq!(h.state().axes[0].values, "0.008, 0.08, 0.8");
}

#[test]
fn the_sweep_view_fills_its_heatmap_and_a_cell_loads_its_settings() {
    let (cnn, info) = shipped_cnn().unwrap();
    let model = ModelHandle::new(cnn, info).unwrap();
    let mut view = SweepView::new(small_set());
    view.cache_dir = None;
    view.axes[0].values = "0.25, 4".into();
    view.max_steps = 3;
    let base = Settings {
        labels: vec![3],
        batch: 2,
        ..Settings::default()
    };
    let wake: backwork::app::Wake = Arc::new(|| {});
    let mut h = Harness::builder()
        .with_size(egui::vec2(900.0, 600.0))
        .build_ui_state(
            move |ui, state: &mut (SweepView, Option<Settings>)| {
                if let Some(s) = state.0.ui(ui, &model, &base, &wake) {
                    state.1 = Some(s);
                }
            },
            (view, None),
        );
    h.run();
    h.get_by_label("Run sweep").click();
    let t = Instant::now();
    while !h.state().0.status.starts_with("done") {
        assert!(t.elapsed() < HANG, "{}", h.state().0.status);
        std::thread::sleep(Duration::from_millis(50));
        h.run();
    }
    assert_eq!(h.state().0.cells.len(), 2);
    for c in &h.state().0.cells {
        assert_eq!(c.outcome.steps, 3);
        assert_eq!(c.outcome.images, 2);
    }
    // Two cells, labelled with their fooled share and number of runs; click the second.
    let cells: Vec<_> = h.query_all_by_label_contains("%  (1)").collect();
    assert_eq!(cells.len(), 2);
    cells[1].click();
    h.run();
    let s = h
        .state()
        .1
        .clone()
        .expect("a cell click hands back its settings");
    assert_eq!(s.sim_coeff, 4.0);
    assert_eq!(s.labels, vec![3]);
    assert_eq!(s.max_steps, Some(3));
}

/// The Sweep view's ceiling: Measure climbs each label of the current settings in the box on
/// the worker and fills a table of best and median p against the threshold (issue 11: the
/// instrument that says which labels no setting can pass).
#[test]
fn the_ceiling_measures_each_label_and_marks_those_under_the_threshold() {
    let (cnn, info) = shipped_cnn().unwrap();
    let model = ModelHandle::new(cnn, info).unwrap();
    let mut view = SweepView::new(small_set());
    view.ceiling.starts = 3;
    view.ceiling.max_steps = 40;
    let base = Settings {
        labels: vec![3, 7],
        ..Settings::default()
    };
    let wake: backwork::app::Wake = Arc::new(|| {});
    let mut h = Harness::builder()
        .with_size(egui::vec2(900.0, 800.0))
        .build_ui_state(
            move |ui, view: &mut SweepView| {
                egui::ScrollArea::vertical().show(ui, |ui| {
                    view.ui(ui, &model, &base, &wake);
                });
            },
            view,
        );
    h.run();
    h.get_by_label("Measure").click();
    let t = Instant::now();
    while h.state().ceiling.is_running() || h.state().ceiling.found.len() < 2 {
        assert!(t.elapsed() < HANG, "{}", h.state().ceiling.status);
        std::thread::sleep(Duration::from_millis(50));
        h.run();
    }
    let found = &h.state().ceiling.found;
    assert_eq!(found.iter().map(|c| c.label).collect::<Vec<_>>(), [3, 7]);
    // The shipped model passes 0.999 on every label in a median of 3 steps (README's zoo
    // table): 40 signed steps from noise pass it too, so nothing is under the bar.
    assert!(found.iter().all(|c| c.ps.len() == 3 && c.best() > 0.999));
    assert!(
        h.state()
            .ceiling
            .status
            .starts_with("every label's best is past")
    );
    assert_eq!(h.query_all_by_label("room above the threshold").count(), 2);
    // One step from noise is far under the bar: marked as out of reach.
    h.state_mut().ceiling.max_steps = 1;
    h.run();
    h.get_by_label("Measure").click();
    // The click starts the job in the next frame.
    h.run();
    assert!(h.state().ceiling.found.is_empty() || h.state().ceiling.is_running());
    let t = Instant::now();
    while h.state().ceiling.is_running() || h.state().ceiling.found.len() < 2 {
        assert!(t.elapsed() < HANG, "{}", h.state().ceiling.status);
        std::thread::sleep(Duration::from_millis(50));
        h.run();
    }
    assert_eq!(h.state().ceiling.under_bar(), [3, 7]);
    assert!(
        h.state()
            .ceiling
            .status
            .starts_with("label(s) 3, 7 never passed")
    );
    assert_eq!(
        h.query_all_by_label("under the threshold: out of reach with pixels in [0, 1]")
            .count(),
        2
    );
}

/// A run that ends at its budget with an image short near the bar after many restarts says
/// why in the status bar, beside "Measure the ceiling": the click shows the Sweep view
/// measuring that label's ceiling on the run's model.
#[test]
fn a_run_left_short_offers_to_measure_the_ceiling_of_its_labels() {
    let (app, peer) = app_with_fake_worker();
    let mut h = app_harness(app);
    h.get_by_label("Start").click();
    h.run_steps(2);
    assert!(h.query_by_label("Measure the ceiling").is_none());
    let mut s = snapshot(1, 1500, &[0, 1], 8, 0.9995);
    // Image 11 (label 1) short at 0.995 after 14 restarts: past the reinit cap (0.99),
    // restarted at least MANY_RESTARTS (10) times.
    s.probs[11][1] = 0.995;
    s.reinits[11] = 14;
    peer.events.send(Event::Snapshot(Box::new(s))).unwrap();
    peer.events
        .send(Event::Ended {
            run: 1,
            reason: EndReason::MaxSteps,
        })
        .unwrap();
    h.run_steps(2);
    // In the status bar and the event log.
    assert_eq!(
        h.get_all_by_label_contains("1 image(s) of label 1 ended short")
            .count(),
        2
    );
    // A short measurement (the default is 32 starts of 1,500 steps).
    h.state_mut().sweep_view.ceiling.starts = 2;
    h.state_mut().sweep_view.ceiling.max_steps = 20;
    h.get_by_label("Measure the ceiling").click();
    h.run_steps(2);
    assert_eq!(h.state().tab, backwork::app::Tab::Sweep);
    let ceiling = &h.state().sweep_view.ceiling;
    assert!(ceiling.is_running() || !ceiling.found.is_empty());
    assert_eq!(ceiling.measured.as_ref().map(|m| m.1), Some(0.999));
    let t = Instant::now();
    while h.state().sweep_view.ceiling.is_running() {
        assert!(t.elapsed() < HANG);
        h.state_mut().sweep_view.ceiling.poll();
        std::thread::sleep(Duration::from_millis(50));
    }
    let found = &h.state().sweep_view.ceiling.found;
    assert_eq!(found.iter().map(|c| c.label).collect::<Vec<_>>(), [1]);
}

/// *keep going* reaches the worker when ticked, and again before each Start (a restarted
/// engine thread starts without it); unticked, it is said off.
#[test]
fn keep_going_reaches_the_worker_before_each_start() {
    let (app, peer) = app_with_fake_worker();
    let mut h = app_harness(app);
    h.get_by_label("keep going").click();
    h.run_steps(2);
    h.get_by_label("Start").click();
    h.run_steps(2);
    let sent = commands(&peer);
    assert!(
        matches!(
            &sent[..],
            [
                Command::KeepGoing(true),
                Command::KeepGoing(true),
                Command::Start(_)
            ]
        ),
        "{sent:?}"
    );
    h.get_by_label("keep going").click();
    h.run_steps(2);
    let sent = commands(&peer);
    assert!(matches!(&sent[..], [Command::KeepGoing(false)]), "{sent:?}");
}
