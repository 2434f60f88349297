//! Plain records shared by every layer (the window included, which holds no network): which
//! model (file, hash, metadata), how to train one and how training goes, and the worst-
//! classified images. The code that acts on them lives in `model`.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

/// The safetensors metadata key of the test accuracy a trained model records.
pub const META_TEST_ACCURACY: &str = "test_accuracy";

/// Metadata key recording that a file's tensors were matched to ALGORITHM.md §1 by their
/// shapes, not their names: "conv1.weight as conv0.weight, …".
pub const META_BY_SHAPE: &str = "read_by_shape";

/// Metadata key of where a network came from ("pytorch" for a state_dict, "onnx").
pub const META_SOURCE: &str = "source";

/// Metadata keys of the normalisation a network's inputs go through ([`InputNormSpec`]):
/// comma-separated values, one per input channel or one for all.
pub const META_INPUT_MEAN: &str = "input_mean";
pub const META_INPUT_STD: &str = "input_std";

/// Metadata key of the weight file's own hash, kept when a normalisation that is not the
/// file's changed the model's hash.
pub const META_FILE_SHA256: &str = "file_sha256";

/// Metadata key of the weight file's own normalisation ("none", or "MEAN;STD" lists), kept
/// with [`META_FILE_SHA256`]: going back to it gives the file's hash again.
pub const META_FILE_INPUT_NORM: &str = "file_input_norm";

/// An input normalisation as a user gives it (torchvision's `Normalize(mean, std)`): the
/// network takes `(x − mean[c]) / std[c]` where the images hold `x`. One value per channel, or
/// one for all; checked against a network when applied.
#[derive(Clone, Debug, PartialEq)]
pub struct InputNormSpec {
    pub mean: Vec<f32>,
    pub std: Vec<f32>,
}

impl InputNormSpec {
    /// From comma-separated lists ("0.1307", "0.485,0.456,0.406"); an error says which list
    /// and what is wrong with it.
    pub fn parse(mean: &str, std: &str) -> Result<Self, String> {
        let list = |s: &str, what: &str| -> Result<Vec<f32>, String> {
            s.split(',')
                .map(|v| {
                    let v = v.trim();
                    v.parse::<f32>()
                        .ok()
                        .filter(|x| x.is_finite())
                        .ok_or_else(|| {
                            let v: String = v.chars().take(40).collect();
                            format!(
                                "{what} \"{}\" is not a finite number",
                                crate::util::one_line(&v)
                            )
                        })
                })
                .collect()
        };
        let spec = Self {
            mean: list(mean, "mean")?,
            std: list(std, "std")?,
        };
        if let Some(s) = spec.std.iter().find(|s| **s <= 0.0) {
            return Err(format!("std {s} is not positive"));
        }
        Ok(spec)
    }

    /// One line: `(x − 0.1307) / 0.3081`, or per channel `(x − [0.485, 0.456, 0.406]) / […]`.
    pub fn summary(&self) -> String {
        let list = |v: &[f32]| match v {
            [one] => one.to_string(),
            _ => format!(
                "[{}]",
                v.iter().map(f32::to_string).collect::<Vec<_>>().join(", ")
            ),
        };
        format!("(x − {}) / {}", list(&self.mean), list(&self.std))
    }

    /// Its lists as metadata values ([`META_INPUT_MEAN`], [`META_INPUT_STD`]).
    pub fn to_metadata(&self) -> [String; 2] {
        let list = |v: &[f32]| v.iter().map(f32::to_string).collect::<Vec<_>>().join(",");
        [list(&self.mean), list(&self.std)]
    }
}

/// The model a run used.
#[derive(Clone, Debug, Serialize)]
pub struct ModelRef {
    pub name: String,
    pub sha256: String,
}

/// A loaded model with where it came from.
#[derive(Clone, Debug)]
pub struct ModelInfo {
    /// What to call it in the UI and in messages ("mnist-cnn (shipped)", a file name).
    pub name: String,
    /// SHA-256 of the weight file's bytes, hex.
    pub sha256: String,
    /// The safetensors header metadata.
    pub metadata: HashMap<String, String>,
    /// Its network in one line ([`crate::net::Arch::summary`]); empty until the network is
    /// known.
    pub architecture: String,
}

impl ModelInfo {
    /// Its name and hash, as a run's results record them.
    pub fn model_ref(&self) -> ModelRef {
        ModelRef {
            name: self.name.clone(),
            sha256: self.sha256.clone(),
        }
    }

    /// The test accuracy recorded in the metadata, if any.
    pub fn test_accuracy(&self) -> Option<f64> {
        self.metadata.get(META_TEST_ACCURACY)?.parse().ok()
    }

    /// Where the network came from, when not a backwork file: "pytorch" or "onnx".
    pub fn source(&self) -> Option<&str> {
        self.metadata.get(META_SOURCE).map(String::as_str)
    }

    /// The normalisation its inputs go through, if any; `Err` when its metadata holds one
    /// that does not parse.
    pub fn input_norm(&self) -> Result<Option<InputNormSpec>, String> {
        match (
            self.metadata.get(META_INPUT_MEAN),
            self.metadata.get(META_INPUT_STD),
        ) {
            (None, None) => Ok(None),
            (Some(m), Some(s)) => InputNormSpec::parse(m, s).map(Some),
            _ => Err(format!(
                "its metadata gives one of \"{META_INPUT_MEAN}\" and \"{META_INPUT_STD}\" \
                 without the other"
            )),
        }
    }

    /// How its tensors were matched to ALGORITHM.md §1 by shape, when they were.
    pub fn read_by_shape(&self) -> Option<&str> {
        self.metadata.get(META_BY_SHAPE).map(String::as_str)
    }
}

/// How a fresh network's weights are drawn.
#[derive(
    Clone,
    Copy,
    Debug,
    Default,
    PartialEq,
    Eq,
    serde::Serialize,
    serde::Deserialize,
    clap::ValueEnum,
)]
#[serde(rename_all = "kebab-case")]
pub enum WeightInit {
    /// The original TensorFlow tutorial's (ALGORITHM.md §1): weights from a normal of standard
    /// deviation 0.1 truncated at two deviations, biases 0.1. With the original cost's defaults
    /// the fooling images of such networks converge; on uniform-init networks some digits
    /// thrash (see the README, "Convergence").
    #[default]
    Original,
    /// PyTorch's default: weights and biases uniform in ±1/√fan_in.
    Uniform,
}

/// How to train. Defaults are the recipe of the shipped model.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct TrainConfig {
    /// Passes over the training set (at least 1).
    pub epochs: usize,
    /// Images per Adam step (at least 1).
    pub batch_size: usize,
    /// Adam learning rate of the first epoch (positive, finite).
    pub lr: f64,
    /// The learning rate is multiplied by this after every epoch (in (0, 1]).
    pub lr_decay: f64,
    /// Seeds the initial weights and the shuffling: the same seed gives the same model.
    pub seed: u64,
    /// Train on only the first `limit` training images (for quick experiments and tests).
    pub limit: Option<usize>,
    /// How a fresh network's weights are drawn (ignored when training from a model).
    #[serde(default)]
    pub init: WeightInit,
}

impl Default for TrainConfig {
    fn default() -> Self {
        Self {
            epochs: 5,
            batch_size: 64,
            lr: 1e-3,
            lr_decay: 0.5,
            seed: 0,
            limit: None,
            init: WeightInit::Original,
        }
    }
}

/// Progress of a training run.
#[derive(Clone, Debug, PartialEq)]
pub enum TrainEvent {
    /// After every Adam step.
    Batch {
        epoch: usize,
        batch: usize,
        batches: usize,
        loss: f32,
        /// Training accuracy over this epoch so far.
        running_accuracy: f64,
        images_per_s: f64,
    },
    /// After every completed epoch, with the test-set accuracy.
    Epoch {
        epoch: usize,
        mean_loss: f64,
        test_accuracy: f64,
    },
}

/// One badly classified image.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct WorstImage {
    /// Row in the dataset (the MNIST training file for `backwork worst`).
    pub index: usize,
    /// The network's probability of its true label.
    pub p_correct: f32,
    /// The class the network picks for it.
    pub predicted: usize,
}

/// The worst images of one label, worst first.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct WorstLabel {
    pub label: u8,
    pub images: Vec<WorstImage>,
}
