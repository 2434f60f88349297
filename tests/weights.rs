//! Weight files: a round trip gives identical outputs; every kind of bad file is refused with
//! its reason and the file's name.
// Tests may unwrap, expect and panic: that is a test failing (Cargo.toml [lints]).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::HashMap;

use backwork::data::PIXELS;
use backwork::model::weights::{
    WeightInit, WeightsError, cnn_from_bytes, cnn_to_bytes, init_cnn, init_cnn_with, load_cnn,
    save_cnn,
};
use candle_core::{DType, Device, Tensor};

mod common;

fn some_images() -> Vec<f32> {
    (0..4 * PIXELS)
        .map(|i| ((i * 37) % 256) as f32 / 255.0)
        .collect()
}

/// Serialises the named tensors with the safetensors crate directly, to build bad files.
fn raw_file(tensors: Vec<(&str, Tensor)>) -> Vec<u8> {
    safetensors::serialize(tensors, None).unwrap()
}

fn good_tensors() -> Vec<(&'static str, Tensor)> {
    let cnn = init_cnn(1, 10).unwrap();
    cnn.named_tensors()
        .into_iter()
        .map(|(n, t)| (n, t.clone()))
        .collect()
}

fn refusal(bytes: &[u8]) -> String {
    let e = cnn_from_bytes("bad.safetensors", bytes).unwrap_err();
    let s = e.to_string();
    assert!(s.starts_with("bad.safetensors: "), "{s}");
    assert!(!s.contains('\n'), "one line: {s}");
    s
}

#[test]
fn round_trip_gives_identical_outputs_and_keeps_metadata() {
    let cnn = init_cnn(42, 10).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("m.safetensors");
    let mut meta = HashMap::new();
    meta.insert("dataset".to_string(), "MNIST".to_string());
    meta.insert("test_accuracy".to_string(), "0.9876".to_string());
    save_cnn(&cnn, &meta, &path, false).unwrap();
    let (back, info) = load_cnn(&path).unwrap();
    assert_eq!(info.test_accuracy(), Some(0.9876));
    assert_eq!(info.metadata["dataset"], "MNIST");
    assert_eq!(info.metadata["num_classes"], "10");
    let a = cnn.predict(&some_images()).unwrap();
    let b = back.predict(&some_images()).unwrap();
    assert_eq!(a, b, "bit-identical probabilities after a round trip");
    // Saving again over it is refused.
    let e = save_cnn(&cnn, &meta, &path, false).unwrap_err();
    assert!(matches!(e, WeightsError::Write(_)) && e.to_string().contains("already exists"));
}

#[test]
fn refuses_a_missing_tensor() {
    let mut t = good_tensors();
    t.retain(|(n, _)| *n != "fc.bias");
    assert!(refusal(&raw_file(t)).contains("missing tensor fc.bias"));
}

#[test]
fn renamed_tensors_are_read_by_their_shapes_and_the_file_says_so() {
    // A PyTorch user's own module names: conv1, conv2, fc1, fc2, behind a `model.` prefix.
    let theirs = [
        "conv1", "conv1", "conv2", "conv2", "fc1", "fc1", "fc2", "fc2",
    ];
    let t: Vec<(String, Tensor)> = good_tensors()
        .into_iter()
        .zip(theirs)
        .map(|((n, t), m)| (format!("model.{m}.{}", n.rsplit('.').next().unwrap()), t))
        .collect();
    let bytes = safetensors::serialize(t, None).unwrap();
    let (cnn, info) = cnn_from_bytes("theirs.safetensors", &bytes).unwrap();
    let how = &info.metadata[backwork::model::weights::META_BY_SHAPE];
    assert!(
        how.starts_with("model.conv1.weight as conv0.weight, model.conv1.bias as conv0.bias")
            && how.ends_with("model.fc2.bias as softmax.bias"),
        "{how}"
    );
    let ours = init_cnn(1, 10).unwrap();
    assert_eq!(
        cnn.predict(&some_images()).unwrap(),
        ours.predict(&some_images()).unwrap(),
        "the same network as under its own names"
    );
}

#[test]
fn half_and_double_precision_files_are_read_as_pytorchs_float_does() {
    // The same weights saved as F16, BF16 and F64 (safetensors.torch.save_file of a
    // model.half(), say): they were refused ("dtype F16, expected F32") where the same weights
    // in a .pt loaded (hostile test).
    let ours = init_cnn(1, 10).unwrap();
    let want = ours.predict(&some_images()).unwrap();
    for (dtype, tol) in [(DType::F64, 1e-6), (DType::F16, 2e-2), (DType::BF16, 1e-1)] {
        let t: Vec<(&str, Tensor)> = good_tensors()
            .into_iter()
            .map(|(n, t)| (n, t.to_dtype(dtype).unwrap()))
            .collect();
        let (cnn, _) = cnn_from_bytes("half.safetensors", &raw_file(t)).unwrap();
        let got = cnn.predict(&some_images()).unwrap();
        let worst = got
            .iter()
            .flatten()
            .zip(want.iter().flatten())
            .map(|(a, b)| (a - b).abs())
            .fold(0.0f32, f32::max);
        assert!(worst < tol, "{dtype:?}: probabilities differ by {worst}");
    }
    let mut t = good_tensors();
    t[1].1 = t[1].1.to_dtype(DType::U8).unwrap();
    assert!(refusal(&raw_file(t)).contains("conv0.bias has dtype U8, expected a float"));
}

#[test]
fn renamed_tensors_whose_shapes_do_not_all_fit_are_refused_saying_what_it_found() {
    let mut t: Vec<(String, Tensor)> = good_tensors()
        .into_iter()
        .map(|(n, t)| (format!("model.{n}"), t))
        .collect();
    t[4].1 = Tensor::zeros((1024, 3000), DType::F32, &Device::Cpu).unwrap();
    let bytes = safetensors::serialize(t, None).unwrap();
    let e = refusal(&bytes);
    assert!(
        e.contains("missing tensor conv0.weight") && e.contains("model.conv0.weight"),
        "{e}"
    );
}

#[test]
fn refuses_a_wrong_shape() {
    let mut t = good_tensors();
    t[4].1 = Tensor::zeros((1024, 3000), DType::F32, &Device::Cpu).unwrap();
    let e = refusal(&raw_file(t));
    assert!(
        e.contains("fc.weight has shape [1024, 3000], expected [1024, 3136]"),
        "{e}"
    );
}

#[test]
fn refuses_nan_values() {
    let mut t = good_tensors();
    let mut v = vec![0.1f32; 64];
    v[9] = f32::NAN;
    t[3].1 = Tensor::from_vec(v, 64, &Device::Cpu).unwrap();
    let e = refusal(&raw_file(t));
    assert!(
        e.contains("conv1.bias has 1 non-finite values") && e.contains("index 9"),
        "{e}"
    );
}

#[test]
fn refuses_files_that_are_not_safetensors() {
    assert!(refusal(b"PK\x03\x04 this is a zip").contains("not a safetensors file"));
    let good = cnn_to_bytes(&init_cnn(0, 10).unwrap(), &HashMap::new()).unwrap();
    assert!(refusal(&good[..good.len() - 100]).contains("not a safetensors file"));
    assert!(refusal(&[]).contains("not a safetensors file"));
}

#[test]
fn a_missing_file_is_named() {
    let e = load_cnn(std::path::Path::new("/no/such/model.safetensors"))
        .unwrap_err()
        .to_string();
    assert!(
        e.starts_with("/no/such/model.safetensors: cannot read"),
        "{e}"
    );
}

/// The original init (ALGORITHM.md §1: truncated normal, std 0.1, biases 0.1): every weight
/// within two deviations, biases exactly 0.1, and the spread of a normal truncated at ±2σ
/// (σ·0.880 = 0.088, the truncated normal's standard deviation) over the 3.2 M fc weights.
#[test]
fn original_init_is_a_truncated_normal_with_biases_of_0_1() {
    let cnn = init_cnn_with(3, 10, WeightInit::Original).unwrap();
    for (name, t) in cnn.named_tensors() {
        let v: Vec<f32> = t.flatten_all().unwrap().to_vec1().unwrap();
        if name.ends_with("bias") {
            assert!(v.iter().all(|&b| b == 0.1), "{name}");
        } else {
            assert!(v.iter().all(|w| w.abs() <= 0.2), "{name} within ±2σ");
        }
    }
    let w: Vec<f32> = cnn.fc_w.flatten_all().unwrap().to_vec1().unwrap();
    let n = w.len() as f64;
    let mean = w.iter().map(|&x| x as f64).sum::<f64>() / n;
    let sd = (w.iter().map(|&x| (x as f64 - mean).powi(2)).sum::<f64>() / n).sqrt();
    assert!(mean.abs() < 1e-3, "mean {mean}");
    assert!((sd - 0.0880).abs() < 1e-3, "std {sd}");
    // The same seed, the same weights; the uniform init is another draw.
    let again = init_cnn_with(3, 10, WeightInit::Original).unwrap();
    assert_eq!(
        again.fc_w.to_vec2::<f32>().unwrap(),
        cnn.fc_w.to_vec2::<f32>().unwrap()
    );
    let uniform = init_cnn(3, 10).unwrap();
    let u: Vec<f32> = uniform.conv0_b.to_vec1().unwrap();
    assert!(
        u.iter().all(|&b| b != 0.1 && b.abs() <= 0.2),
        "uniform ±1/√25"
    );
}

/// A network whose weights are finite but whose activations overflow (fc scaled by 1e30) is
/// refused when loaded, naming the file and the tap: before, it loaded, every run showed p =
/// 0 and rebuilt a reference set of infinite values each time, and `eval` reported 9.8%.
#[test]
fn refuses_a_network_whose_activations_overflow() {
    let tensors: Vec<(&str, Tensor)> = good_tensors()
        .into_iter()
        .map(|(n, t)| {
            let t = if n == "fc.weight" {
                t.affine(1e30, 0.0).unwrap()
            } else {
                t
            };
            (n, t)
        })
        .collect();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("scaled.safetensors");
    std::fs::write(&path, raw_file(tensors)).unwrap();
    let m = path.to_str().unwrap();
    for args in [
        vec!["--model", m, "eval"],
        vec!["cost", "--model", m, "--inputs", m, "--label", "3"],
    ] {
        let out = common::backwork(&args, Some(dir.path()));
        common::assert_one_line_failure(&args, &out, &["scaled.safetensors", "activations at fc"]);
    }
}
