//! The reference sets (ALGORITHM.md §2): the four taps of every training image of a label,
//! computed once per (model, label) and reused by every step.

use std::io::Read;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};

use rayon::prelude::*;

use super::frozen::{Forward, FrozenCnn};
use crate::data::{Dataset, PIXELS};
use crate::model::{CONV0_DIM, CONV1_DIM, FC_UNITS};

/// Flattened size of each tap: inputs, conv0, conv1, fc.
pub const TAP_DIMS: [usize; 4] = [PIXELS, CONV0_DIM, CONV1_DIM, FC_UNITS];

/// Images per forward pass while building: a batch's activations (about 200 KB an image for
/// the original network) stay in the last-level cache between layers.
const BUILD_BATCH: usize = 128;

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
            taps[0].extend_from_slice(f.inputs());
            taps[1].extend_from_slice(f.conv0());
            taps[2].extend_from_slice(f.conv1());
            taps[3].extend_from_slice(f.fc());
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
