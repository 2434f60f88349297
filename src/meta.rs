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
