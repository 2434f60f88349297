//! The datasets: the embedded MNIST is the genuine one, folders of IDX files load raw or
//! gzipped, and bad files are reported by name.
// Tests may unwrap, expect and panic: that is a test failing (Cargo.toml [lints]).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::Path;

use backwork::data::idx::{encode_images, encode_labels};
use backwork::data::{Dataset, PIXELS, Split};
use sha2::{Digest, Sha256};

fn hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[test]
fn embedded_mnist_is_the_genuine_one() {
    let train = Dataset::mnist(Split::Train).unwrap();
    let test = Dataset::mnist(Split::Test).unwrap();
    assert_eq!((train.len(), test.len()), (60_000, 10_000));
    // Class counts from ../shared/DATA.md.
    assert_eq!(
        train.label_counts(),
        [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]
    );
    assert_eq!(
        test.label_counts(),
        [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]
    );
    // SHA-256 of the raw IDX files (../shared/DATA.md), re-encoded from what we parsed.
    assert_eq!(
        hex(&encode_images(train.len(), &train.pixels)),
        "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db"
    );
    assert_eq!(
        hex(&encode_labels(&train.labels)),
        "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5"
    );
    assert_eq!(
        hex(&encode_images(test.len(), &test.pixels)),
        "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7"
    );
    assert_eq!(
        hex(&encode_labels(&test.labels)),
        "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2"
    );
}

/// Debian's dataset-fashion-mnist (installed by .ci/run) as a second real dataset.
#[test]
fn loads_fashion_mnist_from_a_folder_of_gz_files() {
    let dir = Path::new("/usr/share/datasets/fashion-mnist");
    assert!(
        dir.is_dir(),
        "{} is missing: apt-get install dataset-fashion-mnist",
        dir.display()
    );
    let test = Dataset::from_dir(dir, Split::Test).unwrap();
    assert_eq!(test.len(), 10_000);
    // Fashion-MNIST's test split has exactly 1,000 images of each class.
    assert_eq!(test.label_counts(), [1000; 10]);
    let train = Dataset::from_dir(dir, Split::Train).unwrap();
    assert_eq!(train.label_counts(), [6000; 10]);
}

#[test]
fn folder_loading_reports_missing_and_bad_files_by_name() {
    let dir = tempfile::tempdir().unwrap();
    let e = Dataset::from_dir(dir.path(), Split::Test)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("no images file") && e.contains("t10k-images-idx3-ubyte"),
        "{e}"
    );

    let pixels = vec![7u8; 3 * PIXELS];
    std::fs::write(
        dir.path().join("t10k-images-idx3-ubyte"),
        encode_images(3, &pixels),
    )
    .unwrap();
    std::fs::write(
        dir.path().join("t10k-labels-idx1-ubyte"),
        encode_labels(&[1, 2, 3]),
    )
    .unwrap();
    let raw = Dataset::from_dir(dir.path(), Split::Test).unwrap();
    assert_eq!(raw.labels, vec![1, 2, 3]);
    assert_eq!(raw.image(2)[5], 7);

    // Two labels for three images.
    std::fs::write(
        dir.path().join("t10k-labels-idx1-ubyte"),
        encode_labels(&[1, 2]),
    )
    .unwrap();
    let e = Dataset::from_dir(dir.path(), Split::Test)
        .unwrap_err()
        .to_string();
    assert!(e.contains("3 images") && e.contains("2 labels"), "{e}");

    // A truncated image file names itself.
    let mut short = encode_images(3, &pixels);
    short.truncate(100);
    let img = dir.path().join("t10k-images-idx3-ubyte");
    std::fs::write(&img, short).unwrap();
    let e = Dataset::from_dir(dir.path(), Split::Test)
        .unwrap_err()
        .to_string();
    assert!(
        e.starts_with(&img.display().to_string()) && e.contains("truncated"),
        "{e}"
    );
}
