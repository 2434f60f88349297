//! Output folders that appear whole or not at all.
//!
//! A command claims its folder when it starts ([`OutDir::claim`]: the folder is made if
//! missing and a lock file in it keeps a second writer out), writes every file into a hidden
//! sibling folder, and at the end swaps that folder into place in one rename
//! ([`OutDir::commit`]). A full disk, a signal or a crash before the swap leaves the folder as
//! it was (or absent, if the command made it); after it, the folder holds exactly the new
//! files: `--force` into an earlier run's folder replaces its contents as a whole.

use std::path::{Path, PathBuf};

use super::WriteError;
use super::abandon::{Leftover, Pending};

/// The lock file inside a claimed folder; it holds the writer's PID.
pub const LOCK_FILE: &str = ".backwork-lock";

/// A claimed output folder (see the module documentation). Dropped without
/// [`Self::commit`], it removes its staging folder and lock, and the folder if it made it.
#[derive(Debug)]
pub struct OutDir {
    dest: PathBuf,
    staging: PathBuf,
    /// Whether `dest` was made by the claim (removed again if nothing is committed).
    is_made: bool,
    /// Whether the lock file is ours (only then is it removed on drop).
    is_locked: bool,
    force: bool,
    is_done: bool,
    /// The staging folder, lock and made folder, for a process that must end at once.
    pending: Option<Pending>,
    /// The folder's own lock, which a sweep takes too (the lock file does not keep it out);
    /// held, never read, until the value is dropped.
    #[allow(dead_code)]
    folder_lock: Option<super::FolderLock>,
}

fn io(path: &Path) -> impl Fn(std::io::Error) -> WriteError + '_ {
    move |source| WriteError::Io {
        file: path.display().to_string(),
        // In words where the OS's are bare ("File name too long (os error 36)").
        source: super::explain_path_error(path, source),
    }
}

impl OutDir {
    /// Claims `dest`: it must be a folder that is empty (or anything, with `force`) or not
    /// exist yet in an existing parent; no other live process may hold it.
    pub fn claim(dest: &Path, force: bool) -> Result<Self, WriteError> {
        let file = dest.display().to_string();
        let mut is_made = false;
        let folder_lock;
        // Followed if a link: a link to a folder is that folder (canonicalised below).
        match std::fs::metadata(dest) {
            Ok(m) if !m.is_dir() => {
                return Err(WriteError::Io {
                    file,
                    source: std::io::Error::other("exists and is not a folder"),
                });
            }
            Ok(_) => {
                // Another writer's folder is said as such before its contents are judged (a
                // sweep's folder was "not empty").
                folder_lock = Some(take_folder_lock(dest, &file)?);
                let entries: Vec<_> = std::fs::read_dir(dest)
                    .map_err(io(dest))?
                    .flatten()
                    .collect();
                let others = entries.iter().any(|e| e.file_name() != LOCK_FILE);
                // A folder under a name backwork writes is not an earlier output: --force
                // would replace it, and everything in it, with a file.
                if let Some(e) = entries.iter().find(|e| {
                    is_output_name(&e.file_name().to_string_lossy())
                        && e.file_type().is_ok_and(|t| t.is_dir())
                }) {
                    return Err(WriteError::Io {
                        file: e.path().display().to_string(),
                        source: std::io::Error::other(
                            "is a folder, not a file backwork wrote; move it away or write elsewhere",
                        ),
                    });
                }
                // Without --force a folder must be empty; with it, files backwork did not
                // write are kept (see `commit`).
                if others && !force {
                    return Err(WriteError::NotEmpty { dir: file });
                }
            }
            Err(_) => {
                if let Some(l) = super::link_loop(dest) {
                    return Err(WriteError::Io {
                        file,
                        source: std::io::Error::other(super::link_loop_words(&l)),
                    });
                }
                if let Some(why) = super::folder_problem(&super::parent_dir(dest)) {
                    return Err(WriteError::NoFolder { file, why });
                }
                match std::fs::create_dir(dest) {
                    Ok(()) => is_made = true,
                    // Made by another writer a moment ago: its lock says so below.
                    Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists && dest.is_dir() => {}
                    Err(e) => return Err(io(dest)(e)),
                }
                folder_lock = Some(take_folder_lock(dest, &file)?);
            }
        }
        // Symbolic links and `.` resolved: the staging folder must be a true sibling.
        let dest = std::fs::canonicalize(dest).map_err(io(dest))?;
        let mut out = Self {
            dest: dest.clone(),
            staging: PathBuf::new(),
            is_made,
            is_locked: false,
            force,
            is_done: false,
            pending: None,
            folder_lock,
        };
        out.lock()?;
        out.is_locked = true;
        out.pending = Some(Pending::new(out.leftovers()));
        let name = dest
            .file_name()
            .map_or_else(|| "out".into(), |n| n.to_string_lossy().into_owned());
        let staging =
            dest.with_file_name(format!(".{name}.backwork-{}.partial", std::process::id()));
        // A staging folder of ours from an earlier claim in this process, or of a dead one.
        let _ = std::fs::remove_dir_all(&staging);
        remove_dead_staging(&dest, &name);
        out.staging = staging;
        if let Some(p) = &out.pending {
            p.set(out.leftovers());
        }
        std::fs::create_dir(&out.staging).map_err(io(&out.staging))?;
        Ok(out)
    }

    /// What is half-made until the commit: what [`Drop`] and an end at once remove.
    fn leftovers(&self) -> Vec<Leftover> {
        let mut v = Vec::new();
        if !self.staging.as_os_str().is_empty() {
            v.push(Leftover::Tree(self.staging.clone()));
        }
        if self.is_locked {
            v.push(Leftover::File(self.dest.join(LOCK_FILE)));
            if self.is_made {
                v.push(Leftover::EmptyDir(self.dest.clone()));
            }
        }
        v
    }

    /// Writes the lock file (the folder's own lock is already held), which tells a reader of
    /// the folder which process writes to it.
    fn lock(&mut self) -> Result<(), WriteError> {
        let lock = self.dest.join(LOCK_FILE);
        let me = std::process::id();
        for _ in 0..2 {
            match std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(&lock)
            {
                Ok(mut f) => {
                    use std::io::Write;
                    return f.write_all(me.to_string().as_bytes()).map_err(io(&lock));
                }
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                    // The folder's own lock is held (by this claim), so no live writer holds
                    // this file: it was left by one killed at once, whose PID may now belong
                    // to any process (it blocked the folder for good then). Taken over.
                    let _ = std::fs::remove_file(&lock);
                }
                // Said of the folder (the lock file is ours, not the user's).
                Err(e) => return Err(io(&self.dest)(e)),
            }
        }
        Err(io(&lock)(std::io::Error::other("cannot take the lock")))
    }

    /// The folder the files are written into until [`Self::commit`].
    pub fn staging(&self) -> &Path {
        &self.staging
    }

    /// The folder claimed.
    pub fn dest(&self) -> &Path {
        &self.dest
    }

    /// `e` with paths in the staging folder shown as the folder claimed (the user never
    /// asked for the hidden one).
    pub fn in_dest(&self, e: WriteError) -> WriteError {
        let (from, to) = (
            self.staging.display().to_string(),
            self.dest.display().to_string(),
        );
        let fix = |s: String| s.replace(&from, &to);
        match e {
            WriteError::Exists { file } => WriteError::Exists { file: fix(file) },
            WriteError::NotEmpty { dir } => WriteError::NotEmpty { dir: fix(dir) },
            WriteError::NoFolder { file, why } => WriteError::NoFolder {
                file: fix(file),
                why: fix(why),
            },
            WriteError::Io { file, source } => WriteError::Io {
                file: fix(file),
                source,
            },
        }
    }

    /// Puts the staged files in place of the folder's contents in one rename. Files backwork
    /// did not write (a file manager's `.directory` that appeared meanwhile, the user's own
    /// files beside an earlier output with `force`) are kept beside the new ones; an earlier
    /// output's files go as a whole (no old PNG beside a new `results.json`).
    pub fn commit(mut self) -> Result<PathBuf, WriteError> {
        // The user's own files pass through the staging folder: an end at once (which
        // removes that folder) waits until they are back in place.
        let _barrier = super::abandon::barrier();
        if let Ok(entries) = std::fs::read_dir(&self.dest) {
            for e in entries.flatten() {
                let name = e.file_name();
                let target = self.staging.join(&name);
                let is_dir = e.file_type().is_ok_and(|t| t.is_dir());
                let is_ours = name == LOCK_FILE
                    || (self.force && !is_dir && is_output_name(&name.to_string_lossy()));
                if is_ours {
                    continue;
                }
                if std::fs::symlink_metadata(&target).is_ok() {
                    // Made under one of our names while this command ran: replacing it could
                    // lose what it holds.
                    return Err(io(&e.path())(std::io::Error::other(
                        "appeared while backwork was writing under the same name; nothing was replaced",
                    )));
                }
                let _ = std::fs::rename(e.path(), target);
            }
        }
        if let Ok(d) = std::fs::File::open(&self.staging) {
            let _ = d.sync_all();
        }
        swap(&self.staging, &self.dest).map_err(io(&self.dest))?;
        self.is_done = true;
        // The staging path now holds the folder's old contents (and the lock).
        let _ = std::fs::remove_dir_all(&self.staging);
        Ok(self.dest.clone())
    }
}

/// Whether `name` is a file backwork writes into an output folder (a run's, `worst`'s or
/// `saliency`'s): what `--force` replaces.
pub fn is_output_name(name: &str) -> bool {
    const FIXED: [&str; 7] = [
        "images.npy",
        "results.json",
        "sheet.png",
        "worst.json",
        "saliency.npy",
        "mask.npy",
        "saliency.json",
    ];
    // label3_07.png and saliency_label3_07.png.
    let is_image = |rest: &str| {
        rest.strip_suffix(".png")
            .and_then(|r| r.strip_prefix("label"))
            .and_then(|r| r.split_once('_'))
            .is_some_and(|(l, i)| {
                !l.is_empty()
                    && !i.is_empty()
                    && l.bytes().all(|b| b.is_ascii_digit())
                    && i.bytes().all(|b| b.is_ascii_digit())
            })
    };
    FIXED.contains(&name) || is_image(name) || name.strip_prefix("saliency_").is_some_and(is_image)
}

/// Removes the staging folders beside `dest` (named after `name`) whose writer is no longer
/// running (a process killed before it could clean up).
fn remove_dead_staging(dest: &Path, name: &str) {
    let Some(parent) = dest.parent() else { return };
    let Ok(entries) = std::fs::read_dir(parent) else {
        return;
    };
    let prefix = format!(".{name}.backwork-");
    for e in entries.flatten() {
        let file = e.file_name().to_string_lossy().into_owned();
        let pid = file
            .strip_prefix(&prefix)
            .and_then(|r| r.strip_suffix(".partial"))
            .and_then(|p| p.parse::<u32>().ok());
        if pid.is_some_and(|p| !super::is_process_alive(p)) {
            let _ = std::fs::remove_dir_all(e.path());
        }
    }
}

/// Exchanges folders `a` and `b` atomically where the system can (Linux `renameat2` with
/// `RENAME_EXCHANGE`), else with two renames (`b` is briefly absent).
fn swap(a: &Path, b: &Path) -> std::io::Result<()> {
    #[cfg(target_os = "linux")]
    {
        use std::os::unix::ffi::OsStrExt;
        let ca = std::ffi::CString::new(a.as_os_str().as_bytes())?;
        let cb = std::ffi::CString::new(b.as_os_str().as_bytes())?;
        // SAFETY: two valid NUL-terminated paths; renameat2 only renames.
        let r = unsafe {
            libc::renameat2(
                libc::AT_FDCWD,
                ca.as_ptr(),
                libc::AT_FDCWD,
                cb.as_ptr(),
                libc::RENAME_EXCHANGE,
            )
        };
        if r == 0 {
            return Ok(());
        }
        let e = std::io::Error::last_os_error();
        if !matches!(e.raw_os_error(), Some(libc::EINVAL | libc::ENOSYS)) {
            return Err(e);
        }
    }
    let old = a.with_extension("old");
    std::fs::rename(b, &old)?;
    if let Err(e) = std::fs::rename(a, b) {
        let _ = std::fs::rename(&old, b);
        return Err(e);
    }
    std::fs::rename(&old, a)
}

/// `dest`'s folder lock, or the error that another writer holds it.
fn take_folder_lock(dest: &Path, file: &str) -> Result<super::FolderLock, WriteError> {
    match super::lock_folder(dest) {
        Ok(Some(l)) => Ok(l),
        Ok(None) => Err(WriteError::Io {
            file: file.to_string(),
            source: std::io::Error::other(super::FOLDER_HELD),
        }),
        Err(e) => Err(io(dest)(e)),
    }
}

impl Drop for OutDir {
    fn drop(&mut self) {
        // What an end at once would remove (`leftovers`): the staging folder; the lock if it
        // is ours (another writer's is not ours to remove); the folder if the claim made it
        // and it is empty.
        if !self.is_done {
            for item in self.leftovers() {
                item.remove();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `--force` refuses a folder holding a folder under one of backwork's file names: it
    /// replaced it, and all it held, with the new file.
    #[test]
    fn force_keeps_a_folder_under_an_output_name() {
        let tmp = tempfile::tempdir().unwrap();
        let dest = tmp.path().join("out");
        std::fs::create_dir_all(dest.join("images.npy")).unwrap();
        std::fs::write(dest.join("images.npy/precious.txt"), "mine").unwrap();
        let e = OutDir::claim(&dest, true).unwrap_err().to_string();
        assert!(e.contains("images.npy") && e.contains("is a folder"), "{e}");
        assert_eq!(
            std::fs::read_to_string(dest.join("images.npy/precious.txt")).unwrap(),
            "mine"
        );
        assert!(!dest.join(LOCK_FILE).exists());
    }

    /// A file made under a staged file's name while the command ran is not replaced (it was
    /// dropped with the folder's old contents): the commit fails naming it.
    #[test]
    fn a_file_appearing_under_a_staged_name_is_kept() {
        let tmp = tempfile::tempdir().unwrap();
        let dest = tmp.path().join("out");
        let out = OutDir::claim(&dest, false).unwrap();
        std::fs::write(out.staging().join("results.json"), "new").unwrap();
        std::fs::write(dest.join("results.json"), "theirs").unwrap();
        let e = out.commit().unwrap_err().to_string();
        assert!(e.contains("results.json"), "{e}");
        assert_eq!(
            std::fs::read_to_string(dest.join("results.json")).unwrap(),
            "theirs"
        );
    }
}
