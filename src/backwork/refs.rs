//! The reference sets (ALGORITHM.md §2): the four taps of every training image of a label,
//! computed once per (model, label) and reused by every step.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use rayon::prelude::*;

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

impl std::fmt::Debug for LabelRefs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "LabelRefs {{ label: {}, images: {} }}",
            self.label,
            self.len()
        )
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

    /// The rows of `train` labelled `label`, in order: a reference set's `indices`.
    pub fn label_rows(train: &Dataset, label: u8) -> Vec<u32> {
        (0..train.len() as u32)
            .filter(|&i| train.labels[i as usize] == label)
            .collect()
    }

    /// Runs every training image of `label` through the network; `None` when `cancel` was
    /// set (it is checked between batches of 256 images, a fraction of a second apart).
    pub fn build(net: &FrozenCnn, train: &Dataset, label: u8, cancel: &AtomicBool) -> Option<Self> {
        let indices = Self::label_rows(train, label);
        let r = indices.len();
        let mut taps: [Vec<f32>; 4] = std::array::from_fn(|k| Vec::with_capacity(r * TAP_DIMS[k]));
        let mut f = Forward::default();
        for chunk in indices.chunks(BUILD_BATCH) {
            if cancel.load(Ordering::Relaxed) {
                return None;
            }
            let idx: Vec<usize> = chunk.iter().map(|&i| i as usize).collect();
            net.forward(&train.batch_f32(&idx), &mut f);
            taps[0].extend_from_slice(&f.inputs);
            taps[1].extend_from_slice(&f.conv0);
            taps[2].extend_from_slice(&f.conv1);
            taps[3].extend_from_slice(&f.fc);
        }
        Some(Self::from_taps(label, indices, taps))
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

/// Magic bytes of a reference-set file (format version 3: version 2 had no checksum).
const FILE_MAGIC: &[u8; 8] = b"BWREFS3\0";
/// Magic, label, three zero bytes, R (u32), the CRC-32 of everything after the header (u32),
/// four zero bytes: every later field starts 4-byte aligned.
const HEADER_BYTES: usize = 24;

/// Bytes read at a time from a cache file.
const READ_CHUNK: usize = 1 << 20;

/// A file's bytes after the header, each read once into its array while the checksum runs.
struct Payload<'a, R: Read> {
    src: &'a mut R,
    crc: crc32fast::Hasher,
}

/// Asks the kernel to back `v` with 2 MB pages where it can (a hint, Linux only): a warm
/// start writes 3 GB into fresh memory, and with 4 KB pages most of its time went to the
/// 750,000 page faults.
fn huge_pages(v: &mut [f32]) {
    #[cfg(target_os = "linux")]
    {
        const HUGE: usize = 2 << 20;
        let start = v.as_mut_ptr() as usize;
        let end = start + std::mem::size_of_val(v);
        let (lo, hi) = (start.next_multiple_of(HUGE), end / HUGE * HUGE);
        if hi > lo {
            // SAFETY: [lo, hi) lies inside `v`'s allocation, which we own; MADV_HUGEPAGE only
            // changes how the kernel backs those pages, never their contents.
            unsafe { libc::madvise(lo as *mut libc::c_void, hi - lo, libc::MADV_HUGEPAGE) };
        }
    }
}

impl<R: Read> Payload<'_, R> {
    /// The next `len` little-endian u32 words.
    fn u32s(&mut self, len: usize) -> Result<Vec<u32>, String> {
        let mut out = vec![0u32; len];
        // SAFETY: a u32 slice viewed as its bytes (u8 has no alignment, every byte pattern
        // is a valid u32), for as long as the borrow of `out`.
        let bytes =
            unsafe { std::slice::from_raw_parts_mut(out.as_mut_ptr().cast::<u8>(), 4 * len) };
        self.fill(bytes)?;
        if cfg!(target_endian = "big") {
            out.iter_mut().for_each(|v| *v = u32::from_le(*v));
        }
        Ok(out)
    }

    /// The next `len` little-endian f32 values, read straight into their array.
    fn f32s(&mut self, len: usize) -> Result<Vec<f32>, String> {
        let mut out = vec![0f32; len];
        huge_pages(&mut out);
        // SAFETY: as in `u32s`: every byte pattern is a valid f32.
        let bytes =
            unsafe { std::slice::from_raw_parts_mut(out.as_mut_ptr().cast::<u8>(), 4 * len) };
        self.fill(bytes)?;
        if cfg!(target_endian = "big") {
            out.iter_mut()
                .for_each(|v| *v = f32::from_bits(u32::from_le(v.to_bits())));
        }
        Ok(out)
    }

    /// Fills `bytes` from the source, updating the checksum.
    fn fill(&mut self, bytes: &mut [u8]) -> Result<(), String> {
        for chunk in bytes.chunks_mut(READ_CHUNK) {
            self.src
                .read_exact(chunk)
                .map_err(|e| format!("cannot be read: {e}"))?;
            self.crc.update(chunk);
        }
        Ok(())
    }
}

impl LabelRefs {
    /// Values in the file after the header: the R indices, the four tap matrices, the four
    /// norm vectors and the sorted fc columns; `None` if the count overflows.
    fn file_words(r: usize) -> Option<usize> {
        let per_row = TAP_DIMS.iter().sum::<usize>() + 1 + 4 + FC_UNITS;
        r.checked_mul(per_row)
    }

    /// The size in bytes of the file of a set of R images; `None` if it overflows.
    fn file_bytes(r: usize) -> Option<u64> {
        let words = Self::file_words(r)?;
        u64::try_from(words)
            .ok()?
            .checked_mul(4)?
            .checked_add(HEADER_BYTES as u64)
    }

    /// The file form: the header (magic, label, R, CRC-32 of the rest), the R training
    /// indices (u32 LE), then (f32 LE) the four tap matrices, the four norm vectors and the
    /// sorted fc columns, in that order.
    pub fn to_bytes(&self) -> Vec<u8> {
        let r = self.len();
        let mut out = Vec::with_capacity(Self::file_bytes(r).unwrap_or(0) as usize);
        out.extend_from_slice(FILE_MAGIC);
        out.extend_from_slice(&[self.label, 0, 0, 0]);
        out.extend_from_slice(&(r as u32).to_le_bytes());
        out.extend_from_slice(&[0; 8]);
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
        let crc = crc32fast::hash(&out[HEADER_BYTES..]);
        out[16..20].copy_from_slice(&crc.to_le_bytes());
        out
    }

    /// Reads a file written by [`Self::to_bytes`] from `src` (of `len` bytes) and checks all
    /// of it against `train`, the dataset it must describe: its length, label and image
    /// count, the checksum over the data, the training indices (exactly `label`'s rows of
    /// `train`) and that every value is finite. Nothing is allocated before the length is
    /// known to match, so a hostile header cannot ask for memory. The error says what is wrong.
    pub fn read_from(
        label: u8,
        src: &mut impl Read,
        len: u64,
        train: &Dataset,
    ) -> Result<Self, String> {
        let mut header = [0u8; HEADER_BYTES];
        src.read_exact(&mut header)
            .map_err(|_| "shorter than its header".to_string())?;
        if &header[..8] != FILE_MAGIC {
            return Err("not a reference-set file of this version".into());
        }
        if header[8..12] != [label, 0, 0, 0] {
            return Err(format!("not the file of label {label}"));
        }
        let word = |at: usize| {
            u32::from_le_bytes([header[at], header[at + 1], header[at + 2], header[at + 3]])
        };
        let r = word(12) as usize;
        let expected = Self::label_rows(train, label);
        if r != expected.len() {
            return Err(format!(
                "holds {r} images, but the training set has {} of label {label}",
                expected.len()
            ));
        }
        let want = Self::file_bytes(r).ok_or("declares an impossible size")?;
        if len != want {
            return Err(format!("is {len} bytes, but its header implies {want}"));
        }
        let mut p = Payload {
            src,
            crc: crc32fast::Hasher::new(),
        };
        let indices = p.u32s(r)?;
        let mut next = |n: usize| p.f32s(n);
        let taps = [
            next(r * TAP_DIMS[0])?,
            next(r * TAP_DIMS[1])?,
            next(r * TAP_DIMS[2])?,
            next(r * TAP_DIMS[3])?,
        ];
        let sq_norms = [next(r)?, next(r)?, next(r)?, next(r)?];
        let fc_sorted = next(FC_UNITS * r)?;
        if p.crc.finalize() != word(16) {
            return Err("its checksum does not match (the file is damaged)".into());
        }
        if indices != expected {
            return Err("its training-image indices are not the training set's".into());
        }
        let refs = Self {
            label,
            indices,
            taps,
            sq_norms,
            fc_sorted,
        };
        if !refs.is_finite() {
            return Err("holds a value that is not finite".into());
        }
        Ok(refs)
    }

    /// [`Self::read_from`] on bytes in memory.
    pub fn from_bytes(label: u8, bytes: &[u8], train: &Dataset) -> Result<Self, String> {
        Self::read_from(label, &mut &bytes[..], bytes.len() as u64, train)
    }

    /// [`Self::read_from`] on a file, read whole into memory (a file shortened or rewritten
    /// while a run uses it cannot touch the run). Only a regular file is opened, without
    /// blocking, so a FIFO or a device in its place is refused rather than waited on.
    pub fn read_file(label: u8, path: &Path, train: &Dataset) -> Result<Self, String> {
        let file = crate::io::open_regular(path).map_err(|e| format!("cannot be read: {e}"))?;
        let meta = file
            .metadata()
            .map_err(|e| format!("cannot be read: {e}"))?;
        let mut reader = file;
        Self::read_from(label, &mut reader, meta.len(), train)
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
    /// One-line notices for the user (a damaged file rebuilt), taken by [`Self::take_notices`].
    notices: Vec<String>,
    /// Labels whose disk file was read and refused (built next, not read again).
    refused: [bool; 10],
    /// Labels read from disk by [`Self::preload`] and not yet handed out.
    preloaded: [bool; 10],
    /// Whether a save failed (said once).
    is_unwritable: bool,
}

/// The default disk-cache folder: `$BACKWORK_CACHE_DIR` (if set and not empty), else
/// `$XDG_CACHE_HOME/backwork`, else `~/.cache/backwork`.
pub fn default_cache_dir() -> Option<PathBuf> {
    let set = |k: &str| std::env::var_os(k).filter(|v| !v.is_empty());
    if let Some(d) = set("BACKWORK_CACHE_DIR") {
        return Some(PathBuf::from(d));
    }
    let base = set("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| set("HOME").map(|h| Path::new(&h).join(".cache")))?;
    Some(base.join("backwork"))
}

/// The disk cache's size cap in bytes: `$BACKWORK_CACHE_MAX_GB` (a number of GB), else
/// 10 GB (three models' reference sets).
pub fn cache_cap_bytes() -> u64 {
    let gb = std::env::var("BACKWORK_CACHE_MAX_GB")
        .ok()
        .and_then(|v| v.trim().parse::<f64>().ok())
        .filter(|g| g.is_finite() && *g >= 0.0)
        .unwrap_or(10.0);
    (gb * 1e9) as u64
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
            disk: Some((dir, stem)),
            ..Self::default()
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

    /// Notices since the last call: each a line naming a cache file that was damaged and
    /// rebuilt.
    pub fn take_notices(&mut self) -> Vec<String> {
        std::mem::take(&mut self.notices)
    }

    /// The reference set of `label`: from memory, else from disk (checked whole, see
    /// [`LabelRefs::read_from`]), else built (and saved: a new file, renamed into place, never
    /// written in place). A damaged file is rebuilt with a notice; a failure to save is not an
    /// error (the next run builds it again). `None` when `cancel` stopped the build.
    pub fn get_or_build(
        &mut self,
        net: &FrozenCnn,
        train: &Dataset,
        label: u8,
        cancel: &AtomicBool,
    ) -> Option<(Arc<LabelRefs>, RefSource)> {
        if let Some(r) = &self.labels[label as usize] {
            let from_disk = std::mem::take(&mut self.preloaded[label as usize]);
            let source = if from_disk {
                RefSource::Disk
            } else {
                RefSource::Memory
            };
            return Some((r.clone(), source));
        }
        let file = self.file(label);
        let from_disk = match &file {
            Some(f) if !self.refused[label as usize] => self.read_disk(label, f, train),
            _ => None,
        };
        let (refs, source) = match from_disk {
            Some(r) => (r, RefSource::Disk),
            None => {
                let r = LabelRefs::build(net, train, label, cancel)?;
                if let (Some(f), Some((dir, stem))) = (&file, self.disk.clone()) {
                    self.save(f, &dir, &stem, &r);
                }
                (r, RefSource::Built)
            }
        };
        let refs = Arc::new(refs);
        self.labels[label as usize] = Some(refs.clone());
        Some((refs, source))
    }

    /// Reads `label`'s file `f` if it exists; a refused file gives a notice and `None`.
    fn read_disk(&mut self, label: u8, f: &Path, train: &Dataset) -> Option<LabelRefs> {
        let (r, notice) = read_checked(label, f, train);
        if let Some(n) = notice {
            self.refused[label as usize] = true;
            self.notices.push(n);
        }
        r
    }

    /// Reads the disk files of `labels` not yet in memory, several at once (a warm start reads
    /// 3 GB; most of its time is the kernel's, which spreads over the cores). Labels without a
    /// good file are left to [`Self::get_or_build`].
    pub fn preload(&mut self, train: &Dataset, labels: &[u8]) {
        let todo: Vec<(u8, PathBuf)> = labels
            .iter()
            .filter(|&&l| (l as usize) < 10 && self.labels[l as usize].is_none())
            .filter_map(|&l| Some((l, self.file(l)?)))
            .collect();
        let read: Vec<(u8, Option<LabelRefs>, Option<String>)> = todo
            .par_iter()
            .map(|(l, f)| {
                let (r, n) = read_checked(*l, f, train);
                (*l, r, n)
            })
            .collect();
        for (l, r, notice) in read {
            if let Some(n) = notice {
                self.refused[l as usize] = true;
                self.notices.push(n);
            }
            if let Some(r) = r {
                self.labels[l as usize] = Some(Arc::new(r));
                self.preloaded[l as usize] = true;
            }
        }
    }

    /// Writes a built set to `f` (replacing whatever is there, by rename), after clearing
    /// stale temporary files and, once written, keeping the folder under its cap.
    fn save(&mut self, f: &Path, dir: &Path, stem: &str, r: &LabelRefs) {
        let _ = std::fs::create_dir_all(dir);
        remove_stale_temps(dir);
        if std::fs::symlink_metadata(f).is_ok_and(|m| !m.is_file()) {
            // A rename would not replace a folder; anything else in the way goes.
            let _ = std::fs::remove_dir_all(f);
        }
        match crate::io::write_atomic(f, &r.to_bytes(), true) {
            Err(e) if !self.is_unwritable => {
                // Said once: every later label fails the same way.
                self.is_unwritable = true;
                self.notices.push(format!(
                    "reference cache: cannot save there ({e}); reference sets are built again on every run (set BACKWORK_CACHE_DIR to a writable folder)"
                ));
            }
            Err(_) => {}
            Ok(()) => self.after_save(dir, stem),
        }
    }

    /// Keeps the folder under its cap after a save, with a notice for each model removed.
    fn after_save(&mut self, dir: &Path, stem: &str) {
        for gone in enforce_cap(dir, stem, cache_cap_bytes()) {
            self.notices.push(format!(
                "reference cache {}: removed the sets of model {gone} (the cache is capped at {:.0} GB; set BACKWORK_CACHE_MAX_GB)",
                dir.display(),
                cache_cap_bytes() as f64 / 1e9
            ));
        }
    }
}

/// Reads cache file `f` of `label` if it exists: the set, or a notice saying why it was
/// refused (then rebuilt). A file read is marked as used (the cap removes the least recently
/// used models first).
fn read_checked(label: u8, f: &Path, train: &Dataset) -> (Option<LabelRefs>, Option<String>) {
    if std::fs::symlink_metadata(f).is_err() {
        return (None, None);
    }
    match LabelRefs::read_file(label, f, train) {
        Ok(r) => {
            let _ =
                std::fs::File::open(f).and_then(|h| h.set_modified(std::time::SystemTime::now()));
            (Some(r), None)
        }
        Err(why) => (
            None,
            Some(format!(
                "reference cache {}: {why}; rebuilding it",
                f.display()
            )),
        ),
    }
}

/// One model's files in the disk cache.
#[derive(Clone, Debug)]
pub struct CacheEntry {
    /// `refs-<model sha prefix>-<dataset fingerprint>`.
    pub stem: String,
    pub files: Vec<PathBuf>,
    pub bytes: u64,
    /// The last time one of its files was written or used.
    pub newest: std::time::SystemTime,
}

/// The stem of a reference-set file name (`<stem>-label<d>.bin`), if it is one.
fn cache_stem(name: &str) -> Option<&str> {
    let rest = name.strip_suffix(".bin")?;
    let (stem, label) = rest.rsplit_once("-label")?;
    (stem.starts_with("refs-") && label.len() == 1 && label.as_bytes()[0].is_ascii_digit())
        .then_some(stem)
}

/// The models in cache folder `dir`, most recently used first (an empty list if the folder
/// does not exist).
pub fn list_cache(dir: &Path) -> std::io::Result<Vec<CacheEntry>> {
    let mut by_stem: std::collections::BTreeMap<String, CacheEntry> = Default::default();
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let Some(stem) = cache_stem(&name) else {
            continue;
        };
        let Ok(meta) = e.metadata() else { continue };
        let modified = meta.modified().unwrap_or(std::time::UNIX_EPOCH);
        let entry = by_stem
            .entry(stem.to_string())
            .or_insert_with(|| CacheEntry {
                stem: stem.to_string(),
                files: Vec::new(),
                bytes: 0,
                newest: std::time::UNIX_EPOCH,
            });
        entry.files.push(e.path());
        entry.bytes += meta.len();
        entry.newest = entry.newest.max(modified);
    }
    let mut list: Vec<CacheEntry> = by_stem.into_values().collect();
    list.sort_by_key(|e| std::cmp::Reverse(e.newest));
    Ok(list)
}

/// Removes the reference-set files and temporary files of cache folder `dir`; returns (files,
/// bytes) removed. Nothing else in the folder is touched.
pub fn clear_cache(dir: &Path) -> std::io::Result<(usize, u64)> {
    let mut removed = (0, 0);
    for entry in list_cache(dir)? {
        for f in &entry.files {
            let len = std::fs::metadata(f).map_or(0, |m| m.len());
            std::fs::remove_file(f)?;
            removed.0 += 1;
            removed.1 += len;
        }
    }
    let (n, bytes) = remove_temps(dir, |_| true);
    Ok((removed.0 + n, removed.1 + bytes))
}

/// Removes the temporary files a killed process left in `dir` (its own PID no longer
/// running, or a day old); returns how many.
pub fn remove_stale_temps(dir: &Path) -> usize {
    remove_temps(dir, |pid| !pid.is_some_and(crate::io::is_process_alive)).0
}

/// Removes the temporary files (`.refs-….<pid>-<n>.tmp`) of `dir` for which `stale` holds
/// (given the writer's PID when the name has one) or that are over a day old.
fn remove_temps(dir: &Path, stale: impl Fn(Option<u32>) -> bool) -> (usize, u64) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return (0, 0);
    };
    let day = std::time::Duration::from_secs(86_400);
    let mut removed = (0, 0);
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let Some(pid) = crate::io::temp_writer_pid(&name) else {
            continue;
        };
        if !name.starts_with(".refs-") {
            continue;
        }
        let Ok(meta) = e.metadata() else { continue };
        let is_old = meta
            .modified()
            .ok()
            .and_then(|m| m.elapsed().ok())
            .is_some_and(|a| a > day);
        if (stale(Some(pid)) || is_old) && std::fs::remove_file(e.path()).is_ok() {
            removed.0 += 1;
            removed.1 += meta.len();
        }
    }
    removed
}

/// Removes whole models, least recently used first, until cache folder `dir` holds at most
/// `cap` bytes, never the model `keep`; returns the stems removed.
pub fn enforce_cap(dir: &Path, keep: &str, cap: u64) -> Vec<String> {
    let Ok(list) = list_cache(dir) else {
        return Vec::new();
    };
    let mut total: u64 = list.iter().map(|e| e.bytes).sum();
    let mut gone = Vec::new();
    for e in list.iter().rev() {
        if total <= cap {
            break;
        }
        if e.stem == keep {
            continue;
        }
        if e.files.iter().all(|f| std::fs::remove_file(f).is_ok()) {
            total = total.saturating_sub(e.bytes);
            gone.push(e.stem.clone());
        }
    }
    gone
}
