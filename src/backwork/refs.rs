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
    pub taps: [F32s; 4],
    pub sq_norms: [F32s; 4],
    pub fc_sorted: F32s,
}

/// f32 values held in memory, or read in place from a memory-mapped cache file (a warm start
/// then costs no decoding: pages come from the OS's file cache as the engine touches them).
pub enum F32s {
    Owned(Vec<f32>),
    Mapped {
        map: Arc<memmap2::Mmap>,
        /// Byte offset of the first value: a multiple of 4, so the values are aligned.
        start: usize,
        len: usize,
    },
}

impl std::ops::Deref for F32s {
    type Target = [f32];

    fn deref(&self) -> &[f32] {
        match self {
            F32s::Owned(v) => v,
            F32s::Mapped { map, start, len } => {
                let bytes = &map[*start..*start + 4 * *len];
                // SAFETY: `bytes` is 4·len bytes inside the mapping (checked when the file was
                // opened), starts 4-byte aligned (a page-aligned mapping plus a multiple of 4),
                // every bit pattern is a valid f32, the file's values are little-endian (only
                // mapped on little-endian targets), and the mapping lives as long as `self`.
                unsafe { std::slice::from_raw_parts(bytes.as_ptr().cast::<f32>(), *len) }
            }
        }
    }
}

impl From<Vec<f32>> for F32s {
    fn from(v: Vec<f32>) -> Self {
        F32s::Owned(v)
    }
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
        let sq_norms: [Vec<f32>; 4] = std::array::from_fn(|k| {
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
            taps: taps.map(F32s::from),
            sq_norms: sq_norms.map(F32s::from),
            fc_sorted: fc_sorted.into(),
        }
    }

    /// The sorted training values of fc neuron `j`.
    pub fn fc_column(&self, j: usize) -> &[f32] {
        let r = self.len();
        &self.fc_sorted[j * r..(j + 1) * r]
    }
}

/// Magic bytes of a reference-set file (format version 2).
const FILE_MAGIC: &[u8; 8] = b"BWREFS2\0";
/// Magic, label, three zero bytes, R: every later field starts 4-byte aligned.
const HEADER_BYTES: usize = 16;

impl LabelRefs {
    /// Values in the file after the header: the R indices, the four tap matrices, the four
    /// norm vectors and the sorted fc columns.
    fn file_words(r: usize) -> usize {
        r + TAP_DIMS.iter().map(|d| d * r).sum::<usize>() + 4 * r + FC_UNITS * r
    }

    /// The file form: magic, label (u8), 3 zero bytes, R (u32 LE), the R training indices
    /// (u32 LE), then (f32 LE) the four tap matrices, the four norm vectors and the sorted fc
    /// columns, in that order, so that a file can be used in place, memory-mapped.
    pub fn to_bytes(&self) -> Vec<u8> {
        let r = self.len();
        let mut out = Vec::with_capacity(HEADER_BYTES + 4 * Self::file_words(r));
        out.extend_from_slice(FILE_MAGIC);
        out.extend_from_slice(&[self.label, 0, 0, 0]);
        out.extend_from_slice(&(r as u32).to_le_bytes());
        for i in &self.indices {
            out.extend_from_slice(&i.to_le_bytes());
        }
        let arrays = self
            .taps
            .iter()
            .chain(&self.sq_norms)
            .chain([&self.fc_sorted]);
        for a in arrays {
            for v in a.iter() {
                out.extend_from_slice(&v.to_le_bytes());
            }
        }
        out
    }

    /// R of a complete file for `label`, or `None` (wrong magic, label or length).
    fn check_header(label: u8, bytes: &[u8]) -> Option<usize> {
        if bytes.len() < HEADER_BYTES
            || &bytes[..8] != FILE_MAGIC
            || bytes[8..12] != [label, 0, 0, 0]
        {
            return None;
        }
        let r = u32::from_le_bytes(bytes[12..16].try_into().ok()?) as usize;
        (bytes.len() == HEADER_BYTES + 4 * Self::file_words(r)).then_some(r)
    }

    /// The arrays of a checked file, each as `make(byte offset, length)`.
    fn from_parts(
        label: u8,
        bytes: &[u8],
        r: usize,
        make: &mut dyn FnMut(usize, usize) -> F32s,
    ) -> Self {
        let mut at = HEADER_BYTES;
        let indices = bytes[at..at + 4 * r]
            .chunks_exact(4)
            .map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect();
        at += 4 * r;
        let mut next = |len: usize| {
            let a = make(at, len);
            at += 4 * len;
            a
        };
        let taps = TAP_DIMS.map(|d| next(r * d));
        let sq_norms = [(); 4].map(|_| next(r));
        let fc_sorted = next(FC_UNITS * r);
        Self {
            label,
            indices,
            taps,
            sq_norms,
            fc_sorted,
        }
    }

    /// Parses [`Self::to_bytes`] into memory; `None` if the bytes are not a complete file for
    /// `label` or hold a value that is not finite.
    pub fn from_bytes(label: u8, bytes: &[u8]) -> Option<Self> {
        let r = Self::check_header(label, bytes)?;
        let refs = Self::from_parts(label, bytes, r, &mut |at, len| {
            F32s::Owned(
                bytes[at..at + 4 * len]
                    .chunks_exact(4)
                    .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                    .collect(),
            )
        });
        refs.is_finite().then_some(refs)
    }

    /// Opens a file written by [`Self::to_bytes`] memory-mapped, its arrays used in place;
    /// `None` if it is missing or not a complete file for `label`. Its values are not scanned
    /// (that would read every page): the engine's guard ends a run whose cost is not finite.
    pub fn map_file(label: u8, path: &Path) -> Option<Self> {
        let file = std::fs::File::open(path).ok()?;
        // SAFETY: cache files are only ever replaced by an atomic rename, never written in
        // place, so the mapped bytes do not change under us.
        let map = Arc::new(unsafe { memmap2::Mmap::map(&file) }.ok()?);
        let r = Self::check_header(label, &map)?;
        if cfg!(target_endian = "big") {
            return Self::from_bytes(label, &map);
        }
        Some(Self::from_parts(label, &map, r, &mut |start, len| {
            F32s::Mapped {
                map: map.clone(),
                start,
                len,
            }
        }))
    }

    /// Whether every stored value is finite.
    pub fn is_finite(&self) -> bool {
        let arrays = self
            .taps
            .iter()
            .chain(&self.sq_norms)
            .chain([&self.fc_sorted]);
        arrays.flat_map(|a| a.iter()).all(|v| v.is_finite())
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
        let from_disk = file.as_ref().and_then(|f| LabelRefs::map_file(label, f));
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
