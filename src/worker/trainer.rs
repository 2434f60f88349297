//! Training off the window's thread: [`train_job`] trains a fresh network of a built-in
//! architecture ([`crate::model::train::train_net`]) as a [`Job`], streams its progress, stops when cancelled,
//! and hands back the finished model (serialised with its weight-file metadata, hashed).

use std::sync::Arc;
use std::time::Instant;

use super::ENGINE_NICE;
use super::job::{Job, JobCtx, Wake};
use super::models::ModelHandle;
use crate::data::Dataset;
use crate::model::train::{TrainConfig, TrainEvent, train_net};
use crate::net::{Arch, Net, init::init_params};

/// A model the job finished training (or stopped early when cancelled).
pub struct TrainedModel {
    /// Named after how it ended ("trained in the app (2 epoch(s))").
    pub model: ModelHandle,
    /// `None` when stopped before the end.
    pub test_accuracy: Option<f64>,
    pub epochs_completed: usize,
    pub is_cancelled: bool,
}

impl TrainedModel {
    /// How training ended, in words.
    pub fn how(&self) -> String {
        how(self.is_cancelled, self.epochs_completed)
    }
}

fn how(is_cancelled: bool, epochs: usize) -> String {
    if is_cancelled {
        format!("stopped after {epochs} full epoch(s)")
    } else {
        format!("{epochs} epoch(s)")
    }
}

/// The architectures the app trains, by name ([`crate::net::Arch::builtin`]) with what each
/// is: the ones whose input is a 28×28 grey image.
pub const TRAINABLE: [(&str, &str); 3] = [
    (
        "original",
        "ALGORITHM.md §1: two 5×5 convolutions (32, 64), fc 1024; 3.3 M weights, about a minute an epoch here",
    ),
    (
        "lenet5",
        "LeNet-5: two 5×5 convolutions (6, 16), fc 120 and 84; 62 k weights, seconds an epoch",
    ),
    (
        "small-rgb",
        "Three 3×3 convolutions (16, 32, 64) with pools, fc 128: made for small colour images",
    ),
];

/// Trains a fresh network of the built-in architecture `arch` with `cfg` on `train_set`,
/// evaluating on `test_set` after each epoch.
pub fn train_job(
    cfg: TrainConfig,
    arch: &str,
    train_set: Arc<Dataset>,
    test_set: Arc<Dataset>,
    wake: Wake,
) -> Result<Job<TrainEvent, TrainedModel>, String> {
    // The built-in layers on the data's images and classes.
    let arch = Arch::builtin(arch, train_set.num_classes())
        .ok_or_else(|| format!("no built-in architecture {arch:?}"))?
        .with_input(train_set.shape);
    Job::spawn(
        "trainer",
        ENGINE_NICE,
        wake,
        move |ctx: &JobCtx<TrainEvent, TrainedModel>| {
            let started = Instant::now();
            let params = init_params(&arch, cfg.seed, cfg.init).map_err(|e| e.to_string())?;
            let net = Net::from_torch(arch.clone(), params).map_err(|e| e.to_string())?;
            let out = train_net(
                net,
                &train_set,
                &test_set,
                &cfg,
                None,
                ctx.cancel_flag(),
                &mut |ev| {
                    ctx.progress(ev);
                },
            )
            .map_err(|e| e.to_string())?;
            let metadata = out.metadata(
                &cfg,
                &train_set.source,
                started.elapsed().as_secs_f64(),
                &format!("backwork {} (app)", env!("CARGO_PKG_VERSION")),
            );
            let name = format!(
                "trained in the app ({})",
                how(out.is_cancelled, out.epochs_completed)
            );
            Ok(TrainedModel {
                model: ModelHandle::made(out.net, metadata, name)?,
                test_accuracy: out.test_accuracy,
                epochs_completed: out.epochs_completed,
                is_cancelled: out.is_cancelled,
            })
        },
    )
}
