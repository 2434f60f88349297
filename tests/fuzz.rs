//! Property tests of every parser of outside bytes (issue 12): IDX (raw and gzip), `.npy`,
//! safetensors weights, the reference-cache file, `results.json` and the stored app settings.
//! Each gets random bytes and mutations of a valid input and must return `Ok` or a clean
//! error: never panic, and never make one allocation larger than a bound (a counting
//! allocator below measures it), whatever sizes the bytes declare.
//!
//! Cases per parser: 2,000 by default (CI); `BACKWORK_FUZZ_CASES=1000000` runs a million
//! (README, "Reliability", records such a run).
// Tests may unwrap, expect and panic: that is a test failing (Cargo.toml [lints]).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::sync::OnceLock;
use std::sync::atomic::AtomicBool;

use backwork::backwork::refs::LabelRefs;
use backwork::data::{Dataset, PIXELS, idx};
use backwork::export::npy::{npy_bytes, parse_npy};
use backwork::export::run::parse_run_labels;
use backwork::model::weights::{cnn_from_bytes, cnn_to_bytes, init_cnn};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};

/// Counts the largest single allocation of the current thread.
struct Counting;

thread_local! {
    static LARGEST: Cell<usize> = const { Cell::new(0) };
}

// SAFETY: every call is passed to the system allocator unchanged; only a size is recorded.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let _ = LARGEST.try_with(|c| c.set(c.get().max(layout.size())));
        // SAFETY: the caller's layout, passed through.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: a pointer this allocator (the system's) returned, with its layout.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let _ = LARGEST.try_with(|c| c.set(c.get().max(new_size)));
        // SAFETY: as for dealloc; the new size is the caller's.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

/// No parser may allocate more than this for inputs of at most a few hundred KB: 64 MB.
const ALLOC_BOUND: usize = 64 << 20;

fn cases() -> u32 {
    std::env::var("BACKWORK_FUZZ_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2_000)
}

/// Runs `check` on `cases()` inputs from `strategy`; fails on a panic (proptest reports it
/// with the shrunk input) or an allocation over the bound.
fn fuzz<S: Strategy>(strategy: S, check: impl Fn(S::Value))
where
    S::Value: std::fmt::Debug,
{
    let mut runner = TestRunner::new(Config {
        cases: cases(),
        failure_persistence: None,
        ..Config::default()
    });
    runner
        .run(&strategy, |input| {
            LARGEST.with(|c| c.set(0));
            check(input);
            let largest = LARGEST.with(Cell::get);
            prop_assert!(largest <= ALLOC_BOUND, "allocated {largest} bytes at once");
            Ok(())
        })
        .unwrap();
}

/// Random bytes, or `valid` with a few bytes overwritten, a few inserted, and a cut.
fn mutated(valid: Vec<u8>) -> impl Strategy<Value = Vec<u8>> {
    let len = valid.len();
    let edits = prop::collection::vec((0..len.max(1), any::<u8>(), 0u8..3), 0..6);
    let mutation = (edits, 0..=len).prop_map(move |(edits, cut)| {
        let mut b = valid.clone();
        for (at, byte, kind) in edits {
            let at = at.min(b.len());
            match kind {
                0 if at < b.len() => b[at] = byte,
                1 => b.insert(at, byte),
                _ if at < b.len() => {
                    b.remove(at);
                }
                _ => {}
            }
        }
        if cut < b.len() && cut % 7 == 0 {
            b.truncate(cut);
        }
        b
    });
    prop_oneof![prop::collection::vec(any::<u8>(), 0..512), mutation]
}

/// A small valid dataset: 12 images, labels 0..=2.
fn tiny_dataset() -> &'static Dataset {
    static D: OnceLock<Dataset> = OnceLock::new();
    D.get_or_init(|| {
        let n = 12;
        let pixels: Vec<u8> = (0..n * PIXELS).map(|i| (i * 37 % 256) as u8).collect();
        let labels: Vec<u8> = (0..n).map(|i| (i % 3) as u8).collect();
        Dataset::from_idx_bytes(
            "tiny",
            "i",
            idx::encode_images(n, &pixels),
            "l",
            idx::encode_labels(&labels),
        )
        .unwrap()
    })
}

#[test]
fn idx_images_and_labels() {
    let pixels: Vec<u8> = (0..3 * PIXELS).map(|i| i as u8).collect();
    let images = idx::encode_images(3, &pixels);
    fuzz(mutated(images), |b| {
        let _ = idx::parse_images("f", &b);
    });
    fuzz(mutated(idx::encode_labels(&[1, 2, 3, 9])), |b| {
        let _ = idx::parse_labels("f", &b);
    });
}

#[test]
fn idx_gzip() {
    use std::io::Write;
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    enc.write_all(&idx::encode_labels(&[1, 2, 3, 9, 0, 0]))
        .unwrap();
    let gz = enc.finish().unwrap();
    fuzz(mutated(gz), |b| {
        if let Ok(raw) = idx::maybe_gunzip("f.gz", b) {
            let _ = idx::parse_labels("f.gz", &raw);
        }
    });
}

#[test]
fn npy() {
    let valid = npy_bytes(&[0.5; 2 * PIXELS], &[2, 28, 28]);
    fuzz(mutated(valid), |b| {
        let _ = parse_npy("f.npy", &b);
    });
    // Headers declaring any shape at all.
    let shapes = prop::collection::vec(any::<u64>(), 0..5);
    fuzz(shapes, |shape| {
        let dims: Vec<String> = shape.iter().map(u64::to_string).collect();
        let header = format!(
            "{{'descr': '<f4', 'fortran_order': False, 'shape': ({},), }}\n",
            dims.join(", ")
        );
        let mut b = b"\x93NUMPY\x01\x00".to_vec();
        b.extend_from_slice(&(header.len() as u16).to_le_bytes());
        b.extend_from_slice(header.as_bytes());
        b.extend_from_slice(&[0; 64]);
        let _ = parse_npy("f.npy", &b);
    });
}

#[test]
fn safetensors_weights() {
    // A valid file is 13 MB; mutations go to its header (where sizes and offsets are), and
    // the body is kept.
    let valid = cnn_to_bytes(&init_cnn(0, 10).unwrap(), &Default::default()).unwrap();
    let header_len = 8 + u64::from_le_bytes(valid[..8].try_into().unwrap()) as usize;
    let header = valid[..header_len].to_vec();
    let body = valid[header_len..].to_vec();
    let strategy = mutated(header);
    let mut runner = TestRunner::new(Config {
        cases: cases().min(20_000),
        failure_persistence: None,
        ..Config::default()
    });
    runner
        .run(&strategy, |h| {
            let mut b = h;
            b.extend_from_slice(&body);
            let _ = cnn_from_bytes("f.safetensors", &b);
            Ok(())
        })
        .unwrap();
    fuzz(prop::collection::vec(any::<u8>(), 0..1024), |b| {
        let _ = cnn_from_bytes("f.safetensors", &b);
        let _ = backwork::model::weights::net_from_bytes("f.safetensors", &b);
    });
}

/// PyTorch files: the pickle of a real state_dict (tests/data/torch/tiny.pt), mutated and zipped
/// again with its storages, gives an error or tensors, never a panic or a huge allocation.
#[test]
fn pytorch_state_dict() {
    use std::io::{Read, Write};
    let real = std::fs::read(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/torch/tiny.pt"),
    )
    .unwrap();
    let mut zip = zip::ZipArchive::new(std::io::Cursor::new(&real[..])).unwrap();
    let mut entries: Vec<(String, Vec<u8>)> = Vec::new();
    for i in 0..zip.len() {
        let mut f = zip.by_index(i).unwrap();
        let mut b = Vec::new();
        f.read_to_end(&mut b).unwrap();
        entries.push((f.name().unwrap().into_owned(), b));
    }
    let pickle = entries
        .iter()
        .find(|(n, _)| n.ends_with("data.pkl"))
        .unwrap()
        .1
        .clone();
    let rezip = |pkl: &[u8]| {
        let mut out = std::io::Cursor::new(Vec::new());
        let mut z = zip::ZipWriter::new(&mut out);
        let stored = zip::write::SimpleFileOptions::default()
            .compression_method(zip::CompressionMethod::Stored);
        for (name, bytes) in &entries {
            z.start_file(name.as_str(), stored).unwrap();
            z.write_all(if name.ends_with("data.pkl") {
                pkl
            } else {
                bytes
            })
            .unwrap();
        }
        z.finish().unwrap();
        out.into_inner()
    };
    assert_eq!(
        backwork::model::torch::read_state_dict(&rezip(&pickle))
            .unwrap()
            .len(),
        4,
        "the unmutated pickle reads"
    );
    fuzz(mutated(pickle), |p| {
        let _ = backwork::model::torch::read_state_dict(&rezip(&p));
    });
    fuzz(mutated(real[..2048.min(real.len())].to_vec()), |b| {
        let _ = backwork::model::torch::read_state_dict(&b);
    });
}

/// A LeNet-5 file, whose header carries its architecture as JSON: mutated headers (the
/// description, shapes and offsets) give an error, never a panic or a huge allocation.
#[test]
fn weight_file_with_an_architecture() {
    use backwork::net::{Arch, Net, init::init_params};
    let arch = Arch::lenet5(10);
    let net = Net::from_torch(
        arch.clone(),
        init_params(&arch, 0, backwork::meta::WeightInit::Uniform).unwrap(),
    )
    .unwrap();
    let valid = backwork::model::weights::net_to_bytes(&net, &Default::default()).unwrap();
    let header_len = 8 + u64::from_le_bytes(valid[..8].try_into().unwrap()) as usize;
    let body = valid[header_len..].to_vec();
    let mut runner = TestRunner::new(Config {
        cases: cases().min(20_000),
        failure_persistence: None,
        ..Config::default()
    });
    runner
        .run(&mutated(valid[..header_len].to_vec()), |h| {
            let mut b = h;
            b.extend_from_slice(&body);
            let _ = backwork::model::weights::net_from_bytes("f.safetensors", &b);
            Ok(())
        })
        .unwrap();
}

#[test]
fn reference_cache_file() {
    let net = backwork::backwork::frozen::FrozenCnn::new(&init_cnn(1, 10).unwrap()).unwrap();
    let data = tiny_dataset();
    let valid = LabelRefs::build(&net, data, 1, &AtomicBool::new(false))
        .unwrap()
        .to_bytes();
    let layout = net.layout();
    fuzz(mutated(valid), |b| {
        for label in [1, 2] {
            let _ = LabelRefs::from_bytes(label, &b, data, None);
            let _ = LabelRefs::from_bytes(label, &b, data, Some(&layout));
        }
    });
}

#[test]
fn results_json() {
    let valid =
        br#"{"preset": "robust", "images": [{"label": 3, "p_label": 0.9991}, {"label": 7}]}"#;
    fuzz(mutated(valid.to_vec()), |b| {
        let _ = parse_run_labels("results.json", &b);
    });
}

#[test]
fn stored_app_settings() {
    let valid = ron::to_string(&backwork::backwork::Settings::default()).unwrap();
    fuzz(mutated(valid.into_bytes()), |b| {
        if let Ok(text) = std::str::from_utf8(&b)
            && let Ok(s) = ron::from_str::<backwork::backwork::Settings>(text)
        {
            // What the app does with a stored value: use it only if it is valid.
            let _ = s.validate();
        }
    });
}
