//! The networks, held on the worker side. The window keeps a [`ModelHandle`] (what the model
//! is called, its hash, its metadata) and hands it to jobs; it never sees the network itself.
//! Every job that touches a network or its file is here: loading (reading and hashing),
//! saving, classifying the test set, and finding the worst-classified training images.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use super::ENGINE_NICE;
use super::job::{Job, JobCtx, Wake};
use crate::backwork::frozen::FrozenCnn;
use crate::data::Dataset;
use crate::meta::InputNormSpec;
use crate::meta::{ModelInfo, ModelRef};
use crate::model::Cnn;
use crate::model::eval::EVAL_BATCH;
use crate::model::weights::{
    load_net, load_net_or_shipped, net_to_bytes, set_input_norm, sha256_hex,
};
use crate::model::worst::{WorstLabel, worst_images};
use crate::net::Net;

/// A network and what it is. Cloning shares the network.
#[derive(Clone)]
pub struct ModelHandle {
    /// The engine's copy of the network, laid out once where the handle is made (on a job's
    /// thread, not the window's); every run and sweep clones it.
    frozen: Arc<FrozenCnn>,
    info: ModelInfo,
    /// Its weight file's bytes, when it was made in the app and not read from a file (so a
    /// save writes exactly the file whose hash is shown).
    bytes: Option<Arc<Vec<u8>>>,
}

impl std::fmt::Debug for ModelHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ModelHandle({})", self.info.name)
    }
}

impl ModelHandle {
    /// The model of `--model`, or the shipped one (at start, before the window opens).
    /// With `norm`, its inputs normalised so (`--input-mean`, `--input-std`).
    pub fn load_or_shipped(
        path: Option<&Path>,
        norm: Option<&InputNormSpec>,
    ) -> Result<Self, String> {
        let (net, info) = load_net_or_shipped(path).map_err(|e| e.to_string())?;
        let model = Self::checked(net, info, None)?;
        match norm {
            Some(n) => model
                .with_input_norm(Some(n))
                .map_err(|e| format!("--input-mean/--input-std: {e}")),
            None => Ok(model),
        }
    }

    /// The same weights taking their inputs normalised as `norm` says (`None`: as they are),
    /// under the name and hash that say so ([`crate::model::weights::set_input_norm`]).
    pub fn with_input_norm(&self, norm: Option<&InputNormSpec>) -> Result<Self, String> {
        let (mut net, mut info) = (self.net().clone(), self.info.clone());
        set_input_norm(&mut net, &mut info, norm)
            .map_err(|e| format!("{}: {e}", crate::util::one_line(&info.name)))?;
        match &self.bytes {
            // Made in the app: its file to save is made anew, the hash shown its own.
            Some(_) => {
                let name = info.name.clone();
                Self::made(net, info.metadata, name)
            }
            None => Self::checked(net, info, None),
        }
    }

    /// A network made in the app (trained or retrained), serialised once with `metadata`
    /// under the display name `name`.
    pub(crate) fn made(
        net: Net,
        metadata: HashMap<String, String>,
        name: String,
    ) -> Result<Self, String> {
        let bytes = net_to_bytes(&net, &metadata)
            .map_err(|e| format!("the model cannot be serialised: {e}"))?;
        let info = ModelInfo {
            name,
            sha256: sha256_hex(&bytes),
            metadata,
            architecture: String::new(),
        };
        Self::checked(net, info, Some(Arc::new(bytes)))
    }

    /// A network of ALGORITHM.md §1 loaded elsewhere (tests, tools), refused if the engine
    /// cannot use it.
    pub fn new(cnn: Cnn, info: ModelInfo) -> Result<Self, String> {
        let net = cnn
            .to_net()
            .map_err(|e| format!("{}: not usable: {e}", info.name))?;
        Self::checked(net, info, None)
    }

    /// Any network loaded elsewhere, refused if the engine cannot use it.
    pub fn from_net(net: Net, info: ModelInfo) -> Result<Self, String> {
        Self::checked(net, info, None)
    }

    /// The handle of a network (whether it fits a dataset is [`Self::fits`]).
    fn checked(net: Net, mut info: ModelInfo, bytes: Option<Arc<Vec<u8>>>) -> Result<Self, String> {
        info.architecture = net.arch().summary();
        let frozen = FrozenCnn::from_net(net);
        Ok(Self {
            frozen: Arc::new(frozen),
            info,
            bytes,
        })
    }

    pub fn info(&self) -> &ModelInfo {
        &self.info
    }

    /// Its name and hash, as results record them.
    pub fn model_ref(&self) -> ModelRef {
        self.info.model_ref()
    }

    /// Whether it was made in the app and can be saved.
    pub fn is_unsaved(&self) -> bool {
        self.bytes.is_some()
    }

    /// The same network under another display name (a saved model takes its file's name).
    pub fn renamed(&self, name: String) -> Self {
        let mut m = self.clone();
        m.info.name = name;
        m
    }

    /// Whether the network takes `data`'s images and has its classes; else what does not
    /// fit, both shapes named.
    pub fn fits(&self, data: &Dataset) -> Result<(), String> {
        crate::model::fits_data(self.net(), data)
            .map_err(|e| format!("{}: not usable on {}: {e}", self.info.name, data.source))
    }

    /// The shape of the network's input images.
    pub fn input_shape(&self) -> crate::net::Shape {
        self.frozen.input_shape()
    }

    /// The names of the network's taps, in order.
    pub fn tap_names(&self) -> Vec<String> {
        self.frozen.tap_names().to_vec()
    }

    /// The network on the core, shared (no copy).
    pub(crate) fn net(&self) -> &crate::net::Net {
        self.frozen.net()
    }

    pub(crate) fn frozen(&self) -> FrozenCnn {
        (*self.frozen).clone()
    }
}

/// Reads both splits of the dataset folder `dir` and checks that they hold together (one
/// image shape, no test class the training split lacks, neither empty).
pub fn data_job(dir: PathBuf, wake: Wake) -> Result<Job<(), DataPair>, String> {
    Job::spawn("open-data", 0, wake, move |_: &JobCtx<(), DataPair>| {
        let load = |split| {
            crate::data::Dataset::from_dir(&dir, split)
                .map_err(|e| format!("not opened, the data in use stays: {e}"))
        };
        let train = load(crate::data::Split::Train)?;
        let test = load(crate::data::Split::Test)?;
        if train.is_empty() || test.is_empty() {
            return Err(format!(
                "not opened, the data in use stays: {}: a split holds no images",
                dir.display()
            ));
        }
        train
            .check_test_split(&test)
            .map_err(|e| format!("not opened, the data in use stays: {e}"))?;
        Ok((dir.clone(), Arc::new(train), Arc::new(test)))
    })
}

/// A dataset folder opened: its path, training and test splits.
pub type DataPair = (PathBuf, Arc<Dataset>, Arc<Dataset>);

/// Reads, checks and hashes weights files, in order: the last one that loads is the result
/// (several dropped at once), or the last one's error when none does.
/// (Whether it fits the window's data is the window's to check: [`ModelHandle::fits`].)
pub fn load_job(paths: Vec<PathBuf>, wake: Wake) -> Result<Job<(), ModelHandle>, String> {
    Job::spawn("open-model", 0, wake, move |_: &JobCtx<(), ModelHandle>| {
        let mut last = Err("no file to open".to_string());
        for path in &paths {
            let loaded = load_net(path)
                .map_err(|e| e.to_string())
                .and_then(|(net, info)| ModelHandle::checked(net, info, None))
                .map_err(|e| format!("not loaded, the model in use stays: {e}"));
            if loaded.is_ok() || last.is_err() {
                last = loaded;
            }
        }
        last
    })
}

/// The model `model` taking its inputs normalised as `norm` says (`None`: as they are), made
/// on a job (a copy of the network, hashed).
pub fn norm_job(
    model: ModelHandle,
    norm: Option<InputNormSpec>,
    wake: Wake,
) -> Result<Job<(), ModelHandle>, String> {
    Job::spawn("input-norm", 0, wake, move |_: &JobCtx<(), ModelHandle>| {
        model
            .with_input_norm(norm.as_ref())
            .map_err(|e| format!("the model in use stays: {e}"))
    })
}

/// Writes a model made in the app to `path` (never over an existing file); the result is
/// the handle under the file's name.
pub fn save_job(
    model: ModelHandle,
    path: PathBuf,
    wake: Wake,
) -> Result<Job<(), ModelHandle>, String> {
    Job::spawn("save-model", 0, wake, move |_: &JobCtx<(), ModelHandle>| {
        let bytes = match &model.bytes {
            Some(b) => b.clone(),
            None => return Err("not saved: this model is already a file".into()),
        };
        crate::io::write_atomic(&path, &bytes, false).map_err(|e| format!("not saved: {e}"))?;
        let name = path.file_name().map_or(model.info.name.clone(), |f| {
            f.to_string_lossy().into_owned()
        });
        Ok(model.renamed(name))
    })
}

/// Predictions for a run of consecutive test images.
#[derive(Clone, Debug)]
pub struct PredictionChunk {
    pub start: usize,
    /// (predicted class, its probability) per image.
    pub predictions: Vec<(usize, f32)>,
}

/// Classifies every image of `data` with `model`, a chunk at a time (small first, so the
/// first page fills within a frame or two). While `hold` is set (the engine computes) it
/// waits between chunks, so the two do not share the cores.
pub fn classify_job(
    model: &ModelHandle,
    data: Arc<Dataset>,
    hold: Arc<AtomicBool>,
    wake: Wake,
) -> Result<Job<PredictionChunk, ()>, String> {
    let model = model.clone();
    Job::spawn(
        "classifier",
        ENGINE_NICE + 5,
        wake,
        move |ctx: &JobCtx<PredictionChunk, ()>| {
            let px = data.image_len().max(1);
            let n = data.pixels.len() / px;
            let (mut start, mut size) = (0, 100);
            while start < n {
                let end = (start + size).min(n);
                let x: Vec<f32> = data.pixels[start * px..end * px]
                    .iter()
                    .map(|&p| p as f32 / 255.0)
                    .collect();
                let predictions = crate::model::classify_net(model.net(), &x);
                if !ctx.progress(PredictionChunk { start, predictions }) {
                    return Ok(());
                }
                while hold.load(Ordering::Relaxed) && !ctx.is_cancelled() {
                    std::thread::sleep(std::time::Duration::from_millis(100));
                }
                start = end;
                size = EVAL_BATCH;
            }
            Ok(())
        },
    )
}

/// Per label, the `k` training images `model` classifies worst; progress is (done, total).
pub fn worst_job(
    model: &ModelHandle,
    train: Arc<Dataset>,
    k: usize,
    wake: Wake,
) -> Result<Job<(usize, usize), Vec<WorstLabel>>, String> {
    let model = model.clone();
    Job::spawn(
        "worst",
        ENGINE_NICE,
        wake,
        move |ctx: &JobCtx<(usize, usize), Vec<WorstLabel>>| {
            let r = worst_images(model.net(), &train, k, &mut |d, t| ctx.progress((d, t)));
            if ctx.is_cancelled() {
                return Err("cancelled".into());
            }
            Ok(r)
        },
    )
}
