//! The worker thread: a run streams snapshots without losing a curve point even when the UI
//! reads slowly, wakes the UI through its callback, ends with an explicit event, and obeys
//! pause, single step, settings changes and reset.
// Tests may unwrap, expect and panic: that is a test failing (Cargo.toml [lints]).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use backwork::backwork::engine::EndReason;
use backwork::backwork::frozen::FrozenCnn;
use backwork::backwork::{Init, Settings};
use backwork::data::{Dataset, PIXELS, Split};
use backwork::model::weights::shipped_cnn;
use backwork::worker::{Command, Event, Worker, WorkerSpec};

fn worker(wakes: Arc<AtomicUsize>) -> Worker {
    worker_caching_in(wakes, None)
}

/// [`worker`] with its reference cache in `cache_dir` (none: in memory only).
fn worker_caching_in(wakes: Arc<AtomicUsize>, cache_dir: Option<std::path::PathBuf>) -> Worker {
    let (cnn, info) = shipped_cnn().unwrap();
    // A reduced training set keeps the reference sets quick to build.
    let mut train = Dataset::mnist(Split::Train).unwrap();
    train.labels.truncate(3000);
    train.pixels.truncate(3000 * PIXELS);
    Worker::spawn(WorkerSpec {
        net: FrozenCnn::new(&cnn).unwrap(),
        model: info.model_ref(),
        train: Arc::new(train),
        cache_dir,
        wake: Arc::new(move || {
            wakes.fetch_add(1, Ordering::Relaxed);
        }),
    })
    .unwrap()
}

/// Exports every image of the current (or last) run into `dir` and reads its results.json.
fn export_all(w: &mut Worker, dir: &std::path::Path) -> serde_json::Value {
    w.send(Command::Export {
        dir: dir.to_path_buf(),
        rows: None,
    });
    loop {
        match next(w) {
            Event::Exported { .. } => break,
            Event::Refused { message, .. } => panic!("{message}"),
            _ => {}
        }
    }
    serde_json::from_slice(&std::fs::read(dir.join("results.json")).unwrap()).unwrap()
}

fn next(w: &Worker) -> Event {
    w.events
        .recv_timeout(Duration::from_secs(60))
        .expect("an event within a minute")
}

#[test]
fn a_run_streams_every_point_to_a_slow_reader_and_ends() {
    let wakes = Arc::new(AtomicUsize::new(0));
    let mut w = worker(wakes.clone());
    let s = Settings {
        labels: vec![1, 7],
        batch: 2,
        max_steps: Some(40),
        ..Settings::original()
    };
    let run = w.send(Command::Start(s));
    let mut steps = Vec::new();
    let mut last_step = 0;
    let reason = loop {
        match next(&w) {
            Event::Cache { run: r, .. } => assert_eq!(r, run),
            Event::Snapshot(snap) => {
                assert_eq!(snap.run, run);
                assert_eq!(snap.images.len(), 4 * 784);
                steps.extend(snap.points.iter().map(|p| p.step));
                last_step = snap.step;
                // A reader slower than the engine: the worker must accumulate, not drop.
                std::thread::sleep(Duration::from_millis(30));
            }
            Event::Ended { run: r, reason } => {
                assert_eq!(r, run);
                break reason;
            }
            Event::Refused { message, .. } | Event::Notice { message } => panic!("{message}"),
            Event::Exported { .. } => panic!("no export was asked for"),
        }
    };
    assert_eq!(reason, EndReason::MaxSteps);
    assert_eq!(
        steps,
        (1..=40).collect::<Vec<_>>(),
        "every step's point arrives once, in order"
    );
    assert_eq!(last_step, 40);
    assert!(wakes.load(Ordering::Relaxed) >= 3);
}

#[test]
fn pause_step_settings_and_reset() {
    let mut w = worker(Arc::new(AtomicUsize::new(0)));
    let s = Settings {
        labels: vec![4],
        batch: 2,
        ..Settings::original()
    };
    let run = w.send(Command::Start(s.clone()));
    w.send(Command::Pause);
    // Drain until a paused snapshot arrives.
    let paused_at = loop {
        if let Event::Snapshot(snap) = next(&w)
            && snap.is_paused
        {
            break snap.step;
        }
    };
    w.send(Command::Step);
    let stepped = loop {
        if let Event::Snapshot(snap) = next(&w)
            && snap.step > paused_at
        {
            break snap.step;
        }
    };
    assert_eq!(stepped, paused_at + 1, "one step while paused");
    // An out-of-range value is refused and the run goes on.
    w.send(Command::Settings(Settings {
        lr: -1.0,
        ..s.clone()
    }));
    loop {
        if let Event::Refused { message, .. } = next(&w) {
            assert!(message.contains("--lr"), "{message}");
            break;
        }
    }
    // A settings change takes effect: a step budget just ahead ends the run.
    w.send(Command::Settings(Settings {
        max_steps: Some(stepped + 3),
        ..s.clone()
    }));
    w.send(Command::Resume);
    let end = loop {
        if let Event::Ended { run: r, reason } = next(&w) {
            assert_eq!(r, run);
            break reason;
        }
    };
    assert_eq!(end, EndReason::MaxSteps);
    // The finished run exports like `backwork run`: one row here, into a new folder.
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("export");
    w.send(Command::Export {
        dir: dir.clone(),
        rows: Some(vec![1]),
    });
    loop {
        match next(&w) {
            Event::Exported { files, .. } => {
                assert_eq!(files, 4, "one PNG, images.npy, results.json, sheet.png");
                break;
            }
            Event::Refused { message, .. } => panic!("{message}"),
            _ => {}
        }
    }
    let results: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("results.json")).unwrap()).unwrap();
    assert_eq!(results["images"].as_array().unwrap().len(), 1);
    assert_eq!(results["images"][0]["index"], 1);
    // Never over an existing export.
    w.send(Command::Export {
        dir: dir.clone(),
        rows: None,
    });
    loop {
        if let Event::Refused { message, .. } = next(&w) {
            assert!(message.contains("not empty"), "{message}");
            break;
        }
    }
    // A new run, then reset: it ends as cancelled, under its own id.
    let run2 = w.send(Command::Start(s));
    assert_eq!(run2, run + 1);
    w.send(Command::Reset);
    loop {
        if let Event::Ended { run: r, reason } = next(&w) {
            assert_eq!((r, reason), (run2, EndReason::Cancelled));
            break;
        }
    }
    assert!(w.is_alive());
    drop(w); // joins the thread
}

/// Switching the saliency on after a run has ended sends the finished run's images again,
/// now with their saliency (a user inspects a finished figure).
#[test]
fn saliency_switched_on_after_the_end_comes_with_the_finished_images() {
    let mut w = worker(Arc::new(AtomicUsize::new(0)));
    let run = w.send(Command::Start(Settings {
        labels: vec![3],
        batch: 2,
        max_steps: Some(3),
        ..Settings::original()
    }));
    let mut last = None;
    loop {
        match next(&w) {
            Event::Snapshot(s) => last = Some(s),
            Event::Ended { .. } => break,
            _ => {}
        }
    }
    let last = last.expect("snapshots before the end");
    assert!(last.saliency.is_none());
    w.send(Command::Saliency(true));
    let again = loop {
        if let Event::Snapshot(s) = next(&w) {
            break s;
        }
    };
    assert_eq!(again.run, run);
    assert_eq!(again.images, last.images, "the finished images, unchanged");
    let sal = again.saliency.expect("with their saliency");
    assert_eq!(sal.len(), 2 * PIXELS);
    assert!(sal.iter().all(|v| v.is_finite()) && sal.iter().any(|&v| v != 0.0));
}

/// A Reset while the reference sets are built ends the run at once (at the next label, not
/// after all ten), and an export made after a model change still describes the run's images
/// with the model they were made against.
#[test]
fn reset_does_not_wait_for_the_reference_sets_and_exports_keep_their_model() {
    let (cnn, info) = shipped_cnn().unwrap();
    let net = FrozenCnn::new(&cnn).unwrap();
    let mut w = Worker::spawn(WorkerSpec {
        net: net.clone(),
        model: info.model_ref(),
        // All 60,000 images: each label's set takes seconds to build.
        train: Arc::new(Dataset::mnist(Split::Train).unwrap()),
        cache_dir: None,
        wake: Arc::new(|| {}),
    })
    .unwrap();
    let all = Settings::original();
    let run = w.send(Command::Start(all));
    w.send(Command::Reset);
    let mut built = 0;
    loop {
        match next(&w) {
            Event::Cache { run: r, done, .. } if r == run => built = built.max(done),
            Event::Ended { run: r, reason } if r == run => {
                assert_eq!(reason, EndReason::Cancelled);
                break;
            }
            Event::Snapshot(s) if s.run == run => panic!("the reset run went on"),
            _ => {}
        }
    }
    assert!(built < 10, "it stopped after {built} of 10 labels");

    let s = Settings {
        labels: vec![4],
        batch: 2,
        max_steps: Some(3),
        ..Settings::original()
    };
    let run = w.send(Command::Start(s));
    while !matches!(next(&w), Event::Ended { run: r, .. } if r == run) {}
    let other = backwork::meta::ModelRef {
        name: "another-model.safetensors".into(),
        sha256: "0".repeat(64),
    };
    w.send(Command::SetModel(Box::new((net, other))));
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("export");
    let results = export_all(&mut w, &dir);
    assert_eq!(
        results["model"]["sha256"],
        info.sha256.as_str(),
        "{results}"
    );
}

/// The images of the first snapshot of a run, and its end.
fn first_images_and_end(w: &Worker, run: u64) -> (Vec<f32>, EndReason) {
    let mut first = None;
    loop {
        match next(w) {
            Event::Snapshot(s) if s.run == run && first.is_none() => first = Some(s.images),
            Event::Ended { run: r, reason } if r == run => {
                return (first.expect("a snapshot before the end"), reason);
            }
            Event::Refused { message, .. } => panic!("{message}"),
            _ => {}
        }
    }
}

/// "Start from the current images" (the app's picker, `Init::Current`): the next run's first
/// step classifies exactly the images the previous run ended with; "class means" starts from
/// means of training images (smooth, not noise); a start file of the wrong size ends the run
/// with an error naming the counts.
#[test]
fn a_run_starts_from_the_current_images_class_means_or_a_file() {
    let mut w = worker(Arc::new(AtomicUsize::new(0)));
    // Adam at 0.02: at the default's 0.08 both images pass 0.999 within the 3 steps, and
    // run a must end on its step budget.
    let s = Settings {
        labels: vec![3],
        batch: 2,
        max_steps: Some(3),
        lr: 0.02,
        ..Settings::default()
    };
    let a = w.send(Command::Start(s.clone()));
    let (_, end) = first_images_and_end(&w, a);
    assert_eq!(end, EndReason::MaxSteps);
    // The final images of run a, as its last snapshot has them: ask for an export-free
    // copy by starting run b from them.
    let b = w.send(Command::Start(Settings {
        init: Init::Current,
        max_steps: Some(1),
        ..s.clone()
    }));
    let (b_first, _) = first_images_and_end(&w, b);
    let c = w.send(Command::Start(Settings {
        init: Init::Current,
        max_steps: Some(1),
        ..s.clone()
    }));
    let (c_first, _) = first_images_and_end(&w, c);
    // Run b's single step classified its start images; run c started from b's.
    assert_eq!(b_first, c_first, "a run goes on from the images on screen");

    let d = w.send(Command::Start(Settings {
        init: Init::ClassMeans,
        max_steps: Some(1),
        ..s.clone()
    }));
    let (d_first, _) = first_images_and_end(&w, d);
    // A mean of ~150 training images of 3 (3,000 of the training set here): its corners are
    // black, unlike uniform noise.
    assert!(
        d_first[..28].iter().all(|&v| v < 0.05),
        "top row of a class mean"
    );

    let tmp = tempfile::tempdir().unwrap();
    let f = tmp.path().join("one.npy");
    std::fs::write(
        &f,
        backwork::export::npy::npy_bytes(&vec![0.5f32; 784], &[1, 28, 28]),
    )
    .unwrap();
    let e = w.send(Command::Start(Settings {
        init: Init::File(f),
        ..s.clone()
    }));
    loop {
        if let Event::Ended { run, reason } = next(&w)
            && run == e
        {
            let EndReason::Error(msg) = reason else {
                panic!("{reason:?}")
            };
            assert!(msg.contains("one.npy") && msg.contains("needs 2"), "{msg}");
            break;
        }
    }
}

/// A model switch right after a run's reference sets were built: the save of the last set
/// runs on its own thread, and its notice (here: the cache folder refuses the file) must
/// still reach the window before the old cache is dropped (it was lost with it).
#[test]
fn a_model_switch_keeps_the_last_saves_notice() {
    let tmp = tempfile::tempdir().unwrap();
    let blocked = tmp.path().join("a-file");
    std::fs::write(&blocked, b"x").unwrap();
    let mut w = worker_caching_in(Arc::default(), Some(blocked.join("cache")));
    let net = FrozenCnn::new(&shipped_cnn().unwrap().0).unwrap();
    let s = Settings {
        labels: vec![4],
        batch: 2,
        max_steps: Some(3),
        ..Settings::original()
    };
    w.send(Command::Start(s));
    let other = backwork::meta::ModelRef {
        name: "another-model.safetensors".into(),
        sha256: "0".repeat(64),
    };
    w.send(Command::SetModel(Box::new((net, other))));
    let dir = tmp.path().join("export");
    w.send(Command::Export {
        dir: dir.clone(),
        rows: None,
    });
    let mut notices = Vec::new();
    loop {
        match next(&w) {
            Event::Notice { message } => notices.push(message),
            Event::Exported { .. } | Event::Refused { .. } => break,
            _ => {}
        }
    }
    assert!(
        notices.iter().any(|n| n.contains("cannot save")),
        "{notices:?}"
    );
}

/// Kept going (`Command::KeepGoing`), a run whose images all pass goes on to its step budget,
/// and its export says so; switched off mid-run, the run ends at its next probe as the method
/// does. The shipped model passes 0.999 on label 3 within a few steps (README's zoo table:
/// median 3 steps under the robust default).
#[test]
fn a_run_kept_going_passes_the_bar_and_goes_on_to_its_budget() {
    let mut w = worker(Arc::new(AtomicUsize::new(0)));
    let s = Settings {
        labels: vec![3],
        batch: 2,
        max_steps: Some(30),
        ..Settings::default()
    };
    w.send(Command::KeepGoing(true));
    let run = w.send(Command::Start(s.clone()));
    let (mut passed_at, mut last_step) = (None, 0);
    let end = loop {
        match next(&w) {
            Event::Snapshot(snap) => {
                last_step = snap.step;
                let passed = |p: &Vec<f32>| p.get(3).is_some_and(|&v| v > 0.999);
                if passed_at.is_none() && !snap.probs.is_empty() && snap.probs.iter().all(passed) {
                    passed_at = Some(snap.step);
                }
            }
            Event::Ended { run: r, reason } => {
                assert_eq!(r, run);
                break reason;
            }
            _ => {}
        }
    };
    assert_eq!(end, EndReason::MaxSteps);
    assert_eq!(last_step, 30);
    assert!(passed_at.is_some_and(|p| p < 30), "{passed_at:?}");
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("kept");
    let results = export_all(&mut w, &dir);
    assert_eq!(results["keep_going"], true);
    assert_eq!(results["steps"], 30);
    // Switched off while it runs (no budget now): it ends at the bar.
    w.send(Command::Start(Settings {
        max_steps: None,
        ..s
    }));
    loop {
        if let Event::Snapshot(snap) = next(&w)
            && snap.step >= 40
        {
            break;
        }
    }
    w.send(Command::KeepGoing(false));
    loop {
        if let Event::Ended { reason, .. } = next(&w) {
            assert_eq!(reason, EndReason::Threshold);
            break;
        }
    }
}
