//! PyTorch checkpoints written by `torch.save` (`scripts/pytorch_pt.py`): a state_dict of the
//! ALGORITHM.md §1 network under a user's own names loads by shape and computes what PyTorch
//! computes; checkpoint dictionaries, every float dtype and views into shared storages read
//! as PyTorch wrote them; what is not a state_dict of that network, and hostile or damaged
//! files, get a one-line error naming the file.
// Tests may unwrap, expect and panic: that is a test failing (Cargo.toml [lints]).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::io::Write;
use std::path::{Path, PathBuf};

use backwork::data::{Dataset, Split};
use backwork::model::eval::evaluate_net;
use backwork::model::torch::read_state_dict;
use backwork::model::weights::{META_BY_SHAPE, load_net};
use backwork::net::Acts;

fn file(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data/torch")
        .join(name)
}

/// What PyTorch measured (tests/data/torch/torch.json).
fn measured() -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(file("torch.json")).unwrap()).unwrap()
}

/// The two fixed images of the script: a ramp and a checker pattern.
fn fixed_images() -> Vec<f32> {
    let mut x = Vec::with_capacity(2 * 784);
    for i in 0..28 {
        for j in 0..28 {
            x.push(((i * 7 + j * 3) % 11) as f32 / 10.0);
        }
    }
    for i in 0..28 {
        for j in 0..28 {
            x.push(((i / 4 + j / 4) % 2) as f32);
        }
    }
    x
}

#[test]
fn a_users_state_dict_loads_by_shape_and_computes_what_pytorch_computes() {
    let (net, info) = load_net(&file("mnist-pruned-bf16.pt")).unwrap();
    assert_eq!(info.metadata["source"], "pytorch");
    let how = &info.metadata[META_BY_SHAPE];
    for pair in [
        "conv1.weight as conv0.weight",
        "conv2.bias as conv1.bias",
        "fc1.weight as fc.weight",
        "fc2.bias as softmax.bias",
    ] {
        assert!(how.contains(pair), "{how}");
    }
    let want = measured();
    // bfloat16 widens to float32 exactly on both sides; the logits differ only by the order
    // of f32 sums (PyTorch's are near 1 in size: 1e-4 is far above that rounding, far below
    // any difference a misread weight would make).
    let mut a = Acts::inference();
    net.forward(&fixed_images(), &mut a);
    let torch: Vec<f64> = want["pruned"]["logits"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|r| r.as_array().unwrap().iter().map(|v| v.as_f64().unwrap()))
        .collect();
    assert_eq!(a.logits().len(), torch.len());
    for (i, (&ours, &theirs)) in a.logits().iter().zip(&torch).enumerate() {
        assert!(
            (ours as f64 - theirs).abs() < 1e-4,
            "logit {i}: backwork {ours} vs PyTorch {theirs}"
        );
    }
    let ev = evaluate_net(&net, &Dataset::mnist(Split::Test).unwrap(), &mut |_, _| {});
    let correct = want["pruned"]["correct"].as_u64().unwrap() as usize;
    assert!(
        ev.correct.abs_diff(correct) <= 2,
        "backwork {} vs PyTorch {correct}",
        ev.correct
    );
}

/// The numbers of a JSON array.
fn numbers(v: &serde_json::Value) -> impl Iterator<Item = f64> + '_ {
    v.as_array().unwrap().iter().map(|x| x.as_f64().unwrap())
}

#[test]
fn every_float_dtype_and_shared_storage_reads_as_pytorch_wrote_it() {
    let tensors = read_state_dict(&std::fs::read(file("dtypes.pt")).unwrap()).unwrap();
    let want = measured();
    let want = want["dtypes"].as_object().unwrap();
    assert_eq!(tensors.len(), want.len());
    for t in &tensors {
        let w = &want[&t.name];
        let shape: Vec<usize> = numbers(&w["shape"]).map(|v| v as usize).collect();
        assert_eq!(t.shape, shape, "{}", t.name);
        let values: Vec<f32> = numbers(&w["values"]).map(|v| v as f32).collect();
        // Exact: f16 and bf16 widen exactly, f64 rounds to nearest as PyTorch's .float() does;
        // "head" and "tail" are views at offsets 0 and 6 into one storage of 10.
        assert_eq!(t.values, values, "{}", t.name);
    }
}

#[test]
fn a_checkpoint_gives_the_models_state_dict_not_the_optimizers() {
    let tensors = read_state_dict(&std::fs::read(file("checkpoint.pt")).unwrap()).unwrap();
    let mut names: Vec<&str> = tensors.iter().map(|t| t.name.as_str()).collect();
    names.sort_unstable();
    assert_eq!(
        names,
        ["conv.bias", "conv.weight", "head.bias", "head.weight"]
    );
    let plain = read_state_dict(&std::fs::read(file("tiny.pt")).unwrap()).unwrap();
    for t in &tensors {
        let p = plain.iter().find(|p| p.name == t.name).unwrap();
        assert_eq!(t.values, p.values, "{}", t.name);
    }
}

#[test]
fn what_is_not_a_state_dict_of_the_network_is_refused_in_one_line() {
    for (name, needles) in [
        (
            "tiny.pt",
            &[
                "not the network of ALGORITHM.md §1",
                "conv.weight [4, 1, 3, 3]",
                "ONNX",
            ][..],
        ),
        (
            "checkpoint.pt",
            &[
                "not the network of ALGORITHM.md §1",
                "head.weight [3, 2704]",
            ],
        ),
        (
            "whole-module.pt",
            &["pickled object (__main__.Tiny)", "state_dict()"],
        ),
        ("torchscript.pt", &["TorchScript", "state_dict()"]),
        ("legacy.pt", &["legacy format", "PyTorch 1.6"]),
        ("transposed.pt", &["w is not contiguous", "contiguous()"]),
        ("integer.pt", &["n holds I64 values"]),
        ("dtypes.pt", &["its 6 tensors", "bf16 [2]"]),
    ] {
        let path = file(name);
        let p = path.to_str().unwrap();
        let args = ["eval", "--model", p];
        let mut all = vec![p];
        all.extend_from_slice(needles);
        common::assert_one_line_failure(&args, &common::backwork(&args, None), &all);
    }
}

/// A zip as PyTorch lays one out, holding `pickle` as its data.pkl and `storages` as
/// data/0, data/1, ….
fn torch_zip(pickle: &[u8], storages: &[&[u8]]) -> Vec<u8> {
    let names: Vec<String> = (0..storages.len())
        .map(|i| format!("archive/data/{i}"))
        .collect();
    let mut entries = vec![("archive/data.pkl", pickle)];
    entries.extend(
        names
            .iter()
            .map(String::as_str)
            .zip(storages.iter().copied()),
    );
    zip_of(&entries)
}

/// A zip of stored (uncompressed) entries, in order.
fn zip_of(entries: &[(&str, &[u8])]) -> Vec<u8> {
    let mut out = std::io::Cursor::new(Vec::new());
    let mut zip = zip::ZipWriter::new(&mut out);
    let stored =
        zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Stored);
    for (name, bytes) in entries {
        zip.start_file(*name, stored).unwrap();
        zip.write_all(bytes).unwrap();
    }
    zip.finish().unwrap();
    out.into_inner()
}

/// Pickle opcodes, as Python's pickletools names them.
fn unicode(s: &str) -> Vec<u8> {
    let mut v = vec![b'X'];
    v.extend_from_slice(&(s.len() as u32).to_le_bytes());
    v.extend_from_slice(s.as_bytes());
    v
}

fn global(module: &str, name: &str) -> Vec<u8> {
    format!("c{module}\n{name}\n").into_bytes()
}

fn int(i: u32) -> Vec<u8> {
    let mut v = vec![b'J'];
    v.extend_from_slice(&i.to_le_bytes());
    v
}

/// The pickle of `{"w": tensor}` for a float32 tensor of `shape` and `stride` in storage
/// "0" of `numel` elements: what torch.save writes for one tensor.
fn one_tensor_pickle(shape: &[u32], stride: &[u32], numel: u32) -> Vec<u8> {
    one_tensor_pickle_at(shape, stride, numel, 0)
}

/// `one_tensor_pickle` with the tensor starting `offset` values into its storage (written as
/// pickle's LONG1, eight bytes, as Python writes a large int).
fn one_tensor_pickle_at(shape: &[u32], stride: &[u32], numel: u32, offset: i64) -> Vec<u8> {
    dict_pickle(&[("w", tensor_ops(shape, stride, numel, offset))])
}

/// The pickle of a dictionary of `entries` (keys in order, repeats kept), as torch.save
/// writes one (protocol 2, SETITEM by SETITEM).
fn dict_pickle(entries: &[(&str, Vec<u8>)]) -> Vec<u8> {
    let mut p = vec![0x80, 2, b'}'];
    for (key, value) in entries {
        p.extend(unicode(key));
        p.extend_from_slice(value);
        p.push(b's');
    }
    p.push(b'.');
    p
}

/// The opcodes that rebuild one float32 tensor of `shape` and `stride`, `offset` values into
/// storage "0" of `numel` values.
fn tensor_ops(shape: &[u32], stride: &[u32], numel: u32, offset: i64) -> Vec<u8> {
    let mut p = global("torch._utils", "_rebuild_tensor_v2");
    p.push(b'(');
    p.push(b'(');
    p.extend(unicode("storage"));
    p.extend(global("torch", "FloatStorage"));
    p.extend(unicode("0"));
    p.extend(unicode("cpu"));
    p.extend(int(numel));
    p.push(b't');
    p.push(b'Q');
    p.extend_from_slice(&[0x8a, 8]);
    p.extend_from_slice(&offset.to_le_bytes());
    p.push(b'(');
    for &d in shape {
        p.extend(int(d));
    }
    p.push(b't');
    p.push(b'(');
    for &d in stride {
        p.extend(int(d));
    }
    p.push(b't');
    p.push(0x89);
    p.extend(global("collections", "OrderedDict"));
    p.push(b')');
    p.push(b'R');
    p.push(b't');
    p.push(b'R');
    p
}

#[test]
fn a_hand_built_pickle_reads_like_torchs_so_the_hostile_ones_below_test_the_reader() {
    let values: Vec<u8> = [1.0f32, 2.0, 3.0, 4.0, 5.0, 6.0]
        .iter()
        .flat_map(|v| v.to_le_bytes())
        .collect();
    let t = read_state_dict(&torch_zip(
        &one_tensor_pickle(&[2, 3], &[3, 1], 6),
        &[&values],
    ))
    .unwrap();
    assert_eq!(t.len(), 1);
    assert_eq!(
        (t[0].name.as_str(), t[0].shape.as_slice()),
        ("w", &[2, 3][..])
    );
    assert_eq!(t[0].values, [1.0, 2.0, 3.0, 4.0, 5.0, 6.0]);
}

#[test]
fn hostile_and_damaged_files_get_an_error_not_a_crash() {
    let refused = |bytes: &[u8], needle: &str| {
        let e = read_state_dict(bytes).unwrap_err();
        assert!(e.contains(needle), "{e}");
    };
    // A tensor claiming far more values than its storage holds: refused before allocating.
    let huge = one_tensor_pickle(&[1 << 30, 1 << 30], &[1 << 30, 1], 6);
    refused(&torch_zip(&huge, &[&[0u8; 24]]), "more than the file holds");
    // One that fits the file but not its entry.
    refused(
        &torch_zip(&one_tensor_pickle(&[2, 3], &[3, 1], 6), &[&[0u8; 20]]),
        "holds 20 bytes where its pickle declares 6 values of F32",
    );
    // Exponential growth of a large string through the memo (each copy is 64 KB): refused on
    // the bytes it would hold, before it holds them.
    let mut strings = vec![0x80, 2];
    strings.extend(unicode(&"A".repeat(1 << 16)));
    strings.extend_from_slice(&[b'q', 0]);
    for _ in 0..15 {
        strings.extend_from_slice(&[b'h', 0, b'h', 0, 0x86, b'q', 0]);
    }
    strings.push(b'.');
    let t = std::time::Instant::now();
    refused(&torch_zip(&strings, &[]), "not a state_dict");
    assert!(t.elapsed().as_secs() < 5, "refused in {:?}", t.elapsed());
    // Fewer stride entries than dimensions: candle's pickle code would index past them.
    let short = one_tensor_pickle(&[2, 3], &[3], 6);
    assert!(read_state_dict(&torch_zip(&short, &[&[0u8; 24]])).is_err());
    // A view one value into its storage reads from there; an offset of 2^62 floats (2^64
    // bytes, which wraps to byte 0 in candle's arithmetic) or a negative one is refused.
    let six: Vec<u8> = (1..=6).flat_map(|v| (v as f32).to_le_bytes()).collect();
    let at = |offset| torch_zip(&one_tensor_pickle_at(&[5], &[1], 6, offset), &[&six]);
    assert_eq!(
        read_state_dict(&at(1)).unwrap()[0].values,
        [2.0, 3.0, 4.0, 5.0, 6.0]
    );
    refused(
        &at(1 << 62),
        "impossible place in its storage (offset 4611686018427387904)",
    );
    refused(&at(-1), "impossible place in its storage (offset -1)");
    refused(&at(2), "holds 24 bytes, the tensor needs 28");
    // A storage that is not there.
    refused(
        &torch_zip(&one_tensor_pickle(&[2], &[1], 2), &[]),
        "w: its storage archive/data/0: it is missing",
    );
    // Exponential growth through the memo: a list fetched twice into a tuple, stored, forty
    // times over (2^40 objects if nothing stopped it).
    let mut bomb = vec![0x80, 2, b']', b'q', 0];
    for _ in 0..40 {
        bomb.extend_from_slice(&[b'h', 0, b'h', 0, 0x86, b'q', 0]);
    }
    bomb.push(b'.');
    refused(&torch_zip(&bomb, &[]), "not a state_dict");
    // Nesting a million deep (the stack of a recursive walk or drop would overflow).
    let mut deep = vec![0x80, 2, b')'];
    deep.extend(std::iter::repeat_n(0x85, 1_000_000));
    deep.push(b'.');
    refused(&torch_zip(&deep, &[]), "nests them more than");
    // Truncated anywhere: an error, never a panic.
    let whole = std::fs::read(file("tiny.pt")).unwrap();
    for cut in [
        0,
        4,
        30,
        200,
        whole.len() / 2,
        whole.len() - 30,
        whole.len() - 1,
    ] {
        assert!(read_state_dict(&whole[..cut]).is_err(), "cut at {cut}");
    }
    // A later pickle protocol than torch.save's (pickle_protocol=4): said, with the way out.
    refused(&torch_zip(b"\x80\x04\x95", &[]), "protocol 4");
    // A pickle that is not a state_dict's at all.
    refused(&torch_zip(b"\x80\x02K\x07.", &[]), "holds no state_dict");
    refused(&torch_zip(b"\xff", &[]), "pickle");
}

/// `one_tensor_pickle`'s zip with PyTorch's byteorder entry saying `order`.
fn with_byte_order(pickle: &[u8], storage: &[u8], order: &str) -> Vec<u8> {
    zip_of(&[
        ("archive/data.pkl", pickle),
        ("archive/byteorder", order.as_bytes()),
        ("archive/data/0", storage),
    ])
}

#[test]
fn big_endian_storages_are_read_as_big_endian_and_a_strange_byte_order_is_refused() {
    // torch.save on a big-endian machine (s390x) writes "big" and its values so; torch.load
    // reads them anywhere (found by a hostile test: they loaded with swapped bytes, 10.10%).
    let values = [1.5f32, -2.0, 1e-3];
    let big: Vec<u8> = values.iter().flat_map(|v| v.to_be_bytes()).collect();
    let little: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
    let pickle = one_tensor_pickle(&[3], &[1], 3);
    let read = |order: &str, bytes: &[u8]| {
        read_state_dict(&with_byte_order(&pickle, bytes, order)).map(|t| t[0].values.clone())
    };
    assert_eq!(read("big", &big).unwrap(), values);
    assert_eq!(read("little", &little).unwrap(), values);
    let e = read("middle", &little).unwrap_err();
    assert!(e.contains("byteorder entry says \"middle\""), "{e}");
}

#[test]
fn a_checkpoint_with_a_long_list_beside_the_weights_loads() {
    // {"w": tensor, "losses": 20,000 floats}: a training log kept in the checkpoint (the first
    // limits refused 7,000, summing the stack's size after every opcode).
    let values: Vec<u8> = [1.0f32, 2.0].iter().flat_map(|v| v.to_le_bytes()).collect();
    let mut p = one_tensor_pickle(&[2], &[1], 2);
    p.pop();
    p.extend(unicode("losses"));
    p.extend_from_slice(b"](");
    for i in 0..20_000u32 {
        p.push(b'G');
        p.extend_from_slice(&(f64::from(i) / 7.0).to_be_bytes());
    }
    p.extend_from_slice(b"es.");
    let t = read_state_dict(&torch_zip(&p, &[&values])).unwrap();
    assert_eq!((t.len(), t[0].values.as_slice()), (1, &[1.0, 2.0][..]));
}

#[test]
fn the_app_s_loader_and_every_command_take_a_pt_file() {
    // `run` end to end on the PyTorch file: two labels, a few steps, results.json written.
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let model = file("mnist-pruned-bf16.pt");
    let args = [
        "run",
        "--model",
        model.to_str().unwrap(),
        "--labels",
        "3,7",
        "--max-steps",
        "40",
        "--out",
        out.to_str().unwrap(),
    ];
    common::backwork_ok(&args, &dir.path().join("cache"));
    let results: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("results.json")).unwrap()).unwrap();
    assert_eq!(results["model"]["name"], "mnist-pruned-bf16.pt");
    // A file named .pt that is no zip: said to be no PyTorch file.
    let fake = dir.path().join("fake.pt");
    std::fs::write(&fake, b"not a zip at all").unwrap();
    let f = fake.to_str().unwrap();
    let args = ["eval", "--model", f];
    common::assert_one_line_failure(
        &args,
        &common::backwork(&args, None),
        &[f, "not a PyTorch file: torch.save writes a zip"],
    );
    let eval = common::backwork_ok(
        &["eval", "--model", model.to_str().unwrap()],
        &dir.path().join("cache"),
    );
    let text = String::from_utf8_lossy(&eval.stdout);
    assert!(
        text.contains("weights:  read by shape: conv1.weight as conv0.weight"),
        "{text}"
    );
}

#[test]
fn a_normalisation_makes_the_network_compute_what_pytorch_does_on_normalised_images() {
    use backwork::meta::InputNormSpec;
    use backwork::model::weights::{net_from_bytes, net_to_bytes, set_input_norm};
    // PyTorch's count of this state_dict on (x − 0.1307) / 0.3081, torchvision's MNIST
    // Normalize: `python3 scripts/pytorch_normalized.py --count
    // tests/data/torch/mnist-pruned-bf16.pt` prints 9728 (and 9757 on the plain pixels).
    let test = Dataset::mnist(Split::Test).unwrap();
    let (plain, file_info) = load_net(&file("mnist-pruned-bf16.pt")).unwrap();
    let (mut net, mut info) = (plain.clone(), file_info.clone());
    let spec = InputNormSpec::parse("0.1307", "0.3081").unwrap();
    set_input_norm(&mut net, &mut info, Some(&spec)).unwrap();
    let ev = evaluate_net(&net, &test, &mut |_, _| {});
    assert!(ev.correct.abs_diff(9728) <= 2, "backwork {}", ev.correct);
    // Another function of the same weights: named, and hashed apart from the file.
    assert_eq!(
        info.name,
        format!("{} (inputs (x − 0.1307) / 0.3081)", file_info.name)
    );
    assert_ne!(info.sha256, file_info.sha256);
    assert_eq!(info.metadata["file_sha256"], file_info.sha256);
    let logits = |n: &backwork::net::Net| {
        let mut a = Acts::inference();
        n.forward(&fixed_images(), &mut a);
        a.logits().to_vec()
    };
    // Saved, the file holds its normalisation, and reads back computing the same.
    let bytes = net_to_bytes(&net, &info.metadata).unwrap();
    let (back, back_info) = net_from_bytes("saved", &bytes).unwrap();
    assert_eq!(back_info.input_norm().unwrap(), Some(spec.clone()));
    assert!(!back_info.metadata.contains_key("file_sha256"));
    assert_eq!(logits(&back), logits(&net));
    assert_ne!(logits(&net), logits(&plain));
    // Retraining with an extra class keeps the inputs as they were.
    let wider = backwork::model::weights::net_with_extra_class(&net, 10).unwrap();
    assert_eq!(wider.input_norm(), net.input_norm());
    // Taken off again: the plain network.
    set_input_norm(&mut net, &mut info, None).unwrap();
    assert_eq!(logits(&net), logits(&plain));
    assert_eq!(
        (&info.name, &info.sha256),
        (&file_info.name, &file_info.sha256)
    );
    // One value per channel, or one for all: three for a grey network is refused.
    let three = InputNormSpec::parse("0.5,0.5,0.5", "0.2,0.2,0.2").unwrap();
    let e = set_input_norm(&mut net, &mut info, Some(&three)).unwrap_err();
    assert!(
        e.contains("3 mean values for a network of 1 input channel"),
        "{e}"
    );
}

#[test]
fn the_command_line_takes_a_normalisation_and_refuses_bad_ones_in_one_line() {
    let pt = file("mnist-pruned-bf16.pt");
    let pt = pt.to_str().unwrap();
    let eval = |extra: &[&str]| {
        let mut args = vec![
            "eval",
            "--model",
            pt,
            "--input-mean",
            "0.1307",
            "--input-std",
            "0.3081",
        ];
        args.extend_from_slice(extra);
        common::backwork(&args, None)
    };
    let out = eval(&["--json"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    // 9728: PyTorch's count (the test above).
    let correct = report["correct"].as_u64().unwrap();
    assert!(correct.abs_diff(9728) <= 2, "{correct}");
    let out = eval(&[]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("inputs:   normalised, (x − 0.1307) / 0.3081"),
        "{text}"
    );
    // A fresh network trained with them records them: every later use applies them.
    let dir = tempfile::tempdir().unwrap();
    let saved = dir.path().join("n.safetensors");
    let saved = saved.to_str().unwrap();
    let args = [
        "train",
        "--epochs",
        "1",
        "--limit",
        "128",
        "--input-mean",
        "0.5",
        "--input-std",
        "0.25",
        "--out",
        saved,
    ];
    let out = common::backwork(&args, None);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (net, info) = load_net(Path::new(saved)).unwrap();
    assert_eq!(
        (
            info.metadata["input_mean"].as_str(),
            info.metadata["input_std"].as_str()
        ),
        ("0.5", "0.25")
    );
    assert_eq!(net.input_norm().unwrap().std, [0.25]);
    for (args, needles) in [
        (
            &["--input-mean", "0.1307"][..],
            &["--input-mean", "--input-std"][..],
        ),
        (&["--input-std", "0.3"], &["--input-std", "--input-mean"]),
        (
            &["--input-mean", "0.1", "--input-std", "0"],
            &["std 0 is not positive"],
        ),
        (
            &["--input-mean", "x", "--input-std", "1"],
            &["mean \"x\" is not a finite number"],
        ),
        (
            &["--input-mean", "0,0", "--input-std", "1"],
            &["2 mean values", "1 input channel"],
        ),
    ] {
        let mut all = vec!["eval", "--model", pt];
        all.extend_from_slice(args);
        common::assert_one_line_failure(&all, &common::backwork(&all, None), needles);
    }
}

#[test]
fn files_a_hostile_round_found_read_wrongly_are_read_as_pytorch_reads_them_or_refused() {
    // Written by `python3 scripts/pytorch_pt.py --out tests/data/torch --loader-cases`; each
    // was refused or misread before (hostile round of 2026-12-05).
    let read = |name: &str| read_state_dict(&std::fs::read(file(name)).unwrap());
    let names = |t: &[backwork::model::torch::TorchTensor]| -> Vec<String> {
        t.iter().map(|t| t.name.clone()).collect()
    };
    // A 21-character stem (the zip crate guessed the archive's start wrongly: refused).
    let t = read("stem-of-21-characters.pt").unwrap();
    assert_eq!(t[0].values, [0.0, 1.0, 2.0, 3.0, 4.0, 5.0]);
    // A checkpoint with tensors of its own beside the state_dict (refused: "epoch holds I64").
    assert_eq!(names(&read("checkpoint-epoch-tensor.pt").unwrap()), ["w"]);
    // The state_dict one level further down (refused: "holds no tensors").
    assert_eq!(names(&read("checkpoint-nested.pt").unwrap()), ["w"]);
    // Eight views of one flat storage (refused: "repeat more storage than a state_dict").
    let t = read("flat-views.pt").unwrap();
    assert_eq!(t.len(), 8);
    for t in &t {
        let i: usize = t.name[1..].parse().unwrap();
        let want: Vec<f32> = (i * 1000..(i + 1) * 1000).map(|v| v as f32 / 8.0).collect();
        assert_eq!(t.values, want, "{}", t.name);
    }
    let refused = |bytes: &[u8], needle: &str| {
        let e = read_state_dict(bytes).unwrap_err();
        assert!(e.contains(needle), "{e}");
    };
    let six: Vec<u8> = (1..=6).flat_map(|v| (v as f32).to_le_bytes()).collect();
    // A storage entry of another size than its pickle declares (10 values, 24 bytes): PyTorch
    // refuses it; backwork read it (a HalfStorage holding float32 bytes read as garbage).
    refused(
        &torch_zip(&one_tensor_pickle(&[6], &[1], 10), &[&six]),
        "holds 24 bytes where its pickle declares 10 values of F32",
    );
    // One key set twice: a Python dictionary keeps one value; backwork kept both.
    let w = || tensor_ops(&[6], &[1], 6, 0);
    refused(
        &torch_zip(&dict_pickle(&[("w", w()), ("w", w())]), &[&six]),
        "sets \"w\" twice",
    );
    // One state_dict shared by two keys through the memo, as torch.save writes
    // {"ema": sd, "model": sd}: read.
    let sd = |p: &mut Vec<u8>| {
        p.extend_from_slice(&[b'}', b'q', 0, b'(']);
        p.extend(unicode("w"));
        p.extend(w());
        p.push(b'u');
    };
    let mut shared = vec![0x80, 2, b'}'];
    shared.extend(unicode("ema"));
    sd(&mut shared);
    shared.push(b's');
    shared.extend(unicode("model"));
    shared.extend_from_slice(&[b'h', 0, b's', b'.']);
    let t = read_state_dict(&torch_zip(&shared, &[&six])).unwrap();
    assert_eq!(t[0].values, [1.0, 2.0, 3.0, 4.0, 5.0, 6.0]);
    // A dictionary filled only after being fetched from the memo: Python fills the one
    // dictionary both keys hold; candle's machine filled a copy (backwork read the empty
    // "state_dict" as zeros while PyTorch read the weights, or the other way round).
    let mut changed = vec![0x80, 2, b'}'];
    changed.extend(unicode("state_dict"));
    changed.extend_from_slice(&[b'}', b'q', 0, b's']);
    changed.extend(unicode("junk"));
    changed.extend_from_slice(&[b'h', 0, b'(']);
    changed.extend(unicode("w"));
    changed.extend(w());
    changed.extend_from_slice(b"us.");
    refused(
        &torch_zip(&changed, &[&six]),
        "changes an object after fetching it from its memo",
    );
    // Two zip entries of one name: PyTorch reads the first, backwork read the last.
    let mut twice = torch_zip(&one_tensor_pickle(&[6], &[1], 6), &[&six, &six]);
    let (from, to) = (b"archive/data/1", b"archive/data/0");
    for i in 0..twice.len() - from.len() {
        if &twice[i..i + from.len()] == from {
            twice[i..i + to.len()].copy_from_slice(to);
        }
    }
    refused(&twice, "two entries under one name");
}
