//! Files: atomic writes (a temporary file in the same folder, then a rename), output folders
//! claimed and swapped in whole (`outdir`), reads that refuse FIFOs and devices, and errors
//! that name the file. The bottom layer: it imports nothing of the crate.

pub mod abandon;
pub mod outdir;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

/// What can go wrong writing a file.
#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    #[error("{file}: already exists (refusing to overwrite it)")]
    Exists { file: String },
    #[error("{dir}: the folder is not empty (refusing to write into it)")]
    NotEmpty { dir: String },
    /// The folder to write in is missing or is a file (`why`: [`folder_problem`]).
    #[error("{file}: {why}")]
    NoFolder { file: String, why: String },
    #[error("{file}: cannot write: {source}")]
    Io {
        file: String,
        #[source]
        source: std::io::Error,
    },
}

static COUNTER: AtomicU64 = AtomicU64::new(0);

/// The longest file name backwork writes in place: the temporary name it writes first
/// (`temp_path`: a dot, the name, a PID and a counter) must stay within the OS's 255 bytes.
pub const MAX_OUT_NAME: usize = 200;

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

/// What is wrong with `dir`, which is not a folder: "the folder D does not exist", or "F is
/// not a folder" where a file (or anything but a folder) sits at D or above it.
fn no_folder(dir: &str, is_file: bool) -> String {
    if is_file {
        format!("{dir} is not a folder")
    } else {
        format!("the folder {dir} does not exist")
    }
}

/// What is wrong with `dir` as it is on disk: "the folder D does not exist", or "F is not a
/// folder" naming the file in the way (the OS says "does not exist" or "not a directory" for
/// a path under a file); `None` if `dir` is a folder.
pub fn folder_problem(dir: &Path) -> Option<String> {
    if dir.is_dir() {
        return None;
    }
    Some(folder_trouble(dir).unwrap_or_else(|| no_folder(&dir.display().to_string(), false)))
}

/// Why `dir`, which is not a folder, cannot be one where the reason is more than its
/// absence: a path too long for the OS, a loop or an over-long chain of links at it or
/// above it, or a file in the way. `None` when it is simply missing.
pub fn folder_trouble(dir: &Path) -> Option<String> {
    if let Err(e) = std::fs::metadata(dir)
        && e.raw_os_error() == Some(libc::ENAMETOOLONG)
    {
        return Some(too_long_words(dir));
    }
    if let Some(l) = link_loop(dir) {
        return Some(link_loop_words(&l));
    }
    file_in_the_way(dir).map(|a| no_folder(&a.display().to_string(), true))
}

/// The file (or anything but a folder) at `dir` or at the nearest part of it that exists, if
/// that is what keeps `dir` from being a folder.
pub fn file_in_the_way(dir: &Path) -> Option<PathBuf> {
    dir.ancestors()
        .find(|a| !a.as_os_str().is_empty() && std::fs::metadata(a).is_ok())
        .filter(|a| !a.is_dir())
        .map(Path::to_path_buf)
}

/// The first part of `path` (itself or a folder above it) that is a loop of symbolic links,
/// if one is: the OS says "File exists" when asked to make a folder there, and "does not
/// exist" of a path under it.
pub fn link_loop(path: &Path) -> Option<PathBuf> {
    let mut parts: Vec<&Path> = path
        .ancestors()
        .filter(|a| !a.as_os_str().is_empty())
        .collect();
    parts.reverse();
    parts
        .into_iter()
        .find(|a| std::fs::metadata(a).is_err_and(|e| e.raw_os_error() == Some(libc::ELOOP)))
        .map(Path::to_path_buf)
}

/// Whether two paths lead to one file or folder (`d`, `./d/`, its absolute path, a link to
/// it); false if either does not resolve.
pub fn same_place(a: &Path, b: &Path) -> bool {
    match (std::fs::canonicalize(a), std::fs::canonicalize(b)) {
        (Ok(x), Ok(y)) => x == y,
        _ => false,
    }
}

/// How a loop of symbolic links at `at` is said; a chain too long for the OS to follow
/// (more than 40 links) that ends somewhere is said as that.
pub fn link_loop_words(at: &Path) -> String {
    if link_chain_ends(at) {
        format!(
            "{} is a chain of symbolic links longer than the system follows (40); link to the end of it directly",
            at.display()
        )
    } else {
        format!(
            "{} is a loop of symbolic links (following them comes back to a link already passed)",
            at.display()
        )
    }
}

/// Whether following the links from `at` one by one ends (on something not a link, or
/// nothing) rather than coming back to a link seen before.
fn link_chain_ends(at: &Path) -> bool {
    let tidy = |p: PathBuf| -> PathBuf {
        p.components()
            .filter(|c| !matches!(c, std::path::Component::CurDir))
            .collect()
    };
    let mut at = tidy(at.to_path_buf());
    let mut seen = std::collections::HashSet::new();
    // Far past the OS's 40: a chain this long that has not come back is said as a loop.
    for _ in 0..4096 {
        let Ok(to) = std::fs::read_link(&at) else {
            return true;
        };
        let next = tidy(parent_dir(&at).join(to));
        if !seen.insert(next.clone()) {
            return false;
        }
        at = next;
    }
    false
}

/// How a path the OS refuses as too long is said: the whole path, or one name in it.
pub fn too_long_words(path: &Path) -> String {
    match path.iter().find(|n| n.len() > 255) {
        Some(n) => format!(
            "the name {}… in it is longer than the system allows (255 bytes)",
            n.to_string_lossy().chars().take(24).collect::<String>()
        ),
        None => format!(
            "the path is longer than the system allows ({} bytes; at most 4095)",
            path.as_os_str().len()
        ),
    }
}

/// `e`, an error opening `path`, in words that name the cause where the OS's do not: the file
/// in the way of a path under it ("notes.txt is not a folder", not "Not a directory"), or a
/// loop of symbolic links.
pub fn explain_path_error(path: &Path, e: std::io::Error) -> std::io::Error {
    let why = match e.raw_os_error() {
        Some(libc::ENOTDIR) => {
            file_in_the_way(&parent_dir(path)).map(|f| format!("{} is not a folder", f.display()))
        }
        Some(libc::ELOOP) => Some(link_loop(path).map_or_else(
            || "a loop of symbolic links (a link that leads back to itself, or a chain of links too long to follow)".into(),
            |l| link_loop_words(&l),
        )),
        Some(libc::ENAMETOOLONG) => Some(too_long_words(path)),
        _ => None,
    };
    match why {
        Some(w) => std::io::Error::new(e.kind(), w),
        None => e,
    }
}

/// The folder `path` would be made in (`.` for a bare name).
pub fn parent_dir(path: &Path) -> PathBuf {
    match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    }
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

/// An advisory lock on a folder itself (`flock` of the folder), held while the value lives and
/// let go however the process ends, SIGKILL included: a sweep holds its folder with it, and a
/// run or an export its output folder, so none writes into a folder another is writing to.
#[derive(Debug)]
pub struct FolderLock(#[allow(dead_code)] std::fs::File);

/// What the folder's lock says to a second writer.
pub const FOLDER_HELD: &str = "another backwork (a sweep, a merge or a run) is writing to this folder; wait for it to end or write elsewhere";

/// Takes `dir`'s lock: `Ok(None)` if another process holds it. A file system without locks
/// (some network mounts) is let through: the lock guards against a mistake, not an attacker.
pub fn lock_folder(dir: &Path) -> std::io::Result<Option<FolderLock>> {
    let f = std::fs::File::open(dir)?;
    match f.try_lock() {
        Ok(()) => Ok(Some(FolderLock(f))),
        Err(std::fs::TryLockError::WouldBlock) => Ok(None),
        Err(std::fs::TryLockError::Error(e))
            if e.kind() == std::io::ErrorKind::Unsupported
                || e.raw_os_error() == Some(38 /* ENOSYS */)
                || e.raw_os_error() == Some(95 /* EOPNOTSUPP */) =>
        {
            Ok(Some(FolderLock(f)))
        }
        Err(std::fs::TryLockError::Error(e)) => Err(e),
    }
}

/// Writes `bytes` to `path` so that a reader sees either nothing or the whole file, and no
/// partial file is left behind on failure. With `overwrite` false an existing file is an error.
pub fn write_atomic(path: &Path, bytes: &[u8], overwrite: bool) -> Result<(), WriteError> {
    write_renamed(path, |f| f.write_all(bytes), overwrite, true)
}

/// [`write_atomic`] for a cache file that is checked when read (a checksum over the whole
/// file): it is not flushed to the disk before the rename, so the writer does not wait on the
/// disk (10 of a cold start's 31 s for the 2.8 GB of reference sets). After a crash the file
/// may be torn or empty; the check refuses it and the cache builds it again. `write` writes
/// the content to the (temporary) file.
pub fn write_cache_file(
    path: &Path,
    write: impl FnOnce(&mut std::fs::File) -> std::io::Result<()>,
) -> Result<(), WriteError> {
    write_renamed(path, write, true, false)
}

/// Writes to a temporary file beside `path` with `write`, flushed to the disk when `sync`,
/// then renames (or with `overwrite` false, links) it into place.
fn write_renamed(
    path: &Path,
    write: impl FnOnce(&mut std::fs::File) -> std::io::Result<()>,
    overwrite: bool,
    sync: bool,
) -> Result<(), WriteError> {
    let file = path.display().to_string();
    let io = |source| WriteError::Io {
        file: file.clone(),
        source,
    };
    if let Some(why) = folder_problem(&parent_dir(path)) {
        return Err(WriteError::NoFolder {
            file: file.clone(),
            why,
        });
    }
    if !overwrite && path.exists() {
        return Err(WriteError::Exists { file });
    }
    let tmp = temp_path(path);
    let _pending = abandon::Pending::new(vec![abandon::Leftover::File(tmp.clone())]);
    let result = (|| {
        let mut f = std::fs::File::create(&tmp)?;
        write(&mut f)?;
        if sync {
            f.sync_all()?;
        }
        place_file(&tmp, path, overwrite)
    })();
    if let Err(e) = result {
        let _ = std::fs::remove_file(&tmp);
        if e.kind() == std::io::ErrorKind::AlreadyExists {
            return Err(WriteError::Exists { file });
        }
        return Err(io(e));
    }
    Ok(())
}

/// Moves the finished file `tmp` to `path`, replacing a file there only if `overwrite`:
/// without it, a file that appeared at `path` meanwhile is an `AlreadyExists` error and is
/// left alone (a hard link fails if the target exists, so no race can clobber it).
pub fn place_file(tmp: &Path, path: &Path, overwrite: bool) -> std::io::Result<()> {
    if overwrite {
        return std::fs::rename(tmp, path);
    }
    match std::fs::hard_link(tmp, path) {
        Ok(()) => std::fs::remove_file(tmp),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Err(e),
        // A file system without hard links: the rename, checked just before.
        Err(_) if std::fs::symlink_metadata(path).is_ok() => Err(std::io::Error::new(
            std::io::ErrorKind::AlreadyExists,
            "already exists",
        )),
        Err(_) => std::fs::rename(tmp, path),
    }
}

/// Opens `path` for reading if it is a regular file. The open does not block (a FIFO in a
/// file's place would otherwise wait for a writer forever); anything but a regular file is
/// refused with an error that says so.
pub fn open_regular(path: &std::path::Path) -> std::io::Result<std::fs::File> {
    use std::os::unix::fs::OpenOptionsExt;
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)
        .map_err(|e| explain_path_error(path, e))?;
    if !file.metadata()?.is_file() {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            "not a regular file",
        ));
    }
    Ok(file)
}

/// Reads a whole regular file (see [`open_regular`]).
pub fn read_regular(path: &std::path::Path) -> std::io::Result<Vec<u8>> {
    read_regular_max(path, u64::MAX)
}

/// Reads a whole regular file of at most `max` bytes (a larger one is refused before it is
/// read, and a file that grows while read stops at `max` + 1 bytes and is refused).
pub fn read_regular_max(path: &std::path::Path, max: u64) -> std::io::Result<Vec<u8>> {
    use std::io::Read;
    let f = open_regular(path)?;
    let too_large = || {
        std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("larger than {max} bytes, the most this file can hold"),
        )
    };
    let len = f.metadata()?.len();
    if len > max {
        return Err(too_large());
    }
    let mut out = Vec::with_capacity(len as usize);
    f.take(max.saturating_add(1)).read_to_end(&mut out)?;
    if out.len() as u64 > max {
        return Err(too_large());
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A finished file never replaces one that appeared meanwhile unless asked to: two runs
    /// with one `--trace` file both ended, the second replacing the first's trace.
    #[test]
    fn placing_a_file_keeps_one_that_appeared_meanwhile() {
        let dir = tempfile::tempdir().unwrap();
        let (tmp, path) = (dir.path().join(".t.partial"), dir.path().join("t.jsonl"));
        std::fs::write(&tmp, b"mine").unwrap();
        std::fs::write(&path, b"theirs").unwrap();
        let e = place_file(&tmp, &path, false).unwrap_err();
        assert_eq!(e.kind(), std::io::ErrorKind::AlreadyExists);
        assert_eq!(std::fs::read(&path).unwrap(), b"theirs");
        place_file(&tmp, &path, true).unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"mine");
        assert!(!tmp.exists());
    }

    #[test]
    fn atomic_write_refuses_overwrite_and_missing_folder() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("a.bin");
        write_atomic(&p, b"one", false).unwrap();
        let e = write_atomic(&p, b"two", false).unwrap_err();
        assert!(matches!(e, WriteError::Exists { .. }), "{e}");
        assert_eq!(std::fs::read(&p).unwrap(), b"one");
        write_atomic(&p, b"two", true).unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"two");
        let e = write_atomic(&dir.path().join("no/such/x.bin"), b"", false).unwrap_err();
        assert!(e.to_string().contains("does not exist"), "{e}");
        // A file where the folder should be is said as such (it said "does not exist").
        let e = write_atomic(&p.join("x.bin"), b"", false).unwrap_err();
        assert!(e.to_string().ends_with("a.bin is not a folder"), "{e}");
        // Reading under a file names the file; a link loop is said as such (the OS's "Not a
        // directory" and "Too many levels of symbolic links" named neither).
        let e = read_regular(&p.join("x.bin")).unwrap_err();
        assert!(e.to_string().ends_with("a.bin is not a folder"), "{e}");
        let (la, lb) = (dir.path().join("la"), dir.path().join("lb"));
        std::os::unix::fs::symlink(&lb, &la).unwrap();
        std::os::unix::fs::symlink(&la, &lb).unwrap();
        let e = read_regular(&la).unwrap_err();
        assert!(e.to_string().contains("loop of symbolic links"), "{e}");
        std::fs::remove_file(&la).unwrap();
        std::fs::remove_file(&lb).unwrap();
        // Nothing but the file itself is left in the folder.
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }
}
