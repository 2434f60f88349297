//! Plain records that name a model, shared by every layer (the window included, which holds
//! no network): which file, its hash, and what its metadata says.

use std::collections::HashMap;

use serde::Serialize;

/// The safetensors metadata key of the test accuracy a trained model records.
pub const META_TEST_ACCURACY: &str = "test_accuracy";

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
}
