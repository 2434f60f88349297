//! The reference sets' disk cache: one file per (model, dataset, label), checked on open and
//! rebuilt with a notice when damaged, stale temporary files removed, the folder kept under a
//! size cap (least recently used model first), and listed or cleared for the user.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use rayon::prelude::*;

use super::frozen::{FrozenCnn, TapLayout};
use super::refs::LabelRefs;
use crate::data::Dataset;

/// Where a reference set came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RefSource {
    Memory,
    Disk,
    Built,
}

/// Reference sets for the labels (up to 256) of one (model, dataset), built on demand and,
/// with a folder, kept on disk so a later run of the same model starts warm.
#[derive(Default)]
pub struct RefCache {
    /// One slot per label (256 once [`Self::grow`] has run).
    labels: Vec<Option<Arc<LabelRefs>>>,
    /// Folder and file-name stem (model and dataset fingerprints) of the disk cache.
    disk: Option<(PathBuf, String)>,
    /// One-line notices for the user (a damaged file rebuilt), taken by [`Self::take_notices`].
    notices: Vec<String>,
    /// Labels whose disk file was read and refused (built next, not read again).
    refused: Vec<bool>,
    /// Labels read from disk by [`Self::preload`] and not yet handed out.
    preloaded: Vec<bool>,
    /// Whether a save failed (said once).
    is_unwritable: bool,
    /// The save under way on its own thread (one at a time), so that writing a built set
    /// overlaps building the next; joined by [`Self::flush`], before the next save and on drop.
    saving: Option<std::thread::JoinHandle<Saved>>,
}

/// What a save on its thread has to say.
struct Saved {
    notices: Vec<String>,
    /// The folder refused the file.
    is_unwritable: bool,
}

impl Drop for RefCache {
    fn drop(&mut self) {
        self.flush();
    }
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
/// 10 GB (three models' reference sets). A value that is not a number of GB is an error
/// naming the variable (the commands refuse to start on it; the window says it and keeps
/// 10 GB).
pub fn cache_cap() -> Result<u64, String> {
    match std::env::var_os("BACKWORK_CACHE_MAX_GB") {
        None => Ok(DEFAULT_CAP_BYTES),
        Some(v) => parse_cap(&v.to_string_lossy()),
    }
}

const DEFAULT_CAP_BYTES: u64 = 10_000_000_000;

fn parse_cap(v: &str) -> Result<u64, String> {
    let gb = v.trim().parse::<f64>().ok().filter(|g| g.is_finite());
    match gb {
        Some(g) if (0.0..=1e9).contains(&g) => Ok((g * 1e9) as u64),
        _ => Err(format!(
            "BACKWORK_CACHE_MAX_GB={v:?}: not a size in GB (a number from 0 to 1e9, such as 10; 0 keeps no reference sets on disk)"
        )),
    }
}

/// [`cache_cap`], or 10 GB where the variable is not a number (the commands have refused it
/// before they got here; the window says it once).
pub fn cache_cap_bytes() -> u64 {
    cache_cap().unwrap_or(DEFAULT_CAP_BYTES)
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
        let mut cache = Self::default();
        cache.disk = Some((dir, stem));
        cache
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
    /// A save still under way says its notices at a later call, or after [`Self::flush`].
    pub fn take_notices(&mut self) -> Vec<String> {
        if self.saving.as_ref().is_some_and(|h| h.is_finished()) {
            self.flush();
        }
        std::mem::take(&mut self.notices)
    }

    /// Waits for the set being saved, if any: its file is then in place, and its notices
    /// (the folder refused it, the cap removed another model) in [`Self::take_notices`].
    pub fn flush(&mut self) {
        let Some(h) = self.saving.take() else {
            return;
        };
        match h.join() {
            Ok(saved) => {
                self.is_unwritable |= saved.is_unwritable;
                self.notices.extend(saved.notices);
            }
            Err(_) => self
                .notices
                .push("reference cache: a save stopped unexpectedly; the set is built again on the next run".into()),
        }
    }

    /// The reference set of `label`: from memory, else from disk (checked whole, see
    /// [`LabelRefs::read_from`]), else built (and saved on a thread of its own while the caller
    /// goes on, see [`Self::flush`]: a new file, renamed into place, never written in place). A damaged file is rebuilt with a notice; a failure to save is not an
    /// error (the next run builds it again). `None` when `cancel` stopped the build.
    pub fn get_or_build(
        &mut self,
        net: &FrozenCnn,
        train: &Dataset,
        label: u8,
        cancel: &AtomicBool,
    ) -> Option<(Arc<LabelRefs>, RefSource)> {
        self.grow();
        if let Some(r) = &self.labels[label as usize] {
            let from_disk = std::mem::take(&mut self.preloaded[label as usize]);
            let source = if from_disk {
                RefSource::Disk
            } else {
                RefSource::Memory
            };
            return Some((r.clone(), source));
        }
        // Stopped: not even the disk file is read (hundreds of MB).
        if cancel.load(std::sync::atomic::Ordering::Relaxed) {
            return None;
        }
        let file = self.file(label);
        let from_disk = match &file {
            Some(f) if !self.refused[label as usize] => {
                self.read_disk(label, f, train, &net.layout(), cancel)
            }
            _ => None,
        };
        let (refs, source) = match from_disk {
            Some(r) => (Arc::new(r), RefSource::Disk),
            None => {
                let r = Arc::new(LabelRefs::build(net, train, label, cancel)?);
                if let (Some(f), Some((dir, stem))) = (file, self.disk.clone()) {
                    self.save(f, dir, stem, r.clone());
                }
                (r, RefSource::Built)
            }
        };
        self.labels[label as usize] = Some(refs.clone());
        Some((refs, source))
    }

    /// Gives every label (0 to 255) its slot.
    fn grow(&mut self) {
        if self.labels.len() < 256 {
            self.labels.resize(256, None);
            self.refused.resize(256, false);
            self.preloaded.resize(256, false);
        }
    }

    /// Reads `label`'s file `f` if it exists; a refused file gives a notice and `None`.
    fn read_disk(
        &mut self,
        label: u8,
        f: &Path,
        train: &Dataset,
        layout: &TapLayout,
        cancel: &AtomicBool,
    ) -> Option<LabelRefs> {
        let (r, notice) = read_checked(label, f, train, layout, cancel);
        if let Some(n) = notice {
            self.refused[label as usize] = true;
            self.notices.push(n);
        }
        r
    }

    /// Reads the disk files of `labels` not yet in memory, several at once (a warm start reads
    /// 3 GB; most of its time is the kernel's, which spreads over the cores). Labels without a
    /// good file (one of the network's taps, `layout`) are left to [`Self::get_or_build`].
    pub fn preload(
        &mut self,
        train: &Dataset,
        labels: &[u8],
        layout: &TapLayout,
        cancel: &std::sync::atomic::AtomicBool,
    ) {
        self.grow();
        let todo: Vec<(u8, PathBuf)> = labels
            .iter()
            .filter(|&&l| self.labels[l as usize].is_none())
            .filter_map(|&l| Some((l, self.file(l)?)))
            .collect();
        let read: Vec<(u8, Option<LabelRefs>, Option<String>)> = todo
            .par_iter()
            .map(|(l, f)| {
                // A stop (Ctrl-C) reads no more files: each is hundreds of MB, and ten of
                // them took 12-17 s to read on a loaded machine before a run could stop.
                if cancel.load(std::sync::atomic::Ordering::Relaxed) {
                    return (*l, None, None);
                }
                let (r, n) = read_checked(*l, f, train, layout, cancel);
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

    /// Writes a built set to `f` on a thread of its own (after the save before it is done).
    fn save(&mut self, f: PathBuf, dir: PathBuf, stem: String, r: Arc<LabelRefs>) {
        self.flush();
        let said = self.is_unwritable;
        let job = {
            let (f, dir, stem, r) = (f.clone(), dir.clone(), stem.clone(), r.clone());
            move || save_file(&f, &dir, &stem, &r, said)
        };
        match std::thread::Builder::new()
            .name("backwork-refs-save".into())
            .spawn(job)
        {
            Ok(h) => self.saving = Some(h),
            // No thread to be had: saved here instead.
            Err(_) => {
                let saved = save_file(&f, &dir, &stem, &r, said);
                self.is_unwritable |= saved.is_unwritable;
                self.notices.extend(saved.notices);
            }
        }
    }
}

/// Writes `r` to `f` (replacing whatever is there, by rename), after clearing stale temporary
/// files and, once written, keeps the folder under its cap, with a notice for each model
/// removed. A refused save is said unless `said` (every later label fails the same way).
fn save_file(f: &Path, dir: &Path, stem: &str, r: &LabelRefs, said: bool) -> Saved {
    let _ = std::fs::create_dir_all(dir);
    remove_stale_temps(dir);
    if std::fs::symlink_metadata(f).is_ok_and(|m| !m.is_file()) {
        // A rename would not replace a folder; anything else in the way goes.
        let _ = std::fs::remove_dir_all(f);
    }
    let mut saved = Saved {
        notices: Vec::new(),
        is_unwritable: false,
    };
    match crate::io::write_cache_file(f, |file| r.write_to(file)) {
        Err(e) => {
            saved.is_unwritable = true;
            if !said {
                saved.notices.push(format!(
                    "reference cache: cannot save there ({e}); reference sets are built again on every run (set BACKWORK_CACHE_DIR to a writable folder)"
                ));
            }
        }
        Ok(()) => {
            for gone in enforce_cap(dir, stem, cache_cap_bytes()) {
                saved.notices.push(format!(
                    "reference cache {}: removed the sets of model {gone} (the cache is capped at {:.0} GB; set BACKWORK_CACHE_MAX_GB)",
                    dir.display(),
                    cache_cap_bytes() as f64 / 1e9
                ));
            }
        }
    }
    saved
}

/// Reads cache file `f` of `label` if it exists: the set, or a notice saying why it was
/// refused (then rebuilt). A file read is marked as used (the cap removes the least recently
/// used models first).
fn read_checked(
    label: u8,
    f: &Path,
    train: &Dataset,
    layout: &TapLayout,
    cancel: &AtomicBool,
) -> (Option<LabelRefs>, Option<String>) {
    if std::fs::symlink_metadata(f).is_err() {
        return (None, None);
    }
    match LabelRefs::read_file_until(label, f, train, Some(layout), cancel) {
        // Stopped mid-read: the file is not at fault.
        Err(_) if cancel.load(std::sync::atomic::Ordering::Relaxed) => (None, None),
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

#[cfg(test)]
mod tests {
    use super::parse_cap;

    #[test]
    fn the_cap_is_a_size_in_gb_or_an_error_naming_the_variable() {
        assert_eq!(parse_cap("10"), Ok(10_000_000_000));
        assert_eq!(parse_cap(" 0.5 "), Ok(500_000_000));
        assert_eq!(parse_cap("0"), Ok(0));
        for bad in ["abc", "-1", "", "nan", "inf", "1e300", "10GB"] {
            let e = parse_cap(bad).unwrap_err();
            assert!(e.starts_with("BACKWORK_CACHE_MAX_GB="), "{bad}: {e}");
        }
    }
}
