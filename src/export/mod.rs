//! Writing files: atomic (temporary file in the same folder, then rename), never a silent
//! overwrite, and errors that name the file.

pub mod font;
pub mod npy;
pub mod outdir;
pub mod report;
pub mod run;
pub mod sheet;
pub mod worst;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

/// What can go wrong writing a file.
#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    #[error("{file}: already exists (refusing to overwrite it)")]
    Exists { file: String },
    #[error("{dir}: the folder is not empty (refusing to write into it)")]
    NotEmpty { dir: String },
    #[error("{file}: the folder {dir} does not exist")]
    NoFolder { file: String, dir: String },
    #[error("{file}: cannot write: {source}")]
    Io {
        file: String,
        #[source]
        source: std::io::Error,
    },
}

static COUNTER: AtomicU64 = AtomicU64::new(0);

fn temp_path(path: &Path) -> PathBuf {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "out".into());
    let unique = format!(
        ".{name}.{}-{}.tmp",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    );
    path.with_file_name(unique)
}

/// The PID of the process that writes temporary file `name` (a name `temp_path` makes:
/// `.<file>.<pid>-<n>.tmp`), if it is one.
pub fn temp_writer_pid(name: &str) -> Option<u32> {
    let rest = name.strip_prefix('.')?.strip_suffix(".tmp")?;
    let (_, tail) = rest.rsplit_once('.')?;
    let (pid, n) = tail.split_once('-')?;
    n.parse::<u64>().ok()?;
    pid.parse().ok()
}

/// Whether process `pid` is running (on this machine; a PID of another process that reused
/// the number counts as running, which only keeps a stale file a little longer).
pub fn is_process_alive(pid: u32) -> bool {
    let Ok(pid) = libc::pid_t::try_from(pid) else {
        return false;
    };
    if pid <= 0 {
        return false;
    }
    // SAFETY: signal 0 only checks that the process exists; nothing is sent.
    let r = unsafe { libc::kill(pid, 0) };
    r == 0 || std::io::Error::last_os_error().raw_os_error() == Some(libc::EPERM)
}

/// Writes `bytes` to `path` so that a reader sees either nothing or the whole file, and no
/// partial file is left behind on failure. With `overwrite` false an existing file is an error.
pub fn write_atomic(path: &Path, bytes: &[u8], overwrite: bool) -> Result<(), ExportError> {
    let file = path.display().to_string();
    let io = |source| ExportError::Io {
        file: file.clone(),
        source,
    };
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    if !dir.is_dir() {
        return Err(ExportError::NoFolder {
            file: file.clone(),
            dir: dir.display().to_string(),
        });
    }
    if !overwrite && path.exists() {
        return Err(ExportError::Exists { file });
    }
    let tmp = temp_path(path);
    let result = (|| {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        if overwrite {
            std::fs::rename(&tmp, path)
        } else {
            // A hard link fails if the target appeared meanwhile: no race can clobber it.
            match std::fs::hard_link(&tmp, path) {
                Ok(()) => std::fs::remove_file(&tmp),
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Err(e),
                Err(_) => std::fs::rename(&tmp, path),
            }
        }
    })();
    if let Err(e) = result {
        let _ = std::fs::remove_file(&tmp);
        if e.kind() == std::io::ErrorKind::AlreadyExists {
            return Err(ExportError::Exists { file });
        }
        return Err(io(e));
    }
    Ok(())
}

/// Encodes 8-bit grey pixels as PNG bytes.
pub fn png_bytes(width: u32, height: u32, grey: &[u8]) -> Result<Vec<u8>, image::ImageError> {
    let img = image::GrayImage::from_raw(width, height, grey.to_vec()).ok_or_else(mismatch)?;
    let mut out = Vec::new();
    img.write_to(&mut std::io::Cursor::new(&mut out), image::ImageFormat::Png)?;
    Ok(out)
}

/// Encodes 8-bit RGB pixels (3 bytes each) as PNG bytes.
pub fn rgb_png_bytes(width: u32, height: u32, rgb: &[u8]) -> Result<Vec<u8>, image::ImageError> {
    let img = image::RgbImage::from_raw(width, height, rgb.to_vec()).ok_or_else(mismatch)?;
    let mut out = Vec::new();
    img.write_to(&mut std::io::Cursor::new(&mut out), image::ImageFormat::Png)?;
    Ok(out)
}

fn mismatch() -> image::ImageError {
    image::ImageError::Parameter(image::error::ParameterError::from_kind(
        image::error::ParameterErrorKind::DimensionMismatch,
    ))
}

/// An image (784 values in [0, 1]) in grey with the pixels of `mask` in red: the saliency
/// overlay, as RGB bytes.
pub fn overlay_rgb(pixels: &[f32], mask: &[bool]) -> Vec<u8> {
    pixels
        .iter()
        .zip(mask)
        .flat_map(|(&v, &m)| {
            let g = sheet::to_u8(v);
            if m { [255, g / 3, g / 3] } else { [g, g, g] }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn atomic_write_refuses_overwrite_and_missing_folder() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("a.bin");
        write_atomic(&p, b"one", false).unwrap();
        let e = write_atomic(&p, b"two", false).unwrap_err();
        assert!(matches!(e, ExportError::Exists { .. }), "{e}");
        assert_eq!(std::fs::read(&p).unwrap(), b"one");
        write_atomic(&p, b"two", true).unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"two");
        let e = write_atomic(&dir.path().join("no/such/x.bin"), b"", false).unwrap_err();
        assert!(e.to_string().contains("does not exist"), "{e}");
        // Nothing but the file itself is left in the folder.
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }
}
