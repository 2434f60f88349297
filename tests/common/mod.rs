//! Helpers shared by the integration tests that run the binary: running it, the one-line
//! failure every bad input must give, and small data folders.
// Tests may unwrap, expect and panic: that is a test failing (Cargo.toml [lints]).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
// Each test crate compiles this module and uses a part of it.
#![allow(dead_code)]

use std::path::Path;
use std::process::{Command, Output};

use backwork::data::idx::{encode_images, encode_labels};
use backwork::data::{Dataset, PIXELS, Split};

/// The first `n` MNIST test images as both splits of an IDX folder `dir`.
pub fn small_data_dir(dir: &Path, n: usize) {
    let test = Dataset::mnist(Split::Test).unwrap();
    std::fs::create_dir_all(dir).unwrap();
    for split in ["train", "t10k"] {
        let images = encode_images(n, &test.pixels[..n * PIXELS]);
        std::fs::write(dir.join(format!("{split}-images-idx3-ubyte")), images).unwrap();
        let labels = encode_labels(&test.labels[..n]);
        std::fs::write(dir.join(format!("{split}-labels-idx1-ubyte")), labels).unwrap();
    }
}

/// The first `r` images of `label` in `train`, as a dataset of their own.
pub fn subset(train: &Dataset, label: u8, r: usize) -> Dataset {
    let idx: Vec<usize> = (0..train.len())
        .filter(|&i| train.labels[i] == label)
        .take(r)
        .collect();
    train.with_images(
        "subset",
        idx.iter().flat_map(|&i| train.image(i).to_vec()).collect(),
        vec![label; idx.len()],
    )
}

/// Runs the binary with `args`; with `cache`, its reference cache lives there.
pub fn backwork(args: &[&str], cache: Option<&Path>) -> Output {
    let mut c = Command::new(env!("CARGO_BIN_EXE_backwork"));
    c.args(args);
    if let Some(dir) = cache {
        c.env("BACKWORK_CACHE_DIR", dir);
    }
    c.output().unwrap()
}

/// Runs the binary with `args` and its reference cache in `cache`, asserting it succeeds.
pub fn backwork_ok(args: &[&str], cache: &Path) -> Output {
    let o = backwork(args, Some(cache));
    assert!(
        o.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    o
}

/// Asserts that `out` (of `args`) is a failure with exactly one line on stderr, no panic,
/// containing every needle.
pub fn assert_one_line_failure(args: &[&str], out: &Output, needles: &[&str]) {
    assert!(!out.status.success(), "{args:?} should fail");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        err.trim_end().lines().count(),
        1,
        "one line for {args:?}: {err}"
    );
    assert!(!err.contains("panicked"), "{err}");
    for n in needles {
        assert!(err.contains(n), "{args:?}: {err:?} lacks {n:?}");
    }
}
