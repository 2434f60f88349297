//! ONNX files exported by PyTorch (`scripts/pytorch_onnx.py`, both exporters): they load,
//! evaluate to the accuracy PyTorch measured on the same test images, and backwork fools
//! them; unsupported and damaged files get a one-line error naming the file and what is wrong.
// Tests may unwrap, expect and panic: that is a test failing (Cargo.toml [lints]).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::path::{Path, PathBuf};

use backwork::data::{Dataset, Split};
use backwork::model::eval::evaluate_net;
use backwork::model::weights::load_net;

const FASHION: &str = "/usr/share/datasets/fashion-mnist";

fn file(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data/onnx")
        .join(name)
}

/// PyTorch's count of correct test images for `name` (tests/data/onnx/onnx.json).
fn torch_correct(name: &str) -> usize {
    let report: serde_json::Value =
        serde_json::from_slice(&std::fs::read(file("onnx.json")).unwrap()).unwrap();
    report[name]["correct"].as_u64().unwrap() as usize
}

/// Runs `backwork run` with `args` (its cache under `dir`), which must succeed, and reads
/// the `results.json` it wrote into `out`.
fn run_results(args: &[&str], dir: &Path, out: &Path) -> serde_json::Value {
    common::backwork_ok(args, &dir.join("cache"));
    serde_json::from_slice(&std::fs::read(out.join("results.json")).unwrap()).unwrap()
}

#[test]
fn pytorch_exports_evaluate_to_pytorchs_accuracy() {
    let mnist = Dataset::mnist(Split::Test).unwrap();
    let fashion = Dataset::from_dir(Path::new(FASHION), Split::Test).unwrap();
    // The 16×16 RGB image folder the script writes beside the models.
    let shapes = Dataset::from_dir(&file("shapes"), Split::Test).unwrap();
    assert_eq!(shapes.shape.c, 3);
    for (name, data, taps) in [
        ("lenet5-mnist", &mnist, "inputs conv0 conv1 fc fc1"),
        ("cnn-fashion", &fashion, "inputs conv0 conv1 fc"),
        ("cnn-shapes", &shapes, "inputs conv0 conv1 fc"),
        // x.view(x.size(0), -1) and torch.matmul(x, w) + b: a computed Reshape, MatMul + Add.
        ("view-mnist", &mnist, "inputs conv0"),
    ] {
        for suffix in ["", "-ts"] {
            let path = file(&format!("{name}{suffix}.onnx"));
            let (net, info) = load_net(&path).unwrap();
            assert_eq!(info.metadata["source"], "onnx");
            let names: Vec<&str> = net.taps().iter().map(|t| t.name.as_str()).collect();
            assert_eq!(names.join(" "), taps, "{name}{suffix}");
            let ev = evaluate_net(&net, data, &mut |_, _| {});
            // Same images, same scaling (raw / 255), f32 both sides: the counts may differ by
            // an image whose two top logits tie to within rounding.
            let want = torch_correct(name);
            assert!(
                ev.correct.abs_diff(want) <= 2,
                "{name}{suffix}: backwork {} vs PyTorch {want}",
                ev.correct
            );
        }
    }
}

#[test]
fn unsupported_and_damaged_onnx_files_are_refused_by_name() {
    let dir = tempfile::tempdir().unwrap();
    let bad = |path: &Path, needles: &[&str]| {
        let p = path.to_str().unwrap();
        let args = ["eval", "--model", p];
        let mut all = vec![p];
        all.extend_from_slice(needles);
        common::assert_one_line_failure(&args, &common::backwork(&args, None), &all);
    };
    // Named as in the file (`/2/Sigmoid`), not as the parser renames it.
    bad(&file("unsupported.onnx"), &["Sigmoid", "/2/Sigmoid"]);
    // `(x - 0.1307) / 0.3081` exported with the network: the way out is named.
    bad(
        &file("normalised.onnx"),
        &["unsupported operator Sub", "--input-mean/--input-std"],
    );
    // Found by the hostile review of 2026-12-03: a softmax over the batch was taken as the
    // final softmax, and a Gemm with alpha 2 was refused as an operator "Constant" the file
    // does not have.
    bad(&file("softmax-axis0.onnx"), &["/Softmax", "axis 0"]);
    bad(&file("gemm-alpha.onnx"), &["/Gemm", "alpha 2"]);
    // The dynamo exporter's weights live in a second file beside the model.
    let alone = dir.path().join("lenet5-mnist.onnx");
    std::fs::copy(file("lenet5-mnist.onnx"), &alone).unwrap();
    bad(&alone, &["ONNX"]);
    let bytes = std::fs::read(file("lenet5-mnist-ts.onnx")).unwrap();
    for (name, content) in [
        ("empty.onnx", Vec::new()),
        ("half.onnx", bytes[..bytes.len() / 2].to_vec()),
        ("text.onnx", b"not a model at all\n".to_vec()),
        (
            "safetensors.onnx",
            std::fs::read(
                Path::new(env!("CARGO_MANIFEST_DIR")).join("assets/models/mnist-cnn.safetensors"),
            )
            .unwrap(),
        ),
    ] {
        let p = dir.path().join(name);
        std::fs::write(&p, content).unwrap();
        bad(&p, &[]);
    }
    bad(&dir.path().join("missing.onnx"), &["cannot read"]);
}

#[test]
fn mangled_onnx_files_never_panic() {
    // Deterministic damage to a real export: truncations and flipped bytes (a xorshift walk),
    // each loaded in this process. Each must load or fail with an error, not panic or hang.
    let bytes = std::fs::read(file("lenet5-mnist-ts.onnx")).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("m.onnx");
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut next = || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    for round in 0..60 {
        let mut b = bytes.clone();
        if round % 3 == 0 {
            b.truncate(next() as usize % b.len());
        } else {
            // Damage the header and graph (the first 2 KB), where a flip changes structure.
            for _ in 0..1 + round % 4 {
                let i = next() as usize % 2048.min(b.len());
                b[i] ^= (next() as u8) | 1;
            }
        }
        std::fs::write(&p, &b).unwrap();
        match load_net(&p) {
            Ok((net, _)) => assert!(net.classes() > 0),
            Err(e) => assert!(e.to_string().contains("m.onnx"), "{e}"),
        }
    }
}

#[test]
fn backwork_fools_an_onnx_colour_network_with_the_defaults() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("run");
    let model = file("cnn-shapes.onnx");
    let data = file("shapes");
    let args = [
        "run",
        "--model",
        model.to_str().unwrap(),
        "--data",
        data.to_str().unwrap(),
        "--batch",
        "3",
        "--out",
        out.to_str().unwrap(),
    ];
    let results = run_results(&args, dir.path(), &out);
    assert_eq!(
        results["classes"],
        serde_json::json!(["cross", "disc", "stripes"])
    );
    for im in results["images"].as_array().unwrap() {
        assert!(im["p_label"].as_f64().unwrap() > 0.999, "{im}");
    }
}

#[test]
fn backwork_fools_an_onnx_fashion_network_with_the_defaults() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("run");
    let model = file("cnn-fashion.onnx");
    let args = [
        "run",
        "--model",
        model.to_str().unwrap(),
        "--data",
        FASHION,
        "--labels",
        "Bag,Ankle boot",
        "--batch",
        "3",
        "--out",
        out.to_str().unwrap(),
    ];
    let results = run_results(&args, dir.path(), &out);
    let images = results["images"].as_array().unwrap();
    assert_eq!(images.len(), 6);
    for im in images {
        assert!(im["p_label"].as_f64().unwrap() > 0.999, "{im}");
        assert!(["Bag", "Ankle boot"].contains(&im["class"].as_str().unwrap()));
    }
}

#[test]
fn backwork_fools_an_onnx_lenet5_with_the_defaults() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("run");
    let model = file("lenet5-mnist.onnx");
    let args = [
        "run",
        "--model",
        model.to_str().unwrap(),
        "--labels",
        "3,8",
        "--batch",
        "4",
        "--seed",
        "5",
        "--out",
        out.to_str().unwrap(),
    ];
    let results = run_results(&args, dir.path(), &out);
    // LeNet-5's taps and the softmax: six layer weights.
    let weights = results["settings"]["layer_weights"].as_array().unwrap();
    assert_eq!(weights.len(), 6);
    let images = results["images"].as_array().unwrap();
    assert_eq!(images.len(), 8);
    for im in images {
        assert!(im["p_label"].as_f64().unwrap() > 0.999, "{im}");
    }
}
