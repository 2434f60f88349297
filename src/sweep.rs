//! `backwork sweep`'s core: a grid of runs (models × settings × seeds), each run's outcome as
//! one line of `runs.jsonl`, resuming a stopped sweep, and merging the files of shards.
//!
//! A line is appended only when its run has finished, in one write followed by a sync, so a
//! stopped sweep leaves whole lines (a line torn by a crash is dropped when the file is read
//! again, and cut off before the next line is appended).

use std::collections::{BTreeMap, HashSet};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use serde::{Deserialize, Serialize};

use crate::backwork::engine::{Engine, StepEvent};
use crate::backwork::frozen::FrozenCnn;
use crate::backwork::measure::{Outcome, run_to_end};
use crate::backwork::refs::LabelRefs;
use crate::backwork::{Init, Settings};
use crate::export::npy::read_start_images;
use crate::export::run::export_images;

/// The file a sweep appends to in its folder.
pub const RUNS_FILE: &str = "runs.jsonl";

/// What can go wrong with a sweep's files.
#[derive(Debug, thiserror::Error)]
pub enum SweepError {
    #[error("{file}: {reason}")]
    File { file: String, reason: String },
    #[error(transparent)]
    Engine(#[from] crate::backwork::engine::EngineError),
    #[error("--init: {0}")]
    Start(#[from] crate::export::npy::NpyError),
}

/// Runs one grid point to its end: the engine on `net` with `refs` (every label of
/// `settings`), from the start images `settings.init` names. Returns the outcome and the
/// largest difference between an image's p(label) and its 8-bit PNG's, re-classified.
pub fn run_point(
    net: &FrozenCnn,
    refs: &[Arc<LabelRefs>],
    settings: &Settings,
    cancel: &AtomicBool,
    on_step: &mut dyn FnMut(&StepEvent),
) -> Result<(Outcome, f32), SweepError> {
    let mut engine = Engine::new(net.clone(), refs, settings.clone())?;
    if let Init::File(path) = &settings.init {
        let x = read_start_images(path, engine.states().len(), &net.input_shape())?;
        engine.set_images(&x)?;
    }
    let outcome = run_to_end(&mut engine, cancel, on_step)?;
    let images = export_images(engine.rows(), settings.threshold, None, |x, l| {
        net.p_label_as_png(x, l)
    });
    let png_gap = images
        .iter()
        .filter_map(|i| i.p_label_png.map(|q| (q - i.p_label).abs()))
        .fold(0.0f32, f32::max);
    Ok((outcome, png_gap))
}

fn file_error(path: &Path, reason: impl ToString) -> SweepError {
    SweepError::File {
        file: path.display().to_string(),
        reason: reason.to_string(),
    }
}

/// One line of `runs.jsonl`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SweepRow {
    /// Index of the grid point (the unsharded sweep's order).
    pub point: usize,
    /// Identifies the grid point: the model as given and every setting; a resumed sweep skips
    /// the points whose key is already in the file.
    pub key: String,
    /// The model as given to `--models` ("shipped" for the embedded one).
    pub model: String,
    /// The model file's absolute path when the run was made (none for the shipped model, and
    /// in rows of earlier versions): a resumed sweep run from another folder finds the file
    /// by it, where the name as given may lead elsewhere. Not part of a row's outcome: shards
    /// merged from other machines differ in it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model_file: Option<String>,
    pub model_sha256: String,
    /// The normalisation the network's inputs went through (`--input-mean`/`--input-std`,
    /// or its file's), as `(x − 0.1307) / 0.3081`; none for the images as they are.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub input_norm: Option<String>,
    pub seed: u64,
    /// The preset the settings equal, or "custom".
    pub preset: String,
    pub settings: Settings,
    #[serde(flatten)]
    pub outcome: Outcome,
    /// p(label) of the final images as 8-bit PNGs, re-classified: the largest difference from
    /// the engine's p(label) over the images.
    pub png_gap: f32,
    /// Wall time of the run, reference sets excluded.
    pub seconds: f64,
}

/// The key of a grid point: the model and every setting, as canonical JSON.
pub fn point_key(model: &str, settings: &Settings) -> String {
    let s = serde_json::to_string(settings).unwrap_or_default();
    format!("{model} {s}")
}

/// Which grid points shard `index` of `count` (1-based, as a job array numbers its tasks)
/// runs: every `count`-th from the `index`-th.
pub fn in_shard(point: usize, shard: (usize, usize)) -> bool {
    point % shard.1 == shard.0 - 1
}

/// Parses `I/N` with 1 ≤ I ≤ N.
pub fn parse_shard(text: &str) -> Result<(usize, usize), String> {
    let (i, n) = text
        .split_once('/')
        .ok_or_else(|| format!("--shard: {text:?} is not I/N (for example 1/4)"))?;
    let i: usize = i
        .trim()
        .parse()
        .map_err(|_| format!("--shard: {text:?} is not I/N"))?;
    let n: usize = n
        .trim()
        .parse()
        .map_err(|_| format!("--shard: {text:?} is not I/N"))?;
    if n == 0 || i == 0 || i > n {
        return Err(format!("--shard: {text:?} needs 1 <= I <= N"));
    }
    Ok((i, n))
}

/// Whether `path` (followed if a link) is a regular file: false if it does not exist, an
/// error if it is anything else (a folder, a FIFO that would block, a device that never
/// ends).
fn is_regular_file(path: &Path) -> Result<bool, SweepError> {
    match std::fs::metadata(path) {
        Ok(m) if m.is_file() => Ok(true),
        Ok(_) => Err(file_error(
            path,
            "is not a regular file (a sweep's runs.jsonl is one)",
        )),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(file_error(path, crate::io::explain_path_error(path, e))),
    }
}

/// The rows of a `runs.jsonl` (none if the file does not exist). A last line without its
/// newline is a run torn by a crash and is left out; any other line that does not parse is
/// an error naming the file and line.
pub fn read_rows(path: &Path) -> Result<Vec<SweepRow>, SweepError> {
    // Only a regular file, opened without blocking (a FIFO or a device is refused).
    let text = match crate::io::read_regular(path) {
        Ok(b) => String::from_utf8(b).map_err(|_| file_error(path, "not UTF-8 text"))?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(file_error(path, e)),
    };
    let whole = match text.rfind('\n') {
        Some(i) => &text[..=i],
        None => "",
    };
    whole
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(i, l)| {
            serde_json::from_str(l)
                .map_err(|e| file_error(path, format!("line {}: not a sweep row: {e}", i + 1)))
        })
        .collect()
}

/// Cuts a torn last line (one without its newline) off `path`, so that the next append
/// starts a line of its own.
pub fn drop_torn_tail(path: &Path) -> Result<(), SweepError> {
    let bytes = match crate::io::read_regular(path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(file_error(path, e)),
    };
    if bytes.is_empty() || bytes.ends_with(b"\n") {
        return Ok(());
    }
    let keep = bytes.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
    crate::io::write_atomic(path, &bytes[..keep], true).map_err(|e| file_error(path, e))
}

/// A sweep's `runs.jsonl`, open for appending from the sweep's start to its end. Every row
/// goes into the file the sweep opened: a sweep folder moved or replaced meanwhile takes its
/// rows with it (they were written by name, into the new folder beside another sweep's), and
/// a folder where the file cannot be written fails before the first run, not after it.
#[derive(Debug)]
pub struct RunsFile {
    file: std::fs::File,
    path: PathBuf,
    /// While this open made the file and no row is in it yet: the empty file, removed when
    /// the sweep ends (so a sweep stopped before its first row leaves its folder as it was).
    made_empty: Option<crate::io::abandon::Pending>,
}

impl RunsFile {
    /// Opens (or makes) `path` for appending; anything but a regular file is refused, and the
    /// open does not block on a FIFO.
    pub fn open(path: &Path) -> Result<Self, SweepError> {
        use std::os::unix::fs::OpenOptionsExt;
        let existed = is_regular_file(path)?;
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .custom_flags(libc::O_NONBLOCK)
            .open(path)
            .map_err(|e| file_error(path, crate::io::explain_path_error(path, e)))?;
        let is_file = file.metadata().map_err(|e| file_error(path, e))?.is_file();
        if !is_file {
            return Err(file_error(
                path,
                "is not a regular file (a sweep's runs.jsonl is one)",
            ));
        }
        let made_empty = (!existed).then(|| {
            crate::io::abandon::Pending::new(vec![crate::io::abandon::Leftover::File(
                path.to_path_buf(),
            )])
        });
        Ok(Self {
            file,
            path: path.to_path_buf(),
            made_empty,
        })
    }

    /// Appends one row as one line, synced to disk before it returns. A file deleted during
    /// the sweep is an error: its rows would go nowhere.
    pub fn append(&mut self, row: &SweepRow) -> Result<(), SweepError> {
        use std::os::unix::fs::MetadataExt;
        let path = &self.path;
        let links = self
            .file
            .metadata()
            .map_err(|e| file_error(path, e))?
            .nlink();
        if links == 0 {
            return Err(file_error(
                path,
                format!(
                    "was deleted during the sweep; grid point {}'s row was not written: run the same command again to go on",
                    row.point
                ),
            ));
        }
        // Renamed within its folder: the rows would go on into a file a resumed sweep does
        // not read. (A folder moved whole takes the file with it, and that is fine.)
        let now = self.current_path();
        if now.file_name() != self.path.file_name() {
            return Err(file_error(
                path,
                format!(
                    "was renamed to {} during the sweep; grid point {}'s row was not written: name it {} again and run the same command to go on",
                    now.display(),
                    row.point,
                    RUNS_FILE
                ),
            ));
        }
        let mut line = serde_json::to_string(row).map_err(|e| file_error(path, e))?;
        line.push('\n');
        self.file
            .write_all(line.as_bytes())
            .and_then(|_| self.file.sync_data())
            .map_err(|e| file_error(path, e))?;
        self.made_empty = None;
        Ok(())
    }
}

impl RunsFile {
    /// Where the open file is now (its folder may have been moved during the sweep), as the
    /// OS tracks it; the path it was opened as where the OS does not say.
    pub fn current_path(&self) -> PathBuf {
        use std::os::fd::AsRawFd;
        let link = PathBuf::from(format!("/proc/self/fd/{}", self.file.as_raw_fd()));
        match std::fs::read_link(link) {
            // Said as it was given while it is still there.
            Ok(p) if crate::io::same_place(&p, &self.path) => self.path.clone(),
            Ok(p) if p.is_absolute() && !p.to_string_lossy().ends_with(" (deleted)") => p,
            _ => self.path.clone(),
        }
    }
}

impl Drop for RunsFile {
    fn drop(&mut self) {
        use std::os::unix::fs::MetadataExt;
        if self.made_empty.is_none() {
            return;
        }
        // Only the empty file this open made, still under its name.
        let ours = match (self.file.metadata(), std::fs::metadata(&self.path)) {
            (Ok(a), Ok(b)) => a.dev() == b.dev() && a.ino() == b.ino() && b.len() == 0,
            _ => false,
        };
        if ours {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

/// What makes two runs the same run, whatever the model was called: its file's sha256 and
/// every setting. A resumed sweep that names a model another way (`m`, `/abs/m`, a copy, a
/// link) finds its rows by this, where the key (the name) missed them and ran them again.
pub fn run_id(model_sha256: &str, settings: &Settings) -> String {
    let s = serde_json::to_string(settings).unwrap_or_default();
    format!("{model_sha256} {s}")
}

/// The runs already in a sweep's file, by [`run_id`].
pub fn done_runs(rows: &[SweepRow]) -> HashSet<String> {
    rows.iter()
        .map(|r| run_id(&r.model_sha256, &r.settings))
        .collect()
}

/// Takes the sweep folder's lock ([`crate::io::lock_folder`]), or fails naming the folder if
/// another sweep, merge or run holds it: two sweeps into one folder ran the same points and
/// interleaved their rows.
pub fn lock_folder(dir: &Path) -> Result<crate::io::FolderLock, SweepError> {
    match crate::io::lock_folder(dir) {
        Ok(Some(l)) => Ok(l),
        Ok(None) => Err(file_error(dir, crate::io::FOLDER_HELD)),
        Err(e) => Err(file_error(dir, e)),
    }
}

/// Joins the `runs.jsonl` of several folders (shards of one sweep) into one list ordered by
/// grid point; a point found in several files is kept once if its rows agree (all but the
/// wall time), and is an error naming both files if they do not: which one is right is not
/// for the merge to guess.
pub fn merge(dirs: &[PathBuf]) -> Result<Vec<SweepRow>, SweepError> {
    let mut by_key: BTreeMap<(usize, String), (SweepRow, PathBuf)> = BTreeMap::new();
    for d in dirs {
        let path = d.join(RUNS_FILE);
        if !is_regular_file(&path)? {
            return Err(file_error(
                &path,
                "missing (a sweep folder holds runs.jsonl)",
            ));
        }
        for r in read_rows(&path)? {
            match by_key.get(&(r.point, r.key.clone())) {
                Some((kept, from)) => {
                    let same = SweepRow {
                        seconds: kept.seconds,
                        model_file: kept.model_file.clone(),
                        ..r.clone()
                    };
                    if &same != kept {
                        return Err(file_error(
                            &path,
                            format!(
                                "grid point {} differs from its row in {} (same settings, another outcome); merge only shards of one sweep",
                                r.point,
                                from.display()
                            ),
                        ));
                    }
                }
                None => {
                    by_key.insert((r.point, r.key.clone()), (r, path.clone()));
                }
            }
        }
    }
    Ok(by_key.into_values().map(|(r, _)| r).collect())
}

/// The rows as `runs.jsonl` text.
pub fn rows_text(rows: &[SweepRow]) -> String {
    rows.iter()
        .filter_map(|r| serde_json::to_string(r).ok())
        .map(|l| l + "\n")
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shards_split_the_grid_without_overlap() {
        let shards = [(1, 3), (2, 3), (3, 3)];
        for p in 0..20 {
            assert_eq!(shards.iter().filter(|s| in_shard(p, **s)).count(), 1);
        }
        assert_eq!(parse_shard("2/4"), Ok((2, 4)));
        for bad in ["0/4", "5/4", "1/0", "x", "1/x"] {
            assert!(parse_shard(bad).unwrap_err().starts_with("--shard"));
        }
    }

    fn a_row(point: usize) -> SweepRow {
        SweepRow {
            point,
            key: format!("k{point}"),
            model: "m".into(),
            model_file: None,
            model_sha256: "0".repeat(64),
            input_norm: None,
            seed: 0,
            preset: "robust".into(),
            settings: Settings::default(),
            outcome: Outcome {
                images: 2,
                fooled: 2,
                median_steps: Some(1.0),
                min_p: 0.9995,
                min_p_by_label: vec![(3, 0.9995)],
                reinits: 0,
                steps: 1,
                end_reason: "threshold".into(),
                nearest_distance: Default::default(),
                pixel_range: [0.0, 1.0],
            },
            png_gap: 0.0,
            seconds: 0.0,
        }
    }

    /// The rows go into the file the sweep opened: a sweep folder moved during the sweep takes
    /// them along (they were written by name, into whatever folder then had the name), and a
    /// file deleted meanwhile is an error, not rows written nowhere.
    #[test]
    fn rows_follow_a_moved_sweep_folder_and_a_deleted_file_is_an_error() {
        let tmp = tempfile::tempdir().unwrap();
        let (dir, moved) = (tmp.path().join("sw"), tmp.path().join("sw-old"));
        std::fs::create_dir(&dir).unwrap();
        let mut f = RunsFile::open(&dir.join(RUNS_FILE)).unwrap();
        f.append(&a_row(0)).unwrap();
        std::fs::rename(&dir, &moved).unwrap();
        std::fs::create_dir(&dir).unwrap();
        f.append(&a_row(1)).unwrap();
        let rows = read_rows(&moved.join(RUNS_FILE)).unwrap();
        assert_eq!(rows.iter().map(|r| r.point).collect::<Vec<_>>(), [0, 1]);
        assert!(!dir.join(RUNS_FILE).exists());
        // Where the sweep's closing line says its rows are: the moved folder (it named the
        // old one).
        assert_eq!(
            f.current_path(),
            std::fs::canonicalize(moved.join(RUNS_FILE)).unwrap()
        );
        // Renamed within its folder: an error (the rows went on into the renamed file, which
        // a resumed sweep does not read), and nothing more is written to it.
        let renamed = moved.join("renamed.jsonl");
        std::fs::rename(moved.join(RUNS_FILE), &renamed).unwrap();
        let e = f.append(&a_row(2)).unwrap_err().to_string();
        assert!(
            e.contains("was renamed to") && e.contains("renamed.jsonl") && e.contains("point 2"),
            "{e}"
        );
        assert_eq!(read_rows(&renamed).unwrap().len(), 2);
        std::fs::rename(&renamed, moved.join(RUNS_FILE)).unwrap();
        std::fs::remove_file(moved.join(RUNS_FILE)).unwrap();
        let e = f.append(&a_row(2)).unwrap_err().to_string();
        assert!(
            e.contains("deleted during the sweep") && e.contains("point 2"),
            "{e}"
        );
    }

    /// A `runs.jsonl` that is not a regular file is refused before it is opened: a FIFO
    /// blocked the sweep for good and a link to /dev/zero read until memory ran out.
    #[cfg(unix)]
    #[test]
    fn a_runs_file_that_is_not_a_regular_file_is_refused() {
        let tmp = tempfile::tempdir().unwrap();
        let fifo = tmp.path().join("fifo.jsonl");
        let c = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
        // SAFETY: a valid NUL-terminated path.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
        let zero = tmp.path().join("zero.jsonl");
        std::os::unix::fs::symlink("/dev/zero", &zero).unwrap();
        for path in [&fifo, &zero, &tmp.path().to_path_buf()] {
            for e in [
                read_rows(path).unwrap_err(),
                drop_torn_tail(path).unwrap_err(),
            ] {
                assert!(e.to_string().contains("not a regular file"), "{e}");
            }
        }
        assert!(
            read_rows(&tmp.path().join("absent.jsonl"))
                .unwrap()
                .is_empty()
        );
    }
}
