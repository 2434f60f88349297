//! Image folders in the layout of PyTorch's `ImageFolder`: `root/train/<class>/*.png` and
//! `root/test/<class>/*.png`. Class names are the folder names, sorted (as `ImageFolder`
//! sorts them), so label k is the k-th name; both splits must have the same classes. Every
//! image must have the size of the first; the dataset is grey when every image is grey (PNG
//! grey or grey with alpha) and RGB otherwise (grey images then repeated over three channels).
//! Alpha is dropped. Hidden files are skipped; any other non-PNG file is refused by name.

use std::path::{Path, PathBuf};

use super::{DataError, Dataset, Split};
use crate::net::Shape;

/// At most this many bytes of pixels in one split (a bound on memory).
const MAX_BYTES: usize = 4 << 30;

/// At most this many classes (labels are bytes).
const MAX_CLASSES: usize = 256;

/// At most this large an image file.
const MAX_FILE: u64 = 64 << 20;

fn split_dir(split: Split) -> &'static str {
    match split {
        Split::Train => "train",
        Split::Test => "test",
    }
}

/// Whether `dir` is laid out as an image folder (it has a `train/` or `test/` folder).
pub fn is_image_folder(dir: &Path) -> bool {
    dir.join("train").is_dir() || dir.join("test").is_dir()
}

fn io_err(path: &Path, source: std::io::Error) -> DataError {
    DataError::Io {
        file: path.display().to_string(),
        source,
    }
}

/// The entries of `dir` that are not hidden, sorted by name.
fn entries(dir: &Path) -> Result<Vec<PathBuf>, DataError> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).map_err(|e| io_err(dir, e))? {
        let e = e.map_err(|e| io_err(dir, e))?;
        if e.file_name().to_string_lossy().starts_with('.') {
            continue;
        }
        out.push(e.path());
    }
    out.sort();
    Ok(out)
}

/// The class folders of a split: their names and paths.
fn classes(dir: &Path) -> Result<Vec<(String, PathBuf)>, DataError> {
    let mut out = Vec::new();
    for p in entries(dir)? {
        if p.is_dir() {
            let name = p
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            out.push((name, p));
        }
    }
    if out.is_empty() {
        return Err(DataError::corrupt(
            &dir.display().to_string(),
            "no class folders (an image folder holds one folder of images per class)",
        ));
    }
    if out.len() < 2 {
        return Err(DataError::corrupt(
            &dir.display().to_string(),
            "one class folder: a classifier needs at least two classes",
        ));
    }
    if out.len() > MAX_CLASSES {
        return Err(DataError::corrupt(
            &dir.display().to_string(),
            format!("{} class folders: at most {MAX_CLASSES}", out.len()),
        ));
    }
    Ok(out)
}

/// One decoded image: its size, whether it has colour, and its grey or RGB bytes.
struct Decoded {
    w: usize,
    h: usize,
    rgb: bool,
    bytes: Vec<u8>,
}

fn decode(path: &Path) -> Result<Decoded, DataError> {
    let file = path.display().to_string();
    let bytes = crate::io::read_regular_max(path, MAX_FILE).map_err(|e| io_err(path, e))?;
    let mut reader =
        image::ImageReader::with_format(std::io::Cursor::new(bytes), image::ImageFormat::Png);
    let mut limits = image::Limits::default();
    limits.max_image_width = Some(super::idx::MAX_SIDE as u32);
    limits.max_image_height = Some(super::idx::MAX_SIDE as u32);
    limits.max_alloc = Some(256 << 20);
    reader.limits(limits);
    let img = reader
        .decode()
        .map_err(|e| DataError::corrupt(&file, format!("not a readable PNG image: {e}")))?;
    let (w, h) = (img.width() as usize, img.height() as usize);
    let rgb = img.color().has_color();
    let bytes = if rgb {
        img.to_rgb8().into_raw()
    } else {
        img.to_luma8().into_raw()
    };
    Ok(Decoded { w, h, rgb, bytes })
}

/// Loads one split of the image folder `root`.
pub fn load(root: &Path, split: Split) -> Result<Dataset, DataError> {
    let dir = root.join(split_dir(split));
    if !dir.is_dir() {
        return Err(DataError::Missing {
            dir: root.display().to_string(),
            what: "split",
            tried: format!(
                "{}/ (an image folder has train/ and test/)",
                split_dir(split)
            ),
        });
    }
    let classes = classes(&dir)?;
    // Both splits name the same classes, so a label means the same in each.
    let other = root.join(split_dir(match split {
        Split::Train => Split::Test,
        Split::Test => Split::Train,
    }));
    if other.is_dir() {
        let theirs: Vec<String> = classes_names(&other)?;
        let ours: Vec<String> = classes.iter().map(|(n, _)| n.clone()).collect();
        if theirs != ours {
            return Err(DataError::corrupt(
                &root.display().to_string(),
                format!(
                    "{}/ has classes {} but {}/ has {}",
                    split_dir(split),
                    ours.join(", "),
                    other
                        .file_name()
                        .map(|f| f.to_string_lossy())
                        .unwrap_or_default(),
                    theirs.join(", ")
                ),
            ));
        }
    }
    let names: Vec<String> = classes.iter().map(|(n, _)| n.clone()).collect();
    super::check_class_names(&dir.display().to_string(), &names)?;
    let mut files: Vec<(PathBuf, u8)> = Vec::new();
    for (label, (_, class_dir)) in classes.iter().enumerate() {
        let before = files.len();
        for p in entries(class_dir)? {
            let is_png = p.extension().is_some_and(|e| e.eq_ignore_ascii_case("png"));
            if !is_png {
                return Err(DataError::corrupt(
                    &p.display().to_string(),
                    "not a .png file (an image folder's class folders hold PNG images)",
                ));
            }
            files.push((p, label as u8));
        }
        if files.len() == before {
            return Err(DataError::corrupt(
                &class_dir.display().to_string(),
                "an empty class folder (every class needs images in each split)",
            ));
        }
    }
    // Decoded on every core, a chunk at a time so that the bound on memory holds as we go.
    let mut images: Vec<(PathBuf, Decoded)> = Vec::with_capacity(files.len());
    let mut labels = Vec::with_capacity(files.len());
    let mut total = 0usize;
    for chunk in files.chunks(512) {
        use rayon::prelude::*;
        let decoded: Vec<Result<Decoded, DataError>> =
            chunk.par_iter().map(|(p, _)| decode(p)).collect();
        for ((p, label), d) in chunk.iter().zip(decoded) {
            let d = d?;
            if let Some((first, f)) = images.first()
                && (f.w, f.h) != (d.w, d.h)
            {
                return Err(DataError::corrupt(
                    &p.display().to_string(),
                    format!(
                        "{}×{} pixels where {} has {}×{}: every image must have one size",
                        d.w,
                        d.h,
                        first.display(),
                        f.w,
                        f.h
                    ),
                ));
            }
            total += d.w * d.h * 3;
            if total > MAX_BYTES {
                return Err(DataError::corrupt(
                    &dir.display().to_string(),
                    format!("more than {MAX_BYTES} bytes of pixels"),
                ));
            }
            images.push((p.clone(), d));
            labels.push(*label);
        }
    }
    let Some((_, first)) = images.first() else {
        return Err(DataError::corrupt(
            &dir.display().to_string(),
            "no images in any class folder",
        ));
    };
    let (w, h) = (first.w, first.h);
    let rgb = images.iter().any(|(_, d)| d.rgb);
    let c = if rgb { 3 } else { 1 };
    let mut pixels = Vec::with_capacity(images.len() * w * h * c);
    for (_, d) in &images {
        if rgb && !d.rgb {
            pixels.extend(d.bytes.iter().flat_map(|&g| [g, g, g]));
        } else {
            pixels.extend_from_slice(&d.bytes);
        }
    }
    Ok(Dataset {
        source: root.display().to_string(),
        shape: Shape { c, h, w },
        classes: classes.into_iter().map(|(n, _)| n).collect(),
        pixels,
        labels,
    })
}

fn classes_names(dir: &Path) -> Result<Vec<String>, DataError> {
    Ok(classes(dir)?.into_iter().map(|(n, _)| n).collect())
}
