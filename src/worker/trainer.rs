//! The app's training thread: trains a fresh network ([`crate::model::train::train`]) off the
//! UI thread, streams its progress, stops when cancelled, and hands back the finished model
//! with its weight-file metadata.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, channel};
use std::thread::JoinHandle;
use std::time::Instant;

use crate::data::Dataset;
use crate::model::Cnn;
use crate::model::train::{TrainConfig, TrainEvent, train};

/// A model the thread finished training (or stopped early when cancelled).
pub struct TrainedModel {
    pub cnn: Cnn,
    /// What its weight file will say about it (recipe, accuracy, date).
    pub metadata: HashMap<String, String>,
    /// `None` when stopped before the end.
    pub test_accuracy: Option<f64>,
    pub epochs_completed: usize,
    pub is_cancelled: bool,
}

/// What the training thread tells the UI.
pub enum TrainerEvent {
    Progress(TrainEvent),
    Done(Box<TrainedModel>),
    Failed(String),
}

/// The handle the UI keeps; dropping it cancels and joins the thread.
pub struct Trainer {
    pub events: Receiver<TrainerEvent>,
    pub config: TrainConfig,
    cancel: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
    pub started: Instant,
}

impl Trainer {
    /// Starts training with `cfg` on `train`, evaluating on `test` after each epoch; `wake` is
    /// called after every event.
    pub fn spawn(
        cfg: TrainConfig,
        train_set: Arc<Dataset>,
        test_set: Arc<Dataset>,
        wake: Arc<dyn Fn() + Send + Sync>,
    ) -> std::io::Result<Self> {
        let (tx, events) = channel();
        let cancel = Arc::new(AtomicBool::new(false));
        let flag = cancel.clone();
        let config = cfg.clone();
        let thread = std::thread::Builder::new()
            .name("backwork-trainer".into())
            .spawn(move || {
                crate::util::lower_thread_priority(super::ENGINE_NICE);
                let started = Instant::now();
                let result = train(&train_set, &test_set, &cfg, &flag, &mut |ev| {
                    let _ = tx.send(TrainerEvent::Progress(ev));
                    wake();
                });
                let ev = match result {
                    Ok(out) => {
                        let metadata = out.metadata(
                            &cfg,
                            &train_set.source,
                            started.elapsed().as_secs_f64(),
                            &format!("backwork {} (app)", env!("CARGO_PKG_VERSION")),
                        );
                        TrainerEvent::Done(Box::new(TrainedModel {
                            test_accuracy: out.test_accuracy,
                            epochs_completed: out.epochs_completed,
                            is_cancelled: out.is_cancelled,
                            cnn: out.cnn,
                            metadata,
                        }))
                    }
                    Err(e) => TrainerEvent::Failed(e.to_string()),
                };
                let _ = tx.send(ev);
                wake();
            })?;
        Ok(Self {
            events,
            config,
            cancel,
            thread: Some(thread),
            started: Instant::now(),
        })
    }

    /// Asks the thread to stop before its next step; it still sends the model as it is.
    pub fn cancel(&self) {
        self.cancel.store(true, Ordering::Relaxed);
    }

    pub fn is_cancelled(&self) -> bool {
        self.cancel.load(Ordering::Relaxed)
    }
}

impl Drop for Trainer {
    fn drop(&mut self) {
        self.cancel();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
