//! Retraining with the artifacts (ALGORITHM.md §5): add fooling images to the training set,
//! train again, and measure whether new fooling images are harder to find. Two modes: the
//! original's uniform soft label (0.1 per digit) and Nguyen, Yosinski & Clune's 11th
//! "fooling" class. Each round fine-tunes the newest model on the training set plus every
//! fooling image so far, then runs the same backwork (same seeds, same settings, a fixed step
//! budget) against it; that run's images are the next round's fooling images.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use serde::{Deserialize, Serialize};

use crate::backwork::Settings;
use crate::backwork::cache::RefCache;
use crate::backwork::engine::Engine;
use crate::backwork::frozen::FrozenCnn;
use crate::backwork::measure::run_to_end;
use crate::data::Dataset;
use crate::meta::ModelInfo;
use crate::model::train::{ExtraSet, TrainConfig, TrainEvent, train_net};
use crate::model::weights::{net_to_bytes, net_with_extra_class, sha256_hex};
use crate::net::Net;

/// How fooling images are labelled for training.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum RetrainMode {
    /// 0.1 for each digit (the original).
    Uniform,
    /// An 11th class, "fooling" (Nguyen, Yosinski & Clune 2015).
    ExtraClass,
}

/// Everything a retraining run needs besides the data and the starting model.
#[derive(Clone, Debug, Serialize)]
pub struct RetrainConfig {
    pub mode: RetrainMode,
    /// Rounds of (train, measure); at least 1.
    pub rounds: usize,
    /// How each round trains: from the previous round's weights (fine-tuning) by default.
    pub train: TrainConfig,
    /// Train each round from fresh weights instead of the previous round's.
    pub from_scratch: bool,
    /// Each fooling image appears this many times per epoch (1: appended once, the original;
    /// 0: the control, the same training without them).
    pub repeat: usize,
    /// The backwork run that measures every model (labels, batch, seed, `max_steps` = the
    /// step budget).
    pub measure: Settings,
    /// Fooling images found against each retrained model and added to the next round's
    /// training set: 0 adds the measurement run's own images (labels × batch, 80 by default);
    /// N > 0 runs the same backwork (the measurement's settings, fresh seeds) until N images
    /// pass its threshold, as Nguyen, Yosinski & Clune added about a class's worth (~6,000)
    /// a round ([`PAPER_IMAGES_PER_ROUND`]).
    #[serde(default)]
    pub images_per_round: usize,
}

/// Rounds of Nguyen, Yosinski & Clune's protocol (`retrain --paper`).
pub const PAPER_ROUNDS: usize = 10;
/// New fooling images a round in that protocol: about one MNIST class's worth.
pub const PAPER_IMAGES_PER_ROUND: usize = 6000;
/// Most fooling images a round may add (`--images-per-round`).
pub const MAX_IMAGES_PER_ROUND: usize = 100_000;

impl RetrainConfig {
    /// The defaults: one round, fine-tuning one epoch at Adam 1e-4 (the original recipe's
    /// rate), each fooling image once, measured on the 10 × 8 figure with a 300-step budget.
    pub fn new(mode: RetrainMode) -> Self {
        Self {
            mode,
            rounds: 1,
            train: TrainConfig {
                epochs: 1,
                lr: 1e-4,
                lr_decay: 1.0,
                ..TrainConfig::default()
            },
            from_scratch: false,
            repeat: 1,
            // The original preset, as the README's retraining study measured: under the
            // robust default nearly every image of any model passes within a few dozen
            // steps, which would hide the differences between models.
            measure: Settings {
                max_steps: Some(300),
                ..Settings::original()
            },
            images_per_round: 0,
        }
    }

    pub fn validate(&self) -> Result<(), RetrainError> {
        if self.rounds == 0 {
            return Err(RetrainError::Config("--rounds: must be at least 1".into()));
        }
        if self.rounds > MAX_ROUNDS {
            return Err(RetrainError::Config(format!(
                "--rounds: at most {MAX_ROUNDS}, got {}",
                self.rounds
            )));
        }
        if self.images_per_round > MAX_IMAGES_PER_ROUND {
            return Err(RetrainError::Config(format!(
                "--images-per-round: at most {MAX_IMAGES_PER_ROUND}, got {}",
                self.images_per_round
            )));
        }
        if self.repeat > MAX_REPEAT {
            return Err(RetrainError::Config(format!(
                "--repeat: at most {MAX_REPEAT}, got {} (each fooling image appears that many times an epoch)",
                self.repeat
            )));
        }
        if self.measure.max_steps.is_none_or(|b| b == 0) {
            return Err(RetrainError::Config(
                "--budget: the measurement needs a step budget of at least 1".into(),
            ));
        }
        self.train
            .validate()
            .map_err(|e| RetrainError::Config(e.to_string()))?;
        // The measurement's settings come from retrain's own flags: name those.
        self.measure.validate().map_err(|e| {
            RetrainError::Config(
                e.to_string()
                    .replace("--max-steps", "--budget")
                    .replace("--batch:", "--measure-batch:"),
            )
        })
    }
}

/// Most rounds `retrain` takes (each trains and measures a model).
pub const MAX_ROUNDS: usize = 100;
/// Most times a fooling image may appear an epoch (`--repeat`): beyond it the epoch would be
/// mostly copies (and a billion made it allocate 32 GB).
pub const MAX_REPEAT: usize = 1000;

#[derive(Debug, thiserror::Error)]
pub enum RetrainError {
    #[error("{0}")]
    Config(String),
    #[error(transparent)]
    Train(#[from] crate::model::train::TrainError),
    #[error(transparent)]
    Numeric(#[from] candle_core::Error),
    #[error(transparent)]
    Engine(#[from] crate::backwork::engine::EngineError),
    #[error("cancelled")]
    Cancelled,
}

/// One model's row of the report.
#[derive(Clone, Debug, Serialize)]
pub struct Measurement {
    /// 0 for the starting model, then the round that trained it.
    pub round: usize,
    pub model_sha256: String,
    pub classes: usize,
    /// Share of the test set classified correctly (arg-max over all classes).
    pub test_accuracy: f64,
    /// Fooling images in its training set (cumulative over rounds).
    pub fooling_images_trained_on: usize,
    /// Images of the measurement run, and how many ended past the threshold.
    pub images: usize,
    pub reached: usize,
    pub share_reached: f64,
    /// Median over the images that reached it of the first step at which p(label) passed the
    /// threshold (None when none did).
    pub median_steps: Option<f64>,
    /// Steps the measurement run took (the budget, unless every label passed earlier).
    pub run_steps: usize,
    pub seconds: f64,
}

/// What the retraining reports as it goes.
pub enum RetrainEvent {
    /// A new stage of a round ("measuring", "training").
    Stage {
        round: usize,
        what: String,
    },
    Train(TrainEvent),
    /// A measurement run advanced: step of budget.
    Measure {
        step: usize,
        budget: usize,
    },
    /// Finding the next round's fooling images: `found` of `wanted` so far.
    Generate {
        found: usize,
        wanted: usize,
    },
    /// A model was measured.
    Measured(Measurement),
}

/// The outcome: the final model (and its weight-file metadata) and one measurement per
/// model, the starting one first.
pub struct RetrainOutcome {
    pub net: Net,
    pub metadata: HashMap<String, String>,
    pub measurements: Vec<Measurement>,
    /// True when the cancel flag stopped it: the outcome holds the rounds finished before.
    pub is_stopped: bool,
}

/// The soft targets of `count` fooling images in `mode`, for a model of `classes` outputs
/// trained on data of `data_classes`: uniform over the data's classes, or the extra class
/// (the model's last output).
fn fooling_targets(
    mode: RetrainMode,
    count: usize,
    classes: usize,
    data_classes: usize,
) -> Vec<f32> {
    let mut t = vec![0.0; count * classes];
    let k = data_classes.clamp(1, classes);
    for row in t.chunks_exact_mut(classes) {
        match mode {
            RetrainMode::Uniform => row[..k].iter_mut().for_each(|v| *v = 1.0 / k as f32),
            RetrainMode::ExtraClass => row[classes - 1] = 1.0,
        }
    }
    t
}

/// What every measurement shares.
struct Bench<'a> {
    cfg: &'a RetrainConfig,
    train: &'a Dataset,
    test: &'a Dataset,
    cache_dir: Option<&'a std::path::Path>,
    cancel: &'a AtomicBool,
}

/// Runs the measurement backwork against `net` (named by `sha`, or by the hash of its
/// weights) and its test accuracy; returns its row and the run's final images.
fn measure(
    b: &Bench,
    (model, sha): (&Net, Option<&str>),
    round: usize,
    fooling_trained_on: usize,
    on_event: &mut dyn FnMut(RetrainEvent),
) -> Result<(Measurement, Vec<f32>), RetrainError> {
    let Bench {
        cfg,
        train,
        test,
        cache_dir,
        cancel,
    } = *b;
    let started = Instant::now();
    // Only the starting model's reference sets go to the disk cache (3 GB for ten labels):
    // a retrained model is measured once. It is named by the hash of its weights.
    let cache_dir = cache_dir.filter(|_| sha.is_some());
    let sha = match sha {
        Some(s) => s.to_string(),
        None => sha256_hex(&net_to_bytes(model, &HashMap::new())?),
    };
    let net = FrozenCnn::from_net(model.clone());
    let mut cache = match cache_dir {
        Some(d) => RefCache::with_disk(d.to_path_buf(), &sha, train),
        None => RefCache::default(),
    };
    let mut refs: Vec<Arc<_>> = Vec::new();
    for &l in &cfg.measure.labels {
        let (r, _) = cache
            .get_or_build(&net, train, l, cancel)
            .ok_or(RetrainError::Cancelled)?;
        refs.push(r);
    }
    let budget = cfg.measure.max_steps.unwrap_or(0);
    let mut engine = Engine::new(net.clone(), &refs, cfg.measure.clone())?;
    let outcome = run_to_end(&mut engine, cancel, &mut |ev| {
        on_event(RetrainEvent::Measure {
            step: ev.step,
            budget,
        })
    })?;
    if cancel.load(Ordering::Relaxed) {
        return Err(RetrainError::Cancelled);
    }
    let total = outcome.images;
    let reached = outcome.fooled;
    let median_steps = outcome.median_steps;
    let test_accuracy = crate::model::eval::evaluate_net(model, test, &mut |_, _| {}).accuracy();
    let images = if cfg.images_per_round > 0 && round > 0 {
        generate(b, (&net, &refs), round, on_event)?
    } else {
        engine.images().to_vec()
    };
    let m = Measurement {
        round,
        model_sha256: sha,
        classes: model.classes(),
        test_accuracy,
        fooling_images_trained_on: fooling_trained_on,
        images: total,
        reached,
        share_reached: reached as f64 / total.max(1) as f64,
        median_steps,
        run_steps: engine.steps(),
        seconds: started.elapsed().as_secs_f64(),
    };
    Ok((m, images))
}

/// Runs the measurement's backwork against `net` with fresh seeds until
/// `cfg.images_per_round` images pass its threshold (or 100 runs were made), 256 images a
/// label at most per run; returns those images (only the ones past the threshold).
fn generate(
    b: &Bench,
    (net, refs): (&FrozenCnn, &[Arc<crate::backwork::refs::LabelRefs>]),
    round: usize,
    on_event: &mut dyn FnMut(RetrainEvent),
) -> Result<Vec<f32>, RetrainError> {
    let cfg = b.cfg;
    let wanted = cfg.images_per_round;
    let labels = cfg.measure.labels.len().max(1);
    let px = net.input_len();
    let mut found: Vec<f32> = Vec::with_capacity(wanted * px);
    for run in 0..100u64 {
        let have = found.len() / px;
        if have >= wanted {
            break;
        }
        on_event(RetrainEvent::Generate {
            found: have,
            wanted,
        });
        let settings = Settings {
            batch: (wanted - have).div_ceil(labels).clamp(1, 256),
            seed: cfg
                .measure
                .seed
                .wrapping_add(1_000_003 * round as u64)
                .wrapping_add(run + 1),
            ..cfg.measure.clone()
        };
        let mut engine = Engine::new(net.clone(), refs, settings.clone())?;
        run_to_end(&mut engine, b.cancel, &mut |_| {})?;
        if b.cancel.load(Ordering::Relaxed) {
            return Err(RetrainError::Cancelled);
        }
        for r in engine.rows() {
            if r.p_label() > settings.threshold && found.len() / px < wanted {
                found.extend_from_slice(r.pixels);
            }
        }
    }
    on_event(RetrainEvent::Generate {
        found: found.len() / px,
        wanted,
    });
    Ok(found)
}

/// Retrains `base` with the fooling images `fooling` (N×784), round after round, measuring
/// the starting model and every retrained one.
#[allow(clippy::too_many_arguments)]
pub fn retrain(
    base: (&Net, &ModelInfo),
    fooling: &[f32],
    cfg: &RetrainConfig,
    train: &Dataset,
    test: &Dataset,
    cache_dir: Option<&std::path::Path>,
    cancel: &AtomicBool,
    on_event: &mut dyn FnMut(RetrainEvent),
) -> Result<RetrainOutcome, RetrainError> {
    cfg.validate()?;
    // The measurement's layer weights are the network's (one per tap, defaults for a network
    // with other taps than the §1 one's).
    let mut fitted = cfg.clone();
    fitted.measure.fit_taps(base.0.taps().len());
    // ... and its labels the data's classes that have training images (all of them when
    // none of those asked for is one).
    let counts = train.label_counts();
    let has_images = |l: u8| counts.get(l as usize).is_some_and(|&c| c > 0);
    fitted.measure.labels.retain(|&l| has_images(l));
    if fitted.measure.labels.is_empty() {
        fitted.measure.labels = (0..counts.len().min(256) as u8)
            .filter(|&l| has_images(l))
            .collect();
    }
    let cfg = &fitted;
    let started = Instant::now();
    let mut measurements = Vec::new();
    on_event(RetrainEvent::Stage {
        round: 0,
        what: format!("measuring the starting model ({})", base.1.name),
    });
    let bench = Bench {
        cfg,
        train,
        test,
        cache_dir,
        cancel,
    };
    let (m0, _) = measure(&bench, (base.0, Some(&base.1.sha256)), 0, 0, on_event)?;
    on_event(RetrainEvent::Measured(m0.clone()));
    measurements.push(m0);

    let mut model = match cfg.mode {
        RetrainMode::Uniform => base.0.clone(),
        RetrainMode::ExtraClass => net_with_extra_class(base.0, train.num_classes())
            .map_err(|e| RetrainError::Config(format!("{}: {e}", base.1.name)))?,
    };
    let classes = model.classes();
    let mut all_fooling: Vec<f32> = fooling.to_vec();
    let mut is_stopped = false;
    for round in 1..=cfg.rounds {
        let count = if cfg.repeat == 0 {
            0
        } else {
            all_fooling.len() / train.image_len().max(1)
        };
        on_event(RetrainEvent::Stage {
            round,
            what: if cfg.repeat == 0 {
                "training on the training set alone (the control: --repeat 0)".into()
            } else {
                format!("training on the training set plus {count} fooling images")
            },
        });
        let extra = ExtraSet {
            images: all_fooling.clone(),
            targets: fooling_targets(
                cfg.mode,
                all_fooling.len() / train.image_len().max(1),
                classes,
                train.num_classes(),
            ),
            repeat: cfg.repeat,
        };
        let train_cfg = TrainConfig {
            seed: cfg.train.seed.wrapping_add(round as u64),
            ..cfg.train.clone()
        };
        let start = if cfg.from_scratch {
            let arch = model.arch().clone();
            let params = crate::net::init::init_params(&arch, train_cfg.seed, train_cfg.init)
                .map_err(|e| RetrainError::Config(e.to_string()))?;
            let mut fresh =
                Net::from_torch(arch, params).map_err(|e| RetrainError::Config(e.to_string()))?;
            // Fresh weights on the same inputs: the model's normalisation stays.
            fresh
                .set_input_norm(model.input_norm().cloned())
                .map_err(RetrainError::Config)?;
            fresh
        } else {
            model.clone()
        };
        let out = train_net(
            start,
            train,
            test,
            &train_cfg,
            Some(&extra),
            cancel,
            &mut |e| on_event(RetrainEvent::Train(e)),
        )?;
        // A stop keeps the rounds already finished (trained and measured): their model and
        // rows are the outcome. With none finished there is nothing to keep.
        if out.is_cancelled {
            if round == 1 {
                return Err(RetrainError::Cancelled);
            }
            is_stopped = true;
            break;
        }
        let trained = out.net;
        on_event(RetrainEvent::Stage {
            round,
            what: "measuring the retrained model".into(),
        });
        let (m, images) = match measure(&bench, (&trained, None), round, count, on_event) {
            Err(RetrainError::Cancelled) if round > 1 => {
                is_stopped = true;
                break;
            }
            r => r?,
        };
        model = trained;
        on_event(RetrainEvent::Measured(m.clone()));
        measurements.push(m);
        // The images found against this model join the next round's training set.
        all_fooling.extend_from_slice(&images);
    }
    let metadata = retrained_metadata(
        (base.1, &model.arch().summary()),
        cfg,
        &train.source,
        (&measurements, classes, is_stopped),
        started.elapsed().as_secs_f64(),
    );
    Ok(RetrainOutcome {
        net: model,
        metadata,
        measurements,
        is_stopped,
    })
}

/// The retrained model's weight-file metadata: what it was retrained from and how, its last
/// measured accuracy, whether it has the extra class, and whether it was stopped.
fn retrained_metadata(
    (base, architecture): (&ModelInfo, &str),
    cfg: &RetrainConfig,
    dataset: &str,
    (measurements, classes, is_stopped): (&[Measurement], usize, bool),
    seconds: f64,
) -> HashMap<String, String> {
    let mut metadata = HashMap::new();
    metadata.insert("format".into(), "backwork-cnn/1".into());
    metadata.insert("architecture".into(), architecture.to_string());
    metadata.insert("dataset".into(), dataset.to_string());
    if let Some(last) = measurements.last() {
        metadata.insert(
            crate::meta::META_TEST_ACCURACY.into(),
            format!("{:.4}", last.test_accuracy),
        );
    }
    metadata.insert(
        "retrained_from".into(),
        format!("{} (sha256 {})", base.name, base.sha256),
    );
    metadata.insert(
        "retrain".into(),
        serde_json::to_string(cfg).unwrap_or_default(),
    );
    if classes == 11 {
        metadata.insert(
            "extra_class".into(),
            "class 10 is 'fooling' (Nguyen, Yosinski & Clune 2015); classes 0-9 are the digits"
                .into(),
        );
    }
    if is_stopped {
        metadata.insert(
            "stopped_after_round".into(),
            (measurements.len() - 1).to_string(),
        );
    }
    metadata.insert("date".into(), crate::util::utc_now_iso());
    metadata.insert(
        "trained_with".into(),
        format!("backwork {} retrain", env!("CARGO_PKG_VERSION")),
    );
    metadata.insert("train_seconds".into(), format!("{seconds:.0}"));
    metadata
}
