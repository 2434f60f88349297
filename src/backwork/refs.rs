//! The reference sets (ALGORITHM.md §2): the four taps of every training image of a label,
//! computed once per (model, label) and reused by every step.

use std::path::{Path, PathBuf};

use rayon::prelude::*;
use std::sync::Arc;

use super::frozen::{Forward, FrozenCnn};
use crate::data::{Dataset, PIXELS};
use crate::model::{CONV0_DIM, CONV1_DIM, FC_UNITS};

/// Flattened size of each tap: inputs, conv0, conv1, fc.
pub const TAP_DIMS: [usize; 4] = [PIXELS, CONV0_DIM, CONV1_DIM, FC_UNITS];

/// Images per forward pass while building: keeps the conv1 im2col buffer near 160 MB.
const BUILD_BATCH: usize = 256;

/// One label's reference activations.
///
/// # Shapes
/// `taps[k]` R×D_k row-major (R training images of the label, D_k = [`TAP_DIMS`]`[k]`),
/// `sq_norms[k]` R, `fc_sorted` 1024×R (each neuron's R training values, ascending).
pub struct LabelRefs {
    pub label: u8,
    /// Row r is training image `indices[r]` (its row in the MNIST training file).
    pub indices: Vec<u32>,
    pub taps: [Vec<f32>; 4],
    pub sq_norms: [Vec<f32>; 4],
    pub fc_sorted: Vec<f32>,
}

impl LabelRefs {
    /// Number of reference images R.
    pub fn len(&self) -> usize {
        self.indices.len()
    }

    pub fn is_empty(&self) -> bool {
        self.indices.is_empty()
    }

    /// Runs every training image of `label` through the network. `progress` gets (done, R).
    pub fn build(
        net: &FrozenCnn,
        train: &Dataset,
        label: u8,
        progress: &mut dyn FnMut(usize, usize),
    ) -> Self {
        let indices: Vec<u32> = (0..train.len() as u32)
            .filter(|&i| train.labels[i as usize] == label)
            .collect();
        let r = indices.len();
        let mut taps: [Vec<f32>; 4] = std::array::from_fn(|k| Vec::with_capacity(r * TAP_DIMS[k]));
        let mut f = Forward::default();
        for chunk in indices.chunks(BUILD_BATCH) {
            let idx: Vec<usize> = chunk.iter().map(|&i| i as usize).collect();
            net.forward(&train.batch_f32(&idx), &mut f);
            taps[0].extend_from_slice(&f.inputs);
            taps[1].extend_from_slice(&f.conv0);
            taps[2].extend_from_slice(&f.conv1);
            taps[3].extend_from_slice(&f.fc);
            progress(taps[0].len() / PIXELS, r);
        }
        Self::from_taps(label, indices, taps)
    }

    /// Derives the norms and the sorted fc columns from the four tap matrices.
    pub fn from_taps(label: u8, indices: Vec<u32>, taps: [Vec<f32>; 4]) -> Self {
        let r = indices.len();
        let sq_norms = std::array::from_fn(|k| {
            taps[k]
                .chunks_exact(TAP_DIMS[k])
                .map(|row| row.iter().map(|v| v * v).sum())
                .collect()
        });
        let mut fc_sorted = vec![0.0; FC_UNITS * r];
        // 1,024 independent column sorts: on all cores.
        let fc = &taps[3];
        fc_sorted
            .par_chunks_exact_mut(r.max(1))
            .enumerate()
            .take(FC_UNITS)
            .for_each(|(j, col)| {
                for (i, v) in col.iter_mut().enumerate() {
                    *v = fc[i * FC_UNITS + j];
                }
                col.sort_unstable_by(f32::total_cmp);
            });
        Self {
            label,
            indices,
            taps,
            sq_norms,
            fc_sorted,
        }
    }

    /// The sorted training values of fc neuron `j`.
    pub fn fc_column(&self, j: usize) -> &[f32] {
        let r = self.len();
        &self.fc_sorted[j * r..(j + 1) * r]
    }
}

/// Magic bytes of a reference-set file (format version 1).
const FILE_MAGIC: &[u8; 8] = b"BWREFS1\0";

impl LabelRefs {
    /// The file form: magic, label (u8), R (u32 LE), the R training indices (u32 LE), then
    /// the four tap matrices (f32 LE) in tap order.
    pub fn to_bytes(&self) -> Vec<u8> {
        let floats: usize = self.taps.iter().map(Vec::len).sum();
        let mut out = Vec::with_capacity(13 + 4 * (self.len() + floats));
        out.extend_from_slice(FILE_MAGIC);
        out.push(self.label);
        out.extend_from_slice(&(self.len() as u32).to_le_bytes());
        for i in &self.indices {
            out.extend_from_slice(&i.to_le_bytes());
        }
        for t in &self.taps {
            for v in t {
                out.extend_from_slice(&v.to_le_bytes());
            }
        }
        out
    }

    /// Parses [`Self::to_bytes`]; `None` if the bytes are not a complete file for `label`.
    pub fn from_bytes(label: u8, bytes: &[u8]) -> Option<Self> {
        if bytes.len() < 13 || &bytes[..8] != FILE_MAGIC || bytes[8] != label {
            return None;
        }
        let r = u32::from_le_bytes(bytes[9..13].try_into().ok()?) as usize;
        let floats: usize = TAP_DIMS.iter().map(|d| d * r).sum();
        if bytes.len() != 13 + 4 * (r + floats) {
            return None;
        }
        // Decoded straight from the bytes (no intermediate copy: a label is ~300 MB).
        let mut at = 13;
        let indices: Vec<u32> = bytes[at..at + 4 * r]
            .chunks_exact(4)
            .map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect();
        at += 4 * r;
        let mut taps: [Vec<f32>; 4] = Default::default();
        for (k, t) in taps.iter_mut().enumerate() {
            let len = 4 * r * TAP_DIMS[k];
            *t = bytes[at..at + len]
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                .collect();
            at += len;
        }
        if taps.iter().flatten().any(|v| !v.is_finite()) {
            return None;
        }
        Some(Self::from_taps(label, indices, taps))
    }
}

/// Where a reference set came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RefSource {
    Memory,
    Disk,
    Built,
}

/// Reference sets for the ten labels of one (model, dataset), built on demand and, with a
/// folder, kept on disk so a later run of the same model starts warm.
#[derive(Default)]
pub struct RefCache {
    labels: [Option<Arc<LabelRefs>>; 10],
    /// Folder and file-name stem (model and dataset fingerprints) of the disk cache.
    disk: Option<(PathBuf, String)>,
}

/// The default disk-cache folder: `$BACKWORK_CACHE_DIR`, else `$XDG_CACHE_HOME/backwork`,
/// else `~/.cache/backwork`.
pub fn default_cache_dir() -> Option<PathBuf> {
    if let Some(d) = std::env::var_os("BACKWORK_CACHE_DIR") {
        return Some(PathBuf::from(d));
    }
    let base = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| Path::new(&h).join(".cache")))?;
    Some(base.join("backwork"))
}

/// A fingerprint of a dataset's content (SHA-256 of its pixels and labels, shortened).
pub fn dataset_fingerprint(data: &Dataset) -> String {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    h.update(&data.pixels);
    h.update(&data.labels);
    h.finalize()[..8]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

impl RefCache {
    /// A cache that also reads and writes `dir` for the model with SHA-256 `model_sha` on
    /// `train`.
    pub fn with_disk(dir: PathBuf, model_sha: &str, train: &Dataset) -> Self {
        let stem = format!(
            "refs-{}-{}",
            &model_sha[..16.min(model_sha.len())],
            dataset_fingerprint(train)
        );
        Self {
            labels: Default::default(),
            disk: Some((dir, stem)),
        }
    }

    /// An empty cache for another model on the same dataset, in the same folder (if any).
    pub fn for_model(&self, model_sha: &str, train: &Dataset) -> Self {
        match &self.disk {
            Some((dir, _)) => Self::with_disk(dir.clone(), model_sha, train),
            None => Self::default(),
        }
    }

    fn file(&self, label: u8) -> Option<PathBuf> {
        self.disk
            .as_ref()
            .map(|(dir, stem)| dir.join(format!("{stem}-label{label}.bin")))
    }

    /// The reference set of `label`: from memory, else from disk, else built (and saved).
    /// A failure to save is not an error: the next run builds it again.
    pub fn get_or_build(
        &mut self,
        net: &FrozenCnn,
        train: &Dataset,
        label: u8,
        progress: &mut dyn FnMut(usize, usize),
    ) -> (Arc<LabelRefs>, RefSource) {
        if let Some(r) = &self.labels[label as usize] {
            return (r.clone(), RefSource::Memory);
        }
        let file = self.file(label);
        let from_disk = file
            .as_ref()
            .and_then(|f| std::fs::read(f).ok())
            .and_then(|b| LabelRefs::from_bytes(label, &b));
        let (refs, source) = match from_disk {
            Some(r) => (r, RefSource::Disk),
            None => {
                let r = LabelRefs::build(net, train, label, progress);
                if let Some(f) = &file {
                    if let Some(dir) = f.parent() {
                        let _ = std::fs::create_dir_all(dir);
                    }
                    let _ = crate::export::write_atomic(f, &r.to_bytes(), true);
                }
                (r, RefSource::Built)
            }
        };
        let refs = Arc::new(refs);
        self.labels[label as usize] = Some(refs.clone());
        (refs, source)
    }
}
