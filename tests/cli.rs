//! The command line as a user runs it: JSON output, and one-line errors with a non-zero exit
//! for every kind of bad input, leaving no partial file behind.

use std::process::Output;

mod common;

fn backwork(args: &[&str]) -> Output {
    common::backwork(args, None)
}

/// Asserts a failure with exactly one line on stderr that contains every needle.
fn fails_with(args: &[&str], needles: &[&str]) {
    common::assert_one_line_failure(args, &backwork(args), needles);
}

#[test]
fn eval_json_has_the_documented_keys() {
    let out = backwork(&["eval", "--json"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["total"], 10_000);
    let acc = v["accuracy"].as_f64().unwrap();
    assert!(acc >= 0.99, "{acc}");
    assert_eq!(acc, v["correct"].as_f64().unwrap() / 10_000.0);
    let per_class = v["per_class"].as_array().unwrap();
    assert_eq!(per_class.len(), 10);
    assert!(per_class.iter().all(|a| a.as_f64().unwrap() > 0.95));
}

#[test]
fn bad_training_options_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("m.safetensors");
    let out = out.to_str().unwrap();
    fails_with(
        &["train", "--out", out, "--epochs", "0"],
        &["--epochs", "at least 1"],
    );
    fails_with(
        &["train", "--out", out, "--lr", "-0.01"],
        &["--lr", "(0, 10]"],
    );
    fails_with(
        &["train", "--out", "/no/such/dir/m.safetensors"],
        &["/no/such/dir", "does not exist"],
    );
    std::fs::write(out, b"precious").unwrap();
    fails_with(
        &["train", "--out", out, "--limit", "10"],
        &[out, "already exists"],
    );
    assert_eq!(std::fs::read(out).unwrap(), b"precious");
    assert_eq!(
        std::fs::read_dir(dir.path()).unwrap().count(),
        1,
        "no stray files"
    );
}

#[test]
fn bad_model_and_data_files_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let junk = dir.path().join("junk.safetensors");
    std::fs::write(&junk, b"not a model at all").unwrap();
    let junk = junk.to_str().unwrap();
    fails_with(
        &["eval", "--model", junk],
        &[junk, "not a safetensors file"],
    );
    fails_with(
        &["eval", "--model", "/no/model.safetensors"],
        &["/no/model.safetensors", "cannot read"],
    );
    let d = dir.path().to_str().unwrap();
    fails_with(&["eval", "--data", d], &[d, "no images file"]);
    std::fs::write(
        dir.path().join("t10k-images-idx3-ubyte"),
        b"\0\0\x08\x03short",
    )
    .unwrap();
    std::fs::write(
        dir.path().join("t10k-labels-idx1-ubyte"),
        b"\0\0\x08\x01\0\0\0\0",
    )
    .unwrap();
    fails_with(
        &["eval", "--data", d],
        &["t10k-images-idx3-ubyte", "truncated"],
    );
}

#[test]
fn training_writes_a_loadable_file_with_metadata() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("tiny.safetensors");
    let o = out.to_str().unwrap();
    let run = backwork(&[
        "train",
        "--out",
        o,
        "--limit",
        "128",
        "--batch-size",
        "64",
        "--epochs",
        "1",
    ]);
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    let (_, info) = backwork::model::weights::load_cnn(&out).unwrap();
    for key in [
        "dataset",
        "test_accuracy",
        "recipe",
        "date",
        "epochs_completed",
    ] {
        assert!(info.metadata.contains_key(key), "metadata lacks {key}");
    }
    let recipe: serde_json::Value = serde_json::from_str(&info.metadata["recipe"]).unwrap();
    assert_eq!(recipe["limit"], 128);
    let eval = backwork(&["eval", "--model", o, "--json"]);
    assert!(eval.status.success());
}
