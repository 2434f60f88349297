//! The study commands of issue 5: saliency equals candle's autograd of p(label), the worst
//! images are the lowest p(correct) of each label, and `backwork worst` / `backwork saliency`
//! write their files and refuse bad input with one line.

use std::path::Path;
use std::process::{Command, Output};

use backwork::backwork::frozen::FrozenCnn;
use backwork::backwork::saliency::top_k_mask;
use backwork::data::idx::{encode_images, encode_labels};
use backwork::data::{Dataset, PIXELS, Split};
use backwork::export::npy::{npy_bytes, read_npy};
use backwork::model::weights::shipped_cnn;
use backwork::model::worst::worst_images;
use candle_core::{D, Device, Tensor};

fn backwork(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_backwork"))
        .args(args)
        .output()
        .unwrap()
}

fn one_line_failure(args: &[&str], needles: &[&str]) {
    let out = backwork(args);
    assert!(!out.status.success(), "{args:?} should fail");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.trim_end().lines().count(), 1, "{args:?}: {err}");
    for n in needles {
        assert!(err.contains(n), "{args:?}: {err:?} lacks {n:?}");
    }
}

/// Random images in [0, 1) from a fixed LCG (no test depends on the rand crate's streams).
fn noise(n: usize, seed: u64) -> Vec<f32> {
    let mut s = seed;
    (0..n * PIXELS)
        .map(|_| {
            s = s
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (s >> 40) as f32 / (1u64 << 24) as f32
        })
        .collect()
}

#[test]
fn saliency_is_the_gradient_of_p_label_as_candle_computes_it() {
    let (cnn, _) = shipped_cnn().unwrap();
    let net = FrozenCnn::new(&cnn).unwrap();
    // Noise, and two real digits with a little noise: on a real digit's empty background,
    // the four values of a pooling window tie exactly, and candle's max routes the gradient
    // to every tied position where ours (like PyTorch's) picks one; the noise breaks ties.
    let mut x = noise(3, 7);
    let test = Dataset::mnist(Split::Test).unwrap();
    let jitter = noise(2, 11);
    for i in 0..2 {
        x.extend(
            test.image(i)
                .iter()
                .zip(&jitter[i * PIXELS..])
                .map(|(&p, &j)| p as f32 / 255.0 * 0.98 + 0.02 * j),
        );
    }
    // The digits (a 7 and a 2) get wrong labels: at their true label p is within 1e-6 of 1,
    // where f32 cannot resolve 1 − p in candle's composed softmax.
    let labels = [3usize, 8, 1, 1, 3];
    let ours = net.saliency(&x, &labels);

    let xt =
        candle_core::Var::from_tensor(&Tensor::from_slice(&x, (5, PIXELS), &Device::Cpu).unwrap())
            .unwrap();
    let logits = cnn.forward_taps(xt.as_tensor()).unwrap().logits;
    // candle_nn's fused softmax has no backward; the composed one does.
    let probs = candle_nn::ops::softmax(&logits, D::Minus1).unwrap();
    let onehot: Vec<f32> = (0..5)
        .flat_map(|i| (0..10).map(move |j| f32::from(j == labels[i])))
        .collect();
    let p_label = (probs * Tensor::from_slice(&onehot, (5, 10), &Device::Cpu).unwrap())
        .unwrap()
        .sum_all()
        .unwrap();
    let grads = p_label.backward().unwrap();
    let theirs: Vec<f32> = grads
        .get(xt.as_tensor())
        .unwrap()
        .flatten_all()
        .unwrap()
        .to_vec1()
        .unwrap();
    for i in 0..5 {
        let a = &ours[i * PIXELS..(i + 1) * PIXELS];
        let b = &theirs[i * PIXELS..(i + 1) * PIXELS];
        let scale = b.iter().fold(0f32, |m, v| m.max(v.abs())).max(1e-30);
        let worst = a
            .iter()
            .zip(b)
            .map(|(u, v)| (u - v).abs() / scale)
            .fold(0f32, f32::max);
        // 1e-4 of the largest entry, the engine tests' tolerance on gradients.
        assert!(worst < 1e-4, "image {i}: relative difference {worst}");
    }
    // The mask holds at most k pixels, all with a positive gradient.
    let mask = top_k_mask(&ours, 50);
    for i in 0..5 {
        let m = &mask[i * PIXELS..(i + 1) * PIXELS];
        assert!(m.iter().filter(|&&b| b).count() <= 50);
        assert!((0..PIXELS).all(|j| !m[j] || ours[i * PIXELS + j] > 0.0));
    }
}

#[test]
fn the_worst_images_are_the_lowest_p_correct_of_each_label() {
    let (cnn, _) = shipped_cnn().unwrap();
    let mut data = Dataset::mnist(Split::Test).unwrap();
    data.labels.truncate(1500);
    data.pixels.truncate(1500 * PIXELS);
    let worst = worst_images(&cnn, &data, 4, &mut |_, _| {}).unwrap();
    assert_eq!(worst.len(), 10);
    let x: Vec<f32> = data.pixels.iter().map(|&p| p as f32 / 255.0).collect();
    let probs = cnn.predict(&x).unwrap();
    for w in &worst {
        let l = w.label as usize;
        let mut all: Vec<(f32, usize)> = (0..data.len())
            .filter(|&i| data.labels[i] as usize == l)
            .map(|i| (probs[i][l], i))
            .collect();
        all.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
        let expect: Vec<usize> = all.iter().take(4).map(|&(_, i)| i).collect();
        let got: Vec<usize> = w.images.iter().map(|i| i.index).collect();
        assert_eq!(got, expect, "label {l}");
        for img in &w.images {
            assert_eq!(img.p_correct, probs[img.index][l]);
        }
    }
}

/// A dataset folder holding the first `n` test images as both splits.
fn small_data_dir(dir: &Path, n: usize) {
    let test = Dataset::mnist(Split::Test).unwrap();
    let px = &test.pixels[..n * PIXELS];
    let lb = &test.labels[..n];
    std::fs::create_dir_all(dir).unwrap();
    for split in ["train", "t10k"] {
        std::fs::write(
            dir.join(format!("{split}-images-idx3-ubyte")),
            encode_images(n, px),
        )
        .unwrap();
        std::fs::write(
            dir.join(format!("{split}-labels-idx1-ubyte")),
            encode_labels(lb),
        )
        .unwrap();
    }
}

#[test]
fn worst_writes_its_sheet_and_json_and_refuses_bad_input() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    small_data_dir(&data, 800);
    let out = tmp.path().join("worst");
    let (d, o) = (data.to_str().unwrap(), out.to_str().unwrap());
    let r = backwork(&["worst", "--data", d, "--k", "3", "--out", o]);
    assert!(r.status.success(), "{}", String::from_utf8_lossy(&r.stderr));
    assert!(out.join("sheet.png").is_file());
    let v: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("worst.json")).unwrap()).unwrap();
    let labels = v["labels"].as_array().unwrap();
    assert_eq!(labels.len(), 10);
    let test = Dataset::mnist(Split::Test).unwrap();
    for (l, entry) in labels.iter().enumerate() {
        assert_eq!(entry["label"], l);
        let imgs = entry["images"].as_array().unwrap();
        assert_eq!(imgs.len(), 3);
        let ps: Vec<f64> = imgs
            .iter()
            .map(|i| i["p_correct"].as_f64().unwrap())
            .collect();
        assert!(ps.windows(2).all(|w| w[0] <= w[1]), "worst first: {ps:?}");
        for i in imgs {
            let index = i["index"].as_u64().unwrap() as usize;
            assert!(index < 800);
            assert_eq!(test.labels[index] as usize, l);
        }
    }
    one_line_failure(
        &["worst", "--data", d, "--k", "3", "--out", o],
        &[o, "not empty"],
    );
    let o2 = tmp.path().join("w2");
    one_line_failure(
        &[
            "worst",
            "--data",
            d,
            "--k",
            "0",
            "--out",
            o2.to_str().unwrap(),
        ],
        &["--k"],
    );
}

#[test]
fn saliency_reads_a_run_folder_and_refuses_bad_ones() {
    let tmp = tempfile::tempdir().unwrap();
    let run = tmp.path().join("run");
    std::fs::create_dir(&run).unwrap();
    std::fs::write(
        run.join("images.npy"),
        npy_bytes(&noise(3, 1), &[3, 28, 28]),
    )
    .unwrap();
    let results = serde_json::json!({"images": [{"label": 2}, {"label": 2}, {"label": 9}]});
    std::fs::write(run.join("results.json"), results.to_string()).unwrap();
    let out = tmp.path().join("sal");
    let (r, o) = (run.to_str().unwrap(), out.to_str().unwrap());
    let res = backwork(&["saliency", "--from", r, "--top-k", "20", "--out", o]);
    assert!(
        res.status.success(),
        "{}",
        String::from_utf8_lossy(&res.stderr)
    );
    let (shape, s) = read_npy(&out.join("saliency.npy")).unwrap();
    assert_eq!(shape, vec![3, 28, 28]);
    assert!(s.iter().all(|v| v.is_finite()) && s.iter().any(|v| *v != 0.0));
    let (_, m) = read_npy(&out.join("mask.npy")).unwrap();
    for i in 0..3 {
        let on = m[i * PIXELS..(i + 1) * PIXELS]
            .iter()
            .filter(|&&v| v == 1.0)
            .count();
        assert!((1..=20).contains(&on), "image {i}: {on} pixels");
    }
    for f in [
        "saliency_label2_00.png",
        "saliency_label2_01.png",
        "saliency_label9_00.png",
        "saliency.json",
    ] {
        assert!(out.join(f).is_file(), "{f}");
    }

    // A folder without results.json, and one whose counts disagree.
    let bare = tmp.path().join("bare");
    std::fs::create_dir(&bare).unwrap();
    std::fs::write(bare.join("images.npy"), npy_bytes(&noise(1, 2), &[1, 784])).unwrap();
    let o3 = tmp.path().join("o3");
    one_line_failure(
        &[
            "saliency",
            "--from",
            bare.to_str().unwrap(),
            "--out",
            o3.to_str().unwrap(),
        ],
        &["results.json", "missing"],
    );
    std::fs::write(bare.join("results.json"), results.to_string()).unwrap();
    one_line_failure(
        &[
            "saliency",
            "--from",
            bare.to_str().unwrap(),
            "--out",
            o3.to_str().unwrap(),
        ],
        &["3 images", "has 1"],
    );
    // Wrong-shape images.
    std::fs::write(
        bare.join("images.npy"),
        npy_bytes(&[0.5; 3 * 100], &[3, 10, 10]),
    )
    .unwrap();
    one_line_failure(
        &[
            "saliency",
            "--from",
            bare.to_str().unwrap(),
            "--out",
            o3.to_str().unwrap(),
        ],
        &["images.npy", "not (N, 28, 28)"],
    );
}
