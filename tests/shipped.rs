//! The shipped model: its accuracy on the real MNIST test set, and a model trained in PyTorch
//! with the §1 names loads and scores exactly what PyTorch measured.
// Tests may unwrap, expect and panic: that is a test failing (Cargo.toml [lints]).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use backwork::data::{Dataset, Split};
use backwork::model::eval::evaluate;
use backwork::model::weights::{load_cnn, shipped_cnn};

#[test]
fn shipped_model_reaches_99_percent_on_the_real_test_set() {
    let (cnn, info) = shipped_cnn().unwrap();
    let test = Dataset::mnist(Split::Test).unwrap();
    let ev = evaluate(&cnn, &test, &mut |_, _| {}).unwrap();
    assert_eq!(ev.total, 10_000);
    assert!(ev.accuracy() >= 0.99, "accuracy {}", ev.accuracy());
    // The metadata records what `backwork train` measured when it saved the file.
    let recorded = info.test_accuracy().unwrap();
    assert!(
        (recorded - ev.accuracy()).abs() < 1e-4,
        "{recorded} vs {}",
        ev.accuracy()
    );
}

/// tests/fixtures/pytorch-cnn.safetensors was trained by scripts/pytorch_crosscheck.py with
/// PyTorch, which wrote the number of test images it classified correctly into the metadata.
#[test]
fn a_pytorch_trained_model_scores_what_pytorch_measured() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/pytorch-cnn.safetensors");
    let (cnn, info) = load_cnn(&path).unwrap();
    let torch_correct: usize = info.metadata["pytorch_test_correct"].parse().unwrap();
    let test = Dataset::mnist(Split::Test).unwrap();
    let ev = evaluate(&cnn, &test, &mut |_, _| {}).unwrap();
    assert_eq!(ev.correct, torch_correct);
}
