//! The engine thread's loop: commands in, one engine step at a time, snapshots out
//! (throttled to the frame rate, no curve point lost), exports of the current or last run.

#[allow(unused_imports)]
use super::*;

pub(super) struct Run {
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

pub(super) struct Loop {
    pub(super) net: FrozenCnn,
    pub(super) model: ModelRef,
    /// The last run that ended, kept for export.
    pub(super) finished: Option<Run>,
    /// Whether snapshots carry the saliency.
    pub(super) want_saliency: bool,
    /// Whether runs go on after every image passed ([`Command::KeepGoing`]).
    pub(super) keep_going: bool,
    pub(super) train: Arc<Dataset>,
    pub(super) cache: RefCache,
    pub(super) rx: Receiver<(u64, Command)>,
    /// Commands that arrived while reference sets were built, handled next.
    pub(super) pending: std::collections::VecDeque<(u64, Command)>,
    pub(super) etx: SyncSender<Event>,
    pub(super) wake: Arc<dyn Fn() + Send + Sync>,
    /// Set by the dropped handle.
    pub(super) stop: Arc<AtomicBool>,
}

impl Loop {
    /// Sends an event that must arrive (run ends, cache progress): waits for room.
    fn send_sure(&self, e: Event) -> bool {
        let ok = self.etx.send(e).is_ok();
        (self.wake)();
        ok
    }

    pub(super) fn run(mut self) {
        let mut run: Option<Run> = None;
        loop {
            let Some(cmd) = self.next_command(&run) else {
                return;
            };
            let mut single_step = false;
            if let Some((id, c)) = cmd {
                single_step = self.handle(&mut run, id, c);
            }
            let Some(r) = run.as_mut() else { continue };
            if r.is_paused && !single_step {
                self.flush(r, true);
                continue;
            }
            self.step_run(&mut run, single_step);
        }
    }

    /// The next command: blocks when there is nothing to do, else just looks. `None` when the
    /// window's handle is gone.
    fn next_command(&mut self, run: &Option<Run>) -> Option<Option<(u64, Command)>> {
        if let Some(c) = self.pending.pop_front() {
            return Some(Some(c));
        }
        let idle = run.as_ref().is_none_or(|r| r.is_paused);
        if idle {
            return self.rx.recv().ok().map(Some);
        }
        match self.rx.try_recv() {
            Ok(c) => Some(Some(c)),
            Err(TryRecvError::Empty) => Some(None),
            Err(TryRecvError::Disconnected) => None,
        }
    }

    /// Carries out command `c` (sent with run id `id`); true for a single step.
    fn handle(&mut self, run: &mut Option<Run>, id: u64, c: Command) -> bool {
        let mut single_step = false;
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
                *run = self.start(id, s, previous);
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
                // The old cache's last save says its notices now: they would go with it.
                self.cache.flush();
                for message in self.cache.take_notices() {
                    self.send_sure(Event::Notice { message });
                }
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
            Command::KeepGoing(on) => {
                self.keep_going = on;
                if let Some(r) = run.as_mut() {
                    r.engine.set_endless(on);
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
        single_step
    }

    /// One step of the run, its curve point, and its end if it ended.
    fn step_run(&mut self, run: &mut Option<Run>, single_step: bool) {
        // The last reference set's save ends during the run's first steps.
        for message in self.cache.take_notices() {
            self.send_sure(Event::Notice { message });
        }
        let Some(r) = run.as_mut() else { return };
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
                if ev.end.is_some() {
                    self.flush_final(r);
                } else {
                    self.flush(r, single_step);
                }
                if let Some(reason) = ev.end {
                    let id = r.id;
                    self.finished = run.take();
                    self.send_sure(Event::Ended { run: id, reason });
                }
            }
            Err(e) => {
                let id = r.id;
                self.flush_final(r);
                // The last good images stay on screen and exportable.
                self.finished = run.take();
                self.send_sure(Event::Ended {
                    run: id,
                    reason: EndReason::Error(e.to_string()),
                });
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
        let mut images = export_images(r.engine.rows(), threshold, rows, |x, l| {
            r.net.p_label_as_png(x, l)
        });
        crate::export::run::set_classes(&mut images, &self.train.classes);
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
            keep_going: r.engine.is_endless(),
            end_reason: end,
            date: crate::util::utc_now_iso(),
            image_shape: r.net.input_shape(),
            classes: &self.train.classes,
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
        self.cache
            .preload(&self.train, &s.labels, &self.net.layout(), &self.stop);
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
            engine.set_endless(self.keep_going);
            let rows = engine.states().len();
            let x = match engine.settings().init.clone() {
                Init::File(path) => {
                    let (x, note) =
                        read_start_images_noted(&path, rows, &self.net.input_shape())
                            .map_err(|e| format!("start images: {e}"))?;
                    if let Some(message) = note {
                        self.send_sure(Event::Notice { message });
                    }
                    x
                }
                Init::Current => match previous {
                    Some(x) if x.len() == rows * self.net.input_len() => x,
                    Some(x) => {
                        return Err(format!(
                            "start images: the current run has {} images; this run needs {rows} (labels × images per label)",
                            x.len() / self.net.input_len()
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
        let snap = self.snapshot(r, force);
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

    /// The last snapshot of a run that ends: sent even when the channel is full (waiting for
    /// room, as the `Ended` event after it does), so a slow reader still gets every point.
    fn flush_final(&self, r: &mut Run) {
        let snap = self.snapshot(r, true);
        self.send_sure(Event::Snapshot(Box::new(snap)));
    }

    /// The run's state now, with the points and reinits since the last snapshot taken out.
    fn snapshot(&self, r: &mut Run, force: bool) -> Snapshot {
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
        Snapshot {
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
            nearest: r
                .engine
                .states()
                .iter()
                .map(|i| i.nearest.clone())
                .collect(),
            tap_names: r.engine.tap_names(),
            points: std::mem::take(&mut r.points),
            new_reinits: std::mem::take(&mut r.reinits),
            steps_per_s: r.steps_per_s,
            is_paused: r.is_paused,
        }
    }
}
