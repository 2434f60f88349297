//! Native file dialogs off the UI thread: rfd's dialogs block their caller until the user
//! answers (without a desktop portal it runs zenity and waits for it), so each one runs on a
//! thread of its own and the window keeps drawing, and the engine's images keep coming,
//! while it is open.

use std::path::PathBuf;
use std::sync::mpsc::{Receiver, TryRecvError, channel};

/// A dialog that is open, and what its answer is for.
pub struct Dialog<P> {
    purpose: P,
    answer: Receiver<Option<PathBuf>>,
}

impl<P> Dialog<P> {
    /// Runs `ask` (an rfd dialog) on its own thread; the window repaints when it returns.
    pub fn open(
        purpose: P,
        ctx: &egui::Context,
        ask: impl FnOnce() -> Option<PathBuf> + Send + 'static,
    ) -> Self {
        let (tx, answer) = channel();
        let ctx = ctx.clone();
        // If no thread can be started the sender is dropped: `poll` then reads "no answer".
        let _ = std::thread::Builder::new()
            .name("backwork-file-dialog".into())
            .spawn(move || {
                let _ = tx.send(ask());
                ctx.request_repaint();
            });
        Self { purpose, answer }
    }

    /// Once the dialog in `slot` has closed: its purpose and the path chosen (`None` when
    /// the user cancelled or no dialog could be shown); the slot is then empty.
    pub fn poll(slot: &mut Option<Self>) -> Option<(P, Option<PathBuf>)> {
        let answer = match slot.as_ref()?.answer.try_recv() {
            Ok(path) => path,
            Err(TryRecvError::Empty) => return None,
            Err(TryRecvError::Disconnected) => None,
        };
        slot.take().map(|d| (d.purpose, answer))
    }
}

/// What to tell the user when a dialog returned no path.
pub const NO_DIALOG: &str =
    "no folder or file chosen (no file dialog? install zenity or a desktop portal)";
