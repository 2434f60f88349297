//! The background thread that owns the engine: commands in on an unbounded channel, events
//! out on a bounded one. It never blocks on a full channel: curve points accumulate and go out
//! with the next snapshot, throttled to the frame rate, so none is lost and memory stays
//! bounded. Every run has an id; a run always ends with an explicit event.

pub mod job;
pub mod models;
pub mod studies;
pub mod trainer;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{
    Receiver, Sender, SyncSender, TryRecvError, TrySendError, channel, sync_channel,
};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::backwork::cost::{CostTerms, Nearest};
use crate::backwork::engine::{EndReason, Engine, Reinit};
use crate::backwork::frozen::FrozenCnn;
use crate::backwork::refs::{LabelRefs, RefCache};
use crate::backwork::{Init, Settings};
use crate::data::Dataset;
use crate::export::npy::read_start_images;
use crate::export::run::{RunResults, export_images, write_run};
use crate::meta::ModelRef;

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
    /// Per image, its nearest training image at inputs, conv0, conv1 (and fc per-example).
    pub nearest: Vec<[Option<Nearest>; 4]>,
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
    ) -> Result<Self, String> {
        Ok(Self {
            net: model.frozen()?,
            model: model.model_ref(),
            train,
            cache_dir,
            wake,
        })
    }

    /// Switches the spec to `model` (a restarted worker starts on it).
    pub fn set_model(&mut self, model: &models::ModelHandle) -> Result<(), String> {
        self.net = model.frozen()?;
        self.model = model.model_ref();
        Ok(())
    }
}

impl Command {
    /// The command that switches the worker to `model`.
    pub fn set_model(model: &models::ModelHandle) -> Result<Self, String> {
        Ok(Command::SetModel(Box::new((
            model.frozen()?,
            model.model_ref(),
        ))))
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

struct Run {
    id: u64,
    engine: Engine,
    /// The network and model the run was made against: an export after a model change
    /// still re-classifies and describes the run's images with them.
    net: FrozenCnn,
    model: ModelRef,
    is_paused: bool,
    points: Vec<CurvePoint>,
    reinits: Vec<Reinit>,
    last_sent: Instant,
    steps_since: usize,
    rate_since: Instant,
    steps_per_s: f64,
    /// When the saliency was last computed, and its value.
    saliency: Option<(Instant, Vec<f32>)>,
}

struct Loop {
    net: FrozenCnn,
    model: ModelRef,
    /// The last run that ended, kept for export.
    finished: Option<Run>,
    /// Whether snapshots carry the saliency.
    want_saliency: bool,
    train: Arc<Dataset>,
    cache: RefCache,
    rx: Receiver<(u64, Command)>,
    /// Commands that arrived while reference sets were built, handled next.
    pending: std::collections::VecDeque<(u64, Command)>,
    etx: SyncSender<Event>,
    wake: Arc<dyn Fn() + Send + Sync>,
    /// Set by the dropped handle.
    stop: Arc<AtomicBool>,
}

impl Loop {
    /// Sends an event that must arrive (run ends, cache progress): waits for room.
    fn send_sure(&self, e: Event) -> bool {
        let ok = self.etx.send(e).is_ok();
        (self.wake)();
        ok
    }

    fn run(mut self) {
        let mut run: Option<Run> = None;
        loop {
            // Commands: block when there is nothing to do, else just look.
            let idle = run.as_ref().is_none_or(|r| r.is_paused);
            let cmd = if let Some(c) = self.pending.pop_front() {
                Some(c)
            } else if idle {
                match self.rx.recv() {
                    Ok(c) => Some(c),
                    Err(_) => return,
                }
            } else {
                match self.rx.try_recv() {
                    Ok(c) => Some(c),
                    Err(TryRecvError::Empty) => None,
                    Err(TryRecvError::Disconnected) => return,
                }
            };
            let mut single_step = false;
            if let Some((id, c)) = cmd {
                match c {
                    Command::Start(s) => {
                        let previous = run
                            .as_ref()
                            .or(self.finished.as_ref())
                            .map(|r| r.engine.images().to_vec());
                        if let Some(r) = run.take() {
                            self.send_sure(Event::Ended {
                                run: r.id,
                                reason: EndReason::Cancelled,
                            });
                        }
                        run = self.start(id, s, previous);
                    }
                    Command::Pause => run.iter_mut().for_each(|r| r.is_paused = true),
                    Command::Resume => run.iter_mut().for_each(|r| r.is_paused = false),
                    Command::Step => single_step = true,
                    Command::Reset => {
                        if let Some(r) = run.take() {
                            self.send_sure(Event::Ended {
                                run: r.id,
                                reason: EndReason::Cancelled,
                            });
                        }
                    }
                    Command::Export { dir, rows } => {
                        let r = run.as_ref().or(self.finished.as_ref());
                        let msg = match r {
                            None => Err("nothing to export: no run yet".to_string()),
                            Some(r) => self
                                .export(r, &dir, rows.as_deref())
                                .map(|files| (r.id, files)),
                        };
                        match msg {
                            Ok((rid, files)) => self.send_sure(Event::Exported {
                                run: rid,
                                dir,
                                files,
                            }),
                            Err(message) => self.send_sure(Event::Refused { run: id, message }),
                        };
                    }
                    Command::SetModel(m) => {
                        if let Some(r) = run.take() {
                            self.send_sure(Event::Ended {
                                run: r.id,
                                reason: EndReason::Cancelled,
                            });
                            self.finished = Some(r);
                        }
                        let (net, model) = *m;
                        self.cache = self.cache.for_model(&model.sha256, &self.train);
                        self.net = net;
                        self.model = model;
                    }
                    Command::Saliency(on) => {
                        self.want_saliency = on;
                        if let Some(r) = run.as_mut() {
                            r.saliency = None;
                            self.flush(r, true);
                        } else if let Some(mut r) = self.finished.take() {
                            // A finished run's images are still on screen: send them again
                            // with (or without) their saliency.
                            r.saliency = None;
                            self.flush(&mut r, true);
                            self.finished = Some(r);
                        }
                    }
                    Command::Settings(s) => {
                        // A refused value leaves the run going on its old settings.
                        if let Some(Err(e)) = run.as_mut().map(|r| r.engine.set_settings(s)) {
                            self.send_sure(Event::Refused {
                                run: id,
                                message: e.to_string(),
                            });
                        }
                    }
                }
            }
            let Some(r) = run.as_mut() else { continue };
            if r.is_paused && !single_step {
                self.flush(r, true);
                continue;
            }
            match r.engine.step() {
                Ok(ev) => {
                    let (min_p, mean_p) = r
                        .engine
                        .label_summaries()
                        .iter()
                        .map(|s| (s.min_p, s.mean_p))
                        .unzip();
                    r.points.push(CurvePoint {
                        step: ev.step,
                        terms: ev.terms,
                        min_p,
                        mean_p,
                    });
                    r.reinits.extend(ev.reinits);
                    r.steps_since += 1;
                    let force = ev.end.is_some() || single_step;
                    self.flush(r, force);
                    if let Some(reason) = ev.end {
                        let id = r.id;
                        self.finished = run.take();
                        self.send_sure(Event::Ended { run: id, reason });
                    }
                }
                Err(e) => {
                    let id = r.id;
                    self.flush(r, true);
                    // The last good images stay on screen and exportable.
                    self.finished = run.take();
                    self.send_sure(Event::Ended {
                        run: id,
                        reason: EndReason::Error(e.to_string()),
                    });
                }
            }
        }
    }

    /// Writes the run's images (all or `rows`) into `dir`; returns the number of files.
    fn export(
        &self,
        r: &Run,
        dir: &std::path::Path,
        rows: Option<&[usize]>,
    ) -> Result<usize, String> {
        let threshold = r.engine.settings().threshold;
        let images = export_images(r.engine.rows(), threshold, rows, |x, l| {
            r.net.p_label_as_png(x, l)
        });
        if images.is_empty() {
            return Err("nothing selected to export".into());
        }
        let end = r
            .engine
            .end_reason()
            .map_or("running".to_string(), |e| format!("{e:?}"));
        let results = RunResults {
            backwork_version: env!("CARGO_PKG_VERSION"),
            preset: r.engine.settings().preset_name(),
            settings: r.engine.settings(),
            seed: r.engine.settings().seed,
            model: r.model.clone(),
            steps: r.engine.steps(),
            end_reason: end,
            date: crate::util::utc_now_iso(),
            images: &images,
        };
        write_run(dir, &results, false)
            .map(|f| f.len())
            .map_err(|e| e.to_string())
    }

    /// Starts run `id`; `previous` holds the images of the run before it, for
    /// [`Init::Current`].
    fn start(&mut self, id: u64, s: Settings, previous: Option<Vec<f32>>) -> Option<Run> {
        let total = s.labels.len();
        let mut refs: Vec<Arc<LabelRefs>> = Vec::with_capacity(total);
        self.cache.preload(&self.train, &s.labels);
        for (i, &l) in s.labels.iter().enumerate() {
            if !self.send_sure(Event::Cache {
                run: id,
                done: i,
                total,
            }) {
                return None;
            }
            let built = self
                .cache
                .get_or_build(&self.net, &self.train, l, &self.stop);
            for message in self.cache.take_notices() {
                self.send_sure(Event::Notice { message });
            }
            // `None`: the handle was dropped (the window closed) during the build.
            refs.push(built?.0);
            // A label takes seconds to build: a Reset, a new Start, a new model or a closed
            // window must not wait for the others. Other commands wait for the run.
            loop {
                match self.rx.try_recv() {
                    Ok(c) => {
                        let is_abort = matches!(
                            c.1,
                            Command::Start(_) | Command::Reset | Command::SetModel(_)
                        );
                        self.pending.push_back(c);
                        if is_abort {
                            self.send_sure(Event::Ended {
                                run: id,
                                reason: EndReason::Cancelled,
                            });
                            return None;
                        }
                    }
                    Err(TryRecvError::Empty) => break,
                    Err(TryRecvError::Disconnected) => return None,
                }
            }
        }
        self.send_sure(Event::Cache {
            run: id,
            done: total,
            total,
        });
        let started = Engine::new(self.net.clone(), &refs, s).map_err(|e| e.to_string());
        let started = started.and_then(|mut engine| {
            let rows = engine.states().len();
            let x = match engine.settings().init.clone() {
                Init::File(path) => read_start_images(&path, rows)
                    .map_err(|e| format!("start images: {e}"))?,
                Init::Current => match previous {
                    Some(x) if x.len() == rows * crate::data::PIXELS => x,
                    Some(x) => {
                        return Err(format!(
                            "start images: the current run has {} images; this run needs {rows} (labels × images per label)",
                            x.len() / crate::data::PIXELS
                        ));
                    }
                    None => return Err("start images: there is no current run to go on from".into()),
                },
                Init::Noise | Init::ClassMeans => return Ok(engine),
            };
            engine.set_images(&x).map_err(|e| e.to_string())?;
            Ok(engine)
        });
        match started {
            Ok(engine) => {
                let mut r = Run {
                    id,
                    engine,
                    net: self.net.clone(),
                    model: self.model.clone(),
                    is_paused: false,
                    points: Vec::new(),
                    reinits: Vec::new(),
                    last_sent: Instant::now(),
                    steps_since: 0,
                    rate_since: Instant::now(),
                    steps_per_s: 0.0,
                    saliency: None,
                };
                self.flush(&mut r, true);
                Some(r)
            }
            Err(e) => {
                self.send_sure(Event::Ended {
                    run: id,
                    reason: EndReason::Error(e),
                });
                None
            }
        }
    }

    /// Sends a snapshot if one is due (or `force`) and the channel has room; otherwise keeps
    /// the points for the next one.
    fn flush(&self, r: &mut Run, force: bool) {
        if !force && r.last_sent.elapsed() < SNAPSHOT_EVERY {
            return;
        }
        let dt = r.rate_since.elapsed().as_secs_f64();
        if dt >= 0.5 {
            r.steps_per_s = r.steps_since as f64 / dt;
            r.steps_since = 0;
            r.rate_since = Instant::now();
        }
        let saliency = if self.want_saliency {
            let stale = r
                .saliency
                .as_ref()
                .is_none_or(|(at, _)| force || at.elapsed() >= SALIENCY_EVERY);
            if stale {
                let labels: Vec<usize> = (0..r.engine.states().len())
                    .map(|row| r.engine.label_of(row) as usize)
                    .collect();
                r.saliency = Some((Instant::now(), r.net.saliency(r.engine.images(), &labels)));
            }
            r.saliency.as_ref().map(|(_, s)| s.clone())
        } else {
            None
        };
        let snap = Snapshot {
            run: r.id,
            saliency,
            step: r.engine.steps(),
            labels: r.engine.labels(),
            batch: r.engine.batch(),
            images: r.engine.images().to_vec(),
            probs: r.engine.states().iter().map(|i| i.probs.clone()).collect(),
            reinits: r.engine.states().iter().map(|i| i.reinits).collect(),
            stalled: r
                .engine
                .states()
                .iter()
                .enumerate()
                .map(|(row, i)| i.is_stalled(r.engine.settings(), r.engine.label_of(row) as usize))
                .collect(),
            nearest: r.engine.states().iter().map(|i| i.nearest).collect(),
            points: std::mem::take(&mut r.points),
            new_reinits: std::mem::take(&mut r.reinits),
            steps_per_s: r.steps_per_s,
            is_paused: r.is_paused,
        };
        match self.etx.try_send(Event::Snapshot(Box::new(snap))) {
            Ok(()) => {
                r.last_sent = Instant::now();
                (self.wake)();
            }
            Err(TrySendError::Full(Event::Snapshot(s))) => {
                // Keep the points and reinits for the next snapshot.
                let s = *s;
                r.points = s.points;
                r.reinits = s.new_reinits;
            }
            Err(_) => {}
        }
    }
}
