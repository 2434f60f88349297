//! What a command leaves half-made, removed when the process must end at once (a second
//! Ctrl-C, or a stop signal to a command with nothing to save).
//!
//! A claimed output folder's staging folder and lock, a trace's hidden file and an atomic
//! write's temporary file are registered while they exist ([`Pending`]); [`abandon`] removes
//! every one of them and then holds the registry for good, so nothing new is half-made before
//! the process exits. [`barrier`] keeps [`abandon`] out of a step that must not be cut in two
//! (an output folder's commit moves the user's own files through the staging folder).

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard};

/// One thing to remove.
#[derive(Debug, Clone)]
pub enum Leftover {
    /// A folder and all it holds.
    Tree(PathBuf),
    /// A file.
    File(PathBuf),
    /// A folder, only if it is empty.
    EmptyDir(PathBuf),
}

type Registry = Vec<(u64, Vec<Leftover>)>;

static REGISTRY: Mutex<Registry> = Mutex::new(Vec::new());
static NEXT: AtomicU64 = AtomicU64::new(1);

fn registry() -> MutexGuard<'static, Registry> {
    REGISTRY.lock().unwrap_or_else(|e| e.into_inner())
}

impl Leftover {
    /// Removes it; what is already gone is not an error.
    pub fn remove(&self) {
        let _ = match self {
            Leftover::Tree(p) => remove_tree(p),
            Leftover::File(p) => std::fs::remove_file(p),
            Leftover::EmptyDir(p) => std::fs::remove_dir(p),
        };
    }
}

/// Leftovers registered until this is dropped (or [`Pending::set`] replaces them).
#[derive(Debug)]
pub struct Pending(u64);

impl Pending {
    pub fn new(items: Vec<Leftover>) -> Self {
        let id = NEXT.fetch_add(1, Ordering::Relaxed);
        registry().push((id, items));
        Self(id)
    }

    /// Replaces what this registration removes.
    pub fn set(&self, items: Vec<Leftover>) {
        let mut r = registry();
        if let Some(e) = r.iter_mut().find(|(id, _)| *id == self.0) {
            e.1 = items;
        }
    }
}

impl Drop for Pending {
    fn drop(&mut self) {
        registry().retain(|(id, _)| *id != self.0);
    }
}

/// Held while a step must not be cut by [`abandon`]. Drop every [`Pending`] only after it.
pub fn barrier() -> MutexGuard<'static, Registry> {
    registry()
}

/// Removes folder `p` and all it holds, again while other threads of the process (an export
/// writing images in parallel) still add files to it: once it is gone, their writes fail.
fn remove_tree(p: &std::path::Path) -> std::io::Result<()> {
    for _ in 0..50 {
        match std::fs::remove_dir_all(p) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                std::thread::sleep(std::time::Duration::from_millis(5));
            }
            _ => return Ok(()),
        }
    }
    std::fs::remove_dir_all(p)
}

/// Removes everything registered and keeps the registry locked for the rest of the process;
/// returns how many registrations it undid. Call it only just before the process exits.
pub fn abandon() -> usize {
    let r = registry();
    // The latest first, as drops go: a file registered after the folder it lies in (a
    // sweep's runs.jsonl in the folder the sweep made) goes before the folder.
    for item in r.iter().rev().flat_map(|(_, items)| items) {
        item.remove();
    }
    let n = r.len();
    // Never unlocked: a write that starts now waits for the exit instead.
    std::mem::forget(r);
    n
}
