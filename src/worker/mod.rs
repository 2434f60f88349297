//! The background thread that owns the engine: commands in on an unbounded channel, events
//! out on a bounded one. It never blocks on a full channel: curve points accumulate and go out
//! with the next snapshot, throttled to the frame rate, so none is lost and memory stays
//! bounded. Every run has an id; a run always ends with an explicit event.

pub mod files;
pub mod job;
pub mod models;
mod run_loop;
pub mod studies;
pub mod trainer;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{
    Receiver, Sender, SyncSender, TryRecvError, TrySendError, channel, sync_channel,
};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::backwork::cache::RefCache;
use crate::backwork::cost::{CostTerms, Nearest};
use crate::backwork::engine::{EndReason, Engine, Reinit};
use crate::backwork::frozen::FrozenCnn;
use crate::backwork::refs::LabelRefs;
use crate::backwork::{Init, Settings};
use crate::data::Dataset;
use crate::export::npy::read_start_images_noted;
use crate::export::run::{RunResults, export_images, write_run};
use crate::meta::ModelRef;
use run_loop::Loop;

/// What the UI asks of the worker.
#[derive(Clone)]
pub enum Command {
    /// Start a new run with these settings (ends the current one).
    Start(Settings),
    Pause,
    Resume,
    /// One step while paused.
    Step,
    /// End the current run and forget it.
    Reset,
    /// New settings for the running engine, from its next step on.
    Settings(Settings),
    /// Write the current (or last finished) run's images, all or the rows listed, into a
    /// folder exactly as `backwork run` does. Never overwrites: the folder must be empty or new.
    Export {
        dir: std::path::PathBuf,
        rows: Option<Vec<usize>>,
    },
    /// Send the saliency (d p(label) / d input) of every image with the snapshots, or stop.
    Saliency(bool),
    /// Go on optimising after every image passed the threshold (until the step budget, a
    /// Reset or a new Start), or end there as the method does: for the current run and the
    /// next ones.
    KeepGoing(bool),
    /// Use another network from now on: ends the current run (its images stay exportable
    /// under the old model) and builds reference sets for the new one when a run starts.
    SetModel(Box<(FrozenCnn, ModelRef)>),
}

impl std::fmt::Debug for FrozenCnnName<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "FrozenCnn({})", self.0)
    }
}

/// How the Debug of a [`Command::SetModel`] shows the network: by its model's name.
struct FrozenCnnName<'a>(&'a str);

impl std::fmt::Debug for Command {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Command::Start(s) => f.debug_tuple("Start").field(s).finish(),
            Command::Pause => f.write_str("Pause"),
            Command::Resume => f.write_str("Resume"),
            Command::Step => f.write_str("Step"),
            Command::Reset => f.write_str("Reset"),
            Command::Settings(s) => f.debug_tuple("Settings").field(s).finish(),
            Command::Export { dir, rows } => f
                .debug_struct("Export")
                .field("dir", dir)
                .field("rows", rows)
                .finish(),
            Command::Saliency(on) => f.debug_tuple("Saliency").field(on).finish(),
            Command::KeepGoing(on) => f.debug_tuple("KeepGoing").field(on).finish(),
            Command::SetModel(m) => f
                .debug_tuple("SetModel")
                .field(&FrozenCnnName(&m.1.name))
                .finish(),
        }
    }
}

/// One point of the curves: the summed terms at one step.
#[derive(Clone, Debug)]
pub struct CurvePoint {
    pub step: usize,
    pub terms: CostTerms,
    /// Per group: min and mean p(label).
    pub min_p: Vec<f32>,
    pub mean_p: Vec<f32>,
}

/// The state of a run as the UI shows it.
#[derive(Clone, Debug)]
pub struct Snapshot {
    pub run: u64,
    pub step: usize,
    /// Labels of the groups, in row order.
    pub labels: Vec<u8>,
    pub batch: usize,
    /// All images, group-major, (groups·N)×784.
    pub images: Vec<f32>,
    /// Per image, its class probabilities.
    pub probs: Vec<Vec<f32>>,
    /// Per image, its reinit count.
    pub reinits: Vec<usize>,
    /// Per image, whether its p(label) has stalled below the threshold (no rise above the
    /// stall tolerance for the stall window).
    pub stalled: Vec<bool>,
    /// Per image, its nearest training image at each tap (none at a tap whose distance is
    /// taken per neuron).
    pub nearest: Vec<Vec<Option<Nearest>>>,
    /// The names of the network's taps, in order.
    pub tap_names: std::sync::Arc<[String]>,
    /// d p(label) / d input of every image ((groups·N)×784), when the UI asked for it
    /// ([`Command::Saliency`]); computed at most every [`SALIENCY_EVERY`].
    pub saliency: Option<Vec<f32>>,
    /// Curve points since the last snapshot (none is dropped).
    pub points: Vec<CurvePoint>,
    /// Reinitialisations since the last snapshot.
    pub new_reinits: Vec<Reinit>,
    pub steps_per_s: f64,
    pub is_paused: bool,
}

/// What the worker tells the UI.
#[derive(Clone, Debug)]
pub enum Event {
    /// Building reference sets: `done` of `total` labels.
    Cache {
        run: u64,
        done: usize,
        total: usize,
    },
    Snapshot(Box<Snapshot>),
    /// An export finished: the files written.
    Exported {
        run: u64,
        dir: std::path::PathBuf,
        files: usize,
    },
    /// A command was refused (a setting out of range, an export that cannot be written); the
    /// run goes on unchanged.
    Refused {
        run: u64,
        message: String,
    },
    /// Something the user should hear that changes nothing (a damaged cache file rebuilt).
    Notice {
        message: String,
    },
    /// The run ended; the last snapshot before it holds its final state.
    Ended {
        run: u64,
        reason: EndReason,
    },
}

/// Everything a worker thread starts from; kept by the UI so that a worker that died can be
/// started again.
#[derive(Clone)]
pub struct WorkerSpec {
    pub net: FrozenCnn,
    pub model: ModelRef,
    pub train: Arc<Dataset>,
    /// Where reference sets are cached on disk (`None`: in memory only).
    pub cache_dir: Option<std::path::PathBuf>,
    /// Called after every event sent (the app asks egui for a repaint).
    pub wake: job::Wake,
}

impl WorkerSpec {
    /// The spec of a worker on `model`.
    pub fn for_model(
        model: &models::ModelHandle,
        train: Arc<Dataset>,
        cache_dir: Option<std::path::PathBuf>,
        wake: job::Wake,
    ) -> Self {
        Self {
            net: model.frozen(),
            model: model.model_ref(),
            train,
            cache_dir,
            wake,
        }
    }

    /// Switches the spec to `model` (a restarted worker starts on it).
    pub fn set_model(&mut self, model: &models::ModelHandle) {
        self.net = model.frozen();
        self.model = model.model_ref();
    }
}

impl Command {
    /// The command that switches the worker to `model`.
    pub fn set_model(model: &models::ModelHandle) -> Self {
        Command::SetModel(Box::new((model.frozen(), model.model_ref())))
    }
}

/// The other end of a [`Worker::detached`] handle: what a test reads and writes in place of
/// the thread.
pub struct WorkerPeer {
    pub commands: Receiver<(u64, Command)>,
    pub events: SyncSender<Event>,
}

/// The handle the UI keeps; dropping it stops and joins the thread.
pub struct Worker {
    tx: Option<Sender<(u64, Command)>>,
    pub events: Receiver<Event>,
    thread: Option<JoinHandle<()>>,
    next_run: u64,
    /// Set when the handle is dropped: a reference-set build in progress stops at once.
    stop: Arc<AtomicBool>,
}

/// Least time between two saliency computations (one forward and backward of the batch).
pub const SALIENCY_EVERY: Duration = Duration::from_millis(300);

/// How much lower than the window's the engine's threads run (nice levels).
pub const ENGINE_NICE: i32 = 10;

/// Least time between two snapshots (about the frame rate).
const SNAPSHOT_EVERY: Duration = Duration::from_millis(16);

impl Worker {
    /// Starts the thread for the spec's network on its training set.
    pub fn spawn(spec: WorkerSpec) -> std::io::Result<Self> {
        let WorkerSpec {
            net,
            model,
            train,
            cache_dir,
            wake,
        } = spec;
        let (tx, rx) = channel();
        let (etx, events) = sync_channel(8);
        let stop = Arc::new(AtomicBool::new(false));
        let stop_in = stop.clone();
        let thread = std::thread::Builder::new()
            .name("backwork-engine".into())
            .spawn(move || {
                // The window's thread comes first; the engine uses what is left.
                crate::util::lower_thread_priority(ENGINE_NICE);
                let cache = match cache_dir {
                    Some(d) => RefCache::with_disk(d, &model.sha256, &train),
                    None => RefCache::default(),
                };
                Loop {
                    net,
                    model,
                    finished: None,
                    want_saliency: false,
                    keep_going: false,
                    train,
                    cache,
                    rx,
                    pending: Default::default(),
                    etx,
                    wake,
                    stop: stop_in,
                }
                .run()
            })?;
        Ok(Self {
            tx: Some(tx),
            events,
            thread: Some(thread),
            next_run: 0,
            stop,
        })
    }

    /// A handle with no thread behind it: the returned peer receives its commands and sends
    /// its events (tests play the worker with it).
    pub fn detached() -> (Self, WorkerPeer) {
        let (tx, commands) = channel();
        let (events_tx, events) = sync_channel(64);
        (
            Self {
                tx: Some(tx),
                events,
                thread: None,
                next_run: 0,
                stop: Arc::default(),
            },
            WorkerPeer {
                commands,
                events: events_tx,
            },
        )
    }

    /// Sends a command; a `Start` gets a new run id, which it returns.
    pub fn send(&mut self, c: Command) -> u64 {
        if matches!(c, Command::Start(_)) {
            self.next_run += 1;
        }
        if let Some(tx) = &self.tx {
            let _ = tx.send((self.next_run, c));
        }
        self.next_run
    }

    /// Whether the thread is still alive.
    pub fn is_alive(&self) -> bool {
        self.thread.as_ref().is_some_and(|t| !t.is_finished())
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        // Closing the command channel ends the loop at its next check; closing the event
        // channel too makes a send the thread is blocked in (a full channel) fail, so the
        // join below cannot wait for a reader that is gone.
        self.tx = None;
        self.stop.store(true, Ordering::Relaxed);
        let (_, closed) = sync_channel(0);
        drop(std::mem::replace(&mut self.events, closed));
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
