//! The reference sets (ALGORITHM.md §2): the four taps of every training image of a label,
//! computed once per (model, label) and reused by every step.

use std::io::Read;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};

use rayon::prelude::*;

use super::frozen::{Forward, FrozenCnn, TapLayout};
use crate::data::Dataset;

/// Flattened size of each tap of the §1 network: inputs, conv0, conv1, fc.
pub const TAP_DIMS: [usize; 4] = [
    crate::data::PIXELS,
    crate::model::CONV0_DIM,
    crate::model::CONV1_DIM,
    crate::model::FC_UNITS,
];

/// Images per forward pass while building: a batch's activations (about 200 KB an image for
/// the original network) stay in the last-level cache between layers.
const BUILD_BATCH: usize = 128;

/// One label's reference activations.
///
/// # Shapes
/// `taps[k]` R×D_k row-major (R training images of the label, D_k = `layout.dims[k]`),
/// `sq_norms[k]` R, `columns[k]` D_k×R (each neuron's R training values, ascending) for the
/// taps whose columns the layout keeps (hidden linear ones), empty for the others.
pub struct LabelRefs {
    pub label: u8,
    /// Row r is training image `indices[r]` (its row in the training file).
    pub indices: Vec<u32>,
    pub layout: TapLayout,
    pub taps: Vec<Vec<f32>>,
    pub sq_norms: Vec<Vec<f32>>,
    pub columns: Vec<Vec<f32>>,
}

impl std::fmt::Debug for LabelRefs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "LabelRefs {{ label: {}, images: {}, taps: {:?} }}",
            self.label,
            self.len(),
            self.layout.dims
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

    /// Values per image at tap `k`.
    pub fn dim(&self, k: usize) -> usize {
        self.layout.dims[k]
    }

    /// The rows of `train` labelled `label`, in order: a reference set's `indices`.
    pub fn label_rows(train: &Dataset, label: u8) -> Vec<u32> {
        (0..train.len() as u32)
            .filter(|&i| train.labels[i as usize] == label)
            .collect()
    }

    /// Runs every training image of `label` through the network; `None` when `cancel` was
    /// set (it is checked between batches of 128 images, a fraction of a second apart).
    pub fn build(net: &FrozenCnn, train: &Dataset, label: u8, cancel: &AtomicBool) -> Option<Self> {
        let indices = Self::label_rows(train, label);
        let r = indices.len();
        let layout = net.layout();
        // Fresh memory (about 290 MB a label), backed by 2 MB pages where the kernel can:
        // with 4 KB pages a tenth of the build went to page faults on one core.
        let mut taps: Vec<Vec<f32>> = layout
            .dims
            .iter()
            .map(|d| {
                let mut t = vec![0.0; r * d];
                huge_pages(&mut t);
                t
            })
            .collect();
        let mut f = Forward::inference();
        for (b, chunk) in indices.chunks(BUILD_BATCH).enumerate() {
            if cancel.load(Ordering::Relaxed) {
                return None;
            }
            let idx: Vec<usize> = chunk.iter().map(|&i| i as usize).collect();
            net.forward(&train.batch_f32(&idx), &mut f);
            for (k, (t, &d)) in taps.iter_mut().zip(&layout.dims).enumerate() {
                let at = b * BUILD_BATCH * d;
                par_copy(&mut t[at..at + chunk.len() * d], f.tap(k));
            }
        }
        Some(Self::from_taps(label, indices, layout, taps))
    }

    /// Derives the norms and the sorted columns from the tap matrices.
    pub fn from_taps(label: u8, indices: Vec<u32>, layout: TapLayout, taps: Vec<Vec<f32>>) -> Self {
        let r = indices.len();
        let sq_norms: Vec<Vec<f32>> = taps
            .iter()
            .zip(&layout.dims)
            .map(|(t, &d)| {
                t.par_chunks_exact(d.max(1))
                    .map(|row| row.iter().map(|v| v * v).sum())
                    .collect()
            })
            .collect();
        let columns = taps
            .iter()
            .zip(&layout.dims)
            .zip(&layout.columns)
            .map(|((t, &d), &kept)| {
                if kept {
                    sorted_columns(t, r, d)
                } else {
                    Vec::new()
                }
            })
            .collect();
        Self {
            label,
            indices,
            layout,
            taps,
            sq_norms,
            columns,
        }
    }

    /// The sorted training values of neuron `j` of tap `k` (a tap whose columns are kept).
    pub fn column(&self, k: usize, j: usize) -> &[f32] {
        let r = self.len();
        &self.columns[k][j * r..(j + 1) * r]
    }
}

/// Columns of a block that [`sorted_columns`] gathers together: one cache line of each row.
const COLUMN_BLOCK: usize = 16;

/// The D columns of an R×D matrix, each sorted ascending, D×R: independent sorts, on all
/// cores. A block of columns is gathered in one pass over the rows (a column alone would read
/// a cache line per value).
fn sorted_columns(t: &[f32], r: usize, d: usize) -> Vec<f32> {
    let mut out = vec![0.0; d * r];
    huge_pages(&mut out);
    if r == 0 {
        return out;
    }
    out.par_chunks_mut(COLUMN_BLOCK * r)
        .enumerate()
        .for_each(|(b, block)| {
            let j0 = b * COLUMN_BLOCK;
            for (i, row) in t.chunks_exact(d).enumerate() {
                for (c, &v) in row[j0..].iter().take(block.len() / r).enumerate() {
                    block[c * r + i] = v;
                }
            }
            for col in block.chunks_exact_mut(r) {
                col.sort_unstable_by(f32::total_cmp);
            }
        });
    out
}

/// Copies `src` into `dst` (of the same length) on all cores, in pieces of 256 KB.
fn par_copy(dst: &mut [f32], src: &[f32]) {
    const PIECE: usize = 1 << 16;
    dst.par_chunks_mut(PIECE)
        .zip(src.par_chunks(PIECE))
        .for_each(|(d, s)| d.copy_from_slice(s));
}

/// Magic bytes of a reference-set file (format version 4: version 3 held the §1 network's four
/// taps only; version 2 had no checksum).
const FILE_MAGIC: &[u8; 8] = b"BWREFS4\0";
/// Magic, label, three zero bytes, R (u32), the CRC-32 of everything after the header (u32),
/// the number of taps T (u32): every later field starts 4-byte aligned.
const HEADER_BYTES: usize = 24;
/// At most this many taps in a file (a header asking for more is refused unread).
const MAX_TAPS: usize = 256;
/// At most this many values per image at one tap (as [`crate::net::Arch`] caps a layer).
const MAX_TAP_DIM: usize = 1 << 24;

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
    /// Values in the file after the header of a set of R images with `layout`: the tap table
    /// (two words a tap), the R indices, the tap matrices, the norm vectors and the kept
    /// sorted columns; `None` if the count overflows.
    fn file_words(r: usize, layout: &TapLayout) -> Option<usize> {
        let mut per_row = 1usize; // the index
        for (&d, &kept) in layout.dims.iter().zip(&layout.columns) {
            let tap = if kept { d.checked_mul(2)? } else { d };
            per_row = per_row.checked_add(tap)?.checked_add(1)?;
        }
        r.checked_mul(per_row)?.checked_add(2 * layout.len())
    }

    /// The size in bytes of the file of a set of R images with `layout`; `None` if it
    /// overflows.
    fn file_bytes(r: usize, layout: &TapLayout) -> Option<u64> {
        let words = Self::file_words(r, layout)?;
        u64::try_from(words)
            .ok()?
            .checked_mul(4)?
            .checked_add(HEADER_BYTES as u64)
    }

    /// The file form: the header (magic, label, R, CRC-32 of the rest, T), the tap table (each
    /// tap's size and whether its columns are kept, u32 LE), the R training indices (u32 LE),
    /// then (f32 LE) the tap matrices, the norm vectors and the kept sorted columns, in that
    /// order.
    pub fn to_bytes(&self) -> Vec<u8> {
        let size = Self::file_bytes(self.len(), &self.layout).unwrap_or(0);
        let mut out = Vec::with_capacity(size as usize);
        // Writing to a vector cannot fail.
        let _ = self.write_to(&mut out);
        out
    }

    /// Writes the file form of [`Self::to_bytes`] to `w`, the arrays straight from memory
    /// (a set is about 290 MB: no copy of it is made). The checksum is taken first, over the
    /// same bytes.
    pub fn write_to(&self, w: &mut impl std::io::Write) -> std::io::Result<()> {
        let mut table = Vec::with_capacity(8 * self.layout.len() + 4 * self.len());
        for (&d, &kept) in self.layout.dims.iter().zip(&self.layout.columns) {
            table.extend_from_slice(&(d as u32).to_le_bytes());
            table.extend_from_slice(&u32::from(kept).to_le_bytes());
        }
        for i in &self.indices {
            table.extend_from_slice(&i.to_le_bytes());
        }
        let mut crc = crc32fast::Hasher::new();
        crc.update(&table);
        for a in self.arrays() {
            crc.update(&le_bytes(a));
        }
        let mut header = Vec::with_capacity(HEADER_BYTES);
        header.extend_from_slice(FILE_MAGIC);
        header.extend_from_slice(&[self.label, 0, 0, 0]);
        header.extend_from_slice(&(self.len() as u32).to_le_bytes());
        header.extend_from_slice(&crc.finalize().to_le_bytes());
        header.extend_from_slice(&(self.layout.len() as u32).to_le_bytes());
        w.write_all(&header)?;
        w.write_all(&table)?;
        for a in self.arrays() {
            w.write_all(&le_bytes(a))?;
        }
        Ok(())
    }

    /// Every value array, in file order.
    fn arrays(&self) -> impl Iterator<Item = &Vec<f32>> {
        self.taps.iter().chain(&self.sq_norms).chain(&self.columns)
    }

    /// Reads a file written by [`Self::to_bytes`] from `src` (of `len` bytes) and checks all
    /// of it against `train`, the dataset it must describe, and `expect`, the taps of the
    /// network it must belong to (when known): its length, label, image count and taps, the
    /// checksum over the data, the training indices (exactly `label`'s rows of `train`) and
    /// that every value is finite. Nothing large is allocated before the length is known to
    /// match, so a hostile header cannot ask for memory. The error says what is wrong.
    pub fn read_from(
        label: u8,
        src: &mut impl Read,
        len: u64,
        train: &Dataset,
        expect: Option<&TapLayout>,
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
        let t = word(20) as usize;
        if t == 0 || t > MAX_TAPS {
            return Err(format!("declares {t} taps"));
        }
        let mut p = Payload {
            src,
            crc: crc32fast::Hasher::new(),
        };
        let table = p.u32s(2 * t)?;
        let layout = TapLayout {
            dims: table.iter().step_by(2).map(|&d| d as usize).collect(),
            columns: table.iter().skip(1).step_by(2).map(|&c| c != 0).collect(),
        };
        if let Some(d) = layout.dims.iter().find(|&&d| d == 0 || d > MAX_TAP_DIM) {
            return Err(format!("declares a tap of {d} values"));
        }
        if table.iter().skip(1).step_by(2).any(|&c| c > 1) {
            return Err("its tap table is damaged".into());
        }
        if let Some(e) = expect.filter(|e| **e != layout) {
            return Err(format!(
                "holds taps of sizes {:?}, but the network's are {:?}",
                layout.dims, e.dims
            ));
        }
        let expected = Self::label_rows(train, label);
        if r != expected.len() {
            return Err(format!(
                "holds {r} images, but the training set has {} of label {label}",
                expected.len()
            ));
        }
        let want = Self::file_bytes(r, &layout).ok_or("declares an impossible size")?;
        if len != want {
            return Err(format!("is {len} bytes, but its header implies {want}"));
        }
        let indices = p.u32s(r)?;
        let mut taps = Vec::with_capacity(t);
        for &d in &layout.dims {
            taps.push(p.f32s(r * d)?);
        }
        let mut sq_norms = Vec::with_capacity(t);
        for _ in 0..t {
            sq_norms.push(p.f32s(r)?);
        }
        let mut columns = Vec::with_capacity(t);
        for (&d, &kept) in layout.dims.iter().zip(&layout.columns) {
            columns.push(if kept { p.f32s(d * r)? } else { Vec::new() });
        }
        if p.crc.finalize() != word(16) {
            return Err("its checksum does not match (the file is damaged)".into());
        }
        if indices != expected {
            return Err("its training-image indices are not the training set's".into());
        }
        let refs = Self {
            label,
            indices,
            layout,
            taps,
            sq_norms,
            columns,
        };
        if !refs.is_finite() {
            return Err("holds a value that is not finite".into());
        }
        Ok(refs)
    }

    /// [`Self::read_from`] on bytes in memory.
    pub fn from_bytes(
        label: u8,
        bytes: &[u8],
        train: &Dataset,
        expect: Option<&TapLayout>,
    ) -> Result<Self, String> {
        Self::read_from(label, &mut &bytes[..], bytes.len() as u64, train, expect)
    }

    /// [`Self::read_from`] on a file, read whole into memory (a file shortened or rewritten
    /// while a run uses it cannot touch the run). Only a regular file is opened, without
    /// blocking, so a FIFO or a device in its place is refused rather than waited on.
    pub fn read_file(
        label: u8,
        path: &Path,
        train: &Dataset,
        expect: Option<&TapLayout>,
    ) -> Result<Self, String> {
        Self::read_file_until(label, path, train, expect, &AtomicBool::new(false))
    }

    /// [`Self::read_file`] that gives up once `cancel` is set: the file is read a few MB at a
    /// time, so a stop (Ctrl-C) ends a read of hundreds of MB within one piece's time (a cold
    /// disk held the first Ctrl-C about 3 s).
    pub fn read_file_until(
        label: u8,
        path: &Path,
        train: &Dataset,
        expect: Option<&TapLayout>,
        cancel: &AtomicBool,
    ) -> Result<Self, String> {
        let file = crate::io::open_regular(path).map_err(|e| format!("cannot be read: {e}"))?;
        let meta = file
            .metadata()
            .map_err(|e| format!("cannot be read: {e}"))?;
        let mut reader = Stoppable {
            inner: file,
            cancel,
        };
        Self::read_from(label, &mut reader, meta.len(), train, expect)
    }

    /// Whether every stored value is finite.
    pub fn is_finite(&self) -> bool {
        self.arrays().flat_map(|a| a.iter()).all(|v| v.is_finite())
    }
}

/// A reader that reads at most [`Stoppable::PIECE`] bytes a call and fails once `cancel` is
/// set.
struct Stoppable<'a, R> {
    inner: R,
    cancel: &'a AtomicBool,
}

impl<R> Stoppable<'_, R> {
    /// 8 MB: tens of milliseconds from a cold disk, noise against a file's read.
    const PIECE: usize = 8 << 20;
}

impl<R: std::io::Read> std::io::Read for Stoppable<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if self.cancel.load(std::sync::atomic::Ordering::Relaxed) {
            return Err(std::io::Error::other("stopped"));
        }
        let n = buf.len().min(Self::PIECE);
        self.inner.read(&mut buf[..n])
    }
}

/// The little-endian bytes of `a`: the array itself on a little-endian machine, a copy
/// elsewhere.
fn le_bytes(a: &[f32]) -> std::borrow::Cow<'_, [u8]> {
    if cfg!(target_endian = "little") {
        // SAFETY: an f32 slice viewed as its bytes (u8 has no alignment), for as long as the
        // borrow of `a`; on this machine they are the little-endian form.
        std::borrow::Cow::Borrowed(unsafe {
            std::slice::from_raw_parts(a.as_ptr().cast::<u8>(), std::mem::size_of_val(a))
        })
    } else {
        std::borrow::Cow::Owned(a.iter().flat_map(|v| v.to_le_bytes()).collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Blocked gathering gives each column sorted, whatever the shape: widths that are not a
    /// multiple of the block, one row, one column, no rows.
    #[test]
    fn sorted_columns_are_each_column_sorted() {
        for (r, d) in [(37, 35), (1, 16), (50, 1), (0, 20), (9, 33)] {
            let t: Vec<f32> = (0..r * d)
                .map(|i| ((i * 7919 % 1013) as f32 - 500.0) / 7.0)
                .collect();
            let got = sorted_columns(&t, r, d);
            assert_eq!(got.len(), r * d);
            for j in 0..d {
                let mut want: Vec<f32> = (0..r).map(|i| t[i * d + j]).collect();
                want.sort_by(f32::total_cmp);
                assert_eq!(
                    &got[j * r..(j + 1) * r],
                    &want[..],
                    "r {r} d {d} column {j}"
                );
            }
        }
    }
}
