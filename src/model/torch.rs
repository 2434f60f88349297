//! PyTorch checkpoints: what `torch.save(model.state_dict(), "net.pt")` writes (a zip holding
//! a pickle of the state_dict and one entry per storage), or a checkpoint dictionary holding one
//! (`{"model_state_dict": …, "optimizer_state_dict": …}`). The pickle is read by candle's
//! pickle machine (no code runs: it only builds a tree of objects), one opcode at a time under
//! limits on the tree's size and depth, so a hostile file cannot exhaust memory or the stack;
//! every storage is read from the zip only after its size is checked against the entry's.
//! A state_dict holds weights without the network: the caller decides which network they fit.

use std::io::{Cursor, Read};

use candle_core::pickle::{Object, Stack};
use candle_core::{DType, Device, Tensor};

/// One tensor of a state_dict, as f32.
#[derive(Debug, Clone)]
pub struct TorchTensor {
    pub name: String,
    pub shape: Vec<usize>,
    pub values: Vec<f32>,
}

/// The first bytes of a zip file: PyTorch's format since 1.6.
const ZIP_MAGIC: &[u8] = b"PK\x03\x04";
/// The first bytes of PyTorch's legacy format (before 1.6): a pickled magic number.
const LEGACY_MAGIC: &[u8] = b"\x80\x02\x8a\x0al\xfc\x9cF\xf9 j\xa8P\x19";

/// At most this large a pickle: a state_dict's is a few kilobytes per hundred tensors.
const MAX_PICKLE: u64 = 16 << 20;
/// At most this many objects in the pickle machine's tree at once.
const MAX_NODES: usize = 200_000;
/// At most this deep a tree (a state_dict's is under ten deep).
const MAX_DEPTH: usize = 64;
/// At most this many object visits over the whole pickle (the size of the tree summed over
/// every opcode): bounds what the machine's memo can hold, which a pickle can make grow
/// exponentially by fetching and storing one object again and again.
const MAX_WORK: usize = 20_000_000;

/// Whether `bytes` look like a PyTorch file, zip or legacy.
pub fn is_torch(bytes: &[u8]) -> bool {
    bytes.starts_with(ZIP_MAGIC) || bytes.starts_with(LEGACY_MAGIC)
}

/// The tensors of the state_dict in a PyTorch file's bytes (in no particular order); else why
/// not, in words for a user who saved it.
pub fn read_state_dict(bytes: &[u8]) -> Result<Vec<TorchTensor>, String> {
    if bytes.starts_with(LEGACY_MAGIC) {
        return Err(
            "a PyTorch file in the legacy format (before PyTorch 1.6); save it again \
                    with torch.save(model.state_dict(), PATH) in PyTorch 1.6 or later"
                .into(),
        );
    }
    // candle's pickle machine indexes tuples it expects to be long enough; a malformed file
    // must not take the process down, so a panic inside becomes this file's error (the default
    // hook, which would print it, is held back meanwhile).
    let hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(|_| {}));
    let read = std::panic::catch_unwind(|| read_zip(bytes));
    std::panic::set_hook(hook);
    read.unwrap_or_else(|_| Err("not a readable PyTorch file (its pickle is malformed)".into()))
}

fn read_zip(bytes: &[u8]) -> Result<Vec<TorchTensor>, String> {
    let mut zip = zip::ZipArchive::new(Cursor::new(bytes))
        .map_err(|e| format!("not a readable PyTorch file (zip: {e})"))?;
    let names: Vec<String> = zip
        .file_names()
        .map(|n| n.map(|n| n.into_owned()))
        .collect::<Result<_, _>>()
        .map_err(|e| format!("not a readable PyTorch file (zip: {e})"))?;
    let Some(pickle) = names.iter().find(|n| n.ends_with("data.pkl")).cloned() else {
        return Err("a zip file without data.pkl, not a PyTorch file".into());
    };
    if names.iter().any(|n| n.ends_with("constants.pkl")) {
        return Err(
            "a TorchScript module (torch.jit.save); backwork reads a state_dict \
                    (torch.save(model.state_dict(), PATH)) or an ONNX export"
                .into(),
        );
    }
    let dir = pickle.trim_end_matches(".pkl").to_string();
    let mut data = Vec::new();
    zip.by_name(&pickle)
        .map_err(|e| format!("cannot read {pickle}: {e}"))?
        .take(MAX_PICKLE + 1)
        .read_to_end(&mut data)
        .map_err(|e| format!("cannot read {pickle}: {e}"))?;
    if data.len() as u64 > MAX_PICKLE {
        return Err(format!(
            "its pickle is over {} MB, more than a state_dict holds",
            MAX_PICKLE >> 20
        ));
    }
    // torch.save writes protocol 2, the one candle's machine reads; a later protocol
    // (pickle_protocol=4 or 5) uses opcodes it does not know.
    if let [0x80, v, ..] = data[..]
        && v > 2
    {
        return Err(format!(
            "its pickle is protocol {v} (torch.save(…, pickle_protocol={v})); save it with \
             torch.save's default, protocol 2"
        ));
    }
    let top = unpickle(&data)?;
    let entries = state_dict(top)?;
    let mut out = Vec::with_capacity(entries.len());
    for (name, value) in entries {
        out.push(tensor(&mut zip, &dir, name, value)?);
    }
    Ok(out)
}

/// Runs the pickle machine over `data` one opcode at a time, refusing a tree that grows past
/// the limits.
fn unpickle(data: &[u8]) -> Result<Object, String> {
    let mut reader = Cursor::new(data);
    let mut stack = Stack::empty();
    let mut work = 0usize;
    loop {
        // The machine allocates a string's declared length before reading it: a length past
        // the pickle's end is refused here instead (one opcode peeked, not parsed).
        let at = reader.position() as usize;
        if data.get(at) == Some(&b'X') {
            let len = data
                .get(at + 1..at + 5)
                .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as usize);
            if len.is_none_or(|len| at + 5 + len > data.len()) {
                return Err("not a readable PyTorch file (its pickle is truncated)".into());
            }
        }
        let done = stack
            .read(&mut reader)
            .map_err(|e| format!("not a readable PyTorch file (pickle: {e})"))?;
        let mut nodes = 0usize;
        for obj in stack.stack() {
            if !measure(obj, 1, &mut nodes) {
                return Err(format!(
                    "its pickle builds more than {MAX_NODES} objects or nests them more than \
                     {MAX_DEPTH} deep: not a state_dict"
                ));
            }
        }
        work += nodes;
        if work > MAX_WORK {
            return Err(
                "its pickle does more work than a state_dict needs: not a state_dict".into(),
            );
        }
        if done {
            break;
        }
    }
    stack
        .finalize()
        .map_err(|e| format!("not a readable PyTorch file (pickle: {e})"))
}

/// Counts `obj`'s nodes into `nodes`; false once past [`MAX_NODES`] or [`MAX_DEPTH`].
fn measure(obj: &Object, depth: usize, nodes: &mut usize) -> bool {
    *nodes += 1;
    if *nodes > MAX_NODES || depth > MAX_DEPTH {
        return false;
    }
    match obj {
        Object::Tuple(v) | Object::List(v) => v.iter().all(|o| measure(o, depth + 1, nodes)),
        Object::Dict(kv) => kv
            .iter()
            .all(|(k, v)| measure(k, depth + 1, nodes) && measure(v, depth + 1, nodes)),
        Object::Reduce { callable, args } | Object::Build { callable, args } => {
            measure(callable, depth + 1, nodes) && measure(args, depth + 1, nodes)
        }
        Object::PersistentLoad(o) => measure(o, depth + 1, nodes),
        _ => true,
    }
}

/// Whether `value` is a pickled tensor (torch._utils._rebuild_tensor_v2 or a parameter).
fn is_tensor(value: &Object) -> bool {
    let Object::Reduce { callable, .. } = value else {
        return false;
    };
    matches!(&**callable, Object::Class { module_name, class_name }
        if (module_name == "torch._utils"
            && matches!(class_name.as_str(), "_rebuild_tensor_v2" | "_rebuild_parameter"))
            || (module_name == "torch._tensor" && class_name == "_rebuild_from_type_v2"))
}

/// Whether `obj` is a dictionary with at least one tensor value.
fn holds_tensors(obj: &Object) -> bool {
    matches!(obj, Object::Dict(kv) if kv.iter().any(|(_, v)| is_tensor(v)))
}

/// The keys of a dictionary, for messages.
fn keys(kv: &[(Object, Object)]) -> String {
    let names: Vec<String> = kv
        .iter()
        .take(8)
        .map(|(k, _)| match k {
            Object::Unicode(s) => format!("\"{}\"", crate::util::one_line(s)),
            other => format!("{:.40}", format!("{other:?}")),
        })
        .collect();
    let more = if kv.len() > 8 { ", …" } else { "" };
    format!("{}{more}", names.join(", "))
}

/// The (name, tensor) pairs of the state_dict `top` is or holds.
fn state_dict(top: Object) -> Result<Vec<(String, Object)>, String> {
    let dict = match top {
        ref d @ Object::Dict(_) if holds_tensors(d) => top,
        Object::Dict(kv) => {
            // A checkpoint: the one dictionary of tensors among its values, preferring the
            // model's by its usual keys when there are several (an EMA copy, say).
            let key_of = |k: &Object| match k {
                Object::Unicode(s) => s.clone(),
                _ => String::new(),
            };
            let listed = keys(&kv);
            let mut found: Vec<(String, Object)> = kv
                .into_iter()
                .filter(|(_, v)| holds_tensors(v))
                .map(|(k, v)| (key_of(&k), v))
                .collect();
            let preferred = ["state_dict", "model_state_dict", "model", "net"];
            let pick = if found.len() == 1 {
                Some(0)
            } else {
                preferred
                    .iter()
                    .find_map(|p| found.iter().position(|(k, _)| k == p))
            };
            match pick {
                Some(i) => found.swap_remove(i).1,
                None if found.is_empty() => {
                    return Err(format!(
                        "holds no tensors (a dictionary of {listed}); save \
                         torch.save(model.state_dict(), PATH)"
                    ));
                }
                None => {
                    let which: Vec<String> =
                        found.iter().map(|(k, _)| format!("\"{k}\"")).collect();
                    return Err(format!(
                        "holds several state_dicts ({}); save the network's alone with \
                         torch.save(model.state_dict(), PATH)",
                        crate::util::one_line(&which.join(", "))
                    ));
                }
            }
        }
        Object::Reduce { callable, .. } | Object::Build { callable, .. } => {
            let class = match *callable {
                Object::Class {
                    module_name,
                    class_name,
                } => format!(" ({module_name}.{class_name})"),
                Object::Reduce { callable, .. } => match *callable {
                    Object::Class {
                        module_name,
                        class_name,
                    } => format!(" ({module_name}.{class_name})"),
                    _ => String::new(),
                },
                _ => String::new(),
            };
            return Err(format!(
                "holds a whole pickled object{}, not a state_dict; save \
                 torch.save(model.state_dict(), PATH) (backwork runs no code from a file)",
                crate::util::one_line(&class)
            ));
        }
        _ => return Err("holds no state_dict; save torch.save(model.state_dict(), PATH)".into()),
    };
    let Object::Dict(kv) = dict else {
        return Err("holds no state_dict".into());
    };
    let mut out = Vec::with_capacity(kv.len());
    for (k, v) in kv {
        // Entries that are not tensors (the `_metadata` PyTorch keeps with every state_dict,
        // a module's `_extra_state`) hold no weights.
        if !is_tensor(&v) {
            continue;
        }
        let Object::Unicode(name) = k else {
            return Err("its state_dict names a tensor by something other than a string".into());
        };
        out.push((name, v));
    }
    if out.is_empty() {
        return Err("its state_dict holds no tensors".into());
    }
    Ok(out)
}

/// Reads one tensor's values from its storage entry, checked: a float type, laid out
/// contiguously, inside its entry, which is stored uncompressed as PyTorch writes it.
fn tensor(
    zip: &mut zip::ZipArchive<Cursor<&[u8]>>,
    dir: &str,
    name: String,
    value: Object,
) -> Result<TorchTensor, String> {
    let shown = crate::util::one_line(&name);
    let info = value
        .into_tensor_info(Object::Unicode(name.clone()), std::path::Path::new(dir))
        .map_err(|e| format!("{shown}: not a tensor PyTorch wrote ({e})"))?
        .ok_or_else(|| format!("{shown}: not a tensor PyTorch wrote"))?;
    let dtype = info.dtype;
    if !matches!(dtype, DType::F32 | DType::F64 | DType::F16 | DType::BF16) {
        return Err(format!(
            "{shown} holds {dtype:?} values; backwork's networks hold floating-point weights"
        ));
    }
    let shape = info.layout.shape().dims().to_vec();
    if !info.layout.is_contiguous() {
        return Err(format!(
            "{shown} is not contiguous (strides {:?} for shape {shape:?}); save \
             {{k: v.contiguous() for k, v in model.state_dict().items()}}",
            info.layout.stride()
        ));
    }
    let count = shape
        .iter()
        .try_fold(1usize, |a, &d| a.checked_mul(d))
        .ok_or_else(|| format!("{shown} has an impossible shape {shape:?}"))?;
    let offset = info.layout.start_offset() as u64;
    let need = (count as u64)
        .checked_mul(dtype.size_in_bytes() as u64)
        .and_then(|n| n.checked_add(offset))
        .ok_or_else(|| format!("{shown} has an impossible shape {shape:?}"))?;
    let mut entry = zip
        .by_name(&info.path)
        .map_err(|e| format!("{shown}: its storage {} is missing ({e})", info.path))?;
    if entry.compression() != zip::CompressionMethod::Stored {
        return Err(format!(
            "{shown}: its storage {} is compressed, which PyTorch never does",
            info.path
        ));
    }
    if entry.size() < need {
        return Err(format!(
            "{shown}: its storage {} holds {} bytes, the tensor needs {need} (truncated?)",
            info.path,
            entry.size()
        ));
    }
    let mut raw = Vec::with_capacity(need as usize);
    entry
        .by_ref()
        .take(need)
        .read_to_end(&mut raw)
        .map_err(|e| format!("{shown}: cannot read its storage {}: {e}", info.path))?;
    if (raw.len() as u64) < need {
        return Err(format!(
            "{shown}: its storage {} ends early (truncated?)",
            info.path
        ));
    }
    let values = Tensor::from_raw_buffer(&raw[offset as usize..], dtype, &[count], &Device::Cpu)
        .and_then(|t| t.to_dtype(DType::F32))
        .and_then(|t| t.to_vec1::<f32>())
        .map_err(|e| format!("{shown}: {e}"))?;
    Ok(TorchTensor {
        name,
        shape,
        values,
    })
}
