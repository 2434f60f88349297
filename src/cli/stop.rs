//! Stopping long commands. SIGINT (Ctrl-C), SIGTERM (`kill`, `timeout`, a job scheduler's
//! cancel) and SIGHUP (a closed terminal) all set one flag that every long command polls at
//! least once a second; the command then writes what it has and returns [`Stopped`], which
//! `main` turns into the exit status 128 + the signal's number. A second Ctrl-C ends the
//! process at once (exit 130), for a user who will not wait for the write: what the command
//! had half-made is removed first (`io::abandon`), and one line says so.

use std::io::Write;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};

use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};

/// The signals that stop a command, with their names.
const SIGNALS: [(i32, &str); 3] = [(SIGINT, "SIGINT"), (SIGTERM, "SIGTERM"), (SIGHUP, "SIGHUP")];

struct Flags {
    stop: Arc<AtomicBool>,
    /// Set by a command with nothing to save: a signal then ends the process at once.
    exit_now: Arc<AtomicBool>,
    /// The number of the last signal received, 0 before any.
    which: Arc<AtomicUsize>,
}

static FLAGS: OnceLock<Flags> = OnceLock::new();

/// The flag the stop signals set, installing the handlers on first use.
pub fn stop_flag() -> anyhow::Result<Arc<AtomicBool>> {
    if let Some(f) = FLAGS.get() {
        return Ok(f.stop.clone());
    }
    let f = Flags {
        stop: Arc::new(AtomicBool::new(false)),
        exit_now: Arc::new(AtomicBool::new(false)),
        which: Arc::new(AtomicUsize::new(0)),
    };
    let install = || -> std::io::Result<()> {
        // Counted in the handler: the thread below may wake once for two quick Ctrl-Cs.
        let interrupts = Arc::new(AtomicUsize::new(0));
        let counter = interrupts.clone();
        // SAFETY: the action only adds to an atomic, which is async-signal-safe.
        unsafe {
            signal_hook::low_level::register(SIGINT, move || {
                counter.fetch_add(1, Ordering::SeqCst);
            })?;
        }
        for (sig, _) in SIGNALS {
            signal_hook::flag::register_usize(sig, f.which.clone(), sig as usize)?;
            signal_hook::flag::register(sig, f.stop.clone())?;
        }
        // Ending at once is done on a thread of its own, not in the handler: it removes what
        // the command left half-made (a staging folder and its lock, a trace's hidden file,
        // a temporary file) and says so, which a handler may not do.
        let mut signals = signal_hook::iterator::Signals::new(SIGNALS.map(|(s, _)| s))?;
        let exit_now = f.exit_now.clone();
        std::thread::Builder::new()
            .name("signals".into())
            .spawn(move || {
                let mut said = false;
                for sig in signals.forever() {
                    if interrupts.load(Ordering::SeqCst) >= 2 {
                        end_now(SIGINT, "a second ");
                    }
                    if exit_now.load(Ordering::Relaxed) {
                        end_now(sig, "");
                    }
                    if sig == SIGINT && !said {
                        said = true;
                        let _ = writeln!(
                            std::io::stderr(),
                            "stopping: writing what there is (Ctrl-C again ends at once, dropping what is not yet written)"
                        );
                    }
                }
            })?;
        Ok(())
    };
    install().map_err(|e| anyhow::anyhow!("cannot install the signal handlers: {e}"))?;
    let stop = f.stop.clone();
    // Only the main thread installs them; were it ever raced, both flags would be set by
    // the signals alike.
    let _ = FLAGS.set(f);
    Ok(stop)
}

/// Ends the process with 128 + `sig` after removing what was left half-made, in one line.
fn end_now(sig: i32, nth: &str) -> ! {
    let undone = crate::io::abandon::abandon();
    let name = SIGNALS
        .into_iter()
        .find(|(s, _)| *s == sig)
        .map_or("a signal", |(_, n)| n);
    let what = if undone > 0 {
        "ended at once; what it was still writing was removed, nothing half-written is left"
    } else {
        "ended at once"
    };
    // Not eprintln!: after SIGHUP the terminal may be gone, and a failed write must not panic.
    let _ = writeln!(std::io::stderr(), "error: stopped by {nth}{name}: {what}");
    std::process::exit(128 + sig)
}

/// From now on a stop signal ends the process at once with 128 + the signal (for a command
/// in a long computation with nothing to save, such as `cost`; its files are written
/// atomically, so none is left half-written). A signal that came before also ends it now.
pub fn exit_on_signal() {
    if let Some(f) = FLAGS.get() {
        f.exit_now.store(true, Ordering::Relaxed);
        if let Some((sig, _)) = signal().filter(|_| is_stopped()) {
            end_now(sig, "");
        }
    }
}

/// Whether a stop signal came.
pub fn is_stopped() -> bool {
    FLAGS.get().is_some_and(|f| f.stop.load(Ordering::Relaxed))
}

/// The signal that stopped the command, if one did: (number, name).
pub fn signal() -> Option<(i32, &'static str)> {
    let n = FLAGS.get()?.which.load(Ordering::Relaxed) as i32;
    SIGNALS.into_iter().find(|(s, _)| *s == n)
}

/// A command stopped by a signal, after writing what it had.
#[derive(Debug, thiserror::Error)]
#[error("stopped by {name}: {what}")]
pub struct Stopped {
    pub signal: i32,
    pub name: &'static str,
    pub what: String,
}

impl Stopped {
    /// The exit status the shell convention gives a command a signal ended.
    pub fn exit_code(&self) -> u8 {
        (128 + self.signal).clamp(0, 255) as u8
    }
}

/// The error for a command that a signal stopped; `what` says what was written.
pub fn stopped(what: impl Into<String>) -> anyhow::Error {
    let (signal, name) = signal().unwrap_or((SIGINT, "SIGINT"));
    Stopped {
        signal,
        name,
        what: what.into(),
    }
    .into()
}
