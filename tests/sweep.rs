//! `backwork sweep` as a user runs it (issue 11): the grid is the product of the listed values,
//! shards merged give the rows of the unsharded sweep, a stopped sweep resumes without running
//! a point twice, presets and start images reach the engine, and bad flags fail at once.
// Tests may unwrap, expect and panic: that is a test failing (Cargo.toml [lints]).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::Path;
use std::process::Output;

use backwork::export::npy::npy_bytes;
use backwork::sweep::{SweepRow, read_rows};

mod common;

fn backwork(args: &[&str], cache: &Path) -> Output {
    common::backwork(args, Some(cache))
}

fn ok(args: &[&str], cache: &Path) -> Output {
    let r = backwork(args, cache);
    assert!(
        r.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&r.stderr)
    );
    r
}

/// Everything of a row but its wall time.
fn timeless(rows: Vec<SweepRow>) -> Vec<SweepRow> {
    rows.into_iter()
        .map(|mut r| {
            r.seconds = 0.0;
            r
        })
        .collect()
}

/// A small grid: 2 sim_coeff × 2 presets × 2 seeds = 8 runs of one label, 2 images, 3 steps.
const GRID: [&str; 12] = [
    "sweep",
    "--labels",
    "3",
    "--batch",
    "2",
    "--max-steps",
    "3",
    "--sim-coeff",
    "0.5,2",
    "--preset",
    "original,robust",
    "--seeds=0,1",
];

#[test]
fn shards_merged_equal_the_whole_sweep_and_a_stopped_sweep_resumes() {
    let tmp = tempfile::tempdir().unwrap();
    let cache = tmp.path().join("cache");
    let dir = |name: &str| tmp.path().join(name).to_str().unwrap().to_string();
    let with_out = |out: &str, extra: &[&str]| -> Vec<String> {
        let mut a: Vec<String> = GRID.iter().map(|s| s.to_string()).collect();
        a.extend(extra.iter().map(|s| s.to_string()));
        a.extend(["--out".to_string(), out.to_string()]);
        a
    };
    let run = |args: Vec<String>| {
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        ok(&refs, &cache)
    };

    let whole = dir("whole");
    run(with_out(&whole, &[]));
    let rows = read_rows(&Path::new(&whole).join("runs.jsonl")).unwrap();
    assert_eq!(rows.len(), 8, "2 presets x 2 sim_coeff x 2 seeds");
    let mut points: Vec<usize> = rows.iter().map(|r| r.point).collect();
    points.sort_unstable();
    assert_eq!(points, (0..8).collect::<Vec<_>>());
    for r in &rows {
        assert_eq!(r.outcome.images, 2);
        assert_eq!(r.outcome.steps, 3);
        assert!(r.outcome.min_p.is_finite() && (0.0..=1.0).contains(&r.outcome.min_p));
        assert!(r.outcome.pixel_range[0] >= 0.0 && r.outcome.pixel_range[1] <= 1.0);
        assert_eq!(r.preset, r.settings.preset_name());
        for tap in ["inputs", "conv0", "conv1", "fc"] {
            assert!(r.outcome.nearest_distance[tap] > 0.0, "{tap}");
        }
    }
    // Both presets and both values of sim_coeff appear, each with both seeds.
    for preset in ["original", "custom", "robust"] {
        let n = rows.iter().filter(|r| r.preset == preset).count();
        assert!(n > 0 || preset == "custom", "{preset}");
    }
    assert_eq!(rows.iter().filter(|r| r.seed == 1).count(), 4);

    let (a, b) = (dir("a"), dir("b"));
    run(with_out(&a, &["--shard", "1/2"]));
    run(with_out(&b, &["--shard", "2/2"]));
    let merged = dir("merged");
    ok(&["sweep", "--merge", &a, &b, "--out", &merged], &cache);
    let merged_rows = read_rows(&Path::new(&merged).join("runs.jsonl")).unwrap();
    let mut whole_sorted = rows.clone();
    whole_sorted.sort_by_key(|r| r.point);
    assert_eq!(timeless(merged_rows), timeless(whole_sorted));

    // A sweep stopped after its first shard's runs goes on where it stopped: shard 1's
    // folder, run unsharded, runs only the other half, and its file then holds every row
    // once.
    let r = run(with_out(&a, &[]));
    let err = String::from_utf8_lossy(&r.stderr);
    assert!(err.contains("4 to run here"), "{err}");
    let resumed = read_rows(&Path::new(&a).join("runs.jsonl")).unwrap();
    assert_eq!(resumed.len(), 8);
    // A torn last line (a crash mid-write) is dropped and the point run again.
    let runs = Path::new(&a).join("runs.jsonl");
    let mut text = std::fs::read_to_string(&runs).unwrap();
    text.truncate(text.len() - 20);
    std::fs::write(&runs, &text).unwrap();
    let r = run(with_out(&a, &[]));
    assert!(String::from_utf8_lossy(&r.stderr).contains("1 to run here"));
    assert_eq!(read_rows(&runs).unwrap().len(), 8);

    // A model listed twice is one model: nothing more to run (before, 8 more runs).
    let r = run(with_out(&a, &["--models", "shipped,shipped"]));
    assert!(
        String::from_utf8_lossy(&r.stderr)
            .contains("0 to run here (8 done, 0 in other shards, 8 named twice)"),
        "{}",
        String::from_utf8_lossy(&r.stderr)
    );
    assert_eq!(read_rows(&runs).unwrap().len(), 8);

    // Two folders holding different outcomes for one grid point are not shards of one
    // sweep: the merge names the file instead of keeping whichever came first.
    let edited = dir("edited");
    std::fs::create_dir(&edited).unwrap();
    let mut rows = read_rows(&runs).unwrap();
    rows[0].outcome.fooled += 1;
    std::fs::write(
        Path::new(&edited).join("runs.jsonl"),
        backwork::sweep::rows_text(&rows),
    )
    .unwrap();
    let out = dir("conflict");
    let args = ["sweep", "--merge", &a, &edited, "--out", &out];
    let r = backwork(&args, &cache);
    common::assert_one_line_failure(&args, &r, &["runs.jsonl", "differs"]);
    assert!(!Path::new(&out).join("runs.jsonl").exists());
}

/// A resumed sweep whose model file was replaced under the same name fails naming the file,
/// instead of skipping the points as done with the other network's rows (it did).
#[test]
fn a_sweep_refuses_to_resume_on_a_replaced_model() {
    let tmp = tempfile::tempdir().unwrap();
    let cache = tmp.path().join("cache");
    let model = tmp.path().join("m.safetensors");
    let out = tmp.path().join("sw");
    let (m, o) = (model.to_str().unwrap(), out.to_str().unwrap());
    let args = [
        "sweep",
        "--models",
        m,
        "--labels",
        "3",
        "--batch",
        "2",
        "--max-steps",
        "2",
        "--out",
        o,
    ];
    std::fs::copy("assets/models/mnist-cnn.safetensors", &model).unwrap();
    ok(&args, &cache);
    std::fs::copy("tests/fixtures/pytorch-cnn.safetensors", &model).unwrap();
    let r = backwork(&args, &cache);
    common::assert_one_line_failure(&args, &r, &["runs.jsonl", "another file", "new --out"]);
    // The same file under another name (a link to it) is refused too: it ran the point again
    // on the new network, two networks' rows under one file.
    let link = tmp.path().join("link.safetensors");
    std::os::unix::fs::symlink(&model, &link).unwrap();
    let mut linked = args;
    linked[2] = link.to_str().unwrap();
    let r = backwork(&linked, &cache);
    common::assert_one_line_failure(&linked, &r, &["runs.jsonl", "another file"]);
    assert_eq!(read_rows(&out.join("runs.jsonl")).unwrap().len(), 1);
    // And from another folder: a row made with a relative name keeps the file's absolute
    // path, so the same file named from elsewhere is still found (the name as written led
    // nowhere from there, and the point ran again on the new network).
    let sub = tmp.path().join("sub");
    std::fs::create_dir(&sub).unwrap();
    std::fs::copy(
        "assets/models/mnist-cnn.safetensors",
        sub.join("m2.safetensors"),
    )
    .unwrap();
    let in_folder = |dir: &Path, model: &str, out: &str| {
        let mut a = args;
        (a[2], a[10]) = (model, out);
        let r = std::process::Command::new(env!("CARGO_BIN_EXE_backwork"))
            .args(a)
            .env("BACKWORK_CACHE_DIR", &cache)
            .current_dir(dir)
            .output()
            .unwrap();
        (a.map(String::from), r)
    };
    let (_, r) = in_folder(&sub, "m2.safetensors", "../sw2");
    assert!(r.status.success(), "{}", String::from_utf8_lossy(&r.stderr));
    let rows = read_rows(&tmp.path().join("sw2/runs.jsonl")).unwrap();
    let recorded = rows[0].model_file.clone().unwrap();
    assert_eq!(
        Path::new(&recorded),
        sub.join("m2.safetensors").canonicalize().unwrap()
    );
    std::fs::copy(
        "tests/fixtures/pytorch-cnn.safetensors",
        sub.join("m2.safetensors"),
    )
    .unwrap();
    let (a, r) = in_folder(tmp.path(), "sub/m2.safetensors", "sw2");
    let a: Vec<&str> = a.iter().map(String::as_str).collect();
    common::assert_one_line_failure(&a, &r, &["runs.jsonl", "another file"]);
    assert_eq!(
        read_rows(&tmp.path().join("sw2/runs.jsonl")).unwrap().len(),
        1
    );
}

/// A resumed sweep finds its rows by the model's contents, not its name: the same file named
/// through a link (or copied) ran every point again before, doubling the rows.
#[test]
fn a_resumed_sweep_finds_its_rows_under_another_name_for_the_model() {
    let tmp = tempfile::tempdir().unwrap();
    let cache = tmp.path().join("cache");
    let model = tmp.path().join("m.safetensors");
    let copy = tmp.path().join("copy.safetensors");
    std::fs::copy("assets/models/mnist-cnn.safetensors", &model).unwrap();
    std::fs::copy(&model, &copy).unwrap();
    let out = tmp.path().join("sw");
    let args = |m: &Path| -> Vec<String> {
        [
            "sweep",
            "--models",
            m.to_str().unwrap(),
            "--labels",
            "3",
            "--batch",
            "2",
            "--max-steps",
            "2",
            "--seeds",
            "0,1",
            "--out",
            out.to_str().unwrap(),
        ]
        .map(String::from)
        .to_vec()
    };
    let first = args(&model);
    ok(
        &first.iter().map(String::as_str).collect::<Vec<_>>(),
        &cache,
    );
    assert_eq!(read_rows(&out.join("runs.jsonl")).unwrap().len(), 2);
    let again = args(&copy);
    let r = ok(
        &again.iter().map(String::as_str).collect::<Vec<_>>(),
        &cache,
    );
    let err = String::from_utf8_lossy(&r.stderr);
    assert!(err.contains("0 to run here (2 done"), "{err}");
    assert_eq!(read_rows(&out.join("runs.jsonl")).unwrap().len(), 2);
}

/// A second sweep into a folder another sweep holds fails at once naming the folder, instead
/// of running the same points beside it and interleaving rows in one file.
#[test]
fn a_sweep_into_a_folder_another_sweep_holds_fails_at_once() {
    let tmp = tempfile::tempdir().unwrap();
    let cache = tmp.path().join("cache");
    let out = tmp.path().join("held");
    std::fs::create_dir(&out).unwrap();
    let o = out.to_str().unwrap();
    let args = [
        "sweep",
        "--labels",
        "3",
        "--batch",
        "2",
        "--max-steps",
        "2",
        "--out",
        o,
    ];
    let lock = backwork::sweep::lock_folder(&out).unwrap();
    let r = backwork(&args, &cache);
    common::assert_one_line_failure(&args, &r, &["held", "another backwork", "--out"]);
    assert!(!out.join("runs.jsonl").exists());
    let merged = ["sweep", "--merge", o, "--out", o];
    let r = backwork(&merged, &cache);
    common::assert_one_line_failure(&merged, &r, &["held", "another backwork"]);
    // A run into it is kept out too (its own lock file did not keep a sweep out, nor the
    // reverse), and leaves no lock file behind.
    let plain = [
        "run",
        "--labels",
        "3",
        "--batch",
        "2",
        "--max-steps",
        "2",
        "--out",
        o,
    ];
    let run = [&plain[..7], &["--force"], &plain[7..]].concat();
    let r = backwork(&run, &cache);
    common::assert_one_line_failure(&run, &r, &["held", "another backwork"]);
    assert_eq!(std::fs::read_dir(&out).unwrap().count(), 0);
    // Without --force too: it said "not empty" of a sweep's folder.
    std::fs::write(out.join("runs.jsonl"), b"").unwrap();
    let r = backwork(&plain, &cache);
    common::assert_one_line_failure(&plain, &r, &["held", "another backwork"]);
    std::fs::remove_file(out.join("runs.jsonl")).unwrap();
    // A lock file left by a writer killed at once, naming a PID that is alive now (PID 1),
    // no longer keeps the folder for good: the folder's own lock is free, so it is stale.
    drop(lock);
    std::fs::write(out.join(".backwork-lock"), b"1").unwrap();
    ok(&run, &cache);
    assert!(!out.join(".backwork-lock").exists());
    assert!(out.join("results.json").exists());
    std::fs::remove_dir_all(&out).unwrap();
    std::fs::create_dir(&out).unwrap();
    // Let go, the same sweep runs.
    ok(&args, &cache);
    assert_eq!(read_rows(&out.join("runs.jsonl")).unwrap().len(), 1);
    // A file with one run twice (concatenated by hand) is said on resume: a table of it
    // counts the run twice. The sweep runs nothing and adds nothing.
    let runs = out.join("runs.jsonl");
    let once = std::fs::read(&runs).unwrap();
    std::fs::write(&runs, [&once[..], &once[..]].concat()).unwrap();
    let r = ok(&args, &cache);
    let said = String::from_utf8_lossy(&r.stderr);
    assert!(said.contains("rows 1 and 2 are one run"), "{said}");
    assert_eq!(read_rows(&runs).unwrap().len(), 2);
    std::fs::write(&runs, &once).unwrap();
    // A merge into a folder it names among its inputs another way (`DIR/`) is that folder.
    let slash = format!("{o}/");
    ok(&["sweep", "--merge", &slash, "--out", o], &cache);
    assert_eq!(read_rows(&out.join("runs.jsonl")).unwrap().len(), 1);
}

#[test]
fn presets_and_start_images_reach_the_run() {
    let tmp = tempfile::tempdir().unwrap();
    let cache = tmp.path().join("cache");
    // Start images: two flat grey images; with --max-steps 1 the run classifies exactly
    // them, so results.json's probabilities are the network's on grey.
    let start = tmp.path().join("start.npy");
    std::fs::write(&start, npy_bytes(&vec![0.5f32; 2 * 784], &[2, 28, 28])).unwrap();
    let out = tmp.path().join("run");
    let base = [
        "run",
        "--labels",
        "5",
        "--batch",
        "2",
        "--max-steps",
        "1",
        "--preset",
        "original",
        "--init",
        start.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ];
    ok(&base, &cache);
    let v: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("results.json")).unwrap()).unwrap();
    assert_eq!(v["preset"], "original");
    assert_eq!(v["settings"]["softmax_term"], "prob");
    assert_eq!(v["settings"]["reinit_window"], 5);
    let (_, x) = backwork::export::npy::read_npy(&out.join("images.npy")).unwrap();
    assert!(
        x.iter().all(|&p| p == 0.5),
        "the run classified its start images"
    );
    let p0 = &v["images"][0]["probabilities"];
    assert_eq!(p0, &v["images"][1]["probabilities"], "two equal images");
    // More images than the run takes: the first ones, and a line that says so (it was
    // silent).
    let out1 = tmp.path().join("run1");
    let r = ok(
        &[
            "run",
            "--labels",
            "5",
            "--batch",
            "1",
            "--max-steps",
            "1",
            "--init",
            start.to_str().unwrap(),
            "--out",
            out1.to_str().unwrap(),
        ],
        &cache,
    );
    let err = String::from_utf8_lossy(&r.stderr);
    assert!(
        err.contains("notice: --init")
            && err.contains("holds 2 images; the run starts from the first 1"),
        "{err}"
    );

    // A flag after the preset overrides it, and makes the settings custom.
    let out2 = tmp.path().join("run2");
    let mut args: Vec<&str> = base.to_vec();
    let o2 = out2.to_str().unwrap();
    *args.last_mut().unwrap() = o2;
    args.extend(["--reinit-window", "7"]);
    ok(&args, &cache);
    let v: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out2.join("results.json")).unwrap()).unwrap();
    assert_eq!(v["preset"], "custom");
    assert_eq!(v["settings"]["reinit_window"], 7);
    assert_eq!(v["settings"]["softmax_term"], "prob");

    // The original preset is the original flags: the same run, bit for bit.
    let (p1, p2) = (tmp.path().join("p1"), tmp.path().join("p2"));
    let tiny = ["run", "--labels", "7", "--batch", "2", "--max-steps", "6"];
    let mut a1: Vec<&str> = tiny.to_vec();
    a1.extend(["--preset", "original", "--out", p1.to_str().unwrap()]);
    ok(&a1, &cache);
    let mut a2: Vec<&str> = tiny.to_vec();
    a2.extend([
        "--lr",
        "0.01",
        "--softmax-term",
        "prob",
        "--reinit-window",
        "5",
        "--stall",
        "off",
        "--out",
        p2.to_str().unwrap(),
    ]);
    ok(&a2, &cache);
    assert_eq!(
        std::fs::read(p1.join("images.npy")).unwrap(),
        std::fs::read(p2.join("images.npy")).unwrap()
    );
    let v: serde_json::Value =
        serde_json::from_slice(&std::fs::read(p2.join("results.json")).unwrap()).unwrap();
    assert_eq!(
        v["preset"], "original",
        "the original's flags make the original preset"
    );

    // The default is the robust preset; class means start from the label's training mean.
    let out3 = tmp.path().join("run3");
    ok(
        &[
            "run",
            "--labels",
            "5",
            "--batch",
            "1",
            "--max-steps",
            "1",
            "--init",
            "class-means",
            "--out",
            out3.to_str().unwrap(),
        ],
        &cache,
    );
    let v: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out3.join("results.json")).unwrap()).unwrap();
    assert_eq!(v["preset"], "robust");
    assert_eq!(v["settings"]["init"], "class-means");
    // One group: the mean of all 5,421 training images of 5 (../shared/DATA.md), whose
    // nearest training image is close, unlike noise's (about 0.1 per pixel and more).
    let d = v["images"][0]["nearest_distance"].as_f64().unwrap();
    assert!(d < 0.05, "class mean's nearest distance {d}");
}

#[test]
fn bad_sweep_and_init_flags_fail_with_one_line() {
    let tmp = tempfile::tempdir().unwrap();
    let cache = tmp.path().join("cache");
    let out = tmp.path().join("o");
    let o = out.to_str().unwrap();
    let short = tmp.path().join("short.npy");
    std::fs::write(&short, npy_bytes(&vec![0.5f32; 784], &[1, 28, 28])).unwrap();
    let nan = tmp.path().join("nan.npy");
    let mut v = vec![0.5f32; 2 * 784];
    v[7] = f32::NAN;
    std::fs::write(&nan, npy_bytes(&v, &[2, 28, 28])).unwrap();
    // A sweep makes its folder in an existing one, as `run` does (it made every missing
    // parent).
    let deep = tmp.path().join("missing/deep");
    let deep = deep.to_str().unwrap();
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (vec!["sweep", "--out", deep], "does not exist"),
        (
            vec!["sweep", "--sim-coeff", "0.5,x", "--out", o],
            "--sim-coeff",
        ),
        (vec!["sweep", "--preset", "fast", "--out", o], "--preset"),
        (vec!["sweep", "--shard", "3/2", "--out", o], "--shard"),
        (vec!["sweep", "--lr", "0.01,-1", "--out", o], "--lr"),
        (
            vec![
                "sweep",
                "--models",
                "shipped,/nonexistent.safetensors",
                "--out",
                o,
            ],
            "nonexistent.safetensors",
        ),
        (
            vec!["sweep", "--merge", "/nonexistent-sweep", "--out", o],
            "runs.jsonl",
        ),
        (
            vec![
                "run",
                "--labels",
                "3",
                "--batch",
                "2",
                "--init",
                short.to_str().unwrap(),
                "--out",
                o,
            ],
            "short.npy",
        ),
        (
            vec![
                "run",
                "--labels",
                "3",
                "--batch",
                "2",
                "--init",
                nan.to_str().unwrap(),
                "--out",
                o,
            ],
            "not finite",
        ),
        (
            vec![
                "run",
                "--labels",
                "3",
                "--init",
                "/nonexistent.npy",
                "--out",
                o,
            ],
            "nonexistent.npy",
        ),
    ];
    for (args, needle) in cases {
        let r = backwork(&args, &cache);
        assert!(!r.status.success(), "{args:?} should fail");
        let err = String::from_utf8_lossy(&r.stderr);
        assert_eq!(err.trim_end().lines().count(), 1, "{args:?}: {err}");
        assert!(err.contains(needle), "{args:?}: {err:?} lacks {needle:?}");
    }
}
