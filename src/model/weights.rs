//! Weight files: safetensors with the names and shapes of ALGORITHM.md §1, checked on load,
//! with free-form metadata (dataset, accuracy, recipe, date) in the header.

use std::collections::HashMap;
use std::path::Path;

use candle_core::{DType, Device, Tensor};
use safetensors::{Dtype, SafeTensors};
use sha2::{Digest, Sha256};

use super::{CONV1_DIM, Cnn, FC_UNITS, WEIGHT_NAMES};
use crate::io::{WriteError, write_atomic};
use crate::meta::ModelInfo;
use crate::net::{Arch, Net};

/// Metadata key of the number of output classes ("10" or "11").
pub const META_NUM_CLASSES: &str = "num_classes";

/// Metadata key of the architecture, as the JSON of [`Arch`] (README, "The network
/// description"): what `backwork train` writes for any network but the §1 one, whose files
/// keep exactly the names and shapes of ALGORITHM.md §1 and need no description.
pub const META_ARCH: &str = "arch";

/// What can go wrong with a weight file; every message names the file.
#[derive(Debug, thiserror::Error)]
pub enum WeightsError {
    #[error("{file}: cannot read: {source}")]
    Io {
        file: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{file}: not a safetensors file ({reason})")]
    NotSafetensors { file: String, reason: String },
    #[error("{file}: {reason}")]
    Invalid { file: String, reason: String },
    #[error("{file}: {source}")]
    Numeric {
        file: String,
        #[source]
        source: candle_core::Error,
    },
    #[error(transparent)]
    Write(#[from] WriteError),
}

/// The expected shape of each tensor, for a model with `k` classes.
fn expected_shapes(k: usize) -> [Vec<usize>; 8] {
    [
        vec![32, 1, 5, 5],
        vec![32],
        vec![64, 32, 5, 5],
        vec![64],
        vec![FC_UNITS, CONV1_DIM],
        vec![FC_UNITS],
        vec![k, FC_UNITS],
        vec![k],
    ]
}

use crate::meta::{
    InputNormSpec, META_FILE_INPUT_NORM, META_FILE_SHA256, META_INPUT_MEAN, META_INPUT_STD,
};
pub use crate::meta::{META_BY_SHAPE, META_SOURCE};
use crate::net::InputNorm;

/// `values` if every one is finite; else what is wrong with tensor `name`.
fn finite(name: &str, values: Vec<f32>) -> Result<Vec<f32>, String> {
    let bad = values.iter().filter(|v| !v.is_finite()).count();
    if bad > 0 {
        let first = values.iter().position(|v| !v.is_finite()).unwrap_or(0);
        return Err(format!(
            "{name} has {bad} non-finite values (NaN or infinity), the first at flat index {first}"
        ));
    }
    Ok(values)
}

/// The values of tensor `name`, checked: f32, of shape `shape`, every value finite; else
/// what is wrong with it.
fn checked_values(
    name: &str,
    view: &safetensors::tensor::TensorView<'_>,
    shape: &[usize],
) -> Result<Vec<f32>, String> {
    let name = super::torch::shown_name(name);
    let dtype = match view.dtype() {
        Dtype::F32 => DType::F32,
        Dtype::F64 => DType::F64,
        Dtype::F16 => DType::F16,
        Dtype::BF16 => DType::BF16,
        other => {
            return Err(format!(
                "{name} has dtype {other:?}, expected a float (F32, F64, F16 or BF16)"
            ));
        }
    };
    if view.shape() != shape {
        return Err(format!(
            "{name} has shape {:?}, expected {:?}",
            view.shape(),
            shape
        ));
    }
    let values: Vec<f32> = if dtype == DType::F32 {
        view.data()
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect()
    } else {
        // Widened (F16, BF16) or rounded to nearest (F64) as PyTorch's .float() does.
        let count = shape.iter().product::<usize>();
        Tensor::from_raw_buffer(view.data(), dtype, &[count], &Device::Cpu)
            .and_then(|t| t.to_dtype(DType::F32))
            .and_then(|t| t.to_vec1::<f32>())
            .map_err(|e| format!("{name}: {e}"))?
    };
    finite(&name, values)
}

/// Names for a message: the first ten, each shortened ([`super::torch::shown_name`]), and how
/// many more.
fn listing(names: &[&str]) -> String {
    let mut words: Vec<String> = names
        .iter()
        .take(10)
        .map(|n| super::torch::shown_name(n))
        .collect();
    if names.len() > 10 {
        words.push(format!("and {} more", names.len() - 10));
    }
    words.join(", ")
}

/// For tensors named otherwise than ALGORITHM.md §1 (`conv1`/`conv2`/`fc1`/`fc2`, a
/// `model.` or `module.` prefix, an `nn.Sequential`'s numbers): which one fills each of §1's
/// eight places, in [`WEIGHT_NAMES`] order, found by shape. §1's eight shapes all differ, so
/// the match is certain when each is met by exactly one tensor and none is left over; else
/// `None`.
fn by_shape(shapes: &[&[usize]]) -> Option<[usize; 8]> {
    if shapes.len() != 8 {
        return None;
    }
    let k = shapes.iter().find_map(|s| match s {
        [k @ (10 | 11), FC_UNITS] => Some(*k),
        _ => None,
    })?;
    let mut found = [0; 8];
    for (slot, want) in expected_shapes(k).iter().enumerate() {
        let mut hits = shapes
            .iter()
            .enumerate()
            .filter(|(_, s)| **s == want.as_slice());
        found[slot] = hits.next()?.0;
        if hits.next().is_some() {
            return None;
        }
    }
    Some(found)
}

/// "conv1.weight as conv0.weight, …": how [`by_shape`] read `names`.
fn by_shape_words(names: &[&str], found: &[usize; 8]) -> String {
    WEIGHT_NAMES
        .iter()
        .zip(found)
        .map(|(w, &i)| format!("{} as {w}", super::torch::shown_name(names[i])))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The §1 network from its eight checked tensors (in [`WEIGHT_NAMES`] order) and its info.
fn cnn_with_info(
    file: &str,
    bytes: &[u8],
    tensors: Vec<Tensor>,
    metadata: HashMap<String, String>,
) -> Result<(Cnn, ModelInfo), WeightsError> {
    let cnn = Cnn::from_tensors(tensors).ok_or_else(|| WeightsError::Invalid {
        file: file.to_string(),
        reason: "internal: tensor count".into(),
    })?;
    let info = ModelInfo {
        name: file.to_string(),
        sha256: sha256_hex(bytes),
        metadata,
        architecture: Arch::original(cnn.num_classes()).summary(),
    };
    Ok((cnn, info))
}

/// A tensor of the CPU from checked values, naming the file on failure.
fn cpu_tensor(file: &str, values: Vec<f32>, shape: &[usize]) -> Result<Tensor, WeightsError> {
    Tensor::from_vec(values, shape, &Device::Cpu).map_err(|source| WeightsError::Numeric {
        file: file.to_string(),
        source,
    })
}

/// Parses and checks a weight file's bytes: every name present, f32, the right shape, finite.
/// A file whose names differ but whose eight shapes are §1's (`by_shape`) is read by shape,
/// and its metadata says so ([`META_BY_SHAPE`]).
pub fn cnn_from_bytes(file: &str, bytes: &[u8]) -> Result<(Cnn, ModelInfo), WeightsError> {
    let invalid = |reason: String| WeightsError::Invalid {
        file: file.to_string(),
        reason,
    };
    let st = SafeTensors::deserialize(bytes).map_err(|e| WeightsError::NotSafetensors {
        file: file.to_string(),
        reason: e.to_string(),
    })?;
    let (_, header) =
        SafeTensors::read_metadata(bytes).map_err(|e| WeightsError::NotSafetensors {
            file: file.to_string(),
            reason: e.to_string(),
        })?;
    let mut metadata = header.metadata().clone().unwrap_or_default();
    let mut names = st.names();
    names.sort_unstable();
    let unexpected: Vec<&str> = names
        .iter()
        .copied()
        .filter(|n| !WEIGHT_NAMES.contains(n))
        .collect();
    let missing: Vec<&str> = WEIGHT_NAMES
        .iter()
        .copied()
        .filter(|n| !names.iter().any(|m| m == n))
        .collect();
    let unexpected_words = listing(&unexpected);
    let mut sources: Vec<&str> = WEIGHT_NAMES.to_vec();
    if !missing.is_empty() {
        let owned: Vec<Vec<usize>> = names
            .iter()
            .map(|n| st.tensor(n).map(|v| v.shape().to_vec()))
            .collect::<Result<_, _>>()
            .map_err(|e| invalid(e.to_string()))?;
        let shapes: Vec<&[usize]> = owned.iter().map(Vec::as_slice).collect();
        match by_shape(&shapes) {
            Some(found) => {
                metadata.insert(META_BY_SHAPE.into(), by_shape_words(&names, &found));
                sources = found.iter().map(|&i| names[i]).collect();
            }
            None => {
                let mut reason = format!("missing tensor {}", missing.join(", "));
                if !unexpected.is_empty() {
                    reason += &format!(
                        " (the file has {unexpected_words}); a file without backwork's \
                         \"arch\" metadata is read as the network of ALGORITHM.md §1, under \
                         its names or by its eight shapes: export another network to ONNX"
                    );
                }
                return Err(invalid(reason));
            }
        }
    } else if !unexpected.is_empty() {
        return Err(invalid(format!(
            "unexpected tensor {unexpected_words} (expected exactly {})",
            WEIGHT_NAMES.join(", ")
        )));
    }
    let k = st
        .tensor(sources[7])
        .map_err(|e| invalid(e.to_string()))?
        .shape()
        .first()
        .copied()
        .unwrap_or(0);
    let k = if k == 11 { 11 } else { 10 };
    let shapes = expected_shapes(k);
    let mut tensors = Vec::with_capacity(8);
    for (name, shape) in sources.iter().zip(shapes.iter()) {
        let view = st.tensor(name).map_err(|e| invalid(e.to_string()))?;
        let values = checked_values(name, &view, shape).map_err(invalid)?;
        tensors.push(cpu_tensor(file, values, shape)?);
    }
    cnn_with_info(file, bytes, tensors, metadata)
}

/// Reads a PyTorch state_dict ([`super::torch`]) as the network of ALGORITHM.md §1: by its
/// names, or by its shapes (`by_shape`) under any others. A state_dict holds no
/// architecture, so weights of another network are refused, pointing to ONNX.
pub fn cnn_from_torch(file: &str, bytes: &[u8]) -> Result<(Cnn, ModelInfo), WeightsError> {
    let invalid = |reason: String| WeightsError::Invalid {
        file: file.to_string(),
        reason,
    };
    // Which tensor fills each of §1's places, found from the names and shapes alone, before
    // any value is read; and how, when by shape.
    let mut plan: Option<(Vec<usize>, Option<String>)> = None;
    let mut tensors = super::torch::read_state_dict_checked(bytes, |listed| {
        let names: Vec<&str> = listed.iter().map(|(n, _)| *n).collect();
        let by_name: Option<Vec<usize>> = WEIGHT_NAMES
            .iter()
            .map(|w| names.iter().position(|n| n == w))
            .collect();
        plan = Some(match by_name {
            Some(order) if names.len() == 8 => (order, None),
            _ => {
                let shapes: Vec<&[usize]> = listed.iter().map(|(_, s)| *s).collect();
                let found = by_shape(&shapes).ok_or_else(|| not_original(listed))?;
                (found.to_vec(), Some(by_shape_words(&names, &found)))
            }
        });
        Ok(())
    })
    .map_err(invalid)?;
    let Some((order, how)) = plan else {
        return Err(invalid("internal: no tensors were checked".into()));
    };
    let mut metadata = HashMap::new();
    metadata.insert(META_SOURCE.to_string(), "pytorch".to_string());
    if let Some(how) = how {
        metadata.insert(META_BY_SHAPE.into(), how);
    }
    let k = match tensors[order[7]].shape.as_slice() {
        [11] => 11,
        _ => 10,
    };
    let mut out = Vec::with_capacity(8);
    for (&i, shape) in order.iter().zip(expected_shapes(k).iter()) {
        let t = &mut tensors[i];
        let name = super::torch::shown_name(&t.name);
        if t.shape != *shape {
            return Err(invalid(format!(
                "{name} has shape {:?}, expected {shape:?}",
                t.shape
            )));
        }
        let values = finite(&name, std::mem::take(&mut t.values)).map_err(invalid)?;
        out.push(cpu_tensor(file, values, shape)?);
    }
    cnn_with_info(file, bytes, out, metadata)
}

/// Why a state_dict is not the §1 network: its tensors and §1's, side by side.
fn not_original(tensors: &[(&str, &[usize])]) -> String {
    let mut sorted: Vec<&(&str, &[usize])> = tensors.iter().collect();
    sorted.sort_by(|a, b| a.0.cmp(b.0));
    let listed: Vec<String> = sorted
        .iter()
        .take(10)
        .map(|(n, s)| format!("{} {s:?}", super::torch::shown_name(n)))
        .collect();
    let more = if tensors.len() > 10 { ", …" } else { "" };
    let want: Vec<String> = WEIGHT_NAMES
        .iter()
        .zip(expected_shapes(10).iter())
        .map(|(n, s)| format!("{n} {s:?}"))
        .collect();
    format!(
        "its {} tensors ({}{more}) are not the network of ALGORITHM.md §1 ({}); a PyTorch \
         state_dict holds no architecture, so backwork reads it only as that network: export \
         any other network to ONNX (torch.onnx.export) and open the .onnx file",
        tensors.len(),
        listed.join(", "),
        want.join(", ")
    )
}

/// The §1 network read from `file` as the core's [`Net`].
fn as_net(file: &str, (cnn, info): (Cnn, ModelInfo)) -> Result<(Net, ModelInfo), WeightsError> {
    let net = cnn.to_net().map_err(|source| WeightsError::Numeric {
        file: file.to_string(),
        source,
    })?;
    Ok((net, info))
}

/// Parses and checks a weight file of any network: with the architecture in its metadata
/// ([`META_ARCH`]) every tensor that architecture names, f32, of its shape, finite, and no
/// other; without it, a file of ALGORITHM.md §1 as [`cnn_from_bytes`] reads it.
///
/// A normalisation of the inputs in its metadata ([`META_INPUT_MEAN`], [`META_INPUT_STD`]) is
/// the network's.
pub fn net_from_bytes(file: &str, bytes: &[u8]) -> Result<(Net, ModelInfo), WeightsError> {
    let (mut net, info) = net_from_bytes_plain(file, bytes)?;
    let invalid = |reason: String| WeightsError::Invalid {
        file: file.to_string(),
        reason,
    };
    if let Some(spec) = info.input_norm().map_err(invalid)? {
        InputNorm::new(&spec.mean, &spec.std, net.arch().input.c)
            .and_then(|n| net.set_input_norm(Some(n)))
            .map_err(|e| invalid(format!("its input normalisation: {e}")))?;
    }
    Ok((net, info))
}

/// Sets `net` to take its inputs normalised as `spec` says (`None`: as they are), recording
/// it in `info`'s metadata. A normalisation other than the one its file holds makes another
/// function of the same weights: the model's name says it and its hash covers it (the file's
/// stays in [`META_FILE_SHA256`]), so reference sets and results are never mixed up; going
/// back to the file's own gives its name and hash again.
pub fn set_input_norm(
    net: &mut Net,
    info: &mut ModelInfo,
    spec: Option<&InputNormSpec>,
) -> Result<(), String> {
    let current = info.input_norm()?;
    let norm = spec
        .map(|s| InputNorm::new(&s.mean, &s.std, net.arch().input.c))
        .transpose()?;
    net.set_input_norm(norm)?;
    if current.as_ref() == spec {
        return Ok(());
    }
    let words =
        |s: Option<&InputNormSpec>| s.map_or("none".to_string(), |s| s.to_metadata().join(";"));
    let suffix = |s: Option<&InputNormSpec>| {
        format!(
            " (inputs {})",
            s.map_or("as they are".to_string(), InputNormSpec::summary)
        )
    };
    if let Some(base) = info.name.strip_suffix(&suffix(current.as_ref())) {
        info.name = base.to_string();
    }
    // The file's own hash and normalisation, kept from the first change on.
    let file_sha = info
        .metadata
        .remove(META_FILE_SHA256)
        .unwrap_or_else(|| info.sha256.clone());
    let file_norm = info
        .metadata
        .remove(META_FILE_INPUT_NORM)
        .unwrap_or_else(|| words(current.as_ref()));
    info.metadata.remove(META_INPUT_MEAN);
    info.metadata.remove(META_INPUT_STD);
    if let Some(s) = spec {
        let [mean, std] = s.to_metadata();
        info.metadata.insert(META_INPUT_MEAN.into(), mean);
        info.metadata.insert(META_INPUT_STD.into(), std);
    }
    if words(spec) == file_norm {
        info.sha256 = file_sha;
    } else {
        info.sha256 = sha256_hex(format!("{file_sha}\ninputs {}", words(spec)).as_bytes());
        info.name.push_str(&suffix(spec));
        info.metadata.insert(META_FILE_SHA256.into(), file_sha);
        info.metadata.insert(META_FILE_INPUT_NORM.into(), file_norm);
    }
    Ok(())
}

fn net_from_bytes_plain(file: &str, bytes: &[u8]) -> Result<(Net, ModelInfo), WeightsError> {
    let invalid = |reason: String| WeightsError::Invalid {
        file: file.to_string(),
        reason,
    };
    let not_st = |e: safetensors::SafeTensorError| WeightsError::NotSafetensors {
        file: file.to_string(),
        reason: e.to_string(),
    };
    if super::torch::is_torch(bytes) {
        return as_net(file, cnn_from_torch(file, bytes)?);
    }
    let (_, header) = SafeTensors::read_metadata(bytes).map_err(not_st)?;
    let metadata = header.metadata().clone().unwrap_or_default();
    let Some(json) = metadata.get(META_ARCH) else {
        return as_net(file, cnn_from_bytes(file, bytes)?);
    };
    let arch: Arch = serde_json::from_str(json).map_err(|e| {
        invalid(format!(
            "its architecture (metadata \"arch\") is not valid: {e}"
        ))
    })?;
    let params = arch
        .params()
        .map_err(|e| invalid(format!("its architecture: {e}")))?;
    let st = SafeTensors::deserialize(bytes).map_err(not_st)?;
    let names = st.names();
    let expected: Vec<&str> = params.iter().map(|p| p.name.as_str()).collect();
    let missing: Vec<&str> = expected
        .iter()
        .copied()
        .filter(|n| !names.iter().any(|m| m == n))
        .collect();
    if !missing.is_empty() {
        return Err(invalid(format!(
            "missing tensor {} (its architecture names {})",
            missing.join(", "),
            expected.join(", ")
        )));
    }
    let mut unexpected: Vec<&str> = names
        .iter()
        .copied()
        .filter(|n| !expected.contains(n))
        .collect();
    if !unexpected.is_empty() {
        unexpected.sort_unstable();
        return Err(invalid(format!(
            "unexpected tensor {} (its architecture names {})",
            unexpected.join(", "),
            expected.join(", ")
        )));
    }
    let mut values = Vec::with_capacity(params.len());
    for p in &params {
        let view = st.tensor(&p.name).map_err(|e| invalid(e.to_string()))?;
        values.push(checked_values(&p.name, &view, &p.torch_shape).map_err(invalid)?);
    }
    let net = Net::from_torch(arch, values).map_err(|e| invalid(e.to_string()))?;
    let info = ModelInfo {
        name: file.to_string(),
        sha256: sha256_hex(bytes),
        metadata,
        architecture: net.arch().summary(),
    };
    Ok((net, info))
}

/// Reads a weight file whole (at most 2 GB, a bound on memory), naming it in any error.
fn read_weights(path: &Path) -> Result<Vec<u8>, WeightsError> {
    crate::io::read_regular_max(path, 2 << 30).map_err(|source| WeightsError::Io {
        file: path.display().to_string(),
        source,
    })
}

/// The display name of a loaded file: its file name.
fn file_name(path: &Path) -> String {
    path.file_name()
        .map(|f| f.to_string_lossy().into_owned())
        .unwrap_or_else(|| path.display().to_string())
}

/// Loads and checks a weight file of any network ([`net_from_bytes`]), or an ONNX file
/// (`.onnx`, [`super::onnx::load_onnx`]).
pub fn load_net(path: &Path) -> Result<(Net, ModelInfo), WeightsError> {
    if super::onnx::is_onnx(path) {
        return super::onnx::load_onnx(path);
    }
    let bytes = read_weights(path)?;
    let (net, mut info) =
        net_from_bytes(&path.display().to_string(), &bytes).map_err(|e| as_named(path, e))?;
    info.name = file_name(path);
    Ok((net, info))
}

/// A file named `.pt` or `.pth` that is neither a PyTorch zip nor safetensors is said to be
/// no PyTorch file (it was called "not a safetensors file").
fn as_named(path: &Path, e: WeightsError) -> WeightsError {
    let torch_named = path
        .extension()
        .is_some_and(|x| x.eq_ignore_ascii_case("pt") || x.eq_ignore_ascii_case("pth"));
    match e {
        WeightsError::NotSafetensors { file, .. } if torch_named => WeightsError::Invalid {
            file,
            reason: "not a PyTorch file: torch.save writes a zip, and this file does not start \
                     as one (nor is it safetensors)"
                .into(),
        },
        other => other,
    }
}

/// Loads `path` (any network), or the shipped model when `None`.
pub fn load_net_or_shipped(path: Option<&Path>) -> Result<(Net, ModelInfo), WeightsError> {
    match path {
        Some(p) => load_net(p),
        None => {
            let (cnn, info) = shipped_cnn()?;
            let net = cnn.to_net().map_err(|source| WeightsError::Numeric {
                file: info.name.clone(),
                source,
            })?;
            Ok((net, info))
        }
    }
}

/// Serialises any network with `metadata`: a network of ALGORITHM.md §1 exactly as
/// [`cnn_to_bytes`] does, any other under its parameters' names ([`Arch::params`]) in
/// PyTorch's layout with its architecture in [`META_ARCH`].
pub fn net_to_bytes(
    net: &Net,
    metadata: &HashMap<String, String>,
) -> Result<Vec<u8>, candle_core::Error> {
    // The normalisation is the network's own, whatever the metadata handed in says; the
    // file written is a file of its own, with its own hash.
    let mut metadata = metadata.clone();
    metadata.remove(META_FILE_SHA256);
    metadata.remove(META_FILE_INPUT_NORM);
    metadata.remove(META_INPUT_MEAN);
    metadata.remove(META_INPUT_STD);
    if let Some(n) = net.input_norm() {
        let [mean, std] = InputNormSpec {
            mean: n.mean.clone(),
            std: n.std.clone(),
        }
        .to_metadata();
        metadata.insert(META_INPUT_MEAN.into(), mean);
        metadata.insert(META_INPUT_STD.into(), std);
    }
    let metadata = &metadata;
    // The §1 file layout holds 10 or 11 classes (what a file without a description is read
    // as); the same layers with other class counts carry their description.
    if *net.arch() == Arch::original(net.classes()) && matches!(net.classes(), 10 | 11) {
        return cnn_to_bytes(&Cnn::from_net(net)?, metadata);
    }
    let msg = |e: String| candle_core::Error::Msg(e);
    let params = net.arch().params().map_err(|e| msg(e.to_string()))?;
    let torch = net.to_torch();
    let tensors: Vec<(String, Tensor)> = params
        .iter()
        .zip(torch)
        .map(|(p, v)| {
            Ok((
                p.name.clone(),
                Tensor::from_vec(v, p.torch_shape.as_slice(), &Device::Cpu)?,
            ))
        })
        .collect::<Result<_, candle_core::Error>>()?;
    let mut meta = metadata.clone();
    meta.insert(META_NUM_CLASSES.into(), net.classes().to_string());
    meta.insert(
        META_ARCH.into(),
        serde_json::to_string(net.arch()).map_err(|e| msg(e.to_string()))?,
    );
    safetensors::serialize(tensors, Some(meta)).map_err(|e| msg(format!("safetensors: {e}")))
}

/// Writes any network atomically ([`net_to_bytes`]), checked by reading it back first as
/// [`save_cnn`] does; refuses to replace an existing file unless `overwrite`.
pub fn save_net(
    net: &Net,
    metadata: &HashMap<String, String>,
    path: &Path,
    overwrite: bool,
) -> Result<(), WeightsError> {
    let file = path.display().to_string();
    let bytes = net_to_bytes(net, metadata).map_err(|source| WeightsError::Numeric {
        file: file.clone(),
        source,
    })?;
    if let Err(e) = net_from_bytes(&file, &bytes) {
        return Err(unusable(file, &e));
    }
    write_atomic(path, &bytes, overwrite)?;
    Ok(())
}

/// The error of a trained model our own loader would refuse.
fn unusable(file: String, e: &WeightsError) -> WeightsError {
    WeightsError::Invalid {
        file,
        reason: format!(
            "not saved: the model is not usable ({}); training diverged, lower the learning rate",
            e.to_string()
                .split(": ")
                .skip(1)
                .collect::<Vec<_>>()
                .join(": ")
        ),
    }
}

/// Loads and checks a weight file of ALGORITHM.md §1: safetensors, or a PyTorch state_dict.
pub fn load_cnn(path: &Path) -> Result<(Cnn, ModelInfo), WeightsError> {
    let bytes = read_weights(path)?;
    let file = path.display().to_string();
    let (cnn, mut info) = if super::torch::is_torch(&bytes) {
        cnn_from_torch(&file, &bytes)?
    } else {
        cnn_from_bytes(&file, &bytes).map_err(|e| as_named(path, e))?
    };
    info.name = file_name(path);
    Ok((cnn, info))
}

/// The model shipped inside the binary (assets/models/mnist-cnn.safetensors), if this build has it.
pub fn shipped_cnn() -> Result<(Cnn, ModelInfo), WeightsError> {
    #[cfg(shipped_model)]
    {
        const BYTES: &[u8] = include_bytes!("../../assets/models/mnist-cnn.safetensors");
        let (cnn, mut info) = cnn_from_bytes("embedded mnist-cnn.safetensors", BYTES)?;
        info.name = "mnist-cnn (shipped)".to_string();
        Ok((cnn, info))
    }
    #[cfg(not(shipped_model))]
    Err(WeightsError::Invalid {
        file: "assets/models/mnist-cnn.safetensors".into(),
        reason: "this build has no shipped model; train one with `backwork train` or pass --model"
            .into(),
    })
}

/// Loads `path`, or the shipped model when `None`.
pub fn load_or_shipped(path: Option<&Path>) -> Result<(Cnn, ModelInfo), WeightsError> {
    match path {
        Some(p) => load_cnn(p),
        None => shipped_cnn(),
    }
}

/// Serialises the model with `metadata` in the safetensors header.
pub fn cnn_to_bytes(
    cnn: &Cnn,
    metadata: &HashMap<String, String>,
) -> Result<Vec<u8>, candle_core::Error> {
    let tensors: Vec<(&str, Tensor)> = cnn
        .named_tensors()
        .into_iter()
        .map(|(n, t)| Ok((n, t.to_dtype(DType::F32)?.contiguous()?)))
        .collect::<Result<_, candle_core::Error>>()?;
    let mut meta = metadata.clone();
    meta.insert(META_NUM_CLASSES.into(), cnn.num_classes().to_string());
    safetensors::serialize(tensors, Some(meta))
        .map_err(|e| candle_core::Error::Msg(format!("safetensors: {e}")))
}

/// Writes the model atomically; refuses to replace an existing file unless `overwrite`.
pub fn save_cnn(
    cnn: &Cnn,
    metadata: &HashMap<String, String>,
    path: &Path,
    overwrite: bool,
) -> Result<(), WeightsError> {
    let file = path.display().to_string();
    let bytes = cnn_to_bytes(cnn, metadata).map_err(|source| WeightsError::Numeric {
        file: file.clone(),
        source,
    })?;
    // Never a file our own loader refuses (issue 12: `train --lr 1e30` saved NaN weights).
    if let Err(e) = cnn_from_bytes(&file, &bytes) {
        return Err(unusable(file, &e));
    }
    write_atomic(path, &bytes, overwrite)?;
    Ok(())
}

pub use crate::meta::WeightInit;

/// A freshly initialised network with `num_classes` outputs (10, or 11 with the extra class),
/// drawn as [`WeightInit::Uniform`] says; the same seed gives the same weights.
pub fn init_cnn(seed: u64, num_classes: usize) -> Result<Cnn, candle_core::Error> {
    init_cnn_with(seed, num_classes, WeightInit::Uniform)
}

/// A freshly initialised network drawn as `init` says; the same seed gives the same weights.
pub fn init_cnn_with(
    seed: u64,
    num_classes: usize,
    init: WeightInit,
) -> Result<Cnn, candle_core::Error> {
    let arch = crate::net::Arch::original(num_classes);
    let params = crate::net::init::init_params(&arch, seed, init)
        .map_err(|e| candle_core::Error::Msg(e.to_string()))?;
    let net = crate::net::Net::from_torch(arch, params)
        .map_err(|e| candle_core::Error::Msg(e.to_string()))?;
    Cnn::from_net(&net)
}

/// A copy of a 10-class model with an 11th output ("fooling", Nguyen, Yosinski & Clune 2015)
/// whose weights and bias start at zero, so it begins as the 10-class model with one more,
/// unused, logit. An 11-class model is returned unchanged.
pub fn with_extra_class(cnn: &Cnn) -> Result<Cnn, candle_core::Error> {
    if cnn.num_classes() == 11 {
        return Ok(cnn.clone());
    }
    let zeros_w = Tensor::zeros((1, FC_UNITS), DType::F32, &Device::Cpu)?;
    let zeros_b = Tensor::zeros(1, DType::F32, &Device::Cpu)?;
    Ok(Cnn {
        softmax_w: Tensor::cat(&[&cnn.softmax_w, &zeros_w], 0)?,
        softmax_b: Tensor::cat(&[&cnn.softmax_b, &zeros_b], 0)?,
        ..cnn.clone()
    })
}

/// [`with_extra_class`] for any network on data of `data_classes` classes: its last linear
/// layer gains one output (the fooling class) whose weights and bias start at zero. A network
/// that has it already is returned unchanged; other class counts are refused.
pub fn net_with_extra_class(net: &Net, data_classes: usize) -> Result<Net, String> {
    let k = net.classes();
    if k == data_classes + 1 {
        return Ok(net.clone());
    }
    if k != data_classes {
        return Err(format!(
            "an extra class needs a network of the data's {data_classes} classes, this one has {k}"
        ));
    }
    let mut arch = net.arch().clone();
    if let Some(crate::net::Layer::Linear { out }) = arch.layers.last_mut() {
        *out += 1;
    }
    let mut torch = net.to_torch();
    let n = torch.len();
    if n < 2 || k == 0 {
        return Err("the network has no last linear layer".into());
    }
    // The last linear layer's weight [k, in] gains a zero row; its bias a zero.
    let inputs = torch[n - 2].len() / k;
    torch[n - 2].extend(std::iter::repeat_n(0.0, inputs));
    torch[n - 1].push(0.0);
    let mut wider = Net::from_torch(arch, torch).map_err(|e| e.to_string())?;
    // The same inputs: its normalisation too.
    wider.set_input_norm(net.input_norm().cloned())?;
    Ok(wider)
}

/// Lower-case hex SHA-256.
pub fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}
