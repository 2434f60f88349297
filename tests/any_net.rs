//! backwork on networks other than the one of ALGORITHM.md §1 (issue 14: "the shipped network
//! and LeNet-5 … run backwork through the same core"): the cost and its gradient at any taps,
//! a run to the threshold on LeNet-5, its weight file with the architecture in the metadata,
//! and the command line end to end.
// Tests may unwrap, expect and panic: that is a test failing (Cargo.toml [lints]).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use backwork::backwork::cost::{GroupActs, group_cost};
use backwork::backwork::engine::Engine;
use backwork::backwork::frozen::{Forward, FrozenCnn};
use backwork::backwork::refs::LabelRefs;
use backwork::backwork::settings::{FcDistance, Settings, SoftmaxTerm};
use backwork::data::{Dataset, PIXELS, Split};
use backwork::meta::WeightInit;
use backwork::model::train::{TrainConfig, train_net};
use backwork::model::weights::{net_from_bytes, net_to_bytes};
use backwork::net::{Arch, Net, init::init_params};
use rand::{Rng, SeedableRng, rngs::StdRng};

mod common;

use common::subset;

fn fresh(arch: Arch, seed: u64) -> Net {
    let params = init_params(&arch, seed, WeightInit::Uniform).unwrap();
    Net::from_torch(arch, params).unwrap()
}

/// LeNet-5 trained for one epoch on the first 6,000 training images (about a second).
fn trained_lenet() -> Net {
    let train = Dataset::mnist(Split::Train).unwrap();
    let test = Dataset::mnist(Split::Test).unwrap();
    let cfg = TrainConfig {
        epochs: 1,
        limit: Some(6000),
        ..TrainConfig::default()
    };
    let out = train_net(
        fresh(Arch::lenet5(10), 7),
        &train,
        &test,
        &cfg,
        None,
        &AtomicBool::new(false),
        &mut |_| {},
    )
    .unwrap();
    out.net
}

/// ALGORITHM.md §3 written out plainly in f64 for any taps: the total cost of one group from
/// its activations at every tap (`taps[k]`: N×D_k) and its logits (N×K), each minimum taken
/// by brute force over the reference rows (or, for a tap whose columns the reference set
/// keeps, per neuron under `per-neuron`), the softmax term in its log form.
fn plain_cost(taps: &[Vec<f64>], logits: &[f64], refs: &LabelRefs, s: &Settings) -> f64 {
    let k_classes = logits.len() / (taps[0].len() / refs.dim(0));
    let n = logits.len() / k_classes;
    let r = refs.len();
    let mut total = 0.0;
    for (k, a) in taps.iter().enumerate() {
        let d = refs.dim(k);
        let b = &refs.taps[k];
        let per_neuron = s.fc_distance == FcDistance::PerNeuron && refs.layout.columns[k];
        let mut ref_dist = 0.0;
        for i in 0..n {
            let row = &a[i * d..(i + 1) * d];
            if per_neuron {
                let mut sum = 0.0;
                for (j, v) in row.iter().enumerate() {
                    let best = (0..r)
                        .map(|q| (v - b[q * d + j] as f64).powi(2))
                        .fold(f64::INFINITY, f64::min);
                    sum += best;
                }
                ref_dist += sum / d as f64;
            } else {
                let best = (0..r)
                    .map(|q| {
                        row.iter()
                            .enumerate()
                            .map(|(j, v)| (v - b[q * d + j] as f64).powi(2))
                            .sum::<f64>()
                            / d as f64
                    })
                    .fold(f64::INFINITY, f64::min);
                ref_dist += best;
            }
        }
        ref_dist /= n as f64;
        // Mean pairwise distance, diagonal included: (1/N²) Σ_{i,l} ‖a_i − a_l‖² / D.
        let mut sim_dist = 0.0;
        for i in 0..n {
            for l in 0..n {
                sim_dist += (0..d)
                    .map(|j| (a[i * d + j] - a[l * d + j]).powi(2))
                    .sum::<f64>()
                    / d as f64;
            }
        }
        sim_dist /= (n * n) as f64;
        let c = s.layer_weights[k] as f64;
        total += c * s.prev_coeff as f64 / ref_dist + c * s.sim_coeff as f64 / sim_dist;
    }
    let label = refs.label as usize;
    let mut miss = 0.0;
    for z in logits.chunks_exact(k_classes) {
        let m = z.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        let lse = m + z.iter().map(|v| (v - m).exp()).sum::<f64>().ln();
        miss += lse - z[label];
    }
    total + s.softmax_weight() as f64 * miss / n as f64
}

/// LeNet-5 has five taps (inputs, conv0, conv1, fc, fc1). On them the cost equals the plain
/// f64 implementation above, and its gradient at every tap and at the logits equals central
/// differences of it (f64, so exact to about 1e-6; the backward from the taps to the pixels
/// is the core's, checked against candle in tests/net_core.rs). A tap's weight of zero
/// removes exactly its terms.
#[test]
fn the_cost_on_lenet5_names_its_taps_and_matches_a_plain_implementation() {
    let net = FrozenCnn::from_net(fresh(Arch::lenet5(10), 3));
    let names: Vec<&str> = net.tap_names().iter().map(String::as_str).collect();
    assert_eq!(names, ["inputs", "conv0", "conv1", "fc", "fc1"]);
    let train = Dataset::mnist(Split::Train).unwrap();
    let refs = LabelRefs::build(&net, &subset(&train, 4, 40), 4, &AtomicBool::new(false)).unwrap();
    assert_eq!(refs.layout.dims, [784, 6 * 14 * 14, 16 * 5 * 5, 120, 84]);
    assert_eq!(refs.layout.columns, [false, false, false, true, true]);

    let mut s = Settings::default();
    assert!(s.fit_taps(5));
    assert_eq!(s.layer_weights, [1e-5, 1e-4, 1e-3, 1e-2, 1e-2, 10.0]);
    s.softmax_term = SoftmaxTerm::Log;
    let mut rng = StdRng::seed_from_u64(5);
    let n = 3;
    let x: Vec<f32> = (0..n * PIXELS)
        .map(|_| rng.random_range(0.0..1.0))
        .collect();
    let mut f = Forward::default();
    net.forward(&x, &mut f);
    let taps: Vec<Vec<f64>> = f
        .taps()
        .iter()
        .map(|t| t.iter().map(|v| *v as f64).collect())
        .collect();
    let logits: Vec<f64> = f.logits().iter().map(|v| *v as f64).collect();
    for fc in [FcDistance::PerNeuron, FcDistance::PerExample] {
        s.fc_distance = fc;
        let acts = GroupActs {
            n,
            taps: f.taps(),
            names: net.names(),
            probs: f.probs(),
            classes: net.classes(),
        };
        let gc = group_cost(&acts, &refs, &s);
        let plain = plain_cost(&taps, &logits, &refs, &s);
        let rel = (gc.terms.total - plain).abs() / plain.abs();
        assert!(rel < 1e-5, "{fc:?}: cost {} plain {plain}", gc.terms.total);
        // d cost / d tap at a few coordinates of every tap, and at the logits.
        let h = 1e-4;
        let fd = |k: Option<usize>, c: usize| {
            let at = |sign: f64| {
                let mut t = taps.clone();
                let mut z = logits.clone();
                match k {
                    Some(k) => t[k][c] += sign * h,
                    None => z[c] += sign * h,
                }
                plain_cost(&t, &z, &refs, &s)
            };
            (at(1.0) - at(-1.0)) / (2.0 * h)
        };
        for (k, g) in gc.grads.iter().enumerate() {
            for _ in 0..4 {
                let c = rng.random_range(0..g.len());
                let (num, ana) = (fd(Some(k), c), g[c] as f64);
                assert!(
                    (num - ana).abs() <= 1e-3 * num.abs() + 1e-9,
                    "{fc:?} tap {k} coordinate {c}: numeric {num}, analytic {ana}"
                );
            }
        }
        for c in 0..gc.g_logits.len() {
            let (num, ana) = (fd(None, c), gc.g_logits[c] as f64);
            assert!(
                (num - ana).abs() <= 1e-3 * num.abs() + 1e-7,
                "{fc:?} logit {c}: numeric {num}, analytic {ana}"
            );
        }
    }

    // Switching fc1's weight off removes its two terms from the total and nothing else.
    let acts = GroupActs {
        n,
        taps: f.taps(),
        names: net.names(),
        probs: f.probs(),
        classes: net.classes(),
    };
    let all = group_cost(&acts, &refs, &s).terms;
    let mut off = s.clone();
    off.layer_weights[4] = 0.0;
    let without = group_cost(&acts, &refs, &off).terms;
    let fc1 = all.taps[4].prev + all.taps[4].sim;
    assert!(fc1 > 0.0);
    assert!((all.total - fc1 - without.total).abs() <= 1e-9 * all.total.abs().max(1.0));
    let named: Vec<String> = all.named().into_iter().map(|(k, _)| k).collect();
    assert!(named.contains(&"fc1.sim_dist".to_string()), "{named:?}");
    assert_eq!(named.len(), 5 * 4 + 2);
}

/// A LeNet-5 trained in a second is fooled by the default settings fitted to its taps, and
/// every image records its nearest training image at the taps searched (the hidden linear
/// ones take their distance per neuron, so none there).
#[test]
fn lenet5_runs_backwork_to_the_threshold() {
    let net = FrozenCnn::from_net(trained_lenet());
    let train = Dataset::mnist(Split::Train).unwrap();
    let labels = [0u8, 4, 7];
    let refs: Vec<Arc<LabelRefs>> = labels
        .iter()
        .map(|&l| {
            Arc::new(
                LabelRefs::build(&net, &subset(&train, l, 300), l, &AtomicBool::new(false))
                    .unwrap(),
            )
        })
        .collect();
    let mut s = Settings {
        labels: labels.to_vec(),
        batch: 4,
        max_steps: Some(1500),
        seed: 2,
        ..Settings::default()
    };
    // The §1 network's five weights do not fit LeNet-5's six: refused, naming its taps.
    let e = Engine::new(net.clone(), &refs, s.clone())
        .err()
        .unwrap()
        .to_string();
    assert!(
        e.contains("inputs, conv0, conv1, fc, fc1") && e.contains("expected 6"),
        "{e}"
    );
    s.fit_taps(net.tap_names().len());
    let mut engine = Engine::new(net.clone(), &refs, s).unwrap();
    let mut last = None;
    while engine.end_reason().is_none() {
        last = Some(engine.step().unwrap());
    }
    let ev = last.unwrap();
    assert_eq!(
        engine.end_reason(),
        Some(&backwork::backwork::engine::EndReason::Threshold),
        "min p by label {:?}",
        engine.min_p_by_label()
    );
    assert_eq!(ev.terms.taps.len(), 5);
    assert!(ev.terms.named().iter().all(|(_, v)| v.is_finite()));
    for st in engine.states() {
        assert_eq!(st.nearest.len(), 5);
        assert!(st.nearest[..3].iter().all(Option::is_some));
        assert!(st.nearest[3..].iter().all(Option::is_none));
    }
    // The exported records name the taps searched.
    let images = backwork::export::run::export_images(engine.rows(), 0.999, None, |x, l| {
        net.p_label_as_png(x, l)
    });
    let keys: Vec<&String> = images[0].nearest_by_tap.keys().collect();
    assert_eq!(keys, ["conv0", "conv1", "inputs"]);
}

/// Any network's weight file carries its architecture and reads back as the same network;
/// the §1 network's file stays exactly the format it was; a bad description is refused with
/// the file and what is wrong named.
#[test]
fn weight_files_of_any_network_read_back_and_bad_descriptions_are_named() {
    let meta: HashMap<String, String> = [("dataset".to_string(), "test".to_string())].into();
    for arch in [Arch::lenet5(10), Arch::small_rgb(10), Arch::lenet5(11)] {
        let net = fresh(arch.clone(), 9);
        let bytes = net_to_bytes(&net, &meta).unwrap();
        let (back, info) = net_from_bytes("n.safetensors", &bytes).unwrap();
        assert_eq!(back.arch(), &arch);
        assert_eq!(back.params(), net.params());
        assert_eq!(info.metadata["dataset"], "test");
    }
    // The §1 network: no description in its file, which the §1 reader takes as before.
    let orig = fresh(Arch::original(10), 9);
    let bytes = net_to_bytes(&orig, &meta).unwrap();
    let (cnn, info) = backwork::model::weights::cnn_from_bytes("o.safetensors", &bytes).unwrap();
    assert!(!info.metadata.contains_key("arch"));
    assert_eq!(cnn.to_net().unwrap().params(), orig.params());

    // Damaged descriptions, each named.
    let lenet = fresh(Arch::lenet5(10), 9);
    let with_arch = |arch: &str| {
        let mut m = meta.clone();
        m.insert("arch".into(), arch.into());
        let params = lenet.arch().params().unwrap();
        let tensors: Vec<(String, candle_core::Tensor)> = params
            .iter()
            .zip(lenet.to_torch())
            .map(|(p, v)| {
                let t = candle_core::Tensor::from_vec(
                    v,
                    p.torch_shape.as_slice(),
                    &candle_core::Device::Cpu,
                );
                (p.name.clone(), t.unwrap())
            })
            .collect();
        let bytes = safetensors::serialize(tensors, Some(m)).unwrap();
        net_from_bytes("bad.safetensors", &bytes)
            .err()
            .unwrap()
            .to_string()
    };
    let e = with_arch("{not json");
    assert!(
        e.starts_with("bad.safetensors:") && e.contains("architecture"),
        "{e}"
    );
    // A description of another network than the tensors: the first misfit is named.
    let other = serde_json::to_string(&Arch::original(10)).unwrap();
    let e = with_arch(&other);
    assert!(e.contains("unexpected tensor fc1.bias, fc1.weight"), "{e}");
    let misfit = r#"{"input":{"c":1,"h":4,"w":4},"layers":[{"type":"conv","out":2,"kernel":9},{"type":"flatten"},{"type":"linear","out":10}]}"#;
    let e = with_arch(misfit);
    assert!(e.contains("layer 0"), "{e}");
    // A colour network loads, but the digits do not fit it: both shapes named.
    let e = backwork::model::fits_digits(&fresh(Arch::small_rgb(10), 1)).unwrap_err();
    assert!(e.contains("3×32×32") && e.contains("1×28×28"), "{e}");
}

/// The command line end to end: `train --arch lenet5` writes a file that `eval` and `run`
/// take, `--layer-weights` must have one number per tap plus the softmax's, and `--arch`
/// names what it cannot use.
#[test]
fn the_command_line_trains_and_fools_lenet5() {
    let dir = tempfile::tempdir().unwrap();
    let model = dir.path().join("lenet.safetensors");
    let m = model.to_str().unwrap();
    let cache = dir.path().join("cache");
    let ok = |args: &[&str]| common::backwork_ok(args, &cache);
    ok(&[
        "train", "--arch", "lenet5", "--limit", "3000", "--epochs", "1", "--out", m,
    ]);
    let eval = ok(&["eval", "--model", m, "--json"]);
    let report: serde_json::Value = serde_json::from_slice(&eval.stdout).unwrap();
    // One epoch over 6,000 images: about 0.9 (chance is 0.1).
    assert!(report["accuracy"].as_f64().unwrap() > 0.7, "{report}");
    let run_dir = dir.path().join("run");
    ok(&[
        "run",
        "--model",
        m,
        "--labels",
        "1,7",
        "--batch",
        "3",
        "--out",
        run_dir.to_str().unwrap(),
    ]);
    let results: serde_json::Value =
        serde_json::from_slice(&std::fs::read(run_dir.join("results.json")).unwrap()).unwrap();
    assert_eq!(
        results["settings"]["layer_weights"]
            .as_array()
            .unwrap()
            .len(),
        6
    );
    // Retraining takes it too: an 11th class on its last layer, its architecture kept.
    let retrained = dir.path().join("lenet11.safetensors");
    ok(&[
        "retrain",
        "--model",
        m,
        "--from",
        run_dir.to_str().unwrap(),
        "--mode",
        "extra-class",
        "--budget",
        "30",
        "--measure-batch",
        "1",
        "--out",
        retrained.to_str().unwrap(),
    ]);
    let (net11, info) = backwork::model::weights::load_net(&retrained).unwrap();
    assert_eq!(net11.arch(), &Arch::lenet5(11));
    assert!(info.metadata["architecture"].starts_with("lenet5"));
    let report: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.path().join("report.json")).unwrap()).unwrap();
    let weights = &report["config"]["measure"]["layer_weights"];
    assert_eq!(weights.as_array().unwrap().len(), 6, "{weights}");
    let bad = |args: &[&str], needles: &[&str]| {
        common::assert_one_line_failure(args, &common::backwork(args, None), needles);
    };
    bad(
        &[
            "run",
            "--model",
            m,
            "--layer-weights",
            "1,1,1,1,10",
            "--out",
            dir.path().join("x").to_str().unwrap(),
        ],
        &[
            "--layer-weights",
            "inputs, conv0, conv1, fc, fc1",
            "expected 6",
        ],
    );
    let out2 = dir.path().join("y.safetensors");
    bad(
        &["train", "--arch", "resnet", "--out", out2.to_str().unwrap()],
        &["--arch", "resnet"],
    );
    let rgb = dir.path().join("rgb.json");
    std::fs::write(&rgb, serde_json::to_string(&Arch::small_rgb(10)).unwrap()).unwrap();
    bad(
        &[
            "train",
            "--arch",
            rgb.to_str().unwrap(),
            "--out",
            out2.to_str().unwrap(),
        ],
        &["--arch", "3×32×32", "1×28×28"],
    );
    assert!(!out2.exists());
}
