//! Training the CNN on the network core ([`crate::net`]) with Adam on the batch-mean
//! cross-entropy; progress goes out through a callback so the CLI can draw a progress bar and
//! the app live curves.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use rand::{SeedableRng, rngs::StdRng, seq::SliceRandom};

use super::Cnn;
use super::eval::evaluate_net;
use super::weights::init_cnn_with;
use crate::data::{Dataset, PIXELS};
pub use crate::meta::{TrainConfig, TrainEvent};
use crate::net::{Acts, Adam, Net, Targets, Want, cross_entropy};

/// What can go wrong training.
#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    #[error("--{option}: {reason}")]
    Config {
        option: &'static str,
        reason: String,
    },
    #[error("training failed: {0}")]
    Numeric(#[from] candle_core::Error),
    #[error("training diverged: the loss became {0} at epoch {1}, batch {2}")]
    Diverged(f32, usize, usize),
}

impl TrainConfig {
    /// Checks every option, naming the first bad one.
    pub fn validate(&self) -> Result<(), TrainError> {
        let bad = |option, reason: &str| {
            Err(TrainError::Config {
                option,
                reason: reason.to_string(),
            })
        };
        if self.epochs == 0 {
            return bad("epochs", "must be at least 1");
        }
        if self.batch_size == 0 {
            return bad("batch-size", "must be at least 1");
        }
        if self.epochs > 1000 {
            return bad("epochs", &format!("at most 1000, got {}", self.epochs));
        }
        if self.batch_size > 65_536 {
            return bad(
                "batch-size",
                &format!("at most 65536, got {}", self.batch_size),
            );
        }
        if !(self.lr.is_finite() && self.lr > 0.0 && self.lr <= 10.0) {
            return bad("lr", &format!("must be in (0, 10], got {}", self.lr));
        }
        if !(self.lr_decay > 0.0 && self.lr_decay <= 1.0) {
            return bad(
                "lr-decay",
                &format!("must be in (0, 1], got {}", self.lr_decay),
            );
        }
        if self.limit == Some(0) {
            return bad("limit", "must be at least 1");
        }
        Ok(())
    }
}

/// How a training run ended.
pub struct TrainOutcome {
    pub cnn: Cnn,
    pub epochs_completed: usize,
    /// Test accuracy of the returned model; `None` when stopped (measuring it would take
    /// seconds, and a stop must be prompt).
    pub test_accuracy: Option<f64>,
    /// True when the cancel flag stopped it early.
    pub is_cancelled: bool,
}

/// Images added to the training set with soft targets (fooling images, when retraining).
pub struct ExtraSet {
    /// E×784 pixels.
    pub images: Vec<f32>,
    /// E×K target distributions (K = the model's classes): 0.1 for each digit in the
    /// original's uniform mode, one-hot on class 10 in the extra-class mode.
    pub targets: Vec<f32>,
    /// Each extra image appears this many times per epoch (1: appended once, as the original).
    pub repeat: usize,
}

/// Trains a fresh network on `train`, evaluating on `test` after each epoch and at the end.
/// Checks `cancel` before every step; when it is set, stops and returns the model as it is.
pub fn train(
    train: &Dataset,
    test: &Dataset,
    cfg: &TrainConfig,
    cancel: &AtomicBool,
    on_event: &mut dyn FnMut(TrainEvent),
) -> Result<TrainOutcome, TrainError> {
    train_from(train, test, cfg, None, None, cancel, on_event)
}

/// [`train`], starting from `start`'s weights when given (an explicit choice: the original
/// silently resumed from an existing file), with `extra` images added to every epoch. With
/// extra images the loss is the cross-entropy against soft targets (one-hot for the training
/// images), over `start`'s classes (or the targets' width for a fresh network).
pub fn train_from(
    train: &Dataset,
    test: &Dataset,
    cfg: &TrainConfig,
    start: Option<&Cnn>,
    extra: Option<&ExtraSet>,
    cancel: &AtomicBool,
    on_event: &mut dyn FnMut(TrainEvent),
) -> Result<TrainOutcome, TrainError> {
    cfg.validate()?;
    let classes = classes_of(start, extra)?;
    let init = match start {
        Some(c) => c.clone(),
        None => init_cnn_with(cfg.seed, classes, cfg.init)?,
    };
    let out = train_net(init.to_net()?, train, test, cfg, extra, cancel, on_event)?;
    Ok(TrainOutcome {
        cnn: Cnn::from_net(&out.net)?,
        epochs_completed: out.epochs_completed,
        test_accuracy: out.test_accuracy,
        is_cancelled: out.is_cancelled,
    })
}

/// How training a network on the core ended (see [`TrainOutcome`]).
pub struct NetOutcome {
    pub net: Net,
    pub epochs_completed: usize,
    pub test_accuracy: Option<f64>,
    pub is_cancelled: bool,
}

impl NetOutcome {
    /// The weight-file metadata of the trained network: the recipe, the accuracy, the
    /// dataset, the date, who trained it (`trained_with`, e.g. "backwork 0.1.0 train") and its
    /// architecture ([`crate::net::Arch::summary`]).
    pub fn metadata(
        &self,
        cfg: &TrainConfig,
        dataset: &str,
        seconds: f64,
        trained_with: &str,
    ) -> std::collections::HashMap<String, String> {
        let mut meta = std::collections::HashMap::new();
        meta.insert("format".into(), "backwork-cnn/1".into());
        meta.insert("architecture".into(), self.net.arch().summary());
        meta.insert("dataset".into(), dataset.to_string());
        if let Some(a) = self.test_accuracy {
            meta.insert(crate::meta::META_TEST_ACCURACY.into(), format!("{a:.4}"));
        }
        meta.insert(
            "recipe".into(),
            serde_json::to_string(cfg).unwrap_or_default(),
        );
        meta.insert("epochs_completed".into(), self.epochs_completed.to_string());
        meta.insert("stopped_early".into(), self.is_cancelled.to_string());
        meta.insert("date".into(), crate::util::utc_now_iso());
        meta.insert("trained_with".into(), trained_with.to_string());
        meta.insert("train_seconds".into(), format!("{seconds:.0}"));
        meta
    }
}

/// Trains `net` (any architecture on the core whose input is a 28×28 grey image) on
/// `train` as [`train_from`] does, with `extra` images of soft targets over its classes.
pub fn train_net(
    mut net: Net,
    train: &Dataset,
    test: &Dataset,
    cfg: &TrainConfig,
    extra: Option<&ExtraSet>,
    cancel: &AtomicBool,
    on_event: &mut dyn FnMut(TrainEvent),
) -> Result<NetOutcome, TrainError> {
    cfg.validate()?;
    super::fits_data(&net, train).map_err(|reason| TrainError::Config {
        option: "data",
        reason,
    })?;
    let px = net.input_len();
    let classes = net.classes();
    if let Some(e) = extra
        && e.targets.len() * px != e.images.len() * classes
    {
        return Err(TrainError::Config {
            option: "extra",
            reason: format!("targets are not over the network's {classes} classes"),
        });
    }
    let mut opt = Adam::new(net.params(), cfg.lr);
    let n = cfg.limit.map_or(train.len(), |l| l.min(train.len()));
    // Indices past n are extra images (index − n modulo their count).
    let n_extra = extra.map_or(0, |e| e.images.len() / px);
    let total = n + n_extra * extra.map_or(0, |e| e.repeat);
    let mut order: Vec<usize> = (0..total).collect();
    let mut rng = StdRng::seed_from_u64(cfg.seed ^ 0x5eed_5eed);
    let batches = total.div_ceil(cfg.batch_size);
    let mut epochs_completed = 0;
    let mut is_cancelled = false;
    let mut test_accuracy = f64::NAN;
    let batch = Batch {
        train,
        extra,
        n,
        n_extra,
        classes,
    };
    let mut acts = Acts::for_training();
    let mut grads = net.zero_grads();
    let weights_only = Want {
        input: false,
        weights: true,
    };
    'epochs: for epoch in 0..cfg.epochs {
        order.shuffle(&mut rng);
        let started = Instant::now();
        let (mut seen, mut right, mut loss_sum) = (0usize, 0usize, 0f64);
        let mut batch_images = 0usize;
        for (b, idx) in order.chunks(cfg.batch_size).enumerate() {
            if cancel.load(Ordering::Relaxed) {
                is_cancelled = true;
                break 'epochs;
            }
            let (x, targets, labels) = batch.inputs(idx);
            net.forward(&x, &mut acts);
            let (loss_v, g_logits) = match &targets {
                Some(t) => cross_entropy(acts.logits(), classes, &Targets::Soft(t)),
                None => {
                    let hard: Vec<u8> = labels.iter().map(|l| l.unwrap_or(0) as u8).collect();
                    cross_entropy(acts.logits(), classes, &Targets::Hard(&hard))
                }
            };
            if !loss_v.is_finite() {
                return Err(TrainError::Diverged(loss_v, epoch + 1, b + 1));
            }
            net.backward(&mut acts, &g_logits, &[], weights_only, &mut grads);
            opt.step(net.params_mut(), &grads);
            // Running accuracy over the training images (extra images have no single label).
            for (z, l) in acts.logits().chunks_exact(classes).zip(&labels) {
                if let Some(l) = l {
                    right += usize::from(crate::net::kernels::argmax(z) == *l as usize);
                    seen += 1;
                }
            }
            loss_sum += loss_v as f64 * idx.len() as f64;
            batch_images += idx.len();
            on_event(TrainEvent::Batch {
                epoch: epoch + 1,
                batch: b + 1,
                batches,
                loss: loss_v,
                running_accuracy: right as f64 / seen.max(1) as f64,
                images_per_s: batch_images as f64 / started.elapsed().as_secs_f64().max(1e-9),
            });
        }
        epochs_completed = epoch + 1;
        test_accuracy = evaluate_net(&net, test, &mut |_, _| {}).accuracy();
        on_event(TrainEvent::Epoch {
            epoch: epoch + 1,
            mean_loss: loss_sum / batch_images.max(1) as f64,
            test_accuracy,
        });
        opt.lr *= cfg.lr_decay;
    }
    let test_accuracy = if is_cancelled {
        None
    } else if test_accuracy.is_nan() {
        Some(evaluate_net(&net, test, &mut |_, _| {}).accuracy())
    } else {
        Some(test_accuracy)
    };
    Ok(NetOutcome {
        net,
        epochs_completed,
        test_accuracy,
        is_cancelled,
    })
}

/// The number of classes of the network to train: the starting model's, or the extra
/// targets' width, or 10; extra targets of another width are refused.
fn classes_of(start: Option<&Cnn>, extra: Option<&ExtraSet>) -> Result<usize, TrainError> {
    let classes = match (start, extra) {
        (Some(c), _) => c.num_classes(),
        (None, Some(e)) if !e.images.is_empty() => {
            e.targets.len() / (e.images.len() / PIXELS).max(1)
        }
        _ => 10,
    };
    if let Some(e) = extra
        && e.targets.len() * PIXELS != e.images.len() * classes
    {
        return Err(TrainError::Config {
            option: "extra",
            reason: format!(
                "{} targets for {} images of {classes} classes",
                e.targets.len(),
                e.images.len() / PIXELS
            ),
        });
    }
    Ok(classes)
}

/// What a training batch is drawn from: the training images (the first `n`) and the extra
/// images with soft targets (indices past `n`, modulo their count `n_extra`).
struct Batch<'a> {
    train: &'a Dataset,
    extra: Option<&'a ExtraSet>,
    n: usize,
    n_extra: usize,
    classes: usize,
}

impl Batch<'_> {
    /// The pixels of the images `idx`, their soft targets when there are extra images (M×K,
    /// one-hot for the training images), and each image's label (none for extra images).
    #[allow(clippy::type_complexity)]
    fn inputs(&self, idx: &[usize]) -> (Vec<f32>, Option<Vec<f32>>, Vec<Option<u32>>) {
        let Some(e) = self.extra else {
            let labels = idx
                .iter()
                .map(|&i| Some(self.train.labels[i] as u32))
                .collect();
            return (self.train.batch_f32(idx), None, labels);
        };
        let px = self.train.image_len();
        let mut x = Vec::with_capacity(idx.len() * px);
        let mut t = vec![0f32; idx.len() * self.classes];
        let mut labels = Vec::with_capacity(idx.len());
        for (row, &i) in idx.iter().enumerate() {
            if i < self.n {
                x.extend(self.train.image(i).iter().map(|&p| p as f32 / 255.0));
                t[row * self.classes + self.train.labels[i] as usize] = 1.0;
                labels.push(Some(self.train.labels[i] as u32));
            } else {
                let j = (i - self.n) % self.n_extra;
                x.extend_from_slice(&e.images[j * px..(j + 1) * px]);
                t[row * self.classes..(row + 1) * self.classes]
                    .copy_from_slice(&e.targets[j * self.classes..(j + 1) * self.classes]);
                labels.push(None);
            }
        }
        (x, Some(t), labels)
    }
}
