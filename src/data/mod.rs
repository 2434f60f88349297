//! Datasets: the IDX reader, the MNIST files embedded in the binary, and folders of IDX files.

pub mod idx;

use std::path::{Path, PathBuf};

pub use idx::{NUM_LABELS, PIXELS, SIDE};

/// What can go wrong reading a dataset; every variant names the file.
#[derive(Debug, thiserror::Error)]
pub enum DataError {
    #[error("{file}: {reason}")]
    Corrupt { file: String, reason: String },
    #[error("{file}: cannot read: {source}")]
    Io {
        file: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{dir}: no {what} file (looked for {tried})")]
    Missing {
        dir: String,
        what: &'static str,
        tried: String,
    },
    #[error("{images}: {n_images} images but {labels} has {n_labels} labels")]
    CountMismatch {
        images: String,
        n_images: usize,
        labels: String,
        n_labels: usize,
    },
}

impl DataError {
    pub(crate) fn corrupt(file: &str, reason: impl Into<String>) -> Self {
        Self::Corrupt {
            file: file.to_string(),
            reason: reason.into(),
        }
    }
}

/// Which half of a dataset.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Split {
    Train,
    Test,
}

impl Split {
    fn stems(self) -> (&'static str, &'static str) {
        match self {
            Split::Train => ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
            Split::Test => ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
        }
    }
}

/// N grey 28×28 images with their labels, pixels as stored (u8, 0 = black).
#[derive(Clone, Debug)]
pub struct Dataset {
    /// Where it came from, for messages and metadata ("MNIST (embedded)" or a folder).
    pub source: String,
    /// N×784 pixels, row-major.
    pub pixels: Vec<u8>,
    /// N labels in 0..=9.
    pub labels: Vec<u8>,
}

impl Dataset {
    /// Builds a dataset from IDX bytes (raw or gzipped), checking both files and their counts.
    pub fn from_idx_bytes(
        source: &str,
        images_name: &str,
        images: Vec<u8>,
        labels_name: &str,
        labels: Vec<u8>,
    ) -> Result<Self, DataError> {
        let pixels = idx::parse_images(images_name, &idx::maybe_gunzip(images_name, images)?)?;
        let labels = idx::parse_labels(labels_name, &idx::maybe_gunzip(labels_name, labels)?)?;
        let n_images = pixels.len() / PIXELS;
        if n_images != labels.len() {
            return Err(DataError::CountMismatch {
                images: images_name.to_string(),
                n_images,
                labels: labels_name.to_string(),
                n_labels: labels.len(),
            });
        }
        Ok(Self {
            source: source.to_string(),
            pixels,
            labels,
        })
    }

    /// The embedded MNIST split (LeCun & Cortes, CC BY-SA 3.0; see assets/mnist/README.md).
    pub fn mnist(split: Split) -> Result<Self, DataError> {
        let (images, labels): (&[u8], &[u8]) = match split {
            Split::Train => (
                include_bytes!("../../assets/mnist/train-images-idx3-ubyte.gz"),
                include_bytes!("../../assets/mnist/train-labels-idx1-ubyte.gz"),
            ),
            Split::Test => (
                include_bytes!("../../assets/mnist/t10k-images-idx3-ubyte.gz"),
                include_bytes!("../../assets/mnist/t10k-labels-idx1-ubyte.gz"),
            ),
        };
        let (si, sl) = split.stems();
        Self::from_idx_bytes(
            "MNIST (embedded)",
            &format!("embedded {si}.gz"),
            images.to_vec(),
            &format!("embedded {sl}.gz"),
            labels.to_vec(),
        )
    }

    /// Loads a split from a folder holding the standard IDX names, raw or `.gz`
    /// (`train-images-idx3-ubyte[.gz]`, `t10k-labels-idx1-ubyte[.gz]`, ...).
    pub fn from_dir(dir: &Path, split: Split) -> Result<Self, DataError> {
        let (si, sl) = split.stems();
        let images = find_file(dir, si, "images")?;
        let labels = find_file(dir, sl, "labels")?;
        let read = |p: &Path| {
            crate::io::read_regular(p).map_err(|source| DataError::Io {
                file: p.display().to_string(),
                source,
            })
        };
        Self::from_idx_bytes(
            &dir.display().to_string(),
            &images.display().to_string(),
            read(&images)?,
            &labels.display().to_string(),
            read(&labels)?,
        )
    }

    /// The embedded MNIST when `dir` is `None`, else the folder.
    pub fn load(dir: Option<&Path>, split: Split) -> Result<Self, DataError> {
        match dir {
            Some(d) => Self::from_dir(d, split),
            None => Self::mnist(split),
        }
    }

    pub fn len(&self) -> usize {
        self.labels.len()
    }

    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    /// The 784 pixels of image `i`.
    pub fn image(&self, i: usize) -> &[u8] {
        &self.pixels[i * PIXELS..(i + 1) * PIXELS]
    }

    /// Pixels of the images at `indices`, scaled to [0, 1] (raw / 255, ALGORITHM.md §1).
    /// Images `start..end` as f32 in [0, 1] (N×784).
    pub fn range_f32(&self, start: usize, end: usize) -> Vec<f32> {
        self.pixels[start * PIXELS..end * PIXELS]
            .iter()
            .map(|&p| p as f32 / 255.0)
            .collect()
    }

    pub fn batch_f32(&self, indices: &[usize]) -> Vec<f32> {
        let mut out = Vec::with_capacity(indices.len() * PIXELS);
        for &i in indices {
            out.extend(self.image(i).iter().map(|&p| p as f32 / 255.0));
        }
        out
    }

    /// How many images of each label.
    pub fn label_counts(&self) -> [usize; NUM_LABELS] {
        let mut c = [0; NUM_LABELS];
        for &l in &self.labels {
            c[l as usize] += 1;
        }
        c
    }
}

fn find_file(dir: &Path, stem: &str, what: &'static str) -> Result<PathBuf, DataError> {
    // Both spellings occur in the wild: `train-images-idx3-ubyte` and `train-images.idx3-ubyte`.
    let dotted = stem.replacen("-idx", ".idx", 1);
    let candidates = [
        stem.to_string(),
        format!("{stem}.gz"),
        dotted.clone(),
        format!("{dotted}.gz"),
    ];
    let paths: Vec<PathBuf> = candidates.iter().map(|c| dir.join(c)).collect();
    if let Some(p) = paths.iter().find(|p| p.is_file()) {
        return Ok(p.clone());
    }
    // A FIFO or a folder under one of the names: say so, rather than "missing".
    if let Some(p) = paths.iter().find(|p| std::fs::symlink_metadata(p).is_ok()) {
        return Err(DataError::Io {
            file: p.display().to_string(),
            source: std::io::Error::new(std::io::ErrorKind::InvalidInput, "not a regular file"),
        });
    }
    if !dir.is_dir() {
        return Err(DataError::Io {
            file: dir.display().to_string(),
            source: std::io::Error::new(std::io::ErrorKind::NotFound, "no such folder"),
        });
    }
    Err(DataError::Missing {
        dir: dir.display().to_string(),
        what,
        tried: candidates.join(", "),
    })
}

/// A pixel value in [0, 1] (clamped; NaN as 0) to 8 bits, rounded: what a PNG stores.
pub fn to_u8(v: f32) -> u8 {
    if v.is_nan() {
        0
    } else {
        (v.clamp(0.0, 1.0) * 255.0).round() as u8
    }
}
