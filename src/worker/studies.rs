//! The studies the window starts, as [`Job`]s: a grid of runs (the Sweep view, the same runs as
//! `backwork sweep`), the box's ceiling (`backwork ceiling`) and retraining with fooling
//! images.

use std::path::PathBuf;
use std::sync::Arc;

use super::ENGINE_NICE;
use super::job::{Job, JobCtx, Wake};
use super::models::ModelHandle;
use crate::backwork::Settings;
use crate::backwork::cache::RefCache;
use crate::backwork::ceiling::{Ceiling, NoCeiling, box_ceiling};
use crate::backwork::measure::Outcome;
use crate::data::Dataset;
use crate::retrain::{Measurement, RetrainConfig, RetrainEvent, retrain};
use crate::sweep::run_point;

/// One run of a grid: its cell (i, j), its seed and its settings.
#[derive(Clone, Debug)]
pub struct GridPoint {
    pub i: usize,
    pub j: usize,
    pub seed: u64,
    pub settings: Settings,
}

/// What a grid reports as it goes.
#[derive(Clone, Debug)]
pub enum GridEvent {
    /// Point `done` of `total` is starting (its reference sets, then its steps).
    Started { done: usize, total: usize },
    /// A point finished.
    Ran(Box<(GridPoint, Outcome)>),
}

/// Runs `points` in order on `model`, reference sets from the disk cache at `cache_dir` (or
/// memory). Cancelled, it ends with the error "stopped".
pub fn grid_job(
    model: &ModelHandle,
    points: Vec<GridPoint>,
    train: Arc<Dataset>,
    cache_dir: Option<PathBuf>,
    wake: Wake,
) -> Result<Job<GridEvent, ()>, String> {
    let net = model.frozen();
    let sha = model.info().sha256.clone();
    Job::spawn(
        "sweep",
        ENGINE_NICE,
        wake,
        move |ctx: &JobCtx<GridEvent, ()>| {
            let mut cache = match cache_dir {
                Some(d) => RefCache::with_disk(d, &sha, &train),
                None => RefCache::default(),
            };
            let total = points.len();
            for (done, p) in points.into_iter().enumerate() {
                if !ctx.progress(GridEvent::Started { done, total }) {
                    return Err("stopped".into());
                }
                let refs: Option<Vec<_>> = p
                    .settings
                    .labels
                    .iter()
                    .map(|&l| Some(cache.get_or_build(&net, &train, l, ctx.cancel_flag())?.0))
                    .collect();
                let Some(refs) = refs else {
                    return Err("stopped".into());
                };
                let res = run_point(&net, &refs, &p.settings, ctx.cancel_flag(), &mut |_| {});
                if ctx.is_cancelled() {
                    return Err("stopped".into());
                }
                let (outcome, _) = res.map_err(|e| e.to_string())?;
                ctx.progress(GridEvent::Ran(Box::new((p, outcome))));
            }
            Ok(())
        },
    )
}

/// A finished retraining.
pub struct Retrained {
    /// The last model, unsaved.
    pub model: ModelHandle,
    pub measurements: Vec<Measurement>,
    /// True when cancelled: the model and measurements of the rounds finished before.
    pub is_stopped: bool,
}

/// Retrains `base` with `fooling` (N×784) as `cfg` says.
pub fn retrain_job(
    base: &ModelHandle,
    fooling: Vec<f32>,
    cfg: RetrainConfig,
    (train, test): (Arc<Dataset>, Arc<Dataset>),
    cache_dir: Option<PathBuf>,
    wake: Wake,
) -> Result<Job<RetrainEvent, Retrained>, String> {
    let base = base.clone();
    Job::spawn(
        "retrain",
        ENGINE_NICE,
        wake,
        move |ctx: &JobCtx<RetrainEvent, Retrained>| {
            let out = retrain(
                (base.net(), base.info()),
                &fooling,
                &cfg,
                &train,
                &test,
                cache_dir.as_deref(),
                ctx.cancel_flag(),
                &mut |e| {
                    ctx.progress(e);
                },
            )
            .map_err(|e| e.to_string())?;
            let name = format!("retrained ({:?}, {} rounds, unsaved)", cfg.mode, cfg.rounds);
            Ok(Retrained {
                model: ModelHandle::made(out.net, out.metadata, name)?,
                measurements: out.measurements,
                is_stopped: out.is_stopped,
            })
        },
    )
}

/// What a ceiling measurement reports as it goes.
#[derive(Clone, Debug)]
pub enum CeilingEvent {
    /// Label `done` of `total` is at `step`.
    Step {
        done: usize,
        total: usize,
        step: usize,
    },
    /// A label finished.
    Measured(Ceiling),
}

/// Measures how high p(label) can go in the pixel box for each of `labels` on `model`
/// ([`box_ceiling`]): `starts` random starts, `steps` steps each. Cancelled, it ends with the
/// error "stopped".
pub fn ceiling_job(
    model: &ModelHandle,
    labels: Vec<u8>,
    (starts, steps, seed): (usize, usize, u64),
    wake: Wake,
) -> Result<Job<CeilingEvent, ()>, String> {
    let net = model.frozen();
    Job::spawn(
        "ceiling",
        ENGINE_NICE,
        wake,
        move |ctx: &JobCtx<CeilingEvent, ()>| {
            let total = labels.len();
            for (done, &l) in labels.iter().enumerate() {
                let mut on_step = |step: usize| {
                    // A few reports a label: the window redraws on each.
                    if step.is_multiple_of(50) {
                        ctx.progress(CeilingEvent::Step { done, total, step });
                    }
                };
                let found = box_ceiling(
                    &net,
                    l,
                    starts,
                    steps,
                    seed,
                    ctx.cancel_flag(),
                    &mut on_step,
                );
                match found {
                    Ok(c) if !ctx.is_cancelled() => {
                        ctx.progress(CeilingEvent::Measured(c));
                    }
                    Ok(_) | Err(NoCeiling::Stopped) => return Err("stopped".into()),
                    Err(e) => return Err(e.to_string()),
                }
            }
            Ok(())
        },
    )
}
