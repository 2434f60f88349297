//! Datasets: the IDX reader, the MNIST files embedded in the binary, folders of IDX files of
//! any image size, and image folders (`root/train/<class>/*.png`, PyTorch's `ImageFolder`).

pub mod folder;
pub mod idx;

use std::path::{Path, PathBuf};

pub use idx::{NUM_LABELS, PIXELS, SIDE};

use crate::net::Shape;

/// The file of class names an IDX folder may hold: one name per line, in label order.
pub const CLASSES_FILE: &str = "classes.txt";

/// Fashion-MNIST's class names (Zalando's README), in label order.
const FASHION_CLASSES: [&str; 10] = [
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
];

/// SHA-256 of Fashion-MNIST's decoded IDX label files (train, test): the files, wherever they
/// lie and whatever they are called, are recognised by their content.
const FASHION_LABELS_SHA256: [&str; 2] = [
    "657fbd221bfc9f4198cc14b5619cc33ec57c58dd0e47af4d99d6650759e869a7",
    "3d0e6c6ea990b53b6f8f500a41cac93881d981b315f84578b7d915342ade01e9",
];

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

/// N images of one shape with their labels, pixels as stored (u8, 0 = black).
#[derive(Clone, Debug)]
pub struct Dataset {
    /// Where it came from, for messages and metadata ("MNIST (embedded)" or a folder).
    pub source: String,
    /// Channels (1 grey, 3 RGB), height and width of every image.
    pub shape: Shape,
    /// The classes' names, in label order (a label is an index into it).
    pub classes: Vec<String>,
    /// N×(h×w×c) pixels: rows top to bottom, each pixel's channels together (the network
    /// core's channels-last layout; a PNG's too).
    pub pixels: Vec<u8>,
    /// N labels, each below `classes.len()`.
    pub labels: Vec<u8>,
}

/// The shape of an MNIST image: 1×28×28.
pub fn digits_shape() -> Shape {
    Shape {
        c: 1,
        h: SIDE,
        w: SIDE,
    }
}

/// The digits' names, "0" to "9".
pub fn digit_classes() -> Vec<String> {
    (0..NUM_LABELS).map(|d| d.to_string()).collect()
}

impl Dataset {
    /// Builds a dataset from IDX bytes (raw or gzipped), checking both files and their counts.
    /// Its classes: the digits when every label is below 10 (the MNIST family's convention),
    /// Fashion-MNIST's names for its files, else one numbered class per label up to the largest.
    pub fn from_idx_bytes(
        source: &str,
        images_name: &str,
        images: Vec<u8>,
        labels_name: &str,
        labels: Vec<u8>,
    ) -> Result<Self, DataError> {
        let (rows, cols, pixels) =
            idx::parse_images(images_name, &idx::maybe_gunzip(images_name, images)?)?;
        let labels = idx::parse_labels(labels_name, &idx::maybe_gunzip(labels_name, labels)?)?;
        let n_images = pixels.len() / (rows * cols);
        if n_images != labels.len() {
            return Err(DataError::CountMismatch {
                images: images_name.to_string(),
                n_images,
                labels: labels_name.to_string(),
                n_labels: labels.len(),
            });
        }
        let top = labels.iter().copied().max().map_or(0, |m| m as usize + 1);
        let classes = if is_fashion(&labels) {
            FASHION_CLASSES.iter().map(|c| c.to_string()).collect()
        } else if top <= NUM_LABELS {
            digit_classes()
        } else {
            (0..top).map(|c| c.to_string()).collect()
        };
        Ok(Self {
            source: source.to_string(),
            shape: Shape {
                c: 1,
                h: rows,
                w: cols,
            },
            classes,
            pixels,
            labels,
        })
    }

    /// Checks that `test` is the other split of the same data: the same image shape, and no
    /// class this (training) split does not have.
    pub fn check_test_split(&self, test: &Dataset) -> Result<(), DataError> {
        if test.shape != self.shape {
            return Err(DataError::corrupt(
                &test.source,
                format!(
                    "the test images are {}, the training images {}",
                    test.shape, self.shape
                ),
            ));
        }
        let top = test
            .labels
            .iter()
            .copied()
            .max()
            .map_or(0, |l| l as usize + 1);
        if top > self.num_classes() {
            return Err(DataError::corrupt(
                &test.source,
                format!(
                    "a test image has label {}, the training split has {} classes",
                    top - 1,
                    self.num_classes()
                ),
            ));
        }
        Ok(())
    }

    /// Values per image (h×w×c).
    pub fn image_len(&self) -> usize {
        self.shape.len()
    }

    /// How many classes the dataset names.
    pub fn num_classes(&self) -> usize {
        self.classes.len()
    }

    /// The name of class `label` (its number when the dataset names fewer).
    pub fn class_name(&self, label: usize) -> String {
        self.classes
            .get(label)
            .cloned()
            .unwrap_or_else(|| label.to_string())
    }

    /// A dataset of the same shape and classes holding `pixels` and `labels`.
    pub fn with_images(&self, source: &str, pixels: Vec<u8>, labels: Vec<u8>) -> Self {
        Self {
            source: source.to_string(),
            shape: self.shape,
            classes: self.classes.clone(),
            pixels,
            labels,
        }
    }

    /// The first `n` images (all when fewer).
    pub fn truncated(mut self, n: usize) -> Self {
        let n = n.min(self.len());
        self.labels.truncate(n);
        self.pixels.truncate(n * self.image_len());
        self
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

    /// Loads a split from a folder: an image folder (`train/` and `test/` holding one folder
    /// of images per class, [`folder`]) or a folder of IDX files under the standard names, raw
    /// or `.gz` (`train-images-idx3-ubyte[.gz]`, `t10k-labels-idx1-ubyte[.gz]`, ...), with
    /// their class names in an optional [`CLASSES_FILE`].
    pub fn from_dir(dir: &Path, split: Split) -> Result<Self, DataError> {
        if folder::is_image_folder(dir) {
            return folder::load(dir, split);
        }
        let (si, sl) = split.stems();
        let images = find_file(dir, si, "images")?;
        let labels = find_file(dir, sl, "labels")?;
        let read = |p: &Path| {
            crate::io::read_regular(p).map_err(|source| DataError::Io {
                file: p.display().to_string(),
                source,
            })
        };
        let mut data = Self::from_idx_bytes(
            &dir.display().to_string(),
            &images.display().to_string(),
            read(&images)?,
            &labels.display().to_string(),
            read(&labels)?,
        )?;
        let names = dir.join(CLASSES_FILE);
        if std::fs::symlink_metadata(&names).is_ok() {
            data.classes = read_class_names(&names, &data.labels)?;
        }
        Ok(data)
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

    /// The pixels of image `i`.
    pub fn image(&self, i: usize) -> &[u8] {
        let n = self.image_len();
        &self.pixels[i * n..(i + 1) * n]
    }

    /// Pixels of the images at `indices`, scaled to [0, 1] (raw / 255, ALGORITHM.md §1).
    /// Images `start..end` as f32 in [0, 1] (N×784).
    pub fn range_f32(&self, start: usize, end: usize) -> Vec<f32> {
        let n = self.image_len();
        self.pixels[start * n..end * n]
            .iter()
            .map(|&p| p as f32 / 255.0)
            .collect()
    }

    pub fn batch_f32(&self, indices: &[usize]) -> Vec<f32> {
        let mut out = Vec::with_capacity(indices.len() * self.image_len());
        for &i in indices {
            out.extend(self.image(i).iter().map(|&p| p as f32 / 255.0));
        }
        out
    }

    /// How many images of each class.
    pub fn label_counts(&self) -> Vec<usize> {
        let mut c = vec![0; self.num_classes()];
        for &l in &self.labels {
            if let Some(n) = c.get_mut(l as usize) {
                *n += 1;
            }
        }
        c
    }
}

/// Class names must be told apart on the command line: no name twice (any case), none
/// empty or holding a comma (`--labels` splits at commas), none called `all`.
pub(crate) fn check_class_names(file: &str, names: &[String]) -> Result<(), DataError> {
    for (i, n) in names.iter().enumerate() {
        if n.contains(',') || n.trim().is_empty() || n.eq_ignore_ascii_case("all") {
            return Err(DataError::corrupt(
                file,
                format!(
                    "class name {n:?} cannot be named in --labels (empty, a comma, or \"all\")"
                ),
            ));
        }
        // A NUL or an escape in a name would reach the terminal in every listing.
        if n.chars().any(char::is_control) {
            return Err(DataError::corrupt(
                file,
                format!(
                    "class name {:?} holds a control character",
                    crate::util::one_line(n)
                ),
            ));
        }
        if let Some(j) = names[..i].iter().position(|m| m.eq_ignore_ascii_case(n)) {
            return Err(DataError::corrupt(
                file,
                format!("class name {n:?} names classes {j} and {i}"),
            ));
        }
    }
    Ok(())
}

/// Whether `labels` are Fashion-MNIST's (either split), by their SHA-256.
fn is_fashion(labels: &[u8]) -> bool {
    use sha2::{Digest, Sha256};
    if labels.len() != 60_000 && labels.len() != 10_000 {
        return false;
    }
    let hex: String = Sha256::digest(labels)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    FASHION_LABELS_SHA256.contains(&hex.as_str())
}

/// Class names from `path` (one per line, blank lines and surrounding spaces ignored), which
/// must name every label in `labels`.
fn read_class_names(path: &Path, labels: &[u8]) -> Result<Vec<String>, DataError> {
    let file = path.display().to_string();
    let bytes = crate::io::read_regular_max(path, 1 << 20).map_err(|source| DataError::Io {
        file: file.clone(),
        source,
    })?;
    let text = String::from_utf8(bytes)
        .map_err(|_| DataError::corrupt(&file, "not UTF-8 text (one class name per line)"))?;
    // A byte-order mark some editors write is not part of the first name.
    let text = text.strip_prefix('\u{feff}').unwrap_or(&text);
    let names: Vec<String> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(String::from)
        .collect();
    check_class_names(&file, &names)?;
    if names.len() > 256 {
        return Err(DataError::corrupt(
            &file,
            format!("{} class names: at most 256", names.len()),
        ));
    }
    if let Some(l) = labels
        .iter()
        .copied()
        .max()
        .filter(|&l| l as usize >= names.len())
    {
        return Err(DataError::corrupt(
            &file,
            format!("names {} classes but the labels go up to {l}", names.len()),
        ));
    }
    Ok(names)
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
        let why = crate::io::folder_trouble(dir).unwrap_or_else(|| "no such folder".into());
        return Err(DataError::Io {
            file: dir.display().to_string(),
            source: std::io::Error::new(std::io::ErrorKind::NotFound, why),
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
