//! The command line as a user runs it: JSON output, and one-line errors with a non-zero exit
//! for every kind of bad input, leaving no partial file behind.
// Tests may unwrap, expect and panic: that is a test failing (Cargo.toml [lints]).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

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

/// Issue 12's "silent nonsense" and wrong messages, each of which exited 0 or named the
/// wrong option: an empty split trained or evaluated, `--repeat 1000000000` (a 32 GB
/// allocation), `retrain --budget 0` named `--max-steps`, `cost --grad-out` said "--force"
/// (cost has no such flag), and `train --model FILE` was listed and ignored.
#[test]
fn nonsense_is_refused_and_messages_name_the_right_option() {
    let dir = tempfile::tempdir().unwrap();
    let empty = dir.path().join("empty");
    std::fs::create_dir(&empty).unwrap();
    for split in ["train", "t10k"] {
        let images = backwork::data::idx::encode_images(0, &[]);
        std::fs::write(empty.join(format!("{split}-images-idx3-ubyte")), images).unwrap();
        let labels = backwork::data::idx::encode_labels(&[]);
        std::fs::write(empty.join(format!("{split}-labels-idx1-ubyte")), labels).unwrap();
    }
    let e = empty.to_str().unwrap();
    let m = dir.path().join("m.safetensors");
    let m = m.to_str().unwrap();
    fails_with(&["--data", e, "eval"], &["test set holds no images"]);
    fails_with(
        &["--data", e, "train", "--out", m],
        &["training set holds no images"],
    );
    let base = [
        "retrain", "--from", "nowhere", "--mode", "uniform", "--out", m,
    ];
    fails_with(
        &[&base[..], &["--repeat", "1000000000"]].concat(),
        &["--repeat", "at most 1000"],
    );
    fails_with(&[&base[..], &["--budget", "0"]].concat(), &["--budget"]);
    let x = dir.path().join("x.npy");
    std::fs::write(
        &x,
        backwork::export::npy::npy_bytes(&[0.5; 784], &[1, 28, 28]),
    )
    .unwrap();
    let x = x.to_str().unwrap();
    let out = backwork(&["cost", "--inputs", x, "--label", "3", "--grad-out", x]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains("--grad-out") && !err.contains("--force"),
        "{err}"
    );

    // --model: training goes on from that network (one step on 64 images).
    let first = dir.path().join("first.safetensors");
    let args = ["train", "--limit", "64", "--epochs", "1", "--out"];
    let r = backwork(&[&args[..], &[first.to_str().unwrap()]].concat());
    assert!(r.status.success(), "{}", String::from_utf8_lossy(&r.stderr));
    let r = backwork(&[&["--model", first.to_str().unwrap()][..], &args[..], &[m]].concat());
    assert!(r.status.success(), "{}", String::from_utf8_lossy(&r.stderr));
    let (_, info) = backwork::model::weights::load_cnn(std::path::Path::new(m)).unwrap();
    assert!(
        info.metadata["continued_from"].contains("first.safetensors"),
        "{:?}",
        info.metadata
    );
}

/// A FIFO under a data file's name, or a folder that does not exist, is named as such (both
/// were reported as "no images file").
#[test]
fn data_folders_with_a_fifo_or_missing_are_named() {
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("t10k-images-idx3-ubyte");
    let c = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
    // SAFETY: a valid C string; mkfifo only creates a file.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
    let d = dir.path().to_str().unwrap();
    fails_with(
        &["--data", d, "eval"],
        &["t10k-images-idx3-ubyte", "not a regular file"],
    );
    let gone = dir.path().join("gone");
    fails_with(
        &["--data", gone.to_str().unwrap(), "eval"],
        &["gone", "no such folder"],
    );
}

/// Found by the hostile review of 2026-12-03: `backwork eval | head -1` panicked ("failed
/// printing to stdout: Broken pipe"). A closed pipe now ends the command quietly.
#[test]
fn a_closed_output_pipe_ends_a_command_quietly() {
    use std::process::{Command, Stdio};
    let mut child = Command::new(env!("CARGO_BIN_EXE_backwork"))
        .args(["eval"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Closed before the first line is printed (the evaluation takes a while).
    drop(child.stdout.take());
    let out = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!err.contains("panicked"), "{err}");
    assert_ne!(out.status.code(), Some(101), "{err}");
}
